"""Reconnect delays: exponential backoff with jitter from a seeded RNG.

Pure and deterministic for a given seed, so a test or a replay sees the same
schedule. Attempt k (from 0) waits `min(max_s, min_s * 2**k) * (1 + j/2)`
capped at `max_s`, with j uniform in [0, 1) from the link's RNG.
"""

from __future__ import annotations

import random


class ReconnectBackoff:
    __slots__ = ("_attempt", "_max_s", "_min_s", "_rng")

    def __init__(self, *, min_s: float, max_s: float, seed: int) -> None:
        self._min_s = min_s
        self._max_s = max_s
        self._rng = random.Random(seed)
        self._attempt = 0

    @property
    def attempt(self) -> int:
        """Failures since the last `reset()`."""
        return self._attempt

    def next_delay(self) -> float:
        """The wait before the next dial; each call counts one more failure."""
        base = min(self._max_s, self._min_s * 2.0 ** min(self._attempt, 32))
        self._attempt += 1
        return min(self._max_s, base * (1.0 + self._rng.random() / 2.0))

    def reset(self) -> None:
        """Called once a link is up: the next failure starts again from `min_s`."""
        self._attempt = 0


def link_seed(me: int, peer: int) -> int:
    """A distinct, stable seed for the link from validator `me` to `peer`."""
    return (me << 32) ^ peer ^ 0x5EC0_4E7
