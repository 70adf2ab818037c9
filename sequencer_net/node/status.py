"""What a node reports about its chain (API /v1/status, the live view, metrics)
and the feed of committed heights its subscribers follow."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import trio


class CommitFeed:
    """Committed heights, announced by the commit pipeline (never waits)."""

    def __init__(self, height: int = 0) -> None:
        self.height = height
        self._event = trio.Event()
        self._listeners: list[Callable[[int], None]] = []

    def on_announce(self, listener: Callable[[int], None]) -> None:
        """Call `listener(height)` at every announcement, before any waiter
        wakes; it must not block (the commit pipeline calls it)."""
        self._listeners.append(listener)

    def announce(self, height: int) -> None:
        if height > self.height:
            self.height = height
        for listener in self._listeners:
            listener(self.height)
        self._event.set()
        self._event = trio.Event()

    async def wait_past(self, height: int) -> None:
        """Return once a height above `height` is committed."""
        while self.height <= height:
            await self._event.wait()

    async def wait_change(self) -> None:
        await self._event.wait()


@dataclass
class ChainStatus:
    """What the node reports about its chain (API /v1/status, live view)."""

    height: int = 0
    last_hash: bytes = b""
    state_root: bytes = b""
    committed_txs: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    feed: CommitFeed = field(default_factory=CommitFeed)
    """Committed heights for the API's subscribers (api/subscriptions.py)."""

    def latency_percentiles(self) -> dict[str, float | None]:
        if not self.latencies_ms:
            return {"p50": None, "p99": None}
        ordered = sorted(self.latencies_ms)
        return {
            "p50": round(ordered[len(ordered) // 2], 1),
            "p99": round(ordered[min(len(ordered) - 1, (len(ordered) * 99) // 100)], 1),
        }
