"""Partial liquidation through the auction, the fund's takeover, deleveraging.

The worked example of docs/execution.md ("Liquidation"): alice deposits 100
and buys 10 at 100 (collateral -900). At index 94 her equity is 40 and her
maintenance 47 (5% of 940): she is below maintenance but not bankrupt.
"""

from __future__ import annotations

import pytest

from sequencer_net.execution.exceptions import InvalidMarketParams, UnknownOrder
from sequencer_net.execution.liquidation import bankruptcy_limit
from sequencer_net.execution.margin import subaccount_risk
from sequencer_net.execution.markets import check_market_params
from sequencer_net.execution.orders import apply_cancel_order
from sequencer_net.execution.receipts import (
    Deleveraged,
    FillEvent,
    Liquidated,
    LiquidationFeePaid,
    LiquidationOrderPlaced,
    OrderRemoved,
    PositionTransferred,
)
from sequencer_net.execution.state import StateWriter
from sequencer_net.execution.transactions import CancelOrder, Deposit
from tests.execution.execution_harness import (
    ADMIN,
    BUY,
    GENESIS_TIME,
    INSURANCE_FUND,
    SELL,
    Chain,
    W,
    check_engine_invariants,
    collateral,
    key,
    make_genesis,
    perp_params,
    size,
    sub,
)

PERP = 1
NO_FEES = {"maker_fee": 0, "taker_fee": 0}


def alice_below_maintenance(insurance: int = 1_000 * W, **params: int) -> Chain:
    """Alice long 10 at 100 from bob; index 94 at the last block: her order is placed."""
    chain = Chain(
        make_genesis(
            {"alice": 100 * W, "bob": 10_000 * W, "carol": 10_000 * W},
            insurance=insurance,
            markets=[(PERP, perp_params(**{**NO_FEES, **params}))],
        )
    )
    chain.block([chain.prices({PERP: 100 * W})])
    chain.block(
        [
            chain.order("alice", PERP, BUY, 100 * W, 10 * W),
            chain.order("bob", PERP, SELL, 100 * W, 10 * W),
        ]
    )
    chain.block([chain.prices({PERP: 94 * W})])
    return chain


def placed(chain: Chain) -> list[LiquidationOrderPlaced]:
    return [e for e in chain.results[-1].events if isinstance(e, LiquidationOrderPlaced)]


def test_smallest_reduction_is_ordered_at_the_bankruptcy_price() -> None:
    chain = alice_below_maintenance()
    [order] = placed(chain)
    # 40 - 0.94 k >= 0.05 * 94 * (10 - k)  <=>  k >= 1.8617...: 1,862 lots of 0.001.
    assert (order.subaccount, order.side, order.quantity) == (sub("alice"), SELL, 1_862 * W // 1000)
    # Closing 1.862 of 10 takes 18.62% of the maintenance, so 18.62% of the
    # equity: 94 - 40 * 0.1862 / 1.862 = 90, where the sale leaves her at zero.
    assert order.limit_price == 90 * W
    resting = chain.state.books[PERP][order.order_id]
    assert resting.liquidation and resting.reduce_only and resting.placed_height == 3
    assert chain.state.market_states[PERP].liquidation_orders == 1
    check_engine_invariants(chain.state)


def test_liquidation_order_fills_in_the_next_auction_without_trading_fee() -> None:
    chain = alice_below_maintenance(taker_fee=5 * W // 10_000)
    [order] = placed(chain)  # alice's own taker fee: 1.995, not 1.862
    assert order.quantity == 1_995 * W // 1000
    fund_before = collateral(chain.state, INSURANCE_FUND)
    pool_before = chain.state.ledger.fee_pool
    result = chain.block([chain.order("carol", PERP, BUY, 94 * W, 2 * W)])
    # Every price in [90, 94] clears it; the one nearest the index is 94.
    fills = {e.subaccount: e for e in result.events if isinstance(e, FillEvent)}
    assert fills[sub("alice")].price == 94 * W and fills[sub("alice")].fee == 0
    assert fills[sub("alice")].quantity == order.quantity
    [paid] = [e for e in result.events if isinstance(e, LiquidationFeePaid)]
    notional = order.quantity * 94
    assert paid.notional == notional and paid.fee == notional // 100  # 1%
    assert collateral(chain.state, INSURANCE_FUND) == fund_before + paid.fee
    assert chain.state.ledger.fee_pool == pool_before + fills[sub("carol")].fee  # carol's only
    state = chain.state
    assert size(state, sub("alice"), PERP) == 10 * W - order.quantity
    risk = subaccount_risk(StateWriter(state, state.height, chain.now), sub("alice"))
    assert risk.equity >= risk.maintenance
    assert not [e for e in result.events if isinstance(e, Liquidated)]
    assert not [o for o in state.books[PERP].values() if o.liquidation]  # IOC: gone
    assert state.market_states[PERP].liquidation_orders == 0
    check_engine_invariants(state)


def own_orders(chain: Chain, name: str) -> list[LiquidationOrderPlaced]:
    return [e for e in placed(chain) if e.subaccount == sub(name)]


def test_a_bid_below_the_bankruptcy_price_does_not_fill_it() -> None:
    chain = alice_below_maintenance()
    [first] = placed(chain)
    result = chain.block([chain.order("carol", PERP, BUY, 8_999 * W // 100, 2 * W)])
    assert not [e for e in result.events if isinstance(e, FillEvent)]
    # One auction without a fill is not the end of the market's turn: nothing
    # is taken over, and the same order is placed again, one miss counted.
    assert not [e for e in result.events if isinstance(e, Liquidated)]
    assert size(chain.state, sub("alice"), PERP) == 10 * W
    [again] = own_orders(chain, "alice")
    assert (again.quantity, again.limit_price) == (first.quantity, first.limit_price)
    assert chain.state.books[PERP][again.order_id].liquidation_misses == 1
    check_engine_invariants(chain.state)


def test_after_three_misses_the_fund_takes_only_the_slice_still_needed() -> None:
    chain = alice_below_maintenance()
    chain.block([chain.order("carol", PERP, BUY, 8_999 * W // 100, 2 * W)])  # miss 1
    chain.block([])  # miss 2: carol's bid rests at 89.99, under the limit of 90
    [order] = own_orders(chain, "alice")
    assert chain.state.books[PERP][order.order_id].liquidation_misses == 2
    fund_before = collateral(chain.state, INSURANCE_FUND)
    result = chain.block([])  # miss 3 = max_liquidation_misses
    [closed] = [e for e in result.events if isinstance(e, Liquidated)]
    assert closed.subaccount == sub("alice") and (closed.deficit, closed.covered_by_fund) == (0, 0)
    # The fund takes the 1.862 her orders were for, at the index 94: alice is
    # credited 175.028 and pays 1% of it, 1.75028; she keeps 8.138.
    [moved] = [e for e in result.events if isinstance(e, PositionTransferred)]
    assert (moved.subaccount, moved.size, moved.price) == (sub("alice"), 1_862 * W // 1000, 94 * W)
    assert closed.fee == 175_028 * W // 100_000
    assert size(chain.state, sub("alice"), PERP) == 8_138 * W // 1000
    assert size(chain.state, INSURANCE_FUND, PERP) == 1_862 * W // 1000
    assert collateral(chain.state, INSURANCE_FUND) == fund_before - 175_028 * W // 1000 + closed.fee
    state = chain.state
    risk = subaccount_risk(StateWriter(state, state.height, chain.now), sub("alice"))
    assert 0 < risk.maintenance <= risk.equity
    assert not own_orders(chain, "alice")  # back above maintenance: no order
    [offer] = placed(chain)  # the fund offers what it took
    assert (offer.subaccount, offer.quantity) == (INSURANCE_FUND, 1_862 * W // 1000)
    check_engine_invariants(state)


def test_any_fill_restarts_the_count_of_misses() -> None:
    chain = alice_below_maintenance()
    chain.block([])  # miss 1
    chain.block([chain.order("carol", PERP, BUY, 94 * W, W // 2)])  # half a unit fills
    [order] = own_orders(chain, "alice")
    assert order.quantity < 1_862 * W // 1000  # what is still needed
    assert chain.state.books[PERP][order.order_id].liquidation_misses == 0
    chain.block([])
    chain.block([])  # two misses since the fill: still the market's turn
    assert not [e for e in chain.results[-1].events if isinstance(e, Liquidated)]
    assert size(chain.state, INSURANCE_FUND, PERP) == 0
    check_engine_invariants(chain.state)


def test_one_allowed_miss_hands_the_slice_over_at_once() -> None:
    chain = alice_below_maintenance(max_liquidation_misses=1)
    result = chain.block([])
    [moved] = [e for e in result.events if isinstance(e, PositionTransferred)]
    assert moved.size == 1_862 * W // 1000
    assert size(chain.state, sub("alice"), PERP) == 8_138 * W // 1000
    check_engine_invariants(chain.state)


def test_a_bankrupt_account_is_taken_over_whole_without_waiting() -> None:
    chain = alice_below_maintenance()
    chain.block([chain.prices({PERP: 85 * W})])  # equity -50 after one miss
    [closed] = [e for e in chain.results[-1].events if isinstance(e, Liquidated)]
    assert closed.subaccount == sub("alice") and closed.covered_by_fund == 50 * W
    assert size(chain.state, INSURANCE_FUND, PERP) == 10 * W
    assert size(chain.state, sub("alice"), PERP) == 0


@pytest.mark.parametrize("misses", [0, 101])
def test_the_allowed_misses_are_bounded(misses: int) -> None:
    with pytest.raises(InvalidMarketParams, match="max_liquidation_misses"):
        check_market_params(perp_params(max_liquidation_misses=misses), GENESIS_TIME)
    assert perp_params().max_liquidation_misses == 3


def test_the_per_block_cap_trims_liquidation_orders() -> None:
    chain = alice_below_maintenance(max_liquidation_notional=100 * W)
    [order] = placed(chain)
    # 0.001 * 94 = 0.094 per lot: 100 / 0.094 -> 1,063 lots.
    assert order.quantity == 1_063 * W // 1000


def test_the_cap_must_be_positive() -> None:
    with pytest.raises(InvalidMarketParams):
        check_market_params(perp_params(max_liquidation_notional=0), GENESIS_TIME)


def test_the_owner_cannot_cancel_a_liquidation_order() -> None:
    chain = alice_below_maintenance()
    [order] = placed(chain)
    w = StateWriter(chain.state, chain.state.height + 1, chain.now + 1)
    with pytest.raises(UnknownOrder, match="liquidation order"):
        apply_cancel_order(w, key("alice").address, CancelOrder(0, PERP, order.order_id))


def test_an_account_that_recovered_keeps_its_position() -> None:
    chain = alice_below_maintenance()
    [order] = placed(chain)
    result = chain.block(
        [
            chain.tx(ADMIN, Deposit(sub("alice"), 50 * W)),
            chain.order("carol", PERP, BUY, 94 * W, 2 * W),
        ]
    )
    assert OrderRemoved(PERP, order.order_id, "recovered") in result.events
    assert size(chain.state, sub("alice"), PERP) == 10 * W
    check_engine_invariants(chain.state)


def test_bankruptcy_limit_rounds_away_from_the_accounts_loss() -> None:
    params = perp_params()  # tick 0.01
    # Long: 94 - 40 * 1 / (47 * 0.003) = 94 - 283.68 < 0: the lowest tick.
    assert bankruptcy_limit(params, 94 * W, 3 * W // 1000, W, 40 * W, 47 * W) == W // 100
    # Long: 94 - 10/3 = 90.666..: a sell rounds up to 90.67.
    assert bankruptcy_limit(params, 94 * W, 3 * W, 47 * W, 10 * W, 47 * W) == 9_067 * W // 100
    # Short: 94 + 10/3 = 97.333..: a buy rounds down to 97.33.
    assert bankruptcy_limit(params, 94 * W, -3 * W, 47 * W, 10 * W, 47 * W) == 9_733 * W // 100


def test_deleveraging_closes_the_most_profitable_most_leveraged_first() -> None:
    chain = Chain(
        make_genesis(
            {"alice": 50 * W, "eve": 10_000 * W, "bob": 10_000 * W, "carol": 200 * W},
            insurance=0,
            markets=[(PERP, perp_params(**NO_FEES))],
        )
    )
    chain.block([chain.prices({PERP: 100 * W})])
    chain.block(
        [
            chain.order("alice", PERP, BUY, 100 * W, 5 * W),
            chain.order("eve", PERP, BUY, 100 * W, 5 * W),
            chain.order("bob", PERP, SELL, 100 * W, 5 * W),
            chain.order("carol", PERP, SELL, 100 * W, 5 * W),
        ]
    )
    assert size(chain.state, sub("carol"), PERP) == -5 * W
    # Index 89: alice's equity is 50 - 55 = -5 and the fund is empty. Bob and
    # carol each made 55 on their short; carol on 255 of equity, bob on 10,055:
    # carol is more leveraged and goes first, and covers all of alice's 5.
    result = chain.block([chain.prices({PERP: 89 * W})])
    [closed] = [e for e in result.events if isinstance(e, Liquidated)]
    assert closed.deleveraged == 5 * W and closed.covered_by_fund == 0
    [adl] = [e for e in result.events if isinstance(e, Deleveraged)]
    assert (adl.counterparty, adl.quantity, adl.price, adl.loss) == (
        sub("carol"),
        5 * W,
        89 * W,
        5 * W,
    )
    state = chain.state
    assert size(state, sub("carol"), PERP) == 0 and size(state, sub("bob"), PERP) == -5 * W
    assert collateral(state, sub("carol")) == 200 * W + 500 * W - 445 * W - 5 * W
    assert collateral(state, sub("alice")) == 0
    check_engine_invariants(state)


def test_the_fund_sells_what_it_took_over() -> None:
    chain = alice_below_maintenance()
    chain.block([chain.prices({PERP: 85 * W})])  # alice's order: no bid; then bankrupt
    assert size(chain.state, INSURANCE_FUND, PERP) == 10 * W
    [order] = placed(chain)
    # The fund offers all 10 at the index - 5% band: 85 - 4.25 = 80.75.
    assert (order.subaccount, order.side, order.quantity) == (INSURANCE_FUND, SELL, 10 * W)
    assert order.limit_price == 8_075 * W // 100
    chain.block([chain.prices({PERP: 85 * W}), chain.order("carol", PERP, BUY, 85 * W, 10 * W)])
    assert size(chain.state, INSURANCE_FUND, PERP) == 0
    assert size(chain.state, sub("carol"), PERP) == 10 * W
    check_engine_invariants(chain.state)


def test_the_cap_defaults_to_a_million_units_of_quote() -> None:
    assert perp_params().max_liquidation_notional == 1_000_000 * W


def test_the_fund_never_sells_below_its_own_bankruptcy_price() -> None:
    chain = alice_below_maintenance(insurance=60 * W)
    chain.block([chain.prices({PERP: 85 * W})])  # the fund pays alice's 50, keeps 10
    [order] = placed(chain)
    # The band would allow 80.75, but selling 10 below 85 - 10/10 = 84 would
    # leave the fund negative.
    assert (order.subaccount, order.limit_price) == (INSURANCE_FUND, 84 * W)


def test_deleveraging_never_makes_a_counterparty_bankrupt() -> None:
    chain = Chain(
        make_genesis(
            {"alice": 100 * W, "bob": 10_000 * W, "carol": 40 * W},
            insurance=0,
            markets=[(PERP, perp_params(**NO_FEES))],
        )
    )
    chain.block([chain.prices({PERP: 100 * W})])
    chain.block(
        [
            chain.order("alice", PERP, BUY, 100 * W, 10 * W),
            chain.order("bob", PERP, SELL, 100 * W, 10 * W),
        ]
    )
    # The index jumps to 60 while carol shorts 5 to bob: alice is 300 under
    # water, and both shorts are needed to close her 10.
    result = chain.block(
        [
            chain.prices({PERP: 60 * W}),
            chain.order("bob", PERP, BUY, 60 * W, 5 * W),
            chain.order("carol", PERP, SELL, 60 * W, 5 * W),
        ]
    )
    adl = {e.counterparty: e for e in result.events if isinstance(e, Deleveraged)}
    # Pro rata each owes 150; carol has only her 40 of equity (she just sold
    # at 60, no profit), so bob, ranked first (200 of profit), pays the other 110.
    assert adl[sub("carol")].loss == 40 * W
    assert adl[sub("bob")].loss == 260 * W
    [closed] = [e for e in result.events if isinstance(e, Liquidated)]
    assert closed.deleveraged == 300 * W
    assert collateral(chain.state, sub("carol")) == 0
    assert collateral(chain.state, INSURANCE_FUND) == 0
    check_engine_invariants(chain.state)


def test_the_smallest_reduction_starts_with_the_largest_requirement() -> None:
    other = 2
    chain = Chain(
        make_genesis(
            {"alice": 100 * W, "bob": 10_000 * W},
            insurance=1_000 * W,
            markets=[(PERP, perp_params(**NO_FEES)), (other, perp_params(**NO_FEES))],
        )
    )
    chain.block([chain.prices({PERP: 100 * W, other: 100 * W})])
    chain.block(
        [
            chain.order("alice", PERP, BUY, 100 * W, 4 * W),
            chain.order("bob", PERP, SELL, 100 * W, 4 * W),
            chain.order("alice", other, BUY, 100 * W, 6 * W),
            chain.order("bob", other, SELL, 100 * W, 6 * W),
        ]
    )
    result = chain.block([chain.prices({PERP: 94 * W, other: 94 * W})])
    # Equity 40 < maintenance 47 as before, now over 4 + 6: the 6 in market 2
    # carries the larger requirement, and 1.862 of it is enough.
    [order] = [e for e in result.events if isinstance(e, LiquidationOrderPlaced)]
    assert (order.market_id, order.quantity) == (other, 1_862 * W // 1000)
    assert order.limit_price == 90 * W


def test_a_fund_below_zero_is_deleveraged() -> None:
    chain = alice_below_maintenance(insurance=60 * W)
    chain.block([chain.prices({PERP: 85 * W})])  # the fund pays 50, holds the 10 long
    assert size(chain.state, INSURANCE_FUND, PERP) == 10 * W
    # Nobody bids at the fund's 84; at 80 the fund's equity is 10 - 50 = -40.
    result = chain.block([chain.prices({PERP: 80 * W})])
    [closed] = [e for e in result.events if isinstance(e, Liquidated)]
    assert closed.subaccount == INSURANCE_FUND and closed.deleveraged == 40 * W
    [adl] = [e for e in result.events if isinstance(e, Deleveraged)]
    assert (adl.counterparty, adl.quantity, adl.loss) == (sub("bob"), 10 * W, 40 * W)
    assert size(chain.state, INSURANCE_FUND, PERP) == 0
    assert collateral(chain.state, INSURANCE_FUND) == 0
    check_engine_invariants(chain.state)


def test_a_deleveraged_close_out_reports_the_loss_its_chunks_left() -> None:
    """Alice's long closes in two chunks against carol's and bob's shorts at an
    index that is not a whole number of units per lot, so each chunk's value
    is floored: the chunks leave her a unit more loss than her equity at the
    index said. The event's deficit is that loss, all of it borne by the
    counterparties, and no part of it is reported twice."""
    chain = Chain(
        make_genesis(
            {"alice": 50 * W, "eve": 10_000 * W, "bob": 10_000 * W, "carol": 10_000 * W},
            insurance=0,
            markets=[(PERP, perp_params(**NO_FEES))],
        )
    )
    chain.block([chain.prices({PERP: 100 * W})])
    chain.block(
        [
            chain.order("alice", PERP, BUY, 100 * W, 5 * W),
            chain.order("bob", PERP, SELL, 100 * W, 5 * W // 2),
            chain.order("carol", PERP, SELL, 100 * W, 5 * W // 2),
        ]
    )
    result = chain.block([chain.prices({PERP: 89 * W + 1})])
    [closed] = [e for e in result.events if isinstance(e, Liquidated)]
    chunks = [e for e in result.events if isinstance(e, Deleveraged)]
    assert len(chunks) == 2 and closed.covered_by_fund == 0
    assert closed.deficit == closed.deleveraged == sum(e.loss for e in chunks)
    assert collateral(chain.state, sub("alice")) == 0
    check_engine_invariants(chain.state)
