"""Forced inclusion in the payload service: a voter refuses a block that
leaves out an overdue forced transaction it holds in a verified batch (unless
the block, an uncommitted ancestor or the committed chain has it), never for
one no batch here carries; a leader puts forced batches first. A leader marks
the forced inbox entries its block carries; voters refuse marks that are not
the inbox's and blocks leaving out a mark they require."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
from trio.testing import MockClock

from consensus.crypto import Address
from consensus.messages import Block
from consensus.types import Validator, ValidatorIndex, ValidatorSet
from sequencer_net.l1.forced import FORCED_GRACE_L1_BLOCKS, MARK_GRACE_L1_BLOCKS, ForcedInclusion
from sequencer_net.payload.checks import (
    MAX_EXECUTION_LAG,
    BatchSize,
    ForcedEntryUnmarked,
    ForcedMarkNotInBlock,
    ForcedTransactionSkipped,
    ForgedForcedEntry,
    UnknownForcedEntry,
)
from sequencer_net.payload.format import (
    MAX_BATCHES_PER_BLOCK,
    BlockPayload,
    ForcedEntry,
    decode_payload,
    encode_payload,
)
from sequencer_net.payload.namespaces import namespace_root
from sequencer_net.payload.service import FORCED_MARK_WAIT_S, PayloadService
from tests.payload.test_service import ChainCore, Execution, FakeCore, FakePool, _h

FORCED = b"\xf0" * 32
"""A forced transaction's hash."""
F = b"\xf1" * 32
"""The batch carrying it."""
N = b"\x0e" * 32
"""A batch of ordinary transactions."""
DUE = 100


class HoldingPool(FakePool):
    """FakePool that answers `batches_holding`; included batches hold nothing."""

    def __init__(self, batches: dict[bytes, list[tuple[int, bytes]]]) -> None:
        super().__init__(batches)
        self.included: set[bytes] = set()

    def unincluded(self, exclude: set[bytes], limit: int) -> list[tuple[bytes, BatchSize]]:
        return super().unincluded(exclude | self.included, limit)

    def batches_holding(self, tx_hashes: Any) -> dict[bytes, list[tuple[bytes, BatchSize]]]:
        out: dict[bytes, list[tuple[bytes, BatchSize]]] = {}
        for h in tx_hashes:
            held = [
                (d, BatchSize(len(p), 100 * len(p)))
                for d, p in self.batches.items()
                if d not in self.included and any(t == h for _, t in p)
            ]
            if held:
                out[h] = held
        return out


def tracker(overdue: bool = True, *hashes: bytes) -> ForcedInclusion:
    forced = ForcedInclusion()
    for h in hashes or (FORCED,):
        forced.observe(h, DUE)
    forced.set_l1_head(DUE + FORCED_GRACE_L1_BLOCKS - (0 if overdue else 1))
    return forced


def service(
    pool: FakePool,
    forced: ForcedInclusion | None,
    *,
    committed: set[bytes] | None = None,
    execution: Execution | None = None,
    core: Any = None,
) -> PayloadService:
    execution = execution or Execution(10)
    return PayloadService(
        core=core or FakeCore(10),  # type: ignore[arg-type]
        pool=pool,  # type: ignore[arg-type]
        fetcher=None,  # type: ignore[arg-type]
        genesis_time_ms=0,
        genesis_state_root=b"\x00" * 32,
        executed=execution.executed,
        wait_executed=execution.wait_executed,
        state_root_at=lambda height: None,
        empty_block_wait_ms=100,
        lag_wait_ms=400,
        clock_ms=lambda: 1_000,
        forced=forced,
        is_committed=(committed or set()).__contains__,
    )


def pool_with_forced() -> HoldingPool:
    return HoldingPool({N: [(3, _h(3))], F: [(5, _h(4)), (5, FORCED)]})


def block(
    pool: FakePool, batches: list[bytes], *, height: int = 11, parent: bytes = b"\x01" * 32
) -> Block:
    per_batch = [pool.batches[d] for d in batches]
    pairs = [p for b in per_batch for p in b]
    payload = BlockPayload(1_000, 0, b"\x00" * 32, batches, namespace_root(pairs))
    return Block(height, height, parent, 1, encode_payload(payload))


async def test_a_block_skipping_an_overdue_forced_transaction_held_here_gets_no_vote() -> None:
    pool = pool_with_forced()
    voter = service(pool, tracker())
    with pytest.raises(ForcedTransactionSkipped, match=FORCED.hex()):
        await voter.check(block(pool, [N]))
    assert not await voter.verify(block(pool, [N]))
    assert not await voter.verify(block(pool, []))
    assert await voter.verify(block(pool, [N, F]))
    assert await voter.verify(block(pool, [F]))


async def test_without_the_tracker_or_before_the_grace_the_rule_is_off() -> None:
    pool = pool_with_forced()
    assert await service(pool, None).verify(block(pool, [N]))
    assert await service(pool, tracker(overdue=False)).verify(block(pool, [N]))


async def test_a_committed_forced_transaction_binds_no_more_votes() -> None:
    pool = pool_with_forced()
    forced = tracker()
    voter = service(pool, forced, committed={FORCED})
    assert await voter.verify(block(pool, [N]))
    assert FORCED not in forced  # dropped once seen committed


async def test_a_forced_transaction_in_an_uncommitted_ancestor_counts() -> None:
    """Block 11 (not committed, execution at 10) carries the forced batch: its
    child at 12 need not carry it again."""
    pool = pool_with_forced()
    parent = block(pool, [F], height=11, parent=b"\x0a" * 32)
    voter = service(pool, tracker(), core=ChainCore(10, [parent]))
    assert await voter.verify(block(pool, [N], height=12, parent=parent.digest()))
    # The same child on another parent (one without the forced batch) is refused.
    assert not await voter.verify(block(pool, [N], height=12, parent=b"\x0b" * 32))


async def test_a_forced_transaction_no_batch_here_carries_never_blocks_votes() -> None:
    pool = HoldingPool({N: [(3, _h(3))]})
    voter = service(pool, tracker())
    assert await voter.verify(block(pool, [N]))
    assert await voter.verify(block(pool, []))


async def test_a_batch_a_committed_block_named_holds_nothing_any_more() -> None:
    """The forced transaction's batch was committed (its transaction failed, say,
    so the index does not name it): nothing is left to require."""
    pool = pool_with_forced()
    pool.included.add(F)
    assert await service(pool, tracker()).verify(block(pool, [N]))


def _full_pool() -> HoldingPool:
    """MAX_BATCHES_PER_BLOCK ordinary batches that order before the forced one."""
    batches = {
        i.to_bytes(32, "big"): [(1, (i + 1_000_000).to_bytes(32, "big"))]
        for i in range(MAX_BATCHES_PER_BLOCK)
    }
    batches[F] = [(5, FORCED)]
    return HoldingPool(batches)


async def test_the_leader_puts_the_forced_batch_first_in_a_full_block(
    autojump_clock: MockClock,
) -> None:
    pool = _full_pool()
    skipping = decode_payload(await service(pool, None).build(b"\x01" * 32, 11))
    assert len(skipping.batches) == MAX_BATCHES_PER_BLOCK and F not in skipping.batches
    built = decode_payload(await service(pool, tracker()).build(b"\x01" * 32, 11))
    assert built.batches[0] == F and len(built.batches) == MAX_BATCHES_PER_BLOCK
    voter = service(pool, tracker())
    assert await voter.verify(Block(11, 11, b"\x01" * 32, 1, encode_payload(built)))
    assert not await voter.verify(Block(11, 11, b"\x01" * 32, 1, encode_payload(skipping)))


async def test_a_leader_prefers_forced_batches_before_they_are_overdue(
    autojump_clock: MockClock,
) -> None:
    pool = _full_pool()
    built = decode_payload(await service(pool, tracker(overdue=False)).build(b"\x01" * 32, 11))
    assert built.batches[0] == F


async def test_a_lagging_leader_still_carries_overdue_forced_batches(
    autojump_clock: MockClock,
) -> None:
    pool = pool_with_forced()
    lagging = Execution(10)
    height = 10 + MAX_EXECUTION_LAG + 1
    built = decode_payload(
        await service(pool, tracker(), execution=lagging).build(b"\x01" * 32, height)
    )
    assert built.batches == [F]
    assert built.namespace_root == namespace_root(pool.batches[F])
    not_due = decode_payload(
        await service(pool, tracker(overdue=False), execution=lagging).build(b"\x01" * 32, height)
    )
    assert not_due.batches == []


def with_batches(built: bytes, batches: list[bytes], pool: FakePool) -> bytes:
    """A leader's payload with other batches (and their namespace root)."""
    payload = decode_payload(built)
    pairs = [p for d in batches for p in pool.batches[d]]
    return encode_payload(
        msgspec.structs.replace(payload, batches=batches, namespace_root=namespace_root(pairs))
    )


async def test_a_byzantine_leader_omitting_the_forced_batch_gets_no_quorum(
    autojump_clock: MockClock,
) -> None:
    """Four validators of equal weight, each with the forced batch in its pool and
    the transaction overdue. Validator 1 leads and omits the batch: only its own
    vote goes to its block, short of a quorum. Validator 2 leads the next view,
    honestly: its block carries the batch first and every validator votes for it."""
    validators = ValidatorSet([Validator(Address(bytes([i]) * 20), 1) for i in range(4)])
    pools = [pool_with_forced() for _ in range(4)]
    nodes = [service(pool, tracker()) for pool in pools]

    async def votes_for(proposal: Block) -> int:
        voters = [ValidatorIndex(proposal.proposer)]  # the proposer votes for its own
        for i, node in enumerate(nodes):
            if i != proposal.proposer and await node.verify(proposal):
                voters.append(ValidatorIndex(i))
        return validators.weight_of(voters)

    byzantine = with_batches(await nodes[1].build(b"\x01" * 32, 11), [N], pools[1])
    assert await votes_for(Block(11, 11, b"\x01" * 32, 1, byzantine)) == 1
    assert validators.quorum_weight == 3
    honest = await nodes[2].build(b"\x01" * 32, 11)
    assert decode_payload(honest).batches[0] == F
    assert await votes_for(Block(12, 11, b"\x01" * 32, 2, honest)) == 4


async def test_waiting_for_a_first_batch_ends_at_once_with_a_forced_batch_held(
    autojump_clock: MockClock,
) -> None:
    pool = HoldingPool({F: [(5, FORCED)]})
    start = trio.current_time()
    built = decode_payload(await service(pool, tracker()).build(b"\x01" * 32, 11))
    assert built.batches == [F] and trio.current_time() == start


async def test_more_overdue_forced_batches_than_a_block_holds_take_two_blocks(
    autojump_clock: MockClock,
) -> None:
    """One forced transaction per batch, one batch more than a block names: a
    block made of forced batches only is excused for the last one; a block that
    spends a slot on an ordinary batch instead is not."""
    hashes = [(i + 1).to_bytes(32, "big") for i in range(MAX_BATCHES_PER_BLOCK + 1)]
    batches = {b"\xfb" + h[1:]: [(5, h)] for h in hashes}
    batches[N] = [(3, _h(3))]
    pool = HoldingPool(batches)
    leader = service(pool, tracker(True, *hashes))
    built = decode_payload(await leader.build(b"\x01" * 32, 11))
    assert len(built.batches) == MAX_BATCHES_PER_BLOCK and N not in built.batches
    voter = service(pool, tracker(True, *hashes))
    assert await voter.verify(Block(11, 11, b"\x01" * 32, 1, encode_payload(built)))
    crowded = with_batches(encode_payload(built), [*built.batches[:-1], N], pool)
    assert not await voter.verify(Block(11, 11, b"\x01" * 32, 1, crowded))


# ---- forced marks: a block names its forced inbox entries (docs/l1.md) ----

INDEX = 41
"""The forced transaction's inbox index."""
INBOX_BLOCK = 500
"""The L1 block whose ForcedTransaction carried it."""


def inbox_tracker(scanned_ago: int = MARK_GRACE_L1_BLOCKS) -> ForcedInclusion:
    """A tracker that recorded FORCED as inbox entry INDEX `scanned_ago` L1 blocks ago."""
    forced = tracker(overdue=False)
    forced.record_entry(FORCED, INDEX, INBOX_BLOCK)
    forced.set_confirmed(INBOX_BLOCK + scanned_ago)
    return forced


def marked(pool: FakePool, batches: list[bytes], marks: list[tuple[int, bytes]]) -> Block:
    """A proposal naming `batches` and marking `marks` forced."""
    payload = decode_payload(block(pool, batches).payload)
    forced = [ForcedEntry(index, tx_hash) for index, tx_hash in marks]
    return Block(
        11, 11, b"\x01" * 32, 1, encode_payload(msgspec.structs.replace(payload, forced=forced))
    )


async def test_a_leader_marks_the_forced_entries_it_carries_and_voters_accept_them(
    autojump_clock: MockClock,
) -> None:
    pool = pool_with_forced()
    built = decode_payload(await service(pool, inbox_tracker(0)).build(b"\x01" * 32, 11))
    assert built.batches[0] == F
    assert built.forced == [ForcedEntry(INDEX, FORCED)]  # scanned this very L1 block
    voter = service(pool, inbox_tracker())
    assert await voter.verify(Block(11, 11, b"\x01" * 32, 1, encode_payload(built)))
    # Without an L1 a leader marks nothing.
    assert decode_payload(await service(pool, None).build(b"\x01" * 32, 11)).forced == []


async def test_voters_refuse_a_forged_an_invented_and_a_missing_forced_mark(
    autojump_clock: MockClock,
) -> None:
    pool = pool_with_forced()
    voter = service(pool, inbox_tracker())
    ordinary = _h(4)  # in batch F, never posted to the Inbox
    with pytest.raises(UnknownForcedEntry):
        await voter.check(marked(pool, [F], [(INDEX, FORCED), (INDEX + 1, ordinary)]))
    with pytest.raises(ForgedForcedEntry):
        await voter.check(marked(pool, [F], [(INDEX - 1, FORCED)]))
    with pytest.raises(ForcedMarkNotInBlock):
        await voter.check(marked(pool, [N], [(INDEX, FORCED)]))
    with pytest.raises(ForcedEntryUnmarked):
        await voter.check(marked(pool, [N, F], []))
    # A voter that scanned the entry less than the grace ago does not require the mark.
    assert await service(pool, inbox_tracker(MARK_GRACE_L1_BLOCKS - 1)).verify(
        marked(pool, [N, F], [])
    )
    # A chain without an L1 has no inbox: any mark is refused.
    with pytest.raises(UnknownForcedEntry):
        await service(pool, None).check(marked(pool, [F], [(INDEX, FORCED)]))


async def test_a_voter_waits_briefly_for_its_scan_to_reach_a_marked_entry(
    autojump_clock: MockClock,
) -> None:
    """The leader's watcher polled the L1 a moment before this voter's: the
    voter waits for its own scan, then checks; a mark its scan never brings is
    refused once FORCED_MARK_WAIT_S passed."""
    pool = pool_with_forced()
    behind = tracker(overdue=False)
    behind.set_confirmed(INBOX_BLOCK - 1)
    voter = service(pool, behind)
    proposal = marked(pool, [F], [(INDEX, FORCED)])
    votes: list[bool] = []

    async def vote() -> None:
        votes.append(await voter.verify(proposal))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(vote)
        await trio.sleep(FORCED_MARK_WAIT_S / 2)
        assert votes == []
        behind.record_entry(FORCED, INDEX, INBOX_BLOCK)
        behind.set_confirmed(INBOX_BLOCK)
    assert votes == [True] and behind.on_change == []
    start = trio.current_time()
    assert not await voter.verify(marked(pool, [F], [(INDEX, FORCED), (INDEX + 1, _h(4))]))
    assert trio.current_time() - start == pytest.approx(FORCED_MARK_WAIT_S)
