"""What a node reports about its chain (API /v1/status, the live view, metrics)
and the feed of committed heights its subscribers follow."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from consensus.messages import Block, Certificate

log = logging.getLogger("seqnet.status")


@dataclass(frozen=True)
class DecidedBlock:
    """A block consensus committed here, before it is executed and stored: the
    finalization certificate that committed it (its own, or a descendant's)
    and its batches (encoded, payload order), what a subscriber needs to
    check its inclusion (with, for a descendant's certificate, the headers of
    the blocks in between)."""

    block: Block
    certificate: Certificate
    batches: tuple[bytes, ...]


class CommitFeed:
    """Committed heights, announced by the commit pipeline (never waits).

    Three steps of a height reach the subscribers through it: `decided` (the
    block is committed by consensus here and its batches are held: its
    inclusion can be proven), `ordered` (its order seed and the coin shares
    that prove it are known; `seedless` for a block that draws none) and
    `announce` (executed and stored: the store has everything from then on,
    and the feed forgets the height). Each calls the change listeners
    (`on_change`: the subscriptions' push), then wakes every waiter at once;
    none waits."""

    def __init__(self, height: int = 0) -> None:
        self.height = height
        """The highest height executed and stored."""
        self.decided_height = height
        """The highest height decided (`decided` or `announce`)."""
        self.decided_blocks: dict[int, DecidedBlock] = {}
        self.orders: dict[int, tuple[bytes, bytes] | None] = {}
        """height -> (order seed, encoded order proof), or None for a block that
        draws no seed (fairness/order.py `needs_order_seed`), until stored."""
        self.orders_expected = False
        """Whether every height gets an order, a seed or `seedless` (a chain
        with a threshold key); the commit pipeline sets it."""
        self._event = trio.Event()
        self._listeners: list[Callable[[int], None]] = []
        self._change_listeners: list[Callable[[], None]] = []

    def on_announce(self, listener: Callable[[int], None]) -> None:
        """Call `listener(height)` at every announcement (the decided tip),
        before any waiter wakes; it must not block (the commit pipeline calls
        it)."""
        self._listeners.append(listener)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener()` at every change (decided, ordered, seedless,
        announce), before any waiter wakes; it must not block, and what it
        raises is logged, not passed to the commit pipeline."""
        self._change_listeners.append(listener)

    def decided(self, decided: DecidedBlock) -> None:
        """A block committed by consensus, above the stored tip, with its batches."""
        height = decided.block.height
        if height <= self.height:
            return
        self.decided_blocks[height] = decided
        self._advance(height)

    def ordered(self, height: int, seed: bytes, proof: bytes) -> None:
        """A decided height's order seed and its encoded proof."""
        if height <= self.height:
            return
        self.orders[height] = (seed, proof)
        self._wake()

    def seedless(self, height: int) -> None:
        """A decided height that draws no order seed: its order is the same for
        every seed, so it has none and no proof (and no order message follows)."""
        if height <= self.height:
            return
        self.orders[height] = None
        self._wake()

    def announce(self, height: int) -> None:
        """`height` is executed and stored."""
        if height > self.height:
            self.height = height
        for below in [h for h in self.decided_blocks if h <= height]:
            del self.decided_blocks[below]
        for below in [h for h in self.orders if h <= height]:
            del self.orders[below]
        self._advance(height)

    def _advance(self, height: int) -> None:
        if height > self.decided_height:
            self.decided_height = height
        for listener in self._listeners:
            listener(self.decided_height)
        self._wake()

    def _wake(self) -> None:
        for listener in self._change_listeners:
            try:
                listener()
            except Exception:
                log.exception("event=feed_listener_failed")
        self._event.set()
        self._event = trio.Event()

    def changed(self) -> trio.Event:
        """Set at the next change of the feed: take it before looking, then wait
        on it, and no change between the two is missed."""
        return self._event

    async def wait_past(self, height: int) -> None:
        """Return once a height above `height` is executed and stored."""
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
