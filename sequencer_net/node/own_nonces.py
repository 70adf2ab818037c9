"""Nonces of the transactions a validator signs and submits to its own intake:
price reports (reporter.py) and L1 deposit reports (l1/watcher.py). Both sign
with the validator key, so they draw from one counter.

The counter runs up from the highest nonce the address has used in the
committed state. If more than half a nonce window of its transactions are not
committed (a lost batch, a restart), it starts again from the committed nonce:
a reused nonce is refused without a fee, and the caller tries again next round.
"""

from __future__ import annotations

from collections.abc import Callable

from sequencer_net.execution.limits import NONCE_WINDOW
from sequencer_net.execution.state import ExecutionState


class OwnNonces:
    def __init__(self, address: bytes, state: Callable[[], ExecutionState]) -> None:
        self.address = address
        self.state = state
        self._next: int | None = None

    def next_nonce(self, state: ExecutionState | None = None) -> int:
        """The nonce of the next own transaction (`state`: the committed state
        the caller already read, else the latest)."""
        window = (state or self.state()).nonces.get(self.address)
        committed = -1 if window is None else window.highest
        pending = self._next
        if pending is None or pending <= committed or pending > committed + NONCE_WINDOW // 2:
            pending = committed + 1
        self._next = pending + 1
        return pending

    def recount(self) -> None:
        """An own transaction was refused: count again from the committed state."""
        self._next = None
