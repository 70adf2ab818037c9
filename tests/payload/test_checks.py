"""The payload rules a voter applies, one at a time, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sequencer_net.execution.limits import MAX_TRANSACTIONS_PER_BLOCK
from sequencer_net.payload.checks import (
    MAX_BLOCK_TX_BYTES,
    BatchSize,
    BlockTooLarge,
    ParentState,
    StateHeightNotBelowBlock,
    StateHeightRegressed,
    StateRootMismatch,
    TimestampBeforeParent,
    TimestampInFuture,
    check_block_size,
    check_header,
    check_vouched_root,
    fill_block,
)
from sequencer_net.payload.format import MAX_CLOCK_DRIFT_MS, BlockPayload

ROOT_A, ROOT_B = b"\x0a" * 32, b"\x0b" * 32
PARENT = ParentState(timestamp_ms=1_000, state_height=4, state_root=ROOT_A)


def payload(timestamp: int = 1_500, state_height: int = 5, root: bytes = ROOT_B) -> BlockPayload:
    return BlockPayload(
        timestamp_ms=timestamp, state_height=state_height, state_root=root, batches=[]
    )


def test_a_good_header_passes() -> None:
    check_header(payload(), height=7, parent=PARENT, now_ms=2_000)
    check_header(payload(state_height=4, root=ROOT_A), height=7, parent=PARENT, now_ms=2_000)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (payload(timestamp=2_000 + MAX_CLOCK_DRIFT_MS + 1), TimestampInFuture),
        (payload(timestamp=999), TimestampBeforeParent),
        (payload(state_height=3), StateHeightRegressed),
        (payload(state_height=7), StateHeightNotBelowBlock),
        (payload(state_height=4, root=ROOT_B), StateRootMismatch),  # same height, other root
    ],
)
def test_each_header_rule_has_its_own_error(bad: BlockPayload, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_header(bad, height=7, parent=PARENT, now_ms=2_000)


def test_a_voter_compares_the_vouched_root_only_once_it_has_executed_that_height() -> None:
    executed = {4: ROOT_A}
    assert not check_vouched_root(payload(state_height=5, root=ROOT_B), executed.get)
    assert check_vouched_root(payload(state_height=4, root=ROOT_A), executed.get)
    with pytest.raises(StateRootMismatch):
        check_vouched_root(payload(state_height=4, root=ROOT_B), executed.get)


def test_a_block_whose_batches_exceed_the_engine_limit_is_refused() -> None:
    # 1,024 batches of 2,000 transactions each: far over what one block executes.
    sizes = [BatchSize(2_000, 2_000 * 200)] * 60
    with pytest.raises(BlockTooLarge, match="transactions"):
        check_block_size(sizes)
    check_block_size([BatchSize(MAX_TRANSACTIONS_PER_BLOCK, 1)])
    with pytest.raises(BlockTooLarge, match="bytes"):
        check_block_size([BatchSize(1, MAX_BLOCK_TX_BYTES + 1)])


@given(st.lists(st.tuples(st.integers(0, 30_000), st.integers(0, 20_000_000)), max_size=40))
def test_a_leader_fills_exactly_what_a_voter_accepts(sizes: list[tuple[int, int]]) -> None:
    candidates = [(bytes([i]) * 32, BatchSize(n, b)) for i, (n, b) in enumerate(sizes)]
    chosen = fill_block(candidates, limit=1024)
    assert chosen == [d for d, _ in candidates[: len(chosen)]]  # a prefix, in order
    check_block_size([s for d, s in candidates if d in chosen])  # accepted by voters
    if len(chosen) < len(candidates):  # and one more would not be
        with pytest.raises(BlockTooLarge):
            check_block_size([s for _, s in candidates[: len(chosen) + 1]])
