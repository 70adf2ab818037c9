"""Body caps, body deadline, bodies-in-flight budget and in-flight cap (RequestGuard).

Requests are raw ASGI calls, so a test controls exactly what the "client"
sends and when; time is trio's autojump mock clock, never the wall clock.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import trio
from trio.testing import MockClock

from sequencer_net.api.limits import (
    MAX_BATCH_BODY_BYTES,
    MAX_SMALL_BODY_BYTES,
    MAX_TX_BODY_BYTES,
)
from sequencer_net.api.request_guard import RequestGuard
from sequencer_net.api.server import ApiOptions
from tests.api.conftest import ApiWorld
from tests.mempool.factories import signed

Receive = Callable[[], Awaitable[dict[str, Any]]]
CHUNK = 16 * 1024
BOUND_S = 3600.0
"""Longest any call may take, on the mock clock of the tests that stall."""


@dataclass
class Answer:
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Upload:
    """A client sending `chunks`, then (if `stall`) nothing more, ever."""

    chunks: list[bytes]
    stall: bool = False
    disconnect: bool = False
    sent: int = 0
    calls: int = 0

    async def receive(self) -> dict[str, Any]:
        self.calls += 1
        if self.chunks:
            chunk = self.chunks.pop(0)
            self.sent += len(chunk)
            more = bool(self.chunks) or self.stall or self.disconnect
            return {"type": "http.request", "body": chunk, "more_body": more}
        if self.disconnect:
            return {"type": "http.disconnect"}
        await trio.sleep_forever()
        raise AssertionError("unreachable")


def endless(chunk: bytes = b"\x00" * CHUNK) -> Receive:
    """A client that streams forever (no Content-Length: chunked)."""
    sent = {"n": 0}

    async def receive() -> dict[str, Any]:
        sent["n"] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    receive.sent = sent  # type: ignore[attr-defined]
    return receive


async def call(
    app: Any, method: str, path: str, receive: Receive, content_length: int | None = None
) -> Answer:
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    scope = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(),
        "query_string": b"", "headers": headers, "http_version": "1.1", "scheme": "http",
        "server": ("127.0.0.1", 26700), "client": ("127.0.0.1", 5000), "root_path": "",
    }  # fmt: skip
    answer = Answer()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")

    with trio.fail_after(BOUND_S):  # a request the API never answers fails the test
        await app(scope, receive, send)
    return answer


def guard_of(app: Any) -> RequestGuard:
    """The RequestGuard inside a built Starlette app."""
    app.middleware_stack = app.middleware_stack or app.build_middleware_stack()
    layer = app.middleware_stack
    while not isinstance(layer, RequestGuard):
        layer = layer.app
    return layer


async def test_a_declared_body_over_the_cap_is_refused_unread(
    world: ApiWorld, autojump_clock: MockClock
) -> None:
    app = world.app()
    for path, cap in [
        ("/v1/transactions", MAX_TX_BODY_BYTES),
        ("/v1/transactions/batch", MAX_BATCH_BODY_BYTES),
        ("/v1/admin/network", MAX_SMALL_BODY_BYTES),
    ]:
        client = Upload([b"x"], stall=True)
        answer = await call(app, "POST", path, client.receive, content_length=cap + 1)
        assert answer.status == 413 and answer.json()["code"] == "too_large"
        assert answer.headers["connection"] == "close"
        assert client.calls == 0  # not one byte read


async def test_a_single_transaction_body_of_8_mib_is_refused(
    world: ApiWorld, autojump_clock: MockClock
) -> None:
    # Issue 13: the single-transaction endpoint accepted 8 MiB bodies.
    client = Upload([b"\x00" * CHUNK], stall=True)
    answer = await call(world.app(), "POST", "/v1/transactions", client.receive, 8 * 1024**2)
    assert answer.status == 413 and client.calls == 0


async def test_an_undeclared_body_stops_being_read_at_the_cap(world: ApiWorld) -> None:
    app = world.app()
    for path, cap in [
        ("/v1/transactions", MAX_TX_BODY_BYTES),
        ("/v1/transactions/batch", MAX_BATCH_BODY_BYTES),
        ("/v1/status", MAX_SMALL_BODY_BYTES),
    ]:
        receive = endless()
        answer = await call(app, "POST" if "transactions" in path else "GET", path, receive)
        assert answer.status == 413 and answer.json()["code"] == "too_large"
        assert cap < receive.sent["n"] <= cap + CHUNK  # type: ignore[attr-defined]


async def test_bodies_at_the_cap_reach_the_handler(world: ApiWorld) -> None:
    app = world.app()
    exact = Upload([b"\x00" * MAX_TX_BODY_BYTES])
    answer = await call(app, "POST", "/v1/transactions", exact.receive, MAX_TX_BODY_BYTES)
    assert answer.status == 400 and answer.json()["code"] == "invalid_transaction"
    document = b'{"transactions": []}'
    padded = document + b" " * (MAX_BATCH_BODY_BYTES - len(document))
    batch = Upload([padded[i : i + 65536] for i in range(0, len(padded), 65536)])
    answer = await call(app, "POST", "/v1/transactions/batch", batch.receive, len(padded))
    assert answer.status == 200 and answer.json() == {"results": []}


async def test_a_stalled_body_times_out_and_frees_its_slot(
    world: ApiWorld, autojump_clock: MockClock
) -> None:
    app = world.app(ApiOptions(body_timeout_s=7.0))
    guard = guard_of(app)
    client = Upload([b"\x00" * 1000], stall=True)
    started = trio.current_time()
    answer = await call(app, "POST", "/v1/transactions/batch", client.receive, 8 * 1024**2)
    assert answer.status == 408 and answer.json()["code"] == "body_timeout"
    assert answer.headers["connection"] == "close"
    assert trio.current_time() - started == 7.0  # mock clock: exact
    assert guard.in_flight == 0 and guard.reserved == 0


async def test_a_client_gone_mid_body_frees_its_slot(world: ApiWorld) -> None:
    app = world.app()
    guard = guard_of(app)
    client = Upload([b"\x00" * 100], disconnect=True)
    answer = await call(app, "POST", "/v1/transactions", client.receive, 1000)
    assert answer.status is None  # nothing to answer: the client left
    assert guard.in_flight == 0 and guard.reserved == 0


async def test_bodies_in_flight_never_exceed_the_budget(
    world: ApiWorld, autojump_clock: MockClock
) -> None:
    """The issue-13 attack in process: 40 uploads declaring 8 MiB, all stalled."""
    budget = 3 * MAX_BATCH_BODY_BYTES
    app = world.app(ApiOptions(max_body_buffer_bytes=budget, body_timeout_s=20.0))
    guard = guard_of(app)
    answers: list[Answer] = []
    held: list[int] = []

    async def attacker() -> None:
        client = Upload([b"\x00" * 65536] * 4, stall=True)
        answers.append(
            await call(app, "POST", "/v1/transactions/batch", client.receive, MAX_BATCH_BODY_BYTES)
        )

    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(attacker)
        await trio.sleep(1.0)
        held.append(guard.reserved)
        busy = [a for a in answers if a.status == 503]
        assert len(busy) == 37 and {a.json()["code"] for a in busy} == {"busy"}
        assert all(a.headers["retry-after"] == "1" for a in busy)
        # The budget is spent, yet small requests are still served.
        status = await call(app, "GET", "/v1/status", Upload([b""]).receive)
        assert status.status == 200
        tx = Upload([signed(sender=3, nonce=0)])
        submitted = await call(app, "POST", "/v1/transactions", tx.receive, tx.sent or None)
        assert submitted.status == 200, submitted.body
        assert guard.reserved == budget
    assert held == [budget]
    assert sorted(a.status or 0 for a in answers) == [408] * 3 + [503] * 37
    assert guard.reserved == 0 and guard.in_flight == 0


async def test_requests_in_flight_are_capped(world: ApiWorld, autojump_clock: MockClock) -> None:
    app = world.app(ApiOptions(max_connections=2, body_timeout_s=5.0))
    answers: list[Answer] = []

    async def slow_client() -> None:
        client = Upload([b"\x00"], stall=True)
        answers.append(await call(app, "POST", "/v1/transactions", client.receive, 100))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow_client)
        nursery.start_soon(slow_client)
        await trio.sleep(1.0)
        third = await call(app, "GET", "/v1/status", Upload([b""]).receive)
        assert third.status == 503 and third.json()["code"] == "busy"
    assert [a.status for a in answers] == [408, 408]
    assert (await call(app, "GET", "/v1/status", Upload([b""]).receive)).status == 200


async def test_malformed_content_length_is_refused(world: ApiWorld) -> None:
    app = world.app()
    for value in (b"12abc", b"-1", b"1" * 25, b"", b"1e3"):
        scope_headers = [(b"content-length", value)]
        client = Upload([b""])
        scope = {
            "type": "http", "method": "POST", "path": "/v1/transactions", "raw_path": b"",
            "query_string": b"", "headers": scope_headers, "http_version": "1.1",
            "scheme": "http", "server": None, "client": None, "root_path": "",
        }  # fmt: skip
        statuses: list[int] = []

        async def send(message: MutableMapping[str, Any], statuses: list[int] = statuses) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await app(scope, client.receive, send)
        assert statuses == [400], value
