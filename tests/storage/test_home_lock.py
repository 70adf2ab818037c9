"""One node per home directory: a second opener is refused, a dead holder is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sequencer_net.home.lock import HomeLock, HomeLocked

REPO = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from sequencer_net.home.lock import HomeLock
with HomeLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""

TRY_LOCK = """
import sys
from sequencer_net.home.lock import HomeLock, HomeLocked
try:
    with HomeLock(sys.argv[1]):
        print("acquired")
except HomeLocked as exc:
    print("refused:", exc)
"""


def run_try_lock(home: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", TRY_LOCK, os.fspath(home)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def test_second_opener_in_the_same_process_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "node"
    with HomeLock(home) as lock:
        assert lock.locked
        assert (home / "LOCK").read_text().strip() == str(os.getpid())
        with pytest.raises(HomeLocked, match=f"pid {os.getpid()}"):
            HomeLock(home).acquire()
    with HomeLock(home):  # released on exit
        pass


def test_another_process_is_refused_until_the_holder_dies(tmp_path: Path) -> None:
    home = tmp_path / "node"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, os.fspath(home)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        answer = run_try_lock(home)
        assert answer.startswith("refused:"), answer
        assert f"pid {holder.pid}" in answer
        with pytest.raises(HomeLocked):
            HomeLock(home).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    # The kernel released the lock with the killed process: no stale-lock cleanup needed.
    assert run_try_lock(home) == "acquired"
