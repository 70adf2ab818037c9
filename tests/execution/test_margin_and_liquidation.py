"""Margin checks, funding with a lazy cumulative index, liquidation, insurance, deleveraging."""

from __future__ import annotations

from sequencer_net.execution.funding import funding_per_lot
from sequencer_net.execution.margin import requirement
from sequencer_net.execution.positions import pending_charge
from sequencer_net.execution.receipts import (
    Deleveraged,
    FundingApplied,
    Liquidated,
    LiquidationOrderPlaced,
)
from sequencer_net.execution.records import MarketState
from sequencer_net.execution.transactions import Withdraw
from tests.execution.execution_harness import (
    ADMIN,
    BUY,
    INSURANCE_FUND,
    SELL,
    Chain,
    W,
    collateral,
    conserved_total,
    key,
    make_genesis,
    perp_params,
    position,
    size,
    sub,
)

PERP = 1
NO_FEES = {"maker_fee": 0, "taker_fee": 0}


def chain_with(deposits: dict[str, int], insurance: int = 0, **params: int) -> Chain:
    chain = Chain(
        make_genesis(deposits, insurance=insurance, markets=[(PERP, perp_params(**params))])
    )
    chain.block([chain.prices({PERP: 100 * W})])
    return chain


def open_pair(chain: Chain, long: str, short: str, quantity: int, price: int = 100 * W) -> None:
    result = chain.block(
        [
            chain.order(long, PERP, BUY, price, quantity),
            chain.order(short, PERP, SELL, price, quantity),
        ]
    )
    assert all(r.success for r in result.receipts), result.receipts
    assert size(chain.state, sub(long), PERP) == quantity


def test_margin_requirement_rounds_up() -> None:
    state = MarketState(False, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    # |size| * price * fraction = 1 * 3 * 1 wad^-3: far below one unit, still 1.
    assert requirement(perp_params(), state, 1, 1) == 1
    assert requirement(perp_params(), state, -1, 1) == 1
    assert requirement(perp_params(), state, 0, 1) == 0


def test_orders_beyond_initial_margin_are_rejected() -> None:
    chain = chain_with({"alice": 100 * W, "bob": 10_000 * W}, **NO_FEES)
    # equity 100, 10% initial margin at index 100: at most 10 units of open exposure.
    result = chain.block(
        [
            chain.order("alice", PERP, BUY, 90 * W, 6 * W),
            chain.order("alice", PERP, BUY, 90 * W, 4 * W),
            chain.order("alice", PERP, BUY, 90 * W, W // 1000),
        ]
    )
    assert [r.error for r in result.receipts] == ["", "", "InsufficientMargin"]
    # Open sells offset nothing: the worst case is all buys filled.
    result = chain.block([chain.order("alice", PERP, SELL, 200 * W, 25 * W)])
    assert result.receipts[0].error == "InsufficientMargin"


def test_withdrawal_must_leave_initial_margin() -> None:
    chain = chain_with({"alice": 100 * W, "bob": 10_000 * W}, **NO_FEES)
    open_pair(chain, "alice", "bob", 5 * W)  # needs 50 initial
    result = chain.block(
        [
            chain.tx(key("alice"), Withdraw(0, 51 * W, key("alice").address)),
            chain.tx(key("alice"), Withdraw(0, 50 * W, key("alice").address)),
        ]
    )
    assert [r.error for r in result.receipts] == ["InsufficientMargin", ""]


def test_funding_moves_the_index_not_the_accounts() -> None:
    chain = chain_with(
        {"alice": 1_000 * W, "bob": 1_000 * W, "carol": 1_000 * W, "dave": 1_000 * W},
        funding_interval=10,
        funding_clamp=W // 100,
        impact_notional=100 * W,  # the book here is small; depth is tested in test_funding.py
        **NO_FEES,
    )
    open_pair(chain, "alice", "bob", 2 * W)
    # carol bids 1 at 100.50 and it rests: impact bid 100.50 vs index 100, premium 0.50.
    orders = [chain.order("carol", PERP, BUY, 10050 * W // 100, W)]
    for _ in range(3):
        chain.block([chain.prices({PERP: 100 * W}), *orders], dt=2)
        orders = []
    before = chain.state
    alice_position = position(before, sub("alice"), PERP)
    result = chain.block([chain.prices({PERP: 100 * W})], dt=3)
    funding = [e for e in result.events if isinstance(e, FundingApplied)]
    assert len(funding) == 1
    expected_per_lot = funding_per_lot(before.market_params[PERP], before.market_states[PERP])
    assert funding[0].per_lot == expected_per_lot > 0
    state = chain.state
    # Lazy: the long's position record was not rewritten...
    assert position(state, sub("alice"), PERP) is alice_position
    # ... but it owes lots * per_lot, and the short is owed exactly as much.
    alice_owes = pending_charge(
        state.market_params[PERP], state.market_states[PERP], alice_position
    )
    bob_position = position(state, sub("bob"), PERP)
    assert bob_position is not None
    bob_owes = pending_charge(state.market_params[PERP], state.market_states[PERP], bob_position)
    assert alice_owes == 2000 * funding[0].per_lot
    assert bob_owes == -alice_owes
    assert conserved_total(state) == state.ledger.net_deposits
    # Closing the position settles the charge into collateral.
    alice_cash = collateral(state, sub("alice"))
    chain.block(
        [
            chain.prices({PERP: 100 * W}),
            chain.order("alice", PERP, SELL, 100 * W, 2 * W),
            chain.order("carol", PERP, BUY, 100 * W, 2 * W),
        ]
    )
    assert size(chain.state, sub("alice"), PERP) == 0
    assert collateral(chain.state, sub("alice")) == alice_cash - alice_owes + 200 * W
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_funding_premium_is_clamped_and_rounded_toward_zero() -> None:
    # premium = premium_sum (premium * seconds) / funding_interval, toward zero.
    params = perp_params(funding_clamp=W // 100, lot_size=W // 1000, funding_interval=3)
    wide = MarketState(False, 100 * W, 0, 0, 0, 0, 0, 30 * W, 3, 0, 0, 0)
    assert funding_per_lot(params, wide) == (1 * W) // 1000  # clamp: 1% of 100
    narrow = MarketState(False, 100 * W, 0, 0, 0, 0, 0, -7, 3, 0, 0, 0)
    assert funding_per_lot(params, narrow) == 0  # -7/3 -> -2, * 0.001 -> toward zero
    every_second = perp_params(funding_clamp=W // 100, lot_size=W // 1000, funding_interval=1)
    tiny = MarketState(False, 100 * W, 0, 0, 0, 0, 0, -3001, 1, 0, 0, 0)
    assert funding_per_lot(every_second, tiny) == -3  # -3.001 -> -3, not -4
    # Seconds nobody sampled count as zero: 1 s of premium 10 in a 3 s interval.
    partial = MarketState(False, 100 * W, 0, 0, 0, 0, 0, 3 * W // 10, 1, 0, 0, 0)
    assert funding_per_lot(params, partial) == (W // 10) // 1000


def test_under_maintenance_account_is_liquidated_into_the_fund() -> None:
    chain = chain_with({"alice": 100 * W, "bob": 10_000 * W}, insurance=1_000 * W, **NO_FEES)
    open_pair(chain, "alice", "bob", 10 * W)
    result = chain.block([chain.prices({PERP: 95 * W})])
    assert not [e for e in result.events if isinstance(e, LiquidationOrderPlaced)]  # 50 >= 47.5
    # Index 94: equity 40 < maintenance 47. Not bankrupt: first a liquidation
    # order for the smallest reduction, at the bankruptcy price 94 - 40/10 = 90.
    result = chain.block([chain.prices({PERP: 94 * W})])
    assert not [e for e in result.events if isinstance(e, Liquidated)]
    [placed] = [e for e in result.events if isinstance(e, LiquidationOrderPlaced)]
    assert (placed.subaccount, placed.side, placed.limit_price) == (sub("alice"), SELL, 90 * W)
    assert placed.quantity == 1_862 * W // 1000
    # Nobody bids in three auctions in a row (max_liquidation_misses): the
    # order is placed again twice, then the fund takes over only the 1.862 it
    # was for, at the index: alice +175.028, fee 1.75028, she keeps 8.138.
    for _ in range(2):
        result = chain.block([chain.prices({PERP: 94 * W})])
        assert not [e for e in result.events if isinstance(e, Liquidated)]
        assert [e.quantity for e in result.events if isinstance(e, LiquidationOrderPlaced)] == [
            1_862 * W // 1000
        ]
    result = chain.block([chain.prices({PERP: 94 * W})])
    liquidations = [e for e in result.events if isinstance(e, Liquidated)]
    assert len(liquidations) == 1 and liquidations[0].subaccount == sub("alice")
    assert liquidations[0].equity == 40 * W and liquidations[0].deficit == 0
    state = chain.state
    assert size(state, sub("alice"), PERP) == 8_138 * W // 1000
    assert size(state, INSURANCE_FUND, PERP) == 1_862 * W // 1000
    fee = 175_028 * W // 100_000
    assert collateral(state, sub("alice")) == -900 * W + 175_028 * W // 1000 - fee
    assert collateral(state, INSURANCE_FUND) == 1_000 * W - 175_028 * W // 1000 + fee
    assert conserved_total(state) == state.ledger.net_deposits


def test_bankrupt_account_is_covered_by_the_fund() -> None:
    chain = chain_with({"alice": 100 * W, "bob": 10_000 * W}, insurance=1_000 * W, **NO_FEES)
    open_pair(chain, "alice", "bob", 10 * W)
    result = chain.block([chain.prices({PERP: 85 * W})])
    [liquidation] = [e for e in result.events if isinstance(e, Liquidated)]
    assert liquidation.deficit == 50 * W and liquidation.covered_by_fund == 50 * W
    assert liquidation.deleveraged == 0
    assert collateral(chain.state, sub("alice")) == 0
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_empty_fund_deleverages_the_winning_side_at_the_bankruptcy_price() -> None:
    chain = chain_with({"alice": 100 * W, "bob": 10_000 * W}, insurance=0, **NO_FEES)
    open_pair(chain, "alice", "bob", 10 * W)
    result = chain.block([chain.prices({PERP: 85 * W})])
    [liquidation] = [e for e in result.events if isinstance(e, Liquidated)]
    assert liquidation.covered_by_fund == 0 and liquidation.deleveraged == 50 * W
    [adl] = [e for e in result.events if isinstance(e, Deleveraged)]
    assert (adl.counterparty, adl.quantity, adl.price) == (sub("bob"), 10 * W, 85 * W)
    assert adl.loss == 50 * W
    state = chain.state
    assert collateral(state, sub("alice")) == 0
    # Bob bought back his 10 short at 85 + 50/10 = 90, alice's bankruptcy price:
    # 10,000 + 1,000 (sold at 100) - 900.
    assert size(state, sub("bob"), PERP) == 0
    assert collateral(state, sub("bob")) == 10_100 * W
    assert state.market_states[PERP].open_lots == 0
    assert conserved_total(state) == state.ledger.net_deposits


def test_admin_can_relist_nothing_but_liquidation_keeps_the_book_clean() -> None:
    chain = chain_with({"alice": 100 * W, "bob": 10_000 * W}, insurance=1_000 * W, **NO_FEES)
    open_pair(chain, "alice", "bob", 9 * W)
    chain.block([chain.order("alice", PERP, SELL, 150 * W, 9 * W, reduce_only=True)])
    assert len(chain.state.books[PERP]) == 1
    chain.block([chain.prices({PERP: 85 * W})])
    # Alice's order is gone; what rests is the fund's order selling what it took over.
    [left] = chain.state.books[PERP].values()
    assert left.subaccount == INSURANCE_FUND and left.liquidation
    assert chain.state.subaccounts[sub("alice")].open_orders == 0
    assert ADMIN.address == chain.state.config.admin
