"""`seqnet bench l1-lag`'s reading of node logs: each height's lag is the
landing of the first posting that covers it minus its earliest commit."""

from __future__ import annotations

from pathlib import Path

from sequencer_net.testnet.bench.l1_lag import measure_l1_lag


def _line(stamp: str, node: str, text: str) -> str:
    return f"2026-12-02 10:00:{stamp} INFO {node} {text}\n"


def _landed(stamp: str, node: str, height: int, gas: int, l1_block: int) -> str:
    text = f"event=posting_landed height={height} gas={gas} l1_block={l1_block}"
    return _line(stamp, node, "seqnet.l1.poster " + text)


def test_lags_per_height_from_two_nodes_logs(tmp_path: Path) -> None:
    a = tmp_path / "a.log"
    b = tmp_path / "b.log"
    a.write_text(
        _line("00,000", "node0", "seqnet.commit event=committed height=1 hash=aa txs=1")
        + _line("01,000", "node0", "seqnet.commit event=committed height=2 hash=bb txs=1")
        + _landed("03,000", "node0", 2, 64000, 7)
        + _line("05,000", "node0", "seqnet.commit event=committed height=3 hash=cc txs=1")
        + "a line of something else\n"
    )  # fmt: skip
    b.write_text(
        _line("00,500", "node1", "seqnet.commit event=committed height=2 hash=bb txs=1")
        + _line("04,000", "node1", "seqnet.commit event=committed height=3 hash=cc txs=1")
        + _landed("06,500", "node1", 3, 63900, 10)
    )  # fmt: skip
    lag = measure_l1_lag([a, b])
    assert (lag.postings, lag.heights) == (2, 3)
    # height 1: 3.0 s; height 2: committed first at 00.5 (node1) -> 2.5 s; height 3: 2.5 s
    assert sorted(lag.lags_s) == [2.5, 2.5, 3.0]
    assert sorted(lag.gas) == [63_900, 64_000]
    assert lag.percentile(0.5) == 2.5
