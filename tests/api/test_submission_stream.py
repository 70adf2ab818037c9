"""The submission stream: messages checked a few at a time, answered in order."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from starlette.websockets import WebSocketDisconnect

from sequencer_net.api.errors import bad_request
from sequencer_net.api.intake import Accepted
from sequencer_net.api.submission_stream import SubmissionStream


class FakeSocket:
    """Messages in through a channel; what the stream sends, and its close, recorded."""

    def __init__(self) -> None:
        self.inbound, self._receive = trio.open_memory_channel[dict[str, Any]](100)
        self.sent: list[Any] = []
        self.closed: int | None = None
        self.fail_sends = False

    def put(self, data: bytes | None, text: str | None = None) -> None:
        message = {"type": "websocket.receive", "bytes": data}
        if text is not None:
            message = {"type": "websocket.receive", "text": text}
        self.inbound.send_nowait(message)

    def leave(self) -> None:
        self.inbound.send_nowait({"type": "websocket.disconnect", "code": 1000})

    async def receive(self) -> dict[str, Any]:
        return await self._receive.receive()

    async def send_bytes(self, data: bytes) -> None:
        if self.fail_sends:
            raise RuntimeError("closed")
        self.sent.append(msgspec.msgpack.decode(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = code


class GatedIntake:
    """Each batch (named by its first transaction) is checked when its gate opens;
    records which are in progress at once."""

    def __init__(self) -> None:
        self.gates: dict[bytes, trio.Event] = {}
        self.in_progress: set[bytes] = set()
        self.most = 0
        self.finished: list[bytes] = []

    def gate(self, name: bytes) -> trio.Event:
        return self.gates.setdefault(name, trio.Event())

    async def submit(self, batch: list[Any]) -> list[Any]:
        name = batch[0]
        if name == b"bad":
            raise bad_request("a bad batch")
        self.in_progress.add(name)
        self.most = max(self.most, len(self.in_progress))
        await self.gate(name).wait()
        self.in_progress.discard(name)
        self.finished.append(name)
        return [Accepted(name.ljust(32, b"\0")) for _ in batch]


def batch(name: bytes, filler: int = 0) -> bytes:
    return msgspec.msgpack.encode([name, *([b"x" * 100] * filler)])


def answer(name: bytes) -> list[bytes]:
    return [name.ljust(32, b"\0")]


async def test_answers_keep_the_message_order_when_checks_finish_out_of_order() -> None:
    socket, intake = FakeSocket(), GatedIntake()
    names = [b"a", b"b", b"c", b"d"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(SubmissionStream(socket, intake.submit).run)
        for name in names:
            socket.put(batch(name))
        await trio.testing.wait_all_tasks_blocked()
        assert intake.most == 4  # all four checked at once
        for name in reversed(names):  # the last finishes first
            intake.gate(name).set()
            await trio.testing.wait_all_tasks_blocked()
        assert intake.finished == list(reversed(names))
        assert socket.sent == [answer(n) for n in names]
        socket.leave()


async def test_at_most_max_messages_are_checked_at_once() -> None:
    socket, intake = FakeSocket(), GatedIntake()
    names = [bytes([65 + i]) for i in range(7)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(SubmissionStream(socket, intake.submit, max_messages=3).run)
        for name in names:
            socket.put(batch(name))
        for name in names:
            await trio.testing.wait_all_tasks_blocked()
            assert len(intake.in_progress) <= 3
            intake.gate(name).set()
        await trio.testing.wait_all_tasks_blocked()
        assert intake.most == 3
        assert socket.sent == [answer(n) for n in names]
        socket.leave()


async def test_messages_over_the_byte_bound_are_checked_one_at_a_time() -> None:
    socket, intake = FakeSocket(), GatedIntake()
    stream = SubmissionStream(socket, intake.submit, max_bytes=1000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run)
        socket.put(batch(b"big", filler=20))  # ~2 KB: alone
        socket.put(batch(b"small"))
        await trio.testing.wait_all_tasks_blocked()
        assert intake.in_progress == {b"big"}  # the next waits for room
        intake.gate(b"big").set()
        await trio.testing.wait_all_tasks_blocked()
        assert intake.in_progress == {b"small"}
        intake.gate(b"small").set()
        await trio.testing.wait_all_tasks_blocked()
        assert socket.sent == [answer(b"big") * 21, answer(b"small")]
        assert intake.most == 1
        socket.leave()


async def test_a_refused_batch_is_answered_in_its_place_and_the_stream_goes_on() -> None:
    socket, intake = FakeSocket(), GatedIntake()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(SubmissionStream(socket, intake.submit).run)
        socket.put(batch(b"a"))
        socket.put(batch(b"bad"))
        socket.put(batch(b"c"))
        intake.gate(b"c").set()
        await trio.testing.wait_all_tasks_blocked()
        assert socket.sent == []  # "a" first
        intake.gate(b"a").set()
        await trio.testing.wait_all_tasks_blocked()
        assert socket.sent[0] == answer(b"a")
        assert socket.sent[1]["code"] == "bad_request"
        assert socket.sent[2] == answer(b"c")
        socket.leave()


@pytest.mark.parametrize("wrong", ["text", "too large"])
async def test_a_wrong_message_closes_after_the_answers_before_it(wrong: str) -> None:
    socket, intake = FakeSocket(), GatedIntake()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(SubmissionStream(socket, intake.submit).run)
        socket.put(batch(b"a"))
        if wrong == "text":
            socket.put(None, text="hello")
        else:
            socket.put(b"\x00" * (8 * 1024 * 1024 + 1))
        socket.put(batch(b"never"))
        await trio.testing.wait_all_tasks_blocked()
        assert socket.closed is None  # "a" is not answered yet
        intake.gate(b"a").set()
    assert socket.sent == [answer(b"a")]
    assert socket.closed == 1003
    assert b"never" not in intake.in_progress and b"never" not in intake.finished


async def test_a_disconnect_message_lets_the_checks_in_progress_finish() -> None:
    socket, intake = FakeSocket(), GatedIntake()
    done = False

    async def serve() -> None:
        nonlocal done
        await SubmissionStream(socket, intake.submit).run()
        done = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        socket.put(batch(b"a"))
        socket.put(batch(b"b"))
        socket.leave()
        await trio.testing.wait_all_tasks_blocked()
        assert not done  # waits for the checks in progress, never cancels them
        socket.fail_sends = True
        intake.gate(b"b").set()
        intake.gate(b"a").set()
    assert done
    assert sorted(intake.finished) == [b"a", b"b"]
    assert socket.sent == []


async def test_a_failed_send_drops_the_rest_of_the_answers_quietly() -> None:
    socket, intake = FakeSocket(), GatedIntake()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(SubmissionStream(socket, intake.submit).run)
        socket.put(batch(b"a"))
        socket.put(batch(b"b"))
        socket.fail_sends = True
        intake.gate(b"a").set()
        intake.gate(b"b").set()
        await trio.testing.wait_all_tasks_blocked()
        socket.leave()
    assert intake.finished == [b"a", b"b"]


def test_bounds_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SubmissionStream(FakeSocket(), GatedIntake().submit, max_messages=0)


async def test_a_close_to_a_client_already_gone_ends_the_stream_quietly() -> None:
    socket, intake = FakeSocket(), GatedIntake()

    async def close(code: int = 1000, reason: str | None = None) -> None:
        raise WebSocketDisconnect(1006)

    socket.close = close  # type: ignore[method-assign]
    socket.put(None, text="hello")
    await SubmissionStream(socket, intake.submit).run()  # no exception escapes
    assert socket.sent == []
