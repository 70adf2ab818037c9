"""The leader's side of payloads: a leader whose execution trails finalization
by more than MAX_EXECUTION_BACKLOG, or the new block by more than
MAX_EXECUTION_LAG, waits (a bounded time) for execution before it builds,
instead of racing ahead with small or empty blocks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import trio
from trio.testing import MockClock

from consensus.messages import Block
from sequencer_net.payload.checks import (
    MAX_EXECUTION_BACKLOG,
    MAX_EXECUTION_LAG,
    BatchSize,
    NamespaceRootMismatch,
)
from sequencer_net.payload.format import BlockPayload, decode_payload, encode_payload
from sequencer_net.payload.namespaces import EMPTY_ROOT, namespace_proof, namespace_root
from sequencer_net.payload.service import (
    ENGINE_PACE_WEIGHT,
    PACE_FULL_TXS,
    PACE_LARGE_TXS,
    PACE_MAX_FACTOR,
    PACE_STRETCH_TXS,
    ROOT_IN_THREAD_MIN_TXS,
    PayloadService,
    pacing_interval_ms,
)

BATCH = b"\xbb" * 32
LAG_WAIT_MS = 400


@dataclass
class _Committed:
    height: int = 0


class FakeCore:
    def __init__(self, committed: int = 0) -> None:
        self.committed = _Committed(committed)

    def known_block(self, digest: bytes) -> Block | None:
        """Any digest not named otherwise is an ancestor at or below the executed
        height: the voter knows every uncommitted ancestor."""
        return Block(view=0, height=0, parent=b"\x00" * 32, proposer=0, payload=b"")


class FakePool:
    """Verified batches waiting to be ordered (by default one, of one transaction)."""

    def __init__(self, batches: dict[bytes, list[tuple[int, bytes]]] | None = None) -> None:
        self.batches = batches if batches is not None else {BATCH: [(3, b"\x33" * 32)]}
        self.ordered: dict[bytes, int] = {}
        """Transactions of batches held here that blocks already ordered."""
        self.engine: dict[bytes, int] = {}
        """How many of a batch's transactions are the engine's (namespace 0)."""

    def __contains__(self, digest: object) -> bool:
        return digest in self.batches

    def unincluded(self, exclude: set[bytes], limit: int) -> list[tuple[bytes, BatchSize]]:
        return [
            (digest, BatchSize(transactions=len(pairs), tx_bytes=100 * len(pairs)))
            for digest, pairs in self.batches.items()
            if digest not in exclude
        ][:limit]

    def size_of(self, digest: bytes) -> BatchSize | None:
        if digest in self.ordered:
            return BatchSize(self.ordered[digest], 100 * self.ordered[digest])
        pairs = self.batches.get(digest)
        return None if pairs is None else BatchSize(len(pairs), 100 * len(pairs))

    def namespace_pairs(self, digest: bytes) -> list[tuple[int, bytes]] | None:
        return self.batches.get(digest)

    def engine_transactions(self, digest: bytes) -> int:
        return self.engine.get(digest, 0)

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


def service(
    execution: Execution, committed: int = 0, fake_pool: FakePool | None = None
) -> PayloadService:
    pool: Any = fake_pool or FakePool()
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


async def test_a_leader_builds_at_once_while_the_backlog_is_within_the_bound(
    autojump_clock: MockClock,
) -> None:
    """MAX_EXECUTION_BACKLOG finalized blocks still waiting for their share
    round or their execution hold up no proposal: ordering runs ahead of
    execution by that much, so a block's share round overlaps the proposal
    and voting of the next ones."""
    committed = 20
    execution = Execution(height=committed - MAX_EXECUTION_BACKLOG)
    start = trio.current_time()
    built = await service(execution, committed).build(b"\x01" * 32, committed + 1)
    assert trio.current_time() == start
    payload = decode_payload(built)
    assert payload.batches == [BATCH]
    assert payload.state_height == committed - MAX_EXECUTION_BACKLOG


async def test_a_leader_one_block_beyond_the_bound_waits_until_execution_reaches_it(
    autojump_clock: MockClock,
) -> None:
    """One finalized block more than the bound: the leader waits, and builds the
    moment execution gets back within it (woken by execution, well before the
    bounded wait runs out)."""
    committed = 20
    execution = Execution(height=committed - MAX_EXECUTION_BACKLOG - 1)
    built: list[bytes] = []
    start = trio.current_time()

    async def leader() -> None:
        built.append(await service(execution, committed).build(b"\x01" * 32, committed + 1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader)
        await trio.sleep(0.05)
        assert built == []
        execution.advance_to(committed - MAX_EXECUTION_BACKLOG)
    assert trio.current_time() - start < LAG_WAIT_MS / 1000
    payload = decode_payload(built[0])
    assert payload.batches == [BATCH]
    assert payload.state_height == committed - MAX_EXECUTION_BACKLOG


async def test_a_leader_never_waits_for_consensus_itself(autojump_clock: MockClock) -> None:
    """Execution has caught up with finalization: building starts at once, however
    far the proposed height runs ahead of it within MAX_EXECUTION_LAG."""
    execution = Execution(height=20)
    start = trio.current_time()
    await service(execution, committed=20).build(b"\x01" * 32, 20 + MAX_EXECUTION_LAG)
    assert trio.current_time() == start


def _h(i: int) -> bytes:
    return bytes([i]) * 32


SEVERAL_NAMESPACES = {
    b"\x01" * 32: [(7, _h(1)), (0, _h(2)), (7, _h(3))],
    b"\x02" * 32: [(2, _h(4)), (7, _h(5)), (0, _h(2))],  # _h(2) again: counted once
}


async def test_a_leaders_block_carries_the_namespace_root_of_its_batches(
    autojump_clock: MockClock,
) -> None:
    built = await service(Execution(10), fake_pool=FakePool(SEVERAL_NAMESPACES)).build(
        b"\x01" * 32, 11
    )
    payload = decode_payload(built)
    assert payload.batches == list(SEVERAL_NAMESPACES)
    pairs = [(7, _h(1)), (0, _h(2)), (7, _h(3)), (2, _h(4)), (7, _h(5))]
    assert payload.namespace_root == namespace_root(pairs)
    assert namespace_proof(pairs, 7).present is not None
    assert namespace_proof(pairs, 7).present.entry.count == 3  # type: ignore[union-attr]
    empty = await service(Execution(10), fake_pool=FakePool({})).build(b"\x01" * 32, 11)
    assert decode_payload(empty).namespace_root == EMPTY_ROOT


async def test_a_voter_checks_the_namespace_root_against_the_batches(
    autojump_clock: MockClock,
) -> None:
    voter = service(Execution(10), fake_pool=FakePool(SEVERAL_NAMESPACES))
    good = decode_payload(await voter.build(b"\x01" * 32, 11))

    def block(payload: object) -> Block:
        return Block(
            view=11, height=11, parent=b"\x01" * 32, proposer=1, payload=encode_payload(payload)
        )

    await voter.check(block(good))
    assert await voter.verify(block(good))
    wrong = msgspec.structs.replace(good, namespace_root=EMPTY_ROOT)
    with pytest.raises(NamespaceRootMismatch):
        await voter.check(block(wrong))
    assert not await voter.verify(block(wrong))


async def test_a_voter_logs_how_long_an_accepted_payload_took_to_check(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    voter = service(Execution(10), fake_pool=FakePool(SEVERAL_NAMESPACES))
    good = decode_payload(await voter.build(b"\x01" * 32, 11))
    wrong = msgspec.structs.replace(good, namespace_root=EMPTY_ROOT)
    caplog.set_level(logging.INFO, logger="seqnet")
    assert not await voter.verify(Block(12, 11, b"\x01" * 32, 1, encode_payload(wrong)))
    assert await voter.verify(Block(11, 11, b"\x01" * 32, 1, encode_payload(good)))
    checked = [r.getMessage() for r in caplog.records if "event=payload_checked" in r.getMessage()]
    assert len(checked) == 1  # the refused payload logs payload_rejected instead
    assert checked[0].startswith("event=payload_checked view=11 height=11 check_ms=")
    assert "batch_wait_ms=" in checked[0] and "certificate_wait_ms=" in checked[0]


class ChainCore(FakeCore):
    """Blocks the core knows, by digest."""

    def __init__(self, committed: int, blocks: list[Block]) -> None:
        super().__init__(committed)
        self.blocks = {b.digest(): b for b in blocks}

    def known_block(self, digest: bytes) -> Block | None:
        return self.blocks.get(digest) or super().known_block(digest)


async def test_a_leader_does_not_name_again_batches_of_committed_blocks_it_has_not_executed(
    autojump_clock: MockClock,
) -> None:
    """Blocks 11 and 12 are committed, execution is at 10: their batches are not
    marked included yet, but a new block must not repeat them."""
    b1, b2, b3 = (bytes([i]) * 32 for i in (0xB1, 0xB2, 0xB3))
    pool = FakePool({b1: [(1, _h(1))], b2: [(1, _h(2))], b3: [(1, _h(3))]})

    def block(height: int, parent: bytes, batches: list[bytes]) -> Block:
        payload = BlockPayload(0, 0, b"\x00" * 32, batches, namespace_root([]))
        return Block(height, height, parent, 0, encode_payload(payload))

    eleven = block(11, b"\x0a" * 32, [b2])
    twelve = block(12, eleven.digest(), [b1])
    leader = service(Execution(10), committed=12, fake_pool=pool)
    leader.core = ChainCore(12, [eleven, twelve])  # type: ignore[assignment]
    built = decode_payload(await leader.build(twelve.digest(), 13))
    assert built.batches == [b3]
    assert built.namespace_root == namespace_root([(1, _h(3))])


async def test_a_large_blocks_root_goes_through_the_worker_thread_and_is_still_checked() -> None:
    pairs = [(i % 5, i.to_bytes(32, "big")) for i in range(ROOT_IN_THREAD_MIN_TXS)]
    voter = service(Execution(10), fake_pool=FakePool({b"\x01" * 32: pairs}))
    built = decode_payload(await voter.build(b"\x01" * 32, 11))
    assert built.namespace_root == namespace_root(pairs)
    block = Block(11, 11, b"\x01" * 32, 1, encode_payload(built))
    assert await voter.verify(block)
    wrong = msgspec.structs.replace(built, namespace_root=EMPTY_ROOT)
    assert not await voter.verify(Block(11, 11, b"\x01" * 32, 1, encode_payload(wrong)))


PACE_MS = 80
EPOCH_MS = 1_700_000_000_000
"""Wall-clock ms at the mock clock's zero."""


PARENT_BATCH = b"\x0b" * 32


def paced_leader(
    parent_timestamp_ms: int,
    min_block_wait_ms: int = PACE_MS,
    pool: FakePool | None = None,
    parent_txs: int | list[int] = PACE_FULL_TXS,
) -> tuple[PayloadService, bytes]:
    """A leader whose wall clock runs with the mock clock, building on a parent
    (height 10, executed and committed) stamped `parent_timestamp_ms` that
    carries one batch of `parent_txs` transactions (a busy network's block by
    default), or one batch per count of a list."""
    counts = [parent_txs] if isinstance(parent_txs, int) else parent_txs
    parent_batches = [PARENT_BATCH[:-1] + bytes([i]) for i in range(len(counts))]
    parent = Block(
        10,
        10,
        b"\x0a" * 32,
        1,
        encode_payload(
            BlockPayload(parent_timestamp_ms, 0, b"\x00" * 32, parent_batches, EMPTY_ROOT)
        ),
    )
    pool = pool if pool is not None else FakePool()
    pool.ordered.update(zip(parent_batches, counts, strict=True))
    leader = service(Execution(10), committed=10, fake_pool=pool)
    leader.core = ChainCore(10, [parent])  # type: ignore[assignment]
    leader.min_block_wait_ms = min_block_wait_ms
    leader.clock_ms = lambda: EPOCH_MS + round(trio.current_time() * 1000)
    return leader, parent.digest()


def now_ms() -> int:
    return EPOCH_MS + round(trio.current_time() * 1000)


async def test_a_paced_leader_holds_its_proposal_until_the_interval_after_its_parent(
    autojump_clock: MockClock,
) -> None:
    """The parent was stamped 30 ms ago: a batch is there, yet the leader waits
    the 50 ms left of the interval, and the block still carries the batch."""
    parent_timestamp_ms = now_ms() - 30
    leader, parent = paced_leader(parent_timestamp_ms)
    start = trio.current_time()
    built = decode_payload(await leader.build(parent, 11))
    assert trio.current_time() - start == pytest.approx((PACE_MS - 30) / 1000, abs=1e-9)
    assert built.batches == [BATCH]
    assert built.timestamp_ms == parent_timestamp_ms + PACE_MS  # stamped after the wait


async def test_a_leader_whose_parent_is_older_than_the_interval_proposes_at_once(
    autojump_clock: MockClock,
) -> None:
    leader, parent = paced_leader(now_ms() - PACE_MS - 1)
    start = trio.current_time()
    built = decode_payload(await leader.build(parent, 11))
    assert trio.current_time() == start
    assert built.batches == [BATCH]


async def test_without_pacing_a_leader_proposes_at_once_on_a_fresh_parent(
    autojump_clock: MockClock,
) -> None:
    leader, parent = paced_leader(now_ms(), min_block_wait_ms=0)
    start = trio.current_time()
    await leader.build(parent, 11)
    assert trio.current_time() == start


async def test_a_parent_stamped_ahead_of_this_clock_holds_a_leader_at_most_the_interval(
    autojump_clock: MockClock,
) -> None:
    """The parent's leader's clock runs 5 s ahead of this one: the wait is capped
    at the interval, not the 5 s the clocks disagree by."""
    leader, parent = paced_leader(now_ms() + 5_000)
    start = trio.current_time()
    await leader.build(parent, 11)
    assert trio.current_time() - start == pytest.approx(PACE_MS / 1000, abs=1e-9)


async def test_the_pacing_wait_counts_toward_the_empty_block_interval(
    autojump_clock: MockClock,
) -> None:
    """No batch: the empty block comes the empty-block interval (100 ms) after
    building began, not that plus the 80 ms of pacing."""
    leader, parent = paced_leader(now_ms(), pool=FakePool({}))
    start = trio.current_time()
    built = decode_payload(await leader.build(parent, 11))
    assert trio.current_time() - start == pytest.approx(0.1, abs=1e-9)
    assert built.batches == []


async def test_a_batch_arriving_during_the_pacing_wait_is_proposed_when_it_ends(
    autojump_clock: MockClock,
) -> None:
    pool = FakePool({})
    leader, parent = paced_leader(now_ms(), pool=pool)
    start = trio.current_time()
    built: list[bytes] = []

    async def build() -> None:
        built.append(await leader.build(parent, 11))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(build)
        await trio.sleep(0.01)
        pool.batches[BATCH] = [(3, b"\x33" * 32)]
    assert trio.current_time() - start == pytest.approx(PACE_MS / 1000, abs=1e-9)
    assert decode_payload(built[0]).batches == [BATCH]


async def test_a_lagging_leader_is_not_paced(autojump_clock: MockClock) -> None:
    """A leader too far ahead of its execution proposes as soon as the bounded
    wait for execution ends: pacing would only hold the chain longer. (The parent
    is stamped so that it is fresh when that wait ends.)"""
    leader, parent = paced_leader(now_ms() + LAG_WAIT_MS)
    start = trio.current_time()
    await leader.build(parent, 10 + MAX_EXECUTION_LAG + 1)
    assert trio.current_time() - start == pytest.approx(LAG_WAIT_MS / 1000, abs=1e-9)


async def test_a_paced_leader_holds_a_quiet_parent_for_its_share_of_the_interval(
    autojump_clock: MockClock,
) -> None:
    """A parent of a quarter of PACE_FULL_TXS transactions holds the leader a
    quarter of the interval; an empty parent (an idle network) not at all."""
    parent_timestamp_ms = now_ms()
    leader, parent = paced_leader(parent_timestamp_ms, parent_txs=PACE_FULL_TXS // 4)
    start = trio.current_time()
    built = decode_payload(await leader.build(parent, 11))
    assert trio.current_time() - start == pytest.approx(PACE_MS / 4 / 1000, abs=1e-9)
    assert built.batches == [BATCH]
    leader, parent = paced_leader(now_ms(), parent_txs=0)
    start = trio.current_time()
    await leader.build(parent, 11)
    assert trio.current_time() == start


async def test_a_parent_above_the_full_count_holds_the_whole_interval(
    autojump_clock: MockClock,
) -> None:
    for parent_txs in (2 * PACE_FULL_TXS, PACE_LARGE_TXS):
        leader, parent = paced_leader(now_ms(), parent_txs=parent_txs)
        start = trio.current_time()
        await leader.build(parent, 11)
        assert trio.current_time() - start == pytest.approx(PACE_MS / 1000, abs=1e-9)


async def test_a_large_parent_stretches_the_hold_up_to_twice_the_interval(
    autojump_clock: MockClock,
) -> None:
    """Past PACE_LARGE_TXS the hold grows with the parent: half the stretch
    count more holds 1.5 intervals, and any larger parent at most twice it."""
    cases = [
        (PACE_LARGE_TXS + PACE_STRETCH_TXS // 2, PACE_MS * 3 // 2),
        (PACE_LARGE_TXS + PACE_STRETCH_TXS, PACE_MS * PACE_MAX_FACTOR),
        (40 * PACE_STRETCH_TXS, PACE_MS * PACE_MAX_FACTOR),
    ]
    for parent_txs, hold_ms in cases:
        leader, parent = paced_leader(now_ms(), parent_txs=parent_txs)
        start = trio.current_time()
        await leader.build(parent, 11)
        assert trio.current_time() - start == pytest.approx(hold_ms / 1000, abs=1e-9)


async def test_a_large_parent_of_several_batches_is_stretched_by_their_sum(
    autojump_clock: MockClock,
) -> None:
    """Counting stops only past what the stretch needs: four batches of
    PACE_LARGE_TXS make a parent above the largest stretch."""
    leader, parent = paced_leader(now_ms(), parent_txs=[PACE_LARGE_TXS] * 4)
    start = trio.current_time()
    await leader.build(parent, 11)
    assert trio.current_time() - start == pytest.approx(PACE_MS * PACE_MAX_FACTOR / 1000, abs=1e-9)


async def test_the_engines_transactions_weigh_more_in_the_hold(
    autojump_clock: MockClock,
) -> None:
    """A parent's transactions in the engine's namespace count ENGINE_PACE_WEIGHT
    times each: a parent of PACE_LARGE_TXS of them is stretched as one of
    ENGINE_PACE_WEIGHT * PACE_LARGE_TXS transactions, the same count of rollup
    transactions is not; a small parent of engine transactions holds a
    correspondingly larger share of the interval."""
    assert ENGINE_PACE_WEIGHT >= 2
    weighted = ENGINE_PACE_WEIGHT * PACE_LARGE_TXS
    small = PACE_FULL_TXS // (2 * ENGINE_PACE_WEIGHT)
    half = (weighted + PACE_LARGE_TXS) // 2  # half of them the engine's
    cases = [
        (PACE_LARGE_TXS, PACE_LARGE_TXS, pacing_interval_ms(PACE_MS, weighted)),
        (PACE_LARGE_TXS, 0, PACE_MS),
        (PACE_LARGE_TXS, PACE_LARGE_TXS // 2, pacing_interval_ms(PACE_MS, half)),
        (small, small, PACE_MS * ENGINE_PACE_WEIGHT * small // PACE_FULL_TXS),
        (small, 0, PACE_MS * small // PACE_FULL_TXS),
    ]
    assert pacing_interval_ms(PACE_MS, weighted) > PACE_MS
    for parent_txs, engine_txs, hold_ms in cases:
        pool = FakePool()
        leader, parent = paced_leader(now_ms(), pool=pool, parent_txs=parent_txs)
        pool.engine[PARENT_BATCH[:-1] + bytes([0])] = engine_txs
        start = trio.current_time()
        await leader.build(parent, 11)
        assert trio.current_time() - start == pytest.approx(hold_ms / 1000, abs=1e-9)


def test_the_pacing_interval_rises_with_the_parent_and_never_passes_twice_the_setting() -> None:
    previous = 0
    for parent_txs in range(-1, 2 * (PACE_LARGE_TXS + PACE_STRETCH_TXS)):
        interval = pacing_interval_ms(120, parent_txs)
        assert previous <= interval <= 120 * PACE_MAX_FACTOR
        previous = interval
    assert pacing_interval_ms(120, 0) == 0
    assert pacing_interval_ms(120, PACE_FULL_TXS) == pacing_interval_ms(120, PACE_LARGE_TXS) == 120
    assert pacing_interval_ms(0, 10_000) == 0


async def test_a_parent_of_several_batches_is_paced_by_their_sum(
    autojump_clock: MockClock,
) -> None:
    """Two batches of half PACE_FULL_TXS each make a busy parent: the whole interval."""
    half = PACE_FULL_TXS // 2
    leader, parent = paced_leader(now_ms(), parent_txs=[half, half])
    start = trio.current_time()
    await leader.build(parent, 11)
    assert trio.current_time() - start == pytest.approx(PACE_MS / 1000, abs=1e-9)


async def test_a_leader_decodes_its_parents_payload_once(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building on an uncommitted, paced parent reads its payload for three
    things (the batches not to name again, the state it vouched for, its size
    for pacing): decoded once for all three, and the block is as before."""
    from sequencer_net.payload import service as service_module

    parent_batch = PARENT_BATCH
    pool = FakePool()
    pool.ordered[parent_batch] = PACE_FULL_TXS
    parent = Block(
        11,
        11,
        b"\x0a" * 32,
        1,
        encode_payload(BlockPayload(now_ms(), 10, b"\x07" * 32, [parent_batch], EMPTY_ROOT)),
    )
    leader = service(Execution(10), committed=10, fake_pool=pool)
    leader.core = ChainCore(10, [parent])  # type: ignore[assignment]
    leader.min_block_wait_ms = PACE_MS
    leader.clock_ms = now_ms
    decoded: list[bytes] = []

    def counting(data: bytes) -> BlockPayload:
        decoded.append(data)
        return decode_payload(data)

    monkeypatch.setattr(service_module, "decode_payload", counting)
    start = trio.current_time()
    built = decode_payload(await leader.build(parent.digest(), 12))
    assert decoded.count(parent.payload) == 1
    assert trio.current_time() - start == pytest.approx(PACE_MS / 1000, abs=1e-9)  # paced
    assert built.batches == [BATCH]
    assert (built.state_height, built.state_root) == (10, b"\x07" * 32)  # the parent's
