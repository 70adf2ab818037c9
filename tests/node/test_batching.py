"""The node's batch tasks on trio's mock clock: own batches are cut when due
(woken by arrivals or the oldest transaction's deadline, never by polling),
stored before they are broadcast; peers' batches wait in their own queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from sequencer_net.batches.batch import BatchBuilder, batch_digest, decode_batch
from sequencer_net.batches.pool import BatchPool
from sequencer_net.mempool.limits import BatchLimits
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.metrics import Metrics
from sequencer_net.node.batching import INBOUND_BATCH_QUEUE, OwnBatches, PeerBatches
from sequencer_net.storage.group_commit import GroupCommit
from sequencer_net.storage.node_store import NodeStore
from tests.mempool.factories import DOMAIN
from tests.mempool.test_mempool import cached_tx


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = NodeStore(tmp_path / "db", sync=False)
    yield s
    s.close()


def clock_ms() -> int:
    return int(trio.current_time() * 1000)


async def test_a_batch_is_cut_at_its_deadline_stored_then_broadcast(
    store: NodeStore, autojump_clock: MockClock
) -> None:
    mempool = Mempool(DOMAIN)
    pool = BatchPool(store, VerifierPool(DOMAIN, threads=1), GroupCommit(store.write_synced))
    builder = BatchBuilder(0, BatchLimits(max_txs=100, max_delay_ms=50))
    polls = 0
    real_cut = builder.cut

    def counting_cut(*args: object) -> object:
        nonlocal polls
        polls += 1
        return real_cut(*args)  # type: ignore[arg-type]

    builder.cut = counting_cut  # type: ignore[method-assign, assignment]
    sent: list[tuple[float, bytes]] = []

    def broadcast(encoded: bytes) -> None:
        # Stored before it leaves: a restart never reuses its sequence.
        assert store.get_batch(batch_digest(encoded)) == encoded
        assert store.next_batch_sequence() == decode_batch(encoded).sequence + 1
        sent.append((trio.current_time(), encoded))

    own = OwnBatches(
        batcher=builder,
        mempool=mempool,
        pool=pool,
        broadcast=broadcast,
        metrics=Metrics(),
        clock_ms=clock_ms,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(own.run)
        await trio.sleep(1.0)
        assert polls == 1  # idle: one look, then waiting on an event, no polling
        start = trio.current_time()
        mempool.add(cached_tx(0, 0, 0), now_ms=clock_ms())
        own.transactions_arrived()
        await trio.sleep(0.01)
        mempool.add(cached_tx(1, 0, 0), now_ms=clock_ms())
        own.transactions_arrived()
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    (first_at, first), (second_at, second) = sent
    assert first_at - start == pytest.approx(0.0, abs=0.002)  # after a quiet spell: at once
    assert decode_batch(first).transactions == [cached_tx(0, 0, 0).encoded]
    # The next one waits out the delay since the previous cut (mock time: exactly).
    assert second_at - start == pytest.approx(0.05, abs=0.002)
    assert decode_batch(second).transactions == [cached_tx(1, 0, 0).encoded]
    assert polls <= 6


async def test_a_busy_validator_holds_its_next_batch_until_a_certificate_or_the_hold(
    store: NodeStore, autojump_clock: MockClock
) -> None:
    """With an own batch uncertified, the next one waits for its certificate (cut
    the moment `certified` is told, past the delay) or, if none comes, for hold_ms."""
    mempool = Mempool(DOMAIN)
    pool = BatchPool(store, VerifierPool(DOMAIN, threads=1), GroupCommit(store.write_synced))
    limits = BatchLimits(max_txs=100, max_delay_ms=50, max_uncertified=1, hold_ms=300)
    sent: list[float] = []
    uncertified = 0

    def broadcast(encoded: bytes) -> None:
        nonlocal uncertified
        sent.append(trio.current_time())
        uncertified += 1

    own = OwnBatches(
        batcher=BatchBuilder(0, limits),
        mempool=mempool,
        pool=pool,
        broadcast=broadcast,
        metrics=Metrics(),
        clock_ms=clock_ms,
        uncertified=lambda: uncertified,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(own.run)
        start = trio.current_time()
        mempool.add(cached_tx(0, 0, 0), now_ms=clock_ms())
        own.transactions_arrived()
        await trio.sleep(0.1)
        assert [t - start for t in sent] == [pytest.approx(0.0, abs=0.002)]  # none in flight
        mempool.add(cached_tx(1, 0, 0), now_ms=clock_ms())
        own.transactions_arrived()
        await trio.sleep(0.12)
        assert len(sent) == 1  # past the delay, held for the certificate
        uncertified = 0
        own.certified()
        await trio.sleep(0.01)
        assert [t - start for t in sent][1] == pytest.approx(0.22, abs=0.002)  # at once
        second_at = trio.current_time()
        mempool.add(cached_tx(2, 0, 0), now_ms=clock_ms())
        own.transactions_arrived()
        await trio.sleep(1.0)  # no certificate ever comes
        nursery.cancel_scope.cancel()
    assert len(sent) == 3
    assert sent[2] - second_at == pytest.approx(0.3, abs=0.002)  # the hold, then cut anyway


async def test_peer_batches_never_block_the_inbound_loop(store: NodeStore) -> None:
    pool = BatchPool(store, VerifierPool(DOMAIN, threads=1), GroupCommit(store.write_synced))
    metrics = Metrics()
    peers = PeerBatches(pool, metrics)
    for i in range(INBOUND_BATCH_QUEUE + 5):  # nobody verifies yet: the queue fills
        peers.offer(1, b"batch %d" % i)
    assert metrics.dropped_batches._value.get() == 5


async def test_outside_the_set_transactions_go_to_the_members_instead_of_a_batch(
    store: NodeStore, autojump_clock: MockClock
) -> None:
    """A node outside the current epoch's set cuts no batch: each acknowledged
    transaction goes to a member (`forward`), and only a member's answer releases
    it. "Not now" answers (429, 503, nobody reached) keep it, in order, for a retry;
    accepted, duplicate and refused-for-good ones leave the mempool and the
    pending store."""
    from sequencer_net.api.intake import Accepted, Refused

    mempool = Mempool(DOMAIN)
    pool = BatchPool(store, VerifierPool(DOMAIN, threads=1), GroupCommit(store.write_synced))
    txs = [cached_tx(0, nonce, 0) for nonce in range(4)]
    for tx in txs:
        mempool.add(tx, now_ms=0)
    store.save_pending_transactions([tx.encoded for tx in txs])
    answers: list[object] = [
        None,  # no member reached: wait, then again
        Accepted(txs[0].hash),
        Refused(429, "rate_limited", "slow down"),  # keeps txs[1..]
        Accepted(txs[1].hash),
        Refused(409, "duplicate", "already held"),
        Refused(400, "invalid_transaction", "nonce too low"),
    ]
    forwarded: list[tuple[float, bytes]] = []

    async def forward(raw: bytes) -> object:
        forwarded.append((trio.current_time(), raw))
        return answers.pop(0)

    member = False
    own = OwnBatches(
        batcher=BatchBuilder(0, BatchLimits(max_txs=100, max_delay_ms=50)),
        mempool=mempool,
        pool=pool,
        broadcast=lambda encoded: pytest.fail("no batch while outside the set"),
        metrics=Metrics(),
        clock_ms=clock_ms,
        may_cut=lambda: member,
        forward=forward,  # type: ignore[arg-type]
        forget=store.remove_pending,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(own.run)
        await trio.sleep(5.0)
        nursery.cancel_scope.cancel()
    sent = [raw for _, raw in forwarded]
    assert sent == [txs[0].encoded, txs[0].encoded, txs[1].encoded, *(tx.encoded for tx in txs[1:])]
    assert forwarded[1][0] - forwarded[0][0] == pytest.approx(0.5)  # FORWARD_RETRY_S
    assert len(mempool) == 0 and not answers
    assert store.load_pending_transactions() == []
