"""P2PNetwork on real libp2p hosts over 127.0.0.1, all in one trio process.

Every wait is bounded by trio.fail_after; no test asserts a duration.
"""

from __future__ import annotations

import logging
import socket
import struct

import pytest
import trio
from libp2p import new_host
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
from libp2p.stream_muxer.yamux.yamux import (
    DEFAULT_WINDOW_SIZE,
    FLAG_SYN,
    TYPE_DATA,
    YAMUX_HEADER_FORMAT,
    Yamux,
)
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from multiaddr import Multiaddr

from sequencer_net.p2p import (
    REQUEST_PROTOCOL,
    VALIDATOR_PROTOCOL,
    Channel,
    DropReason,
    P2PLimits,
    PayloadTooLarge,
    RefusalReason,
    RequestFailed,
    RequestTimeout,
    UnknownPeer,
)
from sequencer_net.p2p.framing import FRAME_HEADER, encode_frame
from sequencer_net.p2p.host import AtomicFrameYamux, build_validator_host, key_pair_from_secret
from tests.p2p.harness import (
    LOOPBACK,
    free_port,
    fully_connected,
    network_for,
    peer_ids,
    peer_specs,
    running,
    started,
    validator_keys,
    wait_until,
)

YAMUX_HEADER = struct.Struct(YAMUX_HEADER_FORMAT)


def addr(port: int) -> Multiaddr:
    return Multiaddr(f"/ip4/{LOOPBACK}/tcp/{port}")


async def test_broadcast_reaches_every_validator_with_sender_and_channel() -> None:
    keys = validator_keys(4)
    specs = peer_specs(keys)
    nets = [network_for(keys, specs, i) for i in range(4)]
    async with running(*nets):
        await wait_until(fully_connected(nets, 3))
        nets[2].broadcast(Channel.BATCH, b"batch-from-2")
        assert nets[0].send(3, Channel.CONSENSUS, b"vote-0-to-3")
        with trio.fail_after(10):
            for i in (0, 1):
                assert await nets[i].inbound.receive() == (2, Channel.BATCH, b"batch-from-2")
            at_3 = {await nets[3].inbound.receive() for _ in range(2)}
            assert at_3 == {
                (2, Channel.BATCH, b"batch-from-2"),
                (0, Channel.CONSENSUS, b"vote-0-to-3"),
            }
        assert nets[2].stats.frames_sent == 3


async def test_frames_queued_together_share_writes_and_arrive_in_order() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    nets = [network_for(keys, specs, i) for i in range(2)]
    async with running(*nets):
        await wait_until(fully_connected(nets, 1))
        before = nets[0].stats.writes
        payloads = [b"frame-%d" % i for i in range(50)]
        for i, payload in enumerate(payloads):  # no checkpoint: all queued at once
            channel = Channel.CONSENSUS if i % 2 else Channel.BATCH
            assert nets[0].send(1, channel, payload)
        with trio.fail_after(10):
            got = [await nets[1].inbound.receive() for _ in payloads]
        expected = [
            (0, Channel.CONSENSUS if i % 2 else Channel.BATCH, p) for i, p in enumerate(payloads)
        ]
        assert got == expected
        assert nets[0].stats.frames_sent >= 50
        assert 1 <= nets[0].stats.writes - before < 50  # joined into fewer writes


async def test_send_to_unknown_or_self_is_dropped_and_counted() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    net = network_for(keys, specs, 0)
    assert not net.send(7, Channel.CONSENSUS, b"x")
    assert not net.send(0, Channel.CONSENSUS, b"x")
    assert net.stats.dropped[DropReason.UNKNOWN_PEER] == 2
    small = network_for(keys, specs, 0, P2PLimits(max_frame_bytes=10))
    assert not small.send(1, Channel.BATCH, b"x" * 11)
    assert small.stats.dropped[DropReason.PAYLOAD_TOO_LARGE] == 1


async def test_full_send_queue_drops_instead_of_blocking() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    # Not running: nothing drains the queue, so its bound is all that applies.
    net = network_for(keys, specs, 0, P2PLimits(send_queue_frames=5))
    results = [net.send(1, Channel.CONSENSUS, b"v") for _ in range(8)]
    assert results == [True] * 5 + [False] * 3
    assert net.stats.dropped[DropReason.SEND_QUEUE_FULL] == 3


async def test_request_response_and_its_failures() -> None:
    keys = validator_keys(3)
    specs = peer_specs(keys)
    nets = [network_for(keys, specs, i, P2PLimits(max_frame_bytes=1024)) for i in range(3)]
    release = trio.Event()

    async def echo(sender: int, data: bytes) -> bytes:
        if data == b"boom":
            raise RuntimeError("handler bug")
        if data == b"stall":
            await release.wait()
        return f"{sender}:".encode() + data

    nets[1].set_request_handler(echo)
    async with running(*nets):
        with trio.fail_after(20):
            assert await nets[0].request(1, b"ping") == b"0:ping"
            assert await nets[2].request(1, b"x" * 1000) == b"2:" + b"x" * 1000
            with pytest.raises(RequestFailed, match="HANDLER_ERROR"):
                await nets[0].request(1, b"boom")
            with pytest.raises(RequestFailed, match="HANDLER_ERROR"):  # response > limit
                await nets[0].request(1, b"y" * 1023)
            with pytest.raises(RequestFailed, match="NO_HANDLER"):
                await nets[0].request(2, b"ping")
            with pytest.raises(RequestTimeout):
                await nets[0].request(1, b"stall", timeout=0.3)
            release.set()
            with pytest.raises(UnknownPeer):
                await nets[0].request(9, b"ping")
            with pytest.raises(PayloadTooLarge):
                await nets[0].request(1, b"z" * 1025)
        assert nets[1].stats.requests_served >= 3
        assert nets[0].stats.requests_failed == 4  # caller errors are not counted


async def test_concurrent_requests_are_all_answered() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    nets = [network_for(keys, specs, i) for i in range(2)]

    async def double(sender: int, data: bytes) -> bytes:
        await trio.sleep(0)
        return data * 2

    nets[1].set_request_handler(double)
    answers: dict[int, bytes] = {}

    async def ask(i: int) -> None:
        answers[i] = await nets[0].request(1, str(i).encode())

    async with running(*nets):
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for i in range(40):  # above max_concurrent_requests_per_peer: they queue
                    nursery.start_soon(ask, i)
    assert answers == {i: str(i).encode() * 2 for i in range(40)}


async def test_plaintext_dialer_is_refused() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    net = network_for(keys, specs, 0)
    intruder_pair = key_pair_from_secret(keys[1].secret)  # even with a validator's key
    plaintext_host = new_host(
        key_pair=intruder_pair,
        sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(intruder_pair)},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
    )
    # Positive control: the same plaintext dialer gets into a default libp2p host.
    default_port = free_port()
    default_host = new_host(key_pair=key_pair_from_secret(validator_keys(1, offset=50)[0].secret))
    async with (
        running(net),
        plaintext_host.run(listen_addrs=[addr(free_port())]),
        default_host.run(listen_addrs=[addr(default_port)]),
    ):
        with trio.fail_after(10):
            await plaintext_host.connect(PeerInfo(default_host.get_id(), [addr(default_port)]))
        assert default_host.get_id() in plaintext_host.get_connected_peers()

        with trio.fail_after(10), pytest.raises(Exception) as refused:
            await plaintext_host.connect(
                PeerInfo(ID.from_base58(net.peer_id), [addr(specs[0].port)])
            )
        assert not isinstance(refused.value, trio.TooSlowError)
        assert ID.from_base58(net.peer_id) not in plaintext_host.get_connected_peers()
        assert net.stats.frames_received == 0
        await plaintext_host.close()
        await default_host.close()


async def test_frames_from_a_host_outside_the_validator_set_are_never_delivered() -> None:
    keys = validator_keys(4)
    specs = peer_specs(keys)
    nets = [network_for(keys, specs, i) for i in range(4)]
    # A 5th node runs the same software with its own key and believes it is a
    # validator: it lists itself next to the real four, who do not list it.
    outsider_key = validator_keys(1, offset=100)[0]
    outsider_specs = [*specs, peer_specs([outsider_key])[0]]
    outsider_specs[4] = type(specs[0])(4, outsider_key.public_key, LOOPBACK, free_port())
    outsider = network_for([*keys, outsider_key], outsider_specs, 4)
    async with running(*nets, outsider):
        await wait_until(fully_connected(nets, 3))
        for _ in range(5):
            outsider.broadcast(Channel.CONSENSUS, b"forged")
        # Closed at the door, right after the handshake named the key: no
        # stream of the outsider ever reaches a validator's handlers.
        await wait_until(
            lambda: all(
                net.stats.connections_refused[RefusalReason.NOT_A_VALIDATOR] > 0 for net in nets
            )
        )
        nets[1].broadcast(Channel.CONSENSUS, b"genuine")
        with trio.fail_after(10):
            for i in (0, 2, 3):
                assert await nets[i].inbound.receive() == (1, Channel.CONSENSUS, b"genuine")
        assert outsider.connected_peers() == []
        for i in (0, 2, 3):
            assert nets[i].stats.frames_received == 1
        for net in nets:
            assert net.stats.dropped[DropReason.UNAUTHENTICATED] == 0
            assert ID.from_base58(outsider.peer_id) not in net._swarm.connections  # type: ignore[union-attr]


async def test_oversized_frame_resets_the_stream_and_is_counted() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    limits = P2PLimits(max_frame_bytes=1000)
    net = network_for(keys, specs, 0, limits)
    # Validator 1 with a raw host, so it can write what P2PNetwork never would.
    raw_host, _ = build_validator_host(
        key_pair_from_secret(keys[1].secret), limits, validators=peer_ids(keys)
    )
    async with running(net), raw_host.run(listen_addrs=[addr(specs[1].port)]):
        with trio.fail_after(10):
            await raw_host.connect(PeerInfo(ID.from_base58(net.peer_id), [addr(specs[0].port)]))
            stream = await raw_host.new_stream(
                ID.from_base58(net.peer_id), [TProtocol(VALIDATOR_PROTOCOL)]
            )
            await stream.write(encode_frame(Channel.CONSENSUS, b"ok"))
            assert await net.inbound.receive() == (1, Channel.CONSENSUS, b"ok")
            await stream.write(FRAME_HEADER.pack(Channel.BATCH, 1001) + b"x" * 100)
            await wait_until(lambda: net.stats.dropped[DropReason.PROTOCOL_VIOLATION] == 1)
            with pytest.raises(Exception):  # noqa: B017 - reset surfaces as a libp2p error
                for _ in range(100):
                    await stream.write(b"\x01\x00\x00\x00\x01z")
                    await trio.sleep(0.01)
        await raw_host.close()
    assert net.stats.frames_received == 1


async def test_a_connection_breaking_yamux_rules_is_closed_and_counted() -> None:
    """Validator 1 (a raw host) opens a stream with a DATA frame beyond the
    initial window: validator 0 closes the connection and counts it in its
    stats (the muxer that saw it is gone with the connection)."""
    keys = validator_keys(2)
    specs = peer_specs(keys)
    net = network_for(keys, specs, 0)
    raw_host, raw_swarm = build_validator_host(
        key_pair_from_secret(keys[1].secret), P2PLimits(), validators=peer_ids(keys)
    )
    net_id = ID.from_base58(net.peer_id)
    async with running(net), raw_host.run(listen_addrs=[addr(specs[1].port)]):
        with trio.fail_after(10):
            await raw_host.connect(PeerInfo(net_id, [addr(specs[0].port)]))
            assert net.stats.protocol_errors == 0
            muxed = raw_swarm.get_connections(net_id)[0].muxed_conn
            assert isinstance(muxed, AtomicFrameYamux)
            oversized = YAMUX_HEADER.pack(0, TYPE_DATA, FLAG_SYN, 1001, DEFAULT_WINDOW_SIZE + 1)
            await muxed._write_whole_frame(oversized)
            await wait_until(lambda: net.stats.protocol_errors == 1)
        await raw_host.close()


async def test_stalled_peer_does_not_block_the_others() -> None:
    keys = validator_keys(3)
    specs = peer_specs(keys)
    limits = P2PLimits(write_timeout_s=0.5, send_queue_frames=64, reconnect_max_s=1.0)
    nets = {i: network_for(keys, specs, i, limits) for i in (0, 1)}
    # Validator 2 accepts the stream and never reads it: its yamux window
    # fills and validator 0's writes block, as against a SIGSTOPped process.
    stalled_host, _ = build_validator_host(
        key_pair_from_secret(keys[2].secret), limits, validators=peer_ids(keys)
    )
    never = trio.Event()

    async def hold_without_reading(stream: object) -> None:
        await never.wait()

    stalled_host.set_stream_handler(TProtocol(VALIDATOR_PROTOCOL), hold_without_reading)
    async with running(nets[0], nets[1]), stalled_host.run(listen_addrs=[addr(specs[2].port)]):
        await wait_until(lambda: nets[0].connected_peers() == [1, 2])
        big = b"b" * 60_000
        received = 0
        with trio.fail_after(30):
            while nets[0].stats.write_timeouts == 0:
                nets[0].send(2, Channel.BATCH, big)  # returns at once, queued or dropped
                assert nets[0].send(1, Channel.CONSENSUS, b"vote")
                assert await nets[1].inbound.receive() == (0, Channel.CONSENSUS, b"vote")
                received += 1
                await trio.sleep(0.005)
        assert nets[0].stats.dropped[DropReason.LINK_FAILED] > 0
        assert received > 0
        never.set()
        await stalled_host.close()


async def test_links_come_back_after_a_validator_restarts() -> None:
    keys = validator_keys(3)
    specs = peer_specs(keys)
    limits = P2PLimits(reconnect_min_s=0.05, reconnect_max_s=0.5)
    a, b = network_for(keys, specs, 0, limits), network_for(keys, specs, 1, limits)
    async with running(a, b):
        async with started(network_for(keys, specs, 2, limits)) as first:
            await wait_until(lambda: a.connected_peers() == [1, 2])
            first.cancel()  # validator 2 dies; its host closes its connections
        await wait_until(lambda: a.connected_peers() == [1] and b.connected_peers() == [0])
        restarted = network_for(keys, specs, 2, limits)  # same key, same port
        async with started(restarted):
            await wait_until(fully_connected([a, b, restarted], 2))
            a.send(2, Channel.CONSENSUS, b"again")
            restarted.send(1, Channel.BATCH, b"back")
            with trio.fail_after(10):
                assert await restarted.inbound.receive() == (0, Channel.CONSENSUS, b"again")
                assert await b.inbound.receive() == (2, Channel.BATCH, b"back")
        assert a.stats.reconnects >= 1
        assert a.stats.disconnects >= 1


async def test_a_node_that_stops_reading_drops_inbound_frames_within_bounds() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    nets = [network_for(keys, specs, i, P2PLimits(inbound_queue=10)) for i in range(2)]
    async with running(*nets):
        await wait_until(fully_connected(nets, 1))
        for i in range(50):
            nets[0].send(1, Channel.CONSENSUS, i.to_bytes(2, "big"))
        await wait_until(lambda: nets[1].stats.dropped[DropReason.INBOUND_QUEUE_FULL] > 0)
        await wait_until(lambda: nets[0].stats.frames_sent == 50)
        await wait_until(
            lambda: (
                nets[1].stats.frames_received + nets[1].stats.dropped[DropReason.INBOUND_QUEUE_FULL]
                == 50
            )
        )
        # At most the buffer: the node takes frames straight from it.
        assert nets[1].stats.frames_received <= 10
        with trio.fail_after(5):
            assert await nets[1].inbound.receive() == (0, Channel.CONSENSUS, b"\x00\x00")


async def test_taking_a_frame_releases_its_bytes_and_inbound_ends_when_stopped() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    nets = [network_for(keys, specs, i, P2PLimits(inbound_queue_bytes=1000)) for i in range(2)]
    dropped = nets[1].stats.dropped
    async with running(*nets):
        await wait_until(fully_connected(nets, 1))
        for i in range(5):
            nets[0].send(1, Channel.CONSENSUS, bytes([i]) * 300)
        await wait_until(
            lambda: nets[1].stats.frames_received + dropped[DropReason.INBOUND_QUEUE_FULL] == 5
        )
        assert nets[1].stats.frames_received == 3  # 900 of the 1000 bytes
        with trio.fail_after(5):
            for i in range(3):
                assert await nets[1].inbound.receive() == (0, Channel.CONSENSUS, bytes([i]) * 300)
        for i in range(5, 8):
            nets[0].send(1, Channel.CONSENSUS, bytes([i]) * 300)
        await wait_until(lambda: nets[1].stats.frames_received == 6)
        assert dropped[DropReason.INBOUND_QUEUE_FULL] == 2
    # Stopped with three frames still buffered: `inbound` ends.
    with trio.fail_after(5), pytest.raises(trio.EndOfChannel):
        await nets[1].inbound.receive()
    with trio.fail_after(5):
        assert [frame async for frame in nets[1].inbound] == []


async def test_inbound_rate_limit_drops_excess_frames() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    limits = P2PLimits(max_inbound_frames_per_s=5)
    nets = [network_for(keys, specs, i, limits) for i in range(2)]
    async with running(*nets):
        await wait_until(fully_connected(nets, 1))
        for _ in range(100):
            nets[0].send(1, Channel.CONSENSUS, b"flood")
        await wait_until(lambda: nets[1].stats.dropped[DropReason.RATE_LIMITED] > 0)
        assert nets[1].stats.frames_received < 100


async def test_stopping_releases_the_port_and_survives_traffic_in_flight() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    limits = P2PLimits(reconnect_min_s=0.05, reconnect_max_s=0.2)
    sender = network_for(keys, specs, 0, limits)
    async with running(sender):
        for _round in range(3):
            receiver = network_for(keys, specs, 1, limits)
            async with started(receiver) as scope:
                await wait_until(lambda: sender.connected_peers() == [1])
                for i in range(200):
                    sender.send(1, Channel.BATCH, b"m" * 1000)
                    if i == 100:
                        scope.cancel()  # stop while frames are arriving
                    await trio.sleep(0)
            assert receiver.connected_peers() == []
    # host.close() ran: the listening port can be bound again.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, specs[1].port))


async def test_repeated_protocol_violations_log_one_line_not_a_flood(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    limits = P2PLimits(max_frame_bytes=1000)
    net = network_for(keys, specs, 0, limits)
    raw_host, _ = build_validator_host(
        key_pair_from_secret(keys[1].secret), limits, validators=peer_ids(keys)
    )
    node_id = ID.from_base58(net.peer_id)
    caplog.set_level(logging.INFO, logger="seqnet.p2p")
    async with running(net), raw_host.run(listen_addrs=[addr(specs[1].port)]):
        with trio.fail_after(30):
            await raw_host.connect(PeerInfo(node_id, [addr(specs[0].port)]))
            for _ in range(50):  # a validator sending oversized requests in a loop
                stream = await raw_host.new_stream(node_id, [TProtocol(REQUEST_PROTOCOL)])
                await stream.write((10_000).to_bytes(4, "big"))
            await wait_until(lambda: net.stats.dropped[DropReason.PROTOCOL_VIOLATION] == 50)
        await raw_host.close()
    violations = [r for r in caplog.records if r.getMessage().startswith("protocol_violation")]
    assert len(violations) == 1  # the first; the other 49 wait for the interval's count
    assert net.stats.log_lines_suppressed >= 49
