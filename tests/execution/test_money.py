"""Money that is not there: option credit, funding moved by dust, funding after a gap."""

from __future__ import annotations

from sequencer_net.execution.funding import funding_per_lot
from sequencer_net.execution.options import option_value
from sequencer_net.execution.positions import pending_charge
from sequencer_net.execution.receipts import FundingApplied
from sequencer_net.execution.records import OptionKind
from sequencer_net.execution.state import StateWriter
from sequencer_net.execution.transactions import CancelOrder, Withdraw
from tests.execution.execution_harness import (
    BUY,
    GENESIS_TIME,
    IOC,
    SELL,
    Chain,
    W,
    collateral,
    conserved_total,
    key,
    make_genesis,
    option_params,
    perp_params,
    position,
    size,
    sub,
)

CALL = 10
PERP = 1
EXPIRY = GENESIS_TIME + 30 * 86_400
VOL = 8 * W // 10


def option_chain() -> Chain:
    chain = Chain(
        make_genesis(
            {"alice": 10 * W, "bob": 10_000 * W},
            insurance=1_000 * W,
            markets=[(CALL, option_params(OptionKind.CALL, 100 * W, EXPIRY))],
        )
    )
    chain.block([chain.prices({CALL: 100 * W}, vol=VOL)])
    return chain


def withdraw(chain: Chain, name: str, amount: int) -> Withdraw:
    return Withdraw(0, amount, key(name).address)


def test_deposit_10_buy_a_call_at_5_cannot_withdraw_10_4() -> None:
    chain = option_chain()
    bought = chain.block(
        [chain.order("alice", CALL, BUY, 5 * W, W), chain.order("bob", CALL, SELL, 5 * W, W)]
    )
    assert all(r.success for r in bought.receipts), bought.receipts
    assert size(chain.state, sub("alice"), CALL) == W
    assert collateral(chain.state, sub("alice")) == 5 * W  # the premium, paid in full
    result = chain.block([chain.tx(key("alice"), withdraw(chain, "alice", 104 * W // 10))])
    assert result.receipts[0].error == "InsufficientMargin"
    assert collateral(chain.state, sub("alice")) == 5 * W


def worst_initial_value(chain: Chain) -> int:
    """The call's value at the next block in the initial grid's worst scenario
    for a long: spot -15%, volatility -10 points."""
    state = chain.state
    at_next_block = StateWriter(state, state.height + 1, chain.now + 1)
    params = state.market_params[CALL]
    return option_value(at_next_block, CALL, params, 85 * W, VOL - W // 10)


def test_withdrawable_is_cash_plus_the_calls_worst_value_to_the_wei() -> None:
    chain = option_chain()
    chain.block(
        [chain.order("alice", CALL, BUY, 5 * W, W), chain.order("bob", CALL, SELL, 5 * W, W)]
    )
    # equity 5 + mark, initial requirement mark - worst: 5 + worst can leave.
    limit = 5 * W + worst_initial_value(chain)
    assert 7 * W < limit < 8 * W  # the worst value is ~2.27 of a 9.32 mark
    over = chain.block([chain.tx(key("alice"), withdraw(chain, "alice", limit + 1))])
    assert over.receipts[0].error == "InsufficientMargin"
    limit = 5 * W + worst_initial_value(chain)
    exact = chain.block([chain.tx(key("alice"), withdraw(chain, "alice", limit))])
    assert exact.receipts[0].success, exact.receipts[0]
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_option_buy_orders_reserve_their_premium_from_free_collateral() -> None:
    chain = option_chain()
    # 3 calls at 5 = 15 of premium from 10 of collateral: on credit, refused.
    too_many = chain.block([chain.order("alice", CALL, BUY, 5 * W, 3 * W)])
    assert too_many.receipts[0].error == "InsufficientMargin"
    # 2 at 5 = exactly the free collateral: accepted, and it rests (no seller).
    resting = chain.block([chain.order("alice", CALL, BUY, 5 * W, 2 * W)])
    assert resting.receipts[0].success
    held = position(chain.state, sub("alice"), CALL)
    assert held is not None and held.open_buy_premium == 10 * W
    # While it rests, the reserved premium cannot leave.
    result = chain.block([chain.tx(key("alice"), withdraw(chain, "alice", W))])
    assert result.receipts[0].error == "InsufficientMargin"
    # Half fills (at 5, the price nearest the mark): 5 paid, its reservation released.
    half = chain.block([chain.order("bob", CALL, SELL, 4 * W, W, tif=IOC)])
    assert all(r.success for r in half.receipts)
    held = position(chain.state, sub("alice"), CALL)
    assert held is not None and held.open_buy_premium == 5 * W and held.size == W
    assert collateral(chain.state, sub("alice")) == 5 * W
    # Cancelled: nothing reserved any more.
    [order_id] = chain.state.books[CALL]
    chain.block([chain.tx(key("alice"), CancelOrder(0, CALL, order_id))])
    held = position(chain.state, sub("alice"), CALL)
    assert held is not None and held.open_buy_premium == 0 and held.open_buy == 0


def test_option_market_buys_need_a_limit_price() -> None:
    chain = option_chain()
    result = chain.block([chain.order("alice", CALL, BUY, 0, W, tif=IOC)])
    assert result.receipts[0].error == "InvalidOrder"


# --- funding ---------------------------------------------------------------------


def perp_chain(**params: int) -> Chain:
    params.setdefault("funding_interval", 60)
    chain = Chain(
        make_genesis(
            {"victim": 10_000 * W, "maker": 10_000 * W, "a": 1_000 * W, "b": 1_000 * W},
            insurance=1_000 * W,
            markets=[(PERP, perp_params(**params))],
        )
    )
    chain.block([chain.prices({PERP: 100 * W})])
    opened = chain.block(
        [
            chain.prices({PERP: 100 * W}),
            chain.order("victim", PERP, BUY, 100 * W, 50 * W),
            chain.order("maker", PERP, SELL, 100 * W, 50 * W),
        ]
    )
    assert all(r.success for r in opened.receipts)
    return chain


def dust_hour(chain: Chain) -> None:
    """a and b trade 0.001 at index + 5% every block until the interval is due."""
    for _ in range(62):
        chain.block(
            [
                chain.prices({PERP: 100 * W}),
                chain.order("a", PERP, BUY, 105 * W, W // 1000, tif=IOC),
                chain.order("b", PERP, SELL, 105 * W, W // 1000, tif=IOC),
            ]
        )


def victim_owes(chain: Chain) -> int:
    state = chain.state
    held = position(state, sub("victim"), PERP)
    assert held is not None
    return pending_charge(state.market_params[PERP], state.market_states[PERP], held)


def test_dust_trades_do_not_move_funding() -> None:
    chain = perp_chain()
    dust_hour(chain)
    funding = [e for r in chain.results for e in r.events if isinstance(e, FundingApplied)]
    assert funding and all(e.per_lot == 0 for e in funding)
    assert victim_owes(chain) == 0
    market = chain.state.market_states[PERP]
    assert market.mark_price == 100 * W and market.last_trade_price == 100 * W  # the opening
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_a_counted_dust_trade_alone_moves_neither_mark_nor_funding() -> None:
    """With the minimum set to 0 the dust at 105 becomes the last trade, yet the
    premium comes from resting depth only and one market input leaves the mark
    on the index."""
    chain = perp_chain(min_premium_notional=0)
    dust_hour(chain)
    market = chain.state.market_states[PERP]
    assert market.last_trade_price == 105 * W
    assert market.mark_price == 100 * W
    assert victim_owes(chain) == 0


def test_resting_bids_above_the_index_charge_the_longs() -> None:
    chain = perp_chain()
    # maker bids 100 at 100.50 (10,050 of notional >= impact_notional 10,000) and it rests:
    # impact bid 100.50, no impact ask, premium 0.50 every second from here on.
    chain.block(
        [chain.prices({PERP: 100 * W}), chain.order("maker", PERP, BUY, 10_050 * W // 100, 100 * W)]
    )
    while not any(isinstance(e, FundingApplied) for e in chain.results[-1].events):
        chain.block([chain.prices({PERP: 100 * W})])
    # Blocks at genesis + 3 .. + 59 sampled 57 s of the 60 s interval (the block at + 60
    # applies funding first): 57 * 0.50 / 60 = 0.475 per unit, 0.000475 per lot.
    per_lot = (57 * (W // 2) // 60) * (W // 1000) // W
    assert per_lot == 475_000_000_000_000
    assert victim_owes(chain) == 50_000 * per_lot
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_a_ten_hour_gap_charges_the_last_premium_once() -> None:
    chain = perp_chain(funding_interval=3600)
    # 30 blocks with a premium of 0.50 (a resting bid of 100 at 100.50), then the chain halts.
    orders = [chain.order("maker", PERP, BUY, 10_050 * W // 100, 100 * W)]
    for _ in range(30):
        chain.block([chain.prices({PERP: 100 * W}), *orders])
        orders = []
    before = chain.state.market_states[PERP]
    per_lot = funding_per_lot(chain.state.market_params[PERP], before)
    assert per_lot > 0
    result = chain.block([chain.prices({PERP: 100 * W}, at=chain.now + 36_000)], dt=36_000)
    [funding] = [e for e in result.events if isinstance(e, FundingApplied)]
    assert funding.intervals == 10
    after = chain.state.market_states[PERP]
    assert after.long_index - before.long_index == per_lot  # once, not 10 times
    assert victim_owes(chain) == 50_000 * per_lot
    # 30 s of 0.50 in a 3,600 s interval; the rest of it and 9 more intervals: zero.
    assert per_lot == (30 * (W // 2) // 3600) * (W // 1000) // W
