"""A yamux frame write is never cut short by a cancelled caller.

Each frame is one Noise message, numbered as it is encrypted, before the
socket write: a write abandoned at that point would leave a number the peer
never sees, and the peer would drop the whole connection. `AtomicFrameYamux`
finishes every write it starts (or, stalled past its bound, closes the
connection)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from libp2p.peer.id import ID
from libp2p.stream_muxer.exceptions import MuxedConnUnavailable
from libp2p.stream_muxer.yamux.yamux import Yamux
from trio.testing import MockClock

from sequencer_net.p2p.host import FRAME_WRITE_TIMEOUT_S, AtomicFrameYamux


class NumberingConn:
    """A secure connection that numbers each message before it awaits the
    socket, as Noise does; `stall` holds each socket write that long."""

    is_initiator = True

    def __init__(self, stall: float) -> None:
        self.stall = stall
        self.numbered: list[bytes] = []
        self.delivered: list[bytes] = []
        self.closed = False

    async def write(self, data: bytes) -> None:
        self.numbered.append(data)
        await trio.sleep(self.stall)
        self.delivered.append(data)

    async def close(self) -> None:
        self.closed = True


def muxer(kind: type[Yamux], conn: NumberingConn) -> Yamux:
    secured: Any = conn
    return kind(secured, ID(b"\x00\x25" + b"\x01" * 37), is_initiator=True)


async def write_then_cancel(mux: Yamux) -> None:
    with trio.move_on_after(0.01):
        await mux._write_frame(b"\x00" * 12 + b"frame")


async def test_a_cancelled_caller_leaves_a_numbered_frame_unsent_in_plain_yamux(
    autojump_clock: MockClock,
) -> None:
    conn = NumberingConn(stall=0.05)
    await write_then_cancel(muxer(Yamux, conn))
    assert len(conn.numbered) == 1 and conn.delivered == []  # the peer would desync


async def test_a_cancelled_caller_cannot_cut_a_frame_short(autojump_clock: MockClock) -> None:
    conn = NumberingConn(stall=0.05)
    await write_then_cancel(muxer(AtomicFrameYamux, conn))
    assert conn.delivered == conn.numbered and len(conn.numbered) == 1
    assert not conn.closed


async def test_a_stalled_frame_write_closes_the_connection(autojump_clock: MockClock) -> None:
    conn = NumberingConn(stall=FRAME_WRITE_TIMEOUT_S * 2)
    mux = muxer(AtomicFrameYamux, conn)
    with pytest.raises(MuxedConnUnavailable):
        await mux._write_frame(b"\x00" * 12 + b"frame")
    assert conn.closed and mux.event_shutting_down.is_set()
