"""Process supervision with fake node processes: start, perturb, status, stop,
and `down` never signalling a process it did not start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sequencer_net.home.genesis import LOCAL_CHAIN_ID_RANGE
from sequencer_net.testnet import processes
from sequencer_net.testnet.manifest import NO_L1, Manifest, Perturbation, PerturbationAction
from sequencer_net.testnet.network import (
    TESTNET_FILE,
    Testnet,
    TestnetError,
    start_testnet,
)
from sequencer_net.testnet.processes import (
    ProcessIdentity,
    is_alive,
    is_our_process,
    read_cmdline,
    read_start_ticks,
    stop_processes,
    wait_stopped,
)

from .conftest import FAKE_NODE_COMMAND, free_base_port


def _start(directory: Path, validators: int = 3, **kwargs: object) -> Testnet:
    return start_testnet(
        directory,
        manifest=Manifest(l1=NO_L1),
        validators=validators,
        base_port=free_base_port(validators),
        node_command=FAKE_NODE_COMMAND,
        ready_timeout_s=20.0,
        stop_grace_s=2.0,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def foreign_process() -> subprocess.Popen[bytes]:
    """A process the testnet did not start (and must never signal)."""
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    process = subprocess.Popen(command)
    deadline = time.monotonic() + 5
    while read_cmdline(process.pid) != tuple(command) and time.monotonic() < deadline:
        time.sleep(0.01)  # cmdline is empty for a moment after exec
    yield process  # type: ignore[misc]
    process.kill()
    process.wait()


def test_start_status_and_stop(testnet_dir: Path) -> None:
    net = _start(testnet_dir)
    record = json.loads((testnet_dir / TESTNET_FILE).read_text())
    assert [n["name"] for n in record["nodes"]] == ["node0", "node1", "node2"]
    # No chain id in the manifest: a fresh random one, recorded and in genesis.
    genesis = json.loads((testnet_dir / "genesis.json").read_text())
    assert record["network"]["chain_id"] == int(genesis["chain_id"])
    assert LOCAL_CHAIN_ID_RANGE[0] <= record["network"]["chain_id"] < LOCAL_CHAIN_ID_RANGE[1]
    for node, saved in zip(net.nodes, record["nodes"], strict=True):
        assert saved["pid"] == node.pid and node.is_running()
        assert saved["command"][-1] == str(node.spec.home)  # {home} was substituted
        assert saved["start_ticks"] == read_start_ticks(node.pid)
        assert node.log_path.exists()

    report = Testnet.load(testnet_dir).status_report()
    assert [n["name"] for n in report["nodes"]] == ["node0", "node1", "node2"]
    for row in report["nodes"]:
        assert row["up"] is True and row["height"] > 0
        assert row["last_hash"].startswith("0x") and row["pid"] is not None

    outcomes = net.stop()
    assert {o.how for o in outcomes} == {"terminated"}
    assert not any(node.is_running() for node in net.nodes)
    assert "stopped cleanly" in net.nodes[0].log_path.read_text()
    after = Testnet.load(testnet_dir).status_report()
    assert all(row["up"] is False and row["height"] is None for row in after["nodes"])


def test_perturbations_act_on_the_right_process(testnet_dir: Path) -> None:
    net = _start(testnet_dir)
    first_pid = net.nodes[1].pid
    assert "kill -9" in net.apply(Perturbation(0, PerturbationAction.KILL, 1))
    assert not net.nodes[1].is_running()
    assert net.nodes[0].is_running() and net.nodes[2].is_running()
    assert "skipped" in net.apply(Perturbation(0, PerturbationAction.PAUSE, 1))

    net.apply(Perturbation(0, PerturbationAction.RESTART, 1))
    assert net.nodes[1].is_running() and net.nodes[1].pid != first_pid
    assert net.nodes[1].restarts == 1
    # The record follows the restart, so a later `down` finds the new process.
    saved = json.loads((testnet_dir / TESTNET_FILE).read_text())["nodes"][1]
    assert saved["pid"] == net.nodes[1].pid and saved["restarts"] == 1

    net.apply(Perturbation(0, PerturbationAction.PAUSE, 2))
    stat = Path(f"/proc/{net.nodes[2].pid}/stat").read_text()
    assert stat[stat.rindex(")") + 2] == "T"  # stopped
    statuses = net.statuses(timeout_s=0.5)
    assert statuses[2] is None and statuses[0] is not None
    net.apply(Perturbation(0, PerturbationAction.RESUME, 2))
    assert net.statuses()[2] is not None

    assert "disconnected" in net.apply(Perturbation(0, PerturbationAction.DISCONNECT, 0))
    assert net.statuses()[0]["peers"] == []  # type: ignore[index]
    net.apply(Perturbation(0, PerturbationAction.RECONNECT, 0))
    assert net.statuses()[0]["peers"] == [1, 2]  # type: ignore[index]


def test_a_paused_node_is_still_stopped(testnet_dir: Path) -> None:
    net = _start(testnet_dir, validators=1)
    net.pause(0)
    assert [o.how for o in net.stop()] == ["terminated"]


def test_down_leaves_a_foreign_process_with_a_recorded_pid_alone(
    testnet_dir: Path, foreign_process: subprocess.Popen[bytes]
) -> None:
    net = _start(testnet_dir, validators=2)
    record_path = testnet_dir / TESTNET_FILE
    record = json.loads(record_path.read_text())
    # Node 0 died long ago and its PID now names another program.
    net.kill(0)
    record = json.loads(record_path.read_text())
    record["nodes"][0]["pid"] = foreign_process.pid
    record_path.write_text(json.dumps(record))

    outcomes = Testnet.load(testnet_dir).stop(grace_s=1.0)
    assert [o.how for o in outcomes] == ["not running", "terminated"]
    assert foreign_process.poll() is None and is_alive(foreign_process.pid)


def test_same_command_but_another_start_time_is_not_ours(
    foreign_process: subprocess.Popen[bytes],
) -> None:
    pid = foreign_process.pid
    command = read_cmdline(pid)
    assert command is not None
    ticks = read_start_ticks(pid)
    assert ticks is not None
    assert is_our_process(ProcessIdentity(pid, command, ticks))
    reused = ProcessIdentity(pid, command, ticks - 1)  # PID reuse: same argv, later start
    assert not is_our_process(reused)
    assert stop_processes([reused], grace_s=0.1)[0].how == "not running"
    other_command = ProcessIdentity(pid, (*command, "--x"), ticks)
    assert stop_processes([other_command], grace_s=0.1)[0].how == "not running"
    assert foreign_process.poll() is None


def test_a_node_ignoring_sigterm_is_killed_after_the_grace(testnet_dir: Path) -> None:
    def homes_ignoring_sigterm(*args: object) -> object:
        from sequencer_net.testnet.network import write_validator_homes

        specs = write_validator_homes(*args)  # type: ignore[arg-type]
        (specs[0].home / "fake-node.json").write_text('{"ignore_sigterm": true}')
        return specs

    net = _start(testnet_dir, validators=1, write_homes=homes_ignoring_sigterm)
    started = time.monotonic()
    assert [o.how for o in net.stop(grace_s=0.5)] == ["killed"]
    assert time.monotonic() - started < 5.0


def test_a_child_seen_mid_exit_reports_its_exit_code(tmp_path: Path) -> None:
    """/proc shows an exited, not yet reaped child as a zombie (empty cmdline):
    the liveness check says "not running" before `poll()` has the code. The
    report must still name the code, not None."""
    from sequencer_net.testnet.network import NodeSpec, TestnetNode
    from sequencer_net.testnet.processes import spawn

    command = (sys.executable, "-c", "import time, sys; time.sleep(0.3); sys.exit(3)")
    process, identity = spawn(command, tmp_path / "node.log")
    node = TestnetNode(
        spec=NodeSpec(0, "node0", tmp_path, "http://127.0.0.1:1"),
        command=command,
        log_path=tmp_path / "node.log",
        identity=identity,
        process=process,
    )
    deadline = time.monotonic() + 10
    while is_our_process(identity) and time.monotonic() < deadline:
        time.sleep(0.01)  # no poll(): the child stays an unreaped zombie
    assert not is_our_process(identity)
    assert process.returncode is None  # exactly the window the old report fell into
    assert node.exit_code() == 3


def test_a_node_that_exits_at_startup_fails_fast_with_its_log(testnet_dir: Path) -> None:
    def homes_with_a_broken_node(*args: object) -> object:
        from sequencer_net.testnet.network import write_validator_homes

        specs = write_validator_homes(*args)  # type: ignore[arg-type]
        (specs[1].home / "fake-node.json").write_text('{"fail_on_start": true}')
        return specs

    with pytest.raises(TestnetError) as raised:
        _start(testnet_dir, write_homes=homes_with_a_broken_node)
    message = str(raised.value)
    assert "node1 exited during startup (exit code 3)" in message
    assert "configured to fail at startup" in message  # the log tail
    record = json.loads((testnet_dir / TESTNET_FILE).read_text())
    assert not any(is_alive(node["pid"]) for node in record["nodes"])


def test_a_network_that_never_commits_times_out_with_a_clear_error(testnet_dir: Path) -> None:
    def slow_homes(*args: object) -> object:
        from sequencer_net.testnet.network import write_validator_homes

        specs = write_validator_homes(*args)  # type: ignore[arg-type]
        (specs[0].home / "fake-node.json").write_text('{"startup_delay_s": 30}')
        return specs

    # node0 never answers; on a loaded machine node1 may not be ready within 1 s either.
    with pytest.raises(TestnetError, match=r"did not commit within 1 s \(not ready: node0[,)]"):
        start_testnet(
            testnet_dir,
            manifest=Manifest(l1=NO_L1),
            validators=2,
            base_port=free_base_port(2),
            node_command=FAKE_NODE_COMMAND,
            write_homes=slow_homes,  # type: ignore[arg-type]
            ready_timeout_s=1.0,
            stop_grace_s=1.0,
        )
    record = json.loads((testnet_dir / TESTNET_FILE).read_text())
    assert not any(is_alive(node["pid"]) for node in record["nodes"])


def test_up_refuses_a_running_testnet_and_old_data(testnet_dir: Path) -> None:
    net = _start(testnet_dir, validators=1)
    with pytest.raises(TestnetError, match="already running"):
        _start(testnet_dir, validators=1)
    net.stop()
    with pytest.raises(TestnetError, match="previous testnet's data"):
        _start(testnet_dir, validators=1)
    again = _start(testnet_dir, validators=1, fresh=True)
    assert again.nodes[0].is_running()


def test_ports_in_use_are_reported_before_anything_starts(testnet_dir: Path) -> None:
    import socket

    base = free_base_port(1)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        sock.bind(("127.0.0.1", base + 100))
        sock.listen()
        with pytest.raises(TestnetError, match=f"ports already in use on 127.0.0.1: {base + 100}"):
            start_testnet(
                testnet_dir,
                manifest=Manifest(l1=NO_L1),
                validators=1,
                base_port=base,
                node_command=FAKE_NODE_COMMAND,
            )
    assert not (testnet_dir / TESTNET_FILE).exists()


def test_signal_constants_are_what_the_docs_say() -> None:
    # docs/testnet.md promises kill -9, SIGSTOP and SIGCONT.
    assert (signal.SIGKILL, signal.SIGSTOP, signal.SIGCONT) == (9, 19, 18)


def test_a_process_on_its_way_out_is_not_gone_until_it_is(
    foreign_process: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process freeing its memory after SIGTERM reads an empty command line
    while it still runs; waiting for it to go must not stop there. Here the
    empty command line is made to last: the process is reported still there
    until it really exits."""
    pid = foreign_process.pid
    start_ticks = read_start_ticks(pid)
    assert start_ticks is not None
    identity = ProcessIdentity(pid, read_cmdline(pid) or (), start_ticks)
    monkeypatch.setattr(processes, "read_cmdline", lambda _pid: ())  # exiting, as it reads then
    assert processes.wait_gone([identity], 0.2) == [identity]
    foreign_process.kill()
    assert processes.wait_gone([identity], 5.0, {pid: foreign_process}) == []


def test_wait_stopped_sees_a_sigstopped_process_and_not_a_running_one() -> None:
    process = subprocess.Popen(["sleep", "30"])
    try:
        assert not wait_stopped(process.pid, timeout_s=0.1)
        os.kill(process.pid, signal.SIGSTOP)
        assert wait_stopped(process.pid, timeout_s=5.0)
    finally:
        process.kill()
        process.wait()
    assert not wait_stopped(process.pid, timeout_s=0.1)  # gone
