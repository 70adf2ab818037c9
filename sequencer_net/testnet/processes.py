"""Starting, signalling and stopping node processes, and proving they are ours.

A testnet outlives the command that started it (`up --detach`), so `down`
works from PIDs recorded in testnet.json. A PID alone is not proof: the node
may have exited and the number been reused. Before any signal, `is_our_process`
checks that /proc/PID/cmdline is exactly the command we launched and that the
process started at the recorded kernel tick (/proc/PID/stat field 22); anything
else is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sequencer_net import parent_death

PROC = Path("/proc")

STOP_GRACE_S = 10.0
"""SIGTERM to SIGKILL: a node flushes its store and closes its libp2p host on
SIGTERM; ten seconds covers that on a loaded two-core machine."""

EXIT_WAIT_S = 3.0
"""How long to wait for a SIGKILLed process to disappear."""

POLL_INTERVAL_S = 0.05
EXEC_WAIT_S = 5.0
"""How long `spawn` waits for /proc/PID/cmdline to show the command: a moment,
or one interpreter start for a process started through `parent_death`'s shim
(a fraction of a second; seconds on a loaded two-core machine)."""

STOP_WAIT_S = 2.0
"""How long `pause` waits for a SIGSTOPped process to show as stopped: the
kernel stops it only once it is scheduled and takes the signal, a moment later
on a busy machine."""


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """What proves a PID is a process we started: its argv and its start tick."""

    pid: int
    command: tuple[str, ...]
    start_ticks: int


def read_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    fields = stat_fields(pid)
    if fields is None:
        return None
    # Fields after "pid (comm)": state is field 3, starttime field 22.
    return int(fields[19])


def pids() -> list[int]:
    """Every process id now."""
    return [int(entry.name) for entry in PROC.iterdir() if entry.name.isdigit()]


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after "pid (comm)" (None if the process is gone)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses; it ends at the last ')'.
    return stat[stat.rindex(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    """True if the PID exists and is not a zombie."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def read_cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return tuple(part.decode(errors="replace") for part in raw.split(b"\0")[:-1])


def processes_naming(text: str) -> list[int]:
    """PIDs of the processes whose command line contains `text` (for example a
    network's directory: its nodes)."""
    return [pid for pid in pids() if any(text in part for part in read_cmdline(pid) or ())]


def is_our_process(identity: ProcessIdentity) -> bool:
    """True only if the PID is alive, runs exactly our command and started when we started it."""
    if not is_alive(identity.pid):
        return False
    return (
        read_cmdline(identity.pid) == identity.command
        and read_start_ticks(identity.pid) == identity.start_ticks
    )


def spawn(
    command: Sequence[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> tuple[subprocess.Popen[bytes], ProcessIdentity]:
    """Start `command` in its own session (so a terminal's Ctrl-C reaches only the
    supervisor, which then stops nodes in order), output appended to `log_path`.

    `die_with_parent`: the process gets SIGTERM when this one dies (even by
    SIGKILL), for a supervisor that owns it for its whole life; never for a
    process meant to outlive its starter (a detached testnet)."""
    start = parent_death.popen if die_with_parent else subprocess.Popen
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(command)}\n".encode())
        log.flush()
        process = start(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    _wait_for_exec(process, tuple(command))
    start_ticks = read_start_ticks(process.pid)
    if start_ticks is None:  # exited before we could look: still record who it was
        start_ticks = -1
    return process, ProcessIdentity(process.pid, tuple(command), start_ticks)


def _wait_for_exec(process: subprocess.Popen[bytes], command: tuple[str, ...]) -> None:
    """Popen returns once exec has begun, but for a moment after that the kernel
    still shows an empty /proc/PID/cmdline (and a process started through
    `parent_death` shows its shim until the shim execs); wait until it shows our
    command."""
    deadline = time.monotonic() + EXEC_WAIT_S
    while time.monotonic() < deadline and process.poll() is None:
        if read_cmdline(process.pid) == command:
            return
        time.sleep(0.001)


def send_signal(identity: ProcessIdentity, signum: int) -> bool:
    """Signal the process if it is provably ours; return whether a signal was sent."""
    if not is_our_process(identity):
        return False
    try:
        os.kill(identity.pid, signum)
    except ProcessLookupError:
        return False
    return True


def wait_stopped(pid: int, timeout_s: float = STOP_WAIT_S) -> bool:
    """Wait until the process shows as stopped (/proc state T) or is gone;
    return whether it stopped within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        fields = stat_fields(pid)
        if fields is None or fields[0] in ("T", "t"):
            return fields is not None
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S / 10)


def _reap(children: dict[int, subprocess.Popen[bytes]]) -> None:
    for child in children.values():
        child.poll()


def _not_gone(identity: ProcessIdentity) -> bool:
    """The process we started is still there, exiting perhaps: a process on its
    way out shows an empty command line (its memory is being freed) until it
    becomes a zombie, so only its PID and start tick are compared here."""
    return is_alive(identity.pid) and read_start_ticks(identity.pid) == identity.start_ticks


def wait_gone(
    identities: Sequence[ProcessIdentity],
    timeout_s: float,
    children: dict[int, subprocess.Popen[bytes]] | None = None,
) -> list[ProcessIdentity]:
    """Wait until none of the processes is ours any more; return those still running."""
    children = children or {}
    deadline = time.monotonic() + timeout_s
    while True:
        _reap(children)
        running = [i for i in identities if _not_gone(i)]
        if not running or time.monotonic() >= deadline:
            _reap_zombies([i for i in identities if i not in running], children)
            return running
        time.sleep(POLL_INTERVAL_S)


def _reap_zombies(
    gone: Sequence[ProcessIdentity], children: dict[int, subprocess.Popen[bytes]]
) -> None:
    """Reap the children among `gone`. A multi-threaded process shows as a zombie
    as soon as its main thread has exited, but cannot be reaped until its other
    threads have too; left unreaped, it would outlive its starter as a zombie
    until init collects it."""
    for identity in gone:
        child = children.get(identity.pid)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=EXIT_WAIT_S)


@dataclass(frozen=True, slots=True)
class StopOutcome:
    identity: ProcessIdentity
    how: str  # "not running" | "terminated" | "killed" | "survived"


def stop_processes(
    identities: Sequence[ProcessIdentity],
    *,
    grace_s: float = STOP_GRACE_S,
    children: dict[int, subprocess.Popen[bytes]] | None = None,
) -> list[StopOutcome]:
    """SIGTERM every process that is ours, SIGKILL those still running after `grace_s`.

    A SIGSTOPped process cannot act on SIGTERM, so each also gets SIGCONT.
    Processes that are not ours (gone, or the PID now names something else)
    are reported "not running" and never signalled.
    """
    terminated = []
    outcomes: dict[int, str] = {}
    for identity in identities:
        if send_signal(identity, signal.SIGTERM):
            send_signal(identity, signal.SIGCONT)
            terminated.append(identity)
        else:
            outcomes[identity.pid] = "not running"
    survivors = wait_gone(terminated, grace_s, children)
    for identity in terminated:
        outcomes[identity.pid] = "terminated"
    for identity in survivors:
        if send_signal(identity, signal.SIGKILL):
            outcomes[identity.pid] = "killed"
    for identity in wait_gone(survivors, EXIT_WAIT_S, children):
        outcomes[identity.pid] = "survived"
    return [StopOutcome(identity, outcomes[identity.pid]) for identity in identities]


def log_tail(log_path: Path, lines: int = 20) -> str:
    """The last lines of a node's log, for error messages."""
    try:
        with log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - 64 * 1024))
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
