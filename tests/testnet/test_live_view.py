"""The live view's pure parts: rates from status samples, node states, rendering."""

from __future__ import annotations

from rich.console import Console

from sequencer_net.testnet.live_view import (
    NodeRow,
    RateWindow,
    StatusSample,
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
