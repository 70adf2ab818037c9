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
- triggers: market(4) + direction(1) + trigger price(32) + order id(32) for
  every waiting conditional order. Direction 0 ("falls": sell stop, buy
  take-profit) triggers when mark <= price, direction 1 ("rises") when
  mark >= price, so the orders a mark triggers are two contiguous key ranges
  (`crossed_trigger_keys`): a block looks only at those, not at every
  waiting order. Once triggered, an order moves to the armed set
  (market(4) + order id(32)) until the next block places it.

Everything here is integer keys and canonical bytes; iteration is over sorted
keys only. `sorted_keys` keeps the sorted key list of the last snapshot
mapping it was asked about: a cache (the mappings of a committed state are
never modified), never an input to any outcome.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping

import msgspec

from .auction import Side
from .encoding import decode_canonical, encode
from .receipts import OrderRemoved
from .records import ConditionalOrder, RestingOrder, Subaccount, TriggerKind
from .state import (
    PREFIX_ARMED,
    PREFIX_CLIENT_ID,
    PREFIX_CONDITIONAL,
    PREFIX_CONDITIONAL_COUNT,
    PREFIX_GOOD_TIL,
    PREFIX_TRIGGER,
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


FALLS, RISES = b"\x00", b"\x01"
"""Trigger directions: FALLS triggers at mark <= price, RISES at mark >= price."""


def direction(cond: ConditionalOrder) -> bytes:
    """A sell stop and a buy take-profit wait for the mark to fall; the others to rise."""
    falls = (cond.trigger == TriggerKind.STOP) == (cond.order.side == Side.SELL)
    return FALLS if falls else RISES


def trigger_key(market_id: int, cond: ConditionalOrder) -> bytes:
    return (
        market_id.to_bytes(4, "big")
        + direction(cond)
        + cond.trigger_price.to_bytes(32, "big")
        + cond.order.order_id
    )


def store_conditional(w: StateWriter, market_id: int, cond: ConditionalOrder) -> None:
    """Add a new conditional order: indexed, and counted as an open order."""
    w.order_index[PREFIX_CONDITIONAL].put(order_key(market_id, cond.order.order_id), encode(cond))
    w.order_index[PREFIX_TRIGGER].put(trigger_key(market_id, cond), _LIVE)
    register_order(w, market_id, cond.order)
    _count_conditional(w, cond.order.subaccount, 1)


def arm_conditional(w: StateWriter, market_id: int, cond: ConditionalOrder, height: int) -> None:
    """The mark crossed the trigger: it leaves the trigger index and waits in the
    armed set for the next block's auction."""
    armed = msgspec.structs.replace(cond, triggered_at=height)
    okey = order_key(market_id, cond.order.order_id)
    w.order_index[PREFIX_CONDITIONAL].put(okey, encode(armed))
    w.order_index[PREFIX_TRIGGER].put(trigger_key(market_id, cond), None)
    w.order_index[PREFIX_ARMED].put(okey, _LIVE)


def remove_conditional(
    w: StateWriter, market_id: int, cond: ConditionalOrder, why: str | None
) -> None:
    """Delete a conditional order (cancelled, expired, rejected at its trigger):
    it reserved nothing, so only its count and index entries go. `why` None: no
    event (it is turning into a pending order that keeps its count)."""
    order = cond.order
    okey = order_key(market_id, order.order_id)
    w.order_index[PREFIX_CONDITIONAL].put(okey, None)
    if cond.triggered_at:
        w.order_index[PREFIX_ARMED].put(okey, None)
    else:
        w.order_index[PREFIX_TRIGGER].put(trigger_key(market_id, cond), None)
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


# --- ordered reads --------------------------------------------------------------------

_SORTED: dict[bytes, tuple[Mapping[bytes, bytes], list[bytes]]] = {}


def sorted_keys(prefix: bytes, mapping: Mapping[bytes, bytes]) -> list[bytes]:
    """`sorted(mapping)`, computed once per snapshot mapping (see module doc)."""
    cached = _SORTED.get(prefix)
    if cached is not None and cached[0] is mapping:
        return cached[1]
    keys = sorted(mapping)
    _SORTED[prefix] = (mapping, keys)
    return keys


def live_keys_between(w: StateWriter, prefix: bytes, low: bytes, high: bytes) -> list[bytes]:
    """The live keys k of one index family with low <= k < high, sorted: the
    committed ones in that range (bisected) that this block did not delete,
    plus the ones this block added."""
    overlay = w.order_index[prefix]
    base = w.base.order_index.get(prefix, {})
    ordered = sorted_keys(prefix, base)
    found = {
        key
        for key in ordered[bisect_left(ordered, low) : bisect_left(ordered, high)]
        if overlay.get(key) is not None
    }
    found.update(k for k, v in overlay.changes() if v is not None and low <= k < high)
    return sorted(found)


def crossed_trigger_keys(w: StateWriter, market_id: int, mark: int) -> list[bytes]:
    """Trigger keys of the market's waiting orders that `mark` triggers."""
    market = market_id.to_bytes(4, "big")
    falls = live_keys_between(
        w, PREFIX_TRIGGER, market + FALLS + mark.to_bytes(32, "big"), market + RISES
    )
    rises = live_keys_between(
        w, PREFIX_TRIGGER, market + RISES, market + RISES + (mark + 1).to_bytes(32, "big")
    )
    return falls + rises


def market_trigger_keys(w: StateWriter, market_id: int) -> list[bytes]:
    """Trigger keys of every waiting order of the market."""
    market = market_id.to_bytes(4, "big")
    return live_keys_between(w, PREFIX_TRIGGER, market, market + b"\x02")


def armed_keys(w: StateWriter) -> list[bytes]:
    """market(4) + order id of every triggered order waiting for its auction, sorted."""
    return sorted(w.order_index[PREFIX_ARMED].live_keys())
