"""The order index: client ids, good-til expiries and conditional orders.

Four key families in the state tree (state.py, "Key layout"), kept in step with
the books by the order phase:

- client ids: subaccount(21) + client id(8) -> market(4) + order id(32) of the
  open order (resting, pending or conditional) carrying it. Written when the
  order is placed, deleted when it closes (`forget_order`, called by
  `orders.release_order` whenever an order's last quantity leaves, and when a
  conditional order is removed), so a client id is free again exactly when
  its order is gone.
- good-til: good_til(8) + market(4) + order id(32), big-endian so the keys sort
  by expiry time. `expire_good_til_orders` removes every order whose time has
  come, before the block's orders and auctions.
- conditional orders: market(4) + order id(32) -> ConditionalOrder, and per
  subaccount the number it holds (for MAX_CONDITIONAL_ORDERS_PER_SUBACCOUNT).

Everything here is integer keys and canonical bytes; iteration is over sorted
keys only.
"""

from __future__ import annotations

from .encoding import decode_canonical, encode
from .receipts import OrderRemoved
from .records import ConditionalOrder, RestingOrder, Subaccount
from .state import (
    PREFIX_CLIENT_ID,
    PREFIX_CONDITIONAL,
    PREFIX_CONDITIONAL_COUNT,
    PREFIX_GOOD_TIL,
    StateWriter,
    order_key,
)

_LIVE = b"\x01"


def client_key(subaccount: bytes, client_id: int) -> bytes:
    return subaccount + client_id.to_bytes(8, "big")


def good_til_key(good_til: int, market_id: int, order_id: bytes) -> bytes:
    return good_til.to_bytes(8, "big") + order_key(market_id, order_id)


def find_client_id(w: StateWriter, subaccount: bytes, client_id: int) -> tuple[int, bytes] | None:
    """(market id, order id) of the subaccount's open order with this client id."""
    found = w.order_index[PREFIX_CLIENT_ID].get(client_key(subaccount, client_id))
    if found is None:
        return None
    return int.from_bytes(found[:4], "big"), found[4:]


def register_order(w: StateWriter, market_id: int, order: RestingOrder) -> None:
    """Index a newly placed (or newly conditional) order's client id and expiry."""
    if order.client_id:
        w.order_index[PREFIX_CLIENT_ID].put(
            client_key(order.subaccount, order.client_id), order_key(market_id, order.order_id)
        )
    if order.good_til:
        w.order_index[PREFIX_GOOD_TIL].put(
            good_til_key(order.good_til, market_id, order.order_id), _LIVE
        )


def forget_order(w: StateWriter, market_id: int, order: RestingOrder) -> None:
    """Drop a closed order's index entries (only those that still name it)."""
    if order.client_id:
        key = client_key(order.subaccount, order.client_id)
        clients = w.order_index[PREFIX_CLIENT_ID]
        if clients.get(key) == order_key(market_id, order.order_id):
            clients.put(key, None)
    if order.good_til:
        key = good_til_key(order.good_til, market_id, order.order_id)
        expiries = w.order_index[PREFIX_GOOD_TIL]
        if expiries.get(key) is not None:
            expiries.put(key, None)


# --- conditional orders ---------------------------------------------------------------


def conditional(w: StateWriter, market_id: int, order_id: bytes) -> ConditionalOrder | None:
    raw = w.order_index[PREFIX_CONDITIONAL].get(order_key(market_id, order_id))
    return None if raw is None else decode_canonical(raw, ConditionalOrder)


def conditional_count(w: StateWriter, subaccount: bytes) -> int:
    raw = w.order_index[PREFIX_CONDITIONAL_COUNT].get(subaccount)
    return 0 if raw is None else int.from_bytes(raw, "big")


def _count_conditional(w: StateWriter, subaccount: bytes, delta: int) -> None:
    count = conditional_count(w, subaccount) + delta
    value = count.to_bytes(2, "big") if count else None
    w.order_index[PREFIX_CONDITIONAL_COUNT].put(subaccount, value)
    sub = w.subaccount(subaccount)
    w.subaccounts.put(subaccount, Subaccount(sub.collateral, sub.markets, sub.open_orders + delta))


def store_conditional(w: StateWriter, market_id: int, cond: ConditionalOrder) -> None:
    """Add a new conditional order: indexed, and counted as an open order."""
    w.order_index[PREFIX_CONDITIONAL].put(order_key(market_id, cond.order.order_id), encode(cond))
    register_order(w, market_id, cond.order)
    _count_conditional(w, cond.order.subaccount, 1)


def update_conditional(w: StateWriter, market_id: int, cond: ConditionalOrder) -> None:
    w.order_index[PREFIX_CONDITIONAL].put(order_key(market_id, cond.order.order_id), encode(cond))


def remove_conditional(
    w: StateWriter, market_id: int, cond: ConditionalOrder, why: str | None
) -> None:
    """Delete a conditional order (cancelled, expired, rejected at its trigger):
    it reserved nothing, so only its count and index entries go. `why` None: no
    event (it is turning into a pending order that keeps its count)."""
    order = cond.order
    w.order_index[PREFIX_CONDITIONAL].put(order_key(market_id, order.order_id), None)
    count = conditional_count(w, order.subaccount) - 1
    w.order_index[PREFIX_CONDITIONAL_COUNT].put(
        order.subaccount, count.to_bytes(2, "big") if count else None
    )
    if why is not None:
        forget_order(w, market_id, order)
        sub = w.subaccount(order.subaccount)
        w.subaccounts.put(
            order.subaccount, Subaccount(sub.collateral, sub.markets, sub.open_orders - 1)
        )
        w.events.append(OrderRemoved(market_id, order.order_id, why))


def conditional_keys(w: StateWriter) -> list[bytes]:
    """Every conditional order's key (market(4) + order id), sorted."""
    return sorted(w.order_index[PREFIX_CONDITIONAL].live_keys())
