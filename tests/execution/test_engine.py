"""The vertical slice: genesis, collateral, governance, oracle, one auction, state root."""

from __future__ import annotations

import pytest

from sequencer_net.execution.engine import (
    ExecutionBlock,
    apply_block,
    encode_outcome,
    execute_block,
)
from sequencer_net.execution.exceptions import InvalidBlock
from sequencer_net.execution.receipts import AuctionCleared, FillEvent
from sequencer_net.execution.records import NonceWindow
from sequencer_net.execution.state import load_state, state_entries
from sequencer_net.execution.state_tree import MemoryNodeStore, StateTree, verify_proof
from sequencer_net.execution.transactions import (
    Deposit,
    ListMarket,
    SetMarketPaused,
    Transfer,
    Withdraw,
)
from tests.execution.execution_harness import (
    ADMIN,
    BUY,
    IOC,
    SELL,
    Chain,
    W,
    collateral,
    conserved_total,
    key,
    make_genesis,
    perp_params,
    size,
    sub,
)

PERP = 1


def listed_chain(**deposits: int) -> Chain:
    chain = Chain(make_genesis(deposits or {"alice": 10_000 * W, "bob": 10_000 * W}))
    result = chain.block([chain.tx(ADMIN, ListMarket(PERP, perp_params()))])
    assert result.receipts[0].success, result.receipts[0]
    return chain


def test_genesis_root_commits_deposits_and_is_reproducible() -> None:
    a = make_genesis({"alice": 5 * W}, insurance=W)
    b = make_genesis({"alice": 5 * W}, insurance=W)
    assert a.state_root == b.state_root
    assert a.state_root != make_genesis({"alice": 6 * W}, insurance=W).state_root
    assert collateral(a, sub("alice")) == 5 * W
    assert a.ledger.net_deposits == 6 * W


def test_transfer_moves_collateral_and_bumps_nonce() -> None:
    chain = listed_chain()
    result = chain.block([chain.tx(key("alice"), Transfer(0, sub("bob", 3), 250 * W))])
    assert result.receipts[0].success
    assert collateral(chain.state, sub("alice")) == 9_750 * W
    assert collateral(chain.state, sub("bob", 3)) == 250 * W
    assert chain.state.nonces[key("alice").address] == NonceWindow(highest=0, used=1)


def test_failed_transfer_changes_nothing_but_the_nonce() -> None:
    chain = listed_chain()
    before = chain.state
    result = chain.block([chain.tx(key("alice"), Transfer(0, sub("bob"), 20_000 * W))])
    assert not result.receipts[0].success
    assert result.receipts[0].error == "InsufficientCollateral"
    assert chain.state.subaccounts == before.subaccounts
    assert chain.state.nonces[key("alice").address] == NonceWindow(highest=0, used=1)


def test_withdraw_and_deposit_change_net_deposits() -> None:
    chain = listed_chain()
    result = chain.block(
        [
            chain.tx(key("alice"), Withdraw(0, 100 * W, key("alice").address)),
            chain.tx(ADMIN, Deposit(sub("carol"), 7 * W)),
            chain.tx(key("bob"), Deposit(sub("bob"), 7 * W)),  # not the bridge
        ]
    )
    assert [r.success for r in result.receipts] == [True, True, False]
    assert result.receipts[2].error == "Unauthorized"
    assert chain.state.ledger.net_deposits == 20_000 * W - 100 * W + 7 * W
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_replayed_nonce_fails_and_consumes_nothing() -> None:
    chain = listed_chain()
    good = chain.tx(key("alice"), Transfer(0, sub("bob"), W))
    again = chain.tx_with_nonce(key("alice"), Transfer(0, sub("bob"), 2 * W), good.nonce)
    result = chain.block([good, again])
    # Same (sender, nonce) twice in a block: the lower hash executes, the other
    # is NonceUsed, wherever each sits in the block.
    winner = 0 if good.tx_hash < again.tx_hash else 1
    assert [r.error for r in result.receipts] == (
        ["", "NonceUsed"] if winner == 0 else ["NonceUsed", ""]
    )
    assert collateral(chain.state, sub("bob")) == 10_000 * W + (W if winner == 0 else 2 * W)
    later = chain.block([chain.tx_with_nonce(key("alice"), Transfer(0, sub("bob"), W), 0)])
    assert later.receipts[0].error == "NonceUsed"  # and in a later block too


def test_a_senders_transactions_apply_in_nonce_order_not_block_order() -> None:
    chain = listed_chain()
    first = chain.tx(key("alice"), Transfer(0, sub("carol"), 9_000 * W))
    second = chain.tx(key("alice"), Withdraw(0, 1_000 * W, key("alice").address))
    chain.nonces[key("alice").address] += 5
    gapped = chain.tx(key("alice"), Transfer(0, sub("carol"), W))
    result = chain.block([second, gapped, first])
    # A gap inside the window is fine now; nonce order decides: 9,000, then
    # 1,000 (all that is left), then the gapped one finds nothing.
    assert [r.error for r in result.receipts] == ["", "InsufficientCollateral", ""]
    assert collateral(chain.state, sub("alice")) == 0


def test_only_admin_lists_markets_and_listing_is_checked() -> None:
    chain = Chain(make_genesis({"alice": W}))
    bad_grid = perp_params(tick_size=1, lot_size=1)
    result = chain.block(
        [
            chain.tx(key("alice"), ListMarket(PERP, perp_params())),
            chain.tx(ADMIN, ListMarket(PERP, bad_grid)),
            chain.tx(ADMIN, ListMarket(PERP, perp_params(maintenance_margin=W // 5))),
            chain.tx(ADMIN, ListMarket(PERP, perp_params())),
            chain.tx(ADMIN, ListMarket(PERP, perp_params())),
        ]
    )
    errors = [r.error for r in result.receipts]
    assert errors == [
        "Unauthorized",
        "InvalidMarketParams",
        "InvalidMarketParams",
        "",
        "MarketExists",
    ]
    assert PERP in chain.state.market_params


def test_orders_clear_at_one_uniform_price_with_taker_fees() -> None:
    chain = listed_chain()
    chain.block([chain.prices({PERP: 100 * W})])
    result = chain.block(
        [
            chain.order("alice", PERP, BUY, 101 * W, 2 * W),
            chain.order("bob", PERP, SELL, 99 * W, 2 * W),
        ]
    )
    assert all(r.success for r in result.receipts), result.receipts
    cleared = [e for e in result.events if isinstance(e, AuctionCleared)]
    assert len(cleared) == 1 and cleared[0].volume == 2 * W
    price = cleared[0].price
    assert 99 * W <= price <= 101 * W
    assert price == 100 * W  # tie-break: closest to the reference (index)
    fills = [e for e in result.events if isinstance(e, FillEvent)]
    assert {f.price for f in fills} == {price}
    fee = 2 * price * 5 // 10_000  # 5 bp taker, exact here
    assert collateral(chain.state, sub("alice")) == 10_000 * W - 200 * W - fee
    assert collateral(chain.state, sub("bob")) == 10_000 * W + 200 * W - fee
    assert size(chain.state, sub("alice"), PERP) == 2 * W
    assert size(chain.state, sub("bob"), PERP) == -2 * W
    assert chain.state.ledger.fee_pool == 2 * fee
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_unfilled_limit_rests_and_becomes_a_maker() -> None:
    chain = listed_chain()
    chain.block([chain.prices({PERP: 100 * W})])
    chain.block([chain.order("alice", PERP, BUY, 99 * W, W)])
    assert len(chain.state.books[PERP]) == 1
    result = chain.block([chain.order("bob", PERP, SELL, 0, W, tif=IOC)])
    fills = {f.subaccount: f for f in result.events if isinstance(f, FillEvent)}
    assert fills[sub("alice")].maker and not fills[sub("bob")].maker
    assert fills[sub("alice")].fee == 99 * W // 10_000  # maker 1 bp
    assert chain.state.books.get(PERP, {}) == {}


def test_stale_oracle_rejects_orders_and_pause_rejects_orders() -> None:
    chain = listed_chain()
    result = chain.block([chain.order("alice", PERP, BUY, 99 * W, W)])
    assert result.receipts[0].error == "StaleOraclePrice"
    chain.block([chain.prices({PERP: 100 * W})])
    chain.block([], dt=61)
    assert chain.block([chain.order("alice", PERP, BUY, 99 * W, W)]).receipts[0].error == (
        "StaleOraclePrice"
    )
    chain.block([chain.prices({PERP: 100 * W}), chain.tx(ADMIN, SetMarketPaused(PERP, True))])
    assert chain.block([chain.order("alice", PERP, BUY, 99 * W, W)]).receipts[0].error == (
        "MarketNotTrading"
    )


def test_state_root_is_incremental_and_matches_a_rebuild_with_proofs() -> None:
    chain = listed_chain()
    chain.block([chain.prices({PERP: 100 * W})])
    chain.block(
        [
            chain.order("alice", PERP, BUY, 101 * W, 2 * W),
            chain.order("bob", PERP, SELL, 99 * W, 3 * W),
        ]
    )
    state = chain.state
    entries = state_entries(state)
    rebuilt = StateTree(MemoryNodeStore()).apply(entries)
    assert rebuilt == state.state_root
    tree = state.tree()
    for k in list(entries)[:20]:
        assert verify_proof(state.state_root, k, entries[k], tree.prove(k))
    reloaded = load_state(state.store, state.state_root)
    assert state_entries(reloaded) == entries
    assert reloaded.open_subaccounts == state.open_subaccounts


def test_apply_block_does_not_mutate_input_and_is_repeatable() -> None:
    chain = listed_chain()
    chain.block([chain.prices({PERP: 100 * W})])
    state = chain.state
    before = state_entries(state)
    block = ExecutionBlock(
        state.height + 1,
        state.block.timestamp + 1,
        (
            chain.order("alice", PERP, BUY, 101 * W, 2 * W),
            chain.order("bob", PERP, SELL, 99 * W, 3 * W),
        ),
    )
    first = execute_block(state, block)
    second = execute_block(state, block)
    assert encode_outcome(first) == encode_outcome(second)
    assert state_entries(state) == before
    new_state, receipts = apply_block(state, block)
    assert new_state.state_root == first.state_root and receipts == first.receipts


def test_block_height_and_time_are_checked() -> None:
    state = make_genesis({"alice": W})
    with pytest.raises(InvalidBlock):
        apply_block(state, ExecutionBlock(2, state.block.timestamp + 1, ()))
    with pytest.raises(InvalidBlock):
        apply_block(state, ExecutionBlock(1, state.block.timestamp - 1, ()))
