"""The batch pool: peers' batches verified in the verifier pool, invalid ones
remembered and their senders throttled, own batches stored once, answers cut to
a byte budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from sequencer_net.batches.batch import Batch, batch_digest, encode_batch
from sequencer_net.batches.pool import (
    INVALID_BATCHES_BEFORE_THROTTLE,
    MAX_BATCH_ANSWER_BYTES,
    MAX_IN_FLIGHT,
    THROTTLE_WINDOW_S,
    BatchPool,
    BatchRequest,
)
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.payload.checks import BatchSize
from sequencer_net.storage.group_commit import GroupCommit
from sequencer_net.storage.node_store import NodeStore
from tests.mempool.factories import DOMAIN, KEYS, carrying_batch, signed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = NodeStore(tmp_path / "db", sync=False)
    yield s
    s.close()


def make_pool(store: NodeStore, clock: Clock | None = None) -> tuple[BatchPool, list[int]]:
    writes: list[int] = []

    def write(batch: object) -> None:
        writes.append(1)
        store.write_synced(batch)  # type: ignore[arg-type]

    pool = BatchPool(
        store, VerifierPool(DOMAIN, threads=2), GroupCommit(write), clock=clock or Clock()
    )
    return pool, writes


def batch_of(author: int, sequence: int, txs: list[bytes]) -> bytes:
    return encode_batch(carrying_batch(DOMAIN, author=author, sequence=sequence, transactions=txs))


def counting_pool(store: NodeStore) -> tuple[BatchPool, VerifierPool]:
    """A pool whose verifier counts the transactions it checks (`checked`)."""
    verifier = VerifierPool(DOMAIN, threads=1)
    return BatchPool(store, verifier, GroupCommit(store.write_synced), clock=Clock()), verifier


def with_wrong_sender(author: int, sequence: int) -> bytes:
    txs = [signed(sender=i, nonce=0) for i in range(3)]
    honest = carrying_batch(DOMAIN, author, sequence, txs)
    senders = [honest.senders[0], bytes(KEYS[5].address), honest.senders[2]]
    return encode_batch(Batch(author, sequence, txs, senders))


async def test_a_verifying_node_refuses_a_batch_whose_carried_sender_is_wrong(
    store: NodeStore,
) -> None:
    pool, verifier = counting_pool(store)
    bad = with_wrong_sender(1, 0)
    assert await pool.receive(1, bad, verify=True) is None
    assert verifier.checked == 3 and batch_digest(bad) not in pool and pool.rejected_batches == 1
    # One sender fewer than transactions: refused before any signature is checked.
    txs = [signed(sender=0, nonce=1), signed(sender=1, nonce=1)]
    short = encode_batch(Batch(1, 1, txs, [bytes(KEYS[0].address)]))
    assert await pool.receive(1, short, verify=True) is None
    assert verifier.checked == 3


async def test_a_non_verifying_node_stores_without_checking_signatures(store: NodeStore) -> None:
    pool, verifier = counting_pool(store)
    good = batch_of(2, 0, [signed(sender=i, nonce=0) for i in range(4)])
    digest = await pool.receive(2, good, verify=False)
    assert digest == batch_digest(good) and digest in pool and store.get_batch(digest) == good
    assert verifier.checked == 0 and not pool.is_verified(digest)
    assert await pool.verify_held(digest)  # the liveness fallback, later
    assert verifier.checked == 4 and pool.is_verified(digest)
    # A wrong sender list is stored unverified, and refused once checked.
    bad = with_wrong_sender(3, 0)
    bad_digest = await pool.receive(3, bad, verify=False)
    assert bad_digest is not None and verifier.checked == 4
    assert not await pool.verify_held(bad_digest)
    assert pool.rejected_batches == 1 and not pool.is_verified(bad_digest)
    assert bad_digest not in [d for d, _ in pool.unincluded(set(), 10)]
    # Structure is still checked: a batch that is not one is refused.
    assert await pool.receive(3, b"\x93\x01", verify=False) is None


async def test_a_fetched_batch_is_verified_unless_certified(store: NodeStore) -> None:
    pool, verifier = counting_pool(store)
    certified: set[bytes] = set()
    pool.certified = certified.__contains__
    plain = batch_of(1, 0, [signed(sender=1, nonce=0)])
    assert await pool.accept_fetched(batch_digest(plain), plain)
    assert verifier.checked == 1 and pool.is_verified(batch_digest(plain))
    trusted = batch_of(1, 1, [signed(sender=1, nonce=1), signed(sender=2, nonce=1)])
    certified.add(batch_digest(trusted))
    assert await pool.accept_fetched(batch_digest(trusted), trusted)
    assert verifier.checked == 1 and batch_digest(trusted) in pool
    bad = with_wrong_sender(2, 0)
    assert not await pool.accept_fetched(batch_digest(bad), bad)
    assert verifier.checked == 4


async def test_a_valid_batch_is_kept_with_its_senders(store: NodeStore) -> None:
    pool, _ = make_pool(store)
    txs = [signed(sender=i, nonce=0) for i in range(5)]
    encoded = batch_of(2, 0, txs)
    digest = await pool.receive(2, encoded)
    assert digest is not None and digest == batch_digest(encoded) and digest in pool
    assert store.get_batch(digest) == encoded
    assert pool.is_verified(digest)
    size = pool.size_of(digest)
    assert size is not None and size.transactions == 5


async def test_an_invalid_batch_is_remembered_and_repeated_ones_throttle_the_sender(
    store: NodeStore,
) -> None:
    clock = Clock()
    pool, _ = make_pool(store, clock)
    bad = batch_of(1, 0, [signed(sender=0), b"\x00not a transaction"])
    assert await pool.receive(1, bad) is None
    assert batch_digest(bad) not in pool and pool.rejected_batches == 1
    # The same bytes again cost a hash, not a verification; it counts against the peer.
    assert await pool.receive(1, bad) is None
    assert pool.rejected_batches == 1
    for seq in range(1, INVALID_BATCHES_BEFORE_THROTTLE):
        await pool.receive(1, batch_of(1, seq, [b"\x01junk %d" % seq]))
    # Throttled: even a valid batch from that validator is ignored for a while...
    good = batch_of(1, 99, [signed(sender=5)])
    assert await pool.receive(1, good) is None
    # ...but the same batch fetched by digest (a block names it) is accepted.
    assert await pool.accept_fetched(batch_digest(good), good)
    clock.now += THROTTLE_WINDOW_S + 1
    later = batch_of(1, 100, [signed(sender=6)])
    assert await pool.receive(1, later) == batch_digest(later)


async def test_a_batch_must_come_from_its_author(store: NodeStore) -> None:
    pool, _ = make_pool(store)
    assert await pool.receive(3, batch_of(2, 0, [signed()])) is None


async def test_an_own_batch_is_stored_once_with_its_sequence(store: NodeStore) -> None:
    pool, writes = make_pool(store)
    batch = carrying_batch(DOMAIN, author=0, sequence=7, transactions=[signed()])
    encoded = encode_batch(batch)
    await pool.add_own(batch_digest(encoded), encoded, batch)
    assert writes == [1]  # one synced write: the batch and the next sequence together
    assert store.get_batch(batch_digest(encoded)) == encoded
    assert store.next_batch_sequence() == 8


async def test_answers_fit_the_byte_budget_and_the_asker_gets_the_rest_later(
    store: NodeStore,
) -> None:
    pool, _ = make_pool(store)
    digests = []
    txs = [signed(sender=s % 8, nonce=s, payload=b"y" * 30_000) for s in range(40)]
    for seq in range(40):  # 40 batches of ~1.2 MB each: far over one answer
        encoded = batch_of(0, seq, txs)
        digest = batch_digest(encoded)
        store.save_batch(digest, encoded)
        digests.append(digest)
    answer = pool.answer(BatchRequest(digests[:64]))
    assert 0 < len(answer) < 40
    assert sum(len(a) for a in answer) <= MAX_BATCH_ANSWER_BYTES
    assert [batch_digest(a) for a in answer] == digests[: len(answer)]


async def test_a_voter_waits_for_a_queued_batch_instead_of_fetching_it(store: NodeStore) -> None:
    pool, _ = make_pool(store)
    good = batch_of(1, 0, [signed(sender=1, nonce=0)])
    bad = bytearray(batch_of(2, 0, [signed(sender=2, nonce=0)]))
    bad[-1] ^= 1  # a broken signature: decided, but not kept
    digests = [batch_digest(good), batch_digest(bytes(bad))]
    for digest in digests:
        pool.expect(digest)
    woke: list[bool] = []

    async def voter() -> None:
        await pool.wait_for(digests, timeout_s=30)
        woke.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(voter)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []  # still queued
        await pool.receive(1, good)
        await trio.testing.wait_all_tasks_blocked()
        assert woke == []  # one of two decided
        await pool.receive(2, bytes(bad))
        await trio.testing.wait_all_tasks_blocked()
        assert woke == [True]  # both decided: the voter goes on at once
        nursery.cancel_scope.cancel()
    assert digests[0] in pool and digests[1] not in pool


async def test_waiting_is_bounded_and_only_for_batches_known_to_be_queued(
    store: NodeStore, autojump_clock: MockClock
) -> None:
    pool, _ = make_pool(store)
    start = trio.current_time()
    await pool.wait_for([b"\x01" * 32], timeout_s=5)  # never offered: no wait
    assert trio.current_time() == start
    pool.expect(b"\x02" * 32)  # queued, but its verifier never answers
    await pool.wait_for([b"\x02" * 32], timeout_s=5)
    assert trio.current_time() - start == pytest.approx(5)


async def test_a_queued_batch_s_bytes_are_readable_until_it_is_decided(store: NodeStore) -> None:
    pool, _ = make_pool(store)
    good = batch_of(1, 0, [signed(sender=1, nonce=0)])
    bad = bytearray(batch_of(2, 0, [signed(sender=2, nonce=0)]))
    bad[-1] ^= 1  # a broken signature: refused once verified
    good_digest, bad_digest = batch_digest(good), batch_digest(bytes(bad))
    assert pool.bytes_of(good_digest) is None  # neither held nor queued
    pool.expect(good_digest, good)
    pool.expect(bad_digest, bytes(bad))
    assert good_digest not in pool and pool.get(good_digest) is None  # not verified yet
    assert pool.bytes_of(good_digest) == good
    assert pool.bytes_of(bad_digest) == bytes(bad)
    await pool.receive(1, good)
    await pool.receive(2, bytes(bad))
    assert pool.bytes_of(good_digest) == good  # verified and stored
    assert pool.bytes_of(bad_digest) is None  # refused: forgotten
    assert pool._queued_bytes == {}


def test_the_in_flight_table_is_bounded(store: NodeStore) -> None:
    pool, _ = make_pool(store)
    for i in range(MAX_IN_FLIGHT + 100):
        pool.expect(i.to_bytes(32, "big"), b"x")
    assert len(pool._in_flight) == MAX_IN_FLIGHT
    assert len(pool._queued_bytes) == MAX_IN_FLIGHT


async def test_batches_holding_a_transaction_are_indexed_before_and_after_the_question(
    store: NodeStore,
) -> None:
    """A forced transaction's holders: batches that arrived before it was first
    asked about (found by a scan) and after (added as they come); a batch named
    by a committed block, or forgotten, no longer holds it."""
    from sequencer_net.mempool.transaction import tx_hash

    pool, _ = make_pool(store)
    forced = signed(sender=1, nonce=0)
    early = await pool.receive(2, batch_of(2, 0, [signed(sender=0, nonce=0), forced]))
    other = await pool.receive(3, batch_of(3, 0, [signed(sender=2, nonce=0)]))
    assert early is not None and other is not None
    h = tx_hash(forced)
    assert [d for d, _ in pool.batches_holding([h])[h]] == [early]
    late = await pool.receive(1, batch_of(1, 0, [forced]))
    assert late is not None
    held = pool.batches_holding([h])[h]
    assert [d for d, _ in held] == [late, early]  # (author, sequence) order
    assert held[0][1].transactions == 1
    pool.mark_included([late])
    assert [d for d, _ in pool.batches_holding([h])[h]] == [early]
    pool.forget([early])
    assert pool.batches_holding([h]) == {}
    assert pool.batches_holding([b"\x77" * 32]) == {}


async def test_a_batch_leaving_the_pairs_cache_no_longer_holds_its_transactions(
    store: NodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holders index is bounded with the cache it is built from."""
    from sequencer_net.batches import pool as pool_module
    from sequencer_net.mempool.transaction import tx_hash

    monkeypatch.setattr(pool_module, "MAX_CACHED_PAIR_TXS", 2)
    pool, _ = make_pool(store)
    forced = signed(sender=1, nonce=0)
    first = await pool.receive(2, batch_of(2, 0, [forced]))
    assert first is not None
    h = tx_hash(forced)
    assert h in pool.batches_holding([h])
    await pool.receive(3, batch_of(3, 0, [signed(sender=2, nonce=0), signed(sender=3, nonce=0)]))
    assert pool.batches_holding([h]) == {}


async def test_a_held_batch_s_hashes_come_from_its_verification(store: NodeStore) -> None:
    from sequencer_net.batches.batch import batch_tx_hashes

    pool, _ = make_pool(store)
    txs = [signed(sender=i, nonce=0) for i in range(4)]
    peer = carrying_batch(DOMAIN, author=2, sequence=0, transactions=txs)
    digest = await pool.receive(2, encode_batch(peer))
    assert digest is not None
    assert pool.tx_hashes(digest, peer) == batch_tx_hashes(peer)
    # A batch whose pairs are not kept is hashed on the spot.
    other = carrying_batch(DOMAIN, author=3, sequence=0, transactions=[signed(sender=5)])
    assert pool.tx_hashes(batch_digest(encode_batch(other)), other) == batch_tx_hashes(other)


def test_cached_pairs_read_back_as_they_were_computed(store: NodeStore) -> None:
    """The pool packs a batch's (namespace, tx hash) pairs; reading them back gives
    the same list, for any uint32 namespaces, and none for an empty list."""
    import random

    pool, _ = make_pool(store)
    rng = random.Random(7)
    cases: dict[bytes, list[tuple[int, bytes]]] = {}
    for i in range(200):
        count = rng.choice([0, 1, 2, rng.randint(3, 400)])
        pairs = [
            (rng.choice([0, 1, 2**32 - 1, rng.getrandbits(32)]), rng.randbytes(32))
            for _ in range(count)
        ]
        digest = i.to_bytes(32, "big")
        pool._cache_pairs(digest, pairs)
        cases[digest] = pairs
    for digest, pairs in cases.items():
        assert pool.namespace_pairs(digest) == pairs
        # What pacing weighs: the engine's (namespace 0) transactions.
        assert pool.engine_transactions(digest) == sum(1 for ns, _ in pairs if ns == 0)
    assert pool.engine_transactions(b"\x99" * 32) == 0  # not kept: counted as any other


async def test_pairs_of_a_batch_are_the_same_verified_unverified_and_from_the_store(
    tmp_path: Path,
) -> None:
    from sequencer_net.batches.batch import decode_batch
    from sequencer_net.mempool.transaction import tx_hash

    txs = [signed(sender=i, nonce=i, namespace=i % 3) for i in range(6)]
    encoded = batch_of(1, 0, txs)
    digest = batch_digest(encoded)
    expected = [(i % 3, tx_hash(tx)) for i, tx in enumerate(txs)]
    got = []
    for verify in (True, False):
        s = NodeStore(tmp_path / f"db{verify}", sync=False)
        try:
            pool, _ = make_pool(s)
            assert await pool.receive(1, encoded, verify=verify) == digest
            got.append(pool.namespace_pairs(digest))
            assert pool.size_of(digest) == BatchSize(*_size(decode_batch(encoded)))
            pool._pairs.clear()  # evicted: read from the store
            got.append(pool.namespace_pairs(digest))
        finally:
            s.close()
    assert got == [expected] * 4


def _size(batch: Batch) -> tuple[int, int]:
    return (len(batch.transactions), sum(len(tx) for tx in batch.transactions))
