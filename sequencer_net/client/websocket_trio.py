"""A minimal WebSocket client on trio streams (wsproto): text messages in.

No background task and no nursery: the connection is driven by the task that
reads it, so an async generator may hold one across `yield` and be abandoned
at any point (closing the stream is all its cleanup). Pings are answered as
they arrive; a message longer than `max_message_bytes` closes the connection
(1009) before it is buffered.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from sequencer_net.client.subscribe import Ended

RECEIVE_CHUNK = 64 * 1024
CLOSE_TOO_BIG = 1009
CLOSE_UNSUPPORTED = 1003


class WebSocketEnded(Exception):
    def __init__(self, ended: Ended) -> None:
        super().__init__(ended.describe())
        self.ended = ended


class TrioWebSocket:
    def __init__(self, stream: trio.abc.Stream, ws: WSConnection, max_message_bytes: int) -> None:
        self._stream = stream
        self._ws = ws
        self._max = max_message_bytes
        self._parts: list[str] = []
        self._size = 0

    @classmethod
    async def connect(cls, url: str, timeout_s: float, max_message_bytes: int) -> TrioWebSocket:
        """Open `ws(s)://host:port/path?query`; WebSocketEnded("unreachable" or
        "rejected") if there is no WebSocket at the end of it."""
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        ws = WSConnection(ConnectionType.CLIENT)
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(timeout_s):
                if secure:
                    stream = await trio.open_ssl_over_tcp_stream(host, port)
                else:
                    stream = await trio.open_tcp_stream(host, port)
                await stream.send_all(ws.send(Request(host=parts.netloc, target=target)))
                while True:
                    data = await stream.receive_some(RECEIVE_CHUNK)
                    ws.receive_data(data or None)
                    for event in ws.events():
                        if isinstance(event, AcceptConnection):
                            return cls(stream, ws, max_message_bytes)
                        if isinstance(event, RejectConnection):
                            raise WebSocketEnded(Ended("rejected", event.status_code))
                    if not data:
                        raise WebSocketEnded(Ended("unreachable", detail="closed during handshake"))
        except WebSocketEnded:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, RemoteProtocolError) as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            raise WebSocketEnded(
                Ended("unreachable", detail=str(exc) or type(exc).__name__)
            ) from exc

    async def receive_text(self, idle_timeout_s: float) -> str:
        """The next whole text message; WebSocketEnded when the connection ends."""
        while True:
            for event in self._ws.events():
                text = await self._handle(event)
                if text is not None:
                    return text
            try:
                with trio.fail_after(idle_timeout_s):
                    data = await self._stream.receive_some(RECEIVE_CHUNK)
            except trio.TooSlowError:
                raise WebSocketEnded(Ended("idle")) from None
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise WebSocketEnded(Ended("dropped", detail=str(exc))) from None
            try:
                self._ws.receive_data(data or None)
            except RemoteProtocolError as exc:
                raise WebSocketEnded(Ended("dropped", detail=str(exc))) from None
            if not data:
                # wsproto reports an unclean end as a 1006 CloseConnection event
                for event in self._ws.events():
                    if isinstance(event, CloseConnection) and event.code != 1006:
                        raise WebSocketEnded(Ended("closed", event.code, event.reason or ""))
                raise WebSocketEnded(Ended("dropped", detail="the connection ended"))

    async def _handle(self, event: object) -> str | None:
        if isinstance(event, TextMessage):
            self._size += len(event.data)
            if self._size > self._max:
                await self._close_with(CLOSE_TOO_BIG, "message too big")
                raise WebSocketEnded(Ended("dropped", detail="a message exceeds the size cap"))
            self._parts.append(event.data)
            if not event.message_finished:
                return None
            text = "".join(self._parts)
            self._parts, self._size = [], 0
            return text
        if isinstance(event, BytesMessage):
            await self._close_with(CLOSE_UNSUPPORTED, "text messages only")
            raise WebSocketEnded(Ended("dropped", detail="a binary message"))
        if isinstance(event, Ping):
            await self._send(self._ws.send(event.response()))
            return None
        if isinstance(event, CloseConnection):
            await self._send(self._ws.send(event.response()))
            raise WebSocketEnded(Ended("closed", event.code, event.reason or ""))
        return None

    async def _send(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise WebSocketEnded(Ended("dropped", detail=str(exc))) from None

    async def _close_with(self, code: int, reason: str) -> None:
        with contextlib.suppress(WebSocketEnded, LocalProtocolError):
            await self._send(self._ws.send(CloseConnection(code=code, reason=reason)))

    async def close(self) -> None:
        await trio.aclose_forcefully(self._stream)
