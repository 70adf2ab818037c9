"""The forced-inclusion tracker: a transaction is overdue once the L1 head
reaches its due block plus the grace, stops being overdue once committed, and
the table stays bounded."""

from __future__ import annotations

import pytest

from sequencer_net.l1.forced import FORCED_GRACE_L1_BLOCKS, ForcedInclusion


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
