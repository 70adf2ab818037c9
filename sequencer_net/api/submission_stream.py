"""`WS /v1/transactions/stream`: batches checked a few at a time, answered in order.

Each binary message is a msgpack batch; each gets one binary answer, in the
order the messages came, sent once its accepted transactions are durably
stored (the intake's promise). Checking a batch waits mostly on other
threads (signature recovery) and on the group commit's fsync, so one message
at a time would leave a busy client's next batches waiting on the socket
while the node is idle for them. The stream therefore reads ahead and checks
up to `max_messages` messages at once, while their sizes together stay
within `max_bytes` (a single message of any allowed size always goes alone);
a message that does not fit waits for the oldest one to be answered. That
keeps the stream's flow control (a client that sends faster than the node
admits waits for its answers) and what one connection holds: at most the
messages in progress plus the one read and waiting for room.

Transactions of messages checked at once may enter the mempool in any order
among those messages, as with parallel batch requests; the answers keep the
message order.

A message that is not binary, or is larger than MAX_BATCH_BODY_BYTES, closes
the socket (code 1003) after the answers of the messages before it. When the
client goes away its unsent answers are dropped; the server may also cancel
the checks still running, which the intake makes safe (a transaction it
admitted stays exactly when the write covering it succeeds).
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

import trio
from starlette.websockets import WebSocketDisconnect

from sequencer_net.api.errors import ApiError
from sequencer_net.api.limits import MAX_BATCH_BODY_BYTES, MiB
from sequencer_net.api.submissions import (
    encode_msgpack_error,
    encode_msgpack_outcomes,
    parse_msgpack_batch,
)

__all__ = ["STREAM_MAX_BYTES", "STREAM_MAX_MESSAGES", "SubmissionStream"]

STREAM_MAX_MESSAGES: Final = 4
"""Messages of one connection checked at once."""

STREAM_MAX_BYTES: Final = 1 * MiB
"""Their bytes together, unless a single message is larger (it then goes alone)."""

CLOSE_UNSUPPORTED: Final = 1003

_GONE: Final = (
    WebSocketDisconnect,
    RuntimeError,  # Starlette: a send after the close
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)
"""What a send to a client that went away raises."""


class Socket(Protocol):
    """What the stream needs of a Starlette WebSocket."""

    async def receive(self) -> Any: ...  # an ASGI message (dict)
    async def send_bytes(self, data: bytes) -> None: ...
    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


Submit = Callable[[list[Any]], Awaitable[list[Any]]]
"""The intake for this connection's client: items -> outcomes (Intake.submit)."""


class _Message:
    __slots__ = ("answer", "done", "sent", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.answer = b""
        self.done = trio.Event()  # checked: `answer` is set
        self.sent = trio.Event()  # answered (or dropped: the client is gone)


class SubmissionStream:
    def __init__(
        self,
        socket: Socket,
        submit: Submit,
        *,
        max_messages: int = STREAM_MAX_MESSAGES,
        max_bytes: int = STREAM_MAX_BYTES,
    ) -> None:
        if max_messages < 1 or max_bytes < 1:
            raise ValueError("a stream checks at least one message of at least one byte")
        self.socket = socket
        self.submit = submit
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._waiting: deque[_Message] = deque()  # taken in, not yet answered
        self._bytes = 0  # their sizes
        self._open = True  # the client is there to answer

    async def run(self) -> None:
        """Serve the (accepted) socket until the client leaves or breaks the rules."""
        send, receive = trio.open_memory_channel[_Message](self.max_messages)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._answer_in_order, receive)
            async with send:
                await self._read(nursery, send)

    async def _read(self, nursery: trio.Nursery, send: trio.MemorySendChannel[_Message]) -> None:
        while True:
            while len(self._waiting) >= self.max_messages:
                await self._waiting[0].sent.wait()
            message = await self.socket.receive()
            if message["type"] == "websocket.disconnect":
                self._open = False
                return
            data = message.get("bytes")
            if data is None or len(data) > MAX_BATCH_BODY_BYTES:
                if self._waiting:
                    await self._waiting[-1].sent.wait()  # answers leave in order
                if self._open:
                    with contextlib.suppress(*_GONE):  # gone already: nothing to close
                        await self.socket.close(
                            code=CLOSE_UNSUPPORTED, reason="send msgpack batches as binary"
                        )
                self._open = False
                return
            while self._waiting and self._bytes + len(data) > self.max_bytes:
                await self._waiting[0].sent.wait()
            taken = _Message(len(data))
            self._waiting.append(taken)
            self._bytes += taken.size
            send.send_nowait(taken)  # room: at most max_messages are waiting
            nursery.start_soon(self._check, data, taken)

    async def _check(self, data: bytes, message: _Message) -> None:
        try:
            outcomes = await self.submit(list(parse_msgpack_batch(data)))
            message.answer = encode_msgpack_outcomes(outcomes)
        except ApiError as exc:
            message.answer = encode_msgpack_error(exc)
        message.done.set()

    async def _answer_in_order(self, receive: trio.MemoryReceiveChannel[_Message]) -> None:
        async with receive:
            async for message in receive:
                await message.done.wait()
                if self._open:
                    try:
                        await self.socket.send_bytes(message.answer)
                    except _GONE:
                        self._open = False
                self._waiting.popleft()
                self._bytes -= message.size
                message.sent.set()
