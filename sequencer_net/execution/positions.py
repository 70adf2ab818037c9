"""Position bookkeeping: lazy settlement of the charge index, size and open-order changes.

Every change of a position's size first settles its unsettled charge (funding,
docs/execution.md "Funding"), then re-snapshots the
index of the side the position is on afterwards. That keeps the lazy scheme
exact: a position pays for exactly the index movement while it was open.
"""

from __future__ import annotations

import msgspec

from .exceptions import TooManyOrders
from .fixed_point import SCALE
from .limits import MAX_MARKETS_PER_SUBACCOUNT
from .records import MarketParams, MarketState, Position, Subaccount
from .state import INSURANCE_FUND, StateWriter, position_key

_EMPTY = Position(size=0, index_snapshot=0, open_buy=0, open_sell=0)


def side_index(state: MarketState, size: int) -> int:
    """The cumulative per-lot charge index of the side `size` is on (0 if flat)."""
    if size > 0:
        return state.long_index
    if size < 0:
        return state.short_index
    return 0


def pending_charge(params: MarketParams, state: MarketState, position: Position) -> int:
    """Quote the position owes and has not yet paid (negative: is owed).

    Exact: lots * (index_now - snapshot), integers only, no rounding.
    """
    if position.size == 0:
        return 0
    lots = abs(position.size) // params.lot_size
    return lots * (side_index(state, position.size) - position.index_snapshot)


def credit(w: StateWriter, sid: bytes, amount: int) -> None:
    """Add `amount` (may be negative) to the subaccount's collateral."""
    sub = w.subaccount(sid)
    w.subaccounts.put(sid, Subaccount(sub.collateral + amount, sub.markets, sub.open_orders))


def _store(w: StateWriter, sid: bytes, market_id: int, position: Position) -> None:
    """Write the position; delete it (and unlist the market) when it is flat and idle."""
    key = position_key(sid, market_id)
    sub = w.subaccount(sid)
    if (
        position.size == 0
        and position.open_buy == 0
        and position.open_sell == 0
        and position.open_buy_premium == 0
    ):
        if w.positions.get(key) is not None:
            w.positions.put(key, None)
            markets = tuple(m for m in sub.markets if m != market_id)
            w.subaccounts.put(sid, Subaccount(sub.collateral, markets, sub.open_orders))
        return
    if market_id not in sub.markets:
        if len(sub.markets) >= MAX_MARKETS_PER_SUBACCOUNT and sid != INSURANCE_FUND:
            raise TooManyOrders("the subaccount is in too many markets")
        markets = tuple(sorted((*sub.markets, market_id)))
        w.subaccounts.put(sid, Subaccount(sub.collateral, markets, sub.open_orders))
    w.positions.put(key, position)


def settle_charges(w: StateWriter, sid: bytes, market_id: int) -> Position:
    """Move the position's pending charge into collateral; return the updated position."""
    position = w.position(sid, market_id) or _EMPTY
    params = w.params(market_id)
    state = w.market(market_id)
    assert params is not None and state is not None
    owed = pending_charge(params, state, position)
    snapshot = side_index(state, position.size)
    if owed == 0 and snapshot == position.index_snapshot:
        return position
    credit(w, sid, -owed)
    settled = msgspec.structs.replace(position, index_snapshot=snapshot)
    _store(w, sid, market_id, settled)
    return settled


def change_size(w: StateWriter, sid: bytes, market_id: int, delta: int, price: int = 0) -> None:
    """Add `delta` (signed, a multiple of the lot) to the position at `price` and
    keep the market's open-lot count (lots held long == lots held short) in step."""
    position = settle_charges(w, sid, market_id)
    params = w.params(market_id)
    state = w.market(market_id)
    assert params is not None and state is not None
    old, new = position.size, position.size + delta
    long_lots_change = (max(new, 0) - max(old, 0)) // params.lot_size
    if long_lots_change:
        state = msgspec.structs.replace(state, open_lots=state.open_lots + long_lots_change)
        w.market_states.put(market_id, state)
    _store(
        w,
        sid,
        market_id,
        msgspec.structs.replace(
            position,
            size=new,
            index_snapshot=side_index(state, new),
            entry_notional=entry_notional_after(position, new, price),
        ),
    )


def entry_notional_after(position: Position, new: int, price: int) -> int:
    """The entry notional once the size goes from `position.size` to `new` at
    `price`: grows by the added size times the price, shrinks in proportion,
    restarts at the price when the position flips side."""
    old = position.size
    if new == 0:
        return 0
    if old == 0 or (old > 0) != (new > 0):
        return (new * price) // SCALE
    if abs(new) > abs(old):
        return position.entry_notional + ((new - old) * price) // SCALE
    return (position.entry_notional * new) // old


def change_open_orders(
    w: StateWriter,
    sid: bytes,
    market_id: int,
    buy: int,
    sell: int,
    count: int,
    premium: int = 0,
) -> None:
    """Add to the unfilled order quantities, the premium option buys reserve, and
    the subaccount's order count."""
    position = w.position(sid, market_id) or _EMPTY
    if count:
        sub = w.subaccount(sid)
        w.subaccounts.put(sid, Subaccount(sub.collateral, sub.markets, sub.open_orders + count))
    _store(
        w,
        sid,
        market_id,
        msgspec.structs.replace(
            position,
            open_buy=position.open_buy + buy,
            open_sell=position.open_sell + sell,
            open_buy_premium=position.open_buy_premium + premium,
        ),
    )
