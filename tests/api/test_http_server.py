"""The API over real sockets on 127.0.0.1: connection cap, idle and body
timeouts, early refusals, and writes to a client that never reads.

Each test serves on a free port in its own nursery, bounds every wait with
trio.fail_after, and cancels the server (closing every socket) at the end.
Timing only ever bounds a wait; no test asserts how long something took.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import trio
from starlette.types import Receive, Scope, Send

from sequencer_net.api.http_server import ConnectionSlots, serve_api
from sequencer_net.api.server import ApiOptions
from tests.api.conftest import ApiWorld

BOUND_S = 10.0
"""Every wait in these tests ends by then, or the test fails."""
LOCAL = ApiOptions(host="127.0.0.1", port=0)
STATUS_REQUEST = b"GET /v1/status HTTP/1.1\r\nHost: api\r\n\r\n"


@asynccontextmanager
async def serving(
    app: Any, options: ApiOptions, **kwargs: Any
) -> AsyncIterator[tuple[int, ConnectionSlots]]:
    slots = ConnectionSlots(options.max_connections)
    async with trio.open_nursery() as nursery:
        [(_, port)] = await nursery.start(
            lambda task_status: serve_api(
                app, options, slots=slots, task_status=task_status, **kwargs
            )
        )
        try:
            yield port, slots
        finally:
            nursery.cancel_scope.cancel()


async def read_answer(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection or the answer
    is complete (headers plus Content-Length bytes)."""
    data = b""
    with trio.fail_after(BOUND_S):
        while True:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return data
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = [
                    int(line.split(b":")[1])
                    for line in head.lower().split(b"\r\n")
                    if line.startswith(b"content-length:")
                ]
                if length and len(body) >= length[0]:
                    return data


async def wait_closed(stream: trio.SocketStream) -> None:
    """Until the server closes the connection (EOF or reset)."""
    with trio.fail_after(BOUND_S):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass


async def test_connections_beyond_the_cap_wait_for_a_free_slot(world: ApiWorld) -> None:
    options = replace(LOCAL, max_connections=2, idle_timeout_s=60.0)
    async with serving(world.app(options), options) as (port, slots):
        idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
        third = await trio.open_tcp_stream("127.0.0.1", port)
        await third.send_all(STATUS_REQUEST)
        with trio.move_on_after(0.5):
            answer = await third.receive_some(65536)
            raise AssertionError(f"a third connection was served: {answer[:40]!r}")
        assert slots.open == 2
        await idle[0].aclose()  # frees a slot at once: the third is answered
        assert (await read_answer(third)).startswith(b"HTTP/1.1 200")
        assert slots.peak == 2
        for stream in (idle[1], third):
            await stream.aclose()


async def test_idle_connections_are_closed(world: ApiWorld) -> None:
    options = replace(LOCAL, idle_timeout_s=0.2)
    async with serving(world.app(options), options) as (port, slots):
        silent = await trio.open_tcp_stream("127.0.0.1", port)
        await wait_closed(silent)
        # A keep-alive connection after its answer, too.
        kept = await trio.open_tcp_stream("127.0.0.1", port)
        await kept.send_all(STATUS_REQUEST)
        assert (await read_answer(kept)).startswith(b"HTTP/1.1 200")
        await wait_closed(kept)
        with trio.fail_after(BOUND_S):
            while slots.open:
                await trio.sleep(0.01)


async def test_a_request_head_sent_byte_by_byte_is_cut_off(world: ApiWorld) -> None:
    options = replace(LOCAL, idle_timeout_s=0.3)
    async with serving(world.app(options), options) as (port, _):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /v1/status HTTP/1.1\r\n")
        closed = False
        with trio.fail_after(BOUND_S):
            for i in range(10_000):
                try:
                    await stream.send_all(b"X-Slow-%d: 1\r\n" % i)
                except trio.BrokenResourceError:
                    closed = True
                    break
                with trio.move_on_after(0.05):
                    if not await stream.receive_some(65536):
                        closed = True
                        break
        assert closed


async def test_a_stalled_body_gets_408_and_the_connection_is_closed(world: ApiWorld) -> None:
    options = replace(LOCAL, body_timeout_s=0.3)
    async with serving(world.app(options), options) as (port, slots):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            b"POST /v1/transactions/batch HTTP/1.1\r\nHost: api\r\n"
            b"Content-Length: 8388608\r\n\r\n" + b"\x00" * 1000
        )
        answer = await read_answer(stream)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert b'"code":"body_timeout"' in answer
        await wait_closed(stream)
        with trio.fail_after(BOUND_S):
            while slots.open:
                await trio.sleep(0.01)


async def test_an_oversized_declared_body_is_refused_at_once(world: ApiWorld) -> None:
    async with serving(world.app(LOCAL), LOCAL) as (port, _):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(
            b"POST /v1/transactions HTTP/1.1\r\nHost: api\r\nContent-Length: 8388608\r\n\r\n"
        )
        answer = await read_answer(stream)
        assert answer.startswith(b"HTTP/1.1 413") and b'"code":"too_large"' in answer
        await wait_closed(stream)


async def big_answer(scope: Scope, receive: Receive, send: Send) -> None:
    """An app whose every answer is 64 MiB: more than any socket buffers."""
    if scope["type"] != "http":
        return
    size = 64 * 1024 * 1024
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(size).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": bytes(size)})


async def test_a_client_that_never_reads_its_answer_is_dropped() -> None:
    async with serving(big_answer, LOCAL, send_timeout_s=0.3) as (port, slots):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: api\r\n\r\n")
        with trio.fail_after(BOUND_S):
            while slots.peak == 0 or slots.open:
                await trio.sleep(0.01)
        await stream.aclose()
