"""Where a transaction's time goes: a per-batch timeline from the node logs.

Reads the `node.log` of every validator of a kept benchmark network (text
format, `seqnet bench ... --keep`) and follows each own batch:

    arrival    the oldest transaction reached the author's mempool
               (`event=batch_cut ... waited_ms` before the cut)
    cut        the author cut the batch (`event=batch_cut`); `held_ms` of its
               wait came after the batch would have been due without the
               load-adaptive hold (own batches awaiting certificates)
    certified  the author formed its certificate (`event=batch_certified`)
    proposed   a leader built a payload naming it (`event=payload_built`,
               the last one, so a nullified view's proposal does not count)
    decided    node 0 finalized the block at that height (`event=decided`)
    executed   node 0 executed it (`event=executed`)

Log times are the nodes' wall clocks at millisecond resolution; all nodes run
on one machine, so their clocks agree. Measurement only: nothing here feeds
consensus.

    python -m sequencer_net.testnet.bench.timeline <network directory>
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+ \S+ event=(\w+) (.*)$")
FIELD = re.compile(r"(\w+)=(\S+)")

STEPS = (
    ("mempool wait before the cut", "arrival", "cut"),
    ("cut to certified", "cut", "certified"),
    ("certified to proposed", "certified", "proposed"),
    ("proposed to decided (node 0)", "proposed", "decided"),
    ("decided to executed (node 0)", "decided", "executed"),
    ("arrival to executed (node 0)", "arrival", "executed"),
)


@dataclass
class BatchTimes:
    """Milliseconds since the epoch of each step of one batch (None: not seen)."""

    arrival: float | None = None
    cut: float | None = None
    held_ms: float | None = None
    certified: float | None = None
    proposed: float | None = None
    height: int | None = None
    decided: float | None = None
    executed: float | None = None


def parse_line(line: str) -> tuple[float, str, dict[str, str]] | None:
    """A log line -> (wall time in ms, event, fields); None for other lines."""
    match = LINE.match(line)
    if match is None:
        return None
    stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp() * 1000, match.group(2), dict(FIELD.findall(match.group(3)))


def batch_timelines(logs: dict[int, list[str]]) -> dict[str, BatchTimes]:
    """Each own batch's steps, keyed by digest prefix; `logs`: lines per validator."""
    batches: dict[str, BatchTimes] = {}
    decided: dict[int, float] = {}
    executed: dict[int, float] = {}
    for node, lines in sorted(logs.items()):
        for line in lines:
            parsed = parse_line(line)
            if parsed is None:
                continue
            at, event, fields = parsed
            if event == "batch_cut":
                times = batches.setdefault(fields["digest"], BatchTimes())
                times.cut = at
                times.arrival = at - int(fields["waited_ms"])
                if "held_ms" in fields:
                    times.held_ms = float(fields["held_ms"])
            elif event == "batch_certified":
                batches.setdefault(fields["digest"], BatchTimes()).certified = at
            elif event == "payload_built" and fields.get("batches", "-") != "-":
                for digest in fields["batches"].split(","):
                    times = batches.setdefault(digest, BatchTimes())
                    if times.proposed is None or at > times.proposed:
                        times.proposed, times.height = at, int(fields["height"])
            elif event == "decided" and node == 0:
                decided.setdefault(int(fields["height"]), at)
            elif event == "executed" and node == 0:
                executed.setdefault(int(fields["height"]), at)
    for times in batches.values():
        if times.height is not None:
            times.decided = decided.get(times.height)
            times.executed = executed.get(times.height)
    return batches


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


HELD_STEP = "of which held for own certificates"


def step_summary(batches: dict[str, BatchTimes]) -> list[tuple[str, int, float, float]]:
    """(step, batches measured, p50 ms, p90 ms) for each step of STEPS, and the
    part of the mempool wait the hold added (HELD_STEP, when the logs say)."""
    rows = []
    held = [t.held_ms for t in batches.values() if t.held_ms is not None]
    for name, start, end in STEPS:
        spans = [
            getattr(t, end) - getattr(t, start)
            for t in batches.values()
            if getattr(t, start) is not None and getattr(t, end) is not None
        ]
        if spans:
            rows.append((name, len(spans), percentile(spans, 0.5), percentile(spans, 0.9)))
        if name == STEPS[0][0] and held:
            rows.append((HELD_STEP, len(held), percentile(held, 0.5), percentile(held, 0.9)))
    return rows


def held_cuts(batches: dict[str, BatchTimes]) -> tuple[int, int]:
    """(cuts the hold delayed, cuts whose log says): `held_ms` > 0."""
    held = [t.held_ms for t in batches.values() if t.held_ms is not None]
    return sum(1 for ms in held if ms > 0), len(held)


STEP_KEYS = {
    "mempool wait before the cut": "mempool_wait_ms",
    HELD_STEP: "held_ms",
    "cut to certified": "cut_to_certified_ms",
    "certified to proposed": "certified_to_proposed_ms",
    "proposed to decided (node 0)": "proposed_to_decided_ms",
    "decided to executed (node 0)": "decided_to_executed_ms",
    "arrival to executed (node 0)": "arrival_to_executed_ms",
}
"""Short names of the steps, for JSON reports."""


def step_medians(logs: dict[int, list[str]]) -> dict[str, float | int]:
    """p50 of each step under its STEP_KEYS name, with the batches followed
    (`batches`) and the cuts the hold delayed (`held_cuts`)."""
    batches = batch_timelines(logs)
    out: dict[str, float | int] = {
        STEP_KEYS[name]: p50 for name, _, p50, _ in step_summary(batches)
    }
    out["batches"] = len(batches)
    out["held_cuts"] = held_cuts(batches)[0]
    return out


def read_network(directory: Path) -> dict[int, list[str]]:
    logs = {}
    for path in sorted(directory.glob("node*/node.log")):
        index = int(path.parent.name.removeprefix("node"))
        logs[index] = path.read_text(errors="replace").splitlines()
    return logs


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    batches = batch_timelines(read_network(Path(argv[0])))
    print(f"{'step':34} {'batches':>7} {'p50 ms':>7} {'p90 ms':>7}")
    for name, count, p50, p90 in step_summary(batches):
        print(f"{name:34} {count:7d} {p50:7.0f} {p90:7.0f}")
    held, logged = held_cuts(batches)
    if logged:
        print(f"cuts the hold delayed: {held} of {logged}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
