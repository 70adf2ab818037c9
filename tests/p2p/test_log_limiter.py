"""LogLimiter (sequencer_net/logging_limits.py) with a fake clock: no sleeps."""

from __future__ import annotations

import itertools
import logging
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from sequencer_net.logging_limits import OVERFLOW_PEER, LogLimiter

_REPEATED = re.compile(r" repeated=(\d+) interval_s=")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def limiter(interval_s: float = 10.0, max_keys: int = 256) -> tuple[LogLimiter, FakeClock, Lines]:
    logger = logging.getLogger(f"test.log_limiter.{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    lines = Lines()
    logger.addHandler(lines)
    clock = FakeClock()
    return LogLimiter(logger, interval_s=interval_s, max_keys=max_keys, clock=clock), clock, lines


def test_first_occurrence_then_one_count_per_interval() -> None:
    logs, clock, out = limiter(interval_s=10.0)
    assert logs.warning("rejected_stream", "Qm1", "protocol=%s", "/x")
    for _ in range(1999):  # the flood one outside connection once wrote in 15 s
        clock.now += 0.005
        assert not logs.warning("rejected_stream", "Qm1", "protocol=%s", "/y")
    assert out.lines == ["rejected_stream peer=Qm1 protocol=/x"]
    clock.now += 1.0  # 11 s after the first line
    logs.warning("rejected_stream", "Qm1", "protocol=%s", "/z")
    assert out.lines[1] == "rejected_stream peer=Qm1 protocol=/y repeated=1999 interval_s=11.0"
    assert len(out.lines) == 2
    assert logs.suppressed_total == 2000


def test_flush_reports_a_flood_that_stopped_and_forgets_idle_keys() -> None:
    logs, clock, out = limiter(interval_s=10.0)
    logs.info("frame_dropped", 3, "reason=%s", "x", key="x")
    logs.info("frame_dropped", 3, "reason=%s", "x", key="x")
    clock.now += 5
    assert logs.flush() == 0  # the window is still open
    clock.now += 5
    assert logs.flush() == 1
    assert out.lines[-1] == "frame_dropped peer=3 reason=x repeated=1 interval_s=10.0"
    clock.now += 10
    assert logs.flush() == 0  # a whole idle window: forgotten
    assert logs.tracked_keys == 0
    assert logs.info("frame_dropped", 3, "reason=%s", "x", key="x")  # in full again
    assert len(out.lines) == 3


def test_events_peers_and_keys_are_limited_separately() -> None:
    logs, _clock, out = limiter()
    assert logs.warning("frame_dropped", 1, "reason=a", key="a")
    assert logs.warning("frame_dropped", 1, "reason=b", key="b")
    assert logs.warning("frame_dropped", 2, "reason=a", key="a")
    assert logs.warning("disconnected", 1)
    assert not logs.warning("frame_dropped", 1, "reason=a", key="a")
    assert len(out.lines) == 4


def test_many_peers_overflow_into_one_aggregate_per_event_only() -> None:
    logs, clock, out = limiter(interval_s=10.0, max_keys=3)
    for i in range(50):  # random keys dialing in
        logs.warning("refused_connection", f"Qm{i}")
    assert len(out.lines) == 4  # three peers, then the aggregate's first line
    assert out.lines[-1] == f"refused_connection peer={OVERFLOW_PEER}"
    assert logs.tracked_keys_of("refused_connection") == 4
    assert logs.warning("disconnected", 1)  # another event keeps its own budget
    clock.now += 10
    logs.flush()
    assert out.lines[-1] == f"refused_connection peer={OVERFLOW_PEER} repeated=46 interval_s=10.0"


def test_disabled_levels_are_neither_logged_nor_tracked() -> None:
    logs, _clock, out = limiter()
    logging.getLogger(logs._logger.name).setLevel(logging.WARNING)
    assert not logs.debug("dial_failed", 1)
    assert logs.tracked_keys == 0 and out.lines == []


_EVENTS = st.tuples(
    st.floats(min_value=0.0, max_value=7.0, allow_nan=False),  # time since the last one
    st.sampled_from(["rejected_stream", "frame_dropped", "disconnected"]),
    st.integers(min_value=0, max_value=6),  # peer
    st.booleans(),  # call flush() after it
)


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(_EVENTS, max_size=200),
    interval=st.sampled_from([1.0, 5.0, 10.0]),
    max_keys=st.integers(1, 4),
)
def test_every_occurrence_is_written_or_counted_once_and_lines_are_spaced(
    events: list[tuple[float, str, int, bool]], interval: float, max_keys: int
) -> None:
    logs, clock, out = limiter(interval_s=interval, max_keys=max_keys)
    written_at: dict[tuple[str, str], list[float]] = {}
    seen = 0
    for delay, event, peer, flush in events:
        clock.now += delay
        before = len(out.lines)
        logs.warning(event, peer)
        seen += 1
        if flush:
            logs.flush()
        for line in out.lines[before:]:
            name, peer_field = line.split(" ")[:2]
            written_at.setdefault((name, peer_field), []).append(clock.now)
        assert logs.tracked_keys_of(event) <= max_keys + 1  # peers, plus the aggregate
    clock.now += 2 * interval + 1
    logs.flush()
    logs.flush()
    full = sum(1 for line in out.lines if not _REPEATED.search(line))
    counted = sum(int(m.group(1)) for line in out.lines if (m := _REPEATED.search(line)))
    assert full + counted == seen
    for times in written_at.values():  # one key: at most one line per interval
        assert all(b - a >= interval for a, b in itertools.pairwise(times))
