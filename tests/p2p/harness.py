"""Helpers for p2p tests: free loopback ports, validator keys, running networks."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from consensus.crypto import PrivateKey
from sequencer_net.p2p import P2PLimits, P2PNetwork, PeerSpec

LOOPBACK = "127.0.0.1"


_ports = random.Random()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, below Linux's ephemeral
    range (32768+) so no outgoing connection can take it before a host binds it."""
    for _ in range(200):
        port = _ports.randrange(20_000, 32_000)
        with socket.socket() as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def validator_keys(n: int, *, offset: int = 0) -> list[PrivateKey]:
    """Deterministic secp256k1 keys, distinct for distinct (i + offset)."""
    return [PrivateKey((i + offset + 1).to_bytes(32, "big")) for i in range(n)]


def peer_specs(keys: list[PrivateKey]) -> list[PeerSpec]:
    return [PeerSpec(i, key.public_key, LOOPBACK, free_port()) for i, key in enumerate(keys)]


def network_for(
    keys: list[PrivateKey], specs: list[PeerSpec], i: int, limits: P2PLimits | None = None
) -> P2PNetwork:
    return P2PNetwork(
        secret=keys[i].secret,
        me=i,
        listen_host=LOOPBACK,
        listen_port=specs[i].port,
        peers=specs,
        limits=limits or P2PLimits(),
    )


async def wait_until(condition: Callable[[], bool], *, timeout: float = 15.0) -> None:
    """Poll `condition` every 10 ms; fail the test after `timeout` seconds."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


def fully_connected(nets: list[P2PNetwork], n_peers: int) -> Callable[[], bool]:
    return lambda: all(len(net.connected_peers()) == n_peers for net in nets)


@asynccontextmanager
async def running(*nets: P2PNetwork) -> AsyncIterator[trio.Nursery]:
    """Run `nets` in a nursery (each listening before the body starts); cancel on exit."""
    async with trio.open_nursery() as nursery:
        for net in nets:
            await nursery.start(net.run)
        try:
            yield nursery
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def started(net: P2PNetwork) -> AsyncIterator[trio.CancelScope]:
    """Run one network in its own cancel scope, so a test can kill it alone."""
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def _run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await net.run(task_status=task_status)

        await nursery.start(_run)
        try:
            yield scope
        finally:
            scope.cancel()
