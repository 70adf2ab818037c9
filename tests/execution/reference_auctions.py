"""The auctions as the engine ran them before books kept price-level
aggregates: every auction walks its market's whole book (the batch as a list
of orders, `clear_batch_auction` over all of it, impact prices order by
order). Kept as the oracle of test_auction_oracle.py; the code is the old
matching.py and auction.py unchanged, except that the rebuilt book is written
back into the block's `Book` (`_store`).
"""

# ruff: noqa

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from operator import attrgetter

import msgspec

from consensus.crypto import keccak256
from sequencer_net.execution.auction import (
    ORDER_ID_BYTES,
    AuctionOrder,
    ClearingResult,
    Fill,
    InvalidAuctionInput,
    Side,
    round_to_tick,
)
from sequencer_net.execution.exceptions import EngineInvariantBroken
from sequencer_net.execution.fixed_point import SCALE
from sequencer_net.execution.liquidation import charge_liquidation_fee
from sequencer_net.execution.margin import maintenance_risk, valuation_price
from sequencer_net.execution.mark import observe_perp
from sequencer_net.execution.markets import is_expired, is_oracle_fresh
from sequencer_net.execution.orders import release_order
from sequencer_net.execution.positions import change_size, credit
from sequencer_net.execution.receipts import AuctionCleared, FillEvent, OrderRemoved
from sequencer_net.execution.records import (
    Ledger,
    MarketKind,
    MarketParams,
    RestingOrder,
    TimeInForce,
)
from sequencer_net.execution.state import INSURANCE_FUND, StateWriter

# --- old matching.py -------------------------------------------------------------------

_SIDES: dict[int, Side] = {Side.BUY: Side.BUY, Side.SELL: Side.SELL}
"""A resting order's side (an int the off-grid rule checked) as the auction's Side."""


def _age(order: RestingOrder) -> tuple[int, int, bytes]:
    return (order.placed_height, order.placed_nonce, order.order_id)


def run_auctions(w: StateWriter) -> None:
    """Rebuild every touched book and clear every market that got new orders."""
    new_by_market: dict[int, list[RestingOrder]] = {}
    cancelled: dict[int, list[bytes]] = {}
    for key, order in w.pending_orders.changes():
        if order is not None:
            mid = int.from_bytes(key[:4], "big")
            new_by_market.setdefault(mid, []).append(order)
    for key, flag in w.cancelled_orders.changes():
        if flag:
            cancelled.setdefault(int.from_bytes(key[:4], "big"), []).append(key[4:])
    liquidating = take_liquidation_markets(w)
    for mid in sorted(cancelled.keys() | new_by_market.keys() | liquidating):
        book = dict(w.book(mid))
        for oid in cancelled.get(mid, ()):
            book.pop(oid, None)
        new = new_by_market.get(mid, [])
        if mid in liquidating:  # they take part like this block's taker orders
            new = new + [order for order in book.values() if order.liquidation]
        if not new:
            _store(w, mid, book)
            continue
        if w.phase_skipped("auction", mid):
            for order in sorted(new, key=_age):
                book.pop(order.order_id, None)
                release_order(w, mid, order, order.quantity)
                w.events.append(OrderRemoved(mid, order.order_id, "auction-skipped"))
            _store(w, mid, book)
            continue
        with w.phase("auction", mid):
            _run_market_auction(w, mid, book, new)
        _store(w, mid, book)


def _store(w: StateWriter, mid: int, book: dict[bytes, RestingOrder]) -> None:
    """Write the rebuilt plain-dict book into the block's Book (the one change
    to the old code: the engine's state keeps Books)."""
    target = w.writable_book(mid)
    for oid in sorted(target.keys() - book.keys()):
        target.pop(oid)
    for oid, order in book.items():
        if target.get(oid) is not order:
            target[oid] = order


def take_liquidation_markets(w: StateWriter) -> set[int]:
    """The markets holding liquidation orders placed at the end of the previous
    block; their counters go back to zero (every such order is IOC: after this
    block's auction none is left)."""
    found: set[int] = set()
    for mid in sorted(w.market_states.live_keys()):
        state = w.market(mid)
        if state is not None and state.liquidation_orders:
            found.add(mid)
            w.market_states.put(mid, msgspec.structs.replace(state, liquidation_orders=0))
    return found


class _Batch:
    """The orders of one auction while the pre-auction rules remove or trim them."""

    def __init__(self, w: StateWriter, market_id: int, book: dict[bytes, RestingOrder]) -> None:
        self.w = w
        self.market_id = market_id
        self.book = book
        self.live: dict[bytes, RestingOrder] = {}

    def remove(self, order: RestingOrder, why: str) -> None:
        del self.live[order.order_id]
        self.book.pop(order.order_id, None)
        release_order(self.w, self.market_id, order, order.quantity)
        self.w.events.append(OrderRemoved(self.market_id, order.order_id, why))

    def trim(self, order: RestingOrder, quantity: int) -> None:
        release_order(self.w, self.market_id, order, order.quantity - quantity)
        trimmed = msgspec.structs.replace(order, quantity=quantity)
        self.live[order.order_id] = trimmed
        if order.order_id in self.book:
            self.book[order.order_id] = trimmed


def _run_market_auction(
    w: StateWriter, mid: int, book: dict[bytes, RestingOrder], new: list[RestingOrder]
) -> None:
    params = w.params(mid)
    state = w.market(mid)
    assert params is not None and state is not None
    batch = _Batch(w, mid, book)
    batch.live.update(book)
    for order in new:
        batch.live[order.order_id] = order
    halted = (
        state.paused
        or is_expired(params, w.timestamp)
        or not is_oracle_fresh(params, state, w.timestamp)
    )
    reference = 0 if halted else valuation_price(w, mid, params, state)
    if reference <= 0:
        for order in sorted(new, key=_age):
            batch.remove(order, "market-halted")
        return
    _remove_off_grid(batch, params)
    _remove_recovered_liquidations(batch)
    _apply_reduce_only(batch)
    _prevent_self_trades(batch)
    _remove_crossing_post_only(batch, w.height)
    reference_tick = round_to_tick(reference, params.tick_size)
    band = (reference * params.mark_band) // SCALE  # floor: never widen the band
    buy_edge = max(((reference + band) // params.tick_size) * params.tick_size, params.tick_size)
    sell_edge = max(
        -((-(reference - band)) // params.tick_size) * params.tick_size, params.tick_size
    )
    orders = [
        AuctionOrder(
            order_id=o.order_id,
            side=_SIDES[o.side],
            limit_price=o.limit_price or (buy_edge if o.side == Side.BUY else sell_edge),
            quantity=o.quantity,
            arrival=o.placed_height,
        )
        for o in batch.live.values()
    ]
    result = clear_batch_auction(
        orders,
        tick_size=params.tick_size,
        lot_size=params.lot_size,
        reference_price=reference_tick,
        tie_salt=w.tie_salt,
    )
    fills = {fill.order_id: fill.quantity for fill in result.fills}
    for order in batch.live.values():
        if order.liquidation and order.subaccount != INSURANCE_FUND:
            w.liquidation_attempted[order.subaccount] = max(
                w.liquidation_attempted.get(order.subaccount, 0), order.liquidation_misses
            )
            if fills.get(order.order_id):
                w.liquidation_filled.add(order.subaccount)
    fees = 0
    gtc = TimeInForce.GOOD_TILL_CANCEL
    # A resting GTC limit that did not fill stays as it is: only the others change.
    changing = [
        oid
        for oid, order in batch.live.items()
        if oid in fills or oid not in book or order.time_in_force != gtc or not order.limit_price
    ]
    for oid in sorted(changing):
        order = batch.live[oid]
        quantity = fills.get(oid, 0)
        if quantity:
            assert result.price is not None
            fees += _apply_fill(w, mid, params, order, result.price, quantity)
        remaining = order.quantity - quantity
        if remaining == 0:
            book.pop(oid, None)
        elif order.time_in_force == TimeInForce.GOOD_TILL_CANCEL and order.limit_price:
            if remaining != order.quantity or oid not in book:
                book[oid] = msgspec.structs.replace(order, quantity=remaining)
        else:
            book.pop(oid, None)
            release_order(w, mid, msgspec.structs.replace(order, quantity=remaining), remaining)
            w.events.append(OrderRemoved(mid, oid, "immediate-or-cancel"))
    if fees:
        ledger = w.ledger
        w.ledger = Ledger(ledger.fee_pool + fees, ledger.net_deposits)
    if result.price is not None:
        w.cleared_prices[mid] = (result.price, result.volume)
        mark = reference
        if params.kind == MarketKind.PERPETUAL:  # as sample_premiums will store it
            cleared = (result.price, result.volume)
            seen = observe_perp(params, state, cleared, list(book.values()))
            w.observed[mid] = (params, state.oracle_price, state.last_trade_price, cleared, seen)
            mark = seen.mark
        w.events.append(AuctionCleared(mid, result.price, result.volume, mark))


def _apply_fill(
    w: StateWriter,
    mid: int,
    params: MarketParams,
    order: RestingOrder,
    price: int,
    quantity: int,
) -> int:
    """Move the position and the notional plus fee; return the trading fee (a
    liquidation order pays none: its liquidation fee goes to the fund)."""
    notional, rest = divmod(quantity * price, SCALE)
    if rest:
        raise EngineInvariantBroken("fill notional is not exact: tick * lot must be wad-whole")
    maker = order.placed_height < w.height and not order.liquidation
    rate = 0 if order.liquidation else params.maker_fee if maker else params.taker_fee
    fee = -((-notional * rate) // SCALE)  # fees round up
    buy = order.side == Side.BUY
    change_size(w, order.subaccount, mid, quantity if buy else -quantity, price)
    credit(w, order.subaccount, (-notional if buy else notional) - fee)
    release_order(w, mid, order, quantity)
    if order.liquidation and order.subaccount != INSURANCE_FUND:
        charge_liquidation_fee(w, mid, params, order.subaccount, notional)
    w.events.append(
        FillEvent(mid, order.order_id, order.subaccount, order.side, price, quantity, fee, maker)
    )
    return fee


def _remove_recovered_liquidations(batch: _Batch) -> None:
    """A liquidation order of a subaccount that meets maintenance again (it was
    sent collateral, or the price came back) is removed before it trades."""
    owners = sorted({o.subaccount for o in batch.live.values() if o.liquidation})
    if not owners:
        return
    recovered = set()
    for sid in owners:
        if sid == INSURANCE_FUND:
            continue
        risk = maintenance_risk(batch.w, sid)
        if risk.equity >= risk.maintenance:
            recovered.add(sid)
    for oid in sorted(batch.live):
        order = batch.live[oid]
        if order.liquidation and order.subaccount in recovered:
            batch.remove(order, "recovered")


def _remove_off_grid(batch: _Batch, params: MarketParams) -> None:
    """Remove what `clear_batch_auction` would refuse: off the tick grid or the lot."""
    tick, lot = params.tick_size, params.lot_size
    off_grid = [
        oid
        for oid, order in batch.live.items()
        if order.limit_price < 0
        or order.limit_price % tick != 0
        or order.quantity <= 0
        or order.quantity % lot != 0
        or order.side not in (Side.BUY, Side.SELL)
    ]
    for oid in sorted(off_grid):  # removing one never changes another's check
        batch.remove(batch.live[oid], "off-grid")


def _apply_reduce_only(batch: _Batch) -> None:
    by_subaccount: dict[bytes, list[RestingOrder]] = {}
    for order in batch.live.values():
        if order.reduce_only:
            by_subaccount.setdefault(order.subaccount, []).append(order)
    for sid in sorted(by_subaccount):
        position = batch.w.position(sid, batch.market_id)
        size = 0 if position is None else position.size
        allowance = abs(size)
        for order in sorted(by_subaccount[sid], key=_age):
            reduces = (order.side == Side.SELL) == (size > 0) and size != 0
            if not reduces or allowance == 0:
                batch.remove(order, "reduce-only")
                continue
            if order.quantity > allowance:
                batch.trim(order, allowance)
            allowance -= min(order.quantity, allowance)


def _crosses(buy: RestingOrder, sell: RestingOrder) -> bool:
    return buy.limit_price == 0 or sell.limit_price == 0 or buy.limit_price >= sell.limit_price


def _prevent_self_trades(batch: _Batch) -> None:
    buys_of: dict[bytes, list[RestingOrder]] = {}
    sells_of: dict[bytes, list[RestingOrder]] = {}
    buy = Side.BUY
    for order in batch.live.values():
        group = buys_of if order.side == buy else sells_of
        owner = order.subaccount[:20]
        found = group.get(owner)
        if found is None:
            group[owner] = [order]
        else:
            found.append(order)
    for owner in sorted(buys_of.keys() & sells_of.keys()):  # owners on both sides
        buys, sells = buys_of[owner], sells_of[owner]
        # Best buy first: market buys, then highest limit, then oldest.
        buys.sort(key=lambda o: (o.limit_price != 0, -o.limit_price, _age(o)))
        sells.sort(key=lambda o: (o.limit_price, _age(o)))
        while buys and sells and _crosses(buys[0], sells[0]):
            newer = max(buys[0], sells[0], key=_age)
            (buys if newer is buys[0] else sells).pop(0)
            batch.remove(newer, "self-trade")


def _remove_crossing_post_only(batch: _Batch, height: int) -> None:
    candidates = [o for o in batch.live.values() if o.post_only and o.placed_height == height]
    if not candidates:
        return
    buys = [o for o in batch.live.values() if o.side == Side.BUY]
    sells = [o for o in batch.live.values() if o.side == Side.SELL]
    market_buy = any(o.limit_price == 0 for o in buys)
    market_sell = any(o.limit_price == 0 for o in sells)
    best_buy = max((o.limit_price for o in buys), default=0)
    best_sell = min((o.limit_price for o in sells if o.limit_price), default=None)
    crossing = []
    for order in candidates:
        if order.side == Side.BUY:
            crosses = market_sell or (best_sell is not None and order.limit_price >= best_sell)
        else:
            crosses = market_buy or (best_buy > 0 and order.limit_price <= best_buy)
        if crosses:
            crossing.append(order)
    for order in sorted(crossing, key=_age):
        batch.remove(order, "post-only-would-cross")


# --- old auction.py --------------------------------------------------------------------


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
    """The batch sorted by order id, with per-price totals per side."""

    ordered: list[AuctionOrder]
    market_buy: int
    market_sell: int
    buy_at: dict[int, int]  # limit price -> total limit-buy quantity at that price
    sell_at: dict[int, int]  # limit price -> total limit-sell quantity at that price
    limit_prices: list[int]  # distinct limit prices of both sides, ascending


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
    # everything downstream iterates in ascending order_id.
    ordered = sorted(orders, key=attrgetter("order_id"))
    for before, after in pairwise(ordered):
        if before.order_id == after.order_id:
            raise InvalidAuctionInput(f"duplicate order_id {after.order_id.hex()}")
    return _Book(
        ordered=ordered,
        market_buy=market_buy,
        market_sell=market_sell,
        buy_at=buy_at,
        sell_at=sell_at,
        limit_prices=sorted(buy_at.keys() | sell_at.keys()),
    )


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
    buy_margin = _find_margin(book.market_buy, buy_levels, volume)
    sell_margin = _find_margin(book.market_sell, sell_levels, volume)

    quantities = [0] * len(book.ordered)
    marginal: dict[Side, list[int]] = {Side.BUY: [], Side.SELL: []}
    for index, order in enumerate(book.ordered):
        is_buy = order.side is Side.BUY
        margin = buy_margin if is_buy else sell_margin
        limit = order.limit_price
        if margin.limit is None:
            # The market orders are the marginal level; every limit order waits.
            if limit is None:
                marginal[order.side].append(index)
        elif limit is None or (limit > margin.limit if is_buy else limit < margin.limit):
            quantities[index] = order.quantity
        elif limit == margin.limit:
            marginal[order.side].append(index)

    for side, margin in ((Side.BUY, buy_margin), (Side.SELL, sell_margin)):
        _share_pro_rata(book.ordered, marginal[side], margin, lot_size, quantities, tie_salt)

    return tuple(
        Fill(order_id=order.order_id, quantity=quantity)
        for order, quantity in zip(book.ordered, quantities, strict=True)
        if quantity
    )


def _share_pro_rata(
    ordered: list[AuctionOrder],
    indices: list[int],
    margin: _Margin,
    lot_size: int,
    quantities: list[int],
    tie_salt: bytes,
) -> None:
    """Split `margin.remaining` over the marginal orders `indices`.

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
    for index in indices:
        order = ordered[index]
        lots, remainder = divmod(remaining * order.quantity, denominator)  # floor
        quantities[index] = lots * lot_size
        assigned += lots * lot_size
        if remainder:
            tie = keccak256(tie_salt + order.order_id) if tie_salt else order.order_id
            remainders.append((-remainder, order.arrival, tie, index))
    leftover_lots = (remaining - assigned) // lot_size  # exact: both are multiples of lot
    assert leftover_lots < len(remainders) or leftover_lots == 0
    remainders.sort()
    for _, _, _, index in remainders[:leftover_lots]:
        quantities[index] += lot_size
