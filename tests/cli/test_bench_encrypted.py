"""`seqnet bench encrypted`: the comparison of plain and encrypted runs (pure parts)."""

from __future__ import annotations

from sequencer_net.cli.bench_encrypted import run_row, summarize


def report(tps: float, p50: float, p99: float) -> dict[str, object]:
    return {
        "accepted": 4000,
        "achieved_tps": tps,
        "latency_ms": {"p50": p50, "p99": p99, "samples": 400, "unconfirmed": 0},
    }


def test_summary_compares_the_medians_of_each_kind() -> None:
    rows = [
        run_row("plain", 1, report(190.0, 400.0, 1800.0)),
        run_row("encrypted", 1, report(120.0, 900.0, 3000.0)),
        run_row("plain", 2, report(150.0, 800.0, 2700.0)),
        run_row("encrypted", 2, report(150.0, 700.0, 2000.0)),
        run_row("plain", 3, report(170.0, 600.0, 2000.0)),
        run_row("encrypted", 3, report(140.0, 650.0, 2500.0)),
    ]
    assert rows[1] == {
        "round": 1,
        "mode": "encrypted",
        "accepted": 4000,
        "committed_tps": 120.0,
        "p50_ms": 900.0,
        "p99_ms": 3000.0,
        "unconfirmed": 0,
    }
    summary = summarize(rows)
    assert summary["median"]["plain"] == {
        "committed_tps": 170.0,
        "p50_ms": 600.0,
        "p99_ms": 2000.0,
    }
    assert summary["median"]["encrypted"]["committed_tps"] == 140.0
    assert summary["throughput_ratio"] == round(140 / 170, 3)
    assert summary["p50_added_ms"] == 100.0


def test_summary_of_one_kind_only_has_no_ratio() -> None:
    summary = summarize([run_row("plain", 1, report(190.0, 400.0, 1800.0))])
    assert "throughput_ratio" not in summary and set(summary["median"]) == {"plain"}
