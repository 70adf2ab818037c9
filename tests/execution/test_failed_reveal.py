"""A committed encrypted transaction that reveals nothing: FailedDecryption, its
max fee charged (what the balance covers), no nonce used, nothing else changed;
the same bytes on every run."""

from __future__ import annotations

from consensus.crypto import keccak256
from sequencer_net.execution.block import FailedReveal
from sequencer_net.execution.engine import ExecutionBlock, encode_outcome, execute_block
from sequencer_net.execution.transactions import Transfer
from tests.execution.execution_harness import Chain, W, collateral, key, make_genesis, sub

ALICE = key("alice")
BOB = key("bob")


def failed(name: str, fee: int, reason: str = "payload_hash_mismatch") -> FailedReveal:
    return FailedReveal(keccak256(name.encode() + reason.encode()), key(name).address, fee, reason)


def test_failed_reveal_charges_the_max_fee_and_nothing_else() -> None:
    chain = Chain(make_genesis({"alice": 100 * W, "bob": 100 * W}))
    before = chain.state
    result = chain.block([failed("alice", 3 * W)])
    (receipt,) = result.receipts
    assert (receipt.success, receipt.error, receipt.reason, receipt.fee) == (
        False,
        "FailedDecryption",
        "payload_hash_mismatch",
        3 * W,
    )
    assert collateral(chain.state, sub("alice")) == 97 * W
    assert chain.state.nonces.get(ALICE.address) == before.nonces.get(ALICE.address)
    # The sender's next plain transaction still uses nonce 0.
    transfer = chain.tx(ALICE, Transfer(0, sub("bob"), W))
    assert transfer.nonce == 0
    assert chain.block([transfer]).receipts[0].success


def test_the_charge_is_capped_by_the_balance_and_expired_costs_nothing() -> None:
    chain = Chain(make_genesis({"alice": 2 * W}))
    result = chain.block([failed("alice", 5 * W), failed("alice", W, "expired")])
    assert [r.fee for r in result.receipts] == [2 * W, 0]
    assert [r.reason for r in result.receipts] == ["payload_hash_mismatch", "expired"]
    assert collateral(chain.state, sub("alice")) == 0


def test_a_block_mixing_revealed_and_failed_is_deterministic() -> None:
    state = make_genesis({"alice": 10 * W, "bob": 10 * W})
    chain = Chain(state)
    txs = (
        chain.tx(BOB, Transfer(0, sub("alice"), W)),
        failed("alice", W),
        chain.tx(ALICE, Transfer(0, sub("bob"), 2 * W)),
    )
    block = ExecutionBlock(1, state.block.timestamp + 1, txs)
    first, second = execute_block(state, block), execute_block(state, block)
    assert encode_outcome(first) == encode_outcome(second)
    assert [r.success for r in first.receipts] == [True, False, True]
    assert first.receipts[1].error == "FailedDecryption"
    assert collateral(first.state, sub("alice")) == 10 * W + W - W - 2 * W


def test_an_envelope_of_another_key_epoch_costs_nothing_and_uses_no_nonce() -> None:
    """The commit pipeline's refusal of an envelope committed outside its key
    epoch (node/commit.py KEY_EPOCH_MISMATCH): a FailedDecryption receipt with
    that reason, no fee, no nonce, the same bytes on every run."""
    state = make_genesis({"alice": 10 * W})
    stale = FailedReveal(keccak256(b"stale"), ALICE.address, 0, "key_epoch_mismatch")
    block = ExecutionBlock(1, state.block.timestamp + 1, (stale,))
    first, second = execute_block(state, block), execute_block(state, block)
    assert encode_outcome(first) == encode_outcome(second)
    (receipt,) = first.receipts
    assert (receipt.success, receipt.error, receipt.reason, receipt.fee) == (
        False,
        "FailedDecryption",
        "key_epoch_mismatch",
        0,
    )
    assert collateral(first.state, sub("alice")) == 10 * W
    assert first.state.nonces.get(ALICE.address) == state.nonces.get(ALICE.address)
