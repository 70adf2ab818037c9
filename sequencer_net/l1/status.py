"""What a node reports about its L1 side: the `l1` object of GET /v1/status.

One `L1Status` per node; the poster and the watchers write their fields, and
`document(committed_height)` renders it. The keys are stable (docs/api.md,
`GET /v1/status`): the live view and `seqnet l1 status` read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class L1Status:
    enabled: bool = False
    posted_height: int | None = None
    """Commitments.latestHeight() at the last poll."""
    posted_state_height: int | None = None
    last_post_block: int | None = None
    """Commitments.lastPostBlock(): the L1 block of the last posting (any validator's)."""
    gas_per_posting: int | None = None
    """gasUsed of this node's last posting that landed."""
    postings: int = 0
    l1_head: int | None = None
    deposits_seen: int = 0
    deposits_reported: int = 0
    forced_seen: int = 0
    evidence_submitted: int = 0
    """Equivocation evidence this node's watcher got accepted by Commitments."""
    frozen: bool | None = None
    """Commitments.frozen() at the evidence watcher's last poll (None: not read)."""
    fork_height: int | None = None
    """The lowest height at which the L1 holds a block other than this node's."""
    last_error: str | None = None

    def observe_head(self, number: int) -> None:
        self.l1_head = number if self.l1_head is None else max(self.l1_head, number)

    def document(self, committed_height: int | None) -> dict[str, Any]:
        """The `l1` object; `committed_height` is null when the node is not running."""
        enabled = self.enabled
        backlog = None
        if enabled and committed_height is not None and self.posted_height is not None:
            backlog = max(0, committed_height - self.posted_height)
        behind = None
        if self.l1_head is not None and self.last_post_block is not None:
            behind = max(0, self.l1_head - self.last_post_block)
        return {
            "enabled": enabled,
            "posted_height": self.posted_height,
            "posted_state_height": self.posted_state_height,
            "committed_height": committed_height if enabled else None,
            "backlog": backlog,
            "gas_per_posting": self.gas_per_posting,
            "postings": self.postings,
            "l1_head": self.l1_head,
            "l1_blocks_behind": behind,
            "deposits_seen": self.deposits_seen,
            "deposits_reported": self.deposits_reported,
            "forced_seen": self.forced_seen,
            "evidence_submitted": self.evidence_submitted,
            "frozen": self.frozen,
            "fork_height": self.fork_height,
            "last_error": self.last_error,
        }


DISABLED_DOCUMENT = L1Status().document(None)
"""The `l1` object of a node without `[l1] rpc_url` (and of a full node)."""
