"""The benchmark's submissions over each node's WebSocket stream.

`WS /v1/transactions/stream` takes msgpack batches as binary messages and
answers each, in order, with one binary message of outcomes (the msgpack
batch endpoint's format) once the accepted transactions are durably stored.
A batch sent this way costs the node no HTTP request (parsing, routing,
middleware, a response) and the client no HTTP library: per node, one
long-lived connection carries the step's batches, pipelined, and the answers
are matched to them first in, first out.

The client side is as light as the receiver's (ws_receiver.py): the opening
handshake, then masked binary frames out (the mask drawn from os.urandom,
applied as one integer XOR) and the answers read with `LightReceiver`.

`NodeStream` is one node's sender for a step: the step hands it requests (a
slot of the node's in-flight bound already taken), it sends each on its open
connection (opening one first if there is none) and settles each request's
transactions from its answer, releasing the slot (the step stamps a
request's submit time when it hands it over). A connection that ends (closed
by the node, reset, no answer within REQUEST_TIMEOUT_S) settles every
request still waiting on it as refused with a code saying why (`stream
closed: CODE REASON`, `stream broken: ...`, `stream timeout: ...`); the next
request opens a new connection, and one that cannot be opened is refused
(`unreachable: ...`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from contextlib import aclosing
from typing import Any
from urllib.parse import urlsplit

import msgspec
import trio

from sequencer_net.testnet.bench.traffic import Request
from sequencer_net.testnet.bench.ws_receiver import Closed, LightReceiver, client_frame

STREAM_PATH = "/v1/transactions/stream"
MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""An answer names each transaction of a batch (a 32-byte hash, or a code and
a message): far below this for the benchmark's batches."""
_BINARY = 0x2

Codes = list[str | None]
"""Per transaction of a request: None if accepted, else the refusal's code."""


class LightSender(LightReceiver):
    """A client connection that sends binary messages and reads the answers
    (`messages`). One frame goes out at a time, so a pong the reader sends
    never cuts into a message."""

    def __init__(self, stream: trio.abc.Stream, max_message: int) -> None:
        super().__init__(stream, max_message)
        self._sending = trio.StrictFIFOLock()

    async def send_binary(self, payload: bytes) -> None:
        await self._send_frame(client_frame(_BINARY, payload))

    async def _send_frame(self, frame: bytes) -> None:
        async with self._sending:
            await self.stream.send_all(frame)


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def open_stream(url: str, timeout_s: float) -> LightSender:
    """A connection to the node's submission stream, handshake done; OSError,
    Closed or trio.TooSlowError (after `timeout_s`) if there is none."""
    host, port = host_port(url)
    with trio.fail_after(timeout_s):
        stream = await trio.open_tcp_stream(host, port)
        try:
            sender = LightSender(stream, MAX_ANSWER_BYTES)
            await sender.open(f"{host}:{port}", STREAM_PATH)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    return sender


def stream_outcomes(payload: bytes, count: int) -> Codes:
    """One answer of the stream -> per transaction, None if accepted, else the
    refusal's code. A batch the node refused as a whole (a map `{"error",
    "code"}`) refuses each of its transactions with that code."""
    try:
        answer: Any = msgspec.msgpack.decode(payload)
        if isinstance(answer, dict):
            return [f"batch refused: {answer.get('code', 'error')}"] * count
        if not isinstance(answer, list) or len(answer) != count:
            raise ValueError("not one outcome per transaction")
        return [None if isinstance(a, bytes) else str(a[0]) for a in answer]
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        return [f"bad answer: {type(exc).__name__}"] * count


def stream_served(url: str, timeout_s: float = 5.0) -> bool:
    """Whether the node at `url` answers an empty batch on its submission
    stream with an empty msgpack array (blocking; not inside trio)."""

    async def probe() -> bool:
        sender = await open_stream(url, timeout_s)
        async with sender.stream:
            with trio.fail_after(timeout_s):
                await sender.send_binary(b"\x90")  # an empty msgpack array
                async with aclosing(sender.messages()) as messages:
                    async for payload, _ in messages:
                        return payload == b"\x90"
        return False

    try:
        return trio.run(probe)
    except (OSError, Closed, trio.TooSlowError, trio.BrokenResourceError):
        return False


class _Connection:
    """One open stream and the requests sent on it that await their answer, in
    the order sent."""

    def __init__(self, owner: NodeStream, sender: LightSender) -> None:
        self.owner = owner
        self.sender = sender
        self.waiting: deque[tuple[Request, float]] = deque()
        self.alive = True
        self.closing = False
        self.scope = trio.CancelScope()

    async def send(self, request_id: int, request: Request) -> None:
        now = trio.current_time()
        if not self.waiting:
            self.scope.deadline = now + self.owner.timeout_s
        self.waiting.append((request, now))
        try:
            await self.sender.send_binary(request.body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.fail(f"stream broken: {type(exc).__name__}")

    async def read(self) -> None:
        """Settle each answer's request, first in first out, until the stream
        ends, nothing is answered for the timeout, or the step is done; then
        close the connection (also when the step is cancelled)."""
        try:
            self.fail(await self._answers())
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.sender.stream)

    async def _answers(self) -> str:
        """Read answers until the connection is done; what ended it."""
        problem = "stream ended"
        with self.scope:
            try:
                async with aclosing(self.sender.messages()) as messages:
                    async for payload, _ in messages:
                        if not self.waiting:
                            return "stream broken: an answer to no request"
                        request, _ = self.waiting.popleft()
                        self.owner.settle(request, stream_outcomes(payload, request.count))
                        if self.waiting:
                            self.scope.deadline = self.waiting[0][1] + self.owner.timeout_s
                        elif self.closing:
                            return problem
                        else:
                            self.scope.deadline = math.inf
            except Closed as exc:
                return f"stream closed: {exc.code} {exc.reason}".rstrip()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                return f"stream broken: {type(exc).__name__}"
        if self.scope.cancelled_caught and self.alive:
            return f"stream timeout: no answer in {self.owner.timeout_s:g} s"
        return problem

    def fail(self, problem: str) -> None:
        """The connection is done: whatever still waits on it is refused."""
        if not self.alive:
            return
        self.alive = False
        while self.waiting:
            request, _ = self.waiting.popleft()
            self.owner.settle(request, [problem] * request.count)
        self.scope.cancel()

    def finish(self) -> None:
        """No more requests: close once the last answer is in."""
        self.closing = True
        if not self.waiting:
            self.alive = False
            self.scope.cancel()


class NodeStream:
    """One node's submissions for a step, over its stream (see the module's doc).

    `run` takes (request id, request) pairs; the caller stamps a request's
    submit time when it hands it over (its slot taken), as for a batch POST,
    so time spent here before the write (behind an earlier write, or opening
    a connection) counts in its latency. `settle(request, codes)` is called
    once per request, when its answer is in or it is refused, and then the
    request's slot in `slot` is released.
    """

    def __init__(
        self,
        url: str,
        slot: trio.Semaphore,
        settle: Callable[[Request, Codes], None],
        *,
        timeout_s: float,
        lanes: int = 1,
    ) -> None:
        self.url = url
        self.slot = slot
        self._settle = settle
        self.timeout_s = timeout_s
        self.lanes = lanes
        """Connections kept open at once; requests take them in turn."""
        self.connections = 0
        """Connections opened (more than `lanes`: the node closed one, or one broke)."""

    def settle(self, request: Request, codes: Codes) -> None:
        try:
            self._settle(request, codes)
        finally:
            self.slot.release()

    async def run(self, requests: trio.MemoryReceiveChannel[tuple[int, Request]]) -> None:
        """Send every request of the channel; return when the channel is closed
        and every request sent is settled."""
        lanes: list[_Connection | None] = [None] * self.lanes
        turn = 0
        async with trio.open_nursery() as readers:
            async with requests:
                async for request_id, request in requests:
                    lane, turn = turn, (turn + 1) % self.lanes
                    connection = lanes[lane]
                    if connection is None or not connection.alive:
                        lanes[lane] = connection = None
                        try:
                            sender = await open_stream(self.url, self.timeout_s)
                        except (OSError, Closed, trio.TooSlowError) as exc:
                            self.settle(
                                request, [f"unreachable: {type(exc).__name__}"] * request.count
                            )
                            continue
                        self.connections += 1
                        lanes[lane] = connection = _Connection(self, sender)
                        readers.start_soon(connection.read)
                    await connection.send(request_id, request)
            for connection in lanes:
                if connection is not None:
                    connection.finish()
