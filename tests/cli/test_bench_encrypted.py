"""`seqnet bench encrypted`: the comparison of plain and encrypted runs (pure parts)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sequencer_net.cli.bench_encrypted import (
    nodes_cpu_s,
    post_commit_breakdown,
    run_order,
    run_row,
    summarize,
    summarize_rates,
)


def report(tps: float, p50: float, p99: float, unconfirmed: int = 0) -> dict[str, object]:
    return {
        "sent": 4000,
        "accepted": 4000,
        "duration_s": 20.0,
        "elapsed_s": 21.0,
        "achieved_tps": tps,
        "latency_ms": {"p50": p50, "p99": p99, "samples": 400, "unconfirmed": unconfirmed},
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
        "sent": 4000,
        "accepted": 4000,
        "errors": {},
        "duration_s": 20.0,
        "elapsed_s": 21.0,
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
    assert summary["tps_ratio"] == round(140 / 170, 3)
    assert summary["added_p50_ms"] == 100.0
    assert summary["added_p99_ms"] == 500.0


def test_summary_of_one_kind_only_has_no_ratio() -> None:
    summary = summarize([run_row("plain", 1, report(190.0, 400.0, 1800.0))])
    assert "tps_ratio" not in summary and set(summary["median"]) == {"plain"}


def test_a_run_keeps_up_when_accepted_on_time_and_no_queue_grows() -> None:
    assert run_row("plain", 1, report(42.5, 300.0, 3000.0), rate=50.0)["sustained"]
    # Intake answered late: the load could not submit at the rate.
    assert not run_row("plain", 1, report(42.4, 300.0, 900.0), rate=50.0)["sustained"]
    # A queue grew: the slowest transactions waited seconds.
    assert not run_row("plain", 1, report(49.0, 300.0, 3001.0), rate=50.0)["sustained"]
    # A transaction never seen committed.
    assert not run_row("plain", 1, report(49.0, 300.0, 900.0, 1), rate=50.0)["sustained"]
    # One refusal in a hundred is not a queue; more are.
    one_refused = {**report(49.0, 300.0, 900.0), "accepted": 3960}
    assert run_row("plain", 1, one_refused, rate=50.0)["sustained"]
    refused = {**report(49.0, 300.0, 900.0), "accepted": 3959}
    assert not run_row("plain", 1, refused, rate=50.0)["sustained"]


def test_across_rates_the_added_latency_is_taken_where_both_kinds_keep_up() -> None:
    rows = []
    for round_ in (1, 2, 3):
        rows += [
            run_row("plain", round_, report(48.0, 300.0, 700.0), rate=50.0),
            run_row("encrypted", round_, report(48.5, 380.0, 900.0), rate=50.0),
            run_row("plain", round_, report(95.0, 350.0, 800.0), rate=100.0),
            # Encrypted falls behind at 100 in two rounds of three.
            run_row("encrypted", round_, report(70.0, 2000.0, 5000.0), rate=100.0),
        ]
    rows[-1] = run_row("encrypted", 3, report(96.0, 500.0, 1000.0), rate=100.0)
    summary = summarize_rates(rows, [50.0, 100.0])
    assert summary["by_rate"]["100"]["sustained"] == {"plain": True, "encrypted": False}
    assert summary["max_sustained_tps"] == {"plain": 100.0, "encrypted": 50.0}
    assert summary["sustained_rate_ratio"] == 0.5
    assert summary["at_rate"] == 50.0
    assert summary["added_p50_ms"] == 80.0
    assert summary["added_p99_ms"] == 200.0
    assert summary["tps_ratio"] == round(48.5 / 48, 3)


def test_no_rate_kept_up_by_both_gives_no_added_latency() -> None:
    rows = [
        run_row("plain", 1, report(60.0, 3000.0, 7000.0), rate=200.0),
        run_row("encrypted", 1, report(50.0, 4000.0, 9000.0), rate=200.0),
    ]
    summary = summarize_rates(rows, [200.0])
    assert "at_rate" not in summary and "added_p50_ms" not in summary
    assert summary["max_sustained_tps"] == {"plain": None, "encrypted": None}
    assert summary["by_rate"]["200"]["added_p50_ms"] == 1000.0


NODE_LOG = """\
x INFO node0 seqnet.commit event=committed height=7 hash=abcdef012345 txs=0 state_root=00
x INFO node0 seqnet.commit event=committed height=8 hash=abcdef012345 txs=12 state_root=00
x INFO node0 seqnet.commit event=committed height=9 hash=abcdef012345 txs=3 state_root=00
x node0 event=shares_round height=7 ciphertexts=0 own_ms=5 ready_ms=9 opened_ms=9
x node0 event=shares_round height=8 ciphertexts=12 own_ms=20 ready_ms=60 opened_ms=61 \
first_peer_ms=-5 completed_ms=50
x node0 event=shares_round height=9 ciphertexts=3 own_ms=10 ready_ms=40 opened_ms=40 \
first_peer_ms=none completed_ms=10
x node0 seqnet.certifying event=batch_certified digest=abcdef012345 round=4 certify_ms=31
x node0 seqnet.payload event=build_waited_for_execution height=9 target=7 executed=7 wait_ms=35
x INFO node0 seqnet.decryption event=shares_asked height=9 peers=[1, 2]
x INFO node0 seqnet.commit event=block_opened height=8 envelopes=12 wait_ms=30
x INFO node0 seqnet.commit event=block_opened height=9 envelopes=3 wait_ms=50
x INFO node0 seqnet.commit event=executed height=8 apply_ms=40 since_commit_ms=90
x INFO node0 seqnet.commit event=executed height=9 apply_ms=30 since_commit_ms=110
"""


def test_breakdown_reads_blocks_with_transactions_from_every_node_log() -> None:
    breakdown = post_commit_breakdown([NODE_LOG, NODE_LOG.replace("node0", "node1")])
    assert breakdown == {
        "blocks": 4,
        "own_ms": 15.0,
        "first_peer_ms": -5.0,
        "completed_ms": 30.0,
        "ready_ms": 50.0,
        "verify_wait_ms": 20.0,
        "opening_wait_ms": 40.0,
        "commit_to_executed_ms": 100.0,
        "certify_ms": 31.0,
        "shares_asked": 2,
        "build_waits": 2,
        "build_wait_ms": 70,
    }


def test_breakdown_of_no_logs_is_empty() -> None:
    assert post_commit_breakdown([])["ready_ms"] is None


def test_cpu_of_a_testnet_that_is_not_there_is_unknown(tmp_path: Path) -> None:
    assert nodes_cpu_s(tmp_path) is None


def test_cpu_of_running_processes_is_read_from_proc(tmp_path: Path) -> None:
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("no /proc")
    manifest = {"nodes": [{"pid": os.getpid()}, {"pid": os.getpid()}]}
    (tmp_path / "testnet.json").write_text(json.dumps(manifest))
    cpu = nodes_cpu_s(tmp_path)
    assert cpu is not None and cpu >= 0.0


def test_the_command_prints_each_rate_and_where_both_kinds_keep_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from sequencer_net.cli import bench_encrypted
    from sequencer_net.cli.bench import bench

    rows = [
        run_row("plain", 1, report(48.0, 300.0, 700.0), rate=50.0),
        run_row("encrypted", 1, report(48.5, 380.0, 900.0), rate=50.0),
        run_row("plain", 1, report(95.0, 350.0, 800.0), rate=100.0),
        run_row("encrypted", 1, report(70.0, 2000.0, 5000.0), rate=100.0),
    ]
    asked: list[list[float]] = []

    def fake(*, rates: list[float], **_: object) -> dict[str, object]:
        asked.append(list(rates))
        return {"runs": rows, **summarize_rates(rows, rates)}

    monkeypatch.setattr(bench_encrypted, "bench_encrypted", fake)
    result = CliRunner().invoke(bench, ["encrypted", "--rate", "100", "--rate", "50"])
    assert result.exit_code == 0, result.output
    assert asked == [[50.0, 100.0]]
    assert "100 tx/s median encrypted committed 70.0 tx/s (not kept up)" in result.output
    assert "at 50 tx/s (highest rate both kept up with): p50 added +80 ms" in result.output
    assert "highest rate kept up with: plain 100.0, encrypted 50.0 (ratio 50%)" in result.output


def test_rounds_alternate_which_kind_runs_first() -> None:
    assert run_order(1) == ("plain", "encrypted")
    assert run_order(2) == ("encrypted", "plain")
    assert run_order(3) == run_order(1)
