"""The benchmark observer against a node 0 that stops (in memory, on the mock
clock): it notices within seconds of node 0 going silent, not after the
subscription's 25 s silence bound plus a hanging reopen's 10 s; it reopens a
subscription that fell behind node 0's status; and it does not give up on a
node 0 that still answers its status while the chain is quiet."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from sequencer_net.api.framed_send import text_frame
from sequencer_net.client import DEFAULT_FEES
from sequencer_net.testnet.bench.drive import ObserverError, StepDriver
from sequencer_net.testnet.bench.limits import (
    EXECUTED_QUIET_S,
    EXECUTED_SILENCE_S,
    NODE0_STALE_S,
    STATUS_PROBE_TIMEOUT_S,
)
from sequencer_net.testnet.bench.traffic import RollupLoad, WireFormat, build_plan
from tests.testnet.fake_node import FakeChain

ANSWER = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


class Node0:
    """Node 0 as the observer sees it: each subscription is answered with the
    executed height at the time, then stays silent (no block, no ping); its
    status reports `height`. Once `stuck`, nothing answers."""

    def __init__(self, nursery: trio.Nursery, height: int) -> None:
        self.nursery = nursery
        self.height = height
        self.stuck = False
        self.subscriptions = 0

    async def open_tcp_stream(self, host: str, port: int) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self._serve, server)
        return client

    async def _serve(self, server: trio.abc.Stream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += await server.receive_some(4096)
        if self.stuck:
            await trio.sleep_forever()
        self.subscriptions += 1
        message = f'{{"type":"executed","height":{self.height}}}'.encode()
        await server.send_all(ANSWER + text_frame(message))
        await trio.sleep_forever()

    async def get(self, path: str) -> httpx.Response:
        if self.stuck:
            await trio.sleep_forever()
        request = httpx.Request("GET", "http://node0" + path)
        if path == "/v1/status":
            return httpx.Response(200, json={"height": self.height}, request=request)
        height = int(path.rsplit("/", 1)[1])
        return httpx.Response(200, json={"height": height, "transactions": []}, request=request)


def driver() -> StepDriver:
    plan = build_plan(
        10.0,
        1.0,
        source=RollupLoad(seed=0, accounts=64),
        nodes=1,
        domain=FakeChain(name="node0", index=0).domain(),
        fees=DEFAULT_FEES,
        wire=WireFormat.JSON,
        seed=1,
    )
    return StepDriver(plan, ["http://127.0.0.1:1"], [os.getpid()])


async def observing(
    monkeypatch: pytest.MonkeyPatch, scenario: Any, height: int = 3
) -> tuple[StepDriver, Node0, list[tuple[float, ObserverError]]]:
    """Run the observer against a Node0 while `scenario(node, step)` runs, until
    the scenario returns or the observer gives up (when, and its error)."""
    step = driver()
    gave_up: list[tuple[float, ObserverError]] = []
    async with trio.open_nursery() as nursery:
        node = Node0(nursery, height)
        monkeypatch.setattr(trio, "open_tcp_stream", node.open_tcp_stream)

        async def observe() -> None:
            try:
                await step._observe(node)  # type: ignore[arg-type]
            except ObserverError as exc:
                gave_up.append((trio.current_time(), exc))
                nursery.cancel_scope.cancel()

        async def run_scenario() -> None:
            await scenario(node, step)
            nursery.cancel_scope.cancel()

        nursery.start_soon(observe)
        nursery.start_soon(run_scenario)
    return step, node, gave_up


async def test_a_node_0_that_stops_is_noticed_within_seconds(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck_at: list[float] = []

    async def scenario(node: Node0, step: StepDriver) -> None:
        await trio.sleep(10)  # quiet but answering its status: kept
        node.stuck = True
        stuck_at.append(trio.current_time())
        await trio.sleep_forever()

    _, _, gave_up = await observing(monkeypatch, scenario)
    ((at, error),) = gave_up
    assert "node 0 does not answer the observer" in str(error)
    noticed_after = at - stuck_at[0]
    # Before, 25 s after (the silence bound), and 35 s after the last message.
    assert NODE0_STALE_S - EXECUTED_QUIET_S <= noticed_after <= NODE0_STALE_S + 3


async def test_a_subscription_behind_node_0s_status_is_reopened(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node 0 executes 4 and 5 without the open subscription saying so: its
    status does, and the reopened subscription brings 5, well before the
    subscription's own silence bound."""

    async def scenario(node: Node0, step: StepDriver) -> None:
        await trio.sleep(0.5)
        assert step._pushed == 3
        node.height = 5
        while step._pushed < 5:
            await trio.sleep(0.1)
        assert trio.current_time() < EXECUTED_QUIET_S + STATUS_PROBE_TIMEOUT_S + 1

    step, node, gave_up = await observing(monkeypatch, scenario)
    assert node.subscriptions == 2 and step._height == 5 and not gave_up


async def test_a_quiet_chain_on_a_node_0_that_answers_is_not_given_up_on(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario(node: Node0, step: StepDriver) -> None:
        await trio.sleep(3 * EXECUTED_SILENCE_S)

    step, _, gave_up = await observing(monkeypatch, scenario)
    assert step._height == 3 and not gave_up


async def test_a_status_poll_that_times_out_is_an_observer_error_not_a_traceback() -> None:
    """A snapshot's status poll of a node 0 that stalls (a read timeout, a
    refused connection, a body that is not JSON) ends the run with the
    observer's clear error."""

    def stalled(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    def garbled(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"<html>", request=request)

    for handler in (stalled, garbled):
        async with httpx.AsyncClient(
            base_url="http://node0", transport=httpx.MockTransport(handler)
        ) as observer:
            with pytest.raises(ObserverError, match="does not answer"):
                await driver()._snapshot(observer)
