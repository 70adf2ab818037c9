"""Subaccount 0 and the owner's nonce window share one state entry (an Account):
a sender's transactions in a block rewrite one key for nonce and fee, the
entry proves both, and a state reloaded from the tree is the same state."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from sequencer_net.execution import state as state_module
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.fees import DEFAULT_FEE_BASE, DEFAULT_FEE_PER_BYTE
from sequencer_net.execution.records import NonceWindow, Subaccount
from sequencer_net.execution.state import (
    KEY_BLOCK,
    KEY_LEDGER,
    PREFIX_SUBACCOUNT,
    ExecutionState,
    account_key,
    decode_account,
    load_state,
    state_entries,
)
from sequencer_net.execution.state_tree import Proof, StateTree, verify_proof
from sequencer_net.execution.transactions import Transfer
from tests.execution.execution_harness import Chain, W, collateral, key, make_genesis, sub


def chain_with_fees(**deposits: int) -> Chain:
    return Chain(
        make_genesis(
            deposits or {"alice": 100 * W, "bob": 100 * W},
            fee_base=DEFAULT_FEE_BASE,
            fee_per_byte=DEFAULT_FEE_PER_BYTE,
        )
    )


@pytest.fixture
def written_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[set[bytes]]]:
    """The keys each commit hands to the state tree, per block."""
    calls: list[set[bytes]] = []
    apply = StateTree.apply

    def recording(
        tree: StateTree, changes: Mapping[bytes, bytes | None], height: int | None = None
    ) -> bytes:
        calls.append(set(changes))
        return apply(tree, changes, height)

    monkeypatch.setattr(state_module.StateTree, "apply", recording)
    yield calls


def assert_reloads(state: ExecutionState) -> None:
    """The tree holds exactly `state_entries`, and loading it gives back the
    same nonces and subaccounts."""
    assert dict(state.tree().items()) == state_entries(state)
    loaded = load_state(state.store, state.state_root)
    assert loaded.nonces == dict(state.nonces)
    assert loaded.subaccounts == dict(state.subaccounts)


def test_a_senders_rollup_transactions_write_one_key(written_keys: list[set[bytes]]) -> None:
    chain = chain_with_fees()
    alice = key("alice").address
    txs = [chain.raw(key("alice"), b"blob %d" % i, namespace=7) for i in range(5)]
    result = chain.block(txs)
    assert all(receipt.success for receipt in result.receipts)
    assert written_keys[-1] == {KEY_BLOCK, KEY_LEDGER, account_key(alice)}
    assert chain.state.nonces[alice] == NonceWindow(highest=4, used=0b11111)
    paid = sum(receipt.fee for receipt in result.receipts)
    assert collateral(chain.state, sub("alice")) == 100 * W - paid
    assert_reloads(chain.state)


def test_two_senders_write_one_key_each(written_keys: list[set[bytes]]) -> None:
    chain = chain_with_fees()
    txs = [chain.raw(key(name), b"x", namespace=3) for name in ("alice", "bob", "alice")]
    chain.block(txs)
    assert written_keys[-1] == {
        KEY_BLOCK,
        KEY_LEDGER,
        account_key(key("alice").address),
        account_key(key("bob").address),
    }


def test_the_account_entry_proves_the_nonce_window_and_the_balance() -> None:
    chain = chain_with_fees()
    alice = key("alice").address
    chain.block([chain.raw(key("alice"), b"data", namespace=9) for _ in range(3)])
    state = chain.state
    entry_key = account_key(alice)
    value = state.tree().get(entry_key)
    assert value is not None
    proof = state.tree().prove(entry_key)
    assert verify_proof(state.state_root, entry_key, value, Proof.decode(proof.encode()))
    subaccount, window = decode_account(value)
    assert window == state.nonces[alice] == NonceWindow(highest=2, used=0b111)
    assert subaccount == state.subaccounts[sub("alice")]
    # A value with another nonce window does not verify against the root.
    forged = state_module.account_entry(subaccount, NonceWindow(highest=0, used=1))
    assert not verify_proof(state.state_root, entry_key, forged, proof)


def test_an_owner_without_nonces_has_the_empty_window_and_other_subaccounts_stay_plain() -> None:
    chain = chain_with_fees()
    bob = key("bob").address
    chain.block([chain.tx(key("alice"), Transfer(0, sub("bob", 1), W))])
    state = chain.state
    bob_entry = state.tree().get(account_key(bob))
    assert bob_entry is not None
    assert decode_account(bob_entry) == (state.subaccounts[sub("bob")], None)
    plain = state.tree().get(PREFIX_SUBACCOUNT + sub("bob", 1))
    assert plain == encode(Subaccount(collateral=W, markets=(), open_orders=0))
    assert_reloads(state)


def test_a_sender_without_subaccount_0_keeps_its_window_alone() -> None:
    """FeeTooLow uses the nonce of a sender that holds nothing: its entry is
    the NonceWindow alone, and no subaccount 0 appears."""
    chain = chain_with_fees()
    carol = key("carol").address
    assert sub("carol") not in chain.state.subaccounts
    result = chain.block([chain.raw(key("carol"), b"x", namespace=5, fee=0)])
    assert (result.receipts[0].error, result.receipts[0].fee) == ("FeeTooLow", 0)
    assert chain.state.nonces[carol] == NonceWindow(highest=0, used=1)
    assert sub("carol") not in chain.state.subaccounts
    value = chain.state.tree().get(account_key(carol))
    assert value == encode(NonceWindow(highest=0, used=1))
    assert decode_account(value) == (None, NonceWindow(highest=0, used=1))
    chain.nonces[carol] = 0
    replay = chain.raw(key("carol"), b"x", namespace=5)
    assert chain.block([replay]).receipts[0].error == "NonceUsed"
    assert_reloads(chain.state)


def test_a_window_alone_becomes_an_account_when_subaccount_0_is_funded() -> None:
    chain = chain_with_fees()
    carol = key("carol").address
    chain.block([chain.raw(key("carol"), b"x", namespace=5, fee=0)])
    chain.block([chain.tx(key("alice"), Transfer(0, sub("carol"), W))])
    value = chain.state.tree().get(account_key(carol))
    assert value is not None
    funded = Subaccount(collateral=W, markets=(), open_orders=0)
    assert decode_account(value) == (funded, NonceWindow(highest=0, used=1))
    assert_reloads(chain.state)
