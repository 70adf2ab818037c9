"""The perpetual mark price: the median of the index and two market inputs,
kept within the mark band (docs/execution.md, "Mark price").

    inputs = index                                  always
             impact mid = floor((impact bid + impact ask) / 2)
                                                    when both impact prices exist
             last trade                             MarketState.last_trade_price,
                                                    when one has been counted
    median = the middle one of the three            all three present
           = the index                              otherwise
    mark   = clamp(median, index - band, index + band),  band = floor(index * mark_band)

With two inputs (the index and one market input) the rule takes the one nearer
the index, which is the index itself: a market input moves the mark only
when the other market input agrees, and then only as far as the nearer of
the two. A dust trade never becomes the last trade
(`markets.premium_clearing_price`), and a single far trade that emptied the
book leaves no impact mid, so neither moves the mark alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from .book import Book
from .fixed_point import SCALE
from .impact import ImpactPrices, market_impact_prices
from .markets import premium_clearing_price
from .records import MarketParams, MarketState, RestingOrder


class MarkInputs(NamedTuple):
    """What a perpetual's book and auction say at the end of a block."""

    last_trade: int  # wad; 0 while no auction has reached min_premium_notional
    impact: ImpactPrices
    mark: int


def impact_mid(impact: ImpactPrices) -> int | None:
    """floor((bid + ask) / 2), or None when a side has no impact price."""
    if impact.bid is None or impact.ask is None:
        return None
    return (impact.bid + impact.ask) // 2


def perp_mark_price(
    params: MarketParams, index: int, impact: ImpactPrices, last_trade: int | None
) -> int:
    """The mark of a perpetual at `index` (see the module docstring)."""
    mid = impact_mid(impact)
    median = index
    if mid is not None and last_trade:
        median = sorted((index, mid, last_trade))[1]
    band = (index * params.mark_band) // SCALE  # floor: a narrower band, never wider
    return min(max(median, index - band), index + band)


def observe_perp(
    params: MarketParams,
    state: MarketState,
    cleared: tuple[int, int] | None,
    book: Book | Iterable[RestingOrder],
) -> MarkInputs:
    """The last trade, impact prices and mark of a perpetual at its index
    `state.oracle_price`, given this block's auction (price, volume) if it
    cleared and the resting book the auction left."""
    index = state.oracle_price
    counted = premium_clearing_price(params, cleared)
    last_trade = state.last_trade_price if counted is None else counted
    impact = market_impact_prices(params, index, book)
    return MarkInputs(last_trade, impact, perp_mark_price(params, index, impact, last_trade))
