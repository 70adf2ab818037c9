"""Per-market uniform-price batch auction: one clearing price per market per block.

All orders for a market in one block clear at one uniform price (a frequent
batch auction), so that the order of transactions inside the block carries no
advantage. The pitfall this module avoids: a clearing search that tries only
the submitted limit prices can pick a different price than the stated rule when
a range of prices maximizes volume. Here every
price on the tick grid is a candidate; the search walks the constant pieces of the
demand and supply curves instead of the grid, so it costs O(N log N).

The function is pure and scale-agnostic: prices and quantities are plain integers
on a grid (`tick_size`, `lot_size`); the engine passes wad-scaled values
(10**18 is one unit). No floating point is used anywhere; every division below is
a floor division of non-negative integers and says so. The result depends only on
the set of orders, never on the order of the input sequence: orders are sorted by
`order_id` before anything else, and per-price totals are sums.

The rule is written out in `clear_batch_auction` and in the "Batch auction"
section of the execution docs.
"""

from __future__ import annotations

import enum
from bisect import insort
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from operator import attrgetter

from consensus.crypto import keccak256

__all__ = [
    "ORDER_ID_BYTES",
    "AuctionOrder",
    "ClearingResult",
    "Fill",
    "InvalidAuctionInput",
    "Side",
    "clear_batch_auction",
    "clear_levels",
    "round_to_tick",
]

ORDER_ID_BYTES = 32


class Side(enum.IntEnum):
    BUY = 0
    SELL = 1


@dataclass(frozen=True, slots=True)
class AuctionOrder:
    """One order in one market's batch.

    `order_id` is 32 bytes, unique in the batch, and the deterministic sort key.
    `limit_price` is None for a market order (accepts any price), else a positive
    multiple of the tick size. `quantity` is a positive multiple of the lot size.
    `arrival` orders equal pro-rata remainders: lower arrived first and wins (the
    engine passes the height the order was placed at).
    """

    order_id: bytes
    side: Side
    limit_price: int | None
    quantity: int
    arrival: int = 0


@dataclass(frozen=True, slots=True)
class Fill:
    """The quantity (a positive multiple of the lot size) one order trades."""

    order_id: bytes
    quantity: int


@dataclass(frozen=True, slots=True)
class ClearingResult:
    """The outcome of one auction.

    `price` is None when nothing crosses (then `volume` is 0 and `fills` empty).
    `volume` is the matched quantity on each side. `fills` holds only orders with a
    positive fill, sorted by `order_id`.
    """

    price: int | None
    volume: int
    fills: tuple[Fill, ...]


class InvalidAuctionInput(ValueError):
    """The batch or the market parameters break a precondition of the auction."""


def round_to_tick(price: int, tick_size: int) -> int:
    """The positive grid price nearest to `price`; a tie goes to the lower price.

    This is the grid point closest to `price` under the auction's tie-break
    ("closest to the reference, then lower"). A price below half a tick maps to
    `tick_size`, the lowest positive grid price. Rounding: half down.
    """
    ticks, rest = divmod(price, tick_size)  # floor division, price >= 0
    if 2 * rest > tick_size:
        ticks += 1
    return max(ticks, 1) * tick_size


def clear_batch_auction(
    orders: Sequence[AuctionOrder],
    *,
    tick_size: int,
    lot_size: int,
    reference_price: int | None,
    tie_salt: bytes = b"",
) -> ClearingResult:
    """Clear one market's batch at a single uniform price.

    Definitions, for a grid price p (a positive multiple of `tick_size`):
      D(p) = quantity of market buys + quantity of limit buys with limit >= p
      S(p) = quantity of market sells + quantity of limit sells with limit <= p
      V(p) = min(D(p), S(p)), the volume that can trade at p
      imbalance(p) = |D(p) - S(p)|

    Candidate prices are all grid prices from the lowest to the highest of the
    submitted limit prices and the reference price rounded to the grid (half down,
    `round_to_tick`). Every grid price in that range is a candidate, not only the
    submitted limits. V reaches its maximum over the whole grid inside this range,
    so restricting the range changes only the tie-breaks. Without the restriction, a
    market sell facing one limit buy with no reference price would clear at one tick.

    Price rule, applied in order:
      1. Maximize V(p). If the maximum is 0, nothing trades (price None).
      2. Among volume maximizers, minimize imbalance(p).
      3. Then minimize |p - reference_price| (skipped when the reference is None).
      4. Then take the lower price.
    With no limit orders, the only candidate is the rounded reference price, so
    crossing market orders trade there. With no reference either, nothing trades.

    Fills at the clearing price p with volume V, on each side separately: eligible
    orders are the market orders and the limits at p or better. Eligible orders are
    ranked by aggressiveness in levels: market orders first (they accept any price,
    so they are strictly more aggressive than a limit at exactly p), then limit
    levels from the best limit down to p. Levels fill completely in that order until
    the next level no longer fits in what is left of V; that marginal level shares
    the rest R pro-rata to quantity. Each share is floor(R * q ÷ (Q * lot)) lots,
    rounded down to the lot, where Q is the marginal level's total; the lots left
    over go one each to the marginal orders by largest remainder
    (R * q mod Q * lot), then lower `arrival`, then ascending
    keccak256(tie_salt || order_id) (ascending `order_id` when `tie_salt` is
    empty). Fewer lots are left over than there are marginal orders with a
    remainder, so no order gets two and nobody passes its quantity. Orders behind
    the marginal level get nothing. On the short side
    (or both sides when D(p) = S(p)) this fills every eligible order completely.
    Usually the marginal level is p itself; when no order sits exactly at p, it is
    the least aggressive level that still trades.

    Guarantees: buy fills and sell fills each sum to `volume`; no order fills more
    than its quantity; every fill is a multiple of `lot_size`; no order trades at a
    price worse than its limit; the result does not depend on the order of `orders`.

    Raises InvalidAuctionInput for a tick or lot size that is not a positive int, a
    reference price that is not a positive int or None, or an order with a bad
    type, an order id that is not 32 bytes or is a duplicate, a side that is not a
    `Side`, a limit price that is not a positive multiple of the tick, or a
    quantity that is not a positive multiple of the lot.

    Cost: O(N log N) for N orders (one sort by id, one sort of distinct prices).
    """
    _check_market_parameters(tick_size, lot_size, reference_price)
    book = _build_book(orders, tick_size, lot_size)
    return _clear(book, tick_size, lot_size, reference_price, tie_salt)


def _clear(
    book: _Book, tick_size: int, lot_size: int, reference_price: int | None, tie_salt: bytes
) -> ClearingResult:
    """The clearing price, volume and fills of a validated book."""
    choice = _choose_price(book, tick_size, reference_price)
    if choice is None:
        return ClearingResult(price=None, volume=0, fills=())
    price, volume = choice
    return ClearingResult(
        price=price,
        volume=volume,
        fills=_allocate_fills(book, price, volume, lot_size, tie_salt),
    )


# --- validation and aggregation --------------------------------------------------


def _is_int(value: object) -> bool:
    # bool is an int subclass; a True quantity is a bug, not a quantity of one.
    return type(value) is int


def _check_market_parameters(tick_size: int, lot_size: int, reference_price: int | None) -> None:
    if not _is_int(tick_size) or tick_size <= 0:
        raise InvalidAuctionInput(f"tick_size must be a positive int, got {tick_size!r}")
    if not _is_int(lot_size) or lot_size <= 0:
        raise InvalidAuctionInput(f"lot_size must be a positive int, got {lot_size!r}")
    if reference_price is not None and (not _is_int(reference_price) or reference_price <= 0):
        raise InvalidAuctionInput(
            f"reference_price must be a positive int or None, got {reference_price!r}"
        )


@dataclass(frozen=True, slots=True)
class _Book:
    """Per-price totals per side, and the orders at each price.

    `members(side, limit)` lists the orders of that side at that limit (None:
    the market orders), ascending by order id.
    """

    market_buy: int
    market_sell: int
    buy_at: Mapping[int, int]  # limit price -> total limit-buy quantity at that price
    sell_at: Mapping[int, int]  # limit price -> total limit-sell quantity at that price
    limit_prices: list[int]  # distinct limit prices of both sides, ascending
    members: Callable[[Side, int | None], Sequence[AuctionOrder]]


def _check_order(order: object, tick_size: int, lot_size: int) -> None:
    if not isinstance(order, AuctionOrder):
        raise InvalidAuctionInput(f"not an AuctionOrder: {order!r}")
    order_id = order.order_id
    if type(order_id) is not bytes or len(order_id) != ORDER_ID_BYTES:
        raise InvalidAuctionInput(f"order_id must be {ORDER_ID_BYTES} bytes: {order_id!r}")
    if order.side is not Side.BUY and order.side is not Side.SELL:
        raise InvalidAuctionInput(f"side must be a Side, got {order.side!r}")
    limit = order.limit_price
    if limit is not None and (type(limit) is not int or limit <= 0 or limit % tick_size):
        raise InvalidAuctionInput(
            f"limit_price must be None or a positive multiple of {tick_size}: {order!r}"
        )
    quantity = order.quantity
    if type(quantity) is not int or quantity <= 0 or quantity % lot_size:
        raise InvalidAuctionInput(f"quantity must be a positive multiple of {lot_size}: {order!r}")
    if type(order.arrival) is not int:
        raise InvalidAuctionInput(f"arrival must be an int: {order!r}")


def _build_book(orders: Sequence[AuctionOrder], tick_size: int, lot_size: int) -> _Book:
    market_buy = 0
    market_sell = 0
    buy_at: dict[int, int] = {}
    sell_at: dict[int, int] = {}
    for order in orders:
        _check_order(order, tick_size, lot_size)
        limit = order.limit_price
        if order.side is Side.BUY:
            if limit is None:
                market_buy += order.quantity
            else:
                buy_at[limit] = buy_at.get(limit, 0) + order.quantity
        elif limit is None:
            market_sell += order.quantity
        else:
            sell_at[limit] = sell_at.get(limit, 0) + order.quantity
    # Canonical order (totals above are sums, so input order never mattered there):
    # every level's orders are listed in ascending order_id.
    ordered = sorted(orders, key=attrgetter("order_id"))
    for before, after in pairwise(ordered):
        if before.order_id == after.order_id:
            raise InvalidAuctionInput(f"duplicate order_id {after.order_id.hex()}")
    at_level: dict[tuple[Side, int | None], list[AuctionOrder]] = {}
    for order in ordered:
        at_level.setdefault((order.side, order.limit_price), []).append(order)
    return _Book(
        market_buy=market_buy,
        market_sell=market_sell,
        buy_at=buy_at,
        sell_at=sell_at,
        limit_prices=sorted(buy_at.keys() | sell_at.keys()),
        members=lambda side, limit: at_level.get((side, limit), ()),
    )


def clear_levels(
    buy_at: Mapping[int, int],
    sell_at: Mapping[int, int],
    members: Callable[[Side, int | None], Sequence[AuctionOrder]],
    *,
    tick_size: int,
    lot_size: int,
    reference_price: int | None,
    tie_salt: bytes = b"",
) -> ClearingResult:
    """`clear_batch_auction` over price levels instead of a list of orders.

    `buy_at` / `sell_at` map limit prices to the side's total quantity there;
    `members(side, price)` lists the orders at a level, ascending by order id,
    each already valid (what `clear_batch_auction` checks). There are no market
    orders (`members(side, None)` is never asked). The levels may leave out
    every price outside [lowest sell, highest buy]: V is 0 outside that range,
    and inside it D and S only count levels inside it, so the price, the
    volume and the fills are those of the whole book (the caller then walks
    only where the book crosses).
    """
    _check_market_parameters(tick_size, lot_size, reference_price)
    book = _Book(
        market_buy=0,
        market_sell=0,
        buy_at=buy_at,
        sell_at=sell_at,
        limit_prices=sorted(buy_at.keys() | sell_at.keys()),
        members=members,
    )
    return _clear(book, tick_size, lot_size, reference_price, tie_salt)


# --- the clearing price ------------------------------------------------------------


def _choose_price(
    book: _Book, tick_size: int, reference_price: int | None
) -> tuple[int, int] | None:
    """(price, volume) under the price rule, or None when nothing trades.

    Let k_0 < ... < k_m be the distinct limit prices plus the rounded reference.
    D is constant on each half-open piece (k_i, k_i+1] and S on each [k_i, k_i+1),
    so both are constant on every point {k_i} and on every open gap
    (k_i, k_i+1). The candidate range is [k_0, k_m], so these 2m+1 pieces cover it;
    a gap counts only if it holds a grid point (k_i+1 - k_i >= 2 ticks). Within one
    piece V and the imbalance are fixed, and the grid price closest to the
    reference is the reference clamped into the piece (the rounded reference is one
    of the k_i, so it never lies inside a gap: the clamp gives a gap's end).
    """
    rounded_reference = (
        None if reference_price is None else round_to_tick(reference_price, tick_size)
    )
    keys = book.limit_prices
    if (
        rounded_reference is not None
        and rounded_reference not in book.buy_at
        and rounded_reference not in book.sell_at
    ):
        keys = list(keys)
        insort(keys, rounded_reference)
    if not keys:
        return None
    buy_at = book.buy_at
    sell_at = book.sell_at
    # demand_at[i] = D(keys[i]): buys with limit >= keys[i], a suffix sum.
    buy_suffix = list(accumulate(buy_at.get(k, 0) for k in reversed(keys)))
    buy_suffix.reverse()
    demand_at = [book.market_buy + total for total in buy_suffix]
    # supply_at[i] = S(keys[i]): sells with limit <= keys[i], a prefix sum.
    supply_at = [book.market_sell + total for total in accumulate(sell_at.get(k, 0) for k in keys)]

    # V on each point {keys[i]} and on each gap (keys[i], keys[i+1]); a gap has the
    # demand of the point above it and the supply of the point below it.
    point_volumes = list(map(min, demand_at, supply_at))
    gap_volumes = list(map(min, demand_at[1:], supply_at))
    two_ticks = 2 * tick_size
    best_volume = max(
        max(point_volumes),
        max(
            (v for i, v in enumerate(gap_volumes) if keys[i + 1] - keys[i] >= two_ticks),
            default=0,
        ),
    )
    if best_volume == 0:
        return None

    # The volume-maximizing pieces as (demand, supply, lowest price, highest price).
    pieces = [
        (demand_at[i], supply_at[i], keys[i], keys[i])
        for i, v in enumerate(point_volumes)
        if v == best_volume
    ]
    pieces += [
        (demand_at[i + 1], supply_at[i], keys[i] + tick_size, keys[i + 1] - tick_size)
        for i, v in enumerate(gap_volumes)
        if v == best_volume and keys[i + 1] - keys[i] >= two_ticks
    ]
    # Tie-break key of a piece: (imbalance, distance to the reference, price).
    candidates = []
    for demand, supply, low, high in pieces:
        if rounded_reference is None or reference_price is None:
            candidates.append((abs(demand - supply), 0, low))
        else:
            price = min(max(rounded_reference, low), high)
            candidates.append((abs(demand - supply), abs(price - reference_price), price))
    best = min(candidates)
    return best[2], best_volume


# --- fills -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Margin:
    """Where one side's volume runs out.

    Levels more aggressive than the marginal one fill completely; orders at the
    marginal level share `remaining` pro-rata to quantity; `level_total` is that
    level's quantity. `limit` is None when the marginal level is the market orders.
    """

    limit: int | None
    remaining: int
    level_total: int


def _find_margin(market_total: int, levels: list[tuple[int, int]], volume: int) -> _Margin:
    """Walk levels from most to least aggressive until `volume` is used up.

    `levels` are (limit price, total quantity) of the eligible limit levels, most
    aggressive first. The eligible quantity is at least `volume` by definition of V.
    """
    if market_total >= volume:
        return _Margin(limit=None, remaining=volume, level_total=market_total)
    remaining = volume - market_total
    for limit, total in levels:
        if total >= remaining:
            return _Margin(limit=limit, remaining=remaining, level_total=total)
        remaining -= total
    raise AssertionError("eligible quantity below the clearing volume")


def _allocate_fills(
    book: _Book, price: int, volume: int, lot_size: int, tie_salt: bytes
) -> tuple[Fill, ...]:
    buy_levels = [
        (k, book.buy_at[k]) for k in reversed(book.limit_prices) if k >= price and k in book.buy_at
    ]
    sell_levels = [
        (k, book.sell_at[k]) for k in book.limit_prices if k <= price and k in book.sell_at
    ]
    quantities: dict[bytes, int] = {}
    for side, market_total, levels in (
        (Side.BUY, book.market_buy, buy_levels),
        (Side.SELL, book.market_sell, sell_levels),
    ):
        margin = _find_margin(market_total, levels, volume)
        if margin.limit is not None:
            # The market orders and every level ahead of the marginal one fill whole.
            for order in book.members(side, None):
                quantities[order.order_id] = order.quantity
            for limit, _ in levels:
                if limit == margin.limit:
                    break
                for order in book.members(side, limit):
                    quantities[order.order_id] = order.quantity
        marginal = book.members(side, margin.limit)
        _share_pro_rata(marginal, margin, lot_size, quantities, tie_salt)
    return tuple(
        Fill(order_id=order_id, quantity=quantity)
        for order_id, quantity in sorted(quantities.items())
        if quantity
    )


def _share_pro_rata(
    marginal: Sequence[AuctionOrder],
    margin: _Margin,
    lot_size: int,
    quantities: dict[bytes, int],
    tie_salt: bytes,
) -> None:
    """Split `margin.remaining` over the `marginal` orders (ascending by id).

    Share of an order of quantity q: floor(R * q ÷ (Q * lot)) lots (rounded down),
    remainder R * q mod (Q * lot). The fractional parts sum to the whole number of
    lots left over, and each is below one lot, so more orders have a positive
    remainder than lots are left over: the leftover lots go one each to the
    largest remainders, ties to the lower `arrival`, then to the lower
    keccak256(tie_salt || order_id). An order with a positive remainder was
    floored, so its share is strictly below q and the extra lot fits.
    """
    remaining = margin.remaining
    denominator = margin.level_total * lot_size
    assigned = 0
    remainders: list[tuple[int, int, bytes, int]] = []
    for position, order in enumerate(marginal):
        lots, remainder = divmod(remaining * order.quantity, denominator)  # floor
        quantities[order.order_id] = lots * lot_size
        assigned += lots * lot_size
        if remainder:
            tie = keccak256(tie_salt + order.order_id) if tie_salt else order.order_id
            remainders.append((-remainder, order.arrival, tie, position))
    leftover_lots = (remaining - assigned) // lot_size  # exact: both are multiples of lot
    assert leftover_lots < len(remainders) or leftover_lots == 0
    remainders.sort()
    for _, _, _, position in remainders[:leftover_lots]:
        quantities[marginal[position].order_id] += lot_size
