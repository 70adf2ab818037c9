"""A seeded price walk that any process computes alike from the seed and the time.

`SharedPriceWalk(seed, name, start).price_at(t)` is the price of underlying
`name` at unix second t. Every step's random draw is derived from (seed, name,
step) alone, and the walk reverts toward its start (1% of the log deviation a
second, a half-life of about 70 s), so the price at t is computed from the
WINDOW_STEPS seconds before it starting at the start price: what happened
earlier has decayed below a part in 10**5. Validators of a testnet and its
load generator therefore see the same prices without talking to each other or
sharing a start time. This is a node- and load-side simulation, not engine
code: it uses floats, and the engine only ever sees the integer prices the
validators report.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from typing import Final

WINDOW_STEPS: Final = 1200
"""Seconds of history a price is computed from: 0.99**1200 ~ 6e-6 of the
deviation at the window's start survives."""


@dataclass(frozen=True, slots=True)
class WalkModel:
    sigma: float = 0.001
    """Standard deviation of one second's log return (0.1%: ~0.8% a minute)."""
    reversion: float = 0.01
    """Pull per second back toward the start price (a half-life of ~70 s)."""
    jump_probability: float = 0.02
    """Chance per second of a jump: about one a minute; jumps liquidate."""
    jump_size: tuple[float, float] = (0.015, 0.04)


class SharedPriceWalk:
    """The walk of one underlying (see the module docstring)."""

    def __init__(self, seed: int, name: str, start: int, model: WalkModel | None = None) -> None:
        if start <= 0:
            raise ValueError("a walk starts at a positive price")
        self.seed = seed
        self.name = name
        self.start = start
        self.model = model or WalkModel()
        self._moves: dict[int, float] = {}
        # The last second asked for and its deviation: a validator asks several
        # times a second (every market on this underlying, every report), and
        # each answer is a loop over WINDOW_STEPS seconds.
        self._last: tuple[int, float] | None = None

    def _move(self, step: int) -> float:
        digest = hashlib.blake2b(
            f"seqnet/price-walk/{self.seed}/{self.name}/{step}".encode(), digest_size=8
        ).digest()
        rng = random.Random(int.from_bytes(digest, "big"))
        model = self.model
        move = rng.gauss(0.0, model.sigma)
        if rng.random() < model.jump_probability:
            size = rng.uniform(*model.jump_size)
            move += size if rng.random() < 0.5 else -size
        return move

    def deviation_at(self, unix_s: int) -> float:
        """The log deviation from the start price after second `unix_s`: the walk
        run over the WINDOW_STEPS seconds up to `unix_s` from zero, so it depends
        on `unix_s` alone."""
        last = self._last
        if last is not None and last[0] == unix_s:
            return last[1]
        moves = self._moves
        first = unix_s - WINDOW_STEPS + 1
        keep = 1 - self.model.reversion
        deviation = 0.0
        for step in range(first, unix_s + 1):
            move = moves.get(step)
            if move is None:
                move = moves[step] = self._move(step)
            deviation = deviation * keep + move
        if len(moves) > 4 * WINDOW_STEPS:  # forget steps no window needs any more
            self._moves = {step: move for step, move in moves.items() if step >= first}
        self._last = (unix_s, deviation)
        return deviation

    def price_at(self, unix_s: int) -> int:
        """The price (wad, rounded to 6 decimals) at unix second `unix_s`."""
        micros = round(self.start * math.exp(self.deviation_at(unix_s)) / 10**12)
        return max(micros, 1) * 10**12
