"""European options: Black-Scholes marks, margin of a trade, cash settlement at expiry.

Option margin by scenario grid in detail: test_option_margin.py; the settlement
price average: test_option_settlement.py."""

from __future__ import annotations

import msgspec

from sequencer_net.execution.margin import subaccount_risk
from sequencer_net.execution.options import intrinsic_value, option_mark
from sequencer_net.execution.options_pricing import OptionType, black_scholes, years_from_seconds
from sequencer_net.execution.receipts import OptionSettled
from sequencer_net.execution.records import OptionKind
from sequencer_net.execution.state import StateWriter
from tests.execution.execution_harness import (
    BUY,
    GENESIS_TIME,
    SELL,
    Chain,
    W,
    collateral,
    conserved_total,
    make_genesis,
    option_params,
    size,
    sub,
)

CALL_ID, PUT_ID = 10, 11
EXPIRY = GENESIS_TIME + 30 * 86_400
VOL = 8 * W // 10


def options_chain() -> Chain:
    chain = Chain(
        make_genesis(
            {"alice": 10_000 * W, "bob": 10_000 * W},
            insurance=1_000 * W,
            markets=[
                (CALL_ID, option_params(OptionKind.CALL, 100 * W, EXPIRY)),
                (PUT_ID, option_params(OptionKind.PUT, 100 * W, EXPIRY)),
            ],
        )
    )
    chain.block([chain.prices({CALL_ID: 100 * W, PUT_ID: 100 * W}, vol=VOL)])
    return chain


def test_mark_is_the_black_scholes_price_from_oracle_spot_vol_and_rate() -> None:
    chain = options_chain()
    state = chain.state
    w = StateWriter(state, state.height, state.block.timestamp)
    params = state.market_params[CALL_ID]
    mark = option_mark(w, CALL_ID, params, state.market_states[CALL_ID])
    expected = black_scholes(
        OptionType.CALL,
        100 * W,
        100 * W,
        years_from_seconds(EXPIRY - state.block.timestamp),
        params.risk_free_rate,
        VOL,
    ).price
    assert mark == expected
    assert 8 * W < mark < 11 * W  # ATM 30-day call at 80% vol is about 9.4


def test_the_mark_cache_sees_a_rate_changed_earlier_in_the_same_block() -> None:
    chain = options_chain()
    state = chain.state
    w = StateWriter(state, state.height, state.block.timestamp)
    params = state.market_params[CALL_ID]
    before = option_mark(w, CALL_ID, params, state.market_states[CALL_ID])
    higher = msgspec.structs.replace(params, risk_free_rate=W // 2)
    after = option_mark(w, CALL_ID, higher, state.market_states[CALL_ID])
    years = years_from_seconds(EXPIRY - state.block.timestamp)
    assert after == black_scholes(OptionType.CALL, 100 * W, 100 * W, years, W // 2, VOL).price
    assert after > before


def test_buying_and_selling_an_option_moves_premium_and_margins_the_short() -> None:
    chain = options_chain()
    result = chain.block(
        [
            chain.order("alice", CALL_ID, BUY, 10 * W, 10 * W),
            chain.order("bob", CALL_ID, SELL, 9 * W, 10 * W),
        ]
    )
    assert all(r.success for r in result.receipts), result.receipts
    assert size(chain.state, sub("alice"), CALL_ID) == 10 * W
    paid = 10_000 * W - collateral(chain.state, sub("alice"))
    assert collateral(chain.state, sub("bob")) == 10_000 * W + paid
    state = chain.state
    w = StateWriter(state, state.height, state.block.timestamp)
    mark = option_mark(w, CALL_ID, state.market_params[CALL_ID], state.market_states[CALL_ID])
    years = years_from_seconds(EXPIRY - state.block.timestamp)
    rate = state.market_params[CALL_ID].risk_free_rate

    def value(spot: int, vol: int) -> int:
        return black_scholes(OptionType.CALL, spot, 100 * W, years, rate, vol).price

    # The short needs its loss at spot +8%, vol +5 points (maintenance grid).
    bob = subaccount_risk(w, sub("bob"))
    assert bob.maintenance == 10 * (value(108 * W, VOL + 5 * W // 100) - mark)
    # The long needs its loss at spot -8%, vol -5 points: less than its mark.
    alice = subaccount_risk(w, sub("alice"))
    assert alice.maintenance == 10 * (mark - value(92 * W, VOL - 5 * W // 100))
    assert alice.initial == 10 * (mark - value(85 * W, VOL - 10 * W // 100)) < 10 * mark


def test_expiry_settles_in_cash_at_the_oracle_price_rounding_payouts_down() -> None:
    chain = options_chain()
    chain.block(
        [
            chain.order("alice", PUT_ID, BUY, 5 * W, 3 * W),
            chain.order("bob", PUT_ID, SELL, 5 * W, 3 * W),
        ]
    )
    alice_before = collateral(chain.state, sub("alice"))
    bob_before = collateral(chain.state, sub("bob"))
    spot = 9_012_345_678_901_234_567_8  # 90.123...: intrinsic has wad dust
    chain.block([], dt=EXPIRY - chain.now)  # at expiry, no price yet: not settled
    assert chain.state.market_states[PUT_ID].settlement_price == 0
    result = chain.block([chain.prices({PUT_ID: spot}, vol=VOL, at=EXPIRY + 1)])
    [settled] = [e for e in result.events if isinstance(e, OptionSettled)]
    lot = chain.state.market_params[PUT_ID].lot_size
    terms = chain.state.market_params[PUT_ID].option
    assert terms is not None
    per_lot = intrinsic_value(terms, spot) * lot // W
    assert settled.payout_per_lot == per_lot
    assert intrinsic_value(terms, spot) * lot % W != 0  # the rounding really happened
    lots = 3 * W // lot
    assert collateral(chain.state, sub("alice")) == alice_before + lots * per_lot
    assert collateral(chain.state, sub("bob")) == bob_before - lots * per_lot
    assert size(chain.state, sub("alice"), PUT_ID) == 0
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits
    late = chain.block([chain.order("alice", PUT_ID, BUY, 5 * W, W)])
    assert late.receipts[0].error == "MarketNotTrading"
