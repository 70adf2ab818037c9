"""ASGI middleware that bounds what a request may cost before any handler runs.

For every HTTP request, in this order:
1. `Content-Length`, if present, must be plain decimal (400 `bad_request`) and
   at most the endpoint's body cap (413 `too_large`, nothing read);
2. at most `max_requests` requests are in flight (503 `busy`);
3. a large body (one that may exceed `small_body`: its declared length, or the
   endpoint's cap when no length is declared) is reserved against a shared
   budget (503 `busy` if the budget is spent);
4. the whole body is read within `body_timeout_s` (408 `body_timeout`) and
   reading stops at the cap (413 `too_large`);
5. the handler runs with the body already in memory, replayed as one message.

So the bytes held for request bodies never exceed `body_budget` for large
bodies plus `max_requests * small_body` for the rest, however many clients
trickle uploads; a client that declares a body and stops sending holds its
slot for at most the body timeout; and uploads that fill the budget never
starve small requests (status, lookups, single transactions), which only
count against the in-flight cap. Answers given before the body is read say
`connection: close`: the server does not drain what the client still sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import trio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sequencer_net.api.errors import ApiError

_CLOSE = {"connection": "close"}
_DIGITS = frozenset(b"0123456789")
MAX_CONTENT_LENGTH_DIGITS = 19


class _ClientGone(Exception):
    """The client disconnected before sending its whole body."""


@dataclass(frozen=True, slots=True)
class BodyCaps:
    """The largest body each endpoint accepts, by (method, path); `default` for the rest."""

    by_route: Mapping[tuple[str, str], int]
    default: int

    def cap(self, method: str, path: str) -> int:
        return self.by_route.get((method, path), self.default)


@dataclass(frozen=True, slots=True)
class GuardLimits:
    max_requests: int
    """Requests in flight at once (every connection and HTTP/2 stream)."""
    body_budget: int
    """Bytes reserved for large request bodies across all requests in flight."""
    small_body: int
    """A body of at most this many bytes is not counted against the budget."""
    body_timeout_s: float
    """From the request head to the last body byte."""


def declared_length(scope: Scope) -> int | None:
    """The Content-Length header as an int, None if absent; ApiError if malformed."""
    values = [v for k, v in scope.get("headers", ()) if k.lower() == b"content-length"]
    if not values:
        return None
    value = values[0].strip()
    if (
        len(set(values)) != 1
        or not value
        or len(value) > MAX_CONTENT_LENGTH_DIGITS
        or not set(value) <= _DIGITS
    ):
        raise ApiError(400, "bad_request", "malformed Content-Length", _CLOSE)
    return int(value)


async def read_body(receive: Receive, cap: int) -> bytes:
    """Every body message until the last; ApiError 413 as soon as it passes `cap`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise ApiError(413, "too_large", f"body exceeds {cap} bytes", _CLOSE)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that yields `body` as one message, then defers to the real one
    (which reports the client's disconnect)."""
    pending = [body]

    async def receive_replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return receive_replayed


class RequestGuard:
    """The middleware. `in_flight` and `reserved` (bytes of large bodies) are
    readable for tests and metrics."""

    def __init__(self, app: ASGIApp, caps: BodyCaps, limits: GuardLimits) -> None:
        self.app = app
        self.caps = caps
        self.limits = limits
        self.in_flight = 0
        self.reserved = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            cap = self.caps.cap(scope["method"], scope["path"])
            reservation = self._admit(scope, cap)
        except ApiError as refused:
            await refused.send(scope, receive, send)
            return
        self.in_flight += 1
        self.reserved += reservation
        try:
            await self._read_then_call(scope, receive, send, cap)
        finally:
            self.in_flight -= 1
            self.reserved -= reservation

    def _admit(self, scope: Scope, cap: int) -> int:
        """Check the head of the request; return the bytes to reserve for its body."""
        declared = declared_length(scope)
        if declared is not None and declared > cap:
            raise ApiError(413, "too_large", f"body exceeds {cap} bytes", _CLOSE)
        if self.in_flight >= self.limits.max_requests:
            raise ApiError(503, "busy", "too many requests in flight", _retry_soon())
        reservation = cap if declared is None else declared
        if reservation <= self.limits.small_body:
            return 0
        if self.reserved + reservation > self.limits.body_budget:
            raise ApiError(503, "busy", "too many request bodies in flight", _retry_soon())
        return reservation

    async def _read_then_call(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        try:
            with trio.move_on_after(self.limits.body_timeout_s) as deadline:
                body = await read_body(receive, cap)
            if deadline.cancelled_caught:
                raise ApiError(
                    408,
                    "body_timeout",
                    f"the body did not arrive within {self.limits.body_timeout_s:g} s",
                    _CLOSE,
                )
        except ApiError as refused:
            await refused.send(scope, receive, send)
            return
        except _ClientGone:
            return
        await self.app(scope, replay(body, receive), send)


def _retry_soon() -> dict[str, str]:
    return {**_CLOSE, "retry-after": "1"}
