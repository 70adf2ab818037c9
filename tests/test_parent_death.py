"""A process started with `parent_death.popen` gets SIGTERM when its starter dies,
not when the thread that started it ends; the shim refuses to run a command whose
parent is already gone."""

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

WAIT_S = 20.0
"""Generous bound for a process to start or exit on a loaded two-core machine."""

CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    marker = Path(sys.argv[1])
    def on_term(signum, frame):
        marker.write_text("terminated")
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    marker.write_text("ready")
    time.sleep(120)
    """
)

# The starter starts the child from a worker thread, which ends once the child is
# ready (its signal requested): the child must live on (the kernel's "parent" is
# the thread that forked) until the starter dies.
STARTER = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from sequencer_net import parent_death
    started = []
    def start():
        started.append(parent_death.popen([sys.executable, "-c", sys.argv[1], sys.argv[2]]))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if Path(sys.argv[2]).exists() and Path(sys.argv[2]).read_text() == "ready":
                return
            time.sleep(0.01)
    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    print(started[0].pid, flush=True)
    time.sleep(120)
    """
)


def _wait_for(condition: object, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_a_child_outlives_its_starting_thread_and_gets_sigterm_when_its_starter_is_killed(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "child.state"
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, CHILD, str(marker)], stdout=subprocess.PIPE, text=True
    )
    child_pid = None
    try:
        assert starter.stdout is not None
        child_pid = int(starter.stdout.readline())
        assert _wait_for(lambda: marker.exists() and marker.read_text() == "ready")
        # The starting thread has ended (joined before the pid was printed): a
        # signal sent then would have arrived by now.
        assert not _wait_for(lambda: marker.read_text() != "ready", timeout_s=0.5)
        assert is_alive(child_pid)

        starter.kill()
        starter.wait(timeout=WAIT_S)
        assert _wait_for(lambda: not is_alive(child_pid)), "the child outlived its starter"
        assert marker.read_text() == "terminated"  # SIGTERM, handled as usual
    finally:
        starter.kill()
        starter.wait(timeout=WAIT_S)
        if child_pid is not None and is_alive(child_pid):
            os.kill(child_pid, signal.SIGKILL)


def test_the_shim_does_not_run_a_command_whose_parent_is_gone(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    gone = subprocess.Popen(["true"])
    gone.wait()  # a parent that died before the shim could ask for the signal
    shim = parent_death.shim_command(["touch", str(ran)], parent=gone.pid)
    result = subprocess.run(shim, check=False)
    assert result.returncode == parent_death.EXIT_PARENT_GONE
    assert not ran.exists()


def _blocked_signals_of_child() -> int:
    process = parent_death.popen(
        ["grep", "SigBlk", "/proc/self/status"], stdout=subprocess.PIPE, text=True
    )
    output, _ = process.communicate(timeout=WAIT_S)
    assert process.returncode == 0
    return int(output.split()[1], 16)


def test_a_child_inherits_the_callers_signal_mask_not_the_spawner_threads() -> None:
    """The spawner thread blocks every signal; a child gets what its caller blocks."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    assert signal.SIGUSR2 not in before
    assert _blocked_signals_of_child() & (1 << (signal.SIGUSR2 - 1)) == 0
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        blocked = _blocked_signals_of_child()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    assert blocked & (1 << (signal.SIGUSR2 - 1))
    assert not blocked & (1 << (signal.SIGTERM - 1))


def test_a_missing_program_fails_in_the_caller() -> None:
    with pytest.raises(FileNotFoundError):
        parent_death.popen(["/nonexistent/seqnet-no-such-program"])
    with pytest.raises(FileNotFoundError):
        parent_death.popen(["seqnet-no-such-program-on-path"])


def test_the_spawner_thread_runs_nested_actions_in_place() -> None:
    outer = parent_death.on_spawner_thread(
        lambda: (os.getpid(), parent_death.on_spawner_thread(lambda: "inner"))
    )
    assert outer == (os.getpid(), "inner")
    with pytest.raises(ValueError, match="boom"):
        parent_death.on_spawner_thread(lambda: int("boom"))
