"""`seqnet bench auction`: output shape and values (never timings)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from sequencer_net.cli.bench import (
    BENCH_LOT_SIZE,
    BENCH_REFERENCE_PRICE,
    BENCH_TICK_SIZE,
    build_random_orders,
)
from sequencer_net.cli.main import cli
from sequencer_net.execution.auction import clear_batch_auction


def run_json(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(cli, ["bench", "auction", *args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert isinstance(report, dict)
    return report


def test_json_report_matches_a_direct_clearing() -> None:
    report = run_json("--orders", "300", "--seed", "7", "--repeat", "2")
    expected = clear_batch_auction(
        build_random_orders(300, 7),
        tick_size=BENCH_TICK_SIZE,
        lot_size=BENCH_LOT_SIZE,
        reference_price=BENCH_REFERENCE_PRICE,
    )
    assert expected.price is not None and expected.volume > 0
    assert report["orders"] == 300
    assert report["seed"] == 7
    assert report["repeat"] == 2
    assert report["price"] == expected.price
    assert report["volume"] == expected.volume
    assert report["fills"] == len(expected.fills)
    assert isinstance(report["clear_ms"], float) and report["clear_ms"] >= 0


def test_same_seed_same_batch_other_seed_other_batch() -> None:
    first = run_json("--orders", "200", "--seed", "11", "--repeat", "1")
    again = run_json("--orders", "200", "--seed", "11", "--repeat", "1")
    other = run_json("--orders", "200", "--seed", "12", "--repeat", "1")
    keys = ("price", "volume", "fills")
    assert [first[k] for k in keys] == [again[k] for k in keys]
    assert [first[k] for k in keys] != [other[k] for k in keys]
    assert build_random_orders(50, 11) == build_random_orders(50, 11)


def test_text_report_prints_the_seed_and_the_measurement() -> None:
    result = CliRunner().invoke(cli, ["bench", "auction", "--orders", "100", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "seed:      3" in result.output
    assert "orders:    100" in result.output
    assert "clear_ms:" in result.output and "best of 5 runs" in result.output


def test_seed_is_chosen_and_reported_when_omitted() -> None:
    report = run_json("--orders", "10", "--repeat", "1")
    assert isinstance(report["seed"], int)
    replay = run_json("--orders", "10", "--repeat", "1", "--seed", str(report["seed"]))
    assert (replay["price"], replay["volume"]) == (report["price"], report["volume"])


def test_zero_orders_trade_nothing() -> None:
    report = run_json("--orders", "0", "--seed", "1", "--repeat", "1")
    assert (report["orders"], report["price"], report["volume"], report["fills"]) == (0, None, 0, 0)


def test_bench_block_json_reports_what_it_executed() -> None:
    result = CliRunner().invoke(
        cli, ["bench", "block", "--orders", "40", "--markets", "2", "--seed", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["benchmark"] == "block"
    assert (report["orders"], report["markets"], report["seed"]) == (40, 2, 3)
    assert report["accepted"] == 40
    assert report["auctions_cleared"] <= 2
    assert report["execute_ms"] > 0 and len(report["state_root"]) == 64
    again = json.loads(
        CliRunner()
        .invoke(
            cli, ["bench", "block", "--orders", "40", "--markets", "2", "--seed", "3", "--json"]
        )
        .output
    )
    assert again["state_root"] == report["state_root"]  # deterministic execution


def test_bench_block_dex_mix_cancels_reports_and_liquidates() -> None:
    args = ["bench", "block", "--mix", "dex", "--orders", "200", "--markets", "2", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["mix"], report["transactions"], report["markets"]) == ("dex", 200, 2)
    assert report["reports_accepted"] == 4  # every validator's report
    assert report["cancels_accepted"] == 30  # 15% of the block, all of resting orders
    assert report["orders_accepted"] > 0 and report["liquidations"] >= 1
    # Two 4% steps down from 2,000 on the tick grid: the median of the reports.
    assert report["index_after"] == "1843.2"
    # The next block: the liquidation orders trade, a third 4% step down.
    assert report["liquidation_block_liquidation_fills"] >= 1
    assert report["liquidation_block_execute_ms"] > 0
    assert report["liquidation_block_index_after"] == "1769.47"
    again = json.loads(CliRunner().invoke(cli, args).output)
    assert again["state_root"] == report["state_root"]


def test_bench_blocks_times_each_small_block_over_the_open_state() -> None:
    args = ["bench", "blocks", "--open-accounts", "40", "--resting-orders", "30"]
    args += ["--blocks", "4", "--txs", "20", "--markets", "2", "--price-every", "2", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["benchmark"] == "blocks"
    # Every trader holds a position; the makers too (they took the other side).
    assert report["open_subaccounts"] == 40 + 2
    assert report["resting_orders"] >= 30
    assert (report["blocks"], report["txs_per_block"], report["price_every"]) == (4, 20, 2)
    assert 0 < report["block_ms_median"] <= report["block_ms_max"]
    assert report["fills"] > 0
    again = json.loads(CliRunner().invoke(cli, args).output)
    assert again["state_root"] == report["state_root"]


def test_bench_blocks_option_case_lists_options_and_shares_seconds() -> None:
    args = ["bench", "blocks", "--open-accounts", "30", "--blocks", "4", "--txs", "2"]
    args += ["--markets", "2", "--options", "2", "--option-holders", "20"]
    args += ["--blocks-per-second", "2", "--price-every", "2", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["option_markets"], report["option_holders"]) == (2, 20)
    assert report["blocks_per_second"] == 2
    # Traders, the two perpetual makers and the two option makers.
    assert report["open_subaccounts"] == 30 + 2 + 2
    too_often = ["bench", "blocks", "--blocks-per-second", "5", "--price-every", "2"]
    refused = CliRunner().invoke(cli, too_often)
    assert refused.exit_code != 0 and "--price-every" in refused.output


def test_bench_blocks_profile_splits_the_time_by_phase() -> None:
    args = ["bench", "blocks", "--open-accounts", "20", "--blocks", "2", "--txs", "10"]
    result = CliRunner().invoke(cli, [*args, "--markets", "1", "--profile", "--json"])
    assert result.exit_code == 0, result.output
    phases = json.loads(result.output)["phases_ms"]
    assert phases["run_auctions"] > 0 and phases["liquidate_undermargined"] > 0
    assert phases["commit"] > 0


def test_bench_block_rejects_nonsense() -> None:
    result = CliRunner().invoke(cli, ["bench", "block", "--orders", "0"])
    assert result.exit_code != 0
    assert "at least 1" in result.output


def test_bench_tdh2_reports_every_operation_for_each_size() -> None:
    args = ["bench", "tdh2", "-n", "1", "-n", "4", "--block-size", "3", "--repeat", "1", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["n"], r["t"], r["block_size"]) for r in reports] == [(1, 1, 3), (4, 2, 3)]
    for report in reports:
        timed = {name for name, value in report.items() if name.endswith("_us")}
        assert {"encrypt_us", "aggregated_verify_per_ct_us", "combine_us"} <= timed
        assert all(report[name] > 0 for name in timed)
    text = CliRunner().invoke(cli, ["bench", "tdh2", "-n", "4", "--repeat", "1"]).output
    assert "n=4 t=2" in text and "verify_share:" in text
