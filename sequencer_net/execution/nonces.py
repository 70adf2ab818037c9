"""Replay protection: a (sender, nonce) executes at most once, in every namespace.

The rule (docs/execution.md, "Nonces"), with W = NONCE_WINDOW = 64 and h the
highest nonce the sender has used (none yet: h = -1):

    nonce <= h - W                  NonceUsed  (too old to tell: counted as used)
    h - W < nonce <= h, bit used    NonceUsed
    h - W < nonce <= h, bit free    accepted; its bit is set
    h < nonce <= h + W              accepted; the window slides up to nonce
    nonce > h + W                   NonceTooHigh

so a client that sends its transactions to several validators may see them
included out of order, and nothing is ever executed twice. The state is one
`NonceWindow(highest, used)` per sender: 64 bits, O(1) per check.
"""

from __future__ import annotations

from typing import Final

from .exceptions import NonceTooHigh, NonceUsed, TransactionRejected
from .limits import NONCE_WINDOW
from .records import NonceWindow

_MASK: Final = (1 << NONCE_WINDOW) - 1
_FRESH: Final = NonceWindow(highest=-1, used=0)


def nonce_rejection(window: NonceWindow | None, nonce: int) -> TransactionRejected | None:
    """Why `nonce` may not be used now (a NonceUsed or NonceTooHigh), or None."""
    current = window or _FRESH
    if nonce > current.highest + NONCE_WINDOW:
        return NonceTooHigh(f"nonce {nonce} is more than {NONCE_WINDOW} above {current.highest}")
    if nonce > current.highest:
        return None
    age = current.highest - nonce
    if age >= NONCE_WINDOW or (current.used >> age) & 1:
        return NonceUsed(f"nonce {nonce} is already used")
    return None


def use_nonce(window: NonceWindow | None, nonce: int) -> NonceWindow:
    """The window after using `nonce` (which `nonce_rejection` accepted)."""
    current = window or _FRESH
    if nonce > current.highest:
        shift = nonce - current.highest
        used = ((current.used << shift) | 1) & _MASK if shift < NONCE_WINDOW else 1
        return NonceWindow(highest=nonce, used=used)
    return NonceWindow(
        highest=current.highest, used=current.used | (1 << (current.highest - nonce))
    )
