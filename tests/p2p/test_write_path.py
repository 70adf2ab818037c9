"""The buffered Noise session's socket write (noise.py).

A message goes to the socket descriptor in one nonblocking write first; what
the kernel does not take goes through trio's `send_all`. Messages larger than
the socket's buffers, written while the reader is not reading, must still
arrive whole and in order; a write on a closed socket is dropped as libp2p's
TCP stream drops it, and one on a reset connection fails. Socket pairs only:
no ports.
"""

from __future__ import annotations

import socket as stdlib_socket

import pytest
import trio
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection

from sequencer_net.p2p.noise import BufferedNoiseSession
from tests.p2p.test_read_path import noise_pair, stock_session


def session_pair(
    sndbuf: int | None = None,
) -> tuple[BufferedNoiseSession, BufferedNoiseSession, trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    if sndbuf is not None:
        a.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, sndbuf)
        b.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, sndbuf)
    writer_sock, reader_sock = trio.SocketStream(a), trio.SocketStream(b)
    writer_state, reader_state = noise_pair()
    writer = BufferedNoiseSession(
        stock_session(RawConnection(TrioTCPStream(writer_sock), True), writer_state, True)
    )
    reader = BufferedNoiseSession(
        stock_session(RawConnection(TrioTCPStream(reader_sock), False), reader_state, False)
    )
    return writer, reader, writer_sock, reader_sock


async def test_messages_beyond_the_socket_buffers_arrive_whole_and_in_order() -> None:
    writer, reader, writer_sock, reader_sock = session_pair(sndbuf=4096)
    messages = [bytes([i % 251]) * size for i, size in enumerate([1, 200, 70000, 3, 150000, 9])]
    total = sum(len(m) for m in messages)
    received = bytearray()
    wrote_before_reading = trio.Event()

    async def write_all() -> None:
        for message in messages:
            await writer.write(message)
        wrote_before_reading.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write_all)
            # The writer fills the socket buffers and must wait for the reader.
            await trio.sleep(0.05)
            assert not wrote_before_reading.is_set()
            while len(received) < total:
                received += await reader.read()
    assert bytes(received) == b"".join(messages)
    await writer_sock.aclose()
    await reader_sock.aclose()


async def test_a_write_on_a_closed_socket_is_dropped() -> None:
    writer, _reader, writer_sock, reader_sock = session_pair()
    await writer_sock.aclose()
    await writer.write(b"after close")  # dropped, as libp2p's TCP stream does
    await reader_sock.aclose()


async def test_a_write_on_a_reset_connection_fails() -> None:
    writer, _reader, writer_sock, reader_sock = session_pair()
    await reader_sock.aclose()
    with trio.fail_after(5), pytest.raises(ConnectionClosedError):
        for _ in range(100):  # the first write may still be taken by the kernel
            await writer.write(b"x" * 1000)
    await writer_sock.aclose()
