"""Placing and cancelling orders (the order phase of a block).

Order types (docs/execution.md, "Orders"):
- limit, good-till-cancel: joins this block's auction; what does not fill rests.
- limit, immediate-or-cancel: joins this block's auction; the rest is dropped.
- market (`limit_price` 0): immediate-or-cancel; it enters the auction as a limit
  at the edge of the market's price band (reference * (1 +- mark_band)).
- post-only: a GTC limit that is removed instead of trading if, in its first
  auction, it crosses any opposite order of that auction (see matching.py).
- reduce-only: may only shrink the position; trimmed at auction time (matching.py).

Placement checks the market trades (listed, not paused, not expired, fresh
oracle), the grid, the flags, and that the subaccount keeps its initial margin
with every open order assumed filled (`margin.Risk.initial_with_orders`).
Reduce-only orders skip the margin check: they cannot add exposure.
A buy order in an option market reserves its premium, quantity * limit (exact:
the grid makes it a whole wad amount), from free collateral until it fills or
leaves the book; it therefore needs a limit price (no market buys of options).
The order id is the placing transaction's hash.

Optional fields (docs/execution.md, "Client ids, good-til and conditional orders"):
- `client_id` (uint64, 0 none): unique among the subaccount's open orders
  (DuplicateClientId otherwise); `CancelOrderByClientId` cancels by it.
- `good_til` (unix seconds, 0 none): later than the block's time and at most
  MAX_GOOD_TIL_SECONDS after it; the order is removed at the first block whose
  time is >= it (timed_orders.expire_good_til_orders).
- `trigger` / `trigger_price`: a stop or take-profit order. It is stored as a
  ConditionalOrder, not in the book: it reserves no margin and no market slot,
  counts as one open order, and at most MAX_CONDITIONAL_ORDERS_PER_SUBACCOUNT
  wait per subaccount. The checks that depend on the account (reduce-only,
  margin) run when it triggers (timed_orders.py).
"""

from __future__ import annotations

from .accounts import own_subaccount
from .auction import Side
from .exceptions import (
    DuplicateClientId,
    InsufficientMargin,
    InvalidAmount,
    InvalidOrder,
    TooManyOrders,
    UnknownOrder,
)
from .fixed_point import SCALE
from .limits import (
    MAX_AMOUNT,
    MAX_CLIENT_ID,
    MAX_CONDITIONAL_ORDERS_PER_SUBACCOUNT,
    MAX_GOOD_TIL_SECONDS,
    MAX_OPEN_ORDERS_PER_SUBACCOUNT,
)
from .margin import meets_initial_with_orders
from .markets import require_trading
from .order_index import (
    conditional,
    conditional_count,
    find_client_id,
    forget_order,
    register_order,
    remove_conditional,
    store_conditional,
)
from .positions import change_open_orders
from .records import (
    ConditionalOrder,
    MarketKind,
    MarketParams,
    RestingOrder,
    TimeInForce,
    TriggerKind,
)
from .state import StateWriter, order_key
from .transactions import CancelOrder, CancelOrderByClientId, PlaceOrder


def apply_place_order(
    w: StateWriter, sender: bytes, nonce: int, order_id: bytes, tx: PlaceOrder
) -> None:
    sid = own_subaccount(sender, tx.subaccount_number)
    params, _ = require_trading(w, tx.market_id)
    if tx.side not in (Side.BUY, Side.SELL):
        raise InvalidOrder("side must be 0 (buy) or 1 (sell)")
    if tx.time_in_force not in (TimeInForce.GOOD_TILL_CANCEL, TimeInForce.IMMEDIATE_OR_CANCEL):
        raise InvalidOrder("unknown time in force")
    if not 0 < tx.quantity <= MAX_AMOUNT or tx.quantity % params.lot_size:
        raise InvalidAmount("quantity must be a positive multiple of the lot size")
    if tx.limit_price == 0:
        if tx.time_in_force != TimeInForce.IMMEDIATE_OR_CANCEL:
            raise InvalidOrder("a market order is immediate-or-cancel")
    elif not 0 < tx.limit_price <= MAX_AMOUNT or tx.limit_price % params.tick_size:
        raise InvalidAmount("limit price must be a positive multiple of the tick size")
    if tx.post_only and (tx.limit_price == 0 or tx.time_in_force != TimeInForce.GOOD_TILL_CANCEL):
        raise InvalidOrder("post-only needs a good-till-cancel limit order")
    if params.kind == MarketKind.OPTION and tx.side == Side.BUY and tx.limit_price == 0:
        raise InvalidOrder("an option buy needs a limit price: its premium is reserved at it")
    _check_optional_fields(w, sid, params, tx)
    if w.subaccount(sid).open_orders >= MAX_OPEN_ORDERS_PER_SUBACCOUNT:
        raise TooManyOrders("too many open orders")
    order = RestingOrder(
        order_id=order_id,
        subaccount=sid,
        side=tx.side,
        limit_price=tx.limit_price,
        quantity=tx.quantity,
        time_in_force=tx.time_in_force,
        post_only=tx.post_only,
        reduce_only=tx.reduce_only,
        placed_height=w.height,
        placed_nonce=nonce,
        client_id=tx.client_id,
        good_til=tx.good_til,
    )
    if tx.trigger != TriggerKind.NONE:
        if conditional_count(w, sid) >= MAX_CONDITIONAL_ORDERS_PER_SUBACCOUNT:
            raise TooManyOrders("too many stop / take-profit orders")
        store_conditional(w, tx.market_id, ConditionalOrder(order, tx.trigger, tx.trigger_price))
        return
    enter_order(w, tx.market_id, params, order, count=1)
    register_order(w, tx.market_id, order)


def _check_optional_fields(
    w: StateWriter, sid: bytes, params: MarketParams, tx: PlaceOrder
) -> None:
    """The client id, good-til time and trigger of a new order."""
    if not 0 <= tx.client_id <= MAX_CLIENT_ID:
        raise InvalidOrder("client id must be a uint64")
    if tx.client_id and find_client_id(w, sid, tx.client_id) is not None:
        raise DuplicateClientId(
            f"client id {tx.client_id} is used by an open order of this subaccount"
        )
    if tx.trigger not in (TriggerKind.NONE, TriggerKind.STOP, TriggerKind.TAKE_PROFIT):
        raise InvalidOrder("trigger must be 0 (none), 1 (stop) or 2 (take-profit)")
    if tx.trigger == TriggerKind.NONE:
        if tx.trigger_price != 0:
            raise InvalidOrder("a trigger price needs a trigger kind")
    elif not 0 < tx.trigger_price <= MAX_AMOUNT or tx.trigger_price % params.tick_size:
        raise InvalidAmount("trigger price must be a positive multiple of the tick size")
    if tx.good_til:
        if not w.timestamp < tx.good_til <= w.timestamp + MAX_GOOD_TIL_SECONDS:
            raise InvalidOrder(
                f"good-til must be after the block time and at most {MAX_GOOD_TIL_SECONDS}s later"
            )
        if tx.time_in_force != TimeInForce.GOOD_TILL_CANCEL and tx.trigger == TriggerKind.NONE:
            raise InvalidOrder("good-til needs a good-till-cancel or a conditional order")


def enter_order(
    w: StateWriter, market_id: int, params: MarketParams, order: RestingOrder, count: int
) -> None:
    """Put an order into this block's auction: the reduce-only check, its
    reservation (and `count` more open orders), then the margin check."""
    position = w.position(order.subaccount, market_id)
    size = 0 if position is None else position.size
    if order.reduce_only:
        reduces = (order.side == Side.SELL and size > 0) or (order.side == Side.BUY and size < 0)
        if not reduces or order.quantity > abs(size):
            raise InvalidOrder("reduce-only order would not reduce the position")
    buy = order.quantity if order.side == Side.BUY else 0
    premium = reserved_premium(params, order.side, order.limit_price, order.quantity)
    change_open_orders(w, order.subaccount, market_id, buy, order.quantity - buy, count, premium)
    w.pending_orders.put(order_key(market_id, order.order_id), order)
    if not order.reduce_only and not meets_initial_with_orders(w, order.subaccount):
        raise InsufficientMargin("open orders would exceed the initial margin")


def reserved_premium(params: MarketParams, side: int, limit_price: int, quantity: int) -> int:
    """Premium an option buy order reserves: quantity * limit (0 for anything else)."""
    if params.kind != MarketKind.OPTION or side != Side.BUY:
        return 0
    return (quantity * limit_price) // SCALE  # exact: quantity on the lot, limit on the tick


def release_order(w: StateWriter, market_id: int, order: RestingOrder, quantity: int) -> None:
    """Give back `quantity` of the order's reserved size (and premium); count it
    closed if `quantity` is all that was left."""
    buy = quantity if order.side == Side.BUY else 0
    closed = 1 if quantity == order.quantity else 0
    params = w.params(market_id)
    premium = (
        0 if params is None else reserved_premium(params, order.side, order.limit_price, quantity)
    )
    change_open_orders(w, order.subaccount, market_id, -buy, -(quantity - buy), -closed, -premium)
    if closed:
        forget_order(w, market_id, order)


def apply_cancel_order(w: StateWriter, sender: bytes, tx: CancelOrder) -> None:
    """Cancel a resting order, one placed earlier in this block, or a conditional
    order, of the same owner."""
    sid = own_subaccount(sender, tx.subaccount_number)
    cancel_order(w, sid, tx.market_id, tx.order_id)


def apply_cancel_by_client_id(w: StateWriter, sender: bytes, tx: CancelOrderByClientId) -> None:
    """Cancel the subaccount's open order that carries `client_id`."""
    sid = own_subaccount(sender, tx.subaccount_number)
    if not 0 < tx.client_id <= MAX_CLIENT_ID:
        raise InvalidOrder("client id must be a non-zero uint64")
    found = find_client_id(w, sid, tx.client_id)
    if found is None:
        raise UnknownOrder(f"no open order of this subaccount has client id {tx.client_id}")
    cancel_order(w, sid, *found)


def cancel_order(w: StateWriter, sid: bytes, market_id: int, order_id: bytes) -> None:
    key = order_key(market_id, order_id)
    pending = w.pending_orders.get(key)
    if pending is not None and pending.subaccount == sid:
        w.pending_orders.put(key, None)
        release_order(w, market_id, pending, pending.quantity)
        return
    waiting = conditional(w, market_id, order_id)
    if waiting is not None and waiting.order.subaccount == sid:
        remove_conditional(w, market_id, waiting, "cancelled")
        return
    resting = w.book(market_id).get(order_id)
    if resting is None or resting.subaccount != sid or w.cancelled_orders.get(key):
        raise UnknownOrder("no such open order of this subaccount")
    if resting.liquidation:
        raise UnknownOrder("a liquidation order cannot be cancelled")
    w.cancelled_orders.put(key, True)
    release_order(w, market_id, resting, resting.quantity)
