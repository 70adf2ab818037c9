"""The sustained-rate decision and the rate search, on synthetic steps."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sequencer_net.testnet.bench.sustain import (
    RateSearch,
    StepMeasurement,
    Verdict,
    judge_step,
    least_squares_slope,
)

GOOD = StepMeasurement(
    target_rate=1000.0,
    offered_rate=1000.0,
    committed_rate=990.0,
    submitted=10_000,
    refused=0,
    p99_ms=400.0,
    backlog_slope=3.0,
    waited_for_nodes_s=0.0,
)


def test_a_healthy_step_is_sustained() -> None:
    verdict = judge_step(GOOD, latency_bound_ms=1000)
    assert verdict == Verdict(True, ())


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"committed_rate": 900.0}, "committed 900.0 tx/s"),
        ({"p99_ms": 1200.0}, "p99 1200 ms"),
        ({"p99_ms": None}, "never committed"),
        ({"backlog_slope": 80.0}, "backlog grew"),
        ({"refused": 600}, "refused 600"),
        ({"offered_rate": 700.0, "waited_for_nodes_s": 2.0}, "the nodes did not take"),
    ],
)
def test_each_criterion_alone_fails_the_step(change: dict[str, object], phrase: str) -> None:
    verdict = judge_step(replace(GOOD, **change), latency_bound_ms=1000)  # type: ignore[arg-type]
    assert not verdict.sustained
    assert any(phrase in reason for reason in verdict.reasons), verdict.reasons
    assert not verdict.client_bound


def test_a_client_that_cannot_offer_the_rate_is_named() -> None:
    verdict = judge_step(replace(GOOD, offered_rate=600.0), latency_bound_ms=1000)
    assert not verdict.sustained and verdict.client_bound
    assert "load generator" in verdict.reasons[0]


def test_within_tolerance_is_sustained_just_outside_is_not() -> None:
    assert judge_step(replace(GOOD, committed_rate=951.0), 1000).sustained
    assert not judge_step(replace(GOOD, committed_rate=949.0), 1000).sustained
    assert judge_step(replace(GOOD, p99_ms=1000.0), 1000).sustained
    assert not judge_step(replace(GOOD, p99_ms=1000.5), 1000).sustained


@given(
    st.floats(-1e4, 1e4, allow_nan=False),
    st.floats(-1e4, 1e4, allow_nan=False),
    st.integers(2, 50),
)
def test_slope_of_a_line_is_its_slope(slope: float, intercept: float, n: int) -> None:
    samples = [(t * 0.5, intercept + slope * t * 0.5) for t in range(n)]
    assert least_squares_slope(samples) == pytest.approx(slope, rel=1e-6, abs=1e-6)


def test_slope_needs_two_times() -> None:
    assert least_squares_slope([]) == 0.0
    assert least_squares_slope([(1.0, 5.0), (1.0, 9.0)]) == 0.0


def ok(sustained: bool) -> Verdict:
    return Verdict(sustained, () if sustained else ("no",))


def run_search(search: RateSearch, capacity: float) -> list[float]:
    """Drive the search against a network that sustains every rate <= capacity."""
    tried = []
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        search.record(rate, ok(rate <= capacity))
    return tried


def test_ramp_then_bisect_brackets_the_capacity() -> None:
    search = RateSearch(start=500, max_steps=20)
    tried = run_search(search, capacity=3000)
    assert tried[:3] == [500, 1000, 2000]
    assert tried[3] == 4000
    best = search.best
    assert best is not None and best <= 3000
    failures = [rate for rate in tried if rate > 3000]
    assert min(failures) <= best * 1.1


def test_halves_down_when_the_start_fails() -> None:
    search = RateSearch(start=800, max_steps=20)
    tried = run_search(search, capacity=150)
    assert tried[:3] == [800, 400, 200]
    assert search.best is not None and 150 * 0.9 <= search.best <= 150


def test_the_step_budget_bounds_the_search() -> None:
    search = RateSearch(start=100, max_steps=4)
    assert len(run_search(search, capacity=1e9)) == 4


def test_nothing_sustained_ends_at_the_minimum_rate() -> None:
    search = RateSearch(start=100, max_steps=50, min_rate=25)
    tried = run_search(search, capacity=0)
    assert tried == [100, 50, 25]
    assert search.best is None


def test_stops_at_the_maximum_rate() -> None:
    search = RateSearch(start=100, max_steps=50, max_rate=1000)
    assert run_search(search, capacity=1e9) == [100, 200, 400, 800, 1000]


def test_a_client_bound_step_ends_the_search() -> None:
    search = RateSearch(start=100, max_steps=50)
    search.record(100, Verdict(False, ("client",), client_bound=True))
    assert search.next_rate() is None
    assert search.stopped is not None


@given(st.floats(100, 40_000), st.floats(30, 30_000), st.integers(3, 12))
def test_the_search_never_repeats_a_rate_and_stays_in_bounds(
    capacity: float, start: float, steps: int
) -> None:
    search = RateSearch(start=start, max_steps=steps)
    tried = run_search(search, capacity)
    assert len(tried) == len(set(tried)) <= steps
    assert all(search.min_rate <= rate <= search.max_rate for rate in tried)
    best = search.best
    if best is not None:
        assert best <= capacity
