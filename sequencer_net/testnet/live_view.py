"""The live view of `seqnet testnet up`: one row per node, the load, the event log.

Rates come from the nodes' own counters (height and committed_txs in
/v1/status) over a sliding window, so the view shows what the network
committed, not what the load generator sent. Everything here is a pure
function of samples; `session.py` does the polling.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

RATE_WINDOW_S = 5.0
"""Commits/s and tx/s average over this window: long enough to smooth one
view timeout, short enough to show a crash within seconds."""

EVENT_LOG_LINES = 8


@dataclass(frozen=True, slots=True)
class StatusSample:
    at_s: float
    height: int
    committed_txs: int


class RateWindow:
    """Per-second rates of a node's height and committed tx count over a window."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[StatusSample] = deque()

    def add(self, sample: StatusSample) -> None:
        if self._samples and sample.height < self._samples[-1].height:
            self._samples.clear()  # the node lost its data and restarted from scratch
        self._samples.append(sample)
        while len(self._samples) > 2 and sample.at_s - self._samples[0].at_s > self.window_s:
            self._samples.popleft()

    def rates(self) -> tuple[float | None, float | None]:
        """(commits/s, tx/s), or (None, None) until two samples span some time."""
        if len(self._samples) < 2:
            return None, None
        first, last = self._samples[0], self._samples[-1]
        span = last.at_s - first.at_s
        if span <= 0:
            return None, None
        return (
            (last.height - first.height) / span,
            (last.committed_txs - first.committed_txs) / span,
        )


@dataclass(frozen=True, slots=True)
class NodeRow:
    name: str
    state: str  # up | down | paused | cut | silent
    height: int | None = None
    commits_per_s: float | None = None
    tx_per_s: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    peers: int | None = None
    state_root: str | None = None
    pid: int | None = None


def node_state(running: bool, paused: bool, connected: bool, answered: bool) -> str:
    if not running:
        return "down"
    if paused:
        return "paused"
    if not answered:
        return "silent"
    return "up" if connected else "cut"


def node_row(
    name: str,
    status: dict[str, Any] | None,
    window: RateWindow,
    *,
    running: bool,
    paused: bool,
    connected: bool,
    pid: int | None,
) -> NodeRow:
    """One row from the node's latest status (None if it did not answer)."""
    state = node_state(running, paused, connected, status is not None)
    if status is None:
        return NodeRow(name=name, state=state, pid=pid if running else None)
    commits, txs = window.rates()
    latency = status.get("commit_latency_ms") or {}
    peers = status.get("peers")
    return NodeRow(
        name=name,
        state=state,
        height=status.get("height"),
        commits_per_s=commits,
        tx_per_s=txs,
        latency_p50_ms=latency.get("p50"),
        latency_p99_ms=latency.get("p99"),
        peers=len(peers) if isinstance(peers, list) else None,
        state_root=status.get("state_root"),
        pid=pid,
    )


_STATE_STYLE = {"up": "green", "down": "red", "paused": "yellow", "cut": "magenta"}


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _prefix(value: str | None, length: int = 8) -> str:
    return "-" if not value else value[:length]


COLUMNS = (
    ("node", "left"),
    ("state", "left"),
    ("height", "right"),
    ("blk/s", "right"),
    ("tx/s", "right"),
    ("p50ms", "right"),
    ("p99ms", "right"),
    ("peers", "right"),
    ("root", "left"),
    ("pid", "right"),
)
"""The live view's columns (docs/testnet.md explains each); fits 80 columns."""


def nodes_table(rows: Sequence[NodeRow], validators: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False)
    for column, justify in COLUMNS:
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            row.name,
            Text(row.state, style=_STATE_STYLE.get(row.state, "yellow")),
            "-" if row.height is None else str(row.height),
            _number(row.commits_per_s, 1),
            _number(row.tx_per_s, 0),
            _number(row.latency_p50_ms, 0),
            _number(row.latency_p99_ms, 0),
            "-" if row.peers is None else f"{row.peers}/{max(validators - 1, 0)}",
            _prefix(row.state_root),
            "-" if row.pid is None else str(row.pid),
        )
    return table


def load_line(load: dict[str, Any] | None, target_rate: float) -> Text:
    if load is None:
        return Text("load: off", style="dim")
    latency = load["latency_ms"]
    return Text(
        f"load: target {target_rate:g} tx/s, achieved {load['achieved_tps']:,.0f} tx/s | "
        f"sent {load['sent']:,} accepted {load['accepted']:,} rejected {load['rejected']:,} | "
        f"submit->commit p50 {_number(latency['p50'], 0)} ms "
        f"p99 {_number(latency['p99'], 0)} ms ({latency['samples']} samples)"
    )


def render_view(
    title: str,
    elapsed_s: float,
    rows: Sequence[NodeRow],
    validators: int,
    load: dict[str, Any] | None,
    target_rate: float,
    events: Sequence[str],
) -> RenderableType:
    recent = list(events)[-EVENT_LOG_LINES:] or ["(no events yet)"]
    return Group(
        Text(f"{title}  t+{elapsed_s:,.0f}s  (Ctrl-C stops the testnet)", style="bold"),
        nodes_table(rows, validators),
        load_line(load, target_rate),
        Panel(Text("\n".join(recent)), title="events", title_align="left"),
    )
