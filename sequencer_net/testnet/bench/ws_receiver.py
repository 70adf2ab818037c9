"""A light WebSocket receiver for benchmarks: each message timed on arrival.

`seqnet bench subscribers` runs 100 subscribers in one client process on the
same cores as the validators. With a full client library (framing, message
reassembly, a channel per connection, a 4 KiB read buffer) that process's own
work per message delays when the later connections' messages are looked at,
and so their timestamps, by tens of milliseconds: the figure then measures the
client as much as the node. This receiver does only what reading a server's
text messages needs (RFC 6455: the opening handshake, unmasked frames,
fragments joined, pings answered, the close frame's code and reason) and
stamps each message with the time the read that completed it returned, before
anything decodes it.

It is for a benchmark's own loopback connections, not a general client: it
does not check the handshake's accept key; a message may be up to
`max_message` bytes.
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
from collections.abc import AsyncGenerator

import trio

__all__ = ["Closed", "LightReceiver", "client_frame", "masked"]

RECEIVE_BYTES = 256 * 1024
MAX_HEAD_BYTES = 16 * 1024
_TEXT, _BINARY, _CONTINUATION = 0x1, 0x2, 0x0
_CLOSE, _PING, _PONG = 0x8, 0x9, 0xA


class Closed(Exception):
    """The connection ended: `code` and `reason` of the server's close frame
    (None and "" when it ended without one)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed: {code} {reason}")
        self.code = code
        self.reason = reason


def masked(payload: bytes, mask: bytes) -> bytes:
    """`payload` XORed with the 4-byte `mask` repeated (RFC 6455, 5.3), as one
    big-integer XOR: a few microseconds for tens of KiB, where a loop over the
    bytes costs milliseconds."""
    size = len(payload)
    if not size:
        return b""
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(size, "little")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final frame as a client sends it: masked with a random key from os.urandom."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + masked(payload, mask)


class LightReceiver:
    """One subscription's connection: `open` it, then iterate `messages`."""

    def __init__(self, stream: trio.abc.Stream, max_message: int) -> None:
        self.stream = stream
        self.max_message = max_message
        self._buffer = bytearray()

    async def open(self, host: str, target: str) -> None:
        """The opening handshake; bytes after the server's answer are kept."""
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await self.stream.send_all(request.encode())
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise Closed(None, "handshake answer too long")
            data = await self.stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise Closed(None, "connection ended during the handshake")
            self._buffer += data
        end = self._buffer.index(b"\r\n\r\n") + 4
        status = bytes(self._buffer[: self._buffer.index(b"\r\n")])
        del self._buffer[:end]
        if status.split(b" ")[1:2] != [b"101"]:
            raise Closed(None, f"handshake refused: {status.decode(errors='replace')}")

    async def _send_frame(self, frame: bytes) -> None:
        """Send one whole frame (the answer to a ping or a close)."""
        await self.stream.send_all(frame)

    def _frame(self) -> tuple[int, bool, bytes] | None:
        """(opcode, fin, payload) of the first whole frame in the buffer,
        taken out of it; None until one is whole."""
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first, second = buffer[0], buffer[1]
        size, head = second & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                return None
            size, head = int.from_bytes(buffer[2:4], "big"), 4
        elif size == 127:
            if len(buffer) < 10:
                return None
            size, head = int.from_bytes(buffer[2:10], "big"), 10
        if second & 0x80:
            raise Closed(None, "the server masked a frame")
        if size > self.max_message:
            raise Closed(None, f"a frame of {size} bytes")
        if len(buffer) < head + size:
            return None
        payload = bytes(buffer[head : head + size])
        del buffer[: head + size]
        return first & 0x0F, bool(first & 0x80), payload

    async def messages(self) -> AsyncGenerator[tuple[bytes, float], None]:
        """Each data message's payload with the unix time it arrived (the read
        that completed it returned); ends by raising Closed."""
        parts: list[bytes] = []
        arrived = time.time()
        while True:
            frame = self._frame()
            if frame is None:
                data = await self.stream.receive_some(RECEIVE_BYTES)
                arrived = time.time()
                if not data:
                    raise Closed(None, "connection ended without a close frame")
                self._buffer += data
                continue
            opcode, fin, payload = frame
            if opcode == _PING:
                await self._send_frame(client_frame(_PONG, payload))
            elif opcode == _CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                reason = payload[2:].decode(errors="replace")
                # The close echoed; a server that has gone already is no matter.
                gone = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
                with trio.move_on_after(1.0), contextlib.suppress(*gone):
                    await self._send_frame(client_frame(_CLOSE, payload[:2]))
                raise Closed(code, reason)
            elif opcode in (_TEXT, _BINARY, _CONTINUATION):
                parts.append(payload)
                if sum(len(part) for part in parts) > self.max_message:
                    raise Closed(None, "a message over the size limit")
                if fin:
                    message = parts[0] if len(parts) == 1 else b"".join(parts)
                    parts = []
                    yield message, arrived
