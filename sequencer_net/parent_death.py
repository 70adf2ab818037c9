"""Child processes that get SIGTERM when the process that started them dies (Linux).

A test or a benchmark that starts nodes (or anvil) supervises them for its whole
life and stops them when it ends; killed with SIGKILL, it runs no cleanup, and
without this its nodes would run on, unowned. `popen` starts a command through a
small exec shim,

    python -I -S .../sequencer_net/parent_death.py PARENT_PID -- COMMAND...

which asks the kernel for SIGTERM when its parent dies
(prctl PR_SET_PDEATHSIG), checks that its parent is still PARENT_PID (the parent
may have died before the request, and then no signal would ever come) and execs
COMMAND. The request survives exec, so a node and anvil alike get SIGTERM and
shut down as on any SIGTERM. The shim is one interpreter start per process
(isolated, without site-packages: it needs only the standard library, and
runs from any directory whatever the import path), and needs nothing of
COMMAND; `preexec_fn` would run Python between fork and exec
in a process that has threads, which can deadlock.

The kernel's "parent" is the thread that forked, not the process: a child forked
by a worker thread gets the signal when that thread ends. So `popen` forks from
one thread that lives as long as the process (`on_spawner_thread`), whichever
thread calls it. That thread blocks every signal (they stay with the threads
that handle them) except while it runs a caller's action, which it runs with the
caller's signal mask: a child inherits the mask it would have had, forked by
the caller.

Elsewhere than Linux `popen` is `subprocess.Popen`: no shim, no signal.
"""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import Future
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

PR_SET_PDEATHSIG = 1
SUPPORTED = sys.platform.startswith("linux")

EXIT_PARENT_GONE = 143
"""The shim's exit code when its parent died before the signal was requested:
what a process killed by SIGTERM reports (128 + 15)."""
EXIT_EXEC_FAILED = 127


def request_signal_on_parent_death(expected_parent: int, signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel for `signum` when this process's parent dies; return whether the
    parent is still `expected_parent` (False: it died already, no signal will come).

    On a system without prctl, nothing is requested and the answer is True."""
    if not SUPPORTED:
        return True
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(PR_SET_PDEATHSIG): {os.strerror(code)}")
    return os.getppid() == expected_parent


def shim_command(command: Sequence[str], parent: int | None = None) -> list[str]:
    """The argv that runs `command` with SIGTERM on the death of `parent` (this process)."""
    parent = os.getpid() if parent is None else parent
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(parent), "--", *command]


_Work = tuple[Callable[[], Any], "Future[Any]", AbstractSet[int]]


class _SpawnerThread:
    """One daemon thread, started on first use, that runs what it is given in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0  # the process the thread belongs to (a forked child has none)
        self._work: queue.SimpleQueue[_Work] = queue.SimpleQueue()

    def run(self, action: Callable[[], T]) -> T:
        if threading.current_thread() is self._thread:
            return action()  # nested: already where it must run
        future: Future[T] = Future()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())  # the caller's, unchanged
        with self._lock:
            if self._thread is None or self._pid != os.getpid():
                self._work = queue.SimpleQueue()
                self._thread = threading.Thread(
                    target=self._serve, args=(self._work,), name="seqnet-spawner", daemon=True
                )
                self._pid = os.getpid()
                self._thread.start()
            self._work.put((action, future, mask))
        return future.result()

    @staticmethod
    def _serve(work: queue.SimpleQueue[_Work]) -> None:
        blocked = signal.valid_signals()
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        while True:
            action, future, mask = work.get()
            if not future.set_running_or_notify_cancel():
                continue
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            try:
                result = action()
            except BaseException as exc:  # handed to the caller, which re-raises it
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


_SPAWNER = _SpawnerThread()


def on_spawner_thread(action: Callable[[], T]) -> T:
    """Run `action` on the thread `popen` forks from (directly if already on it) and
    return its result. A caller that must change the forking thread's state around a
    `popen` (a network namespace) does it inside `action`."""
    return _SPAWNER.run(action)


def popen(command: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(command, **kwargs)`, whose process gets SIGTERM when this
    process dies. Its /proc/PID/cmdline shows the shim until the shim has made the
    request and exec'd `command`."""
    if not SUPPORTED:
        return subprocess.Popen(list(command), **kwargs)
    _check_runnable(command[0])
    argv = shim_command(command)
    return on_spawner_thread(lambda: subprocess.Popen(argv, **kwargs))


def _check_runnable(program: str) -> None:
    """Raise FileNotFoundError here, as Popen would, rather than have the shim fail
    after the fork (a relative path with a directory depends on cwd: left to the shim)."""
    if os.path.isabs(program):
        runnable = os.access(program, os.X_OK) and os.path.isfile(program)
    elif os.sep in program:
        return
    else:
        runnable = shutil.which(program) is not None
    if not runnable:
        raise FileNotFoundError(errno.ENOENT, "no such program", program)


def main(argv: Sequence[str]) -> NoReturn:
    """The shim: `PARENT_PID -- COMMAND...`."""
    if len(argv) < 3 or argv[1] != "--" or not argv[0].isdigit():
        sys.stderr.write("usage: python parent_death.py PARENT_PID -- COMMAND...\n")
        sys.exit(2)
    if not request_signal_on_parent_death(int(argv[0])):
        os._exit(EXIT_PARENT_GONE)
    command = list(argv[2:])
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"cannot run {command[0]}: {exc}\n")
        os._exit(EXIT_EXEC_FAILED)


if __name__ == "__main__":
    main(sys.argv[1:])
