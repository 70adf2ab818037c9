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
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

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

IsCommitted = Callable[[bytes], bool]


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
