"""Serving the API: hypercorn's HTTP protocol code behind our own accept loop.

hypercorn 0.18 (trio worker) offers, and we set:
- `keep_alive_timeout`: closes a connection that has no request in progress,
  including one still sending its request head ([api] idle_timeout_ms);
- `h11_max_incomplete_size`: caps the request head (limits.MAX_HEADER_BYTES);
- `h2_max_concurrent_streams`, `backlog`.
It has no connection cap, no deadline for a request body (`read_timeout` is a
per-read inactivity timer that also fires while a handler is still working,
so we leave it off), and no timeout on writes. So:
- the accept loop below holds a slot per open connection and stops accepting
  at `[api] max_connections` (new connections wait in the kernel's backlog);
- request_guard.RequestGuard bounds body size, body time and body memory;
- each connection's stream gives up a write that has not completed within
  limits.SEND_TIMEOUT_S, closing the connection, and a connection whose client
  has gone ends (and frees its slot) at once rather than at the idle timeout.

A handler reaches its own connection's stream through `current_connection()`
(block subscriptions write pre-framed WebSocket messages to it directly,
api/framed_send.py); the stream lets one write at a time through, whole, so
those and hypercorn's own writes never interleave.

The accept loop uses hypercorn's TCPServer (one connection's HTTP/1.1 or h2c
protocol) directly, as `hypercorn.trio.serve` does (without the ASGI lifespan
protocol, which this app does not use). It relies on hypercorn internals
(TCPServer, WorkerContext), checked against hypercorn 0.18.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from contextvars import ContextVar
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app
from starlette.types import ASGIApp

from sequencer_net.api.limits import (
    H2_MAX_STREAMS,
    LISTEN_BACKLOG,
    MAX_HEADER_BYTES,
    SEND_TIMEOUT_S,
)
from sequencer_net.api.options import ApiOptions

log = logging.getLogger("seqnet.api")

ACCEPT_RETRY_S = 0.1
"""Pause after accept() fails for lack of file descriptors or memory."""
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


def hypercorn_config(options: ApiOptions) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{options.host}:{options.port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("seqnet.api.server")
    config.keep_alive_timeout = options.idle_timeout_s
    config.h11_max_incomplete_size = MAX_HEADER_BYTES
    config.h2_max_concurrent_streams = H2_MAX_STREAMS
    config.backlog = LISTEN_BACKLOG
    config.read_timeout = None
    return config


WEBSOCKET_CLOSE_OPCODE = 0x8


class ConnectionStream(trio.abc.HalfCloseableStream):
    """One accepted connection as hypercorn sees it: a socket stream whose writes
    give up (closing the stream) if not done within `send_timeout_s`, and
    which calls `on_end` once the connection is over: end of input, a reset, or
    a write that timed out. (hypercorn tells the handler the client has gone at
    end of input, but keeps an idle connection's task, and so its slot, until the
    idle timer fires; `on_end` ends it at once.)

    Writes go through one at a time, each whole (a write waits for the one in
    progress): hypercorn serializes its own, and a handler writing to the
    stream directly (`current_connection`) must not cut into one of them.
    Once `frames_only` is set (the connection is a WebSocket after its
    handshake, every write then whole frames), `close_sent` records that a
    close frame went out: nothing may follow it.

    `write_now` writes a whole frame from outside any write (no await): the
    part the socket buffer does not take is kept (`pending`) and goes out
    first in the next write, whoever makes it, so the frame stays whole and
    nothing cuts into it.

    Like trio.SocketStream it has `.socket`; it has no `do_handshake`, which is
    how hypercorn tells a plain stream from TLS."""

    def __init__(
        self, stream: trio.SocketStream, send_timeout_s: float, on_end: Callable[[], None]
    ) -> None:
        self._stream = stream
        self._send_timeout_s = send_timeout_s
        self._on_end = on_end
        self._writing = trio.Lock()
        self.frames_only = False
        self.close_sent = False
        self.pending: memoryview | None = None
        """The rest of a frame `write_now` began: written before anything else."""

    @property
    def socket(self) -> Any:
        return self._stream.socket

    async def send_all(self, data: bytes | memoryview) -> None:
        try:
            self._writing.acquire_nowait()  # no checkpoint when no write is in progress
        except trio.WouldBlock:
            await self._writing.acquire()
        try:
            await self._flush_pending()
            self._note_close(data)
            await self._send_all(data)
        finally:
            self._writing.release()

    def can_write_now(self) -> bool:
        """Whether `write_now` may write: no write in progress, nothing pending,
        no close frame sent."""
        return not self._writing.locked() and self.pending is None and not self.close_sent

    def write_now(self, data: bytes) -> bool:
        """Begin writing the whole frame `data` at once, without waiting (only
        when `can_write_now`): one system call. False if the socket took none
        of it (nothing written: send it with `send_now`); True if it took it
        all, or a part, the rest then `pending` until a write or `flush`
        sends it. A connection found gone raises BrokenResourceError."""
        assert self.can_write_now()
        try:
            sent = os.write(self._stream.socket.fileno(), data)
        except BlockingIOError:
            return False
        except OSError as exc:
            self._on_end()
            raise trio.BrokenResourceError(f"the client has gone: {exc}") from exc
        if sent < len(data):
            self.pending = memoryview(data)[sent:]
        return True

    async def flush(self) -> None:
        """Send what `write_now` left pending, if anything."""
        if self.pending is None:
            return
        try:
            self._writing.acquire_nowait()
        except trio.WouldBlock:
            await self._writing.acquire()
        try:
            await self._flush_pending()
        finally:
            self._writing.release()

    async def _flush_pending(self) -> None:
        """Under the write lock: the rest of a frame `write_now` began, shielded
        from cancellation (a frame cut short would corrupt the stream) and
        under the write deadline."""
        rest = self.pending
        if rest is None:
            return
        self.pending = None
        with trio.CancelScope(shield=True):
            await self._send_all(rest)

    async def send_now(self, data: bytes) -> None:
        """Write `data` as `send_all` does, trying the socket at once first: a
        client that keeps reading has room in its socket buffer for a whole
        message, which then costs one system call and no scheduler checkpoint,
        timer or cancel scope. What the buffer does not take is written as
        `send_all` writes, under the write deadline and shielded from
        cancellation, so the write stays whole and alone on the connection."""
        try:
            self._writing.acquire_nowait()
        except trio.WouldBlock:
            await self._writing.acquire()
        try:
            if self.pending is not None:
                await self._flush_pending()
            self._note_close(data)
            try:
                sent = os.write(self._stream.socket.fileno(), data)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._on_end()
                raise trio.BrokenResourceError(f"the client has gone: {exc}") from exc
            if sent < len(data):
                with trio.CancelScope(shield=True):
                    await self._send_all(memoryview(data)[sent:])
        finally:
            self._writing.release()

    def _note_close(self, data: bytes | memoryview) -> None:
        if self.frames_only and data and data[0] & 0x0F == WEBSOCKET_CLOSE_OPCODE:
            self.close_sent = True

    async def _send_all(self, data: bytes | memoryview) -> None:
        with trio.move_on_after(self._send_timeout_s) as deadline:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._on_end()
                raise
        if deadline.cancelled_caught:
            self._on_end()
            await self._stream.aclose()
            raise trio.BrokenResourceError("the client did not read the response in time")

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await self._stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._on_end()
            raise
        if not data:
            self._on_end()
        return data

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


class ConnectionSlots:
    """At most `limit` connections at once. The accept loop reserves a slot before
    it accepts, so at the cap it stops accepting; `open` counts accepted
    connections still running, `peak` the most at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.peak = 0
        self._free = trio.Semaphore(limit)

    async def reserve(self) -> None:
        await self._free.acquire()

    def unreserve(self) -> None:
        self._free.release()

    def opened(self) -> None:
        self.open += 1
        self.peak = max(self.peak, self.open)

    def closed(self) -> None:
        self.open -= 1
        self._free.release()


_CONNECTION: ContextVar[ConnectionStream | None] = ContextVar("connection", default=None)


def current_connection() -> ConnectionStream | None:
    """The stream of the connection whose request this task serves (every task
    hypercorn starts for a connection inherits it); None outside one."""
    return _CONNECTION.get()


async def serve_connection(
    handler: Any, stream: trio.SocketStream, slots: ConnectionSlots, send_timeout_s: float
) -> None:
    """Run one connection to its end, then free its slot and its socket."""
    try:
        with trio.CancelScope() as connection:
            wrapped = ConnectionStream(stream, send_timeout_s, connection.cancel)
            _CONNECTION.set(wrapped)  # this task's own context, copied into its children
            await handler(wrapped)
    finally:
        slots.closed()
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def accept_connections(
    listener: trio.SocketListener,
    handler: Any,
    slots: ConnectionSlots,
    nursery: trio.Nursery,
    send_timeout_s: float = SEND_TIMEOUT_S,
) -> None:
    """Reserve a slot, then accept: at the cap, new connections wait in the
    kernel's backlog, not in our memory."""
    while True:
        await slots.reserve()
        try:
            stream = await listener.accept()
        except OSError as exc:
            slots.unreserve()
            if exc.errno not in _OUT_OF_RESOURCES:
                raise
            log.warning("event=api_accept_failed errno=%s", errno.errorcode.get(exc.errno or 0))
            await trio.sleep(ACCEPT_RETRY_S)
            continue
        except BaseException:
            slots.unreserve()
            raise
        slots.opened()
        nursery.start_soon(serve_connection, handler, stream, slots, send_timeout_s)


async def serve_api(
    app: ASGIApp,
    options: ApiOptions,
    *,
    slots: ConnectionSlots | None = None,
    send_timeout_s: float = SEND_TIMEOUT_S,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on options.host:port until cancelled; `task_status.started`
    reports the bound (host, port) pairs (port 0 picks a free port). `slots`
    (the connection cap) can be passed in to be observed."""
    config = hypercorn_config(options)
    slots = slots or ConnectionSlots(options.max_connections)
    listeners = await trio.open_tcp_listeners(
        options.port, host=options.host, backlog=LISTEN_BACKLOG
    )
    context = WorkerContext(None)
    asgi_app = wrap_app(app, config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
    handler = partial(TCPServer, asgi_app, config, context, ConnectionState({}))
    bound = [listener.socket.getsockname()[:2] for listener in listeners]
    try:
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(
                    accept_connections, listener, handler, slots, nursery, send_timeout_s
                )
            for host, port in bound:
                log.info("event=api_listening host=%s port=%d", host, port)
            task_status.started(bound)
    finally:
        for listener in listeners:
            with trio.CancelScope(shield=True):
                await listener.aclose()
