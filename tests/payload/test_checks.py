"""The payload rules a voter applies, one at a time, as pure functions."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.crypto import keccak256
from consensus.limits import U64_MAX
from sequencer_net.execution.limits import MAX_TRANSACTIONS_PER_BLOCK
from sequencer_net.payload.checks import (
    MAX_BLOCK_TX_BYTES,
    BatchSize,
    BlockTooLarge,
    ForcedEntryUnmarked,
    ForcedMarkNotInBlock,
    ForcedMarksOutOfOrder,
    ForcedTransactionSkipped,
    ForgedForcedEntry,
    NamespaceRootMismatch,
    ParentState,
    StateHeightNotBelowBlock,
    StateHeightRegressed,
    StateRootMismatch,
    TimestampBeforeParent,
    TimestampInFuture,
    UnknownForcedEntry,
    block_namespace_pairs,
    check_block_size,
    check_forced_inclusion,
    check_forced_marks,
    check_header,
    check_namespace_root,
    check_vouched_root,
    fill_block,
)
from sequencer_net.payload.format import (
    MAX_BATCHES_PER_BLOCK,
    MAX_CLOCK_DRIFT_MS,
    MAX_FORCED_PER_BLOCK,
    MAX_PAYLOAD_BYTES,
    BlockPayload,
    ForcedEntry,
    MalformedPayload,
    decode_payload,
    encode_payload,
)
from sequencer_net.payload.namespaces import EMPTY_ROOT, namespace_root

ROOT_A, ROOT_B = b"\x0a" * 32, b"\x0b" * 32
PARENT = ParentState(timestamp_ms=1_000, state_height=4, state_root=ROOT_A)


def payload(timestamp: int = 1_500, state_height: int = 5, root: bytes = ROOT_B) -> BlockPayload:
    return BlockPayload(
        timestamp_ms=timestamp,
        state_height=state_height,
        state_root=root,
        batches=[],
        namespace_root=EMPTY_ROOT,
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


def _h(i: int) -> bytes:
    return bytes([i]) * 32


def test_the_namespace_root_covers_the_batches_transactions_each_once_in_block_order() -> None:
    first = [(7, _h(1)), (2, _h(2))]
    second = [(7, _h(3)), (2, _h(2)), (9, _h(4))]  # _h(2) named again: counted once
    pairs = block_namespace_pairs([first, second])
    assert pairs == [(7, _h(1)), (2, _h(2)), (7, _h(3)), (9, _h(4))]
    block = msgspec.structs.replace(payload(), namespace_root=namespace_root(pairs))
    check_namespace_root(block, pairs)
    check_namespace_root(payload(), [])  # an empty block: the empty root


@pytest.mark.parametrize(
    "claimed",
    [
        EMPTY_ROOT,  # claims no transactions
        namespace_root([(7, _h(3)), (2, _h(2)), (7, _h(1))]),  # another order
        namespace_root([(7, _h(1)), (2, _h(2))]),  # leaves one out
        namespace_root([(8, _h(1)), (2, _h(2)), (7, _h(3))]),  # another namespace
    ],
    ids=["empty", "reordered", "one-left-out", "other-namespace"],
)
def test_a_voter_refuses_a_wrong_namespace_root(claimed: bytes) -> None:
    pairs = [(7, _h(1)), (2, _h(2)), (7, _h(3))]
    with pytest.raises(NamespaceRootMismatch):
        check_namespace_root(msgspec.structs.replace(payload(), namespace_root=claimed), pairs)


def test_a_full_payload_fits_the_bound_and_a_short_root_is_malformed() -> None:
    full = msgspec.structs.replace(
        payload(timestamp=U64_MAX, state_height=U64_MAX),
        batches=[i.to_bytes(32, "big") for i in range(MAX_BATCHES_PER_BLOCK)],
    )
    data = encode_payload(full)
    assert len(data) <= MAX_PAYLOAD_BYTES
    assert decode_payload(data) == full
    short = msgspec.msgpack.encode([1, 0, ROOT_A, [], b"\x01" * 31])
    with pytest.raises(MalformedPayload):
        decode_payload(short)
    missing = msgspec.msgpack.encode([1, 0, ROOT_A, []])  # the old four-field payload
    with pytest.raises(MalformedPayload):
        decode_payload(missing)


def test_a_skipped_forced_transaction_with_a_held_batch_refuses_the_block() -> None:
    held = {b"\xf0" * 32: [(b"\xf1" * 32, BatchSize(1, 100))]}
    with pytest.raises(ForcedTransactionSkipped, match="f1f1f1f1f1f1"):
        check_forced_inclusion(held, [BatchSize(10, 1000)], full_of_forced=False)
    # Room left: being made of forced batches is no excuse.
    with pytest.raises(ForcedTransactionSkipped):
        check_forced_inclusion(held, [BatchSize(10, 1000)], full_of_forced=True)
    check_forced_inclusion({}, [BatchSize(10, 1000)], full_of_forced=False)
    check_forced_inclusion({b"\xf0" * 32: []}, [], full_of_forced=False)


@pytest.mark.parametrize(
    "block",
    [
        [BatchSize(1, 100)] * MAX_BATCHES_PER_BLOCK,
        [BatchSize(MAX_TRANSACTIONS_PER_BLOCK, 100)],
        [BatchSize(1, MAX_BLOCK_TX_BYTES - 99)],
    ],
    ids=["batches", "transactions", "bytes"],
)
def test_a_block_full_of_forced_batches_may_leave_the_rest_to_the_next(
    block: list[BatchSize],
) -> None:
    """The block is full by each limit: a further forced batch would not fit, so
    a block made only of forced batches is excused; one with other batches is not."""
    held = {b"\xf0" * 32: [(b"\xf1" * 32, BatchSize(1, 100))]}
    check_forced_inclusion(held, block, full_of_forced=True)
    with pytest.raises(ForcedTransactionSkipped):
        check_forced_inclusion(held, block, full_of_forced=False)


# ---- forced marks (docs/l1.md, "Forced transactions execute first") ----

FORCED_A = b"\xa1" * 32
FORCED_B = b"\xb2" * 32
ORDINARY = b"\x0c" * 32
INBOX = {FORCED_A: 7, FORCED_B: 9}
"""The inbox entries this voter scanned: hash -> index."""
IN_BLOCK = {FORCED_A, FORCED_B, ORDINARY}


def check_marks(
    marks: list[tuple[int, bytes]], required: list[tuple[int, bytes]] | None = None
) -> None:
    check_forced_marks(marks, IN_BLOCK, INBOX.get, required or [])


def test_true_forced_marks_in_inbox_order_are_accepted() -> None:
    check_marks([(7, FORCED_A), (9, FORCED_B)], required=[(7, FORCED_A), (9, FORCED_B)])
    check_marks([(9, FORCED_B)])  # an entry not yet required may go unmarked
    check_marks([])


def test_an_ordinary_transaction_marked_forced_is_refused() -> None:
    with pytest.raises(UnknownForcedEntry, match="no inbox entry"):
        check_marks([(7, FORCED_A), (8, ORDINARY)])


def test_a_forced_entry_marked_at_another_index_is_refused() -> None:
    with pytest.raises(ForgedForcedEntry, match="is inbox entry 9"):
        check_marks([(2, FORCED_B)])


def test_marks_out_of_inbox_order_or_repeated_are_refused() -> None:
    with pytest.raises(ForcedMarksOutOfOrder):
        check_marks([(9, FORCED_B), (7, FORCED_A)])
    with pytest.raises(ForcedMarksOutOfOrder):
        check_marks([(7, FORCED_A), (7, FORCED_A)])


def test_a_mark_for_a_transaction_the_block_does_not_carry_is_refused() -> None:
    with pytest.raises(ForcedMarkNotInBlock):
        check_forced_marks([(7, FORCED_A)], {ORDINARY}, INBOX.get, [])


def test_a_required_entry_left_unmarked_is_refused() -> None:
    with pytest.raises(ForcedEntryUnmarked, match="inbox entry 9"):
        check_marks([(7, FORCED_A)], required=[(7, FORCED_A), (9, FORCED_B)])


def test_a_block_full_of_marks_may_leave_the_later_entries_unmarked() -> None:
    """Leaders mark the lowest indexes first: with MAX_FORCED_PER_BLOCK marks,
    a required entry above the last mark is excused, one below it is not."""
    hashes = [keccak256(b"forced %d" % i) for i in range(MAX_FORCED_PER_BLOCK + 2)]
    inbox = {h: 2 * i for i, h in enumerate(hashes)}
    required = [(2 * i, h) for i, h in enumerate(hashes)]
    full = required[1 : MAX_FORCED_PER_BLOCK + 1]
    check_forced_marks(full[:], set(hashes), inbox.get, required[1:])
    with pytest.raises(ForcedEntryUnmarked, match="inbox entry 0 "):
        check_forced_marks(full, set(hashes), inbox.get, required)
    with pytest.raises(ForcedEntryUnmarked):  # not full: every required entry is marked
        check_forced_marks(full[:-1], set(hashes), inbox.get, required[1:])


def test_the_widest_payload_of_batches_and_forced_marks_fits_the_payload_limit() -> None:
    widest = BlockPayload(
        timestamp_ms=U64_MAX,
        state_height=U64_MAX,
        state_root=b"\xff" * 32,
        batches=[i.to_bytes(32, "big") for i in range(1, MAX_BATCHES_PER_BLOCK + 1)],
        namespace_root=b"\xff" * 32,
        forced=[ForcedEntry(U64_MAX - i, bytes([i]) * 32) for i in range(MAX_FORCED_PER_BLOCK)],
    )
    encoded = encode_payload(widest)
    assert len(encoded) <= MAX_PAYLOAD_BYTES
    assert decode_payload(encoded) == widest
    too_many = msgspec.structs.replace(
        widest, forced=[*widest.forced, ForcedEntry(0, b"\x00" * 32)]
    )
    with pytest.raises(MalformedPayload):
        decode_payload(encode_payload(too_many))
