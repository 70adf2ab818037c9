"""The benchmark's latency histogram: every percentile within 1% of the exact one."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sequencer_net.testnet.bench.histogram import (
    SUB_BUCKETS,
    LatencyHistogram,
    bucket_bounds,
    bucket_index,
)

values = st.integers(min_value=0, max_value=10**12)


def exact_percentile(sorted_values: list[int], fraction: float) -> int:
    return sorted_values[max(1, math.ceil(fraction * len(sorted_values))) - 1]


@given(values)
def test_a_value_lies_in_its_bucket_and_buckets_are_narrow(value: int) -> None:
    low, high = bucket_bounds(bucket_index(value))
    assert low <= value <= high
    assert low == high or (high - low + 1) / low <= 1 / SUB_BUCKETS


@given(values, values)
def test_bucket_order_follows_value_order(a: int, b: int) -> None:
    if a <= b:
        assert bucket_index(a) <= bucket_index(b)


@given(
    st.lists(values, min_size=1, max_size=300),
    st.sampled_from([0.01, 0.5, 0.9, 0.99, 0.999, 1.0]),
)
def test_percentiles_within_one_percent_of_exact(recorded: list[int], fraction: float) -> None:
    histogram = LatencyHistogram()
    for value in recorded:
        histogram.record(value)
    exact = exact_percentile(sorted(recorded), fraction)
    answer = histogram.percentile(fraction)
    assert answer is not None
    assert abs(answer - exact) <= 0.01 * exact


@given(st.lists(values, min_size=1, max_size=100), st.integers(min_value=1, max_value=100))
def test_a_rank_among_missing_values_has_no_number(recorded: list[int], missing: int) -> None:
    histogram = LatencyHistogram()
    for value in recorded:
        histogram.record(value)
    histogram.record_missing(missing)
    total = len(recorded) + missing
    for fraction in (0.5, 0.9, 0.99, 1.0):
        rank = max(1, math.ceil(fraction * total))
        answer = histogram.percentile(fraction)
        assert (answer is None) == (rank > len(recorded))


def test_empty_histogram_and_bad_fractions() -> None:
    histogram = LatencyHistogram()
    assert histogram.percentile(0.5) is None
    with pytest.raises(ValueError):
        histogram.percentile(0)
    with pytest.raises(ValueError):
        histogram.record(-1)
