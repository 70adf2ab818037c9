"""A log-linear latency histogram in the style of HdrHistogram.

Values are non-negative integers (the benchmark records microseconds). Values
below 2^k (k = SUB_BUCKET_BITS) have a bucket each; above, every power of two
is cut into 2^k equal buckets, so a bucket [low, low + width) has width / low
<= 2^-k. A percentile answers the midpoint of the bucket that holds the
nearest-rank value: within 2^-(k+1) of it, 0.4% for k = 7 (HdrHistogram's
"two significant digits" is 1%).

Values that never arrived (a transaction that did not commit before the
benchmark stopped waiting) are counted as `missing`: they rank above every
recorded value, so a percentile that falls among them is None, not a number.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

SUB_BUCKET_BITS = 7
SUB_BUCKETS = 1 << SUB_BUCKET_BITS


def bucket_index(value: int) -> int:
    """The bucket holding `value` (>= 0); indices grow with the value."""
    if value < 0:
        raise ValueError("histogram values are >= 0")
    if value < SUB_BUCKETS:
        return value
    shift = value.bit_length() - SUB_BUCKET_BITS - 1
    return shift * SUB_BUCKETS + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """[low, high] (inclusive) of the values in bucket `index`."""
    if index < SUB_BUCKETS:
        return index, index
    shift = index // SUB_BUCKETS - 1
    top = index % SUB_BUCKETS + SUB_BUCKETS
    return top << shift, ((top + 1) << shift) - 1


def bucket_value(index: int) -> float:
    """The value a percentile reports for bucket `index`: its midpoint."""
    low, high = bucket_bounds(index)
    return (low + high) / 2


@dataclass(slots=True)
class LatencyHistogram:
    counts: Counter[int] = field(default_factory=Counter)
    recorded: int = 0
    missing: int = 0
    max_value: int = 0

    def record(self, value: int) -> None:
        self.counts[bucket_index(value)] += 1
        self.recorded += 1
        self.max_value = max(self.max_value, value)

    def record_missing(self, count: int = 1) -> None:
        self.missing += count

    @property
    def total(self) -> int:
        return self.recorded + self.missing

    def percentile(self, fraction: float) -> float | None:
        """Nearest-rank percentile (fraction in (0, 1]); None if no values or if
        the rank falls among the missing ones."""
        if not 0 < fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")
        if self.total == 0:
            return None
        rank = max(1, math.ceil(fraction * self.total))
        if rank > self.recorded:
            return None
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(bucket_value(index), float(self.max_value))
        raise AssertionError("unreachable: rank <= recorded")

    def merge(self, other: LatencyHistogram) -> None:
        self.counts.update(other.counts)
        self.recorded += other.recorded
        self.missing += other.missing
        self.max_value = max(self.max_value, other.max_value)
