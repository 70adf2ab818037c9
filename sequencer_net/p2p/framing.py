"""Wire format of the validator protocols (see docs/p2p.md, "Protocols and framing").

`/seqnet/validator/1.0.0`, one long-lived stream per peer and direction, carries
frames::

    channel (1 byte) | length (4 bytes, big-endian) | payload (length bytes)

`/seqnet/request/1.0.0`, one stream per request, carries one request::

    length (4 bytes, big-endian) | payload

answered by one response::

    status (1 byte) | length (4 bytes, big-endian) | payload

Channel byte 0 is a link-level ping: the receiver writes the same frame back
on the same stream (the only bytes that ever travel against an outbound
stream) and never delivers it. A sender that sees no echo within the keepalive
timeout declares the link dead, which catches peers that stopped without
closing their sockets.

A reader checks every length against the limit before it reads the payload, so
a peer cannot make it buffer more than one read chunk past a bad header.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Awaitable, Callable

from sequencer_net.p2p.errors import ProtocolViolation

VALIDATOR_PROTOCOL = "/seqnet/validator/1.0.0"
REQUEST_PROTOCOL = "/seqnet/request/1.0.0"
FOLLOW_PROTOCOL = "/seqnet/follow/1.0.0"
"""Full nodes to validators: requests framed as on REQUEST_PROTOCOL (docs/p2p.md)."""

FRAME_HEADER = struct.Struct(">BI")
LENGTH_HEADER = struct.Struct(">I")
RESPONSE_HEADER = struct.Struct(">BI")


PING = 0  # channel byte of a keepalive ping and its echo


class Channel(enum.IntEnum):
    """What a frame carries; the first byte of every frame."""

    CONSENSUS = 1  # votes, proposals, certificates
    BATCH = 2  # transaction batches
    CERT = 3  # batch acknowledgements and availability certificates
    SHARES = 4  # decryption shares of a committed block (node/decryption.py)


class ResponseStatus(enum.IntEnum):
    """First byte of a response."""

    OK = 0
    HANDLER_ERROR = 1  # the responder's handler raised or answered too much
    NO_HANDLER = 2  # the responder has no request handler set


class FrameTooLarge(ProtocolViolation):
    """A length header exceeds the limit; raised before the payload is read."""


class UnknownChannel(ProtocolViolation):
    """A frame's channel byte is not a `Channel`."""


class TruncatedMessage(ProtocolViolation):
    """The stream ended in the middle of a header or payload."""


ReadFn = Callable[[int], Awaitable[bytes]]


_CHANNEL_BYTES = frozenset(int(c) for c in Channel)


def encode_frame(channel: int, payload: bytes) -> bytes:
    """One frame: channel byte (a `Channel` or `PING`), big-endian length, payload."""
    return FRAME_HEADER.pack(channel, len(payload)) + payload


def encode_request(payload: bytes) -> bytes:
    return LENGTH_HEADER.pack(len(payload)) + payload


def encode_response(status: ResponseStatus, payload: bytes) -> bytes:
    return RESPONSE_HEADER.pack(status, len(payload)) + payload


class FrameReader:
    """Parses messages from a byte stream read in chunks.

    `read(n)` returns 1..n bytes, or b"" at end of stream (libp2p streams raise
    instead; both end the reader). Bytes are kept in one buffer with a read
    offset so many small frames in one chunk cost no copying of the rest.
    """

    __slots__ = ("_buf", "_chunk", "_max_payload", "_pos", "_read")

    def __init__(self, read: ReadFn, *, max_payload: int, chunk: int = 64 * 1024) -> None:
        self._read = read
        self._max_payload = max_payload
        self._chunk = chunk
        self._buf = bytearray()
        self._pos = 0

    async def _fill(self, need: int) -> bool:
        """Make at least `need` unread bytes available; False at a clean end of stream."""
        while len(self._buf) - self._pos < need:
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            data = await self._read(max(self._chunk, need - len(self._buf)))
            if not data:
                return False
            self._buf += data
        return True

    def _take(self, n: int) -> bytes:
        start = self._pos
        self._pos += n
        return bytes(self._buf[start : self._pos])

    async def _payload(self, length: int) -> bytes:
        if not await self._fill(length):
            raise TruncatedMessage("stream ended inside a payload")
        return self._take(length)

    def _check_length(self, length: int) -> None:
        if length > self._max_payload:
            raise FrameTooLarge(f"length {length} exceeds limit {self._max_payload}")

    async def read_frame(self) -> tuple[int, bytes] | None:
        """The next (channel byte, payload), or None at a clean end of stream.

        The channel byte is a `Channel` value or `PING`.
        """
        if not await self._fill(FRAME_HEADER.size):
            if len(self._buf) > self._pos:
                raise TruncatedMessage("stream ended inside a frame header")
            return None
        raw_channel, length = FRAME_HEADER.unpack_from(self._buf, self._pos)
        if raw_channel != PING and raw_channel not in _CHANNEL_BYTES:
            raise UnknownChannel(f"channel byte {raw_channel}")
        self._check_length(length)
        self._pos += FRAME_HEADER.size
        return raw_channel, await self._payload(length)

    async def read_request(self) -> bytes:
        """One request payload; the stream must carry exactly one."""
        if not await self._fill(LENGTH_HEADER.size):
            raise TruncatedMessage("stream ended before a request header")
        (length,) = LENGTH_HEADER.unpack_from(self._buf, self._pos)
        self._check_length(length)
        self._pos += LENGTH_HEADER.size
        return await self._payload(length)

    async def read_response(self) -> tuple[ResponseStatus, bytes]:
        """One (status, payload) response."""
        if not await self._fill(RESPONSE_HEADER.size):
            raise TruncatedMessage("stream ended before a response header")
        raw_status, length = RESPONSE_HEADER.unpack_from(self._buf, self._pos)
        try:
            status = ResponseStatus(raw_status)
        except ValueError:
            raise ProtocolViolation(f"response status byte {raw_status}") from None
        self._check_length(length)
        self._pos += RESPONSE_HEADER.size
        return status, await self._payload(length)
