"""Yamux with a lean read loop and stream fast paths; same frames on the wire.

py-libp2p 0.8.1's `Yamux.handle_incoming` reads every frame's 12-byte header
and then its body with `read_exactly` (through `SecureSession.read`), takes
the connection's stream lock and the stream's window lock (each a trip
through the scheduler) for every frame, enters a cancel scope per DATA body
read, and formats about five debug-log f-strings per frame whether debug
logging is on or not; a stream's `read` formats more and reads four
environment variables per call, and its `write` takes two locks around code
that never awaits. Per small message that was most of the muxer's CPU.

`LeanYamux` (over a `BufferedNoiseSession`, noise.py) parses each frame from
the session's plaintext buffer, touching the stream tables without locks (in
trio nothing else runs between two awaits, and every other holder of these
locks does its updates without awaiting inside them), and waits under a
deadline only when a frame has begun to arrive and is not all there yet.
`LeanYamuxStream` reads and writes with the same semantics, without the locks
around code that cannot be interrupted and without the per-call logging.

Frames, flags, stream ids and window arithmetic are yamux's (the stock code's
credit arithmetic is kept as is, with its tuning environment read once at
import). Hostile input, checked on the header before any body byte is read:
- a DATA frame longer than its stream's receive window (what this side has
  counted as credit, never less than what it told the peer) closes the
  connection; py-libp2p only logged and accepted it, so a peer ignoring
  flow control could grow a stream's buffer without bound;
- a DATA frame for an unknown stream longer than yamux's largest window
  (16 MiB) closes the connection (its body is read and dropped otherwise);
- once any byte of a frame has arrived, the rest must arrive within
  `FRAME_READ_TIMEOUT_S` (py-libp2p's own 60 s DATA-body bound, now also on
  the header and the Noise message around it), else the connection closes.
An idle connection waits for a frame's first byte without a deadline (the
validator link's keepalive bounds silence).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

import trio
from libp2p.io.exceptions import ConnectionClosedError, IOException
from libp2p.network.connection.exceptions import RawConnError
from libp2p.stream_muxer.exceptions import MuxedStreamEOF, MuxedStreamError, MuxedStreamReset
from libp2p.stream_muxer.yamux import yamux as _stock
from libp2p.stream_muxer.yamux.yamux import (
    DEFAULT_WINDOW_SIZE,
    FLAG_ACK,
    FLAG_FIN,
    FLAG_RST,
    FLAG_SYN,
    HEADER_SIZE,
    MAX_MESSAGE_SIZE,
    MAX_WINDOW_SIZE,
    TYPE_DATA,
    TYPE_GO_AWAY,
    TYPE_PING,
    TYPE_WINDOW_UPDATE,
    YAMUX_HEADER_FORMAT,
    Yamux,
    YamuxStream,
)

from sequencer_net.p2p.noise import BufferedNoiseSession

log = logging.getLogger("seqnet.p2p")

_HEADER = struct.Struct(YAMUX_HEADER_FORMAT)

FRAME_READ_TIMEOUT_S = _stock._yamux_data_read_timeout()
"""Once a frame has begun to arrive, the longest the rest may take (py-libp2p's
DATA-body bound, 60 s unless PY_YAMUX_DATA_READ_TIMEOUT says otherwise)."""

# py-libp2p reads these tuning variables on every stream read; read once here.
_DISABLE_HYSTERESIS = _stock._yamux_disable_hysteresis()
_BATCH_THRESHOLD_DIV = _stock._yamux_batch_threshold_divisor()
_RELEASE_ON_READ = _stock._yamux_release_on_read()


class YamuxProtocolError(Exception):
    """The peer broke yamux's rules: the connection is closed."""


class LeanYamuxStream(YamuxStream):
    """A yamux stream whose `read(n)` and `write` skip py-libp2p's per-call
    locks and logging; reads with n=-1 (until the end) use py-libp2p's code."""

    def _grow_threshold(self) -> int:
        if _DISABLE_HYSTERESIS:
            return 0
        return self.target_recv_window // _BATCH_THRESHOLD_DIV

    def _credit(self, bytes_read: int) -> int:
        """py-libp2p's `_auto_tune_and_send_window_update` arithmetic, without
        its lock (nothing here awaits): the increment to send, already counted
        in `recv_window`."""
        if bytes_read > 0:
            self._pending_recv_release += bytes_read
        buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
        delta = self.target_recv_window - (self.recv_window + buffered)
        threshold = self._grow_threshold()
        pending = self._pending_recv_release
        total = 0
        if delta >= threshold and delta > 0:
            self._window_update_full_grow += 1
            total = self._grow_to_delta(buffered)
            total += self._apply_autotune_epoch(buffered)
            self._pending_recv_release = 0
        elif pending >= threshold:
            self.recv_window += pending
            total = pending
            self._pending_recv_release = 0
            self._window_update_pending_flush += 1
            total += self._apply_autotune_epoch(buffered)
        elif 0 < delta < threshold and bytes_read > 0:
            self._window_update_partial_slack += 1
            self.recv_window += delta + bytes_read
            total = delta + bytes_read
            self._pending_recv_release -= bytes_read
            total += self._apply_autotune_epoch(buffered)
        elif _RELEASE_ON_READ and bytes_read > 0:
            self.recv_window += bytes_read
            total = bytes_read
            self._pending_recv_release -= bytes_read
            self._window_update_bytes_read_only += 1
            total += self._apply_autotune_epoch(buffered)
        return total

    async def _auto_tune_and_send_window_update(self, *, bytes_read: int = 0) -> None:
        total = self._credit(bytes_read)
        if total > 0:
            await self.send_window_update(total)

    async def send_window_update(self, increment: int, skip_lock: bool = False) -> None:
        if increment <= 0:
            return
        header = _HEADER.pack(0, TYPE_WINDOW_UPDATE, 0, self.stream_id, increment)
        try:
            await self.conn._write_frame(header)
        except ConnectionClosedError:
            return  # the data was read; the connection is going anyway
        except (RawConnError, IOException) as exc:
            text = str(exc).lower()
            if "connection closed" in text or "closed by peer" in text or "is closed" in text:
                return
            raise

    async def read(self, n: int | None = -1) -> bytes:
        if n is None or n == -1:
            return await super().read(n)
        conn = self.conn
        sid = self.stream_id
        while True:
            if sid not in conn.streams:
                raise MuxedStreamEOF("Stream closed")
            if conn.event_shutting_down.is_set():
                raise MuxedStreamEOF("Connection shut down")
            buffer = conn.stream_buffers.get(sid)
            if buffer is None:
                if self.reset_received:
                    raise MuxedStreamReset("Stream was reset")
                raise MuxedStreamEOF("Stream buffer closed")
            # py-libp2p's order: data after the peer's FIN is still read, a
            # reset discards what was buffered.
            if buffer and (self.recv_closed or not self.reset_received):
                if n >= len(buffer):
                    data = bytes(buffer)
                    buffer.clear()
                else:
                    data = bytes(buffer[:n])
                    del buffer[:n]
                if self.closed:
                    conn._finalize_stream_locked(self, fully_closed=True)
                break
            if self.reset_received:
                raise MuxedStreamReset("Stream was reset")
            if self.recv_closed:
                raise MuxedStreamEOF("Stream is closed for receiving")
            if self.closed:
                raise MuxedStreamReset("Stream is reset or closed")
            event = conn.stream_events.get(sid)
            if event is None:
                raise MuxedStreamEOF("Stream was removed")
            await event.wait()
            if sid in conn.stream_events:
                conn.stream_events[sid] = trio.Event()
        total = self._credit(len(data))
        if total > 0:
            await self.send_window_update(total)
        return data

    async def write(self, data: bytes) -> None:
        if self.send_closed:
            raise MuxedStreamError("Stream is closed for sending")
        total_len = len(data)
        sent = 0
        conn = self.conn
        while sent < total_len:
            # Nothing between these checks and the frame's construction awaits,
            # so py-libp2p's two locks around it guarded nothing.
            if self.send_closed:
                raise MuxedStreamError("Stream is closed for sending")
            if self.closed:
                raise MuxedStreamError("Stream is closed")
            if self.send_window <= 0:
                await self._wait_for_window()
                continue
            size = min(self.send_window, MAX_MESSAGE_SIZE - HEADER_SIZE, total_len - sent)
            self.send_window -= size
            header = _HEADER.pack(0, TYPE_DATA, 0, self.stream_id, size)
            await conn._write_frame(header + data[sent : sent + size])
            sent += size

    async def _wait_for_window(self) -> None:
        """py-libp2p's wait for send credit: poll every 10 ms, give up after 5 s."""
        self._zero_window_waits += 1
        with trio.move_on_after(5.0) as scope:
            while self.send_window <= 0 and not self.closed:
                await trio.sleep(0.01)
        if scope.cancelled_caught:
            raise MuxedStreamError("Timed out waiting for window update after 5 seconds.")


class LeanYamux(Yamux):
    """Yamux reading frames straight from a `BufferedNoiseSession`'s buffer.

    Over any other secure connection it runs py-libp2p's loop unchanged."""

    stream_class: type[YamuxStream] = LeanYamuxStream

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.protocol_errors = 0
        self.on_protocol_error: Callable[[], None] | None = None
        """Told each time this connection is closed for breaking the read rules
        (the p2p stats' `protocol_errors`, which outlive the connection)."""

    async def open_stream(self) -> YamuxStream:
        await self.stream_backlog_semaphore.acquire()
        if self.event_shutting_down.is_set():
            self.stream_backlog_semaphore.release()
            raise MuxedStreamError("Connection is shutting down")
        stream_id = self.next_stream_id
        self.next_stream_id += 2
        stream = self.stream_class(stream_id, self, True)
        stream._owns_backlog_slot = True
        self.streams[stream_id] = stream
        self.stream_buffers[stream_id] = bytearray()
        self.stream_events[stream_id] = trio.Event()
        try:
            await self._write_frame(_HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_SYN, stream_id, 0))
        except Exception as exc:
            if not stream._backlog_slot_released:
                stream._backlog_slot_released = True
                self.stream_backlog_semaphore.release()
            self.streams.pop(stream_id, None)
            self.stream_buffers.pop(stream_id, None)
            self.stream_events.pop(stream_id, None)
            raise MuxedStreamError(f"Failed to send SYN: {exc}") from exc
        return stream

    async def handle_incoming(self) -> None:
        session = self.secured_conn
        if not isinstance(session, BufferedNoiseSession):
            await super().handle_incoming()
            return
        try:
            await self._read_frames(session)
        except Exception as exc:
            # The connection's end (clean or not), a broken or undecryptable
            # message, a stalled frame, a rule broken: the connection is done.
            if isinstance(exc, YamuxProtocolError | trio.TooSlowError):
                self.protocol_errors += 1
                if self.on_protocol_error is not None:
                    self.on_protocol_error()
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "yamux_read_ended peer_id=%s reason=%s %s",
                    self.peer_id,
                    type(exc).__name__,
                    exc,
                )
        self.event_shutting_down.set()
        await self._cleanup_on_error()

    async def _read_rest(self, session: BufferedNoiseSession, n: int) -> bytes:
        """`n` bytes of a frame that has begun to arrive, under the frame deadline."""
        # A bare CancelScope: trio.fail_after's generator wrapper costs as much again.
        with trio.CancelScope(deadline=trio.current_time() + FRAME_READ_TIMEOUT_S):
            return await session.read_exactly(n)
        raise trio.TooSlowError(f"a frame's {n} bytes took over {FRAME_READ_TIMEOUT_S} s")

    async def _read_frames(self, session: BufferedNoiseSession) -> None:
        """Frames until the connection ends (raises) or the peer says GO_AWAY."""
        unpack = _HEADER.unpack
        streams = self.streams
        buffers = self.stream_buffers
        events = self.stream_events
        shutting_down = self.event_shutting_down
        while not shutting_down.is_set():
            header = session.take_buffered(HEADER_SIZE)
            if header is None:
                if not session.pending_bytes():
                    # Idle: wait for the next frame's first bytes, however long.
                    await session.receive_more()
                    header = session.take_buffered(HEADER_SIZE)
                if header is None:
                    header = await self._read_rest(session, HEADER_SIZE)
            _version, typ, flags, sid, length = unpack(header)
            if typ == TYPE_DATA:
                stream = streams.get(sid)
                if stream is not None and not flags & FLAG_SYN:
                    if length > stream.recv_window:
                        raise YamuxProtocolError(
                            f"DATA of {length} bytes on stream {sid} exceeds its "
                            f"receive window of {stream.recv_window}"
                        )
                elif length > (DEFAULT_WINDOW_SIZE if flags & FLAG_SYN else MAX_WINDOW_SIZE):
                    raise YamuxProtocolError(f"DATA of {length} bytes on stream {sid}")
                body = b""
                if length:
                    buffered = session.take_buffered(length)
                    body = (
                        buffered
                        if buffered is not None
                        else (await self._read_rest(session, length))
                    )
                if flags == 0:
                    # The common case: data on an open stream.
                    if stream is not None:
                        buffer = buffers.get(sid)
                        if buffer is not None:
                            buffer += body
                            stream.recv_window -= length
                            event = events.get(sid)
                            if event is not None:
                                event.set()
                    continue
            elif typ == TYPE_WINDOW_UPDATE:
                body = b""
                if flags == 0:
                    stream = streams.get(sid)
                    if stream is not None:
                        stream.send_window += length
                    continue
            elif typ == TYPE_PING:
                if flags & FLAG_SYN:
                    await self._write_frame(_HEADER.pack(0, TYPE_PING, FLAG_ACK, 0, length))
                elif flags & FLAG_ACK:
                    rtt = trio.current_time() - self._ping_sent_time
                    self._rtt = rtt if self._rtt == 0.0 else (self._rtt + rtt) / 2
                    self._ping_event.set()
                continue
            elif typ == TYPE_GO_AWAY:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("yamux_go_away peer_id=%s code=%d", self.peer_id, length)
                return
            else:
                continue  # an unknown type, ignored as py-libp2p does
            if flags & FLAG_SYN:
                await self._open_remote_stream(typ, flags, sid, length, body)
            else:
                stream = streams.get(sid)
                if stream is not None:
                    self._apply_flags(stream, typ, flags, length, body)

    def _apply_flags(
        self, stream: YamuxStream, typ: int, flags: int, length: int, body: bytes
    ) -> None:
        """A DATA or WINDOW_UPDATE frame with ACK, FIN or RST on a known stream."""
        sid = stream.stream_id
        if typ == TYPE_DATA:
            buffer = self.stream_buffers.get(sid)
            if buffer is not None and body:
                buffer += body
                stream.recv_window -= len(body)
        else:
            stream.send_window += length
        if flags & FLAG_FIN:
            stream.recv_closed = True
            if stream.send_closed:
                stream.closed = True
        if flags & FLAG_RST:
            stream.closed = True
            stream.reset_received = True
        event = self.stream_events.get(sid)
        if event is not None:
            event.set()
        if stream.closed:
            self._finalize_stream_locked(stream, fully_closed=True)

    async def _open_remote_stream(
        self, typ: int, flags: int, sid: int, length: int, body: bytes
    ) -> None:
        """A SYN: the peer opens stream `sid` (RST if it is already in use)."""
        if sid in self.streams:
            await self._write_frame(_HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_RST, sid, 0))
            return
        stream = self.stream_class(sid, self, False)
        self.streams[sid] = stream
        self.stream_buffers[sid] = bytearray()
        self.stream_events[sid] = trio.Event()
        if typ == TYPE_WINDOW_UPDATE:
            stream.send_window += length
        elif body:
            self.stream_buffers[sid] += body
            stream.recv_window -= len(body)
            self.stream_events[sid].set()
        if flags & FLAG_FIN:
            stream.recv_closed = True
            self.stream_events[sid].set()
        if flags & FLAG_RST:
            # Reset on arrival: delivered so accept_stream sees it, never ACKed.
            stream.closed = True
            stream.reset_received = True
            self.stream_events[sid].set()
            self._finalize_stream_locked(stream, fully_closed=True)
        else:
            await self._write_frame(_HEADER.pack(0, TYPE_WINDOW_UPDATE, FLAG_ACK, sid, 0))
        await self.new_stream_send_channel.send(stream)
