"""When a rate is sustained, and which rate to try next (pure: no I/O, no clock).

A step offers `target` tx/s for a while; after the warm-up its measurement
window yields a `StepMeasurement`. The rate is sustained when, over the window,

- the load generator really offered it (else the client, not the network, is
  measured: the search stops and says so),
- the nodes took it: they refused at most 5% of it and answered fast enough
  that submissions did not fall behind,
- committed tx/s is within 5% of the target,
- the p99 submit-to-commit latency is under the bound (a transaction that
  never committed counts as over it),
- the backlog (accepted minus committed) does not grow: its least-squares
  slope is under 5% of the target per second.

`RateSearch` ramps up by doubling from a start rate while steps are sustained,
halves down from it while they are not, then bisects between the highest
sustained rate and the lowest failed one above it until they are within 10%,
or the step budget is spent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sequencer_net.testnet.bench.limits import (
    BISECT_PRECISION,
    MAX_RATE,
    MIN_RATE,
    RAMP_FACTOR,
    SUSTAIN_TOLERANCE,
)


@dataclass(frozen=True, slots=True)
class StepMeasurement:
    """What one step's measurement window saw."""

    target_rate: float
    """tx/s the step was asked to offer."""
    offered_rate: float
    """tx/s submitted within the window."""
    committed_rate: float
    """tx/s of the step's transactions seen committed within the window."""
    submitted: int
    refused: int
    p99_ms: float | None
    """None: more than 1% of the window's transactions never committed."""
    backlog_slope: float
    """tx/s by which accepted-minus-committed grew over the window."""
    waited_for_nodes_s: float
    """Time the sender spent waiting for a free request slot (node backpressure)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    sustained: bool
    reasons: tuple[str, ...]
    client_bound: bool = False


def judge_step(
    m: StepMeasurement,
    latency_bound_ms: float,
    tolerance: float = SUSTAIN_TOLERANCE,
) -> Verdict:
    """Is the step's rate sustained? The reasons name every criterion it missed."""
    reasons: list[str] = []
    floor = m.target_rate * (1 - tolerance)
    client_bound = False
    if m.offered_rate < floor:
        if m.waited_for_nodes_s > 0:
            reasons.append(
                f"the nodes did not take {m.target_rate:g} tx/s: submissions waited "
                f"{m.waited_for_nodes_s:.1f} s for answers, {m.offered_rate:.0f} tx/s offered"
            )
        else:
            client_bound = True
            reasons.append(
                f"the load generator offered only {m.offered_rate:.0f} of "
                f"{m.target_rate:g} tx/s: the client, not the network, was the limit"
            )
    if m.refused > tolerance * max(m.submitted, 1):
        reasons.append(f"the nodes refused {m.refused} of {m.submitted} transactions")
    if m.committed_rate < floor:
        reasons.append(f"committed {m.committed_rate:.1f} tx/s < {floor:.1f} (target - 5%)")
    if m.p99_ms is None:
        reasons.append("over 1% of the transactions never committed (p99 unbounded)")
    elif m.p99_ms > latency_bound_ms:
        reasons.append(f"p99 {m.p99_ms:.0f} ms > {latency_bound_ms:g} ms")
    if m.backlog_slope > tolerance * m.target_rate:
        reasons.append(f"backlog grew by {m.backlog_slope:.0f} tx/s")
    return Verdict(sustained=not reasons, reasons=tuple(reasons), client_bound=client_bound)


def least_squares_slope(samples: Sequence[tuple[float, float]]) -> float:
    """Slope of the least-squares line through (t, y) samples; 0 for fewer than two
    distinct times."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_y = sum(y for _, y in samples) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in samples)
    if var_t == 0:
        return 0.0
    return sum((t - mean_t) * (y - mean_y) for t, y in samples) / var_t


@dataclass(slots=True)
class RateSearch:
    """Which rate to try next, from the outcomes so far."""

    start: float
    max_steps: int
    factor: float = RAMP_FACTOR
    precision: float = BISECT_PRECISION
    min_rate: float = MIN_RATE
    max_rate: float = MAX_RATE
    history: list[tuple[float, bool]] = field(default_factory=list)
    stopped: str | None = None
    """Why the search ended early (the client was the limit), if it did."""

    def record(self, rate: float, verdict: Verdict) -> None:
        self.history.append((rate, verdict.sustained))
        if verdict.client_bound:
            self.stopped = f"stopped at {rate:g} tx/s: the load generator was the limit"

    @property
    def best(self) -> float | None:
        """The highest sustained rate so far."""
        sustained = [rate for rate, ok in self.history if ok]
        return max(sustained) if sustained else None

    def _lowest_failure_above(self, floor: float) -> float | None:
        failed = [rate for rate, ok in self.history if not ok and rate > floor]
        return min(failed) if failed else None

    def next_rate(self) -> float | None:
        """The next rate to try, or None when the search is over."""
        if self.stopped is not None or len(self.history) >= self.max_steps:
            return None
        if not self.history:
            return float(round(min(max(self.start, self.min_rate), self.max_rate)))
        best = self.best
        if best is None:  # nothing sustained yet: halve below the lowest failure
            lowest = min(rate for rate, _ in self.history)
            rate = lowest / self.factor
            return float(round(rate)) if rate >= self.min_rate else None
        failure = self._lowest_failure_above(best)
        if failure is None:  # everything so far sustained: keep ramping
            if best >= self.max_rate:
                return None
            return float(round(min(best * self.factor, self.max_rate)))
        if failure <= best * (1 + self.precision):
            return None
        rate = float(round((best + failure) / 2))
        if rate <= best or rate >= failure:
            return None
        return rate
