"""The follow protocol: validators serve admitted full nodes on it, and on it only.

A full node's network (`P2PNetwork(follower=True)`, a key outside the set) asks
a validator on `/seqnet/follow/1.0.0`; its streams on the validator and
request protocols (consensus, batch broadcast, validator requests) are reset
and nothing it writes there is delivered. Per-peer rate and request size are
bounded on the validator's side."""

from __future__ import annotations

import pytest
import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from consensus.crypto import PrivateKey
from sequencer_net.p2p import (
    FOLLOW_PROTOCOL,
    REQUEST_PROTOCOL,
    VALIDATOR_PROTOCOL,
    Channel,
    DropReason,
    P2PError,
    P2PLimits,
    P2PNetwork,
    PeerSpec,
)
from sequencer_net.p2p.framing import encode_frame, encode_request
from tests.p2p.harness import (
    LOOPBACK,
    free_port,
    network_for,
    peer_specs,
    running,
    validator_keys,
    wait_until,
)

FULL_NODE_KEY = PrivateKey(b"\x07" * 32)


def full_node_for(specs: list[PeerSpec], limits: P2PLimits | None = None) -> P2PNetwork:
    return P2PNetwork(
        secret=FULL_NODE_KEY.secret,
        me=-1,
        listen_host=LOOPBACK,
        listen_port=free_port(),
        peers=specs,
        limits=limits or P2PLimits(),
        follower=True,
    )


def validator_with_slots(limits: P2PLimits | None = None) -> tuple[P2PNetwork, list[PeerSpec]]:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    node = network_for(keys, specs, 0, limits or P2PLimits(max_non_validator_connections=4))
    served: list[str] = []

    async def follow(peer: str, data: bytes) -> bytes:
        served.append(peer)
        return b"answer:" + data

    node.set_follow_handler(follow)
    return node, specs


async def test_a_full_node_is_served_on_the_follow_protocol() -> None:
    node, specs = validator_with_slots()
    full = full_node_for(specs)
    async with running(node, full):
        assert await full.request(0, b"hello") == b"answer:hello"
        assert full.connected_peers() == [0, 1]  # dialed on request
        assert node.followers_served == 1
        # A follower sends nothing on the validator channels.
        assert full.send(0, Channel.CONSENSUS, b"vote") is False
        full.broadcast(Channel.BATCH, b"batch")
        assert full.stats.frames_sent == 0


async def test_a_full_node_cannot_send_consensus_or_batch_frames_or_validator_requests() -> None:
    node, specs = validator_with_slots()
    full = full_node_for(specs)
    requests: list[bytes] = []

    async def answer(peer: int, data: bytes) -> bytes:
        requests.append(data)
        return b"x"

    node.set_request_handler(answer)
    async with running(node, full):
        assert await full.request(0, b"warm-up") == b"answer:warm-up"  # connection up
        host = full._host
        assert host is not None
        target = ID.from_base58(node.peer_id)
        before = node.stats.dropped[DropReason.UNAUTHENTICATED]
        for protocol, data in (
            (VALIDATOR_PROTOCOL, encode_frame(Channel.CONSENSUS, b"a forged vote")),
            (VALIDATOR_PROTOCOL, encode_frame(Channel.BATCH, b"a batch")),
            (REQUEST_PROTOCOL, encode_request(b"\x01sync please")),
        ):
            with trio.fail_after(5):
                try:
                    stream = await host.new_stream(target, [TProtocol(protocol)])
                    await stream.write(data)
                    got = await stream.read(100)
                except Exception:  # reset by the validator (maybe mid-negotiation)
                    got = b""
            assert got == b""
        await wait_until(lambda: node.stats.dropped[DropReason.UNAUTHENTICATED] >= before + 3)
        with trio.move_on_after(0.3):
            frame = await node.inbound.receive()
            pytest.fail(f"a full node's frame was delivered: {frame}")
        assert requests == []
        assert node.stats.frames_received == 0


async def test_a_validator_is_refused_on_the_follow_protocol() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    node = network_for(keys, specs, 0)
    other = network_for(keys, specs, 1)
    node.set_follow_handler(lambda peer, data: _never())
    async with running(node, other):
        await wait_until(lambda: other.connected_peers() == [0])
        assert other._host is not None
        with trio.fail_after(5):
            try:
                stream = await other._host.new_stream(
                    ID.from_base58(node.peer_id), [TProtocol(FOLLOW_PROTOCOL)]
                )
                await stream.write(encode_request(b"hello"))
                got = await stream.read(100)
            except Exception:
                got = b""
        assert got == b""
        await wait_until(lambda: node.stats.dropped[DropReason.FOLLOW_REFUSED] == 1)


async def _never() -> bytes:
    raise AssertionError("the follow handler ran for a validator")


async def test_follow_requests_are_rate_limited_per_full_node() -> None:
    limits = P2PLimits(max_non_validator_connections=4, follow_requests_per_s_per_peer=3)
    node, specs = validator_with_slots(limits)
    full = full_node_for(specs)
    async with running(node, full):
        outcomes = []
        for _ in range(8):  # well within a second on any machine: at most 3 + refill
            try:
                await full.request(0, b"q", timeout=2)
                outcomes.append(True)
            except P2PError:
                outcomes.append(False)
        assert outcomes[:3] == [True, True, True]
        assert not all(outcomes)
        assert node.stats.dropped[DropReason.FOLLOW_RATE_LIMITED] >= 1


async def test_an_oversized_follow_request_is_refused_before_it_is_read() -> None:
    limits = P2PLimits(max_non_validator_connections=4, follow_max_request_bytes=1000)
    node, specs = validator_with_slots(limits)
    full = full_node_for(specs)
    async with running(node, full):
        assert await full.request(0, b"a" * 1000) == b"answer:" + b"a" * 1000
        with pytest.raises(P2PError):
            await full.request(0, b"a" * 1001, timeout=3)
        assert node.stats.dropped[DropReason.FOLLOW_REFUSED] == 1
