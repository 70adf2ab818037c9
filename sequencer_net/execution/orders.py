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
"""

from __future__ import annotations

from .accounts import own_subaccount
from .auction import Side
from .exceptions import InsufficientMargin, InvalidAmount, InvalidOrder, TooManyOrders, UnknownOrder
from .fixed_point import SCALE
from .limits import MAX_AMOUNT, MAX_OPEN_ORDERS_PER_SUBACCOUNT
from .margin import subaccount_risk
from .markets import require_trading
from .positions import change_open_orders
from .records import MarketKind, MarketParams, RestingOrder, TimeInForce
from .state import StateWriter, order_key
from .transactions import CancelOrder, PlaceOrder


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
    position = w.position(sid, tx.market_id)
    size = 0 if position is None else position.size
    if tx.reduce_only:
        reduces = (tx.side == Side.SELL and size > 0) or (tx.side == Side.BUY and size < 0)
        if not reduces or tx.quantity > abs(size):
            raise InvalidOrder("reduce-only order would not reduce the position")
    if w.subaccount(sid).open_orders >= MAX_OPEN_ORDERS_PER_SUBACCOUNT:
        raise TooManyOrders("too many open orders")
    buy = tx.quantity if tx.side == Side.BUY else 0
    premium = reserved_premium(params, tx.side, tx.limit_price, tx.quantity)
    change_open_orders(w, sid, tx.market_id, buy, tx.quantity - buy, 1, premium)
    w.pending_orders.put(
        order_key(tx.market_id, order_id),
        RestingOrder(
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
        ),
    )
    if not tx.reduce_only:
        risk = subaccount_risk(w, sid)
        if risk.equity < risk.initial_with_orders:
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


def apply_cancel_order(w: StateWriter, sender: bytes, tx: CancelOrder) -> None:
    """Cancel a resting order or one placed earlier in this block by the same owner."""
    sid = own_subaccount(sender, tx.subaccount_number)
    key = order_key(tx.market_id, tx.order_id)
    pending = w.pending_orders.get(key)
    if pending is not None and pending.subaccount == sid:
        w.pending_orders.put(key, None)
        release_order(w, tx.market_id, pending, pending.quantity)
        return
    resting = w.book(tx.market_id).get(tx.order_id)
    if resting is None or resting.subaccount != sid or w.cancelled_orders.get(key):
        raise UnknownOrder("no such open order of this subaccount")
    if resting.liquidation:
        raise UnknownOrder("a liquidation order cannot be cancelled")
    w.cancelled_orders.put(key, True)
    release_order(w, tx.market_id, resting, resting.quantity)
