"""After consensus commits a block: resolve its batches, execute, store, tell.

Committed blocks arrive in height order. As each one arrives, the batches it
names that this node lacks are fetched at once (`prefetch`: one request per
peer for all of them, the block's proposer asked first, up to PREFETCH_AHEAD
blocks ahead of execution), so a validator that missed batches while it was
down or cut off catches up at the speed of a few round trips, not one round
trip per batch. Then, for each block in order, the pipeline

    takes the block's batches (any still missing fetched again, until a peer
                                 has them: a quorum verified them)
    resolve_block_transactions   the batches' transactions in block order, each
                                 once across the whole chain, with the senders
                                 recovered and the hashes computed when the
                                 batches were verified (the block's payload
                                 and batches are decoded once, when it arrives
                                 and is opened, and kept until it executes)
    open_block                   on a chain with a threshold key, for a block
                                 that needs an order seed
                                 (`block_needs_order_seed`): this node's
                                 share message (decryption shares and order
                                 coin share) persisted and sent, others'
                                 gathered (node/decryption.py); each encrypted
                                 transaction opened to its inner transaction or
                                 a FailedReveal, and the block's order seed
                                 drawn; execution of the block waits for it.
                                 A block that needs none (no envelope, at most
                                 one non-forced sender) has no seed and no
                                 share round: its order is the same for every
                                 seed
    order_block                  the execution order: the transactions the
                                 payload marks forced first, in inbox order
                                 (`split_forced`), then senders by the seed,
                                 each sender's transactions in block order
                                 (fairness/order.py); without a threshold key,
                                 forced first, then the block order
    check_vouched_root           the state root the block vouches for, against
                                 this node's own execution (an alarm if they
                                 differ: voting did not wait for it)
    execute_block                every namespace: nonces, fees, the DEX
    commit_block                 block, certificate, transactions and state root
                                 and order seed with its proof (the t coin
                                 shares it was combined from) in one synced
                                 write; execution and storage are one call on
                                 the pipeline's own worker thread
                                 (sequencer_net/worker_thread.py), so the event
                                 loop keeps serving consensus meanwhile

and only then reports the block (status, metrics, the mempool forgetting what
committed). Execution trails ordering by a few blocks at most: a leader whose
execution lags proposes no batches until it catches up (payload/checks.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import cast

import msgspec
import trio
from msgspec.structs import replace

from consensus.crypto import Address
from consensus.encoding import Domain
from consensus.io import Commit
from consensus.messages import Block
from sequencer_net.batches.batch import Batch, InvalidBatch, decode_batch
from sequencer_net.batches.fetch import BatchFetcher
from sequencer_net.batches.pool import BatchPool, BatchRequest
from sequencer_net.execution.block import FailedReveal
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.engine import (
    BlockResult,
    ExecutionBlock,
    SequencedTransaction,
    execute_block,
)
from sequencer_net.execution.state import ExecutionState
from sequencer_net.fairness.envelope import Envelope
from sequencer_net.fairness.limits import MAX_BLOCK_CIPHERTEXTS
from sequencer_net.fairness.order import needs_order_seed, order_block
from sequencer_net.fairness.order_proof import encode_order_proof
from sequencer_net.fairness.tdh2 import DecryptionFailed
from sequencer_net.mempool.encrypted import ENCRYPTED_TX_PREFIX, decode_encrypted
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.transaction import (
    InvalidTransaction,
    decode_transaction_or_none,
    tx_hash,
)
from sequencer_net.metrics import Metrics
from sequencer_net.node.decryption import Decryptor, OpenedBlock, revealed_transaction
from sequencer_net.node.market_activity import MarketActivity
from sequencer_net.node.status import ChainStatus, DecidedBlock
from sequencer_net.payload import MalformedPayload, decode_payload
from sequencer_net.payload.checks import StateRootMismatch, check_vouched_root
from sequencer_net.payload.format import BlockPayload, ForcedEntry
from sequencer_net.storage.node_store import NodeStore
from sequencer_net.worker_thread import WorkerThread

log = logging.getLogger("seqnet.commit")

FETCH_RETRY_S = 0.5

PREFETCH_AHEAD = 8
"""Committed blocks whose missing batches are fetched ahead of execution at
once. Bounds the requests in flight and the batches held before they execute
(each block names at most MAX_BATCHES_PER_BLOCK)."""

UNINCLUDED_BATCH_RETENTION = 10_000
"""Heights a batch no block has included is kept after it arrived (others'
batches only: this node's own may still carry pending transactions). A
leader includes every batch it holds, oldest first, so a batch still
unincluded this long after (hours at a few blocks per second) was never
certified or came from a faulty author. Included batches are chain data
and are kept."""

PREPARED_BYTES = 64 * 1024 * 1024
"""Bytes of decoded batches the pipeline keeps, across the committed blocks
waiting to execute, from the blocks' opening (when their batches are all held)
to their execution, so each batch is read and decoded once; a block past
the budget is read and decoded again when it executes."""

PRUNE_EVERY = 256
"""Committed heights between two pruning passes."""

KEY_EPOCH_MISMATCH = "key_epoch_mismatch"
"""The FailedReveal reason of an envelope committed at a height of another key
epoch than its own: refused undecrypted, no fee (docs/fairness.md)."""


@dataclass(slots=True)
class _Prepared:
    """What the pipeline reads from a committed block once, when it arrives,
    for its prefetch, opening, subscribers and execution: its payload decoded
    (None: malformed) and, once every batch it names is held here (verified),
    those batches (digest, decoded), within PREPARED_BYTES."""

    payload_bytes: bytes
    payload: BlockPayload | None
    batches: list[tuple[bytes, Batch]] | None = None
    size: int = 0

    @property
    def digests(self) -> list[bytes]:
        return [] if self.payload is None else list(self.payload.batches)

    @property
    def forced(self) -> list[ForcedEntry]:
        return [] if self.payload is None else list(self.payload.forced)


def _prepare(block: Block) -> _Prepared:
    try:
        payload: BlockPayload | None = decode_payload(block.payload)
    except MalformedPayload:
        payload = None
    return _Prepared(block.payload, payload)


class ResolvedTransaction(msgspec.Struct, frozen=True, gc=False):
    """One transaction of a committed block as the pipeline carries it from
    its batch to execution. A struct (made once per transaction of every
    block, cheaply); untracked by the garbage collector, as it holds only
    immutable values and cannot be part of a cycle."""

    encoded: bytes
    sequenced: SequencedTransaction | FailedReveal
    """An encrypted transaction's is a placeholder until `reveal_envelopes`."""
    envelope: Envelope | None = None

    @property
    def sender(self) -> bytes:
        """Who sent it (an envelope's signer, known before it is opened): all
        that `order_block` looks at."""
        return self.sequenced.sender


def resolve_block_transactions(
    batches: Sequence[Batch],
    already_committed: Callable[[bytes], bool],
    sender_of: Callable[[bytes, bytes], Address | None],
    hashes: Sequence[Sequence[bytes]] | None = None,
) -> list[ResolvedTransaction]:
    """The transactions a block orders: its batches' transactions in block order,
    skipping any committed before (in an earlier block, or earlier in this one),
    each with its sender. `sender_of(hash, encoded)` gives the sender (a
    node's: the one its batch carries, `senders_in`); None means it does not
    verify, which a quorum of voters makes impossible unless more than f lie.
    `hashes`: per batch, its transactions' hashes in order, if known already
    (from the batch's verification); otherwise each is hashed here.

    Run on the event loop for every transaction of every block: one pass,
    the carried senders read from their table directly (`senders_in`)."""
    resolved: list[ResolvedTransaction] = []
    append = resolved.append
    seen: set[bytes] = set()
    seen_add = seen.add
    carried = sender_of.by_encoded if isinstance(sender_of, CarriedSenders) else None
    for index, batch in enumerate(batches):
        transactions = batch.transactions
        known = None if hashes is None else hashes[index]
        if known is None or len(known) != len(transactions):
            known = [tx_hash(encoded) for encoded in transactions]
        for encoded, h in zip(transactions, known, strict=True):
            if h in seen or already_committed(h):
                continue
            if carried is not None:
                sender = carried.get(encoded)  # the carried bytes themselves
            else:
                sender = sender_of(h, encoded)
                if sender is not None:
                    sender = Address(bytes(sender))
            if sender is None:
                continue
            if encoded[:1] == ENCRYPTED_TX_PREFIX:  # is_encrypted
                try:
                    envelope = decode_encrypted(encoded)
                except InvalidTransaction:
                    continue
                seen_add(h)
                placeholder = FailedReveal(h, sender, envelope.max_fee, "not_decrypted")
                append(ResolvedTransaction(encoded, placeholder, envelope))
                continue
            tx = decode_transaction_or_none(encoded)
            if tx is None:
                continue
            seen_add(h)
            append(
                ResolvedTransaction(
                    encoded,
                    # tx_hash, sender, nonce, namespace, fee, payload
                    SequencedTransaction(h, sender, tx.nonce, tx.namespace, tx.fee, tx.payload),
                )
            )
    return resolved


def split_forced(
    resolved: Sequence[ResolvedTransaction], marks: Sequence[ForcedEntry]
) -> tuple[list[ResolvedTransaction], list[ResolvedTransaction]]:
    """(forced, rest): the transactions the block's payload marks forced, in
    the marks' order (the inbox order), and the others in block order. A mark
    naming no transaction of `resolved` (one committed before) marks nothing.
    A function of the block and the committed chain alone, as every node
    executes it."""
    if not marks:  # most blocks: nothing forced, the block order as it is
        return [], list(resolved)
    by_hash = {r.sequenced.tx_hash: r for r in resolved}
    forced: list[ResolvedTransaction] = []
    taken: set[bytes] = set()
    for mark in marks:
        found = by_hash.get(mark.tx_hash)
        if found is None or mark.tx_hash in taken:
            continue
        taken.add(mark.tx_hash)
        forced.append(found)
    rest = [r for r in resolved if r.sequenced.tx_hash not in taken]
    return forced, rest


def block_envelopes(
    height: int,
    batches: Sequence[Batch],
    valid: Callable[[bytes, bytes], bool],
    key_epoch: int | None = None,
) -> list[tuple[bytes, Envelope]]:
    """(hash, envelope) of the envelopes a committed block opens: its batches'
    encrypted transactions in block order, each once, that decode and are
    `valid(hash, encoded)` (signature and proof), not expired at `height`,
    encrypted to `key_epoch` (the key epoch of `height`'s validator-set epoch;
    None: no key, nothing is opened anyway), the first MAX_BLOCK_CIPHERTEXTS of
    them. A function of the block alone (not of what this node committed
    before), so every node shares the same list even before it has executed
    the blocks below. No share is ever made for an envelope left out here."""
    live: list[tuple[bytes, Envelope]] = []
    seen: set[bytes] = set()
    for batch in batches:
        # Only encrypted transactions matter (most blocks have none): picked
        # out in one comprehension (`is_encrypted`), each then checked in order.
        for encoded in [e for e in batch.transactions if e[:1] == ENCRYPTED_TX_PREFIX]:
            if len(live) >= MAX_BLOCK_CIPHERTEXTS:
                return live
            h = tx_hash(encoded)
            if h in seen:
                continue
            seen.add(h)
            try:
                envelope = decode_encrypted(encoded)
            except InvalidTransaction:
                continue
            if height > envelope.expiry_height:
                continue
            if key_epoch is not None and envelope.key_epoch != key_epoch:
                continue
            if not valid(h, encoded):
                continue
            live.append((h, envelope))
    return live


class CarriedSenders:
    """`sender_of(hash, encoded)` from a table of carried senders by encoded
    transaction (`senders_in`); `resolve_block_transactions` reads the table
    directly."""

    __slots__ = ("by_encoded",)

    def __init__(self, by_encoded: dict[bytes, Address]) -> None:
        self.by_encoded = by_encoded

    def __call__(self, _hash: bytes, encoded: bytes) -> Address | None:
        return self.by_encoded.get(encoded)


def senders_in(batches: Sequence[Batch]) -> CarriedSenders:
    """`sender_of(hash, encoded)` for the transactions of a committed block's
    `batches`: the senders the batches carry, never a signature recovered here.
    Only for batches named by a committed block: a quorum voted for it, and a
    voter votes only for batches certified by acknowledgements of which more
    than f of the power checked every signature and carried sender
    (batches/certificate.py), so an honest validator checked these. A
    transaction carried twice has the sender of its last carrying batch."""
    carried: dict[bytes, Address] = {}
    for batch in batches:
        # An Address is its 20 bytes (a NewType): the carried bytes as they are.
        carried.update(zip(batch.transactions, cast(list[Address], batch.senders), strict=False))
    return CarriedSenders(carried)


@dataclass(frozen=True, slots=True)
class _Sent:
    sender: bytes


def block_needs_order_seed(
    batches: Sequence[Batch],
    forced: Sequence[ForcedEntry],
    live: Sequence[tuple[bytes, Envelope]],
    sender_of: Callable[[bytes, bytes], Address | None],
) -> bool:
    """Whether a committed block draws an order seed (fairness/order.py
    `needs_order_seed`): it opens an envelope (`live`, from `block_envelopes`),
    or its batches' transactions with a sender, other than those its forced
    marks name, come from two senders or more.

    A function of the block alone, not of what committed before: the pipeline
    asks it when the block's batches are fetched (`begin`), before the blocks
    below execute, and every node gets the same answer. The transactions the
    block executes in `order_block`'s second part are some of these (those
    committed before are skipped), so a block this says needs no seed has one
    execution order for every seed."""
    if live:
        return True
    marked = {mark.tx_hash for mark in forced}

    def unforced() -> Iterator[_Sent]:
        for batch in batches:
            for encoded in batch.transactions:
                h = tx_hash(encoded)
                if h in marked:
                    continue
                sender = sender_of(h, encoded)
                if sender is not None:
                    yield _Sent(bytes(sender))

    return needs_order_seed(False, unforced())


def reveal_envelopes(
    height: int,
    resolved: Sequence[ResolvedTransaction],
    live: Sequence[tuple[bytes, Envelope]],
    plaintexts: Sequence[bytes | DecryptionFailed] | None,
    domain: Domain | None,
    key_epoch: int | None = None,
) -> list[ResolvedTransaction]:
    """Each envelope replaced by what it reveals (docs/fairness.md), in place:
    past its expiry height, FailedReveal("expired", no fee) and never
    decrypted; encrypted to another key epoch than `key_epoch` (the one of
    `height`'s validator-set epoch), FailedReveal("key_epoch_mismatch", no
    fee) and never decrypted; past the first MAX_BLOCK_CIPHERTEXTS live ones
    of the block (what one share message covers), FailedReveal("block_envelope_limit", no
    fee), never decrypted; otherwise what `plaintexts` (one per `live`
    envelope, from the network's shares) holds for it, or, without them (no
    threshold key), FailedReveal("no_threshold_key", no fee)."""
    out = list(resolved)
    position_in_block = {h: j for j, (h, _) in enumerate(live)}
    for i, r in enumerate(resolved):
        envelope = r.envelope
        if envelope is None:
            continue
        tx_hash_ = r.sequenced.tx_hash
        if height > envelope.expiry_height:
            out[i] = replace(r, sequenced=FailedReveal(tx_hash_, envelope.sender, 0, "expired"))
        elif key_epoch is not None and envelope.key_epoch != key_epoch:
            # A key per validator-set epoch: an envelope that did not commit in
            # its own epoch is refused undecrypted (docs/fairness.md).
            stale = FailedReveal(tx_hash_, envelope.sender, 0, KEY_EPOCH_MISMATCH)
            out[i] = replace(r, sequenced=stale)
        elif tx_hash_ not in position_in_block:
            over = FailedReveal(tx_hash_, envelope.sender, 0, "block_envelope_limit")
            out[i] = replace(r, sequenced=over)
        elif plaintexts is None or domain is None:
            # Only reachable if more than f validators accepted envelopes on a
            # chain without a key; every node gets the same receipts.
            no_key = FailedReveal(tx_hash_, r.sequenced.sender, 0, "no_threshold_key")
            out[i] = replace(r, sequenced=no_key)
        else:
            opened = plaintexts[position_in_block[tx_hash_]]
            out[i] = replace(r, sequenced=revealed_transaction(tx_hash_, envelope, opened, domain))
    return out


class CommitPipeline:
    def __init__(
        self,
        *,
        store: NodeStore,
        pool: BatchPool,
        fetcher: BatchFetcher,
        mempool: Mempool,
        state: ExecutionState,
        metrics: Metrics,
        status: ChainStatus,
        accepted_at: dict[bytes, float],
        state_root_at: Callable[[int], bytes | None],
        own_index: int,
        domain: Domain | None = None,
        decryptor: Decryptor | None = None,
    ) -> None:
        self.store = store
        self.pool = pool
        self.fetcher = fetcher
        self.mempool = mempool
        self.state = state
        self.metrics = metrics
        self.status = status
        self.accepted_at = accepted_at
        self.state_root_at = state_root_at
        self.own_index = own_index
        self.domain = domain
        self.decryptor = decryptor
        """Opens committed envelopes; None on a chain without a threshold key."""
        self._advanced = trio.Event()
        self._prepared: dict[int, _Prepared] = {}
        """Committed blocks waiting to execute, by height (`_Prepared`)."""
        self._prepared_bytes = 0
        self._worker = WorkerThread("seqnet-commit")
        """Executes and stores each block, in one call: one thread hand-off per block."""
        self.market_activity = MarketActivity()  # what GET /v1/markets counts
        status.feed.orders_expected = decryptor is not None
        if decryptor is not None:
            decryptor.on_opened = self._opened

    async def run(self, commits: trio.MemoryReceiveChannel[Commit]) -> None:
        """Apply committed blocks in order; each block's missing batches are
        fetched as soon as it arrives, while earlier blocks execute."""
        ready_in, ready_out = trio.open_memory_channel[tuple[Commit, trio.Event, float]](
            PREFETCH_AHEAD
        )
        self._prepared = {}
        self._prepared_bytes = 0
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._prefetch_stage, commits, ready_in, nursery)
            async with ready_out:
                async for commit, fetched, arrived in ready_out:
                    await fetched.wait()
                    started = time.perf_counter()
                    await self.apply(commit)
                    done = time.perf_counter()
                    log.info(
                        "event=executed height=%d apply_ms=%d since_commit_ms=%d",
                        commit.block.height,
                        (done - started) * 1000,
                        (done - arrived) * 1000,
                    )

    async def _prefetch_stage(
        self,
        commits: trio.MemoryReceiveChannel[Commit],
        ready: trio.MemorySendChannel[tuple[Commit, trio.Event, float]],
        nursery: trio.Nursery,
    ) -> None:
        slots = trio.Semaphore(PREFETCH_AHEAD)
        async with ready:
            async for commit in commits:
                arrived = time.perf_counter()
                # Done at once, before any other task runs, not in the block's
                # prefetch task: when its batches are held, its opening begins
                # (this node's shares go out); when their bytes are all here
                # (verified, or queued for verification), the subscribers get
                # it, without waiting for the verification.
                opened = told = False
                prepared = self._prepared_for(commit.block)
                try:
                    if self.decryptor is not None and all(d in self.pool for d in prepared.digests):
                        opened = True
                        self._begin_opening(commit.block, prepared)
                    told = self._tell_decided(commit, prepared)
                except Exception:  # an optimization only: the prefetch does it
                    log.exception("event=tell_decided_failed height=%d", commit.block.height)
                await slots.acquire()
                fetched = trio.Event()
                nursery.start_soon(self._prefetch, commit, prepared, fetched, slots, told, opened)
                await ready.send((commit, fetched, arrived))

    async def _prefetch(
        self,
        commit: Commit,
        prepared: _Prepared,
        fetched: trio.Event,
        slots: trio.Semaphore,
        told: bool = False,
        opened: bool = False,
    ) -> None:
        block = commit.block
        try:
            missing = [d for d in prepared.digests if d not in self.pool]
            if missing:
                # The subscribers get this block (and every later one, in
                # height order) only once the fetch ends: logged, as it is
                # what most often holds a block back after commit.
                started = time.perf_counter()
                in_flight = self.pool.any_in_flight(missing)
                await self.fetcher.fetch(BatchRequest(missing), prefer=block.proposer)
                log.info(
                    "event=batches_fetched height=%d missing=%d queued_here=%d fetch_ms=%d",
                    block.height,
                    len(missing),
                    in_flight,
                    (time.perf_counter() - started) * 1000,
                )
            if not told:
                self._tell_decided(commit, prepared)
            if self.decryptor is not None and not opened:
                self._begin_opening(block, prepared)
        except Exception:  # an optimization only: apply fetches what is still missing
            log.exception("event=prefetch_failed height=%d", block.height)
        finally:
            fetched.set()
            slots.release()

    def _prepared_for(self, block: Block) -> _Prepared:
        """The block's `_Prepared`, made (and kept until it executes) when
        first asked for."""
        prepared = self._prepared.get(block.height)
        if prepared is None or prepared.payload_bytes != block.payload:
            if prepared is not None:
                self._prepared_bytes -= prepared.size
            prepared = self._prepared[block.height] = _prepare(block)
        return prepared

    def _take_prepared(self, block: Block) -> _Prepared:
        """The block's `_Prepared`, no longer kept (it executes now)."""
        prepared = self._prepared.pop(block.height, None)
        if prepared is None:
            return _prepare(block)
        self._prepared_bytes -= prepared.size
        if prepared.payload_bytes != block.payload:
            return _prepare(block)
        return prepared

    def _tell_decided(self, commit: Commit, prepared: _Prepared) -> bool:
        """Hand a committed block to the subscribers before it executes, once
        the bytes of every batch it names are here: with its finalization
        (its own, or the descendant's that committed it, which the
        subscriptions prove it with once the blocks in between are decided
        too), its inclusion can be proven already. A batch queued for
        verification here counts: the digest the certified payload names
        authenticates its bytes, and a subscriber needs no signature checked
        by this node (execution still waits for the verified batch). False if
        a batch's bytes are not here (nothing is told)."""
        block, certificate = commit.block, commit.finalization
        if block.height <= self.status.feed.height:
            return False
        batches: list[bytes] = []
        for digest in prepared.digests:
            encoded = self.pool.bytes_of(digest)
            if encoded is None:
                return False
            batches.append(encoded)
        self.status.feed.decided(DecidedBlock(block, certificate, tuple(batches)))
        return True

    def _opened(self, height: int, opened: OpenedBlock) -> None:
        """The decryption step opened a block: its order seed and proof go to
        the subscribers now, not when the block's turn to execute comes."""
        self.status.feed.ordered(height, opened.order_seed, encode_order_proof(opened.order_proof))

    def _begin_opening(self, block: Block, prepared: _Prepared | None = None) -> None:
        """Release this node's shares of a committed block (decryption shares for
        its envelopes, if any, and its order coin share) as soon as its batches
        are here, so they travel while earlier blocks execute. The decoded
        batches are kept for the block's execution (in `prepared`, the
        pipeline's record of the block, if given)."""
        assert self.decryptor is not None
        keep = prepared is not None
        if prepared is None:
            prepared = _prepare(block)
        held: list[tuple[bytes, Batch]] = []
        size = 0
        for digest in prepared.digests:
            encoded = self.pool.get(digest)
            if encoded is None:
                return  # apply fetches it and opens the block then
            size += len(encoded)
            try:
                held.append((digest, decode_batch(encoded)))
            except InvalidBatch:
                continue
        if keep and prepared.batches is None and self._prepared_bytes + size <= PREPARED_BYTES:
            prepared.batches, prepared.size = held, size
            self._prepared_bytes += size
        batches = [batch for _, batch in held]
        sender_of = senders_in(batches)
        live = self.live_envelopes(block.height, batches, sender_of)
        if not block_needs_order_seed(batches, prepared.forced, live, sender_of):
            self.status.feed.seedless(block.height)
            return
        self.decryptor.begin(block.height, block.digest(), [e for _, e in live])

    async def wait_executed(self, height: int) -> None:
        """Return once this node has executed `height` (backpressure for leaders)."""
        while self.status.height < height:
            await self._advanced.wait()

    async def _batch(self, digest: bytes) -> bytes:
        """The batch's bytes, fetched from peers until someone has it: a committed
        block's batches were verified by a quorum, so an honest validator has them."""
        while True:
            encoded = self.pool.get(digest)
            if encoded is not None:
                return encoded
            if await self.fetcher.fetch(BatchRequest([digest])) == 0:
                continue
            log.warning("event=committed_batch_missing digest=%s", digest.hex()[:12])
            await trio.sleep(FETCH_RETRY_S)

    async def apply(self, commit: Commit) -> None:
        block = commit.block
        prepared = self._take_prepared(block)
        if block.height <= self.store.tip()[0]:
            if self.decryptor is not None:
                self.decryptor.discard(block.height)
            return  # already durable (a replay after restart)
        started = time.perf_counter()
        payload = prepared.payload
        if payload is None:
            # A quorum verified it, so this means more than f Byzantine: commit it empty.
            log.error("event=committed_malformed_payload height=%d", block.height)
        digests = prepared.digests
        held = prepared.batches
        if held is None:
            held = []
            for digest in digests:
                try:
                    held.append((digest, decode_batch(await self._batch(digest))))
                except InvalidBatch:
                    continue
        batches = [batch for _, batch in held]
        batch_hashes = [self.pool.tx_hashes(digest, batch) for digest, batch in held]
        committed = self.store.committed_among([h for of_batch in batch_hashes for h in of_batch])
        sender_of = senders_in(batches)
        resolved = resolve_block_transactions(
            batches, committed.__contains__, sender_of, batch_hashes
        )
        forced_marks = prepared.forced
        block_digest = block.digest()
        resolved, opened = await self.open_block_with_proof(
            block.height, block_digest, resolved, batches, forced_marks, sender_of
        )
        order_seed = None if opened is None else opened.order_seed
        order_proof = None if opened is None else encode_order_proof(opened.order_proof)
        if order_seed is not None and order_proof is not None:
            self.status.feed.ordered(block.height, order_seed, order_proof)
        # Forced L1 inbox transactions first, in inbox order (docs/l1.md): the
        # payload marks them, and voters checked the marks against the L1.
        forced, rest = split_forced(resolved, forced_marks)
        resolved = order_block(order_seed, forced, rest)
        if payload is not None:
            self._check_vouched_root(block.height, payload)
        timestamp_ms = 0 if payload is None else payload.timestamp_ms
        # Block time never runs backwards for the engine: a leader's clock may.
        seconds = max(timestamp_ms // 1000, self.state.block.timestamp)
        sequenced = [r.sequenced for r in resolved]
        engine_block = ExecutionBlock(block.height, seconds, tuple(sequenced))
        transactions = [r.encoded for r in resolved]
        hashes = [s.tx_hash for s in sequenced]
        state = self.state  # replaced only here, after the call returns

        def execute_and_store() -> BlockResult:
            result = execute_block(state, engine_block)
            self.store.commit_block(
                block,
                commit.finalization,
                transactions,
                result.state.state_root,
                encode(result.receipts),
                batch_digests=digests,
                order_seed=order_seed,
                order_proof=order_proof,
                tx_hashes=hashes,
            )
            return result

        result = await self._worker.run(execute_and_store)
        self.state = result.state
        self.market_activity.record(block.height, result.events)
        self.pool.mark_included(digests)
        if block.height % PRUNE_EVERY == 0 and block.height > UNINCLUDED_BATCH_RETENTION:
            await self._prune_batches(block.height - UNINCLUDED_BATCH_RETENTION)
        # An Address is its 20 bytes (a NewType): each sender as it is.
        senders = cast(list[Address], [s.sender for s in sequenced])
        self._after_commit(block.height, block_digest, hashes, senders)
        self.metrics.execute_seconds.observe(time.perf_counter() - started)

    def live_envelopes(
        self,
        height: int,
        batches: Sequence[Batch],
        sender_of: Callable[[bytes, bytes], Address | None] | None = None,
    ) -> list[tuple[bytes, Envelope]]:
        """The envelopes a block opens (`block_envelopes`) of a committed block's
        `batches`, with the senders they carry (`sender_of`: `senders_in(batches)`,
        built here unless the caller has it)."""
        if sender_of is None:
            sender_of = senders_in(batches)
        return block_envelopes(
            height,
            batches,
            lambda h, e: sender_of(h, e) is not None,
            self._key_epoch_at(height),
        )

    def _key_epoch_at(self, height: int) -> int | None:
        """The key epoch envelopes at `height` must name; None without a key."""
        return None if self.decryptor is None else self.decryptor.key_epoch_at(height)

    async def open_block(
        self,
        height: int,
        digest: bytes,
        resolved: list[ResolvedTransaction],
        batches: Sequence[Batch],
        forced: Sequence[ForcedEntry] = (),
    ) -> tuple[list[ResolvedTransaction], bytes | None]:
        """`resolved` with each envelope replaced by what it reveals
        (`reveal_envelopes`), and the block's order seed: with a threshold key
        and a block that needs a seed (`block_needs_order_seed`, `forced` the
        payload's forced marks), both from t verified share messages (waits
        for them; `begin` started gathering them when the block was fetched);
        without a key, envelopes fail and there is no seed; a block that needs
        no seed opens no envelope and has none."""
        out, opened = await self.open_block_with_proof(height, digest, resolved, batches, forced)
        return out, None if opened is None else opened.order_seed

    async def open_block_with_proof(
        self,
        height: int,
        digest: bytes,
        resolved: list[ResolvedTransaction],
        batches: Sequence[Batch],
        forced: Sequence[ForcedEntry] = (),
        sender_of: Callable[[bytes, bytes], Address | None] | None = None,
    ) -> tuple[list[ResolvedTransaction], OpenedBlock | None]:
        """As `open_block`, with what the shares opened: the order seed and its
        proof, the t coin shares it was combined from (stored with the block,
        so subscribers can check the order; None without a threshold key or
        for a block that needs no seed). `sender_of`: `senders_in(batches)`,
        built here unless the caller has it."""
        if sender_of is None:
            sender_of = senders_in(batches)
        live = self.live_envelopes(height, batches, sender_of)
        key_epoch = self._key_epoch_at(height)
        if self.decryptor is None or self.domain is None:
            return reveal_envelopes(height, resolved, live, None, self.domain, key_epoch), None
        if not block_needs_order_seed(batches, forced, live, sender_of):
            # No envelope to open and one order for every seed: no share round.
            self.decryptor.discard(height)
            self.status.feed.seedless(height)
            self.metrics.order_seed_skipped.inc()
            return reveal_envelopes(height, resolved, live, [], self.domain, key_epoch), None
        started = time.perf_counter()
        opened: OpenedBlock = await self.decryptor.open_block(height, digest, [e for _, e in live])
        log.info(
            "event=block_opened height=%d envelopes=%d wait_ms=%d",
            height,
            len(live),
            (time.perf_counter() - started) * 1000,
        )
        out = reveal_envelopes(height, resolved, live, opened.plaintexts, self.domain, key_epoch)
        return out, opened

    async def _prune_batches(self, below_height: int) -> None:
        pruned = await trio.to_thread.run_sync(
            self.store.prune_unreferenced_batches, below_height, self.own_index
        )
        self.pool.forget(pruned)
        if pruned:
            log.info("event=batches_pruned count=%d below_height=%d", len(pruned), below_height)

    def _check_vouched_root(self, height: int, payload: BlockPayload) -> None:
        """Voters that had not executed the vouched height voted without comparing;
        compare now that this node has (it always has: execution is in order)."""
        try:
            check_vouched_root(payload, self.state_root_at)
        except StateRootMismatch as exc:
            self.metrics.state_root_mismatches.inc()
            log.critical(
                "event=state_root_mismatch height=%d vouched_height=%d reason=%s",
                height,
                payload.state_height,
                exc,
            )

    def _after_commit(
        self, height: int, digest: bytes, hashes: list[bytes], senders: list[Address]
    ) -> None:
        now = time.monotonic()
        # This node accepted some of them (a C loop over the block, the
        # acceptance times of those in block order).
        accepted_at = [a for a in map(self.accepted_at.pop, hashes, repeat(None)) if a is not None]
        latencies_ms = self.status.latencies_ms
        observe = self.metrics.commit_latency.observe
        for accepted in accepted_at:
            latency = now - accepted
            latencies_ms.append(latency * 1000)
            observe(latency)
        removed = self.mempool.on_committed(hashes, senders)
        if removed:
            # The block's own transactions left the pending table in its commit.
            committed = set(hashes)
            stale = [h for h in removed if h not in committed]
            if stale:
                self.store.remove_pending(stale)
        self.status.height = height
        self.status.feed.announce(height)  # subscribers: never waits
        self._advanced.set()
        self._advanced = trio.Event()
        self.status.last_hash = digest
        self.status.state_root = self.state.state_root
        self.status.committed_txs += len(hashes)
        self.metrics.height.set(height)
        self.metrics.committed_blocks.inc()
        self.metrics.committed_txs.inc(len(hashes))
        log.info(
            "event=committed height=%d hash=%s txs=%d state_root=%s",
            height,
            digest.hex()[:12],
            len(hashes),
            self.state.state_root.hex()[:12],
        )
