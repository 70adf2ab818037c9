"""The forced-inclusion tracker: a transaction is overdue once the L1 head
reaches its due block plus the grace, stops being overdue once committed, and
the table stays bounded."""

from __future__ import annotations

import pytest

from sequencer_net.l1.forced import (
    FORCED_GRACE_L1_BLOCKS,
    MARK_GRACE_L1_BLOCKS,
    ForcedInclusion,
    InboxEntry,
)
from sequencer_net.payload.format import MAX_FORCED_PER_BLOCK


def _h(i: int) -> bytes:
    return bytes([i]) * 32


def never(tx_hash: bytes) -> bool:
    return False


def test_a_transaction_is_overdue_from_its_due_block_plus_the_grace() -> None:
    forced = ForcedInclusion()
    forced.observe(_h(1), due_l1_block=100)
    forced.set_l1_head(100 + FORCED_GRACE_L1_BLOCKS - 1)
    assert forced.overdue(never) == set()
    forced.set_l1_head(100 + FORCED_GRACE_L1_BLOCKS)
    assert forced.overdue(never) == {_h(1)}
    assert forced.status(never) == {"tracked": 1, "overdue": 1}


def test_a_committed_transaction_is_not_overdue_and_is_dropped() -> None:
    forced = ForcedInclusion(grace_l1_blocks=0)
    forced.observe(_h(1), 10)
    forced.observe(_h(2), 10)
    forced.set_l1_head(10)
    committed = {_h(1)}
    assert forced.overdue(committed.__contains__) == {_h(2)}
    assert _h(1) not in forced and len(forced) == 1


def test_the_l1_head_never_goes_back() -> None:
    forced = ForcedInclusion(grace_l1_blocks=0)
    forced.observe(_h(1), 10)
    forced.set_l1_head(12)
    forced.set_l1_head(5)  # an endpoint that lags for a moment
    assert forced.l1_head == 12
    assert forced.overdue(never) == {_h(1)}


def test_posting_the_same_transaction_again_keeps_the_earliest_due_block() -> None:
    forced = ForcedInclusion(grace_l1_blocks=0)
    forced.observe(_h(1), 20)
    forced.observe(_h(1), 10)
    forced.observe(_h(1), 30)
    forced.set_l1_head(10)
    assert forced.overdue(never) == {_h(1)}
    assert len(forced) == 1


def test_the_table_is_bounded_and_forgets_the_earliest_observed() -> None:
    forced = ForcedInclusion(max_tracked=3)
    for i in range(1, 6):
        forced.observe(_h(i), 100 + i)
    assert len(forced) == 3
    assert forced.tracked() == {_h(3), _h(4), _h(5)}


def test_a_transaction_overdue_past_the_expiry_is_forgotten() -> None:
    forced = ForcedInclusion(grace_l1_blocks=2, expiry_l1_blocks=50)
    forced.observe(_h(1), 100)
    forced.set_l1_head(100 + 2 + 49)
    assert forced.overdue(never) == {_h(1)}
    forced.set_l1_head(100 + 2 + 50)
    assert forced.overdue(never) == set()
    assert len(forced) == 0


def test_bad_input_is_refused_without_a_change() -> None:
    forced = ForcedInclusion()
    with pytest.raises(ValueError):
        forced.observe(b"\x01" * 31, 10)
    with pytest.raises(ValueError):
        forced.observe(_h(1), -1)
    assert len(forced) == 0
    with pytest.raises(ValueError):
        ForcedInclusion(max_tracked=0)


# ---- the inbox record: what blocks mark forced, and what voters require ----


def test_an_entry_is_marked_at_once_and_required_after_the_grace() -> None:
    forced = ForcedInclusion()
    forced.record_entry(_h(1), index=5, l1_block=100)
    forced.record_entry(_h(2), index=3, l1_block=99)
    forced.set_confirmed(100)
    carried = {_h(1), _h(2), _h(9)}
    assert forced.marks_for(carried) == [(3, _h(2)), (5, _h(1))]  # inbox order
    assert forced.marks_for({_h(9)}) == []  # an ordinary transaction is never marked
    assert forced.required_marks(carried) == []  # another leader may not have recorded it
    forced.set_confirmed(99 + MARK_GRACE_L1_BLOCKS)
    assert forced.required_marks(carried) == [(3, _h(2))]
    forced.set_confirmed(100 + MARK_GRACE_L1_BLOCKS)
    assert forced.required_marks(carried) == [(3, _h(2)), (5, _h(1))]


def test_the_same_bytes_posted_twice_keep_their_first_index() -> None:
    forced = ForcedInclusion()
    forced.record_entry(_h(1), index=7, l1_block=100)
    forced.record_entry(_h(1), index=9, l1_block=101)
    assert forced.inbox_entry(_h(1)) == InboxEntry(7, 100)
    forced.record_entry(_h(1), index=2, l1_block=90)  # a rescan after a restart
    assert forced.inbox_entry(_h(1)) == InboxEntry(2, 90)


def test_marks_stop_before_the_expiry_and_requirements_before_the_marks() -> None:
    """A leader never marks an entry a voter forgot: leaders stop marking the
    grace before the expiry, voters stop requiring twice the grace before it,
    and the record forgets it at the expiry."""
    grace = MARK_GRACE_L1_BLOCKS
    forced = ForcedInclusion(expiry_l1_blocks=50)
    forced.record_entry(_h(1), index=0, l1_block=100)
    forced.set_confirmed(150 - 2 * grace - 1)
    assert forced.marks_for({_h(1)}) and forced.required_marks({_h(1)})
    forced.set_confirmed(150 - 2 * grace)
    assert forced.marks_for({_h(1)}) and not forced.required_marks({_h(1)})
    forced.set_confirmed(150 - grace)
    assert not forced.marks_for({_h(1)})
    assert forced.inbox_entry(_h(1)) is not None
    forced.set_confirmed(150)
    assert forced.inbox_entry(_h(1)) is None


def test_the_confirmed_head_never_goes_back_and_listeners_hear_each_change() -> None:
    forced = ForcedInclusion()
    changes: list[tuple[int, bool]] = []
    forced.on_change.append(
        lambda: changes.append((forced.confirmed_l1_block, forced.inbox_entry(_h(1)) is not None))
    )
    forced.set_confirmed(10)
    forced.set_confirmed(8)  # an endpoint that briefly lags
    forced.set_confirmed(10)
    forced.record_entry(_h(1), index=0, l1_block=10)
    forced.record_entry(_h(1), index=0, l1_block=10)  # nothing new
    forced.set_confirmed(11)
    assert forced.confirmed_l1_block == 11
    assert changes == [(10, False), (10, True), (11, True)]


def test_an_entry_goes_to_the_intake_once_every_validator_has_recorded_it() -> None:
    forced = ForcedInclusion()
    forced.set_confirmed(100 + MARK_GRACE_L1_BLOCKS - 1)
    assert not forced.ready_for_intake(100)
    forced.set_confirmed(100 + MARK_GRACE_L1_BLOCKS)
    assert forced.ready_for_intake(100)


def test_the_inbox_record_stays_bounded_and_marks_stay_within_a_block() -> None:
    forced = ForcedInclusion(max_tracked=MAX_FORCED_PER_BLOCK + 10)
    hashes = [i.to_bytes(32, "big") for i in range(MAX_FORCED_PER_BLOCK + 20)]
    for i, h in enumerate(hashes):
        forced.record_entry(h, index=i, l1_block=1)
    forced.set_confirmed(1)
    assert len(forced.inbox_entries()) == MAX_FORCED_PER_BLOCK + 10
    assert forced.inbox_entry(hashes[0]) is None  # the earliest forgotten first
    marks = forced.marks_for(set(hashes))
    assert len(marks) == MAX_FORCED_PER_BLOCK
    assert marks[0] == (10, hashes[10])  # the lowest indexes first
