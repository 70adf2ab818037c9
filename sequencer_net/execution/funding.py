"""Perpetual funding with a cumulative per-lot index, settled lazily.

Every block, each perpetual with a fresh oracle price samples its premium
(mark - index, see markets.perp_mark_price). When a funding interval has passed,
at the start of the next block:

    k        = (now - last_funding_at) // funding_interval     whole intervals due
    premium  = premium_sum / premium_samples                    rounded toward zero
    premium  = clamp(premium, -floor(index * clamp), +floor(index * clamp))
    per_lot  = premium * lot_size / 10**18                      rounded toward zero
    long_index  += k * per_lot        (longs pay when the mark is above the index)
    short_index -= k * per_lot        (shorts receive the same amount)

No account is touched: a position settles its charge lots * (index - snapshot)
when it next changes (positions.settle_charges), and margin counts the pending
charge. Because lots held long always equal lots held short and both sides use
the same integer per_lot, funding creates or destroys nothing, exactly.
The cost is O(markets) per interval, not O(accounts) (dYdX v4 does the same).
"""

from __future__ import annotations

import msgspec

from .fixed_point import SCALE
from .markets import is_oracle_fresh, perp_mark_price
from .receipts import FundingApplied
from .records import MarketKind, MarketParams, MarketState
from .state import StateWriter


def _toward_zero(numerator: int, denominator: int) -> int:
    quotient = abs(numerator) // denominator
    return -quotient if numerator < 0 else quotient


def funding_per_lot(params: MarketParams, state: MarketState) -> int:
    """Quote one long lot pays per interval (negative: receives), from the samples."""
    if state.premium_samples == 0 or state.oracle_price == 0:
        return 0
    premium = _toward_zero(state.premium_sum, state.premium_samples)
    bound = (state.oracle_price * params.funding_clamp) // SCALE
    premium = max(-bound, min(bound, premium))
    return _toward_zero(premium * params.lot_size, SCALE)


def apply_due_funding(w: StateWriter) -> None:
    for market_id in sorted(w.market_params.live_keys()):
        params = w.params(market_id)
        state = w.market(market_id)
        assert params is not None and state is not None
        if params.kind != MarketKind.PERPETUAL:
            continue
        due = (w.timestamp - state.last_funding_at) // params.funding_interval
        if due <= 0:
            continue
        per_lot = funding_per_lot(params, state)
        charge = per_lot * due
        state = msgspec.structs.replace(
            state,
            long_index=state.long_index + charge,
            short_index=state.short_index - charge,
            premium_sum=0,
            premium_samples=0,
            last_funding_at=state.last_funding_at + due * params.funding_interval,
        )
        w.market_states.put(market_id, state)
        w.events.append(
            FundingApplied(market_id, due, per_lot, state.long_index, state.short_index)
        )


def sample_premiums(w: StateWriter) -> None:
    """Record this block's mark and premium for every live perpetual."""
    for market_id in sorted(w.market_params.live_keys()):
        params = w.params(market_id)
        state = w.market(market_id)
        assert params is not None and state is not None
        if params.kind != MarketKind.PERPETUAL or state.paused:
            continue
        if not is_oracle_fresh(params, state, w.timestamp):
            continue
        index = state.oracle_price
        mark = perp_mark_price(params, index, w.cleared_prices.get(market_id))
        w.market_states.put(
            market_id,
            msgspec.structs.replace(
                state,
                mark_price=mark,
                premium_sum=state.premium_sum + (mark - index),
                premium_samples=state.premium_samples + 1,
            ),
        )
