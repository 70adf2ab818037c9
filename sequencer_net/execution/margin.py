"""Cross-margin risk of a subaccount: equity and margin requirements.

    equity = collateral
             - sum(pending charges)                       (funding, socialized loss)
             + sum(size * valuation price)                 rounded toward -inf
    perp requirement(f)   = |size| * index * f            rounded toward +inf
    option requirement(f) = 0 for longs; for shorts see options.short_option_requirement

The valuation price is the oracle index for perpetuals (so a thin auction cannot
push anyone into liquidation) and the Black-Scholes mark for options.
Maintenance uses `maintenance_margin`; initial uses `initial_margin` and the
worst case over the subaccount's open orders: per market the larger requirement
of size + open buys and size - open sells.
"""

from __future__ import annotations

from typing import NamedTuple

from .fixed_point import SCALE
from .options import option_mark, short_option_requirement
from .positions import pending_charge
from .records import MarketKind, MarketParams, MarketState
from .state import StateWriter

_SCALE_SQUARED = SCALE * SCALE


class Risk(NamedTuple):
    equity: int
    maintenance: int
    initial: int
    initial_with_orders: int


def valuation_price(
    w: StateWriter, market_id: int, params: MarketParams, state: MarketState
) -> int:
    if params.kind == MarketKind.PERPETUAL:
        return state.oracle_price
    return option_mark(w, market_id, params, state)


def requirement(params: MarketParams, state: MarketState, size: int, fraction: int) -> int:
    """Margin needed to hold `size` at `fraction` (rounded up)."""
    if size == 0:
        return 0
    if params.kind == MarketKind.PERPETUAL:
        return -((-abs(size) * state.oracle_price * fraction) // _SCALE_SQUARED)  # ceiling
    if size > 0:
        return 0
    assert params.option is not None
    return short_option_requirement(params.option, state.oracle_price, -size, fraction)


def subaccount_risk(w: StateWriter, sid: bytes) -> Risk:
    sub = w.subaccount(sid)
    equity = sub.collateral
    maintenance = initial = with_orders = 0
    for market_id in sub.markets:
        position = w.position(sid, market_id)
        params = w.params(market_id)
        state = w.market(market_id)
        assert position is not None and params is not None and state is not None
        size = position.size
        if size:
            equity -= pending_charge(params, state, position)
            price = valuation_price(w, market_id, params, state)
            equity += (size * price) // SCALE  # toward -inf: equity is never overstated
            maintenance += requirement(params, state, size, params.maintenance_margin)
            current = requirement(params, state, size, params.initial_margin)
            initial += current
        else:
            current = 0
        if position.open_buy or position.open_sell:
            current = max(
                requirement(params, state, size + position.open_buy, params.initial_margin),
                requirement(params, state, size - position.open_sell, params.initial_margin),
            )
        with_orders += current
    return Risk(equity, maintenance, initial, with_orders)


def free_collateral(w: StateWriter, sid: bytes) -> int:
    """Equity above the initial requirement including open orders (may be negative)."""
    risk = subaccount_risk(w, sid)
    return risk.equity - risk.initial_with_orders
