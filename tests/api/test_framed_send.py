"""Block messages written as ready-made frames straight to each subscriber's
connection (api/framed_send.py), over real sockets on 127.0.0.1: the same
frame reaches every subscriber of its namespace and only them, in order, read
by an independent WebSocket implementation (wsproto, in the SDK's client);
a subscriber that vanishes mid-fan-out leaves the others whole; one that stops
reading is dropped while the others go on; nothing is written after a close
frame. Every wait is bounded; servers are cancelled at the end."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing
from starlette.websockets import WebSocketDisconnect
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from sequencer_net.api import framed_send
from sequencer_net.api.framed_send import FramedSender, TextFrame, text_frame
from sequencer_net.api.http_server import ConnectionStream
from sequencer_net.api.server import ApiOptions, build_app
from sequencer_net.client.websocket_trio import TrioWebSocket, WebSocketEnded
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.storage.node_store import NodeStore
from tests.api.conftest import GENESIS, ApiWorld
from tests.api.test_http_server import serving
from tests.api.test_subscription_stalled_socket import commit_large
from tests.api.test_subscriptions import NS, Chain
from tests.mempool.factories import DOMAIN

BOUND_S = 20.0
MAX_MESSAGE = 64 * 1024 * 1024
OTHER_NS = 3


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_a_text_frame_reads_back_as_the_text_in_wsproto(size: int) -> None:
    text = "x" * size
    client = Connection(ConnectionType.CLIENT)  # after the handshake
    client.receive_data(text_frame(text.encode()))
    events = list(client.events())
    assert len(events) == 1
    assert isinstance(events[0], TextMessage) and events[0].message_finished
    assert events[0].data == text
    assert TextFrame.of(text).text == text


class _Sent(trio.abc.Stream):
    """A socket stand-in that keeps what is written."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    async def send_all(self, data: bytes | memoryview) -> None:
        await trio.lowlevel.checkpoint()
        self.written.append(bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.sleep_forever()
        return b""

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


async def test_nothing_is_written_after_a_close_frame() -> None:
    ours, theirs = trio.socket.socketpair()
    server, client = trio.SocketStream(ours), trio.SocketStream(theirs)
    connection = ConnectionStream(server, 5.0, lambda: None)
    connection.frames_only = True
    sender = FramedSender(None, connection)  # type: ignore[arg-type]
    message = TextFrame.of('{"type":"block"}')
    await sender.send(message)
    await connection.send_all(b"\x88\x02\x03\xe8")  # the server's close (1000)
    assert connection.close_sent
    with pytest.raises(WebSocketDisconnect):
        await sender.send(message)
    await server.aclose()
    received = b""
    with trio.fail_after(BOUND_S):
        while chunk := await client.receive_some(65536):
            received += chunk
    assert received == message.frame + b"\x88\x02\x03\xe8"
    await client.aclose()


async def test_a_frame_larger_than_the_socket_buffer_is_written_whole() -> None:
    """What the socket does not take at once follows under the same write."""
    ours, theirs = trio.socket.socketpair()
    server, client = trio.SocketStream(ours), trio.SocketStream(theirs)
    connection = ConnectionStream(server, 5.0, lambda: None)
    message = TextFrame.of("y" * 4_000_000)
    received = bytearray()

    async def read() -> None:
        while len(received) < len(message.frame) + 4:
            received.extend(await client.receive_some(1 << 20))

    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(FramedSender(None, connection).send, message)  # type: ignore[arg-type]
            nursery.start_soon(connection.send_all, b"\x8a\x02ok")  # a pong, waiting its turn
            nursery.start_soon(read)
    pong = b"\x8a\x02ok"
    assert bytes(received) in (message.frame + pong, pong + message.frame)  # never inside it
    await server.aclose()
    await client.aclose()


async def test_writes_never_interleave_on_one_connection() -> None:
    """Two writers at once: each write reaches the socket whole, one after the other."""

    class Slow(_Sent):
        async def send_all(self, data: bytes | memoryview) -> None:
            half = len(data) // 2
            self.written.append(bytes(data[:half]))
            await trio.sleep(0.01)  # a write that blocks halfway
            self.written.append(bytes(data[half:]))

    slow = Slow()
    connection = ConnectionStream(slow, 5.0, lambda: None)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection.send_all, b"AAAA")
        nursery.start_soon(connection.send_all, b"BBBB")
    assert b"".join(slow.written) in (b"AAAABBBB", b"BBBBAAAA")


def _world(
    tmp_path: Path, subscriber_queue: int = 256
) -> tuple[NodeStore, Chain, ApiWorld, ApiOptions]:
    store = NodeStore(tmp_path / "chain", genesis_digest=GENESIS, sync=False)
    chain = Chain(store)
    world = ApiWorld(store=store, mempool=Mempool(DOMAIN))
    return (
        store,
        chain,
        world,
        ApiOptions(host="127.0.0.1", port=0, subscriber_queue=subscriber_queue),
    )


async def _read_until(ws: TrioWebSocket, last: int) -> list[str]:
    texts: list[str] = []
    with trio.fail_after(BOUND_S):
        while True:
            text = await ws.receive_text(BOUND_S)
            texts.append(text)
            if msgspec.json.decode(text)["height"] >= last:
                return texts


async def test_the_same_frame_reaches_every_subscriber_of_its_namespace_and_only_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct: list[bool] = []
    made = framed_send.sender_for

    def spied(websocket: object) -> FramedSender:
        sender = made(websocket)  # type: ignore[arg-type]
        direct.append(sender.connection is not None)
        return sender

    monkeypatch.setattr("sequencer_net.api.subscriptions.sender_for", spied)
    store, chain, world, options = _world(tmp_path)
    context = world.context()
    context.commit_feed = chain.feed
    chain.commit()  # height 1: history for every subscriber
    try:
        async with serving(build_app(context, options), options) as (port, _):
            base = f"ws://127.0.0.1:{port}/v1/subscribe/blocks?from=1&namespace="
            ours = [await TrioWebSocket.connect(base + str(NS), 5.0, MAX_MESSAGE) for _ in range(3)]
            others = [await TrioWebSocket.connect(base + str(OTHER_NS), 5.0, MAX_MESSAGE)]
            for _ in range(4):
                chain.commit((NS, OTHER_NS, NS))
                await trio.sleep(0.01)
            got = [await _read_until(ws, 5) for ws in ours + others]
            for ws in ours + others:
                await ws.close()
        expected = [await _message(chain, height, NS) for height in range(1, 6)]
    finally:
        store.close()
    assert direct == [True] * 4  # every one written directly
    assert got[0] == got[1] == got[2]  # the same text, byte for byte
    assert [msgspec.json.decode(t)["height"] for t in got[0]] == [1, 2, 3, 4, 5]
    assert {msgspec.json.decode(t)["namespace"] for t in got[0]} == {NS}
    assert {msgspec.json.decode(t)["namespace"] for t in got[3]} == {OTHER_NS}
    assert got[3] != got[0]
    assert got[0] == expected  # the node's own message text


async def _message(chain: Chain, height: int, namespace: int) -> str:
    from sequencer_net.api.subscriptions import BlockMessages

    text = await BlockMessages(chain.store).message(height, namespace)
    assert text is not None
    return text


async def test_a_subscriber_gone_mid_fan_out_leaves_the_others_whole(tmp_path: Path) -> None:
    store, chain, world, options = _world(tmp_path)
    context = world.context()
    context.commit_feed = chain.feed
    try:
        async with serving(build_app(context, options), options) as (port, _):
            url = f"ws://127.0.0.1:{port}/v1/subscribe/blocks?from=1&namespace={NS}"
            sockets = [await TrioWebSocket.connect(url, 5.0, MAX_MESSAGE) for _ in range(6)]
            gone = sockets[2]
            chain.commit()
            with trio.fail_after(BOUND_S):
                await gone.receive_text(BOUND_S)
            await gone._stream.aclose()  # vanishes: no close frame
            for _ in range(5):
                chain.commit()  # sends to it fail while the others' go out
                await trio.sleep(0)
            for ws in sockets[:2] + sockets[3:]:
                texts = await _read_until(ws, 6)
                assert [msgspec.json.decode(t)["height"] for t in texts] == list(range(1, 7))
                await ws.close()
    finally:
        store.close()


async def test_a_subscriber_that_stops_reading_is_dropped_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    store, chain, world, options = _world(tmp_path, subscriber_queue=2)
    context = world.context()
    context.commit_feed = chain.feed
    try:
        async with serving(build_app(context, options), options, send_timeout_s=0.5) as (port, _):
            url = f"ws://127.0.0.1:{port}/v1/subscribe/blocks?namespace={NS}"
            stalled = await TrioWebSocket.connect(url, 5.0, MAX_MESSAGE)  # never reads
            reader = await TrioWebSocket.connect(url, 5.0, MAX_MESSAGE)
            first = chain.store.tip()[0] + 1
            heights: list[int] = []
            with trio.fail_after(BOUND_S):
                while len(heights) < 12:
                    commit_large(chain)  # about 1.5 MiB a message: the stalled one fills up
                    heights.append(
                        msgspec.json.decode(await reader.receive_text(BOUND_S))["height"]
                    )
            assert heights == list(range(first, first + 12))
            with trio.fail_after(BOUND_S), pytest.raises(WebSocketEnded):
                while True:  # what was buffered, then its end
                    await stalled.receive_text(BOUND_S)
            await reader.close()
    finally:
        store.close()


async def test_a_subscriber_catching_up_lets_other_tasks_run_between_its_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes the socket takes at once pass no checkpoint of their own; the
    sender still yields after each, so history never holds the event loop."""
    ticks = 0
    seen: list[int] = []
    send_now = ConnectionStream.send_now

    async def counted(self: ConnectionStream, data: bytes) -> None:
        seen.append(ticks)
        await send_now(self, data)

    monkeypatch.setattr(ConnectionStream, "send_now", counted)
    store, chain, world, options = _world(tmp_path)
    context = world.context()
    context.commit_feed = chain.feed
    for _ in range(30):
        chain.commit()

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    try:
        async with (
            serving(build_app(context, options), options) as (port, _),
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(tick)
            url = f"ws://127.0.0.1:{port}/v1/subscribe/blocks?from=1&namespace={NS}"
            ws = await TrioWebSocket.connect(url, 5.0, MAX_MESSAGE)
            texts = await _read_until(ws, 30)
            await ws.close()
            nursery.cancel_scope.cancel()
    finally:
        store.close()
    assert len(texts) == 30 and len(seen) >= 30
    assert seen[29] - seen[0] >= 15, seen  # the other task ran all along (not once at the end)


async def test_a_frame_begun_at_once_is_finished_before_any_other_write() -> None:
    """`write_now` writes what the socket takes and keeps the rest pending: the
    next write on the connection (here a pong of the server's) sends it first,
    so the frame stays whole."""
    ours, theirs = trio.socket.socketpair()
    ours.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_SNDBUF, 4096)
    server, client = trio.SocketStream(ours), trio.SocketStream(theirs)
    connection = ConnectionStream(server, 5.0, lambda: None)
    connection.frames_only = True
    message = TextFrame.of("z" * 2_000_000)  # more than the socket buffers hold
    assert FramedSender(None, connection).send_at_once(message)  # type: ignore[arg-type]
    assert connection.pending is not None and not connection.can_write_now()
    pong = b"\x8a\x02ok"
    received = bytearray()

    async def read() -> None:
        while len(received) < len(message.frame) + len(pong):
            received.extend(await client.receive_some(1 << 20))

    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.send_all, pong)
            nursery.start_soon(read)
    assert bytes(received) == message.frame + pong
    assert connection.pending is None and connection.can_write_now()
    await server.aclose()
    await client.aclose()


async def test_live_heights_are_pushed_to_idle_subscribers_without_waking_their_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber waiting with nothing to send gets each new height written
    to its socket from the feed's change itself (`Subscriptions._push`), not
    by its task; what it reads is the same text, every height once, in order."""
    from sequencer_net.api.subscriptions import Subscriptions

    made: list[Subscriptions] = []
    init = Subscriptions.__init__

    def capture(self: Subscriptions, **kwargs: object) -> None:
        init(self, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    task_sends = 0
    send = FramedSender.send

    async def counted(self: FramedSender, message: TextFrame) -> None:
        nonlocal task_sends
        task_sends += 1
        await send(self, message)

    monkeypatch.setattr(Subscriptions, "__init__", capture)
    monkeypatch.setattr(FramedSender, "send", counted)
    store, chain, world, options = _world(tmp_path)
    context = world.context()
    context.commit_feed = chain.feed
    chain.commit()
    try:
        async with serving(build_app(context, options), options) as (port, _):
            (subs,) = made
            url = f"ws://127.0.0.1:{port}/v1/subscribe/blocks?namespace="
            sockets = [
                await TrioWebSocket.connect(url + str(ns), 5.0, MAX_MESSAGE)
                for ns in (NS, NS, OTHER_NS)
            ]
            with trio.fail_after(BOUND_S):
                while len(subs._block_subscribers) < 3 or not all(
                    s.parked for s in subs._block_subscribers
                ):
                    await trio.sleep(0.001)
            for _ in range(5):
                chain.commit((NS, OTHER_NS, NS))
                await trio.sleep(0)
            got = [await _read_until(ws, 6) for ws in sockets]
            for ws in sockets:
                await ws.close()
        expected = [await _message(chain, height, NS) for height in range(2, 7)]
    finally:
        store.close()
    assert task_sends == 0 and subs.pushed == 3 * 5
    assert got[0] == got[1] == expected
    assert [msgspec.json.decode(t)["height"] for t in got[2]] == list(range(2, 7))


async def test_the_executed_height_goes_out_as_frames_straight_to_the_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/v1/subscribe/executed` writes as the block stream does: each message a
    whole frame on the connection's direct path (`ConnectionStream.send_now`,
    under its write deadline), read back by wsproto; none through the ASGI
    send, which would frame it again for each subscriber."""
    direct: list[bytes] = []
    send_now = ConnectionStream.send_now

    async def counted(self: ConnectionStream, data: bytes) -> None:
        direct.append(bytes(data))
        await send_now(self, data)

    monkeypatch.setattr(ConnectionStream, "send_now", counted)
    store, chain, world, options = _world(tmp_path)
    context = world.context()
    context.commit_feed = chain.feed
    chain.commit()
    try:
        async with serving(build_app(context, options), options) as (port, _):
            ws = await TrioWebSocket.connect(
                f"ws://127.0.0.1:{port}/v1/subscribe/executed", 5.0, MAX_MESSAGE
            )
            heights = []
            with trio.fail_after(BOUND_S):
                while not heights or heights[-1] < 3:
                    if heights:
                        chain.commit()
                    heights.append(msgspec.json.decode(await ws.receive_text(BOUND_S))["height"])
            await ws.close()
    finally:
        store.close()
    assert heights == [1, 2, 3]
    texts = [f'{{"type":"executed","height":{h}}}' for h in heights]
    assert direct == [text_frame(t.encode()) for t in texts]
