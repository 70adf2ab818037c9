"""One batch auction per market per block, and applying its fills.

Flow for market m (docs/execution.md, "Auction flow"), run in ascending market id
after every order transaction of the block has been placed or cancelled:

1. The book is the resting orders minus those cancelled this block; the batch is
   the book plus the orders placed this block. No new orders: no auction.
2. Reduce-only: per subaccount, its reduce-only orders, oldest first, are trimmed
   so together they do not exceed its position (as it stands before the auction);
   ones on the wrong side of the position are removed.
3. Self-trade prevention, per owner address (all its subaccounts): while the
   owner's best buy limit >= its best sell limit (a market buy counts as +inf, a
   market sell as 0), the newer of those two orders is removed. Quotes that do not
   cross are kept, so a market maker may bid and offer in the same auction;
   orders that do not cross cannot both fill at one uniform price.
4. Post-only: an order placed this block with post_only is removed if it crosses
   any remaining opposite order of the batch (limit >= the lowest sell, or <= the
   highest buy, market orders crossing everything). Decided for all post-only
   orders at once from the batch after step 3, so the outcome ignores their order.
5. `clear_batch_auction` with the market's tick and lot, reference = the index
   (perp) or Black-Scholes mark (option) rounded to the tick. Market orders enter
   as limits at the band edge: reference +- floor(reference * mark_band), rounded
   inward to the tick. Pro-rata remainder lots go by largest remainder, then to
   the order that arrived in the book first (placed at a lower height), then by
   keccak(block salt || order id) (engine.block_salt): nothing a sender can grind.
6. Fills apply at the one price p: a buyer pays q * p (exact, see
   markets.check_market_params), the seller receives it; each pays a fee of
   ceil(notional * rate) into the fee pool: maker_fee for orders resting from an
   earlier block, taker_fee for orders placed this block. Unfilled GTC limits rest
   (a post-only flag only matters in the first auction); IOC/market rests drop.
Every step depends only on the set of orders, never on their position in the block.

Liquidation orders (RestingOrder.liquidation, placed by liquidation.py at the
end of the previous block; MarketState.liquidation_orders counts them) make
their market's auction run even without new orders and join it as takers.
Before the pre-auction rules, those of a subaccount that meets maintenance
again are removed ("recovered"). A filled one pays no trading fee; its
liquidation fee goes to the insurance fund (liquidation.charge_liquidation_fee).
Which subaccounts' liquidation orders took part (with how many auctions in a
row they had missed before) and which filled is recorded for the end-of-block
rule (StateWriter.liquidation_attempted / _filled).

Totality by construction: an order the auction could not take (a limit off the
market's grid, a quantity off the lot) is removed with `OrderRemoved(...,
"off-grid")` before clearing; listing and parameter updates already refuse
whatever would leave one there (markets.apply_update_market). Each market's
auction runs as one block-level unit (StateWriter.phase): if it raised anyway,
the block is executed again with that auction skipped and its new orders
removed ("auction-skipped").

Cost (book.py): the batch is the book itself, with this block's orders added
to it, so every step walks only what it concerns: the off-grid, liquidation
and reduce-only orders the book indexes, the owners that gained an order since
the last self-trade pass, the post-only orders placed this block, the price
levels between the lowest sell and the highest buy (nothing outside that
range can trade) and the orders it fills. A resting good-till-cancel limit
that does not fill is not touched.
"""

from __future__ import annotations

import msgspec

from .auction import (
    ORDER_ID_BYTES,
    AuctionOrder,
    ClearingResult,
    InvalidAuctionInput,
    Side,
    clear_levels,
    round_to_tick,
)
from .book import Book
from .exceptions import EngineInvariantBroken
from .fixed_point import SCALE
from .liquidation import charge_liquidation_fee
from .margin import maintenance_risk, valuation_price
from .mark import observe_perp
from .markets import is_expired, is_oracle_fresh
from .orders import release_order
from .positions import change_size, credit
from .receipts import AuctionCleared, FillEvent, OrderRemoved
from .records import Ledger, MarketKind, MarketParams, RestingOrder, TimeInForce
from .state import INSURANCE_FUND, StateWriter


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
        book = w.writable_book(mid)
        for oid in cancelled.get(mid, ()):
            book.pop(oid, None)
        new = new_by_market.get(mid, [])
        if mid in liquidating:  # they take part like this block's taker orders
            new = new + [book[oid] for oid in book.liquidation_ids()]
        if not new:
            continue
        if w.phase_skipped("auction", mid):
            for order in sorted(new, key=_age):
                book.pop(order.order_id, None)
                release_order(w, mid, order, order.quantity)
                w.events.append(OrderRemoved(mid, order.order_id, "auction-skipped"))
            continue
        with w.phase("auction", mid):
            _run_market_auction(w, mid, book, new)


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
    """One auction's orders: the market's book with this block's orders added
    (`fresh`: their ids), while the pre-auction rules remove or trim them.

    A book holds only orders of earlier blocks, so an order placed at this
    height is one of `fresh`."""

    def __init__(self, w: StateWriter, market_id: int, book: Book, new: list[RestingOrder]) -> None:
        self.w = w
        self.market_id = market_id
        self.book = book
        self.fresh: set[bytes] = set()
        self.trimmed: list[RestingOrder] = []
        for order in new:
            if order.order_id not in book:
                self.fresh.add(order.order_id)
                book[order.order_id] = order

    def remove(self, order: RestingOrder, why: str) -> None:
        self.book.pop(order.order_id)
        release_order(self.w, self.market_id, order, order.quantity)
        self.w.events.append(OrderRemoved(self.market_id, order.order_id, why))

    def trim(self, order: RestingOrder, quantity: int) -> None:
        release_order(self.w, self.market_id, order, order.quantity - quantity)
        trimmed = msgspec.structs.replace(order, quantity=quantity)
        self.book[order.order_id] = trimmed
        self.trimmed.append(trimmed)


def _run_market_auction(w: StateWriter, mid: int, book: Book, new: list[RestingOrder]) -> None:
    params = w.params(mid)
    state = w.market(mid)
    assert params is not None and state is not None
    batch = _Batch(w, mid, book, new)
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
    result = _clear(batch, params, reference_tick, buy_edge, sell_edge)
    fills = {fill.order_id: fill.quantity for fill in result.fills}
    for oid in book.liquidation_ids():
        order = book[oid]
        if order.subaccount != INSURANCE_FUND:
            w.liquidation_attempted[order.subaccount] = max(
                w.liquidation_attempted.get(order.subaccount, 0), order.liquidation_misses
            )
            if fills.get(oid):
                w.liquidation_filled.add(order.subaccount)
    fees = 0
    # A resting GTC limit that did not fill stays as it is: only the others change.
    changing = fills.keys() | (batch.fresh & book.keys()) | book.irregular_ids()
    for oid in sorted(changing):
        order = book[oid]
        quantity = fills.get(oid, 0)
        if quantity:
            assert result.price is not None
            fees += _apply_fill(w, mid, params, order, result.price, quantity)
        remaining = order.quantity - quantity
        if remaining == 0:
            book.pop(oid)
        elif order.time_in_force == TimeInForce.GOOD_TILL_CANCEL and order.limit_price:
            if remaining != order.quantity:
                book[oid] = msgspec.structs.replace(order, quantity=remaining)
        else:
            book.pop(oid)
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
            seen = observe_perp(params, state, cleared, book)
            w.observed[mid] = (params, state.oracle_price, state.last_trade_price, cleared, seen)
            mark = seen.mark
        w.events.append(AuctionCleared(mid, result.price, result.volume, mark))


def _clear(
    batch: _Batch, params: MarketParams, reference_tick: int, buy_edge: int, sell_edge: int
) -> ClearingResult:
    """`clear_batch_auction` of the batch, market orders as limits at the band
    edges, over the levels between the lowest sell and the highest buy only."""
    book = batch.book
    tick, lot = params.tick_size, params.lot_size
    # What clear_batch_auction would refuse of orders the off-grid rule let
    # through: a quantity a reduce-only trim took off the lot, a malformed id.
    for order in batch.trimmed:
        if book.get(order.order_id) is order and (order.quantity <= 0 or order.quantity % lot):
            raise InvalidAuctionInput(f"quantity must be a positive multiple of {lot}: {order!r}")
    if book.malformed_ids():
        raise InvalidAuctionInput(f"order_id must be {ORDER_ID_BYTES} bytes")
    buy, sell = Side.BUY, Side.SELL
    highest_buy = book.best_limit(buy)
    if book.has_market_orders(buy):
        highest_buy = max(highest_buy or 0, buy_edge)
    lowest_sell = book.best_limit(sell)
    if book.has_market_orders(sell):
        lowest_sell = sell_edge if lowest_sell is None else min(lowest_sell, sell_edge)
    if highest_buy is None or lowest_sell is None or highest_buy < lowest_sell:
        return clear_levels(
            {}, {}, _no_members, tick_size=tick, lot_size=lot, reference_price=reference_tick
        )
    buy_at = book.levels_between(buy, lowest_sell, highest_buy)
    sell_at = book.levels_between(sell, lowest_sell, highest_buy)
    market_buy, market_sell = book.market_quantity(buy), book.market_quantity(sell)
    if book.has_market_orders(buy):
        buy_at[buy_edge] = buy_at.get(buy_edge, 0) + market_buy
    if book.has_market_orders(sell):
        sell_at[sell_edge] = sell_at.get(sell_edge, 0) + market_sell
    edges = {buy: buy_edge, sell: sell_edge}

    def members(side: Side, price: int | None) -> list[AuctionOrder]:
        ids = set(book.level_ids(side, price)) if price is not None else set()
        if price == edges[side]:
            ids |= book.market_ids(side)
        orders = [book[oid] for oid in sorted(ids)]
        return [AuctionOrder(o.order_id, side, price, o.quantity, o.placed_height) for o in orders]

    return clear_levels(
        buy_at,
        sell_at,
        members,
        tick_size=tick,
        lot_size=lot,
        reference_price=reference_tick,
        tie_salt=batch.w.tie_salt,
    )


def _no_members(side: Side, price: int | None) -> list[AuctionOrder]:
    return []


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
    book = batch.book
    liquidations = [book[oid] for oid in book.liquidation_ids()]
    owners = sorted({o.subaccount for o in liquidations})
    if not owners:
        return
    recovered = set()
    for sid in owners:
        if sid == INSURANCE_FUND:
            continue
        risk = maintenance_risk(batch.w, sid)
        if risk.equity >= risk.maintenance:
            recovered.add(sid)
    for order in liquidations:
        if order.subaccount in recovered:
            batch.remove(order, "recovered")


def _remove_off_grid(batch: _Batch, params: MarketParams) -> None:
    """Remove what `clear_batch_auction` would refuse: off the tick grid or the
    lot (book.is_off_grid)."""
    book = batch.book
    for oid in book.off_grid_ids(params.tick_size, params.lot_size):
        batch.remove(book[oid], "off-grid")  # removing one never changes another's check


def _apply_reduce_only(batch: _Batch) -> None:
    book = batch.book
    by_subaccount: dict[bytes, list[RestingOrder]] = {}
    for oid in book.reduce_only_ids():
        order = book[oid]
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
    """Per owner on both sides, while its best buy crosses its best sell, remove
    the newer of the two. Only owners that gained an order since the book's
    last pass can cross (removals and fills never make a pair cross)."""
    book = batch.book
    for owner in book.take_unchecked_owners():
        buys: list[RestingOrder] = []
        sells: list[RestingOrder] = []
        for order in book.owner_orders(owner):
            (buys if order.side == Side.BUY else sells).append(order)
        if not buys or not sells:
            continue
        # Best buy first: market buys, then highest limit, then oldest.
        buys.sort(key=lambda o: (o.limit_price != 0, -o.limit_price, _age(o)))
        sells.sort(key=lambda o: (o.limit_price, _age(o)))
        while buys and sells and _crosses(buys[0], sells[0]):
            newer = max(buys[0], sells[0], key=_age)
            (buys if newer is buys[0] else sells).pop(0)
            batch.remove(newer, "self-trade")


def _remove_crossing_post_only(batch: _Batch, height: int) -> None:
    book = batch.book
    candidates = [
        order
        for order in (book.get(oid) for oid in batch.fresh)
        if order is not None and order.post_only and order.placed_height == height
    ]
    if not candidates:
        return
    market_buy = book.has_market_orders(Side.BUY)
    market_sell = book.has_market_orders(Side.SELL)
    best_buy = book.best_limit(Side.BUY) or 0
    best_sell = book.best_limit(Side.SELL)
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
