"""Yamux window credit is returned in batches, not one frame per message.

py-libp2p's stream sends a WINDOW_UPDATE after nearly every read;
`AtomicFrameYamux` holds a stream's credit until WINDOW_CREDIT_BATCH_BYTES
have accumulated. Over real hosts on 127.0.0.1: small messages cost the
receiver no window update each, and a transfer many windows long still
flows (the sender never waits forever for credit held back).
"""

from __future__ import annotations

import trio
from libp2p.stream_muxer.yamux.yamux import DEFAULT_WINDOW_SIZE

from sequencer_net.p2p import Channel, P2PLimits, P2PNetwork
from sequencer_net.p2p.host import WINDOW_CREDIT_BATCH_BYTES, AtomicFrameYamux
from tests.p2p.harness import (
    fully_connected,
    network_for,
    peer_ids,
    peer_specs,
    running,
    validator_keys,
    wait_until,
)


def muxers(net: P2PNetwork) -> list[AtomicFrameYamux]:
    assert net._swarm is not None
    found = []
    for conns in net._swarm.connections.values():
        for conn in conns:
            assert isinstance(conn.muxed_conn, AtomicFrameYamux)
            found.append(conn.muxed_conn)
    return found


def sent(net: P2PNetwork) -> int:
    return sum(m.window_updates_sent for m in muxers(net))


def held(net: P2PNetwork) -> int:
    return sum(m.window_updates_held for m in muxers(net))


async def test_small_messages_cost_no_window_update_each() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    nets = [network_for(keys, specs, i) for i in range(2)]
    assert peer_ids(keys)
    async with running(*nets):
        await wait_until(fully_connected(nets, 1))
        sent_before, held_before = sent(nets[1]), held(nets[1])
        messages, size = 100, 200
        with trio.fail_after(20):
            for i in range(messages):  # one at a time: each its own write and read
                assert nets[0].send(1, Channel.CONSENSUS, i.to_bytes(2, "big") * (size // 2))
                sender, channel, payload = await nets[1].inbound.receive()
                assert (sender, channel, payload[:2]) == (
                    0,
                    Channel.CONSENSUS,
                    i.to_bytes(2, "big"),
                )
        # 100 reads of ~205 bytes: about 20 KB of credit, under one batch; what
        # goes out is the stream's window growth (py-libp2p doubles a stream's
        # window target while it is read fast), a few large updates.
        assert messages * size < WINDOW_CREDIT_BATCH_BYTES
        assert held(nets[1]) - held_before >= messages // 2
        assert sent(nets[1]) - sent_before <= messages // 10


async def test_a_transfer_of_many_windows_flows_and_returns_credit() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    limits = P2PLimits()
    nets = [network_for(keys, specs, i, limits) for i in range(2)]
    async with running(*nets):
        await wait_until(fully_connected(nets, 1))
        sent_before = sent(nets[1])
        frame = 32 * 1024
        frames = (8 * DEFAULT_WINDOW_SIZE) // frame  # 2 MiB: eight initial windows
        with trio.fail_after(30):
            for i in range(frames):
                while not nets[0].send(1, Channel.BATCH, bytes([i % 256]) * frame):
                    await trio.sleep(0.005)  # queue full: wait for the link to drain
                if i % 8 == 7:
                    await trio.sleep(0)
            for i in range(frames):
                sender, channel, payload = await nets[1].inbound.receive()
                assert (sender, channel, len(payload), payload[0]) == (
                    0,
                    Channel.BATCH,
                    frame,
                    i % 256,
                )
        credited_batches = sent(nets[1]) - sent_before
        assert credited_batches >= (frames * frame) // (2 * WINDOW_CREDIT_BATCH_BYTES)
