"""Forced inclusion: the forced transactions this validator holds leaders to.

A user who fears being censored posts a signed seqnet transaction to the L1
Inbox contract, which emits `ForcedTransaction(index, sender, dueBlock, tx)`.
The L1 watcher hands the bytes to this node's own intake first (the same
checks as any HTTP submission: size, encoding, chain id, signature, fees,
nonce) and calls `ForcedInclusion.observe` only for a transaction the intake
accepted: bytes it refused (a bad signature, malformed, unaffordable) are never
tracked, so they can never hold up a vote.

The tracker is pure: it keeps (tx hash -> due L1 block) and the latest L1 head
the watcher reported, and reads whether a transaction is committed through the
callable it is given. The voting rule built on it lives in
`payload.checks.check_forced_inclusion`; docs/l1.md, "Forced inclusion",
states it for users.

It also keeps the inbox record: every ForcedTransaction the watcher scanned at
its confirmation depth, accepted by the intake or not (tx hash -> inbox index
and L1 block), and the confirmed L1 head (head - confirmations) the watcher
last saw. Blocks mark the forced entries they carry from it, and voters check
those marks against it (`payload.checks.check_forced_marks`, docs/l1.md,
"Forced transactions execute first"). Every validator reads the same
confirmed L1 log, so records differ only in how far each has read (a poll or
two on a healthy network). An entry's age is the confirmed head minus its L1
block:

    the watcher      submits an entry's bytes to the intake only from age
                     MARK_GRACE_L1_BLOCKS (`ready_for_intake`): by then every
                     validator whose L1 view trails by less has recorded it,
                     so the leader of whichever block carries it can mark it
    a leader marks   every recorded entry the block carries
    a voter accepts  a mark of an entry it recorded, at the same index (one it
                     has not recorded it waits for a little, its watcher may
                     be a poll behind the leader's, then refuses)
    a voter requires a mark for each recorded entry of age
                     MARK_GRACE_L1_BLOCKS or more that the block carries

Near the expiry the margins shrink the other way (leaders stop marking
MARK_GRACE_L1_BLOCKS blocks before it, voters stop requiring twice that), so
no leader marks an entry a voter already forgot.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass

from sequencer_net.payload.format import MAX_FORCED_PER_BLOCK

FORCED_GRACE_L1_BLOCKS = 2
"""L1 blocks past its due block before a forced transaction counts as overdue.
Validators poll the L1 independently and their heads differ by a block or two;
without the grace, a block built by a leader one L1 block behind its voters
would be refused for a transaction the leader did not consider due yet."""

MAX_TRACKED_FORCED = 4_096
"""Forced transactions tracked at once. Each costs its sender an L1
transaction; beyond this, the earliest observed is forgotten."""

FORCED_EXPIRY_L1_BLOCKS = 7_200
"""L1 blocks (about a day at 12 s) an overdue transaction stays tracked while
it is not committed. One still uncommitted so long never reached a batch here
(a nonce another transaction took, say), so it binds no vote; forgetting it
only frees its slot."""

MARK_GRACE_L1_BLOCKS = FORCED_GRACE_L1_BLOCKS
"""Confirmed L1 blocks after its ForcedTransaction before a watcher hands an
inbox entry to its intake, and before a voter requires a block carrying it
to mark it. Validators' L1 views differ by a block or two: a leader that has
not recorded the entry yet cannot mark it. Within these blocks a block may
carry the entry unmarked (its bytes reached a batch another way: the sender
also sent them to a node, or a validator took them off the L1 early); it then
executes in the content-blind order, as any other transaction."""

IsCommitted = Callable[[bytes], bool]


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A ForcedTransaction scanned at the confirmation depth."""

    index: int
    """Its place in the Inbox (ForcedTransaction.index): the forced order."""
    l1_block: int
    """The L1 block that emitted it."""


class ForcedInclusion:
    """Forced transactions this validator's intake accepted, and when each is due."""

    def __init__(
        self,
        *,
        grace_l1_blocks: int = FORCED_GRACE_L1_BLOCKS,
        max_tracked: int = MAX_TRACKED_FORCED,
        expiry_l1_blocks: int = FORCED_EXPIRY_L1_BLOCKS,
    ) -> None:
        if grace_l1_blocks < 0 or max_tracked < 1 or expiry_l1_blocks < 0:
            raise ValueError("grace and expiry must be >= 0, the cap >= 1")
        self.grace_l1_blocks = grace_l1_blocks
        self.max_tracked = max_tracked
        self.expiry_l1_blocks = expiry_l1_blocks
        self.l1_head = 0
        self._due: OrderedDict[bytes, int] = OrderedDict()
        self.confirmed_l1_block = 0
        """The confirmed L1 head (head - confirmations) the watcher last saw."""
        self._inbox: OrderedDict[bytes, InboxEntry] = OrderedDict()
        self.on_change: list[Callable[[], None]] = []
        """Called after an entry is recorded or the confirmed head moves on (a
        voter waiting for an entry it has not recorded yet)."""

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._due

    def observe(self, tx_hash: bytes, due_l1_block: int) -> None:
        """A confirmed ForcedTransaction whose bytes this node's intake accepted.
        The same transaction posted again keeps its earliest due block."""
        if len(tx_hash) != 32:
            raise ValueError("a transaction hash is 32 bytes")
        if due_l1_block < 0:
            raise ValueError("a due block is not negative")
        known = self._due.get(tx_hash)
        if known is not None:
            self._due[tx_hash] = min(known, due_l1_block)
            return
        self._due[tx_hash] = due_l1_block
        while len(self._due) > self.max_tracked:
            self._due.popitem(last=False)

    def set_l1_head(self, number: int) -> None:
        """The latest L1 block the watcher saw. Never goes back: an L1 endpoint
        that briefly lags must not make a transaction due again later."""
        self.l1_head = max(self.l1_head, number)

    def tracked(self) -> set[bytes]:
        """Every tracked hash, committed or not (the leader's preference)."""
        return set(self._due)

    def overdue(self, is_committed: IsCommitted) -> set[bytes]:
        """Hashes whose due block + grace <= the L1 head and that are not
        committed. Committed ones found on the way are dropped, and so are those
        overdue for longer than the expiry."""
        out: set[bytes] = set()
        for tx_hash, due in list(self._due.items()):
            late_by = self.l1_head - (due + self.grace_l1_blocks)
            if late_by < 0:
                continue
            if is_committed(tx_hash) or late_by >= self.expiry_l1_blocks:
                del self._due[tx_hash]
                continue
            out.add(tx_hash)
        return out

    def status(self, is_committed: IsCommitted) -> dict[str, int]:
        """What /v1/status shows: tracked transactions and how many are overdue."""
        overdue = len(self.overdue(is_committed))
        return {"tracked": len(self._due), "overdue": overdue}

    # ---- the inbox record: which transactions are forced, in which order ----

    def record_entry(self, tx_hash: bytes, index: int, l1_block: int) -> None:
        """A scanned ForcedTransaction, whatever the intake made of its bytes.
        The same bytes posted again keep their first (lowest) index."""
        if len(tx_hash) != 32:
            raise ValueError("a transaction hash is 32 bytes")
        if index < 0 or l1_block < 0:
            raise ValueError("an inbox index and an L1 block are not negative")
        known = self._inbox.get(tx_hash)
        if known is not None and known.index <= index:
            return
        self._inbox[tx_hash] = InboxEntry(index, l1_block)
        while len(self._inbox) > self.max_tracked:
            self._inbox.popitem(last=False)
        self._changed()

    def set_confirmed(self, l1_block: int) -> None:
        """The confirmed L1 head (head - confirmations). Never goes back (an
        L1 endpoint that briefly lags must not make entries younger). Entries
        older than the expiry are forgotten: no leader marks them any more."""
        if l1_block <= self.confirmed_l1_block:
            return
        self.confirmed_l1_block = l1_block
        for tx_hash, entry in list(self._inbox.items()):
            if entry.l1_block + self.expiry_l1_blocks <= self.confirmed_l1_block:
                del self._inbox[tx_hash]
        self._changed()

    def _changed(self) -> None:
        for listener in list(self.on_change):
            listener()

    def ready_for_intake(self, l1_block: int) -> bool:
        """Whether the watcher may hand an entry of `l1_block` to the intake:
        it is MARK_GRACE_L1_BLOCKS old, so other validators recorded it too."""
        return l1_block + MARK_GRACE_L1_BLOCKS <= self.confirmed_l1_block

    def inbox_entry(self, tx_hash: bytes) -> InboxEntry | None:
        """The recorded inbox entry of a transaction (None: not recorded here)."""
        return self._inbox.get(tx_hash)

    def inbox_entries(self) -> list[tuple[bytes, InboxEntry]]:
        """The whole record, oldest first (the watcher's cursor persists it)."""
        return list(self._inbox.items())

    def _aged(self, entry: InboxEntry, age: int, margin: int) -> bool:
        """At least `age` blocks old, and at least `margin` blocks short of expiry."""
        confirmed = self.confirmed_l1_block
        return entry.l1_block + age <= confirmed < entry.l1_block + self.expiry_l1_blocks - margin

    def _aged_in(
        self, tx_hashes: Collection[bytes], age: int, margin: int
    ) -> list[tuple[int, bytes]]:
        """(index, hash) of the recorded entries in `tx_hashes` that are `_aged`, in inbox order."""
        return sorted(
            (entry.index, tx_hash)
            for tx_hash, entry in self._inbox.items()
            if tx_hash in tx_hashes and self._aged(entry, age, margin)
        )

    def marks_for(self, tx_hashes: Collection[bytes]) -> list[tuple[int, bytes]]:
        """A leader's marks for a block carrying `tx_hashes`: (index, hash) of
        each recorded entry among them, in inbox order, the first
        MAX_FORCED_PER_BLOCK."""
        marks = self._aged_in(tx_hashes, 0, MARK_GRACE_L1_BLOCKS)
        return marks[:MAX_FORCED_PER_BLOCK]

    def required_marks(self, tx_hashes: Collection[bytes]) -> list[tuple[int, bytes]]:
        """What a voter holds a block carrying `tx_hashes` to: (index, hash) of
        each recorded entry among them at least MARK_GRACE_L1_BLOCKS old, in
        inbox order."""
        return self._aged_in(tx_hashes, MARK_GRACE_L1_BLOCKS, 2 * MARK_GRACE_L1_BLOCKS)
