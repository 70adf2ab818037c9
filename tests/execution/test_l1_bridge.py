"""The engine side of the L1 bridge: deposits credited by a reporter quorum,
L1 asset balances, and the withdrawal records the L1 pays against."""

from __future__ import annotations

from typing import Any

from consensus.crypto import PrivateKey
from sequencer_net.execution.block import SequencedTransaction
from sequencer_net.execution.engine import BlockResult
from sequencer_net.execution.genesis import GenesisConfig, GenesisDeposit, genesis_state
from sequencer_net.execution.l1_bridge import decode_withdrawal_record, withdrawal_record
from sequencer_net.execution.limits import MAX_AMOUNT, MAX_OPEN_DEPOSITS
from sequencer_net.execution.receipts import Credited, DepositRefused, Withdrawn
from sequencer_net.execution.records import OracleReporter
from sequencer_net.execution.state import (
    KEY_BRIDGE,
    PREFIX_L1_BALANCE,
    ExecutionState,
    l1_balance_key,
    load_state,
    state_entries,
    withdrawal_tree_key,
)
from sequencer_net.execution.state_tree import MemoryNodeStore, StateTree, verify_proof
from sequencer_net.execution.transactions import L1DepositReport, Withdraw
from tests.execution.execution_harness import (
    ADMIN,
    CHAIN_ID,
    COLLATERAL_TOKEN,
    ETH,
    GENESIS_TIME,
    Chain,
    W,
    check_engine_invariants,
    collateral,
    key,
    l1_asset_totals,
    sub,
)

REPORTERS = tuple(key(f"reporter{i}") for i in range(4))
ALICE = key("alice")
ALICE_SUB = sub("alice")
OTHER_TOKEN = b"\x70" * 20


def bridge_chain(
    powers: tuple[int, ...] = (1, 1, 1, 1),
    collateral_token: bytes = COLLATERAL_TOKEN,
    bridge: bytes | None = None,
) -> Chain:
    """Four reporters (equal power unless told), no fees, alice funded."""
    oracles = tuple(
        sorted(
            (OracleReporter(r.address, p) for r, p in zip(REPORTERS, powers, strict=True)),
            key=lambda o: o.address,
        )
    )
    return Chain(
        genesis_state(
            GenesisConfig(
                chain_id=CHAIN_ID,
                admin=ADMIN.address,
                bridge=ADMIN.address if bridge is None else bridge,
                oracles=oracles,
                genesis_time=GENESIS_TIME,
                deposits=(GenesisDeposit(ALICE_SUB, 100 * W),),
                fee_base=0,
                fee_per_byte=0,
                collateral_token=collateral_token,
            )
        )
    )


def report(
    chain: Chain,
    reporter: PrivateKey,
    nonce: int,
    amount: int = 5 * W,
    token: bytes = COLLATERAL_TOKEN,
    subaccount: bytes = ALICE_SUB,
) -> SequencedTransaction:
    return chain.tx(reporter, L1DepositReport(nonce, subaccount, token, amount))


def run(chain: Chain, *txs: SequencedTransaction) -> BlockResult:
    result = chain.block(txs)
    check_engine_invariants(chain.state)
    return result


def errors(result: BlockResult) -> list[str]:
    return [r.error for r in result.receipts]


def credited(result: BlockResult) -> list[Credited]:
    return [e for e in result.events if isinstance(e, Credited)]


# --- quorum ---------------------------------------------------------------------------


def test_three_of_four_reporters_credit_exactly_once_on_the_third_report() -> None:
    chain = bridge_chain()
    before = chain.state.ledger.net_deposits
    first = run(chain, report(chain, REPORTERS[0], 0), report(chain, REPORTERS[1], 0))
    assert errors(first) == ["", ""] and not credited(first)
    assert collateral(chain.state, ALICE_SUB) == 100 * W
    assert len(chain.state.deposit_tallies[0].votes[0].reporters) == 2

    third = run(chain, report(chain, REPORTERS[2], 0))
    assert errors(third) == [""]
    assert credited(third) == [Credited(0, ALICE_SUB, COLLATERAL_TOKEN, 5 * W, True)]
    assert collateral(chain.state, ALICE_SUB) == 105 * W
    assert chain.state.ledger.net_deposits == before + 5 * W
    assert chain.state.deposit_tallies == {}  # pruned once credited
    assert chain.state.bridge.resolved_below == 1

    late = run(chain, report(chain, REPORTERS[3], 0))
    assert errors(late) == ["DepositAlreadyResolved"] and not credited(late)
    assert collateral(chain.state, ALICE_SUB) == 105 * W
    assert chain.state.ledger.net_deposits == before + 5 * W
    again = run(chain, report(chain, REPORTERS[0], 0))
    assert errors(again) == ["DepositAlreadyResolved"]
    assert collateral(chain.state, ALICE_SUB) == 105 * W
    assert chain.state.deposit_tallies == {} and chain.state.bridge.resolved_below == 1


def test_two_of_four_never_credit() -> None:
    chain = bridge_chain()
    run(chain, report(chain, REPORTERS[0], 0), report(chain, REPORTERS[1], 0))
    for _ in range(3):
        result = run(chain)
        assert not credited(result)
    assert collateral(chain.state, ALICE_SUB) == 100 * W
    assert chain.state.bridge.resolved_below == 0


def test_the_quorum_is_by_power_not_by_count() -> None:
    chain = bridge_chain(powers=(1, 1, 1, 4))  # total 7: a quorum holds 5 or more
    three_light = run(chain, *(report(chain, r, 0) for r in REPORTERS[:3]))
    assert not credited(three_light)
    assert credited(run(chain, report(chain, REPORTERS[3], 0)))


def test_a_non_reporter_is_refused_and_changes_nothing() -> None:
    chain = bridge_chain()
    result = run(chain, report(chain, ALICE, 0), report(chain, ADMIN, 0))
    assert errors(result) == ["Unauthorized", "Unauthorized"]
    assert chain.state.deposit_tallies == {}


def test_a_reporter_reporting_twice_counts_once() -> None:
    chain = bridge_chain()
    result = run(
        chain,
        report(chain, REPORTERS[0], 0),
        report(chain, REPORTERS[0], 0),
        report(chain, REPORTERS[1], 0),
    )
    assert errors(result) == ["", "DepositAlreadyReported", ""]
    assert not credited(result)
    # Nor may it move its vote to another content.
    switched = run(chain, report(chain, REPORTERS[0], 0, amount=6 * W))
    assert errors(switched) == ["DepositAlreadyReported"]
    assert len(chain.state.deposit_tallies[0].votes) == 1


def test_conflicting_content_never_combines() -> None:
    chain = bridge_chain()
    result = run(
        chain,
        report(chain, REPORTERS[0], 0, amount=5 * W),
        report(chain, REPORTERS[1], 0, amount=5 * W),
        report(chain, REPORTERS[2], 0, amount=6 * W),
        report(chain, REPORTERS[3], 0, token=ETH),
    )
    assert errors(result) == ["", "", "", ""]
    assert not credited(result)
    assert [len(v.reporters) for v in chain.state.deposit_tallies[0].votes] == [2, 1, 1]
    assert collateral(chain.state, ALICE_SUB) == 100 * W
    assert chain.state.l1_balances == {}


def test_the_first_content_to_reach_the_quorum_wins_and_the_rest_is_pruned() -> None:
    chain = bridge_chain()
    run(
        chain,
        report(chain, REPORTERS[0], 0, amount=9 * W),  # a lying reporter
        report(chain, REPORTERS[1], 0),
        report(chain, REPORTERS[2], 0),
    )
    result = run(chain, report(chain, REPORTERS[3], 0))
    assert credited(result) == [Credited(0, ALICE_SUB, COLLATERAL_TOKEN, 5 * W, True)]
    assert chain.state.deposit_tallies == {}


# --- what a credit is -----------------------------------------------------------------


def quorum(chain: Chain, nonce: int, **content: Any) -> BlockResult:
    return run(chain, *(report(chain, r, nonce, **content) for r in REPORTERS[:3]))


def test_collateral_token_credits_collateral_and_eth_credits_the_l1_balance() -> None:
    chain = bridge_chain()
    net = chain.state.ledger.net_deposits
    quorum(chain, 0, amount=7 * W)
    assert collateral(chain.state, ALICE_SUB) == 107 * W
    eth = quorum(chain, 1, amount=3 * W, token=ETH, subaccount=sub("alice", 4))
    assert credited(eth) == [Credited(1, sub("alice", 4), ETH, 3 * W, False)]
    assert chain.state.ledger.net_deposits == net + 7 * W  # ETH is not collateral
    assert chain.state.l1_balances == {l1_balance_key(ALICE.address, ETH): 3 * W}
    assert sub("alice", 4) not in chain.state.subaccounts
    # The state entry is abi.encode(uint256) and is provable.
    tree_key = PREFIX_L1_BALANCE + ALICE.address + ETH
    value = (3 * W).to_bytes(32, "big")
    assert chain.state.tree().get(tree_key) == value
    assert verify_proof(chain.state.state_root, tree_key, value, chain.state.tree().prove(tree_key))
    quorum(chain, 2, amount=2 * W, token=ETH)
    assert chain.state.l1_balances == {l1_balance_key(ALICE.address, ETH): 5 * W}


def test_without_a_collateral_token_every_deposit_is_an_l1_asset() -> None:
    chain = bridge_chain(collateral_token=b"")
    result = quorum(chain, 0, token=COLLATERAL_TOKEN)
    assert credited(result) == [Credited(0, ALICE_SUB, COLLATERAL_TOKEN, 5 * W, False)]
    assert collateral(chain.state, ALICE_SUB) == 100 * W
    withdrawal = run(chain, chain.tx(ALICE, Withdraw(0, W, ALICE.address)))
    assert errors(withdrawal) == [""]
    assert withdrawal.events[-1] == Withdrawn(ALICE_SUB, ALICE.address, W, b"", None)
    assert chain.state.withdrawals == {}


def test_an_uncreditable_amount_is_refused_but_settles_the_nonce() -> None:
    chain = bridge_chain()
    for nonce, amount in ((0, 0), (1, MAX_AMOUNT + 1)):
        result = quorum(chain, nonce, amount=amount)
        refused = [e for e in result.events if isinstance(e, DepositRefused)]
        assert refused == [DepositRefused(nonce, ALICE_SUB, COLLATERAL_TOKEN, amount, "amount")]
    assert chain.state.bridge.resolved_below == 2
    assert collateral(chain.state, ALICE_SUB) == 100 * W
    negative = run(chain, report(chain, REPORTERS[0], 2, amount=-1))
    assert errors(negative) == ["InvalidDepositReport"]


def test_nonces_resolved_out_of_order_leave_markers_until_the_gap_closes() -> None:
    chain = bridge_chain()
    quorum(chain, 2)
    quorum(chain, 1)
    assert chain.state.bridge.resolved_below == 0
    assert {n: t.resolved for n, t in chain.state.deposit_tallies.items()} == {1: True, 2: True}
    assert errors(run(chain, report(chain, REPORTERS[3], 2))) == ["DepositAlreadyResolved"]
    quorum(chain, 0)
    assert chain.state.bridge.resolved_below == 3
    assert chain.state.deposit_tallies == {}
    assert collateral(chain.state, ALICE_SUB) == 115 * W


def test_reports_beyond_the_window_are_refused() -> None:
    chain = bridge_chain()
    result = run(
        chain,
        report(chain, REPORTERS[0], MAX_OPEN_DEPOSITS - 1),
        report(chain, REPORTERS[0], MAX_OPEN_DEPOSITS),
        report(chain, REPORTERS[1], 2**64),
    )
    assert errors(result) == ["", "InvalidDepositReport", "InvalidDepositReport"]
    assert list(chain.state.deposit_tallies) == [MAX_OPEN_DEPOSITS - 1]


def test_malformed_reports_are_refused() -> None:
    chain = bridge_chain()
    bad = [
        L1DepositReport(0, ALICE_SUB[:20], COLLATERAL_TOKEN, W),
        L1DepositReport(0, ALICE_SUB, COLLATERAL_TOKEN[:19], W),
        L1DepositReport(-1, ALICE_SUB, COLLATERAL_TOKEN, W),
    ]
    result = run(chain, *(chain.tx(REPORTERS[0], payload) for payload in bad))
    assert errors(result) == ["InvalidDepositReport"] * 3
    assert chain.state.deposit_tallies == {}


# --- withdrawals ----------------------------------------------------------------------


def test_a_collateral_withdrawal_writes_the_exact_abi_leaf_and_its_proof_verifies() -> None:
    chain = bridge_chain()
    recipient = b"\x5e" * 20
    first = run(chain, chain.tx(ALICE, Withdraw(0, 4 * W, recipient)))
    second = run(chain, chain.tx(ALICE, Withdraw(0, W, recipient, COLLATERAL_TOKEN)))
    assert errors(first) == errors(second) == [""]
    assert first.events[-1] == Withdrawn(ALICE_SUB, recipient, 4 * W, COLLATERAL_TOKEN, 0)
    assert second.events[-1] == Withdrawn(ALICE_SUB, recipient, W, COLLATERAL_TOKEN, 1)
    assert collateral(chain.state, ALICE_SUB) == 95 * W
    expected = (
        (0).to_bytes(32, "big")
        + bytes(12)
        + recipient
        + bytes(12)
        + COLLATERAL_TOKEN
        + (4 * W).to_bytes(32, "big")
    )
    assert len(expected) == 128
    assert withdrawal_record(0, recipient, COLLATERAL_TOKEN, 4 * W) == expected
    assert decode_withdrawal_record(expected) == (0, recipient, COLLATERAL_TOKEN, 4 * W)
    state = chain.state
    leaf_key = withdrawal_tree_key(0)
    assert leaf_key == b"wd/" + bytes(8)
    assert state.tree().get(leaf_key) == expected
    proof = state.tree().prove(leaf_key)
    assert verify_proof(state.state_root, leaf_key, expected, proof)
    assert not verify_proof(state.state_root, leaf_key, expected[:-1] + b"\x01", proof)
    assert state.bridge.next_withdrawal == 2
    assert state.tree().get(withdrawal_tree_key(1)) == withdrawal_record(
        1, recipient, COLLATERAL_TOKEN, W
    )


def test_withdrawing_an_l1_asset_balance() -> None:
    chain = bridge_chain()
    quorum(chain, 0, amount=3 * W, token=ETH)
    too_much = run(chain, chain.tx(ALICE, Withdraw(0, 4 * W, ALICE.address, ETH)))
    assert errors(too_much) == ["InsufficientBalance"]
    wrong_number = run(chain, chain.tx(ALICE, Withdraw(1, W, ALICE.address, ETH)))
    assert errors(wrong_number) == ["InvalidAmount"]
    other = run(chain, chain.tx(ALICE, Withdraw(0, W, ALICE.address, OTHER_TOKEN)))
    assert errors(other) == ["InsufficientBalance"]
    assert chain.state.withdrawals == {}

    part = run(chain, chain.tx(ALICE, Withdraw(0, 2 * W, ALICE.address, ETH)))
    assert errors(part) == [""]
    assert part.events[-1] == Withdrawn(ALICE.address, ALICE.address, 2 * W, ETH, 0)
    assert chain.state.l1_balances == {l1_balance_key(ALICE.address, ETH): W}
    rest = run(chain, chain.tx(ALICE, Withdraw(0, W, ALICE.address, ETH)))
    assert errors(rest) == [""]
    assert chain.state.l1_balances == {}  # deleted when zero
    assert chain.state.tree().get(PREFIX_L1_BALANCE + ALICE.address + ETH) is None
    assert chain.state.withdrawals == {
        0: withdrawal_record(0, ALICE.address, ETH, 2 * W),
        1: withdrawal_record(1, ALICE.address, ETH, W),
    }
    assert collateral(chain.state, ALICE_SUB) == 100 * W  # collateral untouched
    assert l1_asset_totals(chain.state) == {}


def test_a_refused_withdrawal_writes_no_record_and_uses_no_id() -> None:
    chain = bridge_chain()
    result = run(
        chain,
        chain.tx(ALICE, Withdraw(0, 1_000 * W, ALICE.address)),
        chain.tx(ALICE, Withdraw(0, W, ALICE.address[:19])),
        chain.tx(ALICE, Withdraw(0, W, ALICE.address, b"\x01" * 21)),
    )
    assert errors(result) == ["InsufficientCollateral", "InvalidAmount", "InvalidAmount"]
    assert chain.state.withdrawals == {} and chain.state.bridge.next_withdrawal == 0
    assert KEY_BRIDGE not in state_entries(chain.state)


def test_bridge_state_survives_a_reload_and_matches_a_rebuild() -> None:
    chain = bridge_chain()
    quorum(chain, 0, token=ETH)
    quorum(chain, 2)
    run(chain, report(chain, REPORTERS[0], 3), chain.tx(ALICE, Withdraw(0, W, ALICE.address)))
    state: ExecutionState = chain.state
    entries = state_entries(state)
    assert StateTree(MemoryNodeStore()).apply(entries) == state.state_root
    reloaded = load_state(state.store, state.state_root)
    assert state_entries(reloaded) == entries
    assert reloaded.bridge == state.bridge
    assert reloaded.deposit_tallies == state.deposit_tallies
    assert reloaded.l1_balances == state.l1_balances
    assert reloaded.withdrawals == state.withdrawals


def test_genesis_refuses_a_bad_collateral_token() -> None:
    import pytest

    for token in (bytes(20), b"\x01" * 19):
        with pytest.raises(ValueError, match="collateral_token"):
            bridge_chain(collateral_token=token)


def test_on_an_l1_bridged_chain_the_admin_cannot_mint_collateral() -> None:
    """A faucet deposit mints collateral the L1 Bridge does not hold: with a
    collateral token only the bridge key genesis names may send one."""
    from sequencer_net.execution.transactions import Deposit

    faucet = key("faucet")
    for collateral_token, admin_may in ((COLLATERAL_TOKEN, False), (b"", True)):
        chain = bridge_chain(collateral_token=collateral_token, bridge=faucet.address)
        by_admin = run(chain, chain.tx(ADMIN, Deposit(ALICE_SUB, W)))
        assert errors(by_admin) == ["" if admin_may else "Unauthorized"]
        by_faucet = run(chain, chain.tx(faucet, Deposit(ALICE_SUB, W)))
        assert errors(by_faucet) == [""]
