"""The benchmark's light WebSocket receiver against frames made by wsproto (an
independent implementation): whole and fragmented messages, split across
reads; a ping answered; the close frame's code and reason; each message
timed at the read that completed it."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Ping, Pong, TextMessage

from sequencer_net.testnet.bench.ws_receiver import Closed, LightReceiver

ANSWER = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


async def test_messages_fragments_ping_and_close() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = Connection(ConnectionType.SERVER)
    receiver = LightReceiver(client_end, 1 << 20)
    got: list[bytes] = []
    closed: list[Closed] = []

    async def client() -> None:
        await receiver.open("127.0.0.1:1", "/v1/subscribe/blocks?namespace=1")
        try:
            async for message, _ in receiver.messages():
                got.append(message)
        except Closed as exc:
            closed.append(exc)

    async def node() -> None:
        request = await server_end.receive_some()
        assert request.startswith(b"GET /v1/subscribe/blocks?namespace=1 HTTP/1.1\r\n")
        whole = server.send(TextMessage(data='{"type":"block","height":1}'))
        # The answer and the first message in one read, the message split after.
        await server_end.send_all(ANSWER + whole[:5])
        await trio.sleep(0.01)
        await server_end.send_all(whole[5:])
        await server_end.send_all(server.send(TextMessage(data="ab", message_finished=False)))
        await server_end.send_all(server.send(Ping(payload=b"hi")))
        await server_end.send_all(server.send(TextMessage(data="cd")))
        await server_end.send_all(server.send(CloseConnection(code=4008, reason="too slow")))
        answers: list[object] = []
        while len(answers) < 2:
            server.receive_data(await server_end.receive_some())
            answers.extend(server.events())
        assert isinstance(answers[0], Pong) and answers[0].payload == b"hi"
        assert isinstance(answers[1], CloseConnection) and answers[1].code == 4008

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            nursery.start_soon(node)
    assert got == [b'{"type":"block","height":1}', b"abcd"]
    assert closed[0].code == 4008 and closed[0].reason == "too slow"


async def test_the_arrival_time_is_the_read_that_completed_the_message(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sequencer_net.testnet.bench.ws_receiver.time.time", trio.current_time)
    client_end, server_end = trio.testing.memory_stream_pair()
    server = Connection(ConnectionType.SERVER)
    receiver = LightReceiver(client_end, 1 << 20)
    frame = server.send(TextMessage(data="x" * 1000))
    await server_end.send_all(ANSWER + frame[:10])
    await receiver.open("h", "/")
    started = trio.current_time()

    async def rest() -> None:
        await trio.sleep(5)
        await server_end.send_all(frame[10:])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(rest)
        async for message, at in receiver.messages():
            assert message == b"x" * 1000
            assert at == pytest.approx(started + 5)
            break


async def test_a_refused_handshake_is_closed() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    await server_end.send_all(b"HTTP/1.1 403 Forbidden\r\n\r\n")
    with pytest.raises(Closed, match="refused"):
        await LightReceiver(client_end, 1024).open("h", "/")
