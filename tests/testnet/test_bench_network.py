"""`seqnet bench` end to end: real node processes, a short low-rate step, the
JSON report, and nothing left running afterwards (also after Ctrl-C/SIGTERM)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from sequencer_net import parent_death
from sequencer_net.cli.main import cli
from sequencer_net.testnet.bench.report import REQUIRED_KEYS
from sequencer_net.testnet.processes import processes_naming

BENCH = [sys.executable, "-m", "sequencer_net.cli.main", "bench"]
RUN_TIMEOUT_S = 180


def directories(stderr: str) -> list[str]:
    return re.findall(r"directory (\S+)", stderr)


@pytest.mark.slow
def test_short_run_reports_every_key_and_leaves_nothing_running() -> None:
    result = subprocess.run(
        [*BENCH, "-n", "2", "--rate", "60", "--duration", "3", "--no-baseline", "--json"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    for key in REQUIRED_KEYS:
        assert key in report, key
    assert report["validators"] == 2 and report["offered_rate"] == 60.0
    assert report["tps"] > 0 and report["p50_ms"] is not None
    assert len(report["cpu_per_node"]) == 2
    assert report["verify_limit_tps"] > 0
    [directory] = directories(result.stderr)
    assert not Path(directory).exists()
    assert processes_naming(directory) == []


def default_interrupt() -> None:
    """In the benchmark's process: SIGINT with its default action, whatever the
    test runner inherited (a shell starting a background job without job
    control starts it with SIGINT ignored, and an ignored signal stays ignored
    across exec, so the benchmark would never see the interrupt under test)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_stops_every_node(signum: int) -> None:
    process = parent_death.popen(  # if this test's process is killed, the benchmark stops
        [*BENCH, "-n", "2", "--rate", "50", "--duration", "30", "--no-baseline", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_interrupt,
    )
    assert process.stderr is not None
    seen = ""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while "signing" not in seen and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen += line
        [directory] = directories(seen)
        pids = processes_naming(directory)
        assert len(pids) == 2  # the two nodes are running
        time.sleep(1.0)  # into the step
        process.send_signal(signum)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, seen + rest
    assert "every process the benchmark started is stopped" in rest
    assert processes_naming(directory) == []
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)


def test_help_teaches_both_the_network_benchmark_and_the_subcommands() -> None:
    result = CliRunner().invoke(cli, ["bench", "--help"])
    assert result.exit_code == 0
    for text in ("--validators", "--rate", "--mix", "--wan-delay-ms", "auction", "block"):
        assert text in result.output


def test_network_options_with_a_subcommand_are_refused() -> None:
    result = CliRunner().invoke(cli, ["bench", "--rate", "5", "auction", "--orders", "10"])
    assert result.exit_code == 2
    assert "--rate" in result.output
