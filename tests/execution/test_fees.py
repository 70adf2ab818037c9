"""Sequencing fees: every namespace pays fee_base + fee_per_byte * payload length."""

from __future__ import annotations

import pytest

from sequencer_net.execution import fees
from sequencer_net.execution.fees import (
    DEFAULT_FEE_BASE,
    DEFAULT_FEE_PER_BYTE,
    CommittedFeeBalances,
    check_fee_schedule,
    committed_fee_balance,
    required_fee,
)
from sequencer_net.execution.limits import MAX_FEE, MAX_PAYLOAD_BYTES
from sequencer_net.execution.margin import subaccount_risk
from sequencer_net.execution.receipts import Liquidated
from sequencer_net.execution.records import TimeInForce
from sequencer_net.execution.state import StateWriter
from sequencer_net.execution.transactions import PlaceOrder, Transfer, encode_payload
from tests.execution.execution_harness import (
    BUY,
    SELL,
    Chain,
    W,
    collateral,
    conserved_total,
    key,
    make_genesis,
    perp_params,
    sub,
)

PERP = 1
BASE, PER_BYTE = DEFAULT_FEE_BASE, DEFAULT_FEE_PER_BYTE


def chain_with_fees(**deposits: int) -> Chain:
    chain = Chain(
        make_genesis(
            deposits or {"alice": 100 * W, "bob": 100 * W, "oracle": W},
            markets=[(PERP, perp_params(maker_fee=0, taker_fee=0))],
            fee_base=BASE,
            fee_per_byte=PER_BYTE,
        )
    )
    return chain


def test_worked_example_a_29_byte_order_pays_0_001029() -> None:
    order = PlaceOrder(0, 1, BUY, 2_000 * W, 5 * W, TimeInForce.GOOD_TILL_CANCEL, False, False)
    payload = encode_payload(order)
    assert len(payload) == 29
    chain = chain_with_fees()
    assert required_fee(chain.state.config, len(payload)) == 1_029 * 10**12  # 0.001029


def test_a_fee_below_the_required_one_is_refused_consuming_the_nonce_not_the_balance() -> None:
    chain = chain_with_fees()
    payload = encode_payload(Transfer(0, sub("bob"), W))
    required = chain.fee(payload)
    low = chain.raw(key("alice"), payload, fee=required - 1)
    result = chain.block([low])
    [receipt] = result.receipts
    assert (receipt.error, receipt.fee) == ("FeeTooLow", 0)
    assert collateral(chain.state, sub("alice")) == 100 * W
    retry = chain.tx_with_nonce(key("alice"), Transfer(0, sub("bob"), W), low.nonce)
    assert chain.block([retry]).receipts[0].error == "NonceUsed"  # no replay of the nonce


def test_the_offered_fee_is_debited_from_subaccount_0_into_the_fee_pool() -> None:
    chain = chain_with_fees()
    payload = encode_payload(Transfer(0, sub("bob"), W))
    offered = 3 * chain.fee(payload)
    result = chain.block([chain.raw(key("alice"), payload, fee=offered)])
    assert result.receipts[0].success and result.receipts[0].fee == offered
    assert collateral(chain.state, sub("alice")) == 100 * W - W - offered
    assert chain.state.ledger.fee_pool == offered
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_rollup_data_pays_per_byte_and_is_only_ordered() -> None:
    chain = chain_with_fees()
    data = b"\x00" * 1_000
    result = chain.block([chain.raw(key("alice"), data, namespace=7)])
    [receipt] = result.receipts
    assert receipt.success and receipt.fee == BASE + 1_000 * PER_BYTE
    assert collateral(chain.state, sub("alice")) == 100 * W - receipt.fee
    assert result.events == ()


def test_an_undecodable_dex_payload_pays_its_fee_and_uses_its_nonce() -> None:
    chain = chain_with_fees()
    garbage = b"\x91" * 999
    tx = chain.raw(key("alice"), garbage)
    [receipt] = chain.block([tx]).receipts
    assert receipt.error == "MalformedTransaction" and receipt.fee == tx.fee > 0
    assert collateral(chain.state, sub("alice")) == 100 * W - tx.fee
    assert chain.state.nonces[key("alice").address].highest == tx.nonce


def test_a_nonce_rejection_pays_nothing() -> None:
    chain = chain_with_fees()
    first = chain.tx(key("alice"), Transfer(0, sub("bob"), W))
    replay = chain.tx_with_nonce(key("alice"), Transfer(0, sub("bob"), 2 * W), first.nonce)
    chain.block([first])
    before = collateral(chain.state, sub("alice"))
    [receipt] = chain.block([replay]).receipts
    assert (receipt.error, receipt.fee) == ("NonceUsed", 0)
    assert collateral(chain.state, sub("alice")) == before


def test_a_sender_without_the_fee_is_refused_and_pays_nothing() -> None:
    chain = chain_with_fees(alice=100 * W, dave=10 * W)
    payload = encode_payload(Transfer(0, sub("bob"), W))
    result = chain.block(
        [
            chain.raw(key("carol"), payload),  # holds nothing
            chain.raw(key("dave"), payload, fee=11 * W),  # more than dave holds
        ]
    )
    assert [(r.error, r.fee) for r in result.receipts] == [
        ("InsufficientFeeBalance", 0),
        ("InsufficientFeeBalance", 0),
    ]
    assert collateral(chain.state, sub("dave")) == 10 * W


def test_fees_of_one_sender_in_one_block_add_up_against_its_balance() -> None:
    chain = chain_with_fees(alice=3 * BASE, bob=W)
    rollup = [chain.raw(key("alice"), b"", namespace=1) for _ in range(4)]
    result = chain.block(rollup)
    assert [r.error for r in result.receipts] == ["", "", "", "InsufficientFeeBalance"]
    assert collateral(chain.state, sub("alice")) == 0


def test_fees_come_only_from_equity_above_maintenance_never_causing_liquidation() -> None:
    chain = chain_with_fees(alice=100 * W, bob=10_000 * W, oracle=W)
    chain.block([chain.prices({PERP: 100 * W})])
    chain.block(
        [
            chain.order("alice", PERP, BUY, 100 * W, 9 * W),
            chain.order("bob", PERP, SELL, 100 * W, 9 * W),
        ]
    )
    # Index 95: equity about 55, maintenance 42.75, initial 85.50.
    chain.block([chain.prices({PERP: 95 * W})])
    state = chain.state
    w = StateWriter(state, state.height, state.block.timestamp)
    risk = subaccount_risk(w, sub("alice"))
    assert risk.equity < risk.initial  # no free collateral: under the initial margin
    spare = risk.equity - risk.maintenance  # about 12.25 (less the fees paid so far)
    too_much = chain.raw(key("alice"), b"x", namespace=3, fee=spare + 1)
    assert chain.block([too_much]).receipts[0].error == "InsufficientFeeBalance"
    exact = chain.raw(key("alice"), b"x", namespace=3, fee=spare)
    result = chain.block([exact])
    assert result.receipts[0].success
    assert not [e for e in result.events if isinstance(e, Liquidated)]
    w = StateWriter(chain.state, chain.state.height, chain.state.block.timestamp)
    risk = subaccount_risk(w, sub("alice"))
    assert risk.equity == risk.maintenance  # paid down to maintenance, not below
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_fee_schedule_must_leave_every_payload_payable() -> None:
    check_fee_schedule(0, 0)
    check_fee_schedule(BASE, PER_BYTE)
    with pytest.raises(ValueError):
        check_fee_schedule(-1, 0)
    with pytest.raises(ValueError):
        check_fee_schedule(0, MAX_FEE // MAX_PAYLOAD_BYTES + 1)


def test_the_mempools_fee_balance_is_computed_once_per_sender_and_committed_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain = chain_with_fees(alice=100 * W, bob=10_000 * W, oracle=W)
    chain.block([chain.prices({PERP: 100 * W})])
    chain.block(
        [
            chain.order("alice", PERP, BUY, 100 * W, 9 * W),
            chain.order("bob", PERP, SELL, 100 * W, 9 * W),
        ]
    )
    calls: list[bytes] = []

    def counted(state: object, sender: bytes, reader: object = None) -> int:
        calls.append(sender)
        return committed_fee_balance(state, sender, reader)  # type: ignore[arg-type]

    monkeypatch.setattr(fees, "committed_fee_balance", counted)
    balances = CommittedFeeBalances(lambda: chain.state, limit=1)
    alice, bob = key("alice").address, key("bob").address
    first = balances(alice)
    assert first == committed_fee_balance(chain.state, alice) > 0
    assert balances(alice) == first and balances(bob) == balances(bob)
    assert calls == [alice, bob, bob]  # alice remembered; bob over the limit of 1
    chain.block([chain.prices({PERP: 95 * W})])  # a new committed state: asked again
    assert balances(alice) == committed_fee_balance(chain.state, alice) < first
    assert calls == [alice, bob, bob, alice]
