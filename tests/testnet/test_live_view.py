"""The live view's pure parts: rates from status samples, node states, rendering."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from rich.console import Console

from sequencer_net.testnet.live_view import (
    SIDE_BY_SIDE_WIDTH,
    L1Row,
    MarketRow,
    NodeRow,
    RateWindow,
    StatusSample,
    l1_panel,
    l1_row,
    market_rows,
    markets_panel,
    node_row,
    node_state,
    render_view,
)


def test_rates_over_the_window() -> None:
    window = RateWindow(window_s=5.0)
    assert window.rates() == (None, None)
    for t in range(11):  # 2 blocks/s, 100 tx/s
        window.add(StatusSample(at_s=float(t), height=2 * t, committed_txs=100 * t))
    assert window.rates() == (2.0, 100.0)
    window.add(StatusSample(at_s=11.0, height=0, committed_txs=0))  # data wiped
    assert window.rates() == (None, None)


def test_node_states() -> None:
    assert node_state(running=False, paused=False, connected=True, answered=False) == "down"
    assert node_state(running=True, paused=True, connected=True, answered=False) == "paused"
    assert node_state(running=True, paused=False, connected=True, answered=False) == "silent"
    assert node_state(running=True, paused=False, connected=False, answered=True) == "cut"
    assert node_state(running=True, paused=False, connected=True, answered=True) == "up"


def test_row_and_render() -> None:
    window = RateWindow()
    window.add(StatusSample(0.0, 10, 0))
    window.add(StatusSample(1.0, 12, 50))
    status = {
        "height": 12,
        "peers": [1, 2, 3],
        "state_root": "0xabcdef0123456789",
        "commit_latency_ms": {"p50": 80.0, "p99": 300.0},
    }
    row = node_row("node0", status, window, running=True, paused=False, connected=True, pid=42)
    assert row == NodeRow("node0", "up", 12, 2.0, 50.0, 80.0, 300.0, 3, "0xabcdef0123456789", 42)
    down = node_row("node1", None, RateWindow(), running=False, paused=False, connected=True, pid=7)
    assert down.state == "down" and down.height is None and down.pid is None
    console = Console(width=80, record=True)
    console.print(render_view("t", 3.0, [row, down], 4, None, 0.0, ["[kill] kill -9 node1"]))
    text = console.export_text()
    assert "node0" in text and "3/3" in text and "0xabcdef" in text
    assert "[kill] kill -9 node1" in text  # events are not read as markup
    assert "load: off" in text


# --- the markets panel ---------------------------------------------------------------

MARKETS = {
    "height": 55,
    "markets": [
        {
            "id": 1, "kind": "perp", "option": None, "paused": False, "oracle_fresh": True,
            "oracle_price": "59821.175127", "mark_price": "59909",
            "last_clearing_price": "59909", "last_clearing_volume": "0.132",
            "open_interest": "7.956", "funding_rate": "0.000307147335912757", "liquidations": 3,
        },
        {
            "id": 3, "kind": "option", "option": {"type": "call", "strike": "3000"},
            "paused": False, "oracle_fresh": False, "oracle_price": "2992.288147",
            "mark_price": "207.235381902267055527", "last_clearing_price": None,
            "last_clearing_volume": "0", "open_interest": "112.2", "funding_rate": None,
            "liquidations": 0,
        },
        {"id": 9, "kind": "perp", "option": None, "paused": True, "oracle_price": None},
    ],
}  # fmt: skip


def test_market_rows_from_a_markets_answer() -> None:
    rows = market_rows(MARKETS, {1: "BTC-PERP"})
    assert [r.name for r in rows] == ["BTC-PERP", "call 3000", "perp 9"]
    btc, call, unknown = rows
    assert btc == MarketRow(
        "BTC-PERP", 59821.175127, 59909.0, 59909.0, 0.132, 7.956, 0.000307147335912757, 3
    )
    assert call.last_price is None and call.funding_rate is None and not call.fresh
    assert unknown.paused and unknown.oracle is None and unknown.liquidations == 0
    assert market_rows(None, {}) == []


def _render(width: int, markets: dict[str, object] | None) -> str:
    console = Console(width=width, record=True)
    row = NodeRow("node0", "up", 12, 2.0, 50.0, 80.0, 300.0, 3, "0xabcdef0123456789", 42)
    panel = markets_panel(market_rows(markets, {1: "BTC-PERP"}), "node2" if markets else None)
    console.print(render_view("t", 3.0, [row], 4, None, 0.0, [], markets=panel, width=width))
    return console.export_text()


@pytest.mark.parametrize("width", [80, 100])
def test_the_markets_panel_fits_a_narrow_terminal_below_the_nodes(width: int) -> None:
    text = _render(width, MARKETS)
    assert "markets (node2)" in text
    lines = text.splitlines()
    btc = next(line for line in lines if "BTC-PERP" in line)
    # Nothing cropped: every number is there in full, on one line.
    for shown in ("59,821", "59,909", "0.132", "7.96", "+0.0307%", "3"):
        assert shown in btc, (shown, btc)
    assert "…" not in text
    call = next(line for line in lines if "call 3000" in line)
    assert "stale" in call and "207.24" in call and "2,992" in call
    assert "paused" in next(line for line in lines if "perp 9" in line)
    nodes_at = next(i for i, line in enumerate(lines) if "node0" in line)
    assert nodes_at < lines.index(btc)  # stacked: the nodes first


def test_the_markets_panel_sits_beside_the_nodes_when_the_terminal_is_wide() -> None:
    text = _render(SIDE_BY_SIDE_WIDTH, MARKETS)
    # The nodes table's header and the panel's title share the first line.
    assert any("height" in line and "markets (node2)" in line for line in text.splitlines())


def test_no_markets_answer_is_said_not_hidden() -> None:
    assert "no node answered /v1/markets" in _render(80, None)


def test_l1_rows_cope_with_missing_null_and_wrong_keys() -> None:
    assert l1_row("node0", None) is None  # the node did not answer
    assert l1_row("node0", {"height": 3}) is None  # no poster in this node
    assert l1_row("node0", {"l1": None}) is None
    assert l1_row("node0", {"l1": {}}) == L1Row(name="node0")
    row = l1_row(
        "node1",
        {
            "l1": {
                "posted_height": 40,
                "l1_blocks_behind": 2,
                "gas_per_posting": 63_920,
                "postings": True,  # not a count: shown as unknown
                "deposits_seen": "3",  # not an integer: shown as unknown
                "forced_seen": None,
                "last_error": "nonce too low",
            }
        },
    )
    assert row == L1Row(
        name="node1",
        posted_height=40,
        blocks_behind=2,
        gas_per_posting=63_920,
        last_error="nonce too low",
    )


def _render_l1(chain: Mapping[str, object] | None, rows: list[L1Row | None]) -> str:
    console = Console(width=80, record=True)
    console.print(l1_panel("http://127.0.0.1:26790", chain, rows))
    return console.export_text()


def test_l1_panel_shows_the_chain_and_the_nodes_that_report() -> None:
    chain = {
        "head": 1234,
        "committed_height": 560,
        "committed_state_height": 558,
        "last_post_block": 1230,
        "deposits": 7,
        "withdrawals": 2,
        "forced": 1,
        "escape_open": False,
        "error": None,
    }
    text = _render_l1(chain, [L1Row("node0", posted_height=560, gas_per_posting=63_920), None])
    assert "block 1,234, posted height 560 (state 558) at block 1,230" in text
    assert "Bridge deposits 7, withdrawals 2; Inbox forced 1; escape closed" in text
    assert "node0" in text and "63,920" in text and "node1" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "nodes: no l1 status reported" in _render_l1({"head": 5}, [None, None])
    assert "not read yet" in _render_l1(None, [])
    assert "cannot read it: ConnectionError" in _render_l1({"error": "ConnectionError"}, [])
