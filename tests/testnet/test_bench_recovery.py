"""`seqnet bench recovery`: the analysis on synthetic status timelines, and one
short run on real node processes (one kill fault)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from bisect import bisect_right
from collections.abc import Callable, Sequence
from itertools import pairwise
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from sequencer_net.cli.main import cli
from sequencer_net.testnet.bench.recovery import (
    FaultKind,
    FaultWindow,
    Sample,
    analyze_fault,
    api_back_s,
    caught_up_s,
    caught_up_to_live_s,
    commits_between,
    faulted_node,
    hashes_agree,
    height_at,
    in_consensus_s,
    link_report,
    longest_gap,
    parse_faults,
    progress_points,
    report_text,
    sample_of,
    targets_summary,
)
from sequencer_net.testnet.processes import processes_naming

POLL_S = 0.02
ANSWER_S = 0.001
"""A synthetic poll is answered this long after it is sent."""
VIEW_TIMEOUT_MS = 1000
NODES = range(4)


def chain(commit_times: Sequence[float]) -> Callable[[float], int]:
    """Height at time t of a chain that committed one block at each of `commit_times`."""
    ordered = sorted(commit_times)
    return lambda t: bisect_right(ordered, t)


def polled(
    node: int,
    height_of: Callable[[float], int | None],
    start: float,
    end: float,
    peers_of: Callable[[float], tuple[int, ...]] | None = None,
    phase: float = 0.0,
) -> list[Sample]:
    """A poller's samples of one node, every POLL_S from start to end."""
    samples = []
    for k in range(round((end - start) / POLL_S) + 1):
        sent = start + phase + k * POLL_S
        height = height_of(sent)
        peers = None
        if height is not None:
            peers = peers_of(sent) if peers_of else tuple(i for i in NODES if i != node)
        samples.append(Sample(node, sent, sent + ANSWER_S, height, peers))
    return samples


def window(
    kind: FaultKind = FaultKind.KILL,
    node: int = 1,
    applied_at: float = 5.0,
    healed_at: float = 7.0,
    ended_at: float = 10.0,
) -> FaultWindow:
    return FaultWindow(1, kind, node, applied_at, healed_at, ended_at)


# Healthy commits every 0.1 s (off the poll grid), with a stall from 6.05 to 7.25.
HEALTHY_COMMITS = [0.105 + 0.1 * k for k in range(200) if not 6.05 < 0.105 + 0.1 * k < 7.25]
HEALTHY = chain(HEALTHY_COMMITS)


def kill_timeline(caught_up_at: float = 8.5) -> dict[int, list[Sample]]:
    """Node 1 killed at 5.0, restarted at 7.0, API back at 8.0 with its old
    height, at the network's height from `caught_up_at`."""
    frozen = HEALTHY(5.0)

    def node1(t: float) -> int | None:
        if t < 5.0:
            return HEALTHY(t)
        if t < 8.0:
            return None
        return frozen if t < caught_up_at else HEALTHY(t)

    timeline = {i: polled(i, HEALTHY, 0.0, 12.0, phase=0.005 * i) for i in (0, 2, 3)}
    timeline[1] = polled(1, node1, 0.0, 12.0)
    return timeline


# --- the commit gap ------------------------------------------------------------------


def test_the_gap_is_the_stall_of_the_healthy_nodes() -> None:
    timeline = kill_timeline()
    points = progress_points(timeline, [0, 2, 3])
    last_before = max(t for t in HEALTHY_COMMITS if t < 6.05)
    first_after = min(t for t in HEALTHY_COMMITS if t > 7.25)
    gap = longest_gap(points, 5.0, 10.0)
    assert gap == pytest.approx(first_after - last_before, abs=POLL_S)


def test_without_a_stall_the_gap_is_the_commit_interval() -> None:
    timeline = {i: polled(i, chain([0.105 + 0.1 * k for k in range(100)]), 0, 9) for i in NODES}
    gap = longest_gap(progress_points(timeline, NODES), 2.0, 8.0)
    assert gap == pytest.approx(0.1, abs=POLL_S + 1e-9)


def test_a_stall_still_running_at_the_end_of_the_window_counts() -> None:
    points = [(0.0, 1), (1.0, 2), (2.0, 3)]
    assert longest_gap(points, 1.5, 6.0) == pytest.approx(4.0)


def test_the_interval_open_when_the_window_starts_counts_whole() -> None:
    points = [(0.0, 1), (1.0, 2), (4.0, 3), (4.5, 4)]
    # No commit from 1.0 to 4.0: clients saw 3 s without one, though the fault came at 2.0.
    assert longest_gap(points, 2.0, 5.0) == pytest.approx(3.0)


def test_with_no_observation_before_the_window_the_gap_starts_at_the_window() -> None:
    assert longest_gap([(3.0, 1), (3.5, 2)], 1.0, 4.0) == pytest.approx(2.0)
    assert longest_gap([], 1.0, 4.0) == pytest.approx(3.0)


def test_the_faulted_node_does_not_count_as_progress() -> None:
    timeline = kill_timeline()
    # The faulted node claims commits all through the stall: still a stall.
    timeline[1] = polled(1, lambda t: int(t * 100), 0.0, 12.0)
    analysis = analyze_fault(timeline, window(), VIEW_TIMEOUT_MS)
    assert analysis["max_commit_gap_ms"]["measured"] == pytest.approx(1300, abs=1000 * POLL_S)


rise_times = st.lists(
    st.floats(min_value=0, max_value=100, allow_nan=False), min_size=0, max_size=40
).map(lambda times: [(t, h + 1) for h, t in enumerate(sorted(set(times)))])
windows = st.tuples(
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.floats(min_value=0, max_value=100, allow_nan=False),
).map(sorted)


@given(rise_times, windows)
def test_the_gap_bounds(points: list[tuple[float, int]], bounds: list[float]) -> None:
    start, end = bounds
    gap = longest_gap(points, start, end)
    before = [t for t, _ in points if t <= start]
    inside = [t for t, _ in points if start < t <= end]
    opened = before[-1] if before else start
    # Never longer than from the last rise before the window to its end ...
    assert gap <= end - opened + 1e-9
    # ... at least as long as any interval between rises inside the window ...
    edges = [opened, *inside, end]
    assert all(gap >= b - a - 1e-9 for a, b in pairwise(edges))
    # ... and k rises cut the window into k + 1 parts, one of them that long.
    assert gap >= (end - start) / (len(inside) + 1) - 1e-9


@given(rise_times, windows, st.floats(min_value=0, max_value=100, allow_nan=False))
def test_one_more_commit_never_lengthens_the_gap(
    points: list[tuple[float, int]], bounds: list[float], extra: float
) -> None:
    """(A commit after the first observation: the first one is where counting begins.)"""
    if not points or extra <= points[0][0]:
        return
    start, end = bounds
    more = sorted({*(t for t, _ in points), extra})
    assert longest_gap([(t, i + 1) for i, t in enumerate(more)], start, end) <= (
        longest_gap(points, start, end) + 1e-9
    )


heights = st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=30)


@st.composite
def timelines(draw: st.DrawFn) -> dict[int, list[Sample]]:
    """Up to four nodes, each with non-decreasing heights at increasing times, some unanswered."""
    timeline: dict[int, list[Sample]] = {}
    for node in NODES:
        steps = draw(heights)
        times = sorted(draw(st.lists(st.floats(0, 50), min_size=len(steps), max_size=len(steps))))
        answered = draw(st.lists(st.booleans(), min_size=len(steps), max_size=len(steps)))
        levels = sorted(steps)
        timeline[node] = [
            Sample(node, t, t, h if ok else None)
            for t, h, ok in zip(times, levels, answered, strict=True)
        ]
    return timeline


@given(timelines())
def test_progress_points_rise_in_time_and_height(timeline: dict[int, list[Sample]]) -> None:
    points = progress_points(timeline, [0, 2, 3])
    for (t1, h1), (t2, h2) in pairwise(points):
        assert t1 <= t2 and h1 < h2
    answered = [s for n in (0, 2, 3) for s in timeline[n] if s.height is not None]
    assert (points[-1][1] if points else None) == max(
        (s.height for s in answered if s.height is not None), default=None
    )


@given(timelines(), st.integers(0, 100), st.floats(0, 50))
def test_a_sample_that_shows_nothing_new_changes_no_point(
    timeline: dict[int, list[Sample]], height: int, at: float
) -> None:
    healthy = [0, 2, 3]
    points = progress_points(timeline, healthy)
    # From the faulted node: ignored whatever it says.
    with_faulted = {**timeline, 1: [*timeline[1], Sample(1, at, at, height)]}
    assert progress_points(with_faulted, healthy) == points
    # From a healthy node, at most the height already seen by then: ignored too.
    seen = height_at(points, at)
    if seen is not None:
        quiet = Sample(2, at, at, min(height, seen))
        later = sorted([*timeline[2], quiet], key=lambda s: s.at)
        assert progress_points({**timeline, 2: later}, healthy) == points


# --- API back, caught up -------------------------------------------------------------


def test_a_killed_node_is_measured_from_restart_to_answer_and_height() -> None:
    analysis = analyze_fault(kill_timeline(caught_up_at=8.5), window(), VIEW_TIMEOUT_MS)
    assert analysis["api_back_ms"] == pytest.approx(1000, abs=1000 * POLL_S)
    assert analysis["caught_up_ms"]["measured"] == pytest.approx(1500, abs=1000 * POLL_S)
    assert analysis["caught_up_ms"]["after_api_back"] == pytest.approx(500, abs=1000 * POLL_S)
    assert analysis["caught_up_ms"]["met"] is False
    assert analysis["caught_up_ms"]["met_after_api_back"] is True
    assert analysis["caught_up_to_live_ms"]["measured"] == pytest.approx(1500, abs=1000 * POLL_S)
    assert analysis["height_at_heal"] == HEALTHY(6.05)
    assert analysis["blocks_behind_at_heal"] == HEALTHY(6.05) - HEALTHY(5.0)
    gap = analysis["max_commit_gap_ms"]
    assert gap["target_ms"] == 2000 and gap["met"] is True
    assert gap["view_timeouts"] == pytest.approx(gap["measured"] / VIEW_TIMEOUT_MS, abs=0.01)


def test_a_node_that_never_catches_up_misses_the_target() -> None:
    analysis = analyze_fault(kill_timeline(caught_up_at=99.0), window(), VIEW_TIMEOUT_MS)
    assert analysis["caught_up_ms"]["measured"] is None
    assert analysis["caught_up_ms"]["met"] is False
    assert analysis["caught_up_to_live_ms"]["measured"] is None
    assert analysis["api_back_ms"] is not None


def test_reaching_the_height_at_heal_is_not_reaching_the_live_height() -> None:
    live = chain([0.105 + 0.1 * k for k in range(200)])  # no stall: 20 blocks in 2 s

    def slow(t: float) -> int:
        if t < 7.0:
            return live(5.0)
        # Catches up at 5 blocks/s from heal, while the chain makes 10/s.
        return min(live(t), live(5.0) + int((t - 7.0) * 25))

    timeline = {i: polled(i, live, 0, 12, phase=0.005 * i) for i in (0, 2, 3)}
    timeline[1] = polled(1, slow, 0, 12)
    w = window(FaultKind.DISCONNECT)
    points = progress_points(timeline, [0, 2, 3])
    to_heal = caught_up_s(timeline[1], w, live(7.0))
    to_live = caught_up_to_live_s(timeline[1], w, points)
    assert to_heal is not None and to_live is not None
    # 20 behind at 25 blocks/s: the height at heal in 0.8 s; within one block
    # of the live height (gaining 15 blocks/s on a chain that moves on) in 19/15 s.
    assert to_heal == pytest.approx(0.8, abs=0.05)
    assert to_live == pytest.approx(19 / 15, abs=0.05)


def test_a_node_that_kept_answering_is_back_at_once() -> None:
    stuck = HEALTHY(5.0)
    timeline = {i: polled(i, HEALTHY, 0, 12) for i in (0, 2, 3)}
    timeline[1] = polled(1, lambda t: HEALTHY(t) if t < 5 or t > 7.3 else stuck, 0, 12)
    assert api_back_s(timeline[1], window(FaultKind.DISCONNECT)) == 0.0


def test_a_paused_node_is_back_when_its_first_answer_after_resume_arrives() -> None:
    """Polls sent during the pause time out after 1 s; the one in flight at
    SIGCONT is answered 30 ms later."""
    samples = [Sample(1, t / 10, t / 10 + ANSWER_S, 40) for t in range(50)]  # up to 4.9 s
    samples += [Sample(1, 5.0 + k, 6.0 + k, None) for k in range(2)]  # timed out at 6, 7
    samples.append(Sample(1, 7.0, 7.03, 41))
    assert api_back_s(samples, window(FaultKind.PAUSE)) == pytest.approx(0.03)


def test_a_pause_shorter_than_a_poll_timeout_is_not_taken_for_an_answering_node() -> None:
    """The last poll completed before the heal was sent before the fault: it
    proves nothing about the fault; the answer after SIGCONT does."""
    samples = [Sample(1, 4.98, 4.981, 40), Sample(1, 5.001, 5.6, 40)]
    w = window(FaultKind.PAUSE, applied_at=5.0, healed_at=5.5, ended_at=9.0)
    assert api_back_s(samples, w) == pytest.approx(0.1)


def test_no_answer_after_heal_is_none() -> None:
    samples = [Sample(1, 4.0, 4.001, 40), Sample(1, 7.5, 7.5, None)]
    assert api_back_s(samples, window()) is None


@given(
    st.lists(st.tuples(st.floats(0, 20), st.integers(0, 60)), max_size=40),
    st.integers(0, 60),
)
def test_caught_up_is_the_first_answer_at_the_target_inside_the_window(
    raw: list[tuple[float, int]], target: int
) -> None:
    samples = [Sample(1, t, t, h) for t, h in sorted(raw)]
    w = window()
    result = caught_up_s(samples, w, target)
    inside = [s for s in samples if w.healed_at <= s.at <= w.ended_at]
    reaching = [s for s in inside if s.height is not None and s.height >= target]
    if not reaching:
        assert result is None
    else:
        assert result == reaching[0].at - w.healed_at
        assert 0 <= result <= w.ended_at - w.healed_at


# --- links ----------------------------------------------------------------------------


def pause_timeline(
    own_peers: Callable[[float], tuple[int, ...]],
    seen_by_2: Callable[[float], tuple[int, ...]] = lambda t: (0, 1, 3),
) -> dict[int, list[Sample]]:
    def paused(t: float) -> int | None:
        return None if 5.0 <= t < 7.0 else HEALTHY(t)

    timeline = {i: polled(i, HEALTHY, 0, 12) for i in (0, 3)}
    timeline[2] = polled(2, HEALTHY, 0, 12, peers_of=seen_by_2)
    timeline[1] = polled(1, paused, 0, 12, peers_of=own_peers)
    return timeline


def test_a_paused_node_that_keeps_its_links_meets_the_target() -> None:
    analysis = analyze_fault(
        pause_timeline(lambda t: (0, 2, 3)), window(FaultKind.PAUSE), VIEW_TIMEOUT_MS
    )
    links = analysis["links"]
    assert links["peers_before"] == [0, 2, 3] and links["peers_after_heal"] == [0, 2, 3]
    assert links["lost_after_heal"] is False and links["dropped_by"] == []
    assert links["met"] is True and links["restored_ms"] == pytest.approx(0, abs=1000 * POLL_S)


def test_links_lost_shortly_after_resume_miss_the_target() -> None:
    # Right after SIGCONT all three look linked; 300 ms later the keepalive
    # timeout fires and two links are gone for a second.
    def own(t: float) -> tuple[int, ...]:
        return (0,) if 7.3 <= t < 8.3 else (0, 2, 3)

    analysis = analyze_fault(pause_timeline(own), window(FaultKind.PAUSE), VIEW_TIMEOUT_MS)
    links = analysis["links"]
    assert links["peers_after_heal"] == [0, 2, 3]
    assert links["lost_after_heal"] is True and links["met"] is False


def test_a_peer_dropping_the_paused_node_misses_the_target() -> None:
    def seen_by_2(t: float) -> tuple[int, ...]:
        return (0, 3) if 6.0 <= t < 7.5 else (0, 1, 3)

    analysis = analyze_fault(
        pause_timeline(lambda t: (0, 2, 3), seen_by_2), window(FaultKind.PAUSE), VIEW_TIMEOUT_MS
    )
    assert analysis["links"]["dropped_by"] == [2]
    assert analysis["links"]["met"] is False


def test_links_of_a_restarted_node_report_when_they_are_back_without_a_target() -> None:
    def own(t: float) -> tuple[int, ...]:
        return (0, 2, 3) if t < 5 or t >= 8.4 else (0,)

    timeline = kill_timeline()
    timeline[1] = polled(1, lambda t: None if 5 <= t < 8 else HEALTHY(t), 0, 12, peers_of=own)
    links = link_report(timeline, window(), [0, 2, 3])
    assert links["restored_ms"] == pytest.approx(1400, abs=1000 * POLL_S)
    assert "met" not in analyze_fault(timeline, window(), VIEW_TIMEOUT_MS)["links"]


# --- agreement, summary, plumbing ----------------------------------------------------


def test_agreement() -> None:
    assert hashes_agree({"node0": "0xaa", "node1": "0xaa"}) is True
    assert hashes_agree({"node0": "0xaa", "node1": "0xbb"}) is False
    assert hashes_agree({"node0": "0xaa", "node1": None}) is None
    assert hashes_agree({"node0": "0xaa", "node1": "0xbb", "node2": None}) is False
    assert hashes_agree({}) is None


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from([None, "x", "y"])))
def test_agreement_is_false_exactly_when_two_answers_differ(hashes: dict[str, str | None]) -> None:
    known = {h for h in hashes.values() if h is not None}
    verdict = hashes_agree(hashes)
    assert (verdict is False) == (len(known) > 1)
    assert (verdict is True) == (len(known) == 1 and None not in hashes.values())
    assert hashes_agree(dict(reversed(list(hashes.items())))) == verdict


def test_commits_count_between_the_first_and_last_answer() -> None:
    samples = [Sample(0, 1.0, 1.0, None), Sample(0, 2, 2, 10), Sample(0, 3, 3, 25)]
    assert commits_between(samples, 0, 5) == {"commits": 15, "from_height": 10, "to_height": 25}
    assert commits_between(samples, 4, 5)["commits"] is None


def test_the_summary_takes_the_worst_fault() -> None:
    good = analyze_fault(kill_timeline(caught_up_at=7.5), window(), VIEW_TIMEOUT_MS)
    bad = analyze_fault(kill_timeline(caught_up_at=99.0), window(), VIEW_TIMEOUT_MS)
    paused = analyze_fault(
        pause_timeline(lambda t: (0, 2, 3)), window(FaultKind.PAUSE), VIEW_TIMEOUT_MS
    )
    summary = targets_summary([good, paused])
    assert summary["caught_up_ms"]["worst"] == max(
        good["caught_up_ms"]["measured"], paused["caught_up_ms"]["measured"]
    )
    assert summary["pause_keeps_links"]["met"] is True
    worse = targets_summary([good, bad])
    assert worse["caught_up_ms"] == {
        "worst": None,
        "target_ms": 1000,
        "met": False,
        "met_after_api_back": False,
    }
    assert worse["pause_keeps_links"]["met"] is None


def test_faults_rotate_over_the_non_reference_validators() -> None:
    picked = [faulted_node(r, k, 4) for r in range(2) for k in range(3)]
    assert 0 not in picked
    assert picked == [1, 2, 3, 2, 3, 1]
    # Each kind meets a different node each round.
    assert {faulted_node(r, 0, 4) for r in range(3)} == {1, 2, 3}


def test_status_answers_become_samples() -> None:
    sample = sample_of(2, 1.0, 1.01, {"height": 7, "peers": [0, 1, 3]})
    assert sample == Sample(2, 1.0, 1.01, 7, (0, 1, 3))
    both = sample_of(2, 1.0, 1.01, {"height": 7, "consensus_height": 9})
    assert (both.height, both.consensus_height) == (7, 9)
    assert sample_of(2, 1.0, 1.5, {"height": 7, "consensus_height": True}).consensus_height is None
    assert sample_of(2, 1.0, 1.5, None).height is None
    assert sample_of(2, 1.0, 1.5, {"height": "7"}).height is None
    assert sample_of(2, 1.0, 1.5, {"height": 7, "peers": "x"}).peers is None


def test_fault_kinds_parse() -> None:
    assert parse_faults("kill, pause") == (FaultKind.KILL, FaultKind.PAUSE)
    with pytest.raises(ValueError, match="unknown fault 'crash'"):
        parse_faults("kill,crash")
    with pytest.raises(ValueError):
        parse_faults(" , ")


def test_help_teaches_every_flag() -> None:
    result = CliRunner().invoke(cli, ["bench", "recovery", "--help"])
    assert result.exit_code == 0
    for text in ("--faults", "--fault-s", "--rounds", "--rate", "--json", "--keep", "Example"):
        assert text in result.output


def test_an_unknown_fault_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["bench", "recovery", "--faults", "kill,crash"])
    assert result.exit_code == 2
    assert "crash" in result.output


def test_the_text_report_shows_each_fault_and_verdict() -> None:
    faults = [
        analyze_fault(kill_timeline(), window(), VIEW_TIMEOUT_MS),
        analyze_fault(pause_timeline(lambda t: (0, 2, 3)), window(FaultKind.PAUSE), 1000),
    ]
    report = {
        "config": {"validators": 4, "view_timeout_ms": 1000, "rate": 100.0, "mix": "mixed"}
        | {"fault_s": 2.0, "rounds": 1},
        "faults": faults,
        "targets": targets_summary(faults),
        "agreement": {"height": 10, "agree": True},
        "reference": {"node": 0, "commits": 50, "run_s": 12.0},
        "baseline_max_commit_gap_ms": 300,
        "wall_s": 30.0,
    }
    text = report_text(report)
    assert "kill" in text and "pause" in text and "kept" in text
    assert "caught up <= 1000 ms after heal: MISS" in text
    assert "nodes agree" in text


# --- end to end ------------------------------------------------------------------------

RUN_TIMEOUT_S = 120


def test_one_kill_on_real_nodes_is_measured_and_cleaned_up() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "sequencer_net.cli.main", "bench", "recovery"),
            *("--faults", "kill", "--fault-s", "2", "--rounds", "1", "--rate", "50", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    [fault] = report["faults"]
    assert fault["fault"] == "kill" and fault["node"] == 1
    # A killed node cannot answer at the instant it is started again.
    assert fault["api_back_ms"] is not None and fault["api_back_ms"] > 0
    assert fault["caught_up_ms"]["measured"] is not None
    assert fault["caught_up_ms"]["measured"] >= fault["api_back_ms"]
    assert fault["blocks_behind_at_heal"] is not None
    assert report["reference"]["commits"] > 0
    assert report["agreement"]["agree"] is True
    assert report["load"]["accepted"] > 0
    [directory] = re.findall(r"directory (\S+)", result.stderr)
    assert not Path(directory).exists()
    assert processes_naming(directory) == []


def test_a_node_is_in_consensus_when_its_consensus_height_reaches_the_heal_height() -> None:
    target = 40
    w = FaultWindow(1, FaultKind.DISCONNECT, 1, 5.0, 7.0, 12.0)
    samples = [
        Sample(1, 6.9, 6.9, 30, consensus_height=31),  # before the heal: not counted
        Sample(1, 7.2, 7.2, 30, consensus_height=39),
        Sample(1, 7.4, 7.4, 31, consensus_height=41),  # consensus back; execution replaying
        Sample(1, 8.1, 8.1, 40, consensus_height=43),
    ]
    assert in_consensus_s(samples, w, target) == pytest.approx(0.4)
    assert caught_up_s(samples, w, target) == pytest.approx(1.1)
    assert in_consensus_s([Sample(1, 7.5, 7.5, 40)], w, target) is None  # an older node
