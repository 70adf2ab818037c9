"""Decryption after commit: four validators' decryptors wired in memory (no sockets).

They open a block's envelopes together, persist their shares before sending,
re-serve them from the store after a restart, ignore shares signed for
another index or failing their proof, and a full node (no share) opens the
block from what it asks for."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from consensus.crypto import keccak256
from sequencer_net.execution.block import FailedReveal, SequencedTransaction
from sequencer_net.fairness.envelope import Envelope, label_of, open_envelope, seal
from sequencer_net.fairness.group import encode_point, mul_base
from sequencer_net.fairness.limits import MAX_BLOCK_SHARES_BYTES, MAX_SHARE_BYTES
from sequencer_net.fairness.order import order_seed_tag
from sequencer_net.fairness.tdh2 import (
    BlockShares,
    CiphertextProofCache,
    CoinShare,
    VerifiedShare,
    block_shares,
    coin_share,
    combine_coin,
    deal,
    encode,
)
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction
from sequencer_net.node.decryption import (
    ASK_AFTER_S,
    BEHIND_HEIGHTS,
    INLINE_CIPHERTEXTS,
    MAX_SHARES_MESSAGE_BYTES,
    BlockOpening,
    Decryptor,
    Judged,
    KeyEpochs,
    MalformedSharesMessage,
    OpenedBlock,
    SharesMessage,
    decode_shares_message,
    encode_shares_message,
    encode_shares_request,
    first_ask_after,
    revealed_transaction,
)
from sequencer_net.node.requests import RequestKind
from sequencer_net.storage.node_store import NodeStore
from tests.mempool.factories import DOMAIN, KEYS, carrying_batch

SEED = 5
KEYSET, SHARES = deal(4, 2, random.Random(SEED).randbytes)
BLOCK = keccak256(b"block 3")
HEIGHT = 3


def envelope(sender: int, nonce: int, payload: bytes = b"order") -> Envelope:
    tx = sign_transaction(KEYS[sender], DOMAIN, nonce, 1, 0, payload)
    rng = random.Random(SEED + 100 * sender + nonce).randbytes
    return seal(KEYS[sender], DOMAIN, KEYSET.public_key, 0, 100, 10, tx, rng)


ENVELOPES = [envelope(0, 0), envelope(1, 0, b"another"), envelope(0, 1)]
TAG = order_seed_tag(DOMAIN.chain_id, HEIGHT, BLOCK)
ORDER_SEED = combine_coin(TAG, [coin_share(SHARES[i], TAG) for i in range(2)], KEYSET)


def opening(envelopes: list[Envelope] = ENVELOPES) -> BlockOpening:
    cts = [e.ciphertext for e in envelopes]
    return BlockOpening(HEIGHT, BLOCK, TAG, cts, [label_of(e) for e in envelopes], KEYSET)


def message(i: int, envelopes: list[Envelope] = ENVELOPES) -> SharesMessage:
    """Validator i's honest share message for the block."""
    cts = [e.ciphertext for e in envelopes]
    shares = b""
    if envelopes:
        shares = encode(block_shares(SHARES[i], cts, [label_of(e) for e in envelopes]))
    return SharesMessage(HEIGHT, BLOCK, shares, encode(coin_share(SHARES[i], TAG)))


class Net:
    """Four validators' decryptors; broadcasts and requests are direct calls."""

    def __init__(self, directory: Path) -> None:
        self.stores = [
            NodeStore(directory / f"n{i}", genesis_digest=keccak256(b"g"), sync=False)
            for i in range(4)
        ]
        self.down: set[int] = set()
        self.sent: list[tuple[int, bytes]] = []
        self.decryptors = [self.make(i) for i in range(4)]

    def make(self, i: int, key_share: bool = True) -> Decryptor:
        def broadcast(data: bytes) -> None:
            # Persisted before sent: the store already holds what goes out.
            assert self.stores[i].own_shares(HEIGHT) == data
            self.sent.append((i, data))
            for j, other in enumerate(self.decryptors):
                if j != i and j not in self.down:
                    other.on_message(i, data)

        async def request(peer: int, data: bytes, timeout: float) -> bytes:
            if peer in self.down:
                raise OSError("down")
            assert data[:1] == RequestKind.SHARES.value
            return self.decryptors[peer].answer_request(data[1:])

        return Decryptor(
            chain_id=DOMAIN.chain_id,
            epochs=KeyEpochs.single(KEYSET, SHARES[i] if key_share else None),
            store=self.stores[i],
            broadcast=broadcast,
            request=request,
            executed=lambda: HEIGHT - 1,
            me=i if key_share else None,
        )

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    yield n
    n.close()


def plaintexts() -> list[bytes]:
    out = []
    for sender, nonce, payload in ((0, 0, b"order"), (1, 0, b"another"), (0, 1, b"order")):
        tx = sign_transaction(KEYS[sender], DOMAIN, nonce, 1, 0, payload)
        out.append(encode_transaction(tx))
    return out


def parts(m: SharesMessage) -> tuple[BlockShares | None, CoinShare]:
    _, shares, coin = decode_shares_message(encode_shares_message(m))
    return shares, coin


def test_block_decryption_needs_t_verified_messages_and_drops_a_bad_one() -> None:
    cts = [e.ciphertext for e in ENVELOPES]
    labels = [label_of(e) for e in ENVELOPES]
    job = opening()
    honest = [parts(message(i)) for i in range(4)]
    shares1 = block_shares(SHARES[1], cts, labels)
    forged = msgspec.structs.replace(shares1, values=list(reversed(shares1.values)))
    assert not job.offer(forged, honest[1][1]) and 2 in job.refused
    assert not job.offer(*honest[1])  # a refused index is not tried again
    assert job.offer(*honest[0]) and not job.ready
    assert job.heard() == {1, 2} and job.has_heard(2) and not job.has_heard(4)
    assert job.offer(*honest[3]) and job.ready
    opened = job.open()
    assert [o[32:] for o in opened.plaintexts] == plaintexts()
    assert opened.order_seed == ORDER_SEED  # any t verified coin shares: the same seed


def test_a_wrong_coin_share_with_a_valid_looking_proof_refuses_the_message() -> None:
    """Validator 2 sends a coin share for another tag (a real point with a real
    proof, just not on this block's coin): its whole message is refused, and
    so are one with no block shares for a block that has envelopes, and one
    with block shares for a block that has none."""
    job = opening()
    shares2, _ = parts(message(1))
    other = coin_share(SHARES[1], order_seed_tag(DOMAIN.chain_id, HEIGHT + 1, BLOCK))
    assert not job.offer(shares2, other) and job.refused == {2}
    _, coin3 = parts(message(2))
    assert not job.offer(None, coin3) and job.refused == {2, 3}
    # A proof made for the wrong value: x_i H(tag) replaced by another point.
    _, honest4 = parts(message(3))
    wrong = msgspec.structs.replace(honest4, value=other.value)
    assert not job.accept(KEYSET.verification_keys[3], parts(message(3))[0], wrong)
    empty = opening([])
    shares1, coin1 = parts(message(0))
    assert not empty.offer(shares1, coin1) and empty.refused == {1}
    assert empty.offer(*parts(message(1, []))) and not empty.ready
    assert empty.offer(*parts(message(3, []))) and empty.ready
    assert empty.open().order_seed == ORDER_SEED and empty.open().plaintexts == []


def test_own_shares_count_unverified_and_a_wrong_value_first_does_not_fail_the_block() -> None:
    """Validator 1 keeps its own message as made; validator 2's message, with
    one wrong value under its honest proof, arrives first and is refused whole;
    validator 4's honest one completes t. Every ciphertext opens, and
    validator 4 (its own message plus validator 1's) gets the same result."""
    job = opening()
    job.offer_own(SHARES[0], *parts(message(0)))
    assert 1 in job.verified and not job.ready
    shares2, coin2 = parts(message(1))
    assert shares2 is not None
    values = list(shares2.values)
    values[1] = encode_point(mul_base(4242))
    wrong = msgspec.structs.replace(shares2, values=values)
    assert not job.offer(wrong, coin2) and job.refused == {2}
    assert job.offer(*parts(message(3))) and job.ready
    opened = job.open()
    assert [o[32:] for o in opened.plaintexts] == plaintexts()
    other = opening()
    other.offer_own(SHARES[3], *parts(message(3)))
    assert other.offer(*parts(message(0))) and other.ready
    assert other.open() == opened
    # own shares must be this validator's, for exactly this block's ciphertexts
    with pytest.raises(ValueError):
        opening().offer_own(SHARES[1], *parts(message(0)))
    with pytest.raises(ValueError):
        opening(ENVELOPES[:2]).offer_own(SHARES[0], *parts(message(0)))


async def test_shares_are_made_without_checking_proofs_intake_checked(net: Net) -> None:
    """A validator whose intake checked the block's envelopes (the shared
    proof cache) makes its shares without checking those proofs again."""
    cache = CiphertextProofCache()
    for e in ENVELOPES:
        open_envelope(msgspec.msgpack.encode(e), DOMAIN, KEYSET.public_key, 0, 1, cache)
    net.decryptors[0].proofs = cache
    net.stores[1].save_own_shares(HEIGHT, encode_shares_message(message(1)))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for d in net.decryptors:
                await nursery.start(d.run)
            opened = await net.decryptors[0].open_block(HEIGHT, BLOCK, ENVELOPES)
            nursery.cancel_scope.cancel()
    assert cache.hits == len(ENVELOPES)
    assert [o[32:] for o in opened.plaintexts] == plaintexts()  # type: ignore[index]


async def test_four_validators_open_the_block(net: Net) -> None:
    async with trio.open_nursery() as nursery:
        for d in net.decryptors:
            await nursery.start(d.run)
        results: dict[int, OpenedBlock] = {}

        async def open_at(i: int) -> None:
            results[i] = await net.decryptors[i].open_block(HEIGHT, BLOCK, ENVELOPES)

        for i in (1, 2):  # as the commit pipeline does when it has fetched the block
            net.decryptors[i].begin(HEIGHT, BLOCK, ENVELOPES)
            assert HEIGHT in net.decryptors[i]._jobs
        async with trio.open_nursery() as openers:
            for i in range(4):
                openers.start_soon(open_at, i)
        nursery.cancel_scope.cancel()
    assert all(r == results[0] for r in results.values())
    assert [r[32:] for r in results[0].plaintexts] == plaintexts()  # type: ignore[index]
    assert results[0].order_seed == ORDER_SEED
    assert sorted(i for i, _ in net.sent) == [0, 1, 2, 3]  # one message each


async def test_a_late_node_asks_and_a_restarted_one_re_serves(net: Net) -> None:
    # Validators 0 and 1 committed and released their shares, then 1 restarted.
    for i in (0, 1):
        net.stores[i].save_own_shares(HEIGHT, encode_shares_message(message(i)))
    net.decryptors[1] = net.make(1)  # a fresh process: only its store remains
    net.down = {2}
    with trio.fail_after(10):
        opened = await net.decryptors[3].open_block(HEIGHT, BLOCK, ENVELOPES)
    assert [o[32:] for o in opened.plaintexts] == plaintexts()  # type: ignore[index]
    assert opened.order_seed == ORDER_SEED
    # A full node (no share) opens it from what it asks for.
    full = net.make(3, key_share=False)
    with trio.fail_after(10):
        assert await full.open_block(HEIGHT, BLOCK, ENVELOPES) == opened
    # Nothing is served for a block this node did not commit.
    assert net.decryptors[2].answer_request(encode_shares_request(HEIGHT + 1)[1:]) == b""


async def test_shares_naming_another_index_are_ignored(net: Net) -> None:
    data = encode_shares_message(message(0))
    net.down = {0, 1, 2}
    decryptor = net.decryptors[3]

    async def opener() -> None:
        await decryptor.open_block(HEIGHT, BLOCK, ENVELOPES)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(decryptor.run)
        nursery.start_soon(opener)
        await trio.sleep(0.05)
        decryptor.on_message(2, data)  # validator 2 relaying validator 0's shares
        await trio.sleep(0.5)
        job = decryptor._jobs[HEIGHT].decryption
        assert set(job.verified) == {4}  # only its own
        decryptor.on_message(0, data)  # from validator 0 itself: accepted
        with trio.fail_after(5):
            while HEIGHT in decryptor._jobs:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


def test_message_bounds() -> None:
    with pytest.raises(MalformedSharesMessage, match="exceed"):
        decode_shares_message(b"\x93" + bytes(MAX_SHARES_MESSAGE_BYTES))
    coin = encode(CoinShare(1, bytes(33), bytes(32), bytes(32)))
    good = SharesMessage(HEIGHT, BLOCK, encode(BlockShares(1, [], bytes(32), bytes(32))), coin)
    decoded, shares, coin_part = decode_shares_message(encode_shares_message(good))
    assert decoded == good and shares is not None and shares.index == coin_part.index == 1
    with pytest.raises(MalformedSharesMessage):
        decode_shares_message(encode_shares_message(good)[:-1])
    # Block shares and coin share of two different shareholders.
    mixed = msgspec.structs.replace(
        good, coin=encode(CoinShare(2, bytes(33), bytes(32), bytes(32)))
    )
    with pytest.raises(MalformedSharesMessage, match="different"):
        decode_shares_message(encode_shares_message(mixed))
    # A block opening no envelope: empty block shares, the coin share alone.
    alone = msgspec.structs.replace(good, shares=b"")
    assert decode_shares_message(encode_shares_message(alone))[1] is None
    with pytest.raises(MalformedSharesMessage):  # the coin share is required
        decode_shares_message(encode_shares_message(msgspec.structs.replace(good, coin=b"")))
    # The widest legal message fits the cap.
    widest = SharesMessage(2**63 - 1, BLOCK, bytes(MAX_BLOCK_SHARES_BYTES), bytes(MAX_SHARE_BYTES))
    assert len(encode_shares_message(widest)) <= MAX_SHARES_MESSAGE_BYTES


def test_revealed_transaction_is_the_inner_tx_under_the_envelope_hash() -> None:
    h = keccak256(b"wire")
    job = opening()
    for i in (0, 1):
        job.offer(*parts(message(i)))
    opened = job.open().plaintexts
    inner = revealed_transaction(h, ENVELOPES[1], opened[1], DOMAIN)
    assert isinstance(inner, SequencedTransaction)
    assert (inner.tx_hash, inner.sender, inner.nonce, inner.payload) == (
        h,
        KEYS[1].address,
        0,
        b"another",
    )
    # The right transaction behind another blind: the payload hash fails.
    bad = revealed_transaction(h, ENVELOPES[0], b"\x00" * 32 + plaintexts()[0], DOMAIN)
    assert bad == FailedReveal(h, KEYS[0].address, 10, "payload_hash_mismatch")


async def test_the_commit_pipeline_reveals_in_place(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expired envelopes and those past the per-block limit are never decrypted;
    the others become their inner transactions at their positions."""
    from sequencer_net.mempool.encrypted import encode_encrypted
    from sequencer_net.node import commit
    from sequencer_net.node.commit import CommitPipeline, ResolvedTransaction

    monkeypatch.setattr(commit, "MAX_BLOCK_CIPHERTEXTS", 2)
    expired = envelope(2, 0)
    expired = msgspec.structs.replace(expired, expiry_height=HEIGHT - 1)
    order = [ENVELOPES[0], expired, ENVELOPES[1], ENVELOPES[2]]
    resolved = [
        ResolvedTransaction(
            encode_encrypted(e),
            FailedReveal(keccak256(encode_encrypted(e)), e.sender, e.max_fee, "not_decrypted"),
            e,
        )
        for e in order
    ]

    class Pool:  # senders remembered from batch verification
        def sender_of(self, h: bytes) -> tuple[bytes, int]:
            return next(e.sender for e in order if keccak256(encode_encrypted(e)) == h), -1

    pipeline = CommitPipeline.__new__(CommitPipeline)
    pipeline.domain = DOMAIN
    pipeline.decryptor = net.decryptors[0]
    pipeline.pool = Pool()  # type: ignore[assignment]
    batches = [
        carrying_batch(DOMAIN, author=0, sequence=0, transactions=[r.encoded for r in resolved])
    ]
    net.down = {2, 3}  # validator 1 answers when asked
    net.stores[1].save_own_shares(HEIGHT, encode_shares_message(message(1, ENVELOPES[:2])))
    with trio.fail_after(10):
        out, seed = await pipeline.open_block(HEIGHT, BLOCK, resolved, batches)
    assert seed == ORDER_SEED
    kinds = [r.sequenced.reason if isinstance(r.sequenced, FailedReveal) else "tx" for r in out]
    assert kinds == ["tx", "expired", "tx", "block_envelope_limit"]
    assert [r.sequenced.tx_hash for r in out] == [r.sequenced.tx_hash for r in resolved]
    assert [r.sequenced.fee for r in out[1::2]] == [0, 0]


async def test_a_discarded_block_stops_gathering(net: Net) -> None:
    net.down = {0, 1, 2}  # nobody answers: the job would ask forever
    decryptor = net.decryptors[3]
    async with trio.open_nursery() as nursery:
        await nursery.start(decryptor.run)
        decryptor.begin(HEIGHT, BLOCK, ENVELOPES)
        job = decryptor._jobs[HEIGHT]
        await trio.sleep(0.05)
        assert net.stores[3].own_shares(HEIGHT) is not None  # released, then waiting
        decryptor.discard(HEIGHT)
        assert HEIGHT not in decryptor._jobs and job.scope.cancel_called
        assert not job.done.is_set()
        nursery.cancel_scope.cancel()


async def test_a_job_superseded_by_other_envelopes_stops_gathering(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block begun on three envelopes and then opened on two: the opening on
    two replaces the first job, which is cancelled (its task ends) rather than
    left asking peers for a message nobody awaits. Validator 1 answers for the
    two envelopes (the first job refuses that), 2 and 3 are down: left alone,
    the first job would ask them forever."""
    net.down = {2, 3}
    net.stores[1].save_own_shares(HEIGHT, encode_shares_message(message(1, ENVELOPES[:2])))
    decryptor = net.decryptors[0]
    ended: list[int] = []
    work_in_scope = decryptor._work_in_scope

    async def recording(job: Any) -> None:
        try:
            await work_in_scope(job)
        finally:
            ended.append(len(job.decryption.ciphertexts))

    monkeypatch.setattr(decryptor, "_work_in_scope", recording)
    with trio.fail_after(10):  # a guard only
        async with trio.open_nursery() as nursery:
            await nursery.start(decryptor.run)
            decryptor.begin(HEIGHT, BLOCK, ENVELOPES)
            first = decryptor._jobs[HEIGHT]
            await trio.sleep(0.05)
            opened = await decryptor.open_block(HEIGHT, BLOCK, ENVELOPES[:2])
            assert first.scope.cancel_called and not first.done.is_set()
            while not ended:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert ended == [3]
    assert [o[32:] for o in opened.plaintexts] == plaintexts()[:2]  # type: ignore[index]


def test_a_block_far_behind_the_newest_heard_is_asked_for_at_once() -> None:
    assert first_ask_after(HEIGHT, HEIGHT + 1, validator=True) == ASK_AFTER_S
    assert first_ask_after(HEIGHT, HEIGHT + BEHIND_HEIGHTS - 1, validator=True) == ASK_AFTER_S
    assert first_ask_after(HEIGHT, HEIGHT + BEHIND_HEIGHTS, validator=True) == 0.0
    assert first_ask_after(HEIGHT, 0, validator=False) == 0.0  # a full node gets no broadcasts


async def test_a_block_opens_once_ready_without_waiting_for_a_peer_that_never_answers(
    net: Net,
) -> None:
    """Validator 0 asks the three others; 1 answers from its store, 2 and 3
    never answer. Once 1's message verifies, the block opens: the round of
    asking is cut short instead of waiting on the silent peers."""
    net.stores[1].save_own_shares(HEIGHT, encode_shares_message(message(1)))
    silent = trio.Event()  # never set

    async def request(peer: int, data: bytes, timeout: float) -> bytes:
        if peer in (2, 3):
            await silent.wait()
        return net.decryptors[peer].answer_request(data[1:])

    net.decryptors[0].request = request
    with trio.fail_after(10):  # a guard only: without the cut it would hang
        async with trio.open_nursery() as nursery:
            await nursery.start(net.decryptors[0].run)
            opened = await net.decryptors[0].open_block(HEIGHT, BLOCK, ENVELOPES)
            nursery.cancel_scope.cancel()
    assert [o[32:] for o in opened.plaintexts] == plaintexts()  # type: ignore[index]


async def test_requests_in_flight_when_the_block_opens_are_left_to_finish(net: Net) -> None:
    """A request cut short mid-exchange can cost the whole connection to its
    peer, so the ones still out when t messages are in are not cancelled:
    they finish (their answers ignored) while the block opens at once."""
    net.stores[1].save_own_shares(HEIGHT, encode_shares_message(message(1)))
    release, all_finished = trio.Event(), trio.Event()
    finished: list[int] = []
    cancelled: list[int] = []

    async def request(peer: int, data: bytes, timeout: float) -> bytes:
        try:
            if peer in (2, 3):
                await release.wait()
            answer = net.decryptors[peer].answer_request(data[1:])
        except trio.Cancelled:
            cancelled.append(peer)
            raise
        finished.append(peer)
        if len(finished) == 3:
            all_finished.set()
        return answer

    net.decryptors[0].request = request
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(net.decryptors[0].run)
            opened = await net.decryptors[0].open_block(HEIGHT, BLOCK, ENVELOPES)
            assert finished == [1] and cancelled == []  # opened with 2 and 3 still out
            release.set()
            await all_finished.wait()
            nursery.cancel_scope.cancel()
    assert sorted(finished) == [1, 2, 3] and cancelled == []
    assert [o[32:] for o in opened.plaintexts] == plaintexts()  # type: ignore[index]


class _SlowToRecordFirst(dict[int, list[VerifiedShare]]):
    """A `verified` map whose entry for index 1 takes 20 ms to record: it
    holds the thread recording validator 1's message between the parts of
    that message while the others carry on."""

    def __setitem__(self, index: int, value: list[VerifiedShare]) -> None:
        super().__setitem__(index, value)
        if index == 1:
            time.sleep(0.02)


def test_messages_recorded_from_several_threads_never_open_half_recorded() -> None:
    """A node verifies one block's messages in several worker threads at once
    (broadcasts and answers to its own requests), and the message that
    completes t opens the block in its thread while another may still be
    recording its own. Every open must see whole messages and give the one
    result: here validator 1's message is slow to record, and validator 2's,
    completing t meanwhile, must not open with half of it."""
    offered = [parts(message(i, [])) for i in range(4)]
    errors: list[BaseException] = []
    results: list[OpenedBlock] = []
    for _ in range(5):
        job = opening([])
        job.verified = _SlowToRecordFirst()

        def offer_then_open(i: int, job: BlockOpening = job) -> None:
            try:
                if job.offer(*offered[i]) and job.ready:
                    results.append(job.open())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=offer_then_open, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert results and {r.order_seed for r in results} == {ORDER_SEED}
    assert all(len(r.order_proof) == 2 for r in results)


def test_one_bad_message_judged_in_two_threads_at_once_is_refused_once() -> None:
    """The same bad message may arrive twice (a broadcast and an answer to this
    node's request) and be verified in two worker threads at once: one of
    them refuses it, the other finds it judged already, so the node counts
    and logs one refusal."""
    cts = [e.ciphertext for e in ENVELOPES]
    labels = [label_of(e) for e in ENVELOPES]
    shares1 = block_shares(SHARES[1], cts, labels)
    forged = msgspec.structs.replace(shares1, values=list(reversed(shares1.values)))
    coin = parts(message(1))[1]
    job = opening()
    both_inside = threading.Barrier(2, timeout=30)
    verify = job.accept

    def accept_together(*args: Any) -> tuple[list[VerifiedShare], Any] | None:
        both_inside.wait()  # both threads verify before either records
        return verify(*args)

    job.accept = accept_together  # type: ignore[method-assign,assignment]
    judged: list[Judged] = []

    def judge() -> None:
        judged.append(job.judge(forged, coin))

    threads = [threading.Thread(target=judge) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(j.value for j in judged) == ["nothing_new", "refused"]
    assert job.refused == {2} and job.verified == {}


async def test_an_early_peer_message_is_verified_while_the_own_message_is_made(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validator 1's message reached validator 0 before 0 got to the block (kept
    early). When 0 begins the block, it verifies that message while it makes
    and persists its own, not after: 0's synced write still runs when 1's
    message is already verified."""
    decryptor, store = net.decryptors[0], net.stores[0]
    save = store.save_own_shares
    verified_during_write: list[bool] = []

    def slow_save(height: int, data: bytes) -> None:
        job = decryptor._jobs[height].decryption
        deadline = time.monotonic() + 5.0  # a guard only: it takes milliseconds
        while 2 not in job.verified and time.monotonic() < deadline:
            time.sleep(0.001)
        verified_during_write.append(2 in job.verified)
        save(height, data)

    monkeypatch.setattr(store, "save_own_shares", slow_save)
    net.down = {2, 3}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(decryptor.run)
            decryptor.on_message(1, encode_shares_message(message(1)))
            while HEIGHT not in decryptor._early:
                await trio.sleep(0.001)
            opened = await decryptor.open_block(HEIGHT, BLOCK, ENVELOPES)
            nursery.cancel_scope.cancel()
    assert verified_during_write == [True]
    assert [o[32:] for o in opened.plaintexts] == plaintexts()  # type: ignore[index]
    assert [i for i, _ in net.sent] == [0]  # released all the same, after its write


def judged_in_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread of every `BlockOpening.judge` call (a message verified), in order."""
    threads: list[int] = []
    judge = BlockOpening.judge

    def recording(self: BlockOpening, shares: BlockShares | None, coin: CoinShare) -> Judged:
        threads.append(threading.get_ident())
        return judge(self, shares, coin)

    monkeypatch.setattr(BlockOpening, "judge", recording)
    return threads


async def open_with_early(
    net: Net, peers: list[int], envelopes: list[Envelope] = ENVELOPES
) -> OpenedBlock:
    """Validator 0 holds `peers`' messages (kept early) when it opens the block."""
    decryptor = net.decryptors[0]
    net.down = {1, 2, 3}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(decryptor.run)
            for peer in peers:
                decryptor.on_message(peer, encode_shares_message(message(peer, envelopes)))
            while len(decryptor._early.get(HEIGHT, {})) < len(peers):
                await trio.sleep(0.001)
            opened = await decryptor.open_block(HEIGHT, BLOCK, envelopes)
            nursery.cancel_scope.cancel()
    return opened


async def test_early_messages_are_verified_only_until_enough_are_in(
    net: Net, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """All three peers' messages came before validator 0 reached the block: with
    its own, t = 2 needs one of them, so one is verified, not three. The
    round's log line says the first peer's message came before the round."""
    judged = judged_in_threads(monkeypatch)
    with caplog.at_level(logging.INFO, logger="seqnet.decryption"):
        opened = await open_with_early(net, [1, 2, 3])
    assert len(judged) == 1
    (line,) = [r.getMessage() for r in caplog.records if "event=shares_round" in r.getMessage()]
    first_peer_ms = int(line.split("first_peer_ms=")[1].split()[0])
    assert first_peer_ms <= 0 and "completed_ms=" in line
    assert [o[32:] for o in opened.plaintexts] == plaintexts()  # type: ignore[index]
    assert opened.order_seed == ORDER_SEED


async def test_an_early_message_that_fails_is_followed_by_the_next(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    decryptor = net.decryptors[0]
    judged = judged_in_threads(monkeypatch)
    honest = message(1)
    wrong_coin = encode(coin_share(SHARES[1], b"another tag"))
    net.down = {1, 2, 3}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(decryptor.run)
            decryptor.on_message(
                1, encode_shares_message(msgspec.structs.replace(honest, coin=wrong_coin))
            )
            decryptor.on_message(2, encode_shares_message(message(2)))
            while len(decryptor._early.get(HEIGHT, {})) < 2:
                await trio.sleep(0.001)
            opened = await decryptor.open_block(HEIGHT, BLOCK, ENVELOPES)
            nursery.cancel_scope.cancel()
    assert len(judged) == 2 and decryptor.refused == 1
    assert opened.order_seed == ORDER_SEED


async def test_a_small_block_is_verified_on_the_event_loop_a_large_one_in_a_worker(
    net: Net, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A thread hop costs a busy node more than verifying a few ciphertexts'
    shares (INLINE_CIPHERTEXTS); many go to a worker thread."""
    judged = judged_in_threads(monkeypatch)
    await open_with_early(net, [1])
    assert judged == [threading.get_ident()]

    judged.clear()
    many = [envelope(sender, nonce) for sender in (0, 1, 2) for nonce in range(3)]
    assert len(many) == INLINE_CIPHERTEXTS + 1
    net.stores[0].close()
    net.stores[0] = NodeStore(tmp_path / "again", genesis_digest=keccak256(b"g"), sync=False)
    net.decryptors[0] = net.make(0)
    opened = await open_with_early(net, [1], many)
    assert len(judged) == 1 and judged[0] != threading.get_ident()
    assert len(opened.plaintexts) == len(many)
