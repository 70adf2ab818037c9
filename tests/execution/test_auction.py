"""The uniform-price batch auction: hand-worked examples and brute-force properties.

The rule under test is in the docstring of `clear_batch_auction`. Brute-force
oracles below re-derive the price by trying every grid price and the fills by
walking the orders one by one, so they share no code with the module.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import keccak256
from sequencer_net.execution.auction import (
    AuctionOrder,
    ClearingResult,
    Fill,
    InvalidAuctionInput,
    Side,
    clear_batch_auction,
    round_to_tick,
)


def oid(n: int) -> bytes:
    return n.to_bytes(32, "big")


def buy(n: int, limit: int | None, quantity: int, arrival: int = 0) -> AuctionOrder:
    return AuctionOrder(oid(n), Side.BUY, limit, quantity, arrival)


def sell(n: int, limit: int | None, quantity: int, arrival: int = 0) -> AuctionOrder:
    return AuctionOrder(oid(n), Side.SELL, limit, quantity, arrival)


def clear(
    orders: Sequence[AuctionOrder],
    *,
    tick: int = 1,
    lot: int = 1,
    ref: int | None = None,
    salt: bytes = b"",
) -> ClearingResult:
    return clear_batch_auction(
        orders, tick_size=tick, lot_size=lot, reference_price=ref, tie_salt=salt
    )


def fills_by_n(result: ClearingResult) -> dict[int, int]:
    return {int.from_bytes(f.order_id, "big"): f.quantity for f in result.fills}


# --- hand-worked examples -----------------------------------------------------------


def test_simple_cross_rations_the_long_side() -> None:
    # p=99: D=10 S=0; p=100: D=5 S=8 (V=5, imbalance 3); p=101: the same -> lower, 100.
    result = clear([buy(1, 101, 5), buy(2, 99, 5), sell(3, 100, 8)])
    assert result == ClearingResult(price=100, volume=5, fills=(Fill(oid(1), 5), Fill(oid(3), 5)))


def test_no_cross_trades_nothing() -> None:
    result = clear([buy(1, 99, 5), sell(2, 100, 5), buy(3, 98, 1)], ref=99)
    assert result == ClearingResult(price=None, volume=0, fills=())


def test_empty_batch_trades_nothing() -> None:
    assert clear([], ref=100) == ClearingResult(price=None, volume=0, fills=())


def test_one_sided_batch_trades_nothing() -> None:
    assert clear([buy(1, None, 5), buy(2, 100, 5)], ref=100).price is None


def test_imbalance_picks_a_price_between_submitted_limits() -> None:
    # The pitfall of DESIGN.md section 6. V = 10 on all of [100, 110], but
    # p=100: D=15 S=10 (imbalance 5); 101..109: D=10 S=10 (0); p=110: D=10 S=15 (5).
    # A search over submitted limits only would clear at 100 or 110.
    orders = [buy(1, 110, 10), buy(2, 100, 5), sell(3, 100, 10), sell(4, 110, 5)]
    assert clear(orders).price == 101  # no reference: lowest of 101..109
    assert clear(orders, ref=105).price == 105
    assert clear(orders, ref=1_000).price == 109
    assert clear(orders, ref=100).price == 101  # imbalance outranks the reference
    result = clear(orders, ref=105)
    assert result.volume == 10
    assert fills_by_n(result) == {1: 10, 3: 10}


def test_reference_picks_a_price_that_is_no_submitted_limit() -> None:
    # V = 10 with imbalance 0 on every price of [100, 104].
    orders = [buy(1, 104, 10), sell(2, 100, 10)]
    assert clear(orders, ref=103).price == 103
    assert clear(orders, ref=1_000).price == 104  # clamped into the range
    assert clear(orders, ref=50).price == 100  # below the range V is 0


def test_imbalance_outranks_reference_and_lower_price() -> None:
    # p=100: D=10 S=8 (V=8, imbalance 2); p=101: D=8 S=8 (V=8, imbalance 0).
    orders = [buy(1, 101, 8), buy(2, 100, 2), sell(3, 100, 8)]
    result = clear(orders, ref=100)
    assert result.price == 101
    assert fills_by_n(result) == {1: 8, 3: 8}


def test_lower_price_breaks_the_last_tie() -> None:
    orders = [buy(1, 110, 10), sell(2, 100, 10)]
    assert clear(orders, tick=2).price == 100  # no reference
    # 105 is off the grid: 104 and 106 are equally close, the lower wins.
    assert clear(orders, tick=2, ref=105).price == 104
    assert clear(orders, tick=2, ref=106).price == 106


def test_market_orders_only_clear_at_the_rounded_reference() -> None:
    orders = [buy(1, None, 7), sell(2, None, 5)]
    result = clear(orders, tick=5, ref=1_003)  # 1003 rounds to 1005
    assert result == ClearingResult(price=1_005, volume=5, fills=(Fill(oid(1), 5), Fill(oid(2), 5)))
    assert clear(orders, tick=5, ref=1_002).price == 1_000
    assert clear(orders, tick=4, ref=1_002).price == 1_000  # exactly half a tick: down
    assert clear(orders, tick=5, ref=None) == ClearingResult(price=None, volume=0, fills=())


def test_market_sell_against_one_limit_buy_clears_at_its_limit() -> None:
    # Without a reference the range is just {100}; the price is not one tick.
    result = clear([sell(1, None, 10), buy(2, 100, 5)])
    assert (result.price, result.volume) == (100, 5)
    assert clear([sell(1, None, 10), buy(2, 100, 5)], ref=90).price == 90


def test_market_orders_have_priority_over_limits_at_the_price() -> None:
    # Buys are rationed at p=100 (D=10 > S=5): the market buy fills first.
    result = clear([buy(1, 100, 6), buy(2, None, 4), sell(3, 100, 5)])
    assert result.price == 100
    assert fills_by_n(result) == {1: 1, 2: 4, 3: 5}
    # Market buys alone exceed the volume: they share it and the limit gets nothing.
    result = clear([buy(1, 100, 6), buy(2, None, 6), buy(4, None, 4), sell(3, 100, 5)])
    assert fills_by_n(result) == {2: 3, 4: 2, 3: 5}


def test_better_limits_fill_before_the_marginal_level() -> None:
    # p=100, V=8: the buy at 103 is strictly better and fills; the level at 100 shares 3.
    result = clear([buy(1, 103, 5), buy(2, 100, 4), buy(3, 100, 2), sell(4, 100, 8)])
    assert result.price == 100
    assert fills_by_n(result) == {1: 5, 2: 2, 3: 1, 4: 8}


def test_marginal_level_above_the_price_when_nobody_sits_at_it() -> None:
    # V = 5 on [100, 110] with imbalance 5 throughout: the lower price, 100, wins;
    # the buy at 110 is the only (and so the marginal) buy level.
    result = clear([buy(1, 110, 10), sell(2, 100, 5)])
    assert result == ClearingResult(price=100, volume=5, fills=(Fill(oid(1), 5), Fill(oid(2), 5)))


def test_pro_rata_remainder_lot_goes_to_the_largest_remainder_not_the_lowest_id() -> None:
    # lot 10. p=100: D=90 S=120 -> V=90. Sell 9 at 99 is better: fills 20.
    # The level at 100 (Q=100 = 10 lots) shares R=70 (7 lots):
    #   id 1: 7*30 / 100 = 2.1 -> 2 lots; id 2: 7*40 / 100 = 2.8 -> 2; id 3: 2.1 -> 2.
    # One lot is left over; it goes to the largest remainder (id 2, 0.8), not to
    # the lowest order id (1), which a sender could grind for.
    orders = [
        sell(3, 100, 30),
        sell(1, 100, 30),
        sell(2, 100, 40),
        sell(9, 99, 20),
        buy(5, 100, 90),
    ]
    result = clear(orders, lot=10)
    assert (result.price, result.volume) == (100, 90)
    assert fills_by_n(result) == {1: 20, 2: 30, 3: 20, 5: 90, 9: 20}
    assert [f.order_id for f in result.fills] == sorted(f.order_id for f in result.fills)


def test_equal_remainders_go_to_the_earlier_arrival_before_any_id() -> None:
    # Ten 1-lot sells at 100 against a 7-lot buy: every share is 0.7, all
    # remainders equal. The three orders that arrived at height 1 win, whatever
    # their ids; the other four lots go among the height-2 orders.
    sells = [sell(n, 100, 1, arrival=1 if n >= 8 else 2) for n in range(1, 11)]
    result = clear([*sells, buy(99, 100, 7)])
    fills = fills_by_n(result)
    assert all(fills.get(n) == 1 for n in (8, 9, 10))
    assert sum(fills.get(n, 0) for n in range(1, 8)) == 4


def test_equal_remainders_and_arrival_are_ordered_by_salted_hash_not_by_id() -> None:
    sells = [sell(n, 100, 1) for n in range(1, 11)]
    orders = [*sells, buy(99, 100, 3)]
    unsalted = {n for n, q in fills_by_n(clear(orders)).items() if n != 99}
    assert unsalted == {1, 2, 3}  # no salt: ascending id (the documented fallback)
    winners = {
        frozenset(n for n, q in fills_by_n(clear(orders, salt=bytes([i]))).items() if n != 99)
        for i in range(8)
    }
    assert len(winners) > 1  # the block salt decides, so a low id buys nothing
    for salt in (b"a", b"b"):
        ranked = sorted(range(1, 11), key=lambda n: keccak256(salt + oid(n)))
        salted = {n for n in fills_by_n(clear(orders, salt=salt)) if n != 99}
        assert salted == set(ranked[:3])


def test_round_to_tick() -> None:
    assert [round_to_tick(p, 4) for p in (1, 2, 3, 5, 6, 7, 8)] == [4, 4, 4, 4, 4, 8, 8]
    assert round_to_tick(10**18 + 5 * 10**15, 10**16) == 10**18  # half a tick: down


@pytest.mark.parametrize(
    ("orders", "tick", "lot", "ref", "message"),
    [
        ([], 0, 1, None, "tick_size"),
        ([], True, 1, None, "tick_size"),
        ([], 1, -1, None, "lot_size"),
        ([], 1, 1, 0, "reference_price"),
        ([buy(1, 100, 1), sell(1, 100, 1)], 1, 1, None, "duplicate"),
        ([AuctionOrder(b"x" * 31, Side.BUY, 100, 1)], 1, 1, None, "order_id"),
        ([AuctionOrder("x" * 32, Side.BUY, 100, 1)], 1, 1, None, "order_id"),  # type: ignore[arg-type]
        ([AuctionOrder(oid(1), 0, 100, 1)], 1, 1, None, "side"),  # type: ignore[arg-type]
        ([buy(1, 0, 1)], 1, 1, None, "limit_price"),
        ([buy(1, 101, 1)], 2, 1, None, "limit_price"),
        ([buy(1, True, 1)], 1, 1, None, "limit_price"),
        ([buy(1, 100, 0)], 1, 1, None, "quantity"),
        ([buy(1, 100, 5)], 1, 2, None, "quantity"),
        ([(oid(1), Side.BUY, 100, 1)], 1, 1, None, "AuctionOrder"),
    ],
)
def test_invalid_input_is_rejected(
    orders: list[Any], tick: int, lot: int, ref: int | None, message: str
) -> None:
    with pytest.raises(InvalidAuctionInput, match=message):
        clear_batch_auction(orders, tick_size=tick, lot_size=lot, reference_price=ref)


# --- brute-force oracles --------------------------------------------------------------


def demand(orders: list[AuctionOrder], p: int) -> int:
    return sum(
        o.quantity
        for o in orders
        if o.side is Side.BUY and (o.limit_price is None or o.limit_price >= p)
    )


def supply(orders: list[AuctionOrder], p: int) -> int:
    return sum(
        o.quantity
        for o in orders
        if o.side is Side.SELL and (o.limit_price is None or o.limit_price <= p)
    )


def brute_force_price(
    orders: list[AuctionOrder], tick: int, ref: int | None
) -> tuple[int | None, int]:
    """Try every grid price of the candidate range; return (price, volume)."""
    bounds = [o.limit_price for o in orders if o.limit_price is not None]
    if ref is not None:
        # nearest positive grid price, a tie to the lower, found by search
        grid = range(tick, ref + 2 * tick, tick)
        bounds.append(min(grid, key=lambda g: (abs(g - ref), g)))
    if not bounds:
        return None, 0
    best: tuple[int, int, int, int] | None = None
    for p in range(min(bounds), max(bounds) + 1, tick):
        d, s = demand(orders, p), supply(orders, p)
        key = (-min(d, s), abs(d - s), 0 if ref is None else abs(p - ref), p)
        if best is None or key < best:
            best = key
    assert best is not None
    if best[0] == 0:
        return None, 0
    return best[3], -best[0]


def brute_force_fills(
    orders: list[AuctionOrder], price: int, volume: int, lot: int
) -> dict[bytes, int]:
    """Walk each side's eligible orders level by level, most aggressive first."""
    fills: dict[bytes, int] = {}
    for side in Side:

        def rank(o: AuctionOrder, side: Side = side) -> int:
            if o.limit_price is None:
                return -(10**9)  # market orders first
            return -o.limit_price if side is Side.BUY else o.limit_price

        eligible = [
            o
            for o in orders
            if o.side is side
            and (
                o.limit_price is None
                or (o.limit_price >= price if side is Side.BUY else o.limit_price <= price)
            )
        ]
        left = volume
        for level in sorted({rank(o) for o in eligible}):
            members = [o for o in eligible if rank(o) == level]
            total = sum(o.quantity for o in members)
            if total <= left:
                for o in members:
                    fills[o.order_id] = o.quantity
                left -= total
                continue
            shares = {o.order_id: (left * o.quantity // total) // lot * lot for o in members}
            spare = left - sum(shares.values())
            # Largest exact fractional share first, then earlier arrival, then id.
            members.sort(
                key=lambda o: (
                    -Fraction(left * o.quantity, total * lot) + shares[o.order_id] // lot,
                    o.arrival,
                    o.order_id,
                )
            )
            for o in members:
                if spare and shares[o.order_id] < o.quantity:
                    shares[o.order_id] += lot
                    spare -= lot
            assert spare == 0
            fills.update(shares)
            left = 0
            break
    return {k: v for k, v in fills.items() if v}


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[AuctionOrder], int, int, int | None]:
    tick = draw(st.sampled_from([1, 2, 5]))
    lot = draw(st.sampled_from([1, 3]))
    top = draw(st.sampled_from([3, 12]))  # 3: many orders share a price level
    ids = draw(st.lists(st.binary(min_size=32, max_size=32), max_size=10, unique=True))
    orders = []
    for order_id in ids:
        is_market = draw(st.integers(0, 4)) == 0
        orders.append(
            AuctionOrder(
                order_id=order_id,
                side=draw(st.sampled_from(Side)),
                limit_price=None if is_market else draw(st.integers(1, top)) * tick,
                quantity=draw(st.integers(1, 6)) * lot,
                arrival=draw(st.integers(0, 2)),
            )
        )
    ref = draw(st.none() | st.integers(1, (top + 2) * tick))
    return orders, tick, lot, ref


@settings(max_examples=400, deadline=None)
@given(batches())
def test_price_and_volume_match_the_brute_force_rule(
    batch: tuple[list[AuctionOrder], int, int, int | None],
) -> None:
    orders, tick, lot, ref = batch
    result = clear(orders, tick=tick, lot=lot, ref=ref)
    assert (result.price, result.volume) == brute_force_price(orders, tick, ref)
    if ref is None and all(o.limit_price is None for o in orders):
        return  # no price is defined: nothing trades (checked by the brute force above)
    # V at the chosen price is the maximum over the whole grid, not only the range.
    highest = max([o.limit_price or 0 for o in orders] + [ref or 0]) + 3 * tick
    for p in range(tick, highest, tick):
        assert min(demand(orders, p), supply(orders, p)) <= result.volume


@settings(max_examples=400, deadline=None)
@given(batches())
def test_fills_match_the_brute_force_walk_and_conserve(
    batch: tuple[list[AuctionOrder], int, int, int | None],
) -> None:
    orders, tick, lot, ref = batch
    result = clear(orders, tick=tick, lot=lot, ref=ref)
    if result.price is None:
        assert result.fills == ()
        return
    by_id = {o.order_id: o for o in orders}
    bought = sold = 0
    for fill in result.fills:
        order = by_id[fill.order_id]
        assert 0 < fill.quantity <= order.quantity
        assert fill.quantity % lot == 0
        if order.side is Side.BUY:
            assert order.limit_price is None or order.limit_price >= result.price
            bought += fill.quantity
        else:
            assert order.limit_price is None or order.limit_price <= result.price
            sold += fill.quantity
    assert bought == sold == result.volume
    ids = [f.order_id for f in result.fills]
    assert ids == sorted(set(ids))  # ascending, no order twice
    assert fills_by_id(result) == brute_force_fills(orders, result.price, result.volume, lot)


def fills_by_id(result: ClearingResult) -> dict[bytes, int]:
    return {f.order_id: f.quantity for f in result.fills}


@settings(max_examples=300, deadline=None)
@given(batches(), st.randoms(use_true_random=False))
def test_shuffling_the_input_never_changes_the_result(
    batch: tuple[list[AuctionOrder], int, int, int | None], rng: Any
) -> None:
    orders, tick, lot, ref = batch
    shuffled = list(orders)
    rng.shuffle(shuffled)
    assert clear(shuffled, tick=tick, lot=lot, ref=ref) == clear(
        orders, tick=tick, lot=lot, ref=ref
    )
    assert clear(tuple(reversed(orders)), tick=tick, lot=lot, ref=ref) == clear(
        orders, tick=tick, lot=lot, ref=ref
    )


@settings(max_examples=200, deadline=None)
@given(batches(), st.integers(1, 10**6))
def test_scaling_prices_and_quantities_scales_the_result(
    batch: tuple[list[AuctionOrder], int, int, int | None], scale: int
) -> None:
    # Scale-agnostic: multiplying tick, lot, prices and quantities by the same
    # factor (wad does this) multiplies price, volume and fills by it.
    orders, tick, lot, ref = batch
    scaled = [
        AuctionOrder(
            o.order_id,
            o.side,
            None if o.limit_price is None else o.limit_price * scale,
            o.quantity * scale,
            o.arrival,
        )
        for o in orders
    ]
    base = clear(orders, tick=tick, lot=lot, ref=ref)
    big = clear(
        scaled, tick=tick * scale, lot=lot * scale, ref=None if ref is None else ref * scale
    )
    assert big.price == (None if base.price is None else base.price * scale)
    assert big.volume == base.volume * scale
    assert big.fills == tuple(Fill(f.order_id, f.quantity * scale) for f in base.fills)
