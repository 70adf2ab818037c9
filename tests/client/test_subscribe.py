"""The subscription iterator against scripted nodes on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from sequencer_net.client import (
    BlockVerifier,
    RetryPolicy,
    SubscriptionFailed,
    SubscriptionVerificationError,
    VerifiedBlock,
    subscribe,
)
from tests.client.chain import NAMESPACE, OTHER, Chain, clone, hx
from tests.client.fake_node import Step, start_node

FAST = RetryPolicy(max_failures=4, initial_backoff_s=0.01, max_backoff_s=0.05)
LIMIT_S = 20  # every test finishes far sooner; a hang fails instead of blocking the run


def chain_of(n: int) -> tuple[Chain, list[dict[str, Any]]]:
    chain = Chain()
    messages = [
        chain.block([chain.tx(), chain.tx(OTHER)] if h % 2 else [chain.tx(OTHER)])
        for h in range(1, n + 1)
    ]
    return chain, messages


async def collect(
    urls: list[str], chain: Chain, count: int, from_height: int = 1, **kwargs: Any
) -> list[VerifiedBlock]:
    verifier = BlockVerifier(chain.validators, chain.domain, NAMESPACE, from_height)
    blocks: list[VerifiedBlock] = []
    with trio.fail_after(LIMIT_S):
        async for block in subscribe(
            urls,
            namespace=NAMESPACE,
            from_height=from_height,
            verifier=verifier,
            retry=FAST,
            **kwargs,
        ):
            blocks.append(block)
            if len(blocks) == count:
                break
    return blocks


async def test_every_block_once_across_a_drop_and_a_4008_close() -> None:
    chain, messages = chain_of(10)
    async with trio.open_nursery() as nursery:
        node = await start_node(
            nursery,
            messages,
            [
                Step(3, "drop", pings=True),
                Step(2, "close", 4008, "too slow; resume from height 6"),
                Step(1, "close", 1000),
                Step(100, "hold"),
            ],
        )
        blocks = await collect([node.url], chain, 10)
        nursery.cancel_scope.cancel()
    assert [b.height for b in blocks] == list(range(1, 11))
    assert [start for _, start in node.requests] == [1, 4, 6, 7]
    assert {ns for ns, _ in node.requests} == {str(NAMESPACE)}


async def test_resumes_from_the_requested_height() -> None:
    chain, messages = chain_of(6)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, messages, [Step(100)])
        blocks = await collect([node.url], chain, 2, from_height=4)
        nursery.cancel_scope.cancel()
    assert [b.height for b in blocks] == [4, 5]
    assert node.requests[0][1] == 4


async def test_switches_to_the_next_url_when_a_node_dies() -> None:
    chain, messages = chain_of(8)
    async with trio.open_nursery() as nursery:
        first = await start_node(nursery, messages, [Step(3, "hold")])
        second = await start_node(nursery, messages, [Step(100)])
        blocks: list[VerifiedBlock] = []
        verifier = BlockVerifier(chain.validators, chain.domain, NAMESPACE)
        with trio.fail_after(LIMIT_S):
            async for block in subscribe(
                [first.url, second.url],
                namespace=NAMESPACE,
                from_height=1,
                verifier=verifier,
                retry=FAST,
            ):
                blocks.append(block)
                if block.height == 3:
                    first.stop()  # the node goes away mid-stream
                if len(blocks) == 8:
                    break
        nursery.cancel_scope.cancel()
    assert [b.height for b in blocks] == list(range(1, 9))
    assert second.requests == [(str(NAMESPACE), 4)]


async def test_a_lying_node_raises() -> None:
    chain, messages = chain_of(4)
    lie = clone(messages[2])
    lie["transactions"].append(hx(chain.tx()))
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, [*messages[:2], lie, messages[3]], [Step(100)])
        with pytest.raises(SubscriptionVerificationError, match="block 3: namespace proof"):
            await collect([node.url], chain, 4)
        nursery.cancel_scope.cancel()


async def test_gives_up_after_consecutive_failures() -> None:
    chain, _ = chain_of(1)
    async with trio.open_nursery() as nursery:
        gone = await start_node(nursery, [], [Step(0)])
        gone.stop()
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(SubscriptionFailed, match="4 consecutive attempts failed"):
            await collect([gone.url], chain, 1)
        nursery.cancel_scope.cancel()


async def test_a_refused_request_is_not_retried() -> None:
    chain, _ = chain_of(1)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, [], [Step(0, "close", 4400, "bad namespace")])
        with pytest.raises(SubscriptionFailed, match="refused the subscription: closed 4400"):
            await collect([node.url], chain, 1)
        nursery.cancel_scope.cancel()
    assert len(node.requests) == 1


async def test_an_oversized_message_ends_the_connection() -> None:
    chain, messages = chain_of(2)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, messages, [Step(100)])
        with pytest.raises(SubscriptionFailed, match="exceeds the size cap"):
            await collect([node.url], chain, 2, max_message_bytes=200)
        nursery.cancel_scope.cancel()


def test_the_asyncio_front_end_yields_the_same_blocks() -> None:
    import asyncio

    chain, messages = chain_of(6)
    result: list[int] = []

    async def consume(url: str) -> None:
        verifier = BlockVerifier(chain.validators, chain.domain, NAMESPACE)
        async for block in subscribe(
            [url], namespace=NAMESPACE, from_height=1, verifier=verifier, retry=FAST
        ):
            result.append(block.height)
            if len(result) == 6:
                break

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            node = await start_node(
                nursery, messages, [Step(2, "drop"), Step(2, "close", 4008, "too slow"), Step(100)]
            )
            # asyncio in a worker thread, its own event loop; the node stays on trio
            await trio.to_thread.run_sync(
                lambda: asyncio.run(asyncio.wait_for(consume(node.url), LIMIT_S))
            )
            nursery.cancel_scope.cancel()
        assert [s for _, s in node.requests] == [1, 3, 5]

    trio.run(main)
    assert result == [1, 2, 3, 4, 5, 6]


async def test_an_idle_connection_is_replaced() -> None:
    chain, messages = chain_of(4)
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, messages, [Step(2, "hold"), Step(100)])
        blocks = await collect([node.url], chain, 4, idle_timeout_s=0.2)
        nursery.cancel_scope.cancel()
    assert [b.height for b in blocks] == [1, 2, 3, 4]
    assert [s for _, s in node.requests] == [1, 3]
