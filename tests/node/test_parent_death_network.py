"""A validator started by the test harness shuts down cleanly (SIGTERM, its store
closed) when the process that started it is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sequencer_net import parent_death
from sequencer_net.testnet.processes import is_alive

pytestmark = pytest.mark.skipif(not parent_death.SUPPORTED, reason="prctl is Linux only")

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
"""Generous bound for a node to start, commit or stop on a loaded two-core machine."""

# A one-validator network started by another process, which then waits to be killed.
STARTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tests.node.harness import LocalNetwork
    net = LocalNetwork.create(Path(sys.argv[1]), n=1)
    net.start_all()
    net.wait_height([0], 1)
    print(net.procs[0].pid, flush=True)
    time.sleep(120)
    """
)


def test_a_harness_node_stops_cleanly_when_the_test_process_is_killed(tmp_path: Path) -> None:
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    node_pid = None
    try:
        assert starter.stdout is not None
        line = starter.stdout.readline()  # the node has committed: its store is open
        assert line.strip().isdigit(), f"the network did not start: {line!r}"
        node_pid = int(line)
        starter.kill()
        starter.wait(timeout=WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while is_alive(node_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_alive(node_pid), "the node outlived the process that started it"
    finally:
        starter.kill()
        starter.wait(timeout=WAIT_S)
        if node_pid is not None and is_alive(node_pid):
            os.kill(node_pid, signal.SIGKILL)
    log = (tmp_path / "node0" / "node.log").read_text(errors="replace")
    assert "event=shutdown signal=SIGTERM" in log
    assert "event=node_stopped" in log  # after the store was closed
