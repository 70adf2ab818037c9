"""`seqnet bench crash`: a small crash run reports conserved money, no
unassigned deficit and an identical replay (never timings)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from sequencer_net.cli import bench_crash
from sequencer_net.cli.main import cli


def crash_json(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["bench", "crash", *args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert isinstance(report, dict)
    return report


def test_a_small_crash_assigns_every_loss_and_replays_identically() -> None:
    report = crash_json("--accounts", "100", "--blocks", "10", "--seed", "3")
    assert report["benchmark"] == "crash" and report["accounts"] == 100
    assert report["unassigned_deficit"] == "0"
    assert report["conserved"] is True and report["replay_identical"] is True
    for name in ("liquidations", "deleveraged_notional", "insurance_fund"):
        assert name in report
    # A 30% fall of 2..9x positions liquidates many of them, through every path.
    assert isinstance(report["liquidations"], int) and report["liquidations"] > 10
    assert isinstance(report["liquidation_fills"], int) and report["liquidation_fills"] > 0
    assert report["deleveraged_notional"] != "0"


def test_the_same_seed_gives_the_same_final_state() -> None:
    first = crash_json("--accounts", "30", "--blocks", "4", "--seed", "9")
    second = crash_json("--accounts", "30", "--blocks", "4", "--seed", "9")
    assert first["final_state_root"] == second["final_state_root"]


def test_every_price_goes_through_the_one_oracle_helper(monkeypatch: object) -> None:
    calls: list[int] = []
    original = bench_crash.oracle_transaction

    def counting(*args: int | bytes) -> object:
        calls.append(1)
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(bench_crash, "oracle_transaction", counting)  # type: ignore[attr-defined]
    bench_crash.simulate_crash(bench_crash.CrashOptions(accounts=10, blocks=2))
    # Two runs (the replay too) of 1 + 1 + 2 + 3 blocks, one report per validator each.
    blocks = 1 + 1 + 2 + bench_crash.SETTLE_BLOCKS
    assert len(calls) == 2 * blocks * len(bench_crash.REPORTERS)


def test_a_drop_outside_zero_to_one_is_refused() -> None:
    result = CliRunner().invoke(cli, ["bench", "crash", "--drop", "1.5"])
    assert result.exit_code == 2 and "between 0 and 1" in result.output
