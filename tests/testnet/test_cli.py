"""`seqnet testnet up --detach | status | down` and `seqnet load` against fake nodes."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from click.testing import CliRunner

from sequencer_net.cli.main import cli
from sequencer_net.testnet.network import Testnet

from .conftest import FAKE_NODE_COMMAND, free_base_port

NODE_COMMAND = shlex.join(FAKE_NODE_COMMAND)


def _up(directory: Path, *extra: str) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "testnet", "up", "--detach", "-n", "3", "--dir", str(directory),
            "--base-port", str(free_base_port(3)), "--node-command", NODE_COMMAND,
            "--timeout", "20", "--no-l1", *extra,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_up_status_load_down(testnet_dir: Path) -> None:
    _up(testnet_dir, "--json")
    runner = CliRunner()

    status = runner.invoke(cli, ["testnet", "status", "--dir", str(testnet_dir), "--json"])
    assert status.exit_code == 0, status.output
    report = json.loads(status.output)
    assert list(report) == ["nodes", "l1"] and report["l1"] is None  # started with --no-l1
    assert [n["name"] for n in report["nodes"]] == ["node0", "node1", "node2"]
    for node in report["nodes"]:
        assert {"name", "height", "last_hash", "state_root", "up", "pid"} <= set(node)
        assert isinstance(node["height"], int) and node["height"] > 0
        assert node["last_hash"].startswith("0x") and node["up"] is True

    load = runner.invoke(
        cli,
        ["load", "--dir", str(testnet_dir), "--rate", "100", "--duration", "1", "--json"],
    )
    assert load.exit_code == 0, load.output
    outcome = json.loads(load.output.splitlines()[-1])
    assert outcome["sent"] == 100 and outcome["accepted"] == 100
    assert outcome["seed"] == 0 and outcome["accounts"] == 100
    assert outcome["mix"] == "mixed"  # the testnet's default: trader traffic and blobs
    assert set(outcome["latency_ms"]) == {"p50", "p99", "samples", "unconfirmed"}
    # A second run continues the accounts' (and the market operator's) nonces
    # instead of restarting at 0: every accepted transaction used one.
    saved = json.loads((testnet_dir / "load-nonces.json").read_text())
    assert len(saved["0"]) == 100 and len(saved["0/operator"]) == 1
    assert sum(saved["0"]) + saved["0/operator"][0] == 100

    down = runner.invoke(cli, ["testnet", "down", "--dir", str(testnet_dir), "--grace", "2"])
    assert down.exit_code == 0, down.output
    assert down.output.count("terminated") == 3
    assert not Testnet.load(testnet_dir).running_nodes()
    after = json.loads(
        runner.invoke(cli, ["testnet", "status", "--dir", str(testnet_dir), "--json"]).output
    )
    assert [n["up"] for n in after["nodes"]] == [False, False, False]

    clean = runner.invoke(cli, ["testnet", "down", "--dir", str(testnet_dir), "--clean"])
    assert clean.exit_code == 0, clean.output
    assert not testnet_dir.exists()


def test_foreground_up_runs_its_manifest_and_summarizes(testnet_dir: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.toml"
    manifest.write_text(
        "duration_s = 3\n[load]\nrate = 100\naccounts = 10\n[l1]\nenabled = false\n"
        "[[perturbation]]\nat_s = 0.5\naction = 'kill'\nnode = 1\n"
        "[[perturbation]]\nat_s = 1.0\naction = 'restart'\nnode = 1\n"
    )
    result = CliRunner().invoke(
        cli,
        [
            "testnet", "up", "--manifest", str(manifest), "-n", "3", "--dir", str(testnet_dir),
            "--base-port", str(free_base_port(3)), "--node-command", NODE_COMMAND, "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.splitlines()[-1])
    assert [n["restarts"] for n in summary["nodes"]] == [0, 1, 0]
    assert any("kill -9 node1" in e for e in summary["events"])
    assert any("restarted node1" in e for e in summary["events"])
    assert summary["load"]["sent"] > 0 and summary["agreement"]["agree"] is True
    assert set(summary["stopped"].values()) == {"terminated"}
    assert not Testnet.load(testnet_dir).running_nodes()


def test_bad_manifest_is_a_clean_error(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.toml"
    manifest.write_text("[[perturbation]]\nat_s = 1\naction = 'resume'\nnode = 0\n")
    result = CliRunner().invoke(
        cli, ["testnet", "up", "--manifest", str(manifest), "--dir", str(tmp_path / "t")]
    )
    assert result.exit_code != 0
    assert "node0 is up, not paused" in result.output
    assert not (tmp_path / "t").exists()


def test_status_and_down_without_a_testnet(tmp_path: Path) -> None:
    status = CliRunner().invoke(cli, ["testnet", "status", "--dir", str(tmp_path)])
    assert status.exit_code == 1 and "no testnet in" in status.output
    down = CliRunner().invoke(cli, ["testnet", "down", "--dir", str(tmp_path)])
    assert down.exit_code == 0 and "nothing to stop" in down.output
