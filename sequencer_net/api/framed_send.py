"""Block messages written to a subscriber's socket as ready-made WebSocket frames.

Sending one text message through Starlette, the ASGI interface and hypercorn
costs a fan-out to 100 subscribers more than writing it: each send is
encoded and framed (wsproto) again for every socket and passes several
layers and scheduler checkpoints. A block message is the same text for every
subscriber of its (height, namespace), so it is framed once
(`text_frame`, RFC 6455 section 5.2: one final text frame, unmasked as a
server's frames are, no extension) and `FramedSender` writes those bytes to
each subscriber's connection stream (api/http_server.py `ConnectionStream`):

- a write is whole and alone on the connection: the stream lets one write
  through at a time, so a frame never cuts into one of hypercorn's (a pong,
  the close frame) nor they into it; it goes to the socket at once when the
  socket buffer takes it (one system call, no scheduler checkpoint), and what
  the buffer does not take follows shielded from cancellation like
  hypercorn's own writes (a frame cut short would corrupt the stream),
  bounded by the connection's write deadline, which closes a connection
  whose client stopped reading (`ConnectionStream.send_now`);
- nothing is written after a close frame went out (either side's close: the
  server answers a client's close with its own);
- a connection that is gone ends the subscription (`WebSocketDisconnect`).

A connection the direct path cannot serve falls back to the ASGI send: one
that is not HTTP/1.1 (a WebSocket over HTTP/2 is a stream of the h2
connection), one whose client asked for an extension (permessage-deflate),
and a handler called outside a served connection (tests' in-process
clients).
"""

from __future__ import annotations

from dataclasses import dataclass

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from sequencer_net.api.http_server import ConnectionStream, current_connection

__all__ = ["FramedSender", "TextFrame", "sender_for", "text_frame"]

_FIN_TEXT = 0x81
"""FIN set, opcode 1 (text)."""


def text_frame(payload: bytes) -> bytes:
    """One unmasked final text frame carrying `payload` (UTF-8 text)."""
    size = len(payload)
    if size < 126:
        head = bytes((_FIN_TEXT, size))
    elif size < 1 << 16:
        head = bytes((_FIN_TEXT, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((_FIN_TEXT, 127)) + size.to_bytes(8, "big")
    return head + payload


@dataclass(frozen=True)
class TextFrame:
    """A text message as a WebSocket frame, made once for every subscriber it
    goes to; its text is read back from the frame only where a send needs it."""

    frame: bytes
    start: int
    """Where the text begins in `frame` (after the frame header)."""

    @classmethod
    def of(cls, text: str) -> TextFrame:
        payload = text.encode()
        frame = text_frame(payload)
        return cls(frame, len(frame) - len(payload))

    @property
    def text(self) -> str:
        return self.frame[self.start :].decode()


class FramedSender:
    """Sends a subscriber's messages: a ready frame straight to its connection
    stream when it has one, else the text through the ASGI interface."""

    def __init__(self, websocket: WebSocket, connection: ConnectionStream | None) -> None:
        self.websocket = websocket
        self.connection = connection
        if connection is not None:
            connection.frames_only = True  # after the handshake: whole frames only

    async def send(self, message: TextFrame) -> None:
        connection = self.connection
        if connection is None:
            await self.websocket.send_text(message.text)
            return
        if connection.close_sent:
            raise WebSocketDisconnect(1000)
        try:
            await connection.send_now(message.frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise WebSocketDisconnect(1006) from exc
        # A write the socket took at once passed no checkpoint: a subscriber
        # catching up on history must still let consensus run, and see a
        # cancellation, between its messages.
        await trio.lowlevel.checkpoint()

    def send_at_once(self, message: TextFrame) -> bool:
        """Write a message without waiting, when the connection has the direct
        path and no write in progress: True if written (whole, or begun, its
        rest then pending: `has_pending`, `flush`), False if nothing was
        written (send it with `send`). A connection that is gone or closing
        raises WebSocketDisconnect."""
        connection = self.connection
        if connection is None:
            return False
        if connection.close_sent:
            raise WebSocketDisconnect(1000)
        if not connection.can_write_now():
            return False
        try:
            return connection.write_now(message.frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise WebSocketDisconnect(1006) from exc

    def has_pending(self) -> bool:
        """Whether a message `send_at_once` began is not all written yet."""
        return self.connection is not None and self.connection.pending is not None

    async def flush(self) -> None:
        """Write the rest of a message `send_at_once` began, if any."""
        if self.connection is None or self.connection.pending is None:
            return
        try:
            await self.connection.flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise WebSocketDisconnect(1006) from exc


def sender_for(websocket: WebSocket) -> FramedSender:
    """The sender of an accepted WebSocket: direct for a plain HTTP/1.1
    connection without extensions, else through the ASGI interface."""
    connection = current_connection()
    if (
        connection is not None
        and websocket.scope.get("http_version") == "1.1"
        and not websocket.headers.get("sec-websocket-extensions")
    ):
        return FramedSender(websocket, connection)
    return FramedSender(websocket, None)
