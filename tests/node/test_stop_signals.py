"""A node that gets SIGTERM or SIGINT again while it shuts down still finishes:
it closes its stores and logs `event=node_stopped` instead of dying by the
signal's default action halfway through (the kernel's parent-death signal,
for one, may come several times)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.node.harness import LocalNetwork


def test_repeated_stop_signals_during_the_shutdown_do_not_cut_it_short(tmp_path: Path) -> None:
    net = LocalNetwork.create(tmp_path, n=1)
    log_path = net.home(0) / "node.log"
    try:
        net.start_all()
        net.wait_height([0], 2)
        proc = net.procs[0]
        os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30.0
        sent = 1
        # Until the node says it has closed its stores (a signal after that is
        # harmless), one more stop signal every 2 ms.
        while proc.poll() is None and time.monotonic() < deadline:
            if "event=node_stopped" in log_path.read_text(errors="replace"):
                break
            os.kill(proc.pid, signal.SIGINT if sent % 2 else signal.SIGTERM)
            sent += 1
            time.sleep(0.002)
        proc.wait(timeout=30.0)
        log = log_path.read_text(errors="replace")
        assert sent > 1  # some came during the shutdown
        assert "event=node_stopped" in log, f"cut short after {sent} signals: {log[-400:]}"
        assert "Traceback" not in log
    finally:
        net.close()
