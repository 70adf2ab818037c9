"""Helpers for p2p tests: free loopback ports, validator keys, running networks."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import trio
from libp2p.crypto.secp256k1 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.transport.tcp.tcp import TCP
from libp2p.transport.upgrader import TransportUpgrader
from multiaddr import Multiaddr

from consensus.crypto import PrivateKey
from sequencer_net.p2p import P2PLimits, P2PNetwork, PeerSpec
from sequencer_net.p2p.host import peer_id_from_public_key

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


def peer_ids(keys: list[PrivateKey]) -> list[ID]:
    """The libp2p peer ids of these validator keys."""
    return [peer_id_from_public_key(key.public_key) for key in keys]


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


def count_tasks() -> int:
    """Every trio task alive in this run, walking the tree from the root task."""
    total = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        total += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return total


async def dial_as_outsider(
    port: int, target: ID, secret: bytes, release: trio.Event, *, timeout: float = 10.0
) -> bool:
    """Dial 127.0.0.1:port with a key outside the validator set, as an attacker would:
    TCP, Noise, yamux, no host around it. If the node lets the connection get as far
    as a working yamux session, hold it open until `release` (or until the node
    closes it) and return True; return False when the node refused it."""
    key_pair = create_new_key_pair(secret)
    upgrader = TransportUpgrader(
        {
            TProtocol(NOISE_PROTOCOL_ID): NoiseTransport(
                key_pair, noise_privkey=create_new_x25519_key_pair().private_key
            )
        },
        {TProtocol(YAMUX_PROTOCOL_ID): Yamux},
    )
    raw = None
    try:
        with trio.fail_after(timeout):
            raw = await TCP().dial(Multiaddr(f"/ip4/{LOOPBACK}/tcp/{port}"))
            secured = await upgrader.upgrade_security(raw, True, target)
            muxed = await upgrader.upgrade_connection(secured, target)
    except Exception:
        if raw is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(1), suppress(Exception):
                await raw.close()
        return False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(muxed.start)
        closed = muxed.event_closed  # type: ignore[attr-defined]
        with trio.move_on_after(60):
            async with trio.open_nursery() as wait:
                for event in (release, closed):
                    wait.start_soon(_cancel_when, event, wait.cancel_scope)
        with trio.CancelScope(shield=True), trio.move_on_after(1), suppress(Exception):
            await muxed.close()
        nursery.cancel_scope.cancel()
    return True


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
