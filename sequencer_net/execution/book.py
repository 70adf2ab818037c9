"""A market's resting orders, with the price-level aggregates the auction reads.

`Book` is a mapping order id -> RestingOrder (what the state tree stores under
b"order/" + market), plus derived data kept in step with every insert, change
and removal, none of it in the state tree (a loaded state rebuilds it from the
orders, `Book(orders)`):

- per side, the total quantity at each positive limit price and the sorted
  list of those prices; the ids at each price; the market orders (limit 0);
- the ids per owner (the first 20 bytes of the subaccount);
- the ids of liquidation orders, of reduce-only orders, of "irregular"
  orders (not a good-till-cancel limit: they never outlive an auction), and
  of orders whose id is not 32 bytes (the auction refuses them);
- the ids of orders off a (tick, lot) grid, computed for the grid last asked
  about and kept for it;
- the owners that gained an order since the last self-trade pass
  (`unchecked_owners`; a new book counts every owner as unchecked);
- the ids written since the book was copied from the committed state
  (`changed`: what the state tree must rewrite).

With them an auction walks only the levels where the book crosses, the
orders it fills and the orders this block added (matching.py), and the impact
prices walk levels from the best price only as far as their notional
(impact.py). Every result is a function of the orders alone: the aggregates
are sums and sets, and every iteration that decides an outcome is over sorted
keys.

A committed state's books are never modified: a block copies a market's book
the first time it writes to it (`copy`, C-speed copies of the containers; the
per-level and per-owner id sets are copied only when a write touches them).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Final

from .auction import ORDER_ID_BYTES, Side
from .records import RestingOrder, TimeInForce

_SIDES: Final = (Side.BUY, Side.SELL)


def owner_key(order: RestingOrder) -> bytes:
    """The address that owns the order (self-trade prevention is per address)."""
    return order.subaccount[:20]


def is_off_grid(order: RestingOrder, tick_size: int, lot_size: int) -> bool:
    """What the auction cannot take: a limit off the tick grid or negative, a
    quantity off the lot or not positive, or a side that is neither."""
    return (
        order.limit_price < 0
        or order.limit_price % tick_size != 0
        or order.quantity <= 0
        or order.quantity % lot_size != 0
        or order.side not in _SIDES
    )


class Book(Mapping[bytes, RestingOrder]):
    """One market's resting orders and their derived aggregates (module doc)."""

    __slots__ = (
        "_changed",
        "_grid",
        "_irregular",
        "_level_ids",
        "_level_qty",
        "_liquidation",
        "_malformed",
        "_market_ids",
        "_market_qty",
        "_off_grid",
        "_orders",
        "_owned_levels",
        "_owned_owners",
        "_owners",
        "_prices",
        "_reduce_only",
        "_unchecked_owners",
    )

    def __init__(self, orders: Mapping[bytes, RestingOrder] | None = None) -> None:
        self._orders: dict[bytes, RestingOrder] = {}
        self._level_qty: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self._level_ids: tuple[dict[int, set[bytes]], dict[int, set[bytes]]] = ({}, {})
        self._prices: tuple[list[int], list[int]] = ([], [])
        self._market_qty = [0, 0]
        self._market_ids: tuple[set[bytes], set[bytes]] = (set(), set())
        self._owners: dict[bytes, set[bytes]] = {}
        self._liquidation: set[bytes] = set()
        self._reduce_only: set[bytes] = set()
        self._irregular: set[bytes] = set()
        self._malformed: set[bytes] = set()
        self._grid: tuple[int, int] | None = None
        self._off_grid: set[bytes] = set()
        self._unchecked_owners: set[bytes] = set()
        self._changed: set[bytes] = set()
        # Level and owner sets this copy may write to (the others are shared).
        self._owned_levels: set[tuple[int, int]] | None = None
        self._owned_owners: set[bytes] | None = None
        for order in (orders or {}).values():
            self._insert(order)
        self._changed.clear()

    # --- the mapping ------------------------------------------------------------------

    def __getitem__(self, order_id: bytes) -> RestingOrder:
        return self._orders[order_id]

    def get(self, order_id: bytes, default: RestingOrder | None = None) -> RestingOrder | None:  # type: ignore[override]
        return self._orders.get(order_id, default)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._orders)

    def __len__(self) -> int:
        return len(self._orders)

    def values(self) -> ValuesView[RestingOrder]:
        return self._orders.values()

    def items(self) -> ItemsView[bytes, RestingOrder]:
        return self._orders.items()

    def keys(self) -> KeysView[bytes]:
        return self._orders.keys()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Book):
            return self._orders == other._orders
        if isinstance(other, Mapping):
            return self._orders == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Book({self._orders!r})"

    # --- copy-on-write ------------------------------------------------------------------

    def copy(self) -> Book:
        """A writable copy (of a committed book) that shares nothing it will write."""
        new = Book.__new__(Book)
        new._orders = self._orders.copy()
        new._level_qty = (self._level_qty[0].copy(), self._level_qty[1].copy())
        new._level_ids = (self._level_ids[0].copy(), self._level_ids[1].copy())
        new._prices = (self._prices[0].copy(), self._prices[1].copy())
        new._market_qty = self._market_qty.copy()
        new._market_ids = (self._market_ids[0].copy(), self._market_ids[1].copy())
        new._owners = self._owners.copy()
        new._liquidation = self._liquidation.copy()
        new._reduce_only = self._reduce_only.copy()
        new._irregular = self._irregular.copy()
        new._malformed = self._malformed.copy()
        new._grid = self._grid
        new._off_grid = self._off_grid.copy()
        new._unchecked_owners = self._unchecked_owners.copy()
        new._changed = set()
        new._owned_levels = set()
        new._owned_owners = set()
        return new

    def _level_set(self, side: int, price: int) -> set[bytes]:
        owned = self._owned_levels
        ids = self._level_ids[side].get(price)
        if ids is None:
            ids = self._level_ids[side][price] = set()
            if owned is not None:
                owned.add((side, price))
        elif owned is not None and (side, price) not in owned:
            ids = self._level_ids[side][price] = ids.copy()
            owned.add((side, price))
        return ids

    def _owner_set(self, owner: bytes) -> set[bytes]:
        owned = self._owned_owners
        ids = self._owners.get(owner)
        if ids is None:
            ids = self._owners[owner] = set()
            if owned is not None:
                owned.add(owner)
        elif owned is not None and owner not in owned:
            ids = self._owners[owner] = ids.copy()
            owned.add(owner)
        return ids

    # --- writes -----------------------------------------------------------------------

    def __setitem__(self, order_id: bytes, order: RestingOrder) -> None:
        assert order.order_id == order_id
        self._insert(order)

    def pop(self, order_id: bytes, *default: RestingOrder | None) -> RestingOrder | None:
        order = self._orders.get(order_id)
        if order is None:
            if default:
                return default[0]
            raise KeyError(order_id)
        self._unindex(order)
        del self._orders[order_id]
        self._changed.add(order_id)
        return order

    def _insert(self, order: RestingOrder) -> None:
        oid = order.order_id
        old = self._orders.get(oid)
        if old is not None:
            self._unindex(old)
            if old.side != order.side or old.limit_price != order.limit_price:
                self._unchecked_owners.add(owner_key(order))
        else:
            self._unchecked_owners.add(owner_key(order))
        self._orders[oid] = order
        self._changed.add(oid)
        side, limit, quantity = order.side, order.limit_price, order.quantity
        if side in _SIDES and quantity > 0:
            if limit > 0:
                totals = self._level_qty[side]
                total = totals.get(limit)
                if total is None:
                    totals[limit] = quantity
                    insort(self._prices[side], limit)
                else:
                    totals[limit] = total + quantity
                self._level_set(side, limit).add(oid)
            elif limit == 0:
                self._market_qty[side] += quantity
                self._market_ids[side].add(oid)
        self._owner_set(owner_key(order)).add(oid)
        if order.liquidation:
            self._liquidation.add(oid)
        if order.reduce_only:
            self._reduce_only.add(oid)
        if order.time_in_force != TimeInForce.GOOD_TILL_CANCEL or not order.limit_price:
            self._irregular.add(oid)
        if len(oid) != ORDER_ID_BYTES:
            self._malformed.add(oid)
        grid = self._grid
        if grid is not None and is_off_grid(order, *grid):
            self._off_grid.add(oid)

    def _unindex(self, order: RestingOrder) -> None:
        oid = order.order_id
        side, limit, quantity = order.side, order.limit_price, order.quantity
        if side in _SIDES and quantity > 0:
            if limit > 0:
                totals = self._level_qty[side]
                left = totals[limit] - quantity
                ids = self._level_set(side, limit)
                ids.discard(oid)
                if ids:
                    totals[limit] = left
                else:
                    del totals[limit]
                    del self._level_ids[side][limit]
                    prices = self._prices[side]
                    del prices[bisect_left(prices, limit)]
            elif limit == 0:
                self._market_qty[side] -= quantity
                self._market_ids[side].discard(oid)
        owner = owner_key(order)
        mine = self._owner_set(owner)
        mine.discard(oid)
        if not mine:
            del self._owners[owner]
        self._liquidation.discard(oid)
        self._reduce_only.discard(oid)
        self._irregular.discard(oid)
        self._malformed.discard(oid)
        self._off_grid.discard(oid)

    # --- derived reads ----------------------------------------------------------------

    def aggregates(self) -> tuple[object, ...]:
        """Every derived aggregate as plain values (tests compare a book kept
        up to date write by write with `Book(orders)` built from scratch)."""
        return (
            self._level_qty,
            self._level_ids,
            self._prices,
            self._market_qty,
            self._market_ids,
            self._owners,
            self._liquidation,
            self._reduce_only,
            self._irregular,
            self._malformed,
        )

    @property
    def changed(self) -> set[bytes]:
        """Ids written since this book was copied (present or removed now)."""
        return self._changed

    def liquidation_ids(self) -> list[bytes]:
        return sorted(self._liquidation)

    def reduce_only_ids(self) -> list[bytes]:
        return sorted(self._reduce_only)

    def irregular_ids(self) -> set[bytes]:
        """Orders that are not a good-till-cancel limit."""
        return self._irregular

    def malformed_ids(self) -> list[bytes]:
        """Orders whose id the auction would refuse (not 32 bytes)."""
        return sorted(self._malformed)

    def off_grid_ids(self, tick_size: int, lot_size: int) -> list[bytes]:
        """Ids of the orders `is_off_grid` for this grid, sorted. O(book) when
        the grid differs from the one last asked about, else O(result)."""
        if self._grid != (tick_size, lot_size):
            self._grid = (tick_size, lot_size)
            self._off_grid = {
                oid
                for oid, order in self._orders.items()
                if is_off_grid(order, tick_size, lot_size)
            }
        return sorted(self._off_grid)

    def owner_orders(self, owner: bytes) -> list[RestingOrder]:
        orders = self._orders
        return [orders[oid] for oid in self._owners.get(owner, ())]

    def take_unchecked_owners(self) -> list[bytes]:
        """The owners that gained an order since the last call, sorted; from now
        on none is unchecked (the caller runs the self-trade pass over them)."""
        owners = sorted(self._unchecked_owners)
        self._unchecked_owners = set()
        return owners

    def owners_of(self) -> list[bytes]:
        return sorted(self._owners)

    def has_market_orders(self, side: int) -> bool:
        return bool(self._market_ids[side])

    def market_quantity(self, side: int) -> int:
        return self._market_qty[side]

    def market_ids(self, side: int) -> set[bytes]:
        return self._market_ids[side]

    def best_limit(self, side: int) -> int | None:
        """The highest limit buy or the lowest limit sell (market orders aside)."""
        prices = self._prices[side]
        if not prices:
            return None
        return prices[-1] if side == Side.BUY else prices[0]

    def levels_between(self, side: int, low: int, high: int) -> dict[int, int]:
        """price -> total quantity of the side's limit levels with low <= price <= high."""
        prices = self._prices[side]
        totals = self._level_qty[side]
        return {p: totals[p] for p in prices[bisect_left(prices, low) : bisect_right(prices, high)]}

    def level_ids(self, side: int, price: int) -> set[bytes]:
        return self._level_ids[side].get(price, set())

    def bid_levels(self) -> Iterator[tuple[int, int]]:
        """(price, total quantity) of the limit buys, highest price first."""
        totals = self._level_qty[Side.BUY]
        for price in reversed(self._prices[Side.BUY]):
            yield price, totals[price]

    def ask_levels(self) -> Iterator[tuple[int, int]]:
        """(price, total quantity) of the limit sells, lowest price first."""
        totals = self._level_qty[Side.SELL]
        for price in self._prices[Side.SELL]:
            yield price, totals[price]


def book_of(orders: Mapping[bytes, RestingOrder] | Iterable[RestingOrder]) -> Book:
    """A Book of `orders` (a mapping by id, or the orders themselves)."""
    if isinstance(orders, Book):
        return orders
    if isinstance(orders, Mapping):
        return Book(orders)
    return Book({order.order_id: order for order in orders})
