"""Transaction intake: the one path every submission takes (a single JSON or raw
transaction, a JSON or msgpack batch, a WebSocket stream).

    limit per client address -> check signatures (verifier pool, off the loop;
    an encrypted transaction's envelope too, for ordering at the next height)
    -> admit into the mempool (fees, nonces, balance, per-sender and pool bounds)
    -> persist (group commit: one fsync covers every acknowledgement of a window)
    -> acknowledge

Nothing is acknowledged before the fsync that covers it: a crash right after
an answer loses nothing. A transaction the pool evicts for a better-paying one
is forgotten by the store too and its status becomes "dropped".
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio
from rocksdict import WriteBatch

from sequencer_net.api.errors import ApiError
from sequencer_net.mempool.encrypted import EncryptionOff, InvalidEncryptedTransaction
from sequencer_net.mempool.mempool import AddResult, CheckedTx, Mempool
from sequencer_net.mempool.transaction import InvalidTransaction, tx_hash
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.metrics import Metrics
from sequencer_net.storage.group_commit import GroupCommit, GroupWriteFailed
from sequencer_net.storage.node_store import NodeStore

log = logging.getLogger("seqnet.api")

REJECT_STATUS: dict[AddResult, int] = {
    AddResult.DUPLICATE: 409,
    AddResult.FEE_TOO_LOW: 400,
    AddResult.NONCE_USED: 400,
    AddResult.NONCE_TOO_HIGH: 400,
    AddResult.NONCE_TAKEN: 409,
    AddResult.INSUFFICIENT_BALANCE: 402,
    AddResult.SENDER_LIMIT: 429,
    AddResult.FULL: 503,
}

MAX_TRACKED_CLIENTS = 10_000
"""Client addresses with a rate bucket; the least recently seen are forgotten."""


@dataclass(frozen=True, slots=True)
class Accepted:
    hash: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    status: int
    code: str
    message: str


Outcome = Accepted | Refused


class _Bucket:
    """A token bucket: `rate` tokens per second, at most `burst` saved up."""

    __slots__ = ("tokens", "updated")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = burst
        self.updated = now


class Intake:
    def __init__(
        self,
        *,
        mempool: Mempool,
        verifier: VerifierPool,
        group: GroupCommit,
        store: NodeStore,
        metrics: Metrics,
        accepted_at: dict[bytes, float],
        client_rate: float,
        client_burst: float,
        on_accepted: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        ordering_height: Callable[[], int] = lambda: 0,
    ) -> None:
        self.mempool = mempool
        self.verifier = verifier
        self.group = group
        self.store = store
        self.metrics = metrics
        self.accepted_at = accepted_at
        self.client_rate = client_rate
        self.client_burst = client_burst
        self._on_accepted = on_accepted
        self._clock = clock
        self._ordering_height = ordering_height
        """The height a transaction accepted now is ordered at, at the earliest
        (an envelope that expires before it is refused)."""
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._persisting: dict[bytes, trio.Event] = {}
        """Hashes admitted here whose synced write (group commit, in a worker
        thread) has not finished: set when it ends, however it ends."""

    def take_client_allowance(self, client: str, count: int) -> int:
        """How many of `count` transactions `client` may submit now (per address)."""
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = _Bucket(self.client_burst, now)
            while len(self._buckets) > MAX_TRACKED_CLIENTS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        bucket.tokens = min(
            self.client_burst, bucket.tokens + (now - bucket.updated) * self.client_rate
        )
        bucket.updated = now
        allowed = min(count, int(bucket.tokens))
        bucket.tokens -= allowed
        return allowed

    async def submit(self, items: Sequence[bytes | Refused], client: str) -> list[Outcome]:
        """Check, admit, persist, then answer, for each transaction in order (an
        item already refused by the caller's parsing keeps its answer)."""
        outcomes: list[Outcome | None] = [
            item if isinstance(item, Refused) else None for item in items
        ]
        candidates = [i for i, item in enumerate(items) if not isinstance(item, Refused)]
        allowed = self.take_client_allowance(client, len(candidates))
        for i in candidates[allowed:]:
            outcomes[i] = Refused(429, "rate_limited", "too many transactions from this client")
        encoded: dict[int, bytes] = {}
        hashes: dict[int, bytes] = {}  # each hashed once: the check below reuses it
        fresh: list[int] = []
        again: list[int] = []
        for i in candidates[:allowed]:
            item = items[i]
            assert not isinstance(item, Refused)
            encoded[i] = item
            hashes[i] = tx_hash(item)
            if self.mempool.seen(hashes[i]):  # a re-submission: skip its check
                again.append(i)
            else:
                fresh.append(i)
        checked = await self.verifier.check_many(
            [encoded[i] for i in fresh],
            ordering_height=self._ordering_height(),
            hashes=[hashes[i] for i in fresh],
        )
        now_ms = time.monotonic_ns() // 1_000_000
        admitted: list[CheckedTx] = []
        evicted: list[bytes] = []
        for i, result in zip(fresh, checked, strict=True):
            if isinstance(result, InvalidEncryptedTransaction | EncryptionOff):
                reason = getattr(result, "reason", type(result).__name__)
                self.metrics.rejected_txs.labels(code=reason).inc()
                outcomes[i] = Refused(400, "invalid_envelope", str(result))
                continue
            if isinstance(result, InvalidTransaction):
                self.metrics.rejected_txs.labels(code=type(result).__name__).inc()
                outcomes[i] = Refused(400, "invalid_transaction", str(result))
                continue
            added, gone = self.mempool.add(result, now_ms=now_ms)
            if added is not AddResult.ACCEPTED:
                self.metrics.rejected_txs.labels(code=added.name.lower()).inc()
                outcomes[i] = Refused(REJECT_STATUS[added], added.name.lower(), added.value)
                continue
            evicted.extend(gone)
            admitted.append(result)
            outcomes[i] = Accepted(result.hash)
        if evicted:
            self.store.remove_pending(evicted)
            self.metrics.evicted_txs.inc(len(evicted))
        if admitted:
            self._on_accepted()  # the batcher may cut a batch already (not ack'd yet)
            await self._persist(admitted)
        for i in again:
            outcomes[i] = await self._resubmitted(hashes[i])
        return [o for o in outcomes if o is not None]

    async def _resubmitted(self, hash_: bytes) -> Refused:
        """409 `duplicate` for a transaction this node holds, sent only once it
        is durable: a copy admitted by an earlier request whose synced write is
        still running (a client retrying a slow answer) is waited for, and if
        that write failed nothing was accepted."""
        waited = False
        while (writing := self._persisting.get(hash_)) is not None:
            await writing.wait()
            waited = True
        if waited and not self.mempool.seen(hash_):
            return Refused(503, "storage_failed", "could not persist; nothing accepted")
        return Refused(409, "duplicate", AddResult.DUPLICATE.value)

    async def _persist(self, admitted: list[CheckedTx]) -> None:
        """Persist before you promise: the answers leave only after this returns."""
        encoded = [c.encoded for c in admitted]
        hashes = [c.hash for c in admitted]

        def stage(batch: WriteBatch) -> None:
            self.store.stage_pending_transactions(batch, encoded, hashes)

        written = trio.Event()
        for c in admitted:
            self._persisting[c.hash] = written
        # Shielded: the transactions are in the mempool already, so a request
        # cancelled here (its client went away) must still learn how the write
        # ended, to keep them (durable) or take them out (failed). The wait is
        # bounded by one group commit; one that stops fails its waiters.
        with trio.CancelScope(shield=True):
            try:
                await self.group.write(stage)
            except GroupWriteFailed as exc:
                log.error("event=intake_persist_failed txs=%d reason=%s", len(admitted), exc)
                self.mempool.discard([c.hash for c in admitted])
                raise ApiError(
                    503, "storage_failed", "could not persist; nothing accepted"
                ) from exc
            finally:
                for c in admitted:
                    if self._persisting.get(c.hash) is written:
                        del self._persisting[c.hash]
                written.set()
        now = time.monotonic()
        for c in admitted:
            self.accepted_at[c.hash] = now
        self.metrics.accepted_txs.inc(len(admitted))
