"""The buffered Noise session and the lean yamux read loop (noise.py, muxer.py).

Same bytes on the wire as py-libp2p's Noise and yamux, in both directions and
under any split of the byte stream; hostile input (a message that does not
decrypt, a frame larger than its window, a truncated frame, a peer stalling
mid-frame) ends the connection without delivering anything of it. Runs over
in-memory byte sources and socket pairs: no ports.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import pytest
import trio
from libp2p.crypto.secp256k1 import create_new_key_pair
from libp2p.io.exceptions import IncompleteReadError
from libp2p.io.trio import TrioTCPStream
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.id import ID
from libp2p.security.noise.io import NoiseTransportReadWriter
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.exceptions import MuxedStreamEOF, MuxedStreamError, MuxedStreamReset
from libp2p.stream_muxer.yamux.yamux import (
    DEFAULT_WINDOW_SIZE,
    FLAG_SYN,
    MAX_WINDOW_SIZE,
    TYPE_DATA,
    TYPE_WINDOW_UPDATE,
    YAMUX_HEADER_FORMAT,
    Yamux,
)
from noise.connection import NoiseConnection

from sequencer_net.p2p import muxer as muxer_module
from sequencer_net.p2p.host import AtomicFrameYamux
from sequencer_net.p2p.muxer import LeanYamux, LeanYamuxStream
from sequencer_net.p2p.noise import BufferedNoiseSession, NoiseMessageError

HEADER = struct.Struct(YAMUX_HEADER_FORMAT)


def noise_pair() -> tuple[NoiseConnection, NoiseConnection]:
    """Two Noise states that finished a handshake with each other."""
    a = NoiseConnection.from_name(b"Noise_NN_25519_ChaChaPoly_SHA256")
    b = NoiseConnection.from_name(b"Noise_NN_25519_ChaChaPoly_SHA256")
    a.set_as_initiator()
    b.set_as_responder()
    a.start_handshake()
    b.start_handshake()
    b.read_message(a.write_message())
    a.read_message(b.write_message())
    assert a.handshake_finished and b.handshake_finished
    return a, b


def stock_session(raw: object, state: NoiseConnection, initiator: bool) -> SecureSession:
    key = create_new_key_pair(bytes(31) + b"\x07")
    peer = ID.from_pubkey(key.public_key)
    return SecureSession(
        local_peer=peer,
        local_private_key=key.private_key,
        remote_peer=peer,
        remote_permanent_pubkey=key.public_key,
        is_initiator=initiator,
        conn=NoiseTransportReadWriter(raw, state),  # type: ignore[arg-type]
    )


def sealed(state: NoiseConnection, plaintext: bytes) -> bytes:
    """One transport message as py-libp2p's Noise writes it: length, ciphertext."""
    ciphertext = state.encrypt(plaintext)
    return len(ciphertext).to_bytes(2, "big") + ciphertext


class ChunkedRaw:
    """A raw connection that yields preset chunks, then the end of stream,
    and records what is written to it."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)
        self.written: list[bytes] = []

    async def read(self, n: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint()
        if not self.chunks:
            return b""
        chunk = self.chunks.pop(0)
        if n is not None and len(chunk) > n:
            self.chunks.insert(0, chunk[n:])
            chunk = chunk[:n]
        return chunk

    async def write(self, data: bytes) -> None:
        self.written.append(data)

    async def close(self) -> None:
        return None


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def buffered_over(chunks: list[bytes], state: NoiseConnection) -> BufferedNoiseSession:
    return BufferedNoiseSession(stock_session(ChunkedRaw(chunks), state, False))


async def test_reads_what_py_libp2p_noise_writes_under_any_split_of_the_bytes() -> None:
    pieces = [b"h" * 12, b"x" * 200, b"", b"y" * 65519, bytes(range(256)) * 40]
    for size in (1, 2, 3, 17, 1000, 70_000, 1 << 20):
        writer, reader = noise_pair()
        wire = b"".join(sealed(writer, piece) for piece in pieces)
        session = buffered_over(split(wire, size), reader)
        for piece in pieces:
            assert await session.read_exactly(len(piece)) == piece
        with pytest.raises(IncompleteReadError) as ended:
            await session.read_exactly(1)
        assert ended.value.is_clean_close
        assert session.messages_read == len(pieces)


async def test_frames_spanning_messages_and_messages_holding_many_frames() -> None:
    writer, reader = noise_pair()
    stream = b"".join(bytes([i]) * (i * 37 % 300 + 1) for i in range(200))
    wire = b"".join(sealed(writer, part) for part in split(stream, 1234))
    session = buffered_over(split(wire, 4096), reader)
    got = bytearray()
    for i in range(200):
        got += await session.read_exactly(i * 37 % 300 + 1)
    assert bytes(got) == stream


async def test_what_it_writes_py_libp2p_noise_reads() -> None:
    writer, reader = noise_pair()
    raw = ChunkedRaw([])
    ours = BufferedNoiseSession(stock_session(raw, writer, True))
    big = bytes(range(256)) * 400  # 102400 bytes: two transport messages, one socket write
    for data in (b"a", b"b" * 200, big):
        await ours.write(data)
    assert len(raw.written) == 3
    theirs = stock_session(ChunkedRaw(raw.written), reader, False)
    received = bytearray()
    while len(received) < 1 + 200 + len(big):
        received += await theirs.read()  # one transport message
    assert bytes(received) == b"a" + b"b" * 200 + big


@pytest.mark.parametrize("how", ["shorter_than_tag", "tampered", "wrong_key"])
async def test_a_message_that_does_not_decrypt_ends_the_connection(how: str) -> None:
    writer, reader = noise_pair()
    good = sealed(writer, b"first")
    if how == "shorter_than_tag":
        bad = b"\x00\x05" + b"12345"
    elif how == "tampered":
        message = bytearray(sealed(writer, b"second"))
        message[5] ^= 1
        bad = bytes(message)
    else:
        other, _ = noise_pair()
        bad = sealed(other, b"second")
    session = buffered_over([good + bad], reader)
    assert await session.read_exactly(5) == b"first"
    with pytest.raises(NoiseMessageError):
        await session.read_exactly(1)


async def test_the_connection_ending_inside_a_message_is_not_a_clean_end() -> None:
    writer, reader = noise_pair()
    wire = sealed(writer, b"whole") + sealed(writer, b"cut short")[:-3]
    session = buffered_over(split(wire, 5), reader)
    assert await session.read_exactly(5) == b"whole"
    with pytest.raises(IncompleteReadError) as ended:
        await session.read_exactly(1)
    assert not ended.value.is_clean_close


# -- yamux over a socket pair ------------------------------------------------------


class Peer:
    """The far end of a connection, writing yamux frames by hand through
    py-libp2p's own Noise session (one transport message per write)."""

    def __init__(self, session: SecureSession, sock: trio.SocketStream) -> None:
        self.session = session
        self.sock = sock

    async def frame(self, typ: int, flags: int, sid: int, length: int, body: bytes = b"") -> None:
        await self.session.write(HEADER.pack(0, typ, flags, sid, length) + body)

    async def raw(self, data: bytes) -> None:
        await self.sock.send_all(data)


@asynccontextmanager
async def lean_muxer() -> AsyncIterator[tuple[LeanYamux, Peer, NoiseConnection]]:
    """Our muxer (responder) on one end of a socket pair; the peer on the other."""
    a, b = trio.socket.socketpair()
    ours_sock, theirs_sock = trio.SocketStream(a), trio.SocketStream(b)
    theirs_state, ours_state = noise_pair()
    ours = BufferedNoiseSession(
        stock_session(RawConnection(TrioTCPStream(ours_sock), False), ours_state, False)
    )
    theirs = stock_session(RawConnection(TrioTCPStream(theirs_sock), True), theirs_state, True)
    muxer = AtomicFrameYamux(ours, ours.remote_peer, is_initiator=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(muxer.start)
        await muxer.event_started.wait()
        try:
            yield muxer, Peer(theirs, theirs_sock), theirs_state
        finally:
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await theirs_sock.aclose()
                await ours_sock.aclose()


async def accepted(muxer: LeanYamux, peer: Peer, sid: int) -> LeanYamuxStream:
    await peer.frame(TYPE_WINDOW_UPDATE, FLAG_SYN, sid, 0)
    with trio.fail_after(5):
        stream = await muxer.accept_stream()
    assert isinstance(stream, LeanYamuxStream)
    return stream


async def test_data_beyond_the_stream_window_closes_the_connection_before_its_body() -> None:
    async with lean_muxer() as (muxer, peer, _):
        stream = await accepted(muxer, peer, 1)
        await peer.frame(TYPE_DATA, 0, 1, 100, b"z" * 100)
        assert await stream.read(1000) == b"z" * 100
        # Announce more than the window holds (reading grew it past the
        # initial one: yamux's auto-tuning); send none of it.
        assert stream.recv_window > DEFAULT_WINDOW_SIZE
        await peer.frame(TYPE_DATA, 0, 1, stream.recv_window + 1)
        with trio.fail_after(5):
            await muxer.event_closed.wait()
        assert muxer.protocol_errors == 1
        with pytest.raises((MuxedStreamEOF, MuxedStreamReset)):
            await stream.read(1000)


@pytest.mark.parametrize(
    ("flags", "sid", "length"),
    [(FLAG_SYN, 3, DEFAULT_WINDOW_SIZE + 1), (0, 99, MAX_WINDOW_SIZE + 1)],
    ids=["new_stream_beyond_initial_window", "unknown_stream_beyond_largest_window"],
)
async def test_oversized_data_on_new_or_unknown_streams_closes_the_connection(
    flags: int, sid: int, length: int
) -> None:
    async with lean_muxer() as (muxer, peer, _):
        await peer.frame(TYPE_DATA, flags, sid, length)
        with trio.fail_after(5):
            await muxer.event_closed.wait()
        assert muxer.protocol_errors == 1
        assert sid not in muxer.streams


async def test_a_truncated_frame_delivers_nothing_and_closes_the_connection() -> None:
    async with lean_muxer() as (muxer, peer, _):
        stream = await accepted(muxer, peer, 1)
        await peer.frame(TYPE_DATA, 0, 1, 100, b"p" * 50)  # 50 of 100 bytes, then the end
        await peer.sock.send_eof()
        with trio.fail_after(5):
            await muxer.event_closed.wait()
        with pytest.raises((MuxedStreamEOF, MuxedStreamReset)):
            await stream.read(1000)


@pytest.mark.parametrize("where", ["yamux_body", "yamux_header", "noise_message"])
async def test_a_peer_stalling_mid_frame_is_cut_off_but_an_idle_one_is_not(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(muxer_module, "FRAME_READ_TIMEOUT_S", 0.3)
    async with lean_muxer() as (muxer, peer, state):
        stream = await accepted(muxer, peer, 1)
        await trio.sleep(1.0)  # idle for over three deadlines: kept
        assert not muxer.event_closed.is_set()
        await peer.frame(TYPE_DATA, 0, 1, 3, b"abc")
        assert await stream.read(10) == b"abc"
        if where == "yamux_body":
            await peer.frame(TYPE_DATA, 0, 1, 100, b"q" * 40)
        elif where == "yamux_header":
            await peer.session.write(HEADER.pack(0, TYPE_DATA, 0, 1, 100)[:7])
        else:
            await peer.raw(sealed(state, HEADER.pack(0, TYPE_DATA, 0, 1, 2) + b"zz")[:9])
        with trio.fail_after(5):
            await muxer.event_closed.wait()
        assert muxer.protocol_errors == 1
        with pytest.raises((MuxedStreamEOF, MuxedStreamReset)):
            await stream.read(10)


async def test_interoperates_with_py_libp2p_yamux_and_noise_both_ways() -> None:
    """Stock Noise + stock yamux on one end, ours on the other: streams opened
    from each side carry small messages and transfers several windows long
    (so window credit must flow), and end with FIN and with a reset."""
    a, b = trio.socket.socketpair()
    ours_sock, theirs_sock = trio.SocketStream(a), trio.SocketStream(b)
    theirs_state, ours_state = noise_pair()
    ours_session = BufferedNoiseSession(
        stock_session(RawConnection(TrioTCPStream(ours_sock), False), ours_state, False)
    )
    theirs_session = stock_session(
        RawConnection(TrioTCPStream(theirs_sock), True), theirs_state, True
    )
    ours = AtomicFrameYamux(ours_session, ours_session.remote_peer, is_initiator=False)
    theirs = Yamux(theirs_session, theirs_session.remote_peer, is_initiator=True)
    big = bytes(range(256)) * 3000  # 768000 bytes: three initial windows

    async def echo_all(muxer: Yamux) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    stream = await muxer.accept_stream()
                except Exception:
                    return
                nursery.start_soon(echo, stream)

    async def echo(stream: object) -> None:
        got = bytearray()
        try:
            while True:
                chunk = await stream.read(65536)  # type: ignore[attr-defined]
                if not chunk:
                    break
                got += chunk
        except MuxedStreamEOF:
            pass
        except MuxedStreamReset:
            return
        with suppress(MuxedStreamError):  # a stream the opener reset
            await stream.write(bytes(got))  # type: ignore[attr-defined]
            await stream.close()  # type: ignore[attr-defined]

    async def round_trip(muxer: Yamux, data: bytes) -> bytes:
        stream = await muxer.open_stream()
        await stream.write(data)
        await stream.close()
        got = bytearray()
        try:
            while len(got) < len(data):
                got += await stream.read(65536)
        except MuxedStreamEOF:
            pass
        return bytes(got)

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ours.start)
                nursery.start_soon(theirs.start)
                await ours.event_started.wait()
                await theirs.event_started.wait()
                nursery.start_soon(echo_all, ours)
                nursery.start_soon(echo_all, theirs)
                for data in (b"m" * 200, big):
                    assert await round_trip(theirs, data) == data  # stock opens, ours echoes
                    assert await round_trip(ours, data) == data  # ours opens, stock echoes
                # Many small messages on one stream each way, one at a time.
                for opener in (ours, theirs):
                    stream = await opener.open_stream()
                    for i in range(300):
                        await stream.write(i.to_bytes(2, "big") * 100)
                    await stream.close()
                    got = bytearray()
                    try:
                        while len(got) < 300 * 200:
                            got += await stream.read(65536)
                    except MuxedStreamEOF:
                        pass
                    assert bytes(got) == b"".join(i.to_bytes(2, "big") * 100 for i in range(300))
                # A reset from either side reaches the other.
                for opener, other in ((ours, theirs), (theirs, ours)):
                    stream = await opener.open_stream()
                    await stream.write(b"x")
                    await trio.sleep(0.05)
                    await stream.reset()
                    sid = stream.stream_id
                    with trio.fail_after(5):
                        while sid in other.streams:  # the RST closed it there too
                            await trio.sleep(0.01)
                assert not ours.event_closed.is_set() and not theirs.event_closed.is_set()
                assert ours.protocol_errors == 0
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await theirs_sock.aclose()
            await ours_sock.aclose()
