"""A steady Commitments.post stays within its gas targets (gas is deterministic),
and the gas of an evidence submission is reported next to it."""

from __future__ import annotations

from sequencer_net.l1.gas import POST_GAS_TARGETS, measure, measure_post_gas
from tests.l1.l1_chain import requires_anvil


@requires_anvil
def test_post_gas_is_within_targets() -> None:
    for validators, target in POST_GAS_TARGETS.items():
        row = measure(validators)
        assert row.gas <= target, validators
        # two ecrecovers, the offence, the dispute and the freeze: above a post's
        # fixed part, below what a block allows many times over
        assert 60_000 < row.evidence_gas < 200_000, validators
        # the same, plus the set's calldata, its hash and a binary search
        assert row.evidence_gas < row.epoch_evidence_gas < 250_000, validators
        # a later epoch scheduled: one more storage read (the next epoch's first height)
        assert row.gas < row.scheduled_post_gas <= row.gas + 3_000, validators


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
    again = measure(4)
    assert (row["evidence_gas"], row["epoch_evidence_gas"], row["scheduled_post_gas"]) == (
        again.evidence_gas,
        again.epoch_evidence_gas,
        again.scheduled_post_gas,
    )
