"""Batches this validator knows: its own and those other validators broadcast.

A peer's batch is verified here (every transaction's decoding, chain id and
signature, and that each recovers the sender the batch carries) when this
validator is one of the batch's designated verifiers, or when asked later
(`verify_held`); otherwise it is checked for structure only and stored
unverified (`receive(..., verify=False)`): a validator votes only for blocks
whose batches are certified, and a certificate shows that more than f of the
power verified the batch (sequencer_net/batches/certificate.py). A fetched
batch is verified unless it is certified already (`certified`). Checks run in
the verifier pool, off the event loop, so a large or hostile batch never
stalls consensus. A batch that
fails is remembered by digest (sending the same bytes again costs one hash),
and a validator that keeps sending invalid batches has its batches ignored
for a while. The pool answers peers' batch requests (within a byte budget)
and tells the leader which batches no block has included yet.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated

import msgspec
import trio
from rocksdict import WriteBatch

from sequencer_net.batches.batch import (
    Batch,
    InvalidBatch,
    InvalidBatchTransaction,
    batch_digest,
    batch_namespace_pairs,
    batch_tx_hashes,
    check_senders,
    checked_namespace_pairs,
    decode_batch,
)
from sequencer_net.logging_limits import LogLimiter
from sequencer_net.mempool.mempool import CheckedTx
from sequencer_net.mempool.transaction import InvalidTransaction
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.payload.checks import BatchSize
from sequencer_net.storage.group_commit import GroupCommit
from sequencer_net.storage.node_store import NodeStore

log = logging.getLogger("seqnet.batches")

MAX_BATCHES_PER_REQUEST = 64
MAX_BATCH_ANSWER_BYTES = 3 * 1024 * 1024
"""Encoded batches in one answer to a batch request: an answer always fits one
p2p response, whatever the batches' sizes; the asker asks again for the rest."""
MAX_KNOWN_BATCHES = 100_000
"""Batch digests remembered in memory (the bodies live in the store)."""
MAX_CACHED_PAIR_TXS = 400_000
"""Transactions whose (namespace, hash) the pool keeps for recent batches, so
the leader and voters compute a block's namespace root without decoding its
batches again (36 bytes each; older batches are decoded from the store)."""
MAX_WATCHED_TXS = 4_096
"""Transactions (forced ones) whose holding batches the pool keeps indexed
(`batches_holding`), least recently asked first forgotten."""
MAX_IN_FLIGHT = 4_096
"""Peers' batches queued for verification whose digests voters may wait on."""
MAX_REJECTED_BATCHES = 10_000
"""Digests of batches that failed verification, remembered so the same bytes
are refused for the cost of a hash."""
INVALID_BATCHES_BEFORE_THROTTLE = 3
THROTTLE_WINDOW_S = 60.0
"""A validator that sends this many invalid batches within the window has its
broadcast batches ignored for the next window (batches fetched by digest are
still checked and accepted: a digest named by a block needs no trust)."""


class BatchRequest(msgspec.Struct, frozen=True, array_like=True):
    digests: Annotated[
        list[Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]],
        msgspec.Meta(min_length=1, max_length=MAX_BATCHES_PER_REQUEST),
    ]


@dataclass(slots=True)
class _Known:
    author: int
    sequence: int
    size: BatchSize
    included: bool  # named by a committed block
    verified: bool = True  # every signature and carried sender checked here


@dataclass(slots=True)
class _PeerRecord:
    invalid_at: list[float]
    throttled_until: float = 0.0


def _size_of(batch: Batch) -> BatchSize:
    return BatchSize(len(batch.transactions), sum(map(len, batch.transactions)))


class BatchPool:
    def __init__(
        self,
        store: NodeStore,
        verifier: VerifierPool,
        group: GroupCommit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.verifier = verifier
        self.group = group
        self._clock = clock
        self._known: OrderedDict[bytes, _Known] = OrderedDict()
        self.certified: Callable[[bytes], bool] = lambda digest: False
        """Whether a batch's certificate is held (or a committed block named it):
        a fetched certified batch is stored without verifying it (the node sets
        this to its certifier's)."""
        self._rejected: OrderedDict[bytes, str] = OrderedDict()
        self._peers: dict[int, _PeerRecord] = {}
        self.log_limiter = LogLimiter(log)
        self._arrived = trio.Event()
        self._in_flight: dict[bytes, trio.Event] = {}
        self._queued_bytes: dict[bytes, bytes] = {}
        """digest -> the bytes of a peer's batch queued for verification here (the
        same object the queue holds), until it is decided."""
        self._pairs: OrderedDict[bytes, tuple[bytes, bytes]] = OrderedDict()
        self._pair_txs = 0
        self._watched: OrderedDict[bytes, set[bytes]] = OrderedDict()
        """tx hash -> digests of cached batches carrying it, for hashes asked about."""
        self.rejected_batches = 0

    def __contains__(self, digest: object) -> bool:
        return digest in self._known or (
            isinstance(digest, bytes) and self.store.get_batch(digest) is not None
        )

    # ---- own batches ---------------------------------------------------------------------

    async def add_own(
        self,
        digest: bytes,
        encoded: bytes,
        batch: Batch,
        checked: Sequence[CheckedTx] | None = None,
    ) -> None:
        """This validator's batch: stored with its sequence (one fsync, shared with
        others waiting), never twice; only then may it be broadcast. `checked`:
        its transactions as intake checked them, one per transaction in order
        (their namespaces and hashes are not computed again)."""

        def stage(write: WriteBatch) -> None:
            self.store.stage_batch(
                write, digest, encoded, own_sequence=batch.sequence, author=batch.author
            )

        await self.group.write(stage)
        self._remember(digest, batch, checked)

    # ---- batches from peers --------------------------------------------------------------

    def expect(self, digest: bytes, encoded: bytes | None = None) -> None:
        """A peer's batch with this digest is queued for verification: a voter that
        needs it waits for that (`wait_for`) rather than fetching it again.
        `encoded`, its bytes (`digest` is their hash), are readable meanwhile
        (`bytes_of`)."""
        if digest not in self._known and len(self._in_flight) < MAX_IN_FLIGHT:
            self._in_flight.setdefault(digest, trio.Event())
            if encoded is not None:
                self._queued_bytes[digest] = encoded

    def any_in_flight(self, digests: Iterable[bytes]) -> bool:
        """Whether a batch among `digests` is queued for verification here."""
        return any(d in self._in_flight for d in digests)

    async def wait_for(self, digests: Iterable[bytes], timeout_s: float) -> None:
        """Wait (at most `timeout_s`) for the batches among `digests` that are
        queued for verification here to be decided."""
        with trio.move_on_after(timeout_s):
            for digest in digests:
                event = self._in_flight.get(digest)
                if event is not None:
                    await event.wait()

    def _decided(self, digest: bytes) -> None:
        self._queued_bytes.pop(digest, None)
        event = self._in_flight.pop(digest, None)
        if event is not None:
            event.set()

    async def receive(
        self, sender: int, encoded: bytes, verify: bool = True, digest: bytes | None = None
    ) -> bytes | None:
        """A batch broadcast by validator `sender`: check it (fully if `verify`,
        else its structure only), then keep it. Returns its digest, or None when
        it is refused (remembered and counted). `digest`: `batch_digest(encoded)`
        when the caller computed it already (this node, never a peer's claim)."""
        if digest is None:
            digest = batch_digest(encoded)
        try:
            return await self._receive(sender, digest, encoded, verify)
        finally:
            self._decided(digest)

    async def _receive(
        self, sender: int, digest: bytes, encoded: bytes, verify: bool = True
    ) -> bytes | None:
        if digest in self._known:
            return digest
        if self._is_throttled(sender):
            return None
        if digest in self._rejected:
            self._note_invalid(sender, digest, "the same invalid batch again")
            return None
        try:
            batch = decode_batch(encoded)
            if batch.author != sender:
                raise InvalidBatch(f"batch names author {batch.author}, sent by {sender}")
            checked = await self._verify(batch) if verify else None
        except InvalidBatch as exc:
            self._reject(digest, str(exc))
            self._note_invalid(sender, digest, str(exc))
            return None
        await self._store(digest, encoded, batch.author)
        self._remember(digest, batch, checked, verified=checked is not None)
        return digest

    def is_verified(self, digest: bytes) -> bool:
        """Whether a batch held here had every signature and sender checked here."""
        known = self._known.get(digest)
        return known is not None and known.verified

    async def verify_held(self, digest: bytes) -> bool:
        """Verify a batch held here unverified (a stored peer's batch); True when
        it is (now) verified. A batch that fails is refused from then on: it
        leaves the offered batches and its digest is remembered as invalid."""
        known = self._known.get(digest)
        if known is None:
            return False
        if known.verified:
            return True
        encoded = self.store.get_batch(digest)
        if encoded is None:
            return False
        try:
            await self._verify(decode_batch(encoded))
        except InvalidBatch as exc:
            self._reject(digest, str(exc))
            self._note_invalid(known.author, digest, str(exc))
            self._known.pop(digest, None)
            return False
        known.verified = True
        return True

    async def accept_fetched(self, digest: bytes, encoded: bytes) -> bool:
        """A batch fetched by digest: the digest authenticates it; its
        transactions are verified unless it is certified (`certified`)."""
        if batch_digest(encoded) != digest:
            return False
        if digest in self._known:
            return True
        if digest in self._rejected:
            return False
        try:
            batch = decode_batch(encoded)
            checked = None if self.certified(digest) else await self._verify(batch)
        except InvalidBatch as exc:
            self._reject(digest, str(exc))
            self.log_limiter.warning(
                "fetched_batch_rejected", "-", "digest=%s reason=%s", digest.hex()[:12], exc
            )
            return False
        await self._store(digest, encoded, batch.author)
        self._remember(digest, batch, checked, verified=checked is not None)
        return True

    async def _verify(self, batch: Batch) -> list[CheckedTx]:
        """Every transaction's encoding, chain id and signature, in the verifier
        pool, and that each recovers the carried sender; raise
        InvalidBatchTransaction or SenderMismatch for the first bad one.
        `batch` comes from `decode_batch`, which checked its shape."""
        results = await self.verifier.check_many(batch.transactions)
        checked: list[CheckedTx] = []
        for position, result in enumerate(results):
            if isinstance(result, InvalidTransaction):
                raise InvalidBatchTransaction(position, result)
            checked.append(result)
        check_senders(batch, checked)
        return checked

    async def _store(self, digest: bytes, encoded: bytes, author: int) -> None:
        """Stored before any vote relies on it: written unsynced, at once, and made
        durable by the fsync of the vote itself (RocksDB's write-ahead log is one
        sequence, so syncing a later write syncs every earlier one). A voter
        therefore still holds, after any crash, the batches of every block it
        voted for, without an fsync per batch."""
        self.store.save_batch(digest, encoded, author=author, synced=False)

    async def wait_for_batch(self) -> None:
        """Return when a batch arrives (own or a peer's) after this call."""
        await self._arrived.wait()

    def _remember(
        self,
        digest: bytes,
        batch: Batch,
        checked: Sequence[CheckedTx] | None = None,
        verified: bool = True,
    ) -> None:
        """`checked`: the batch's transactions as verified, one per transaction
        in order (else they are decoded and hashed again for the pairs).
        `verified`: whether its signatures and senders were checked here."""
        if digest in self._known:
            return
        if checked is not None and len(checked) == len(batch.transactions):
            pairs = checked_namespace_pairs(checked)
        else:
            pairs = batch_namespace_pairs(batch)
        self._cache_pairs(digest, pairs)
        self._known[digest] = _Known(
            batch.author, batch.sequence, _size_of(batch), included=False, verified=verified
        )
        self._arrived.set()
        self._arrived = trio.Event()
        while len(self._known) > MAX_KNOWN_BATCHES:
            self._known.popitem(last=False)

    def _reject(self, digest: bytes, reason: str) -> None:
        self.rejected_batches += 1
        self._rejected[digest] = reason
        while len(self._rejected) > MAX_REJECTED_BATCHES:
            self._rejected.popitem(last=False)

    def _note_invalid(self, sender: int, digest: bytes, reason: str) -> None:
        now = self._clock()
        record = self._peers.setdefault(sender, _PeerRecord([]))
        record.invalid_at = [t for t in record.invalid_at if now - t < THROTTLE_WINDOW_S]
        record.invalid_at.append(now)
        throttle = len(record.invalid_at) >= INVALID_BATCHES_BEFORE_THROTTLE
        if throttle:
            record.throttled_until = now + THROTTLE_WINDOW_S
            record.invalid_at = []
        self.log_limiter.warning(
            "batch_rejected",
            sender,
            "digest=%s reason=%s throttled=%s",
            digest.hex()[:12],
            reason,
            throttle,
        )

    def _is_throttled(self, sender: int) -> bool:
        record = self._peers.get(sender)
        return record is not None and self._clock() < record.throttled_until

    # ---- reading -------------------------------------------------------------------------

    def get(self, digest: bytes) -> bytes | None:
        return self.store.get_batch(digest)

    def bytes_of(self, digest: bytes) -> bytes | None:
        """The batch's bytes if held (verified) or queued for verification here,
        not verified yet: only for a reader to whom the digest, named by a
        certified block, authenticates them (a block's subscribers), never
        for voting or execution."""
        found = self.store.get_batch(digest)
        return found if found is not None else self._queued_bytes.get(digest)

    def _cache_pairs(self, digest: bytes, pairs: list[tuple[int, bytes]]) -> None:
        if digest in self._pairs:
            return
        if pairs:
            namespaces_, hashes_ = zip(*pairs, strict=True)
            namespaces = struct.pack(f">{len(pairs)}I", *namespaces_)
            self._pairs[digest] = (namespaces, b"".join(hashes_))
        else:
            self._pairs[digest] = (b"", b"")
        self._pair_txs += len(pairs)
        if self._watched:
            for _, tx_hash_ in pairs:
                holders = self._watched.get(tx_hash_)
                if holders is not None:
                    holders.add(digest)
        while self._pair_txs > MAX_CACHED_PAIR_TXS and len(self._pairs) > 1:
            dropped_digest, (dropped, hashes) = self._pairs.popitem(last=False)
            self._pair_txs -= len(dropped) // 4
            self._unwatch_batch(dropped_digest, hashes)

    def _unwatch_batch(self, digest: bytes, hashes: bytes) -> None:
        """A batch left the pairs cache: it no longer counts as holding anything."""
        if not self._watched:
            return
        for i in range(0, len(hashes), 32):
            holders = self._watched.get(hashes[i : i + 32])
            if holders is not None:
                holders.discard(digest)

    def _holders_of(self, tx_hash_: bytes) -> set[bytes]:
        """Digests of cached batches carrying `tx_hash_`: scanned once, when first
        asked about, then kept up to date as batches arrive and leave."""
        holders = self._watched.get(tx_hash_)
        if holders is not None:
            self._watched.move_to_end(tx_hash_)
            return holders
        holders = set()
        for digest, (_, hashes) in self._pairs.items():
            at = hashes.find(tx_hash_)
            while at != -1 and at % 32:
                at = hashes.find(tx_hash_, at + 1)
            if at != -1:
                holders.add(digest)
        self._watched[tx_hash_] = holders
        while len(self._watched) > MAX_WATCHED_TXS:
            self._watched.popitem(last=False)
        return holders

    def batches_holding(
        self, tx_hashes: Iterable[bytes]
    ) -> dict[bytes, list[tuple[bytes, BatchSize]]]:
        """For each of `tx_hashes` (forced transactions) that some verified batch
        no committed block names yet carries: those batches, with their sizes,
        ordered by (author, sequence, digest) as `unincluded` orders them. Only
        recent batches count (those whose transaction hashes the pool keeps in
        memory, MAX_CACHED_PAIR_TXS), so asking stays a memory lookup."""
        out: dict[bytes, list[tuple[bytes, BatchSize]]] = {}
        for tx_hash_ in tx_hashes:
            held = [
                (k.author, k.sequence, d, k.size)
                for d in self._holders_of(tx_hash_)
                if (k := self._known.get(d)) is not None and not k.included
            ]
            if held:
                held.sort(key=lambda c: (c[0], c[1], c[2]))
                out[tx_hash_] = [(d, size) for _, _, d, size in held]
        return out

    def namespace_pairs(self, digest: bytes) -> list[tuple[int, bytes]] | None:
        """(namespace, tx hash) of a held batch's transactions, in order (None if
        not held): what the block namespace root covers."""
        cached = self._pairs.get(digest)
        if cached is None:
            encoded = self.store.get_batch(digest)
            if encoded is None:
                return None
            try:
                return batch_namespace_pairs(decode_batch(encoded))
            except InvalidBatch:
                return None
        namespaces, hashes = cached
        count = len(namespaces) // 4
        return list(
            zip(
                struct.unpack(f">{count}I", namespaces),
                [hashes[i : i + 32] for i in range(0, 32 * count, 32)],
                strict=True,
            )
        )

    def engine_transactions(self, digest: bytes) -> int:
        """How many of a recent batch's transactions are in the engine's namespace
        (0), from the pairs kept in memory since it was verified; 0 for a batch
        whose pairs are not kept (pacing then counts them as any other)."""
        cached = self._pairs.get(digest)
        if cached is None:
            return 0
        namespaces = cached[0]
        return struct.unpack(f">{len(namespaces) // 4}I", namespaces).count(0)

    def tx_hashes(self, digest: bytes, batch: Batch) -> list[bytes]:
        """The hashes of `batch`'s transactions, in order (`digest` is its
        digest): kept since the batch was verified for recent batches, else
        computed."""
        cached = self._pairs.get(digest)
        if cached is not None:
            hashes = cached[1]
            if len(hashes) == 32 * len(batch.transactions):
                return [hashes[i : i + 32] for i in range(0, len(hashes), 32)]
        return batch_tx_hashes(batch)

    def size_of(self, digest: bytes) -> BatchSize | None:
        """Transactions and bytes of a batch held here (None if not held)."""
        known = self._known.get(digest)
        if known is not None:
            return known.size
        encoded = self.store.get_batch(digest)
        if encoded is None:
            return None
        try:
            return _size_of(decode_batch(encoded))
        except InvalidBatch:
            return None

    def forget(self, digests: Iterable[bytes]) -> None:
        """Batches pruned from the store (never included): no longer offered."""
        for digest in digests:
            self._known.pop(digest, None)
            cached = self._pairs.pop(digest, None)
            if cached is not None:
                self._pair_txs -= len(cached[0]) // 4
                self._unwatch_batch(digest, cached[1])

    def identity(self, digest: bytes) -> tuple[int, int] | None:
        """(author, sequence) of a batch held here (None if not held)."""
        known = self._known.get(digest)
        if known is not None:
            return known.author, known.sequence
        encoded = self.store.get_batch(digest)
        if encoded is None:
            return None
        try:
            batch = decode_batch(encoded)
        except InvalidBatch:
            return None
        return batch.author, batch.sequence

    def is_included(self, digest: bytes) -> bool:
        """Whether a committed block (executed here) names the batch."""
        known = self._known.get(digest)
        if known is not None and known.included:
            return True
        return self.store.batch_referenced(digest)

    def mark_included(self, digests: list[bytes]) -> None:
        for digest in digests:
            known = self._known.get(digest)
            if known is not None:
                known.included = True

    def unincluded(self, exclude: set[bytes], limit: int) -> list[tuple[bytes, BatchSize]]:
        """Batches no committed block names, minus `exclude` (those in uncommitted
        ancestors of the block being built), ordered by (author, sequence), with
        their sizes."""
        candidates = [
            (k.author, k.sequence, d, k.size)
            for d, k in self._known.items()
            if not k.included and d not in exclude
        ]
        candidates.sort(key=lambda c: (c[0], c[1], c[2]))
        return [(d, size) for _, _, d, size in candidates[:limit]]

    def answer(self, request: BatchRequest) -> list[bytes]:
        """The requested batches held here, in request order, within the byte budget."""
        out: list[bytes] = []
        size = 0
        for digest in request.digests:
            encoded = self.store.get_batch(digest)
            if encoded is None:
                continue
            size += len(encoded)
            if out and size > MAX_BATCH_ANSWER_BYTES:
                break
            out.append(encoded)
        return out
