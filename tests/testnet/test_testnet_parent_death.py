"""`seqnet testnet up` in the foreground takes its nodes with it when it is killed;
`up --detach` leaves them running after it exits (fake nodes, no L1)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sequencer_net import parent_death
from sequencer_net.testnet.network import TESTNET_FILE, Testnet, TestnetError

from .conftest import FAKE_NODE_COMMAND, free_base_port

pytestmark = pytest.mark.skipif(not parent_death.SUPPORTED, reason="prctl is Linux only")

VALIDATORS = 2
WAIT_S = 30.0
"""Generous bound for nodes to start or stop on a loaded two-core machine."""


def _up(directory: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "sequencer_net.cli.main", "testnet", "up",
        "-n", str(VALIDATORS), "--dir", str(directory),
        "--base-port", str(free_base_port(VALIDATORS)),
        "--node-command", shlex.join(FAKE_NODE_COMMAND),
        "--timeout", "20", "--no-l1", "--no-load", "--json", *extra,
    ]  # fmt: skip


def _wait_for(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _running(directory: Path) -> int:
    if not (directory / TESTNET_FILE).exists():
        return 0
    try:
        return len(Testnet.load(directory).running_nodes())
    except (TestnetError, ValueError, KeyError):  # the record mid-write
        return 0


def _serving(directory: Path) -> bool:
    """Every node answers its API (so it handles SIGTERM by now)."""
    if _running(directory) != VALIDATORS:
        return False
    return all(status is not None for status in Testnet.load(directory).statuses(timeout_s=1.0))


def test_killed_foreground_up_takes_its_nodes_with_it(testnet_dir: Path) -> None:
    up = subprocess.Popen(_up(testnet_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(lambda: _serving(testnet_dir)), "the nodes did not start"
    finally:
        up.kill()  # SIGKILL: `up` stops nothing itself
        up.wait(timeout=WAIT_S)
    assert _wait_for(lambda: _running(testnet_dir) == 0), "nodes outlived their supervisor"
    for node in Testnet.load(testnet_dir).nodes:
        assert "stopped cleanly" in node.log_path.read_text()  # SIGTERM's path


def test_detached_up_leaves_its_nodes_running(testnet_dir: Path) -> None:
    result = subprocess.run(
        _up(testnet_dir, "--detach"), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    # The command has exited: a signal on its death would have been sent already.
    assert not _wait_for(lambda: _running(testnet_dir) < VALIDATORS, timeout_s=1.0)
    for node in Testnet.load(testnet_dir).nodes:
        assert "stopped cleanly" not in node.log_path.read_text()
