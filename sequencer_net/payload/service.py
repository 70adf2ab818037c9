"""Building a leader's payload and checking a proposed one (the shell around
`payload.checks`: it waits and fetches, the checks decide).

Build: wait (briefly) for a batch when there is none, then take the current
time, the latest executed state root, and the batches no committed block and
no uncommitted ancestor of the new block names yet, as many as fit one block,
those carrying forced transactions first (overdue ones foremost), then the
others oldest certificate first, and the forced inbox entries among their
transactions marked (`ForcedInclusion.marks_for`) (with certificates on, only certified
batches are candidates, `Certificates.candidates`); while this
validator's execution lags too far (checks.MAX_EXECUTION_LAG), only the
batches carrying overdue forced transactions, which voters require.
Before building, a leader whose execution trails finalization by more than
checks.MAX_EXECUTION_BACKLOG blocks waits (bounded) for it: backpressure.

Verify: well-formed; `checks.check_header` against the parent;
`checks.check_vouched_root` against this validator's own root if it has
executed that height (never waiting for it); every named batch present and
verified here (fetched from the proposer, then from other peers, when
missing); `checks.check_block_size` over them; `checks.check_namespace_root`
over their transactions; with forced inclusion on, `checks.check_forced_inclusion`
(no overdue forced transaction held here in a verified batch is left out);
`checks.check_forced_marks` (the forced entries the block marks are inbox
entries scanned here, in inbox order, and none it must mark is left out);
with certificates on, `checks.check_batches_certified` (certificates missing
here awaited briefly, then fetched) and `checks.check_certificate_inclusion`
(no certificate held here for the inclusion delay, counted up to this
validator's entry into the block's view, is left out, docs/consensus.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import trio

from consensus.core import ConsensusCore
from consensus.messages import Block
from sequencer_net.batches.fetch import BatchFetcher
from sequencer_net.batches.pool import MAX_BATCHES_PER_REQUEST, BatchPool, BatchRequest
from sequencer_net.l1.forced import ForcedInclusion
from sequencer_net.payload.checks import (
    MAX_EXECUTION_BACKLOG,
    MAX_EXECUTION_LAG,
    BatchesUnavailable,
    BatchSize,
    HeldBatch,
    OverdueCertificateSkipped,
    ParentState,
    PayloadRejected,
    block_namespace_pairs,
    check_batches_certified,
    check_block_size,
    check_certificate_inclusion,
    check_forced_inclusion,
    check_forced_marks,
    check_header,
    check_namespace_root,
    check_vouched_root,
    fill_block,
)
from sequencer_net.payload.format import (
    MAX_BATCHES_PER_BLOCK,
    BlockPayload,
    ForcedEntry,
    MalformedPayload,
    decode_payload,
    encode_payload,
)
from sequencer_net.payload.namespaces import namespace_root

log = logging.getLogger("seqnet.payload")


ROOT_IN_THREAD_MIN_TXS = 2_048
"""Blocks with at least this many transactions have their namespace root (two
keccaks per transaction) computed in a worker thread, so the event loop keeps
serving consensus meanwhile."""

IN_FLIGHT_WAIT_S = 0.5
"""How long a voter waits for a named batch that is queued for verification here
before it fetches it from a peer instead."""


CERTIFICATE_ARRIVAL_WAIT_S = 0.3
"""How long a voter waits for the certificates of named batches it does not
hold yet to arrive on their own (queued here behind other certificate
messages, or still on their way from their author, who broadcast them as it
formed them) before it asks peers for them: under load a request round trip
took 0.5 to 5 s, while a certificate on its way takes a fraction of that."""

FORCED_MARK_WAIT_S = 1.0
"""How long a voter waits for its L1 watcher to record an inbox entry a
proposal marks and it has not recorded: the leader's watcher may have polled
the L1 a moment earlier (the default poll is every 500 ms). Then it refuses."""

PACE_FULL_TXS = 32
"""Pacing (`[consensus] min_block_interval_ms`) holds a leader the whole
interval after a parent block of this many transactions or more, and that
fraction of it after a smaller one: on this project's 2-core benchmark machine
an idle network's blocks carry one or two transactions (a hold of a few ms),
and at 730 tx/s unpaced blocks carry about 36, which is where fewer, fuller
blocks lowered latency (docs/performance.md, "Pacing")."""

PACE_LARGE_TXS = 256
PACE_STRETCH_TXS = 512
"""Past a parent of PACE_LARGE_TXS transactions the hold grows by the interval
times (transactions - PACE_LARGE_TXS) / PACE_STRETCH_TXS, up to twice the
interval (a parent of 768 or more): near the network's highest rate the
blocks' fixed cost (messages, synced votes, the share round, a commit) is paid
fewer times a second, while at half that rate (blocks of about 150 on this
project's benchmark machine) the hold is the plain interval
(docs/performance.md, "Pacing")."""

PACE_MAX_FACTOR = 2

ENGINE_PACE_WEIGHT = 2
"""Pacing counts a transaction in the engine's namespace (0: orders, cancels,
deposits...) as this many. Executing a block costs every validator a fixed
part besides its transactions, and with a market it is larger: the auctions
and funding of every market and the end-of-block margin check over the
holders of every market whose inputs moved. So DEX blocks are held as if
twice as full: near 2,000 DEX tx/s on this project's benchmark machine the
hold reaches its longest, twice the setting, and blocks come about 4 a
second instead of 7, the validators spending less CPU on the same load,
while at half that rate the hold barely changes (docs/performance.md,
"Pacing by the engine's share")."""


def pacing_interval_ms(setting_ms: int, parent_txs: int) -> int:
    """The pacing interval after a parent of `parent_txs` transactions: that
    fraction of `setting_ms` up to PACE_FULL_TXS, the setting up to
    PACE_LARGE_TXS, then growing linearly to PACE_MAX_FACTOR times it."""
    if parent_txs <= PACE_FULL_TXS:
        return setting_ms * max(parent_txs, 0) // PACE_FULL_TXS
    extra = min(parent_txs - PACE_LARGE_TXS, PACE_STRETCH_TXS * (PACE_MAX_FACTOR - 1))
    if extra <= 0:
        return setting_ms
    return setting_ms + setting_ms * extra // PACE_STRETCH_TXS


class Certificates(Protocol):
    """The availability certificates this validator holds (sequencer_net/node/
    certifying.py `BatchCertifier`): what leaders fill blocks from and voters
    hold proposals to."""

    delay_views: int
    delay_ms: int

    def now_ms(self) -> int: ...

    def overdue_as_of_ms(self, view: int) -> int | None: ...

    def certified(self, digest: bytes) -> bool: ...

    def held(self, digest: bytes) -> HeldBatch | None: ...

    def author_of(self, digest: bytes) -> int | None: ...

    def candidates(self, exclude: set[bytes]) -> list[HeldBatch]: ...

    async def wait_for_certificate(self) -> None: ...

    async def wait_for_certificates(self, digests: Iterable[bytes], timeout_s: float) -> None: ...

    async def fetch_missing_batches(self) -> None: ...

    async def fetch_certificates(self, digests: Iterable[bytes], prefer: int | None) -> None: ...

    def refused(self, view: int) -> None: ...


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _decoded(block: Block | None) -> BlockPayload | None:
    """A block's payload, decoded (None: no block, or a malformed payload)."""
    if block is None:
        return None
    try:
        return decode_payload(block.payload)
    except MalformedPayload:
        return None


class PayloadService:
    def __init__(
        self,
        *,
        core: ConsensusCore,
        pool: BatchPool,
        fetcher: BatchFetcher,
        genesis_time_ms: int,
        genesis_state_root: bytes,
        executed: Callable[[], tuple[int, bytes]],
        wait_executed: Callable[[int], Awaitable[None]],
        state_root_at: Callable[[int], bytes | None],
        empty_block_wait_ms: int,
        lag_wait_ms: int,
        min_block_wait_ms: int = 0,
        clock_ms: Callable[[], int] = wall_clock_ms,
        forced: ForcedInclusion | None = None,
        is_committed: Callable[[bytes], bool] = lambda tx_hash: False,
        certificates: Certificates | None = None,
        censor: int | None = None,
    ) -> None:
        self.core = core
        self.pool = pool
        self.fetcher = fetcher
        self.genesis = ParentState(genesis_time_ms, 0, genesis_state_root)
        self.executed = executed
        self.wait_executed = wait_executed
        self.state_root_at = state_root_at
        self.empty_block_wait_ms = empty_block_wait_ms
        self.lag_wait_ms = lag_wait_ms
        self.min_block_wait_ms = min_block_wait_ms
        """Pacing, as leader only: the least time from the parent's timestamp to a
        proposal on it (`[consensus] min_block_interval_ms`, capped; 0: off)."""
        self.clock_ms = clock_ms
        self.forced = forced
        """Forced transactions to hold leaders to (None: the rule is off)."""
        self.is_committed = is_committed
        """Whether a transaction hash is committed here (the store's index)."""
        self.unchecked_roots = 0
        """Votes cast before this validator had executed the vouched height."""
        self.inclusion_unchecked = 0
        """Votes cast without the inclusion rules: an uncommitted ancestor of the
        block was not known here yet."""
        self.certificates = certificates
        """Certified availability (None: every verified batch is a candidate, no
        certificate is checked; unit tests of the other rules)."""
        self.censor = censor
        """Test fault `[consensus] test_fault = "censor"`: as leader, leave out this
        validator's batches (None on real networks)."""

    def parent_state(self, block: Block | None) -> ParentState | None:
        """What a block says about time and state (None: unknown or malformed)."""
        return self._state_of(block, _decoded(block))

    def _state_of(self, block: Block | None, payload: BlockPayload | None) -> ParentState | None:
        """`parent_state` from the block's payload decoded already (`_decoded`)."""
        if block is None:
            return None
        if block.height == 0:
            return self.genesis
        if payload is None:
            return None
        return ParentState(payload.timestamp_ms, payload.state_height, payload.state_root)

    def _ancestry(
        self, parent_digest: bytes, parent: tuple[Block | None, BlockPayload | None] | None = None
    ) -> tuple[set[bytes], bool]:
        """Batches named by the ancestors of a new block (parent included) that this
        validator has not executed yet: uncommitted ones, and committed ones whose
        batches the pool has not marked included yet (it does so as it executes
        them); naming such a batch again would only repeat its transactions. And
        whether every ancestor down to the executed or committed height is known
        here: a voter that lacks an ancestor (a notarized block it has not
        received yet) cannot tell what that ancestor carries, so the inclusion
        rules do not bind its vote on this block. `parent`: the parent block and
        its payload, looked up and decoded already (`_decoded`), so neither is
        looked up or decoded again."""
        names: set[bytes] = set()
        digest = parent_digest
        floor = min(self.core.committed.height, self.executed()[0])
        while True:
            if parent is not None:
                block, payload = parent
                parent = None
            else:
                block = self.core.known_block(digest)
                payload = None if block is None or block.height <= floor else _decoded(block)
            if block is None:
                return names, False
            if block.height <= floor:
                return names, True
            if payload is not None:
                names.update(payload.batches)
            digest = block.parent

    async def build(self, parent_digest: bytes, height: int) -> bytes:
        """The payload of a new block at `height` on `parent_digest`; waits up to
        the empty-block interval for a first batch so an idle network does not
        spin empty blocks. With pacing on (`min_block_wait_ms`), it first waits
        until that long after the parent's timestamp, so that under load blocks
        come fewer and fuller; the pacing wait counts toward the empty-block
        interval."""
        target = max(self.core.committed.height - MAX_EXECUTION_BACKLOG, height - MAX_EXECUTION_LAG)
        if self.executed()[0] < target:
            # Backpressure: ordering waits (a bounded time, well inside the view)
            # for execution rather than racing ahead with small or empty blocks.
            started = time.perf_counter()
            with trio.move_on_after(self.lag_wait_ms / 1000):
                await self.wait_executed(target)
            waited_ms = int((time.perf_counter() - started) * 1000)
            log.info(
                "event=build_waited_for_execution height=%d target=%d executed=%d wait_ms=%d",
                height,
                target,
                self.executed()[0],
                waited_ms,
            )
        lagging = height - self.executed()[0] > MAX_EXECUTION_LAG
        # The parent's payload is decoded once, for the ancestry, its state and pacing.
        parent_block = self.core.known_block(parent_digest)
        parent_payload = _decoded(parent_block)
        exclude = self._ancestry(parent_digest, (parent_block, parent_payload))[0]
        if self.certificates is not None:
            await self.certificates.fetch_missing_batches()
        parent = self._state_of(parent_block, parent_payload)
        waited = time.perf_counter()
        pace_ms = 0
        if not lagging:
            deadline = trio.current_time() + self.empty_block_wait_ms / 1000
            pace_ms = self.pacing_wait_ms(parent, self._transactions_in(parent_payload))
            if pace_ms:
                await trio.sleep(pace_ms / 1000)
            with trio.move_on_at(deadline):
                while not self._candidates(exclude, 1):
                    await self._wait_for_candidate()
        waited_ms = int((time.perf_counter() - waited) * 1000)
        urgent, forced = self._forced_batches(exclude)
        batches: list[bytes] = []
        if not lagging:
            first = urgent + forced
            named = {d for d, _ in first}
            rest = self._candidates(exclude, MAX_BATCHES_PER_BLOCK)
            candidates = first + [c for c in rest if c[0] not in named]
            batches = fill_block(candidates, MAX_BATCHES_PER_BLOCK)
        elif urgent:
            # Voters refuse a block leaving out an overdue forced transaction,
            # lagging leader or not: carry those batches, nothing more.
            batches = fill_block(urgent, MAX_BATCHES_PER_BLOCK)
        per_batch = [(d, self.pool.namespace_pairs(d)) for d in batches]
        # A batch pruned meanwhile is left for no block: the root covers what is named.
        batches = [d for d, pairs in per_batch if pairs is not None]
        pairs = block_namespace_pairs(p for _, p in per_batch if p is not None)
        state_height, state_root = self.executed()
        if parent is not None and parent.state_height >= state_height:
            # Our execution has not passed the state the parent vouched for: repeat it.
            state_height, state_root = parent.state_height, parent.state_root
        if len(pairs) >= ROOT_IN_THREAD_MIN_TXS:
            root = await trio.to_thread.run_sync(namespace_root, pairs)
        else:
            root = namespace_root(pairs)
        marks = [] if self.forced is None else self.forced.marks_for({h for _, h in pairs})
        log.info(
            "event=payload_built height=%d batches=%s candidate_wait_ms=%d pace_ms=%d",
            height,
            ",".join(d.hex()[:12] for d in batches) or "-",
            waited_ms,
            pace_ms,
        )
        return encode_payload(
            BlockPayload(
                timestamp_ms=max(self.clock_ms(), 0 if parent is None else parent.timestamp_ms),
                state_height=state_height,
                state_root=state_root,
                batches=batches,
                namespace_root=root,
                forced=[ForcedEntry(index, tx_hash) for index, tx_hash in marks],
            )
        )

    def pacing_wait_ms(self, parent: ParentState | None, parent_txs: int) -> int:
        """How long a leader holds its proposal on `parent` (pacing): until the
        pacing interval after the parent's timestamp, which every validator reads
        the same from the parent block. The interval is `min_block_wait_ms` when
        the parent carried PACE_FULL_TXS transactions or more (a busy network),
        that fraction of it below (an idle network's blocks of a transaction or
        two are barely held), and longer after a parent of more than
        PACE_LARGE_TXS (`pacing_interval_ms`). Never longer than the interval itself, whatever
        this clock says against the one that stamped the parent; 0 with pacing
        off or the parent unknown. Leader-local: no voter checks it, so it
        changes nothing about which blocks are valid."""
        if self.min_block_wait_ms <= 0 or parent is None:
            return 0
        interval = pacing_interval_ms(self.min_block_wait_ms, parent_txs)
        due = parent.timestamp_ms + interval - self.clock_ms()
        return max(0, min(interval, due))

    def _transactions_in(self, payload: BlockPayload | None) -> int:
        """The transactions a block with `payload` orders, as far as this pool
        knows its batches' sizes, each of the engine's counted ENGINE_PACE_WEIGHT
        times (as far as the pool keeps their namespaces), up to PACE_LARGE_TXS
        + PACE_STRETCH_TXS (all pacing needs)."""
        if payload is None or self.min_block_wait_ms <= 0:
            return 0
        total = 0
        for digest in payload.batches:
            size = self.pool.size_of(digest)
            if size is not None:
                engine = self.pool.engine_transactions(digest)
                total += size.transactions + (ENGINE_PACE_WEIGHT - 1) * engine
                if total >= PACE_LARGE_TXS + PACE_STRETCH_TXS:
                    break
        return total

    def _candidates(self, exclude: set[bytes], limit: int) -> list[tuple[bytes, BatchSize]]:
        """Batches a block on these ancestors may name: with certificates, the
        certified ones oldest certificate first; else every verified one."""
        if self.certificates is None:
            return self.pool.unincluded(exclude, limit)
        held = self.certificates.candidates(exclude)
        if self.censor is not None:
            held = [h for h in held if self.certificates.author_of(h.digest) != self.censor]
        return [(h.digest, h.size) for h in held[:limit]]

    async def _wait_for_candidate(self) -> None:
        """Until a batch arrives or, with certificates, a certificate: a candidate
        needs both, and either may come last."""
        certificates = self.certificates
        if certificates is None:
            await self.pool.wait_for_batch()
            return
        async with trio.open_nursery() as nursery:

            async def first(wait: Callable[[], Awaitable[None]]) -> None:
                await wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(first, self.pool.wait_for_batch)
            nursery.start_soon(first, certificates.wait_for_certificate)

    def _certified(self, digest: bytes) -> bool:
        return self.certificates is None or self.certificates.certified(digest)

    def _forced_batches(
        self, exclude: set[bytes]
    ) -> tuple[list[tuple[bytes, BatchSize]], list[tuple[bytes, BatchSize]]]:
        """The leader's forced batches: one held batch for each overdue forced
        transaction, then one for each other tracked one; none for a
        transaction a batch in `exclude` (an ancestor's) already carries."""
        if self.forced is None:
            return [], []
        overdue = self.forced.overdue(self.is_committed)
        tracked = self.forced.tracked()
        if not tracked:
            return [], []
        held = self._certified_holders(self.pool.batches_holding(sorted(tracked)))
        chosen: set[bytes] = set()
        urgent: list[tuple[bytes, BatchSize]] = []
        rest: list[tuple[bytes, BatchSize]] = []
        for tx_hash in sorted(held, key=lambda h: (h not in overdue, h)):
            holders = held[tx_hash]
            if any(d in exclude or d in chosen for d, _ in holders):
                continue
            digest, size = holders[0]
            chosen.add(digest)
            (urgent if tx_hash in overdue else rest).append((digest, size))
        return urgent, rest

    def _certified_holders(
        self, held: dict[bytes, list[tuple[bytes, BatchSize]]]
    ) -> dict[bytes, list[tuple[bytes, BatchSize]]]:
        """Only certified batches can be named (voters refuse others): a forced
        transaction binds leaders only through a certified batch carrying it."""
        out = {h: [b for b in holders if self._certified(b[0])] for h, holders in held.items()}
        return {h: holders for h, holders in out.items() if holders}

    def _check_inclusion(self, block: Block, payload: BlockPayload) -> None:
        """Raise OverdueCertificateSkipped if the block leaves out a certified batch
        held here whose certificate is overdue (`check_certificate_inclusion`),
        its time counted up to this validator's entry into the block's view
        (`Certificates.overdue_as_of_ms`), not up to the check."""
        if self.certificates is None:
            return
        ancestors, complete = self._ancestry(block.parent)
        if not complete:
            self.inclusion_unchecked += 1
            return
        as_of_ms = self.certificates.overdue_as_of_ms(block.view)
        if as_of_ms is None:
            if self.certificates.delay_ms > 0:
                return  # no view entered here yet: no time has counted
            as_of_ms = self.certificates.now_ms()
        exclude = ancestors | set(payload.batches)
        left_out = self.certificates.candidates(exclude)
        named = [self.certificates.held(d) for d in payload.batches]
        in_block = [h for h in named if h is not None]
        try:
            check_certificate_inclusion(
                left_out,
                in_block,
                view=block.view,
                delay_views=self.certificates.delay_views,
                now_ms=as_of_ms,
                delay_ms=self.certificates.delay_ms,
            )
        except OverdueCertificateSkipped:
            self.certificates.refused(block.view)
            raise

    def _check_forced(
        self,
        block: Block,
        payload: BlockPayload,
        sizes: list[BatchSize],
        pairs: list[tuple[int, bytes]],
    ) -> None:
        """Raise ForcedTransactionSkipped if the block leaves out an overdue forced
        transaction that a verified batch in this pool carries.

        Only a transaction some verified batch here carries binds the vote: the
        leader demonstrably could have it (every batch is broadcast to every
        validator and fetchable by digest). Requiring one that never reached a
        batch (dropped by every mempool, say) would halt the chain, as no leader
        could satisfy it."""
        if self.forced is None:
            return
        overdue = self.forced.overdue(self.is_committed)
        if not overdue:
            return
        in_block = {h for _, h in pairs}
        held = self._certified_holders(self.pool.batches_holding(sorted(overdue - in_block)))
        if not held:
            return
        ancestors, complete = self._ancestry(block.parent)
        if not complete:
            self.inclusion_unchecked += 1
            return
        in_ancestors: set[bytes] = set()
        for digest in ancestors:
            in_ancestors.update(h for _, h in self.pool.namespace_pairs(digest) or [])
        skipped = {h: holders for h, holders in held.items() if h not in in_ancestors}
        if not skipped:
            return
        tracked = self.forced.tracked()
        full_of_forced = bool(payload.batches) and all(
            any(h in tracked for _, h in self.pool.namespace_pairs(d) or [])
            for d in payload.batches
        )
        check_forced_inclusion(skipped, sizes, full_of_forced=full_of_forced)

    async def _wait_for_marked_entries(self, payload: BlockPayload) -> None:
        """Until this validator's watcher has recorded every entry the block
        marks, or FORCED_MARK_WAIT_S passed (the check then refuses the unknown
        ones)."""
        forced = self.forced
        if forced is None or not payload.forced:
            return
        with trio.move_on_after(FORCED_MARK_WAIT_S):
            while any(forced.inbox_entry(entry.tx_hash) is None for entry in payload.forced):
                changed = trio.Event()
                forced.on_change.append(changed.set)
                try:
                    await changed.wait()
                finally:
                    forced.on_change.remove(changed.set)

    def _check_forced_marks(self, payload: BlockPayload, pairs: list[tuple[int, bytes]]) -> None:
        """Raise a PayloadRejected subclass unless the block's forced marks are
        the inbox's truth as far as this validator has read it (`check_forced_marks`).
        Without an L1 there is no inbox: any mark is unknown."""
        in_block = {h for _, h in pairs}
        marks = [(entry.index, entry.tx_hash) for entry in payload.forced]
        forced = self.forced
        if forced is None:
            check_forced_marks(marks, in_block, lambda tx_hash: None, [])
            return

        def inbox_index(tx_hash: bytes) -> int | None:
            entry = forced.inbox_entry(tx_hash)
            return None if entry is None else entry.index

        check_forced_marks(marks, in_block, inbox_index, forced.required_marks(in_block))

    def _namespace_pairs(self, digests: list[bytes]) -> list[tuple[int, bytes]]:
        """The (namespace, tx hash) pairs of the block's batches (all held here)."""
        per_batch: list[list[tuple[int, bytes]]] = []
        for digest in digests:
            pairs = self.pool.namespace_pairs(digest)
            if pairs is None:
                raise BatchesUnavailable(f"batch {digest.hex()[:12]} unavailable")
            per_batch.append(pairs)
        return block_namespace_pairs(per_batch)

    async def verify(self, block: Block) -> bool:
        started = time.perf_counter()
        waited_s = [0.0, 0.0]
        try:
            await self.check(block, waited_s)
        except (PayloadRejected, MalformedPayload) as exc:
            log.warning(
                "event=payload_rejected view=%d height=%d reason=%s: %s",
                block.view,
                block.height,
                type(exc).__name__,
                exc,
            )
            return False
        batches_s, certificates_s = waited_s
        log.info(
            "event=payload_checked view=%d height=%d check_ms=%d batch_wait_ms=%d "
            "certificate_wait_ms=%d",
            block.view,
            block.height,
            int((time.perf_counter() - started) * 1000),
            int(batches_s * 1000),
            int(certificates_s * 1000),
        )
        return True

    async def check(self, block: Block, waited_s: list[float] | None = None) -> None:
        """Raise PayloadRejected (or MalformedPayload) unless we may vote for `block`.
        `waited_s`, if given, receives the seconds spent getting the named batches
        and their certificates (awaited or fetched)."""
        waited_s = [0.0, 0.0] if waited_s is None else waited_s
        payload = decode_payload(block.payload)
        parent = self.parent_state(self.core.known_block(block.parent))
        check_header(payload, height=block.height, parent=parent, now_ms=self.clock_ms())
        if not check_vouched_root(payload, self.state_root_at):
            self.unchecked_roots += 1
        missing = [d for d in payload.batches if d not in self.pool]
        waited = time.perf_counter()
        if missing:
            # Batches that reached us but wait in the verification queue are worth
            # waiting for: fetching them would verify them a second time.
            await self.pool.wait_for(missing, IN_FLIGHT_WAIT_S)
            missing = [d for d in missing if d not in self.pool]
        for i in range(0, len(missing), MAX_BATCHES_PER_REQUEST):
            chunk = missing[i : i + MAX_BATCHES_PER_REQUEST]
            await self.fetcher.fetch(BatchRequest(chunk), prefer=block.proposer)
        waited_s[0] = time.perf_counter() - waited
        if self.certificates is not None:
            waited = time.perf_counter()
            uncertified = [d for d in payload.batches if not self.certificates.certified(d)]
            if uncertified:
                await self.certificates.wait_for_certificates(
                    uncertified, CERTIFICATE_ARRIVAL_WAIT_S
                )
                uncertified = [d for d in uncertified if not self.certificates.certified(d)]
            if uncertified:
                await self.certificates.fetch_certificates(uncertified, prefer=block.proposer)
            waited_s[1] = time.perf_counter() - waited
            check_batches_certified(payload.batches, self.certificates.certified)
        sizes: list[BatchSize] = []
        for digest in payload.batches:
            size = self.pool.size_of(digest)
            if size is None:
                raise BatchesUnavailable(f"batch {digest.hex()[:12]} unavailable")
            sizes.append(size)
        check_block_size(sizes)
        pairs = self._namespace_pairs(payload.batches)
        if len(pairs) >= ROOT_IN_THREAD_MIN_TXS:
            await trio.to_thread.run_sync(check_namespace_root, payload, pairs)
        else:
            check_namespace_root(payload, pairs)
        self._check_forced(block, payload, sizes, pairs)
        await self._wait_for_marked_entries(payload)
        self._check_forced_marks(payload, pairs)
        self._check_inclusion(block, payload)
