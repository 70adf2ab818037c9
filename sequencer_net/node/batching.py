"""The node's two batch tasks: cutting its own batches, taking in its peers'.

Own batches: the batcher waits (on an event the intake or a new own
certificate sets, or the oldest transaction's deadline, never a polling loop)
until a batch is due, cuts it, stores it once (group commit) and only then
broadcasts it. While own batches wait for their certificates, a batch that is
not full waits longer (BatchLimits.hold_ms), so a busy validator cuts fewer,
larger batches.

Peers' batches: frames from the BATCH channel go into a bounded queue, apart
from consensus messages, so verifying a large batch never delays a vote;
a few tasks take batches from the queue and verify them in the verifier pool
if this node is one of the batch's designated verifiers (`must_verify`), or
check only their structure otherwise. When the queue is full a batch is
dropped (and counted): a block that names it makes voters fetch it by digest.
A stored batch is acknowledged to its author, saying whether it was verified
here (sequencer_net/node/certifying.py).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from sequencer_net.api.intake import Accepted, Outcome
from sequencer_net.batches.batch import (
    Batch,
    BatchBuilder,
    batch_digest,
    encode_batch,
)
from sequencer_net.batches.pool import BatchPool
from sequencer_net.mempool.limits import MAX_BATCH_BYTES
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.metrics import Metrics

log = logging.getLogger("seqnet.batches")

INBOUND_BATCH_QUEUE = 256
"""Peer batches waiting for verification (a few seconds of every validator's
batches at 50 ms each); beyond it new ones are dropped and fetched if needed."""

FORWARD_RETRY_S = 0.5
"""How long a node outside the set waits before forwarding again after no member
took its transactions (none answered, or one asked it to slow down)."""

FORWARD_AT_ONCE = 256
"""Transactions a node outside the set forwards in one round."""

RETRY_LATER = frozenset({429, 503})
"""Refusals that say "not now", not "never": the transaction stays to be forwarded again."""

BATCH_VERIFIERS = 4
"""Peer batches verified at once (each spreads over the verifier pool's threads)."""


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class OwnBatches:
    def __init__(
        self,
        *,
        batcher: BatchBuilder,
        mempool: Mempool,
        pool: BatchPool,
        broadcast: Callable[[bytes], None],
        metrics: Metrics,
        clock_ms: Callable[[], int] = monotonic_ms,
        on_batch: Callable[[bytes, bytes, Batch], None] = lambda digest, encoded, batch: None,
        may_cut: Callable[[], bool] = lambda: True,
        forward: Callable[[bytes], Awaitable[Outcome | None]] | None = None,
        forget: Callable[[list[bytes]], None] = lambda hashes: None,
        uncertified: Callable[[], int] = lambda: 0,
    ) -> None:
        self.batcher = batcher
        self.mempool = mempool
        self.pool = pool
        self.broadcast = broadcast
        self.metrics = metrics
        self.clock_ms = clock_ms
        self.on_batch = on_batch
        """Told of each own batch once stored and broadcast (its author's ack)."""
        self.may_cut = may_cut
        """False while this node is not a member of the current validator-set
        epoch: the members would not acknowledge its batches, so its
        transactions wait in the mempool until it is a member again
        (`membership_changed`), unless `forward` hands them on."""
        self.forward = forward
        """Submits one transaction to a member of the current epoch and returns its
        answer (None: no member answered). While this node is outside the set, its
        acknowledged transactions go on this way, each member's acceptance
        (persisted there) releasing this node's copy (`forget`: its pending
        record)."""
        self.forget = forget
        self.uncertified = uncertified
        """Own batches broadcast and still gathering acknowledgements (the
        certifier); `certified` wakes the batcher when one is certified."""
        self._arrived = trio.Event()

    def membership_changed(self) -> None:
        """The node entered an epoch: cutting may be allowed again."""
        self._arrived.set()

    def transactions_arrived(self) -> None:
        """The intake added transactions: maybe a batch is due now."""
        self._arrived.set()

    def certified(self) -> None:
        """An own batch was certified: a batch held for it may be due now."""
        self._arrived.set()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            if not self.may_cut():
                if self.forward is not None and self.mempool.oldest_untaken_ms() is not None:
                    if not await self._forward_round():
                        with trio.move_on_after(FORWARD_RETRY_S):
                            await self._arrived.wait()
                        self._arrived = trio.Event()
                    continue
                await self._arrived.wait()
                self._arrived = trio.Event()
                continue
            now_ms = self.clock_ms()
            oldest_ms = self.mempool.oldest_untaken_ms()
            # When the batch would have been due without the hold: what the hold
            # added to its oldest transaction's wait is logged (`held_ms`).
            unheld_ms = self.batcher.deadline_ms(self.mempool)
            cut = self.batcher.cut(self.mempool, now_ms, self.uncertified())
            if cut is None:
                await self._wait_until_due()
                continue
            batch, taken = cut
            encoded = encode_batch(batch)
            digest = batch_digest(encoded)
            log.info(
                "event=batch_cut digest=%s sequence=%d txs=%d waited_ms=%d held_ms=%d",
                digest.hex()[:12],
                batch.sequence,
                len(batch.transactions),
                0 if oldest_ms is None else now_ms - oldest_ms,
                0 if unheld_ms is None else max(0, now_ms - unheld_ms),
            )
            await self.pool.add_own(digest, encoded, batch, taken)  # durable before it leaves
            self.metrics.batches_created.inc()
            self.broadcast(encoded)
            self.on_batch(digest, encoded, batch)

    async def _forward_round(self) -> bool:
        """Hand the oldest untaken transactions to the set's members, one by one;
        False when a member was not reached or asked to retry (wait, then again).
        A transaction a member accepted, already holds, or refuses for good leaves
        this node's mempool; one refused "not now" stays, in order."""
        assert self.forward is not None
        taken = self.mempool.take_batch(FORWARD_AT_ONCE, MAX_BATCH_BYTES)
        done: list[bytes] = []
        progressed = True
        for checked in taken:
            if self.may_cut():
                break  # a member again: the rest go into its own batches
            outcome = await self.forward(checked.encoded)
            if outcome is None or (
                not isinstance(outcome, Accepted) and outcome.status in RETRY_LATER
            ):
                progressed = False
                break
            if not isinstance(outcome, Accepted) and outcome.status != 409:
                log.info("event=forward_refused tx=%s code=%s", checked.hash.hex(), outcome.code)
            done.append(checked.hash)
        if done:
            self.mempool.discard(done)
            self.forget(done)
            self.metrics.forwarded_txs.inc(len(done))
        return progressed and bool(taken)

    async def _wait_until_due(self) -> None:
        deadline = self.batcher.deadline_ms(self.mempool, self.uncertified())
        wait_s = math.inf if deadline is None else max(0, deadline - self.clock_ms()) / 1000
        with trio.move_on_after(wait_s):
            await self._arrived.wait()
        self._arrived = trio.Event()


class PeerBatches:
    def __init__(
        self,
        pool: BatchPool,
        metrics: Metrics,
        acknowledge: Callable[[int, bytes], Awaitable[None]] | None = None,
        must_verify: Callable[[int], bool] = lambda author: True,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.acknowledge = acknowledge
        """Acknowledges a stored batch to its author (the certifier)."""
        self.must_verify = must_verify
        """Whether this node verifies an author's batches on arrival (the
        certifier's designated verifiers; without certificates, always)."""
        self._send, self._receive = trio.open_memory_channel[tuple[int, bytes, bytes | None]](
            INBOUND_BATCH_QUEUE
        )

    def offer(self, peer: int, encoded: bytes) -> None:
        """A batch frame from validator `peer` (never blocks the inbound loop).
        Its digest is computed once, here, and travels with it to the pool."""
        digest = batch_digest(encoded) if len(encoded) <= MAX_BATCH_BYTES else None
        try:
            self._send.send_nowait((peer, encoded, digest))
        except trio.WouldBlock:
            self.metrics.dropped_batches.inc()
            return
        if digest is not None:
            self.pool.expect(digest, encoded)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(BATCH_VERIFIERS):
                nursery.start_soon(self._verify_loop)
            task_status.started()

    async def _verify_loop(self) -> None:
        async for peer, encoded, known in self._receive:
            digest = await self.pool.receive(
                peer, encoded, verify=self.must_verify(peer), digest=known
            )
            if digest is not None and self.acknowledge is not None:
                await self.acknowledge(peer, digest)
