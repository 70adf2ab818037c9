"""A steady Commitments.post stays within its gas targets (gas is deterministic)."""

from __future__ import annotations

from sequencer_net.l1.gas import POST_GAS_TARGETS, measure_post_gas
from tests.l1.l1_chain import requires_anvil


@requires_anvil
def test_post_gas_is_within_targets() -> None:
    for validators, target in POST_GAS_TARGETS.items():
        assert measure_post_gas(validators) <= target, validators


@requires_anvil
def test_post_gas_is_deterministic() -> None:
    assert measure_post_gas(4) == measure_post_gas(4)


@requires_anvil
def test_bench_l1_gas_cli_reports_rows() -> None:
    import json

    from click.testing import CliRunner

    from sequencer_net.cli.main import cli

    result = CliRunner().invoke(cli, ["bench", "l1-gas", "-n", "4", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["benchmark"] == "l1-gas"
    [row] = report["rows"]
    assert (row["validators"], row["signers"], row["target"]) == (4, 3, 65_000)
    assert row["post_gas"] == measure_post_gas(4)
