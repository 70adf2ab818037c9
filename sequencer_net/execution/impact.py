"""Impact prices: what trading `impact_notional` of quote against a perpetual's
resting book would pay on average (docs/execution.md, "Impact prices").

    impact bid = average price of SELLING impact_notional of quote into the
                 resting bids, best (highest) first       rounded down
    impact ask = average price of BUYING impact_notional of quote from the
                 resting asks, best (lowest) first        rounded up

The walk takes whole orders while their notional (quantity * price) fits in
what is left, and the last one fractionally, so

    average = notional / base,   base = sum(full quantities) + rest / last price

computed as one exact rational (no intermediate rounding), then rounded once
against the trader: a seller gets less, a buyer pays more. A side whose whole
notional is below `impact_notional` has no impact price (None): thin depth is
no price at all, not a bad one.

The engine caps each order's price at the mark band before walking
(`market_impact_prices`): a bid counts at most at index + floor(index *
mark_band), an ask at least at index - floor(index * mark_band). Without the
cap a single lot bid at a thousand times the index would weigh a thousand
times its size in the average; with it, an order beyond the band weighs what
the same size at the band edge would.

Pure functions over (price, quantity) pairs and over resting orders; the
result does not depend on the orders' iteration order (ties in price have the
same price, and the average only depends on the quantities taken).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from .auction import Side
from .book import Book
from .fixed_point import SCALE
from .records import MarketParams, RestingOrder


class ImpactPrices(NamedTuple):
    """Wad prices; None where the side lacks `impact_notional` of depth."""

    bid: int | None
    ask: int | None


def average_fill_price(
    levels: Iterable[tuple[int, int]], notional: int, *, round_up: bool
) -> int | None:
    """The average price of trading `notional` (wad quote) against `levels`,
    (price, quantity) pairs in wad, best first; None if they hold less.

    Exact rule: with Q the quantity of the orders taken whole and R the quote
    still to trade (in wad * wad) when the order at price p covers it,
    average = notional * SCALE * p / (Q * p + R), rounded up (`round_up`, a
    buyer's price) or down (a seller's)."""
    if notional <= 0:
        return None
    remaining = notional * SCALE  # wad * wad, the unit of quantity * price
    taken = 0
    for price, quantity in levels:
        if price <= 0 or quantity <= 0:
            continue
        level = quantity * price
        if level >= remaining:
            numerator = notional * SCALE * price
            denominator = taken * price + remaining
            if round_up:
                return -(-numerator // denominator)
            return numerator // denominator
        remaining -= level
        taken += quantity
    return None


def book_impact_prices(
    orders: Iterable[RestingOrder],
    notional: int,
    *,
    highest_bid: int | None = None,
    lowest_ask: int | None = None,
) -> ImpactPrices:
    """Impact bid and ask of resting orders. A bid's price counts as at most
    `highest_bid`, an ask's as at least `lowest_ask` (None: as placed)."""
    bids: list[tuple[int, int]] = []
    asks: list[tuple[int, int]] = []
    for order in orders:
        if order.limit_price <= 0 or order.quantity <= 0:
            continue  # market orders never rest; nothing to walk
        price = order.limit_price
        if order.side == Side.BUY:
            bids.append((price if highest_bid is None else min(price, highest_bid), order.quantity))
        elif order.side == Side.SELL:
            asks.append((price if lowest_ask is None else max(price, lowest_ask), order.quantity))
    bids.sort(key=lambda level: -level[0])
    asks.sort(key=lambda level: level[0])
    return ImpactPrices(
        average_fill_price(bids, notional, round_up=False),
        average_fill_price(asks, notional, round_up=True),
    )


def market_impact_prices(
    params: MarketParams, index: int, orders: Book | Iterable[RestingOrder]
) -> ImpactPrices:
    """The perpetual's impact prices at `params.impact_notional`, each order's
    price capped at the mark band around `index` (floor of index * mark_band).

    From a `Book`, the walk goes over its price levels from the best one and
    stops where the notional is reached. Orders at one price (or capped to one
    price) taken one by one or as one level give the same average: the walk
    ends inside a level exactly where it would end inside its last order."""
    band = (index * params.mark_band) // SCALE  # floor: a narrower band, never wider
    highest_bid, lowest_ask = index + band, index - band
    if not isinstance(orders, Book):
        return book_impact_prices(
            orders, params.impact_notional, highest_bid=highest_bid, lowest_ask=lowest_ask
        )
    bids = ((min(price, highest_bid), total) for price, total in orders.bid_levels())
    asks = ((max(price, lowest_ask), total) for price, total in orders.ask_levels())
    return ImpactPrices(
        average_fill_price(bids, params.impact_notional, round_up=False),
        average_fill_price(asks, params.impact_notional, round_up=True),
    )
