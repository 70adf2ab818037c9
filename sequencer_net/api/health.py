"""`GET /v1/health`: is this node committing blocks? (for load balancers)

A node that commits advances its height: while the chain is idle the leaders
still propose empty blocks, so a height that has not moved for several view
timeouts means the node is stuck, cut off or behind. The check reads only the
store's cached tip and a monotonic clock: it costs no disk read and no lock,
so a load balancer may poll it often.

The height is sampled when the endpoint is asked, so a node seen to have
advanced since the previous request counts as committing even if that request
was long ago; a poller asking every few seconds sees a stall within
`stall_s` plus its own period.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HEALTH_STALL_VIEW_TIMEOUTS = 3
"""View timeouts without a new height after which the node reads unhealthy."""

DEFAULT_HEALTH_STALL_S = 30.0
"""The bound when the node's view timeout is not known to the API."""


@dataclass
class Health:
    """Tracks when the committed height last moved; `check` answers the endpoint."""

    height: Callable[[], int]
    """The last committed height (the store's tip)."""
    stall_s: float = DEFAULT_HEALTH_STALL_S
    clock: Callable[[], float] = time.monotonic
    _seen_height: int = field(init=False)
    _since: float = field(init=False)

    def __post_init__(self) -> None:
        self._seen_height = self.height()
        self._since = self.clock()  # started now: a fresh node may not have committed yet

    def check(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 while the height moved within `stall_s`
        (or since the API started), else 503 with the reason in the error
        answer's fields (`error`, code `stalled`)."""
        now = self.clock()
        height = self.height()
        if height != self._seen_height:
            self._seen_height = height
            self._since = now
        quiet_s = max(0.0, now - self._since)
        body: dict[str, Any] = {
            "height": height,
            "seconds_since_progress": round(quiet_s, 3),
            "stall_bound_s": self.stall_s,
        }
        if quiet_s <= self.stall_s:
            return 200, {"status": "ok", **body}
        reason = (
            f"no block committed in {quiet_s:.1f} s (bound {self.stall_s:g} s)"
            if height > 0
            else f"no block committed since start {quiet_s:.1f} s ago (bound {self.stall_s:g} s)"
        )
        return 503, {"status": "stalled", "error": reason, "code": "stalled", **body}
