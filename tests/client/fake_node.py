"""A scripted subscription endpoint on 127.0.0.1 (trio-websocket's server).

Each connection is served from its `from` query by one script step (in
order, the last repeating): send up to `count` messages from the node's
chain, then `close` with a code, `drop` the TCP stream without a close frame,
or `hold` the connection open. `stop()` takes the node down: new connections
are refused and open ones cut.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio
from trio_websocket import WebSocketRequest, serve_websocket


@dataclass(frozen=True)
class Step:
    count: int
    then: str = "hold"  # "close", "drop" or "hold"
    code: int = 1000
    reason: str = ""
    pings: bool = False  # a ping message before each block


@dataclass
class FakeNode:
    messages: dict[int, dict[str, Any]]  # height -> subscription message
    script: list[Step]
    requests: list[tuple[str, int | None]] = field(default_factory=list)  # (namespace, from)
    port: int = 0
    _scope: trio.CancelScope | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                server = await nursery.start(serve_websocket, self.handle, "127.0.0.1", 0, None)
                self.port = server.port
                task_status.started(self)

    def stop(self) -> None:
        assert self._scope is not None
        self._scope.cancel()

    async def handle(self, request: WebSocketRequest) -> None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        if parts.path != "/v1/subscribe/blocks" or "namespace" not in query:
            await request.reject(404)
            return
        start = int(query["from"][0]) if "from" in query else None
        self.requests.append((query["namespace"][0], start))
        step = self.script[min(len(self.requests) - 1, len(self.script) - 1)]
        ws = await request.accept()
        height = start if start is not None else 1
        sent = 0
        while sent < step.count and height in self.messages:
            if step.pings:
                await ws.send_message(json.dumps({"type": "ping"}))
            await ws.send_message(json.dumps(self.messages[height]))
            height += 1
            sent += 1
        if step.then == "close":
            await ws.aclose(code=step.code, reason=step.reason)
        elif step.then == "drop":
            await trio.aclose_forcefully(ws._stream)  # no close frame: a cut connection
        else:
            await trio.sleep_forever()


async def start_node(
    nursery: trio.Nursery, messages: list[dict[str, Any]], script: list[Step]
) -> FakeNode:
    node = FakeNode({m["height"]: m for m in messages}, script)
    await nursery.start(node.serve)
    return node
