"""The leader's side of payloads: a leader whose execution trails finalization
by more than MAX_EXECUTION_BACKLOG, or the new block by more than
MAX_EXECUTION_LAG, waits (a bounded time) for execution before it builds,
instead of racing ahead with small or empty blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import trio
from trio.testing import MockClock

from sequencer_net.payload.checks import MAX_EXECUTION_BACKLOG, MAX_EXECUTION_LAG, BatchSize
from sequencer_net.payload.format import decode_payload
from sequencer_net.payload.service import PayloadService

BATCH = b"\xbb" * 32
LAG_WAIT_MS = 400


@dataclass
class _Committed:
    height: int = 0


class FakeCore:
    def __init__(self, committed: int = 0) -> None:
        self.committed = _Committed(committed)

    def known_block(self, digest: bytes) -> None:
        return None


class FakePool:
    """One verified batch waiting to be ordered."""

    def unincluded(self, exclude: set[bytes], limit: int) -> list[tuple[bytes, BatchSize]]:
        return [(BATCH, BatchSize(transactions=1, tx_bytes=100))][:limit]

    async def wait_for_batch(self) -> None:
        await trio.sleep_forever()


class Execution:
    def __init__(self, height: int) -> None:
        self.height = height
        self.advanced = trio.Event()

    def executed(self) -> tuple[int, bytes]:
        return self.height, b"\x00" * 32

    async def wait_executed(self, height: int) -> None:
        while self.height < height:
            await self.advanced.wait()

    def advance_to(self, height: int) -> None:
        self.height = height
        self.advanced.set()
        self.advanced = trio.Event()


def service(execution: Execution, committed: int = 0) -> PayloadService:
    pool: Any = FakePool()
    core: Any = FakeCore(committed)
    return PayloadService(
        core=core,
        pool=pool,
        fetcher=None,  # type: ignore[arg-type]
        genesis_time_ms=0,
        genesis_state_root=b"\x00" * 32,
        executed=execution.executed,
        wait_executed=execution.wait_executed,
        state_root_at=lambda height: None,
        empty_block_wait_ms=100,
        lag_wait_ms=LAG_WAIT_MS,
        clock_ms=lambda: 1_000,
    )


async def test_a_leader_within_the_lag_builds_at_once(autojump_clock: MockClock) -> None:
    execution = Execution(height=10)
    start = trio.current_time()
    payload = decode_payload(await service(execution).build(b"\x01" * 32, 10 + MAX_EXECUTION_LAG))
    assert payload.batches == [BATCH]
    assert trio.current_time() == start


async def test_a_lagging_leader_waits_for_execution_then_fills_the_block(
    autojump_clock: MockClock,
) -> None:
    execution = Execution(height=10)
    height = 10 + MAX_EXECUTION_LAG + 3
    built: list[bytes] = []

    async def leader() -> None:
        built.append(await service(execution).build(b"\x01" * 32, height))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader)
        await trio.sleep(0.1)
        assert built == []  # waiting for execution, not racing ahead
        execution.advance_to(height - MAX_EXECUTION_LAG)
        await trio.sleep(0.01)
        assert len(built) == 1
    payload = decode_payload(built[0])
    assert payload.batches == [BATCH]
    assert payload.state_height == height - MAX_EXECUTION_LAG


async def test_the_wait_is_bounded_and_a_still_lagging_leader_proposes_empty(
    autojump_clock: MockClock,
) -> None:
    execution = Execution(height=10)
    start = trio.current_time()
    built = await service(execution).build(b"\x01" * 32, 10 + MAX_EXECUTION_LAG + 1)
    payload = decode_payload(built)
    assert trio.current_time() - start == LAG_WAIT_MS / 1000
    assert payload.batches == []  # the block keeps consensus alive, adds no work


async def test_a_leader_waits_for_the_finalized_blocks_its_execution_owes(
    autojump_clock: MockClock,
) -> None:
    """Execution trails finalization by 3 blocks: the leader waits until the
    backlog is MAX_EXECUTION_BACKLOG, so the batches meanwhile make one block."""
    execution = Execution(height=10)
    committed = 10 + MAX_EXECUTION_BACKLOG + 2
    built: list[bytes] = []

    async def leader() -> None:
        built.append(await service(execution, committed).build(b"\x01" * 32, committed + 2))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader)
        await trio.sleep(0.1)
        execution.advance_to(committed - MAX_EXECUTION_BACKLOG - 1)
        await trio.sleep(0.1)
        assert built == []  # still one block more behind than allowed
        execution.advance_to(committed - MAX_EXECUTION_BACKLOG)
        await trio.sleep(0.01)
        assert len(built) == 1
    assert decode_payload(built[0]).batches == [BATCH]


async def test_a_leader_never_waits_for_consensus_itself(autojump_clock: MockClock) -> None:
    """Execution has caught up with finalization: building starts at once, however
    far the proposed height runs ahead of it within MAX_EXECUTION_LAG."""
    execution = Execution(height=20)
    start = trio.current_time()
    await service(execution, committed=20).build(b"\x01" * 32, 20 + MAX_EXECUTION_LAG)
    assert trio.current_time() == start
