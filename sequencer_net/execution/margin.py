"""Cross-margin risk of a subaccount: equity and margin requirements.

    equity = collateral
             - sum(pending charges)                       (funding, socialized loss)
             + sum(size * valuation price)                 rounded toward -inf
    perp requirement(f)        = |size| * index * f        rounded toward +inf
    short option requirement(f): options.short_option_requirement
    long option requirement    = haircut * size * mark     rounded toward +inf

The valuation price is the oracle index for perpetuals (so a thin auction cannot
push anyone into liquidation) and the Black-Scholes mark for options. Perps stay
on the index rather than the mark (mark.py): the mark comes from this venue's
own book, which one account can shape for the block in which liquidation runs
(docs/execution.md, "Mark price").
Maintenance uses `maintenance_margin` and LONG_OPTION_MAINTENANCE_HAIRCUT;
initial uses `initial_margin`, LONG_OPTION_INITIAL_HAIRCUT and the worst case
over the subaccount's open orders: per perp market the larger requirement of
size + open buys and size - open sells; per option market the larger short
requirement of those two, plus the long haircut, plus the premium its open buy
orders reserve (`Position.open_buy_premium`).

Long options (docs/execution.md, "Margin"): their premium is paid in full from
free collateral (an option buy order reserves quantity * limit of it when
placed), and their mark counts toward what can be withdrawn, transferred or
used for new orders only at (1 - LONG_OPTION_INITIAL_HAIRCUT), and toward
maintenance at (1 - LONG_OPTION_MAINTENANCE_HAIRCUT). A long option is never
bought on credit, and credit drawn against one is liquidated before its value
is gone.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from .fixed_point import SCALE
from .options import option_mark, short_option_requirement
from .positions import pending_charge
from .records import MarketKind, MarketParams, MarketState, Position
from .state import StateWriter

_SCALE_SQUARED = SCALE * SCALE

LONG_OPTION_INITIAL_HAIRCUT: Final = SCALE // 2
"""50%: a long option's mark counts half toward withdrawals, transfers and new
orders. Options can lose half their value in hours; the other half stays as
the cushion the maintenance haircut keeps."""

LONG_OPTION_MAINTENANCE_HAIRCUT: Final = SCALE // 4
"""25%: an account that drew on its long options is liquidated while its
options still cover the credit by a third (0.75 / 0.5)."""


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
    """Margin needed to hold `size` at `fraction` (rounded up); 0 for a long option
    (see `long_option_haircut`)."""
    if size == 0:
        return 0
    if params.kind == MarketKind.PERPETUAL:
        return -((-abs(size) * state.oracle_price * fraction) // _SCALE_SQUARED)  # ceiling
    if size > 0:
        return 0
    assert params.option is not None
    return short_option_requirement(params.option, state.oracle_price, -size, fraction)


def long_option_haircut(size: int, mark: int, haircut: int) -> int:
    """The part of a long option position's value that does not count (rounded up)."""
    if size <= 0:
        return 0
    return -((-size * mark * haircut) // _SCALE_SQUARED)  # ceiling


def _with_orders(
    params: MarketParams, state: MarketState, position: Position, current: int, haircut: int
) -> int:
    """The initial requirement of one market with every open order assumed filled."""
    size = position.size
    if not (position.open_buy or position.open_sell or position.open_buy_premium):
        return current
    worst = max(
        requirement(params, state, size + position.open_buy, params.initial_margin),
        requirement(params, state, size - position.open_sell, params.initial_margin),
    )
    return worst + haircut + position.open_buy_premium


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
        current = haircut = 0
        if size:
            equity -= pending_charge(params, state, position)
            price = valuation_price(w, market_id, params, state)
            equity += (size * price) // SCALE  # toward -inf: equity is never overstated
            maintenance += requirement(params, state, size, params.maintenance_margin)
            current = requirement(params, state, size, params.initial_margin)
            if params.kind == MarketKind.OPTION:
                maintenance += long_option_haircut(size, price, LONG_OPTION_MAINTENANCE_HAIRCUT)
                haircut = long_option_haircut(size, price, LONG_OPTION_INITIAL_HAIRCUT)
                current += haircut
            initial += current
        with_orders += _with_orders(params, state, position, current, haircut)
    return Risk(equity, maintenance, initial, with_orders)


def free_collateral(w: StateWriter, sid: bytes) -> int:
    """Equity above the initial requirement including open orders (may be negative)."""
    risk = subaccount_risk(w, sid)
    return risk.equity - risk.initial_with_orders
