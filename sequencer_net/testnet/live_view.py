"""The live view of `seqnet testnet up`: one row per node, the markets, the L1,
the load, the event log.

Rates come from the nodes' own counters (height and committed_txs in
/v1/status) over a sliding window, so the view shows what the network
committed, not what the load generator sent. The markets panel shows one
node's GET /v1/markets. The L1 panel shows the chain as the testnet's
`L1Observer` reads it and each node's `l1` object in /v1/status (any key of
which may be missing or null). Everything here is a pure function of samples;
`session.py` does the polling.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
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

SIDE_BY_SIDE_WIDTH = 170
"""From this terminal width on, the markets panel sits beside the nodes table;
narrower (80-100 columns), below it."""


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


@dataclass(frozen=True, slots=True)
class MarketRow:
    """One market as the panel shows it (numbers parsed from /v1/markets' strings)."""

    name: str
    oracle: float | None = None
    mark: float | None = None
    last_price: float | None = None
    last_volume: float | None = None
    open_interest: float | None = None
    funding_rate: float | None = None
    liquidations: int = 0
    fresh: bool = True
    paused: bool = False


def _float(value: Any) -> float | None:
    """A decimal string from the API as a float, for display only."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def market_label(market: Mapping[str, Any], names: Mapping[int, str]) -> str:
    """The market's name if the testnet knows it, else "perp 1" or "call 3000"."""
    market_id = market.get("id")
    if isinstance(market_id, int) and market_id in names:
        return names[market_id]
    option = market.get("option")
    if isinstance(option, dict):
        return f"{option.get('type', 'option')} {option.get('strike', '?')}"
    return f"{market.get('kind', 'market')} {market_id}"


def market_rows(document: Mapping[str, Any] | None, names: Mapping[int, str]) -> list[MarketRow]:
    """Rows from a GET /v1/markets answer (none if the node did not answer)."""
    if document is None:
        return []
    rows = []
    for market in document.get("markets") or []:
        if not isinstance(market, dict):
            continue
        rows.append(
            MarketRow(
                name=market_label(market, names),
                oracle=_float(market.get("oracle_price")),
                mark=_float(market.get("mark_price")),
                last_price=_float(market.get("last_clearing_price")),
                last_volume=_float(market.get("last_clearing_volume")),
                open_interest=_float(market.get("open_interest")),
                funding_rate=_float(market.get("funding_rate")),
                liquidations=int(market.get("liquidations") or 0),
                fresh=bool(market.get("oracle_fresh", True)),
                paused=bool(market.get("paused", False)),
            )
        )
    return rows


def _price(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"


def _size(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:,.3g}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.4f}%"


MARKET_COLUMNS = (
    ("market", "left"),
    ("oracle", "right"),
    ("mark", "right"),
    ("last", "right"),
    ("vol", "right"),
    ("OI", "right"),
    ("funding", "right"),
    ("liq", "right"),
)
"""The markets panel's columns (docs/testnet.md explains each); fits 80 columns."""


def markets_table(rows: Sequence[MarketRow]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False)
    for column, justify in MARKET_COLUMNS:
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        name = Text(row.name)
        if row.paused:
            name.append(" paused", style="yellow")
        elif not row.fresh:
            name.append(" stale", style="yellow")
        table.add_row(
            name,
            _price(row.oracle),
            _price(row.mark),
            _price(row.last_price),
            _size(row.last_volume),
            _size(row.open_interest),
            _rate(row.funding_rate),
            str(row.liquidations),
        )
    return table


def markets_panel(rows: Sequence[MarketRow], source: str | None) -> RenderableType:
    """The markets, or a line saying why there are none."""
    if source is None:
        return Text("markets: no node answered /v1/markets", style="dim")
    if not rows:
        return Text(f"markets: none listed ({source})", style="dim")
    title = Text(f"markets ({source}): funding per interval, OI and vol in units", style="bold")
    return Group(title, markets_table(rows))


@dataclass(frozen=True, slots=True)
class L1Row:
    """One node's view of the L1 (the `l1` object of its /v1/status)."""

    name: str
    posted_height: int | None = None
    blocks_behind: int | None = None
    backlog: int | None = None
    gas_per_posting: int | None = None
    postings: int | None = None
    deposits_seen: int | None = None
    forced_seen: int | None = None
    last_error: str | None = None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def l1_row(name: str, status: Mapping[str, Any] | None) -> L1Row | None:
    """The node's L1 row, or None when its status has no `l1` object."""
    l1 = status.get("l1") if status is not None else None
    if not isinstance(l1, Mapping):
        return None
    error = l1.get("last_error")
    return L1Row(
        name=name,
        posted_height=_int_or_none(l1.get("posted_height")),
        blocks_behind=_int_or_none(l1.get("l1_blocks_behind")),
        backlog=_int_or_none(l1.get("backlog")),
        gas_per_posting=_int_or_none(l1.get("gas_per_posting")),
        postings=_int_or_none(l1.get("postings")),
        deposits_seen=_int_or_none(l1.get("deposits_seen")),
        forced_seen=_int_or_none(l1.get("forced_seen")),
        last_error=str(error) if error else None,
    )


L1_COLUMNS = (
    ("node", "left"),
    ("posted", "right"),
    ("behind", "right"),
    ("backlog", "right"),
    ("gas/post", "right"),
    ("posts", "right"),
    ("deposits", "right"),
    ("forced", "right"),
    ("error", "left"),
)
"""The L1 panel's per-node columns (docs/testnet.md explains each); fits 80 columns."""

L1_ERROR_CHARS = 24


def _cell(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def l1_table(rows: Sequence[L1Row]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False)
    for column, justify in L1_COLUMNS:
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            row.name,
            _cell(row.posted_height),
            _cell(row.blocks_behind),
            _cell(row.backlog),
            _cell(row.gas_per_posting),
            _cell(row.postings),
            _cell(row.deposits_seen),
            _cell(row.forced_seen),
            Text(row.last_error[:L1_ERROR_CHARS], style="red") if row.last_error else "-",
        )
    return table


def l1_chain_line(rpc_url: str, chain: Mapping[str, Any] | None) -> Text:
    """What the L1 itself holds (an `L1Snapshot.to_json()`; None before the first poll)."""
    if chain is None:
        return Text(f"L1 {rpc_url}: not read yet", style="dim")
    if chain.get("error"):
        return Text(f"L1 {rpc_url}: cannot read it: {chain['error']}", style="red")

    def number(key: str) -> str:
        value = _int_or_none(chain.get(key))
        return "-" if value is None else f"{value:,}"

    escape = {True: Text("OPEN", style="red"), False: Text("closed"), None: Text("-")}
    # Two lines, each within 80 columns.
    line = Text(
        f"L1 {rpc_url.removeprefix('http://')} block {number('head')}, posted height "
        f"{number('committed_height')} (state {number('committed_state_height')}) "
        f"at block {number('last_post_block')}\n  Bridge deposits {number('deposits')}, "
        f"withdrawals {number('withdrawals')}; Inbox forced {number('forced')}; escape "
    )
    line.append_text(escape.get(chain.get("escape_open"), Text("-")))
    return line


def l1_panel(
    rpc_url: str, chain: Mapping[str, Any] | None, rows: Sequence[L1Row | None]
) -> RenderableType:
    """The chain's line and, when any node reports an `l1` status, their table."""
    line = l1_chain_line(rpc_url, chain)
    reported = [row for row in rows if row is not None]
    if not reported:
        return Group(line, Text("nodes: no l1 status reported", style="dim"))
    return Group(line, l1_table(reported))


def render_view(
    title: str,
    elapsed_s: float,
    rows: Sequence[NodeRow],
    validators: int,
    load: dict[str, Any] | None,
    target_rate: float,
    events: Sequence[str],
    markets: RenderableType | None = None,
    width: int = 80,
    l1: RenderableType | None = None,
) -> RenderableType:
    """The whole view; `markets` (a `markets_panel`) goes beside the nodes table
    from SIDE_BY_SIDE_WIDTH columns on, below it otherwise; `l1` (an `l1_panel`)
    below both."""
    recent = list(events)[-EVENT_LOG_LINES:] or ["(no events yet)"]
    nodes: RenderableType = nodes_table(rows, validators)
    if markets is not None and width >= SIDE_BY_SIDE_WIDTH:
        grid = Table.grid(padding=(0, 4))
        grid.add_row(nodes, markets)
        nodes = grid
    elif markets is not None:
        nodes = Group(nodes, Text(""), markets)
    if l1 is not None:
        nodes = Group(nodes, Text(""), l1)
    return Group(
        Text(f"{title}  t+{elapsed_s:,.0f}s  (Ctrl-C stops the testnet)", style="bold"),
        nodes,
        load_line(load, target_rate),
        Panel(Text("\n".join(recent)), title="events", title_align="left"),
    )
