"""The auctions walk only what changed (book.py, matching.py); these tests replay
a long seeded workload and assert that every block gives the same receipts,
events and state root as the oracle: the same block on the same state with
the auctions of before (reference_auctions.py: every auction walks its whole
book, `clear_batch_auction` over every order, impact prices order by order).

The workload: leveraged traders and makers in two perpetuals, the index
moving every few blocks with jumps (liquidation orders, misses, fund
take-overs), time jumps (funding), GTC / IOC / market / post-only /
reduce-only orders, client ids, good-til expiries, stops, cancels and
amends (a cancel and its replacement in one block), owners trading against
themselves across subaccounts, pauses, and resting orders put off the grid
by hand. After every block the books' derived aggregates must equal those of
a book built from scratch, and the input state's books must be untouched.
"""

from __future__ import annotations

import dataclasses
import functools
from random import Random

import msgspec
import pytest

from consensus.crypto import keccak256
from sequencer_net.execution import engine
from sequencer_net.execution.auction import AuctionOrder, Side, clear_batch_auction, clear_levels
from sequencer_net.execution.book import Book, is_off_grid
from sequencer_net.execution.engine import BlockResult, ExecutionBlock, encode_outcome
from sequencer_net.execution.impact import book_impact_prices, market_impact_prices
from sequencer_net.execution.receipts import (
    AuctionCleared,
    FillEvent,
    LiquidationFeePaid,
    LiquidationOrderPlaced,
    OrderRemoved,
)
from sequencer_net.execution.records import MarketKind, RestingOrder
from sequencer_net.execution.state import ExecutionState
from sequencer_net.execution.transactions import CancelOrder, SetMarketPaused

from . import reference_auctions
from .execution_harness import ADMIN, GTC, IOC, Chain, W, key, make_genesis, perp_params, sub

SEED = 11
TICK = W // 100
LOT = W // 1000
MARKETS = (1, 2)
TRADERS = [f"trader{i}" for i in range(24)]
MAKERS = ["maker0", "maker1"]


def snapshot(state: ExecutionState) -> dict[int, tuple[object, ...]]:
    return {mid: repr(book.aggregates()) for mid, book in state.books.items()}  # type: ignore[misc]


def check_books(state: ExecutionState) -> None:
    """Derived aggregates equal a rebuild; level walks equal order-by-order walks."""
    for mid, book in state.books.items():
        assert isinstance(book, Book)
        fresh = Book(dict(book))
        assert book.aggregates() == fresh.aggregates(), mid
        params = state.market_params[mid]
        grid = (params.tick_size, params.lot_size)
        expected = sorted(oid for oid, o in book.items() if is_off_grid(o, *grid))
        assert book.copy().off_grid_ids(*grid) == expected
        index = state.market_states[mid].oracle_price
        if params.kind == MarketKind.PERPETUAL and index:
            assert market_impact_prices(params, index, book) == market_impact_prices(
                params, index, list(book.values())
            )
            assert book_impact_prices(list(book.values()), params.impact_notional) == (
                book_impact_prices(list(fresh.values()), params.impact_notional)
            )


def execute_against_oracle(
    state: ExecutionState, block: ExecutionBlock, monkeypatch: pytest.MonkeyPatch
) -> BlockResult:
    before = snapshot(state)
    result = engine.execute_block(state, block)
    with monkeypatch.context() as patch:
        patch.setattr(engine, "run_auctions", reference_auctions.run_auctions)
        reference = engine.execute_block(state, block)
    assert encode_outcome(result) == encode_outcome(reference), f"height {block.height}"
    assert dict(result.state.books) == dict(reference.state.books)
    assert snapshot(state) == before, "the input state's books were modified"
    check_books(result.state)
    return result


def off_grid_copy(state: ExecutionState, rng: Random) -> ExecutionState:
    """The state with one resting order moved off the tick grid (only a bug or
    an old rule could leave one there; the auction must remove it)."""
    mid = rng.choice([m for m in MARKETS if state.books.get(m)])
    book = state.books[mid]
    oid = sorted(book)[rng.randrange(len(book))]
    moved = msgspec.structs.replace(book[oid], limit_price=book[oid].limit_price + TICK // 2)
    changed = dict(book)
    changed[oid] = moved
    return dataclasses.replace(state, books={**state.books, mid: Book(changed)})


def random_order(
    chain: Chain, rng: Random, index: dict[int, int], resting: list[tuple[str, int, int, bytes]]
) -> list[object]:
    mid = rng.choice(MARKETS)
    name = rng.choice(TRADERS)
    number = rng.randrange(2)
    side = rng.randrange(2)
    price = index[mid] + rng.randint(-30, 30) * TICK
    quantity = rng.randint(1, 3_000) * LOT
    roll = rng.randrange(100)
    if roll < 8:  # market order
        return [chain.order(name, mid, side, 0, quantity, tif=IOC, number=number)]
    if roll < 16:
        return [chain.order(name, mid, side, price, quantity, tif=IOC, number=number)]
    if roll < 24:
        away = price + (TICK if side == 1 else -TICK) * rng.randint(0, 40)
        return [chain.order(name, mid, side, away, quantity, post_only=True, number=number)]
    if roll < 36:  # reduce-only, resting on the passive side: later fills may undo it
        position = chain.state.positions.get(sub(name, number) + mid.to_bytes(4, "big"))
        if position is None or position.size == 0:
            return []
        side = 1 if position.size > 0 else 0
        passive = index[mid] + (1 if side == 1 else -1) * rng.randint(0, 20) * TICK
        size = min(abs(position.size), rng.randint(1, 3_000) * LOT)
        return [chain.order(name, mid, side, passive, size, reduce_only=True, number=number)]
    if roll < 39:  # the same owner on both sides, from two subaccounts
        return [
            chain.order(name, mid, 0, price + TICK, quantity, number=0),
            chain.order(name, mid, 1, price, quantity, number=1),
        ]
    if roll < 46:
        until = chain.now + rng.randint(2, 30)
        tx = chain.order(name, mid, side, price, quantity, good_til=until, number=number)
        resting.append((name, number, mid, tx.tx_hash))
        return [tx]
    if roll < 48:  # a stop
        trigger = index[mid] + (-1 if side == 1 else 1) * rng.randint(5, 60) * TICK
        return [
            chain.order(
                name,
                mid,
                side,
                0,
                quantity,
                tif=IOC,
                trigger=1,
                trigger_price=trigger,
                number=number,
            )
        ]
    if roll < 50:  # exactly at the best opposite price (a cross only at the touch)
        book = chain.state.books.get(mid)
        best = None if book is None else book.best_limit(1 - side)
        touch = price if best is None else best
        return [chain.order(name, mid, side, touch, quantity, tif=rng.choice([GTC, IOC]))]
    if roll < 54:
        cid = rng.randint(1, 5)
        return [chain.order(name, mid, side, price, quantity, client_id=cid, number=number)]
    passive = index[mid] + (1 if side == 1 else -1) * rng.randint(-3, 30) * TICK
    tx = chain.order(name, mid, side, passive, quantity, tif=GTC, number=number)
    resting.append((name, number, mid, tx.tx_hash))
    return [tx]


def test_a_long_dex_workload_matches_the_whole_book_auctions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = Random(SEED)
    deposits = {name: rng.randint(300, 3_000) * W for name in TRADERS}
    deposits.update({name: 10**9 * W for name in MAKERS})
    markets = [(mid, perp_params(max_liquidation_notional=400_000 * W)) for mid in MARKETS]
    chain = Chain(make_genesis(deposits, insurance=50_000 * W, markets=markets))
    index = {mid: 2_000 * W for mid in MARKETS}
    resting: list[tuple[str, int, int, bytes]] = []
    chain.block([chain.prices(index)])
    counts: dict[str, int] = {}
    paused: set[int] = set()
    for height in range(320):
        txs: list[object] = []
        if height % 3 == 0:
            for mid in MARKETS:
                step = rng.choice([-8, -3, -1, 0, 1, 3, 6]) if rng.random() < 0.15 else 0
                move = index[mid] * (step * 10 + rng.randint(-6, 6)) // 1_000
                index[mid] = max(100 * W, (index[mid] + move) // TICK * TICK)
            txs.append(chain.prices(index))
        if height % 4 == 0:  # makers quote both sides, a few levels deep
            for m, maker in enumerate(MAKERS):
                for mid in MARKETS:
                    for level in range(1, 4):
                        gap = (level + m) * 5 * TICK
                        txs.append(chain.order(maker, mid, 0, index[mid] - gap, 2_000 * LOT))
                        txs.append(chain.order(maker, mid, 1, index[mid] + gap, 2_000 * LOT))
        for _ in range(rng.randint(5, 25)):
            txs += random_order(chain, rng, index, resting)
        for _ in range(rng.randint(0, 4)):
            if not resting:
                break
            name, number, mid, oid = resting.pop(rng.randrange(len(resting)))
            txs.append(chain.tx(key(name), CancelOrder(number, mid, oid)))
            if rng.random() < 0.5:  # an amend: the replacement in the same block
                side = rng.randrange(2)
                price = index[mid] + rng.randint(-10, 10) * TICK
                tx = chain.order(name, mid, side, price, rng.randint(1, 50) * LOT, number=number)
                txs.append(tx)
                resting.append((name, number, mid, tx.tx_hash))
        for mid in sorted(paused):
            if rng.random() < 0.5:
                txs.append(chain.tx(ADMIN, SetMarketPaused(mid, False)))
                paused.discard(mid)
        if rng.random() < 0.02:
            mid = rng.choice(MARKETS)
            txs.append(chain.tx(ADMIN, SetMarketPaused(mid, True)))
            paused.add(mid)
        if height % 50 == 25 and any(chain.state.books.get(m) for m in MARKETS):
            chain.state = off_grid_copy(chain.state, rng)
        rng.shuffle(txs)
        dt = rng.choice([1, 1, 1, 1, 2, 5, 30, 900]) if height % 3 else 1
        block = ExecutionBlock(chain.state.height + 1, chain.now + dt, tuple(txs))  # type: ignore[arg-type]
        result = execute_against_oracle(chain.state, block, monkeypatch)
        chain.state = result.state
        for event in result.events:
            counts[type(event).__name__] = counts.get(type(event).__name__, 0) + 1
            if isinstance(event, OrderRemoved):
                counts[event.why] = counts.get(event.why, 0) + 1
    # The workload reached what it is meant to cover.
    for kind in (AuctionCleared, FillEvent, LiquidationOrderPlaced, LiquidationFeePaid):
        assert counts.get(kind.__name__, 0) > 0, kind
    for why in ("self-trade", "post-only-would-cross", "off-grid", "good-til", "reduce-only"):
        assert counts.get(why, 0) > 0, why


def test_a_copied_book_shares_nothing_it_writes() -> None:
    def order(n: int, side: int, price: int, owner: str = "a") -> RestingOrder:
        return RestingOrder(
            order_id=n.to_bytes(32, "big"),
            subaccount=sub(owner),
            side=side,
            limit_price=price * TICK,
            quantity=LOT,
            time_in_force=GTC,
            post_only=False,
            reduce_only=False,
            placed_height=1,
            placed_nonce=n,
        )

    base = Book({o.order_id: o for o in [order(1, 0, 10), order(2, 0, 10), order(3, 1, 12)]})
    before = repr(base.aggregates())
    copy = base.copy()
    copy.pop((1).to_bytes(32, "big"))
    copy[(4).to_bytes(32, "big")] = order(4, 1, 12, "b")
    copy[(2).to_bytes(32, "big")] = msgspec.structs.replace(order(2, 0, 10), quantity=3 * LOT)
    assert repr(base.aggregates()) == before
    assert copy.aggregates() == Book(dict(copy)).aggregates()
    assert dict(copy.levels_between(0, 0, 100 * TICK)) == {10 * TICK: 3 * LOT}
    assert copy.changed == {(n).to_bytes(32, "big") for n in (1, 2, 4)}


def level_members(
    at: dict[tuple[Side, int], list[AuctionOrder]], side: Side, price: int | None
) -> list[AuctionOrder]:
    return at.get((side, price or 0), [])


def test_clearing_over_the_crossing_levels_equals_clearing_every_order() -> None:
    """`clear_levels` given only the levels from the lowest sell to the highest
    buy gives what `clear_batch_auction` gives for every order of the book."""
    rng = Random(SEED)
    for case in range(400):
        orders = []
        for n in range(rng.randint(1, 40)):
            orders.append(
                AuctionOrder(
                    order_id=keccak256(bytes([case % 256, n])),
                    side=Side(rng.randrange(2)),
                    limit_price=rng.randint(90, 110) * TICK,
                    quantity=rng.randint(1, 30) * LOT,
                    arrival=rng.randrange(3),
                )
            )
        reference = rng.randint(80, 120) * TICK
        salt = bytes([case % 7])
        whole = clear_batch_auction(
            orders, tick_size=TICK, lot_size=LOT, reference_price=reference, tie_salt=salt
        )
        buys = [o.limit_price or 0 for o in orders if o.side == Side.BUY]
        sells = [o.limit_price or 0 for o in orders if o.side == Side.SELL]
        low, high = min(sells, default=0), max(buys, default=0)
        at: dict[tuple[Side, int], list[AuctionOrder]] = {}
        for o in sorted(orders, key=lambda o: o.order_id):
            if low <= (o.limit_price or 0) <= high:
                at.setdefault((o.side, o.limit_price or 0), []).append(o)
        totals: list[dict[int, int]] = [{}, {}]
        for (side, price), members in at.items():
            totals[side][price] = sum(o.quantity for o in members)
        levels = clear_levels(
            totals[Side.BUY],
            totals[Side.SELL],
            functools.partial(level_members, at),
            tick_size=TICK,
            lot_size=LOT,
            reference_price=reference,
            tie_salt=salt,
        )
        assert levels == whole, case
