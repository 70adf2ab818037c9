"""`seqnet sim` and the top-level CLI: output shape, replay line, exit status."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from sequencer_net import __version__
from sequencer_net.cli.main import cli


def test_sim_json_summary_has_the_documented_keys() -> None:
    result = CliRunner().invoke(cli, ["sim", "--seeds", "3", "--jobs", "1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    for key in (
        "seeds",
        "violations",
        "committed_blocks",
        "good_case_commit_delays",
        "max_recovery_timeouts",
    ):
        assert key in summary
    assert summary["seeds"] == 3 and summary["violations"] == 0
    assert summary["committed_blocks"] > 0
    assert summary["good_case_commit_delays"] == 3


def test_sim_epochs_reports_each_epoch_and_when_it_ended() -> None:
    args = ["sim", "--epochs", "--seeds", "2", "--jobs", "1", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["seeds"] == 2 and summary["violations"] == 0
    epochs = summary["epochs"]
    assert [e["first_height"] for e in epochs] == [1, 11, 21, 31]
    assert [len(e["validators"]) for e in epochs] == [4, 5, 4, 5]
    assert [e["ended_seeds"] for e in epochs] == [2, 2, 2, 0]
    assert summary["min_final_height"] > 31


def test_sim_single_seed_prints_its_outcome() -> None:
    result = CliRunner().invoke(cli, ["sim", "--seed", "5", "-n", "4", "-f", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok seed 5 [")
    assert "seeds 1  failed 0  violations 0" in result.output


def test_sim_failure_prints_replay_and_exits_nonzero() -> None:
    # With more Byzantine validators than the protocol tolerates (f = 2 of n = 4),
    # equivocating leaders break agreement on some seed: the CLI must say so.
    result = CliRunner().invoke(
        cli,
        [
            "sim",
            "-n",
            "4",
            "-f",
            "2",
            "--seeds",
            "12",
            "--jobs",
            "1",
            "--behaviour",
            "equivocator",
            "--behaviour",
            "double-voter",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "FAIL seed" in result.output
    assert "replay: seqnet sim --validators 4 --byzantine 2 --seed" in result.output


def test_sim_rejects_bad_arguments() -> None:
    result = CliRunner().invoke(cli, ["sim", "-n", "4", "-f", "4"])
    assert result.exit_code == 2
    assert "must be in [0, validators)" in result.output


def test_version_and_help_are_fast_and_lazy() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from sequencer_net.cli.main import main; "
            "sys.argv=['seqnet','--help']\n"
            "try:\n main()\nexcept SystemExit: pass\n"
            "heavy = ('libp2p', 'web3', 'consensus.core')\n"
            "print('LOADED', [m for m in heavy if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "sim" in out and "price" in out and "bench" in out
    assert "LOADED []" in out
    result = CliRunner().invoke(cli, ["--version"])
    assert __version__ in result.output
