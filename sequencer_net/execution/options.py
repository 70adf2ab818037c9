"""European options: Black-Scholes marks and values, intrinsic value.

An option market's oracle feed carries the underlying spot and the implied
volatility; the risk-free rate is a market parameter. The mark is the
Black-Scholes price (options_pricing, the code `seqnet price option` uses) at
the block timestamp, computed once per (market, spot, vol, rate, time) and
cached for the block (scenario margin revalues through the same cache), the
pricing itself memoized across blocks (`black_scholes_price`). At or after
expiry the mark is the intrinsic value.

Marking is total by construction: listing bounds the tenor
(limits.MAX_OPTION_TENOR_SECONDS) and the oracle requires a positive volatility
for an option market, and the mark clamps the time to expiry to that tenor
again, so the pricing domain (|r T| <= 1000, positive spot, strike, vol) holds
for every state; an input outside it marks at intrinsic value.
"""

from __future__ import annotations

import functools

from .limits import BLACK_SCHOLES_MEMO_ENTRIES
from .options_pricing import (
    InvalidOptionParameters,
    OptionType,
    black_scholes_value,
    years_from_seconds,
)
from .records import MarketParams, MarketState, OptionKind, OptionTerms
from .state import StateWriter, option_seconds_left


def intrinsic_value(terms: OptionTerms, spot: int) -> int:
    """max(S - K, 0) for a call, max(K - S, 0) for a put (wad, exact)."""
    if terms.option_kind == OptionKind.CALL:
        return max(spot - terms.strike, 0)
    return max(terms.strike - spot, 0)


def option_mark(w: StateWriter, market_id: int, params: MarketParams, state: MarketState) -> int:
    """Mark price of one unit (wad): Black-Scholes before expiry, intrinsic at or after."""
    return option_value(w, market_id, params, state.oracle_price, state.oracle_volatility)


def option_value(
    w: StateWriter, market_id: int, params: MarketParams, spot: int, volatility: int
) -> int:
    """Value of one unit (wad) at this `spot` and `volatility` and the block's time
    (`state.option_seconds_left`: the only way time enters an option's value):
    the mark at the oracle's inputs, a scenario's revaluation at shocked ones
    (option_margin.py). Cached for the block per (market, spot, vol, rate, time)."""
    terms = params.option
    assert terms is not None
    if spot <= 0:
        return 0
    remaining = option_seconds_left(params, w.timestamp)
    if remaining <= 0 or volatility <= 0 or terms.strike <= 0:
        return intrinsic_value(terms, spot)
    # The rate is in the key: governance may change it earlier in the same block.
    key = (market_id, spot, volatility, params.risk_free_rate, w.timestamp)
    cached = w.option_marks.get(key)
    if cached is not None:
        return cached
    option_type = OptionType.CALL if terms.option_kind == OptionKind.CALL else OptionType.PUT
    years = years_from_seconds(remaining)
    price = black_scholes_price(
        option_type, spot, terms.strike, years, params.risk_free_rate, volatility
    )
    if price is None:  # unreachable after the clamps above; never a crash
        return intrinsic_value(terms, spot)
    w.option_marks[key] = price
    return price


@functools.lru_cache(maxsize=BLACK_SCHOLES_MEMO_ENTRIES)
def black_scholes_price(
    option_type: OptionType, spot: int, strike: int, years: int, rate: int, volatility: int
) -> int | None:
    """max(Black-Scholes price, 0), or None outside the pricing domain.

    Memoized across blocks: a pure function of its integer arguments, so a
    remembered value is the value, whichever blocks computed it first, and
    every node gets the same numbers with or without the memo. The blocks of
    one second with the same oracle inputs re-value an option at the same
    arguments (scenario grids, orders' initial margin, marks); the memo lets
    them share one evaluation. Bounded (least recently used out)."""
    try:
        price = black_scholes_value(option_type, spot, strike, years, rate, volatility)
    except InvalidOptionParameters:
        return None
    return max(price, 0)
