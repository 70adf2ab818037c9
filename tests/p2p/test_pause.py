"""A paused or stalled validator keeps its links, or gets them back at once.

A SIGSTOPped process, or one whose event loop was blocked by CPU work, sees
every timer expire at once when it runs again. Its own silence must not count
as its peers' (the keepalive credits the time the process did not run), and a
link that did drop comes back as soon as either side can dial: a connection
from a validator wakes our link to it from its backoff wait.

The last test uses real processes on 127.0.0.1 (tests/p2p/node_process.py),
bounded in time and killed on exit. No test asserts a duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from sequencer_net.p2p import Channel, P2PLimits
from tests.p2p.harness import (
    free_port,
    fully_connected,
    network_for,
    peer_specs,
    running,
    validator_keys,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]


async def test_a_stalled_process_does_not_drop_its_links_when_it_runs_again() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    limits = P2PLimits(keepalive_interval_s=0.2, keepalive_timeout_s=1.0)
    nets = [network_for(keys, specs, i, limits) for i in range(2)]
    async with running(*nets):
        await wait_until(fully_connected(nets, 1))
        await trio.sleep(0.5)  # pings and echoes are flowing
        # Block the whole process's loop past the keepalive timeout, as SIGSTOP
        # or a long CPU-bound call on the loop does: nobody could read echoes.
        time.sleep(1.6)  # blocks the loop: the stall is the point
        await trio.sleep(1.5)  # several keepalive checks after it
        assert [net.stats.disconnects for net in nets] == [0, 0]
        nets[0].send(1, Channel.CONSENSUS, b"still-linked")
        with trio.fail_after(5):
            assert await nets[1].inbound.receive() == (0, Channel.CONSENSUS, b"still-linked")


async def test_a_peer_dialing_in_wakes_a_link_waiting_out_its_backoff() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    # Validator 0 dials 1 while 1 is down: its next try is 30 s away.
    patient = P2PLimits(reconnect_min_s=30.0, reconnect_max_s=30.0)
    a = network_for(keys, specs, 0, patient)
    b = network_for(keys, specs, 1)
    async with running(a):
        await wait_until(lambda: a.stats.dial_failures >= 1)
        async with running(b):
            # 1 comes up and dials 0: 0's link opens its stream on that connection
            # now, not when its backoff ends.
            await wait_until(lambda: a.connected_peers() == [1], timeout=10)
            a.send(1, Channel.CONSENSUS, b"awake")
            with trio.fail_after(5):
                assert await b.inbound.receive() == (0, Channel.CONSENSUS, b"awake")


# ----------------------------------------------------------- real processes

PROCESS_LIMITS = {
    "keepalive_interval_s": 0.5,
    "keepalive_timeout_s": 3.0,
    "reconnect_min_s": 0.1,
    "reconnect_max_s": 2.0,
    "connect_timeout_s": 2.0,
}


class NodeProcess:
    """One tests/p2p/node_process.py child and the status lines it printed."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []

    @property
    def last(self) -> dict[str, Any]:
        return self.lines[-1] if self.lines else {}

    async def read_lines(self) -> None:
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines.extend(json.loads(line) for line in complete if line)

    def linked_since(self, since: float, others: list[int]) -> bool:
        """Connected to all `others` and receiving from each of them after `since`."""
        line = self.last
        if not line or line["t"] < since or line["connected"] != others:
            return False
        received = line["received"]
        return all(received.get(str(j), [0, 0.0])[1] > since for j in others)


@asynccontextmanager
async def node_processes(n: int, tmp_path: Path) -> AsyncIterator[list[NodeProcess]]:
    ports = ",".join(str(free_port()) for _ in range(n))
    nodes: list[NodeProcess] = []
    async with trio.open_nursery() as nursery:
        try:
            for i in range(n):
                argv = [sys.executable, "-m", "tests.p2p.node_process", str(i), ports]
                argv += ["--limits", json.dumps(PROCESS_LIMITS), "--max-seconds", "90"]
                with open(tmp_path / f"node{i}.log", "wb") as stderr:
                    process = await trio.lowlevel.open_process(
                        argv,
                        cwd=REPO,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                    )
                node = NodeProcess(process)
                nodes.append(node)
                nursery.start_soon(node.read_lines)
            yield nodes
        finally:
            for node in nodes:
                if node.process.returncode is None:
                    os.kill(node.process.pid, signal.SIGCONT)  # in case it is stopped
                    node.process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                for node in nodes:
                    await node.process.wait()
            nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_a_sigstopped_validator_keeps_or_regains_its_links(tmp_path: Path) -> None:
    n = 3
    others = [[j for j in range(n) if j != i] for i in range(n)]
    async with node_processes(n, tmp_path) as nodes:
        start = time.monotonic()
        await wait_until(
            lambda: all(node.linked_since(start, others[i]) for i, node in enumerate(nodes)),
            timeout=30,
        )
        paused = nodes[2].process.pid

        # A pause shorter than the keepalive timeout: no link drops at all.
        os.kill(paused, signal.SIGSTOP)
        await trio.sleep(1.0)
        os.kill(paused, signal.SIGCONT)
        resumed = time.monotonic()
        await wait_until(
            lambda: all(node.linked_since(resumed, others[i]) for i, node in enumerate(nodes)),
            timeout=15,
        )
        assert [node.last["disconnects"] for node in nodes] == [0, 0, 0]

        # A pause past it: the others drop their links to the silent node; all
        # links come back on their own once it runs again, without a restart.
        os.kill(paused, signal.SIGSTOP)
        await trio.sleep(PROCESS_LIMITS["keepalive_timeout_s"] + 2.0)
        dropped = [nodes[i].last["disconnects"] for i in (0, 1)]
        os.kill(paused, signal.SIGCONT)
        resumed = time.monotonic()
        await wait_until(
            lambda: all(node.linked_since(resumed, others[i]) for i, node in enumerate(nodes)),
            timeout=15,
        )
        assert dropped == [1, 1]
        assert all(node.process.returncode is None for node in nodes)
