"""The rules a proposed block's payload must meet before a validator votes for it.

Pure functions over plain values, each raising a named `PayloadRejected`
subclass at the first rule that fails, in the order a reader checks a header:

    check_header          timestamp, state height and root against the parent
    check_vouched_root    the vouched root against this validator's own, if it
                          has executed that height yet
    check_block_size      the named batches' transactions fit one block
    check_namespace_root  the namespace root is that of the named batches'
                          transactions (`block_namespace_pairs`)
    check_forced_inclusion  no overdue forced transaction that a verified
                          batch here carries is left out (docs/l1.md)
    check_forced_marks    the block's forced marks name inbox entries this
                          validator scanned, at their indexes, in inbox order,
                          among the block's transactions, and leave out none
                          it holds the block to (docs/l1.md)
    check_batches_certified  every named batch has an availability certificate
                          held here (sequencer_net/batches/certificate.py)
    check_certificate_inclusion  no certificate held here for K views is left
                          out while it would have fitted (docs/consensus.md,
                          "Inclusion rule")

Voting never waits for this validator's own execution: a block vouches for
the state root of an earlier height, and a validator that has not executed
that height yet votes without comparing (the commit pipeline compares when
execution gets there, and raises an alarm on a mismatch). A leader whose
execution lags too far proposes blocks without batches until it catches up,
which bounds the lag (docs/architecture.md, "Execution trails ordering").
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sequencer_net.execution.limits import MAX_TRANSACTIONS_PER_BLOCK
from sequencer_net.payload.format import (
    MAX_BATCHES_PER_BLOCK,
    MAX_CLOCK_DRIFT_MS,
    MAX_FORCED_PER_BLOCK,
    BlockPayload,
)
from sequencer_net.payload.namespaces import namespace_root

MAX_BLOCK_TX_BYTES = 64 * 1024 * 1024
"""Encoded transactions one block may order (the sum over its batches): what
every validator fetches, stores and executes per block."""

MAX_EXECUTION_LAG = 8
"""A leader whose own execution is more than this many heights behind the block
it proposes puts no batches in it: consensus keeps ordering (empty blocks) while
execution catches up, so the lag between ordering and execution stays bounded."""

MAX_EXECUTION_BACKLOG = 1
"""Finalized blocks a leader lets wait for its own execution before it builds
the next block: beyond this it first waits (at most half a view timeout) for
execution. Batches arriving meanwhile go into that next block, so when
execution is the bottleneck blocks grow rather than multiply, and each block's
fixed execution cost is paid fewer times. Counted from the finalized height,
not the proposed one, so a leader never waits for consensus itself.

A leader-local rule (voters do not check it), so any value is safe: the
block still vouches for the leader's latest executed root, and
MAX_EXECUTION_LAG still bounds the lag. On a chain with a threshold key a
block executes only after its post-commit share round, and a larger value
would let that round overlap more proposals; measured with 3 against 1
(docs/fairness.md, "Where the added latency goes"), leaders waited in only
a few builds per run at 1 (0.04 to 2.7 s of a run of 35 to 83 s), and 3
did not pay overall: encrypted throughput rose 12% at the median of three
interleaved pairs, plain throughput fell 31%. So it stays 1."""


class PayloadRejected(ValueError):
    """A proposed payload this validator must not vote for; subclasses say why."""


class TimestampInFuture(PayloadRejected):
    pass


class TimestampBeforeParent(PayloadRejected):
    pass


class StateHeightRegressed(PayloadRejected):
    pass


class StateHeightNotBelowBlock(PayloadRejected):
    pass


class StateRootMismatch(PayloadRejected):
    pass


class BlockTooLarge(PayloadRejected):
    pass


class BatchesUnavailable(PayloadRejected):
    pass


class NamespaceRootMismatch(PayloadRejected):
    pass


class UncertifiedBatch(PayloadRejected):
    """The block names a batch for which this validator holds no certificate."""


class OverdueCertificateSkipped(PayloadRejected):
    """The block leaves out a batch whose certificate this validator has held
    for the inclusion delay, while it had room for it."""


class ForcedTransactionSkipped(PayloadRejected):
    """The block leaves out an overdue forced transaction that a verified batch
    held here carries, while it had room for that batch."""


class ForcedMarksOutOfOrder(PayloadRejected):
    """The block's forced marks are not in strictly increasing inbox index."""


class ForcedMarkNotInBlock(PayloadRejected):
    """A forced mark names a transaction none of the block's batches carries."""


class UnknownForcedEntry(PayloadRejected):
    """A forced mark names a transaction that is no inbox entry this validator
    has scanned on the L1: an ordinary transaction passed off as forced, or one
    this validator cannot check yet."""


class ForgedForcedEntry(PayloadRejected):
    """A forced mark gives an inbox entry's transaction another index than the
    Inbox gave it."""


class ForcedEntryUnmarked(PayloadRejected):
    """The block carries a forced inbox entry old enough that every honest
    leader marks it, and leaves it unmarked."""


@dataclass(frozen=True, slots=True)
class ParentState:
    """What a block's parent says: its time and the state it vouched for."""

    timestamp_ms: int
    state_height: int
    state_root: bytes


@dataclass(frozen=True, slots=True)
class BatchSize:
    transactions: int
    tx_bytes: int


def check_header(
    payload: BlockPayload, *, height: int, parent: ParentState | None, now_ms: int
) -> None:
    """Time never runs backwards nor far ahead of this validator's clock; the
    vouched state height never goes down and stays below the block's height;
    re-vouching the parent's height must repeat the parent's root."""
    if payload.timestamp_ms > now_ms + MAX_CLOCK_DRIFT_MS:
        raise TimestampInFuture(
            f"timestamp {payload.timestamp_ms} is more than {MAX_CLOCK_DRIFT_MS} ms ahead"
        )
    if payload.state_height >= height:
        raise StateHeightNotBelowBlock(
            f"vouches for height {payload.state_height} in a block at height {height}"
        )
    if parent is None:
        return
    if payload.timestamp_ms < parent.timestamp_ms:
        raise TimestampBeforeParent("timestamp before the parent's")
    if payload.state_height < parent.state_height:
        raise StateHeightRegressed(
            f"vouches for height {payload.state_height}, the parent for {parent.state_height}"
        )
    if payload.state_height == parent.state_height and payload.state_root != parent.state_root:
        raise StateRootMismatch(
            f"a different root than the parent for the same height {payload.state_height}"
        )


def check_vouched_root(payload: BlockPayload, own_root_at: Callable[[int], bytes | None]) -> bool:
    """Compare the vouched root with ours when we have executed that height.

    Returns whether the comparison was made (False: not executed here yet, the
    vote goes ahead and the commit pipeline compares later)."""
    ours = own_root_at(payload.state_height)
    if ours is None:
        return False
    if ours != payload.state_root:
        raise StateRootMismatch(
            f"state root at height {payload.state_height} differs from ours: "
            f"{payload.state_root.hex()[:12]} vs {ours.hex()[:12]}"
        )
    return True


def check_block_size(batches: Sequence[BatchSize]) -> None:
    """The block's batches together stay within what one block may execute, so
    a certified block can always be executed in full (the engine is total even
    beyond, but voters never certify such a block)."""
    transactions = sum(b.transactions for b in batches)
    if transactions > MAX_TRANSACTIONS_PER_BLOCK:
        raise BlockTooLarge(
            f"{transactions} transactions, more than {MAX_TRANSACTIONS_PER_BLOCK} per block"
        )
    tx_bytes = sum(b.tx_bytes for b in batches)
    if tx_bytes > MAX_BLOCK_TX_BYTES:
        raise BlockTooLarge(f"{tx_bytes} bytes of transactions, more than {MAX_BLOCK_TX_BYTES}")


def fill_block(candidates: Sequence[tuple[bytes, BatchSize]], limit: int) -> list[bytes]:
    """The leader's side of `check_block_size`: the longest prefix of candidate
    batches (at most `limit`) that fits one block."""
    chosen: list[bytes] = []
    transactions = tx_bytes = 0
    for digest, size in candidates[:limit]:
        transactions += size.transactions
        tx_bytes += size.tx_bytes
        if transactions > MAX_TRANSACTIONS_PER_BLOCK or tx_bytes > MAX_BLOCK_TX_BYTES:
            break
        chosen.append(digest)
    return chosen


def block_namespace_pairs(
    batches: Iterable[Sequence[tuple[int, bytes]]],
) -> list[tuple[int, bytes]]:
    """The (namespace, tx hash) pairs a block's namespace root covers: the
    batches' transactions in payload order, each batch's in order, a transaction
    named twice in the block counted once (its first place), as the commit
    pipeline orders them. A transaction an earlier block already committed is
    still covered: whether it did is not known to every voter at voting time,
    and the root must be a function of the payload and its batches alone."""
    pairs: list[tuple[int, bytes]] = []
    seen: set[bytes] = set()
    for batch in batches:
        for namespace, tx_hash in batch:
            if tx_hash in seen:
                continue
            seen.add(tx_hash)
            pairs.append((namespace, tx_hash))
    return pairs


def check_namespace_root(payload: BlockPayload, pairs: Sequence[tuple[int, bytes]]) -> None:
    """The payload's namespace root is the root of its batches' transactions."""
    expected = namespace_root(pairs)
    if payload.namespace_root != expected:
        raise NamespaceRootMismatch(
            f"namespace root {payload.namespace_root.hex()[:12]} differs from the "
            f"batches' {expected.hex()[:12]}"
        )


def check_forced_inclusion(
    skipped: Mapping[bytes, Sequence[tuple[bytes, BatchSize]]],
    block: Sequence[BatchSize],
    *,
    full_of_forced: bool,
) -> None:
    """Forced inclusion (docs/l1.md, "Forced inclusion"): `skipped` maps each
    overdue forced transaction that is neither in this block, nor in an
    uncommitted ancestor, nor committed, to the verified batches held here that
    carry it (only those: a forced transaction that never reached a batch binds
    no vote, or a transaction no leader could have would halt the chain).

    Such a transaction is excused only when the block is `full_of_forced`
    (every batch in it carries a forced transaction) and none of its batches
    would still fit (`check_block_size`, MAX_BATCHES_PER_BLOCK): then the
    block did what it could, and the next one takes the rest."""
    transactions = sum(b.transactions for b in block)
    tx_bytes = sum(b.tx_bytes for b in block)

    def fits(size: BatchSize) -> bool:
        return (
            len(block) < MAX_BATCHES_PER_BLOCK
            and transactions + size.transactions <= MAX_TRANSACTIONS_PER_BLOCK
            and tx_bytes + size.tx_bytes <= MAX_BLOCK_TX_BYTES
        )

    for tx_hash, holders in sorted(skipped.items()):
        if not holders:
            continue
        if full_of_forced and not any(fits(size) for _, size in holders):
            continue
        raise ForcedTransactionSkipped(
            f"overdue forced transaction {tx_hash.hex()} left out, though batch "
            f"{holders[0][0].hex()[:12]} carries it"
        )


def check_forced_marks(
    marks: Sequence[tuple[int, bytes]],
    in_block: Collection[bytes],
    inbox_index: Callable[[bytes], int | None],
    required: Sequence[tuple[int, bytes]],
) -> None:
    """The block's forced marks (docs/l1.md, "Forced transactions execute
    first"): `marks` are its (inbox index, tx hash) pairs as proposed,
    `in_block` the hashes its batches carry, `inbox_index(hash)` the index of
    the inbox entry this validator scanned for a hash (None: none), `required`
    the entries among `in_block` that this validator holds every leader to
    marking (ForcedInclusion.required_marks), in inbox order.

    Marks go in strictly increasing index (the inbox order, so no hash twice);
    each names a transaction of the block, which is an inbox entry scanned
    here, at its index. Every required entry is marked, unless the block holds
    MAX_FORCED_PER_BLOCK marks and the entry's index is above the last one
    (leaders mark the lowest indexes first; the rest execute in seed order)."""
    previous = -1
    for index, tx_hash in marks:
        if index <= previous:
            raise ForcedMarksOutOfOrder(f"forced mark {index} follows {previous}")
        previous = index
        if tx_hash not in in_block:
            raise ForcedMarkNotInBlock(f"forced mark {index} names {tx_hash.hex()[:12]}, not here")
        known = inbox_index(tx_hash)
        if known is None:
            raise UnknownForcedEntry(
                f"forced mark {index}: {tx_hash.hex()[:12]} is no inbox entry scanned here"
            )
        if known != index:
            raise ForgedForcedEntry(
                f"forced mark {index}: {tx_hash.hex()[:12]} is inbox entry {known}"
            )
    marked = {tx_hash for _, tx_hash in marks}
    full = len(marks) >= MAX_FORCED_PER_BLOCK
    for index, tx_hash in required:
        if tx_hash in marked or (full and index > previous):
            continue
        raise ForcedEntryUnmarked(
            f"inbox entry {index} ({tx_hash.hex()[:12]}) is in the block but not marked forced"
        )


def check_batches_certified(batches: Sequence[bytes], certified: Callable[[bytes], bool]) -> None:
    """Every batch the block names is certified available (a quorum acknowledged
    storing it), as far as this validator can verify: a voter never votes for a
    batch it cannot show to be certified."""
    for digest in batches:
        if not certified(digest):
            raise UncertifiedBatch(f"no certificate held for batch {digest.hex()[:12]}")


@dataclass(frozen=True, slots=True)
class HeldBatch:
    """A certified batch as this validator sees it: when it first held the
    certificate (a consensus view) and the batch's size."""

    digest: bytes
    first_view: int
    size: BatchSize
    first_ms: int = 0
    """This validator's monotonic clock (ms) when it first held the certificate."""


def check_certificate_inclusion(
    left_out: Sequence[HeldBatch],
    block: Sequence[HeldBatch],
    *,
    view: int,
    delay_views: int,
    now_ms: int = 0,
    delay_ms: int = 0,
) -> None:
    """The inclusion rule (docs/consensus.md, "Inclusion rule"). `left_out` are
    the certified batches held here (batch and certificate) that neither this
    block, nor an uncommitted ancestor, nor a committed block includes; `block`
    the block's own batches. A left-out batch whose certificate was first held
    at least `delay_views` views before `view` and at least `delay_ms` before
    `now_ms` (this validator's monotonic clock when it entered `view`: the
    leader built the block as it entered `view`, so what crossed the time
    bound later, while this validator checked the block, cannot bind it) is
    overdue, and the block must
    include it, unless the block is full for it (it would not fit next to the
    block's batches, `check_block_size` and MAX_BATCHES_PER_BLOCK) and filled
    oldest first: every included batch is not younger than it, or is overdue
    itself (validators see certificates arrive in different orders, so among
    overdue ones any choice is a fair one).

    Both clocks count because views can be shorter than a certificate takes to
    spread: under load a view lasts a few network delays, and the author holds
    its certificate a delay before anyone else, so a rule in views alone
    refuses honest leaders that simply had not received it yet.

    Only certificates whose batch this validator holds bind its vote: the
    batch demonstrably reached a quorum and is fetchable, so an honest leader
    can satisfy the rule."""
    transactions = sum(b.size.transactions for b in block)
    tx_bytes = sum(b.size.tx_bytes for b in block)

    def fits(size: BatchSize) -> bool:
        return (
            len(block) < MAX_BATCHES_PER_BLOCK
            and transactions + size.transactions <= MAX_TRANSACTIONS_PER_BLOCK
            and tx_bytes + size.tx_bytes <= MAX_BLOCK_TX_BYTES
        )

    def overdue(held: HeldBatch) -> bool:
        return view - held.first_view >= delay_views and now_ms - held.first_ms >= delay_ms

    for skipped in sorted(left_out, key=lambda h: (h.first_view, h.digest)):
        if not overdue(skipped):
            continue
        oldest_first = all(b.first_view <= skipped.first_view or overdue(b) for b in block)
        if not fits(skipped.size) and oldest_first:
            continue
        raise OverdueCertificateSkipped(
            f"batch {skipped.digest.hex()[:12]} certified since view {skipped.first_view} "
            f"({now_ms - skipped.first_ms} ms) left out at view {view} "
            f"(inclusion delay {delay_views} views, {delay_ms} ms)"
        )
