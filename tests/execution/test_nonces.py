"""Replay protection: a (sender, nonce) executes at most once, in every namespace.

The rule is a sliding window of 64 over each sender's highest used nonce
(nonces.py); these tests pin each case and compare the window against a plain
set-of-used-nonces model over random sequences.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sequencer_net.execution.exceptions import NonceTooHigh, NonceUsed
from sequencer_net.execution.limits import NONCE_WINDOW
from sequencer_net.execution.nonces import nonce_rejection, use_nonce
from sequencer_net.execution.records import NonceWindow
from sequencer_net.execution.transactions import Transfer
from tests.execution.execution_harness import (
    Chain,
    W,
    collateral,
    key,
    make_genesis,
    sequenced,
    sub,
)


def test_a_fresh_sender_may_use_nonces_0_to_63_in_any_order() -> None:
    assert nonce_rejection(None, 0) is None
    assert nonce_rejection(None, NONCE_WINDOW - 1) is None
    assert isinstance(nonce_rejection(None, NONCE_WINDOW), NonceTooHigh)
    window = use_nonce(None, 5)
    assert window == NonceWindow(highest=5, used=1)
    for nonce in (3, 0, 4):
        assert nonce_rejection(window, nonce) is None
        window = use_nonce(window, nonce)
    assert window == NonceWindow(highest=5, used=0b100111)  # bit i: nonce 5 - i (2, 1 free)
    assert isinstance(nonce_rejection(window, 3), NonceUsed)
    assert nonce_rejection(window, 2) is None


def test_the_window_slides_and_what_falls_out_counts_as_used() -> None:
    window = use_nonce(None, 0)
    window = use_nonce(window, 64)  # 0 + 64: the farthest allowed step
    assert window == NonceWindow(highest=64, used=1)  # bit 64 (nonce 0) fell out
    assert isinstance(nonce_rejection(window, 0), NonceUsed)  # too old: counted used
    assert nonce_rejection(window, 1) is None  # 64 - 63: still inside, unused
    assert isinstance(nonce_rejection(window, 64 + 65), NonceTooHigh)
    assert nonce_rejection(window, 64 + 64) is None
    jumped = use_nonce(window, 128)
    assert jumped == NonceWindow(highest=128, used=1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 300), max_size=80))
def test_window_matches_a_set_of_used_nonces(attempts: list[int]) -> None:
    """Accepted iff never used and within (highest - 64, highest + 64]; once each."""
    window: NonceWindow | None = None
    used: set[int] = set()
    highest = -1
    for nonce in attempts:
        allowed = nonce not in used and highest - NONCE_WINDOW < nonce <= highest + NONCE_WINDOW
        rejection = nonce_rejection(window, nonce)
        assert (rejection is None) == allowed, (nonce, highest, sorted(used))
        if rejection is None:
            window = use_nonce(window, nonce)
            used.add(nonce)
            highest = max(highest, nonce)
        elif nonce > highest + NONCE_WINDOW:
            assert isinstance(rejection, NonceTooHigh)
        else:
            assert isinstance(rejection, NonceUsed)


def funded() -> Chain:
    return Chain(make_genesis({"alice": 100 * W, "bob": 100 * W}))


def test_two_different_transactions_with_one_sender_and_nonce_execute_once() -> None:
    """Sent to two validators, both commit: the second gets a NonceUsed receipt."""
    chain = funded()
    first = chain.tx_with_nonce(key("alice"), Transfer(0, sub("bob"), W), 7)
    second = chain.tx_with_nonce(key("alice"), Transfer(0, sub("bob"), 2 * W), 7)
    assert first.tx_hash != second.tx_hash
    assert chain.block([first]).receipts[0].success
    result = chain.block([second])
    assert result.receipts[0].error == "NonceUsed"
    assert collateral(chain.state, sub("bob")) == 101 * W


def test_the_nonce_space_is_shared_by_every_namespace() -> None:
    chain = funded()
    alice = key("alice").address
    rollup = sequenced(alice, 3, b"rollup data", namespace=42)
    dex_same_nonce = chain.tx_with_nonce(key("alice"), Transfer(0, sub("bob"), W), 3)
    rollup_again = sequenced(alice, 3, b"other data", namespace=9)
    result = chain.block([rollup, dex_same_nonce, rollup_again])
    errors = [r.error for r in result.receipts]
    assert sorted(errors) == ["", "NonceUsed", "NonceUsed"]  # lowest hash won
    assert chain.state.nonces[alice] == NonceWindow(highest=3, used=1)


def test_transactions_included_out_of_order_across_blocks_all_execute() -> None:
    chain = funded()
    txs = {n: chain.tx_with_nonce(key("alice"), Transfer(0, sub("bob"), W), n) for n in range(4)}
    for n in (3, 1, 2, 0):
        assert chain.block([txs[n]]).receipts[0].success, n
    assert collateral(chain.state, sub("bob")) == 104 * W
    assert chain.block([txs[2]]).receipts[0].error == "NonceUsed"


def test_a_nonce_too_high_consumes_nothing_and_passes_once_the_window_moves() -> None:
    chain = funded()
    far = chain.tx_with_nonce(key("alice"), Transfer(0, sub("bob"), W), 64)
    assert chain.block([far]).receipts[0].error == "NonceTooHigh"
    assert key("alice").address not in chain.state.nonces
    near = chain.tx_with_nonce(key("alice"), Transfer(0, sub("bob"), W), 10)
    chain.block([near])
    assert chain.block([far]).receipts[0].success
