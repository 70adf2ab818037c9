"""What one attack run measured, per seed and in total."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SeedOutcome:
    """One seed of one attack: how often the adversary tried and succeeded,
    the victims' delays in rounds, and whether every honest node ended with
    the same results. `notes` are attack-specific numbers (summed over seeds)."""

    attempts: int = 0
    successes: int = 0
    delays: list[int] = field(default_factory=list)
    baseline_delays: list[int] = field(default_factory=list)
    """The same delays with the Byzantine validators behaving honestly."""
    baseline_attempts: int = 0
    baseline_successes: int = 0
    """For attacks measured against honest behaviour (reorder): the same
    event counted where the Byzantine validators play no part."""
    identical: bool = True
    failures: list[str] = field(default_factory=list)
    """What each success was, for the replay line."""
    notes: dict[str, int] = field(default_factory=dict)

    def note(self, key: str, amount: int = 1) -> None:
        self.notes[key] = self.notes.get(key, 0) + amount

    def succeed(self, what: str) -> None:
        self.successes += 1
        if len(self.failures) < 8:
            self.failures.append(what)


def percentile(values: Sequence[int], share: float) -> int:
    """The nearest-rank percentile (0 for no values); `share` in (0, 1]."""
    if not values:
        return 0
    ordered = sorted(values)
    rank = max(1, -(-int(share * 1000) * len(ordered) // 1000))
    return ordered[min(rank, len(ordered)) - 1]


def delay_summary(delays: Sequence[int]) -> dict[str, int] | None:
    """p50 and max of delays in rounds; None for an attack that measures none."""
    if not delays:
        return None
    return {"p50": percentile(delays, 0.5), "max": max(delays)}


@dataclass
class AttackReport:
    attack: str
    n: int
    seeds: list[int] = field(default_factory=list)
    attempts: int = 0
    successes: int = 0
    delays: list[int] = field(default_factory=list)
    baseline_delays: list[int] = field(default_factory=list)
    baseline_attempts: int = 0
    baseline_successes: int = 0
    identical: bool = True
    failed_seeds: dict[int, list[str]] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)

    def add(self, seed: int, outcome: SeedOutcome) -> None:
        self.seeds.append(seed)
        self._sum(outcome)
        if outcome.failures or not outcome.identical:
            self.failed_seeds[seed] = outcome.failures or ["honest results differ"]

    def absorb(self, other: AttackReport) -> None:
        """Sum another report of the same attack (another committee size) into
        this one; its failed seeds stay in its own report."""
        self.seeds.extend(other.seeds)
        self._sum(other)

    def _sum(self, part: SeedOutcome | AttackReport) -> None:
        self.attempts += part.attempts
        self.successes += part.successes
        self.delays.extend(part.delays)
        self.baseline_delays.extend(part.baseline_delays)
        self.baseline_attempts += part.baseline_attempts
        self.baseline_successes += part.baseline_successes
        self.identical = self.identical and part.identical
        for key, value in part.notes.items():
            self.notes[key] = self.notes.get(key, 0) + value

    @property
    def attack_rate(self) -> float:
        return self.successes / self.attempts if self.attempts else 0.0

    @property
    def honest_rate(self) -> float:
        return self.baseline_successes / self.baseline_attempts if self.baseline_attempts else 0.0

    @property
    def success_rate(self) -> float:
        """The share of attempts that succeeded; for an attack with a baseline,
        that share minus the share the honest baseline gives (the advantage)."""
        if self.baseline_attempts:
            return self.attack_rate - self.honest_rate
        return self.attack_rate

    def advantage_margin(self) -> float:
        """Three standard errors of the difference of the two shares (at least
        0.05): an advantage below it is what chance gives two fair samples."""
        p = (self.successes + self.baseline_successes) / max(
            1, self.attempts + self.baseline_attempts
        )
        variance = p * (1 - p) * (1 / max(1, self.attempts) + 1 / max(1, self.baseline_attempts))
        return max(0.05, 3 * math.sqrt(variance))

    @property
    def broken(self) -> bool:
        """The attack succeeded (for one with a baseline: beat it by more than
        chance), or honest nodes disagreed."""
        if not self.identical:
            return True
        if self.baseline_attempts:
            return self.success_rate > self.advantage_margin()
        return self.successes > 0

    def as_json(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "n": self.n,
            "seeds": len(self.seeds),
            "attempts": self.attempts,
            "successes": self.successes,
            "attack_success_rate": round(self.success_rate, 6),
            "victim_delay_rounds": delay_summary(self.delays),
            "honest_delay_rounds": delay_summary(self.baseline_delays),
            "honest_identical": self.identical,
            "succeeded": self.broken,
            "failed_seeds": {str(s): w for s, w in sorted(self.failed_seeds.items())},
            **self.baseline_json(),
            **self.notes_json(),
        }

    def baseline_json(self) -> dict[str, Any]:
        if not self.baseline_attempts:
            return {}
        return {
            "attack_rate": round(self.attack_rate, 6),
            "honest_rate": round(self.honest_rate, 6),
            "honest_attempts": self.baseline_attempts,
            "chance_margin": round(self.advantage_margin(), 6),
        }

    def notes_json(self) -> dict[str, Any]:
        return {"details": dict(sorted(self.notes.items()))} if self.notes else {}
