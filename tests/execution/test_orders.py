"""Order types and the per-market auction rules: STP, post-only, reduce-only, IOC, cancel."""

from __future__ import annotations

from sequencer_net.execution.receipts import AuctionCleared, FillEvent, OrderRemoved
from sequencer_net.execution.transactions import CancelOrder, Transfer
from tests.execution.execution_harness import (
    BUY,
    IOC,
    SELL,
    Chain,
    W,
    key,
    make_genesis,
    perp_params,
    size,
    sub,
)

PERP = 1


def ready_chain() -> Chain:
    names = ("alice", "bob", "carol")
    chain = Chain(make_genesis({n: 100_000 * W for n in names}, markets=[(PERP, perp_params())]))
    chain.block([chain.prices({PERP: 100 * W})])
    return chain


def removed(result: object, why: str) -> list[bytes]:
    return [e.order_id for e in result.events if isinstance(e, OrderRemoved) and e.why == why]  # type: ignore[attr-defined]


def oid(tx: object) -> bytes:
    return tx.tx_hash  # type: ignore[attr-defined, no-any-return]


def test_self_trade_prevention_removes_the_newer_crossing_order() -> None:
    chain = ready_chain()
    old_bid = chain.order("alice", PERP, BUY, 101 * W, W)
    fund_sub1 = chain.tx(key("alice"), Transfer(0, sub("alice", 1), 1_000 * W))
    chain.block([old_bid, chain.order("alice", PERP, SELL, 110 * W, W), fund_sub1])  # no cross
    assert len(chain.state.books[PERP]) == 2
    new_ask = chain.order("alice", PERP, SELL, 100 * W, W, number=1)  # another subaccount
    result = chain.block([new_ask])
    assert result.receipts[0].success
    assert removed(result, "self-trade") == [oid(new_ask)]
    assert not [e for e in result.events if isinstance(e, FillEvent)]
    assert oid(old_bid) in chain.state.books[PERP]


def test_post_only_that_would_cross_is_removed_and_one_that_would_not_rests() -> None:
    chain = ready_chain()
    chain.block([chain.order("bob", PERP, SELL, 102 * W, W)])
    crossing = chain.order("alice", PERP, BUY, 102 * W, W, post_only=True)
    passive = chain.order("carol", PERP, BUY, 101 * W, W, post_only=True)
    result = chain.block([crossing, passive])
    assert removed(result, "post-only-would-cross") == [oid(crossing)]
    assert oid(passive) in chain.state.books[PERP]
    assert size(chain.state, sub("alice"), PERP) == 0


def test_reduce_only_is_trimmed_to_the_position() -> None:
    chain = ready_chain()
    chain.block(
        [chain.order("alice", PERP, BUY, 100 * W, W), chain.order("bob", PERP, SELL, 100 * W, W)]
    )
    first = chain.order("alice", PERP, SELL, 100 * W, W, reduce_only=True)
    second = chain.order("alice", PERP, SELL, 100 * W, W, reduce_only=True)
    result = chain.block([first, second, chain.order("carol", PERP, BUY, 100 * W, 5 * W)])
    assert result.receipts[0].success and result.receipts[1].success
    # Both fit the position at placement; at the auction the older keeps it all.
    assert removed(result, "reduce-only") == [oid(second)]
    assert size(chain.state, sub("alice"), PERP) == 0


def test_reduce_only_that_would_grow_the_position_is_rejected() -> None:
    chain = ready_chain()
    result = chain.block([chain.order("alice", PERP, SELL, 100 * W, W, reduce_only=True)])
    assert result.receipts[0].error == "InvalidOrder"


def test_ioc_remainder_is_dropped_and_gtc_remainder_rests() -> None:
    chain = ready_chain()
    ioc = chain.order("alice", PERP, BUY, 100 * W, 3 * W, tif=IOC)
    gtc = chain.order("carol", PERP, BUY, 100 * W, 3 * W)
    result = chain.block([ioc, gtc, chain.order("bob", PERP, SELL, 100 * W, 2 * W)])
    fills = {e.order_id: e.quantity for e in result.events if isinstance(e, FillEvent)}
    assert fills[oid(ioc)] + fills[oid(gtc)] == 2 * W
    assert oid(ioc) in removed(result, "immediate-or-cancel")
    assert oid(ioc) not in chain.state.books[PERP]
    assert chain.state.books[PERP][oid(gtc)].quantity == 3 * W - fills[oid(gtc)]


def test_market_orders_trade_inside_the_price_band() -> None:
    chain = ready_chain()
    chain.block([chain.order("bob", PERP, SELL, 200 * W, W)])  # far above the 5% band
    result = chain.block([chain.order("alice", PERP, BUY, 0, W, tif=IOC)])
    assert not [e for e in result.events if isinstance(e, FillEvent)]
    chain.block([chain.order("carol", PERP, SELL, 104 * W, W)])
    result = chain.block([chain.order("alice", PERP, BUY, 0, W, tif=IOC)])
    [cleared] = [e for e in result.events if isinstance(e, AuctionCleared)]
    assert cleared.price == 104 * W


def test_cancel_removes_a_resting_order_and_only_the_owner_may_cancel() -> None:
    chain = ready_chain()
    order = chain.order("alice", PERP, BUY, 99 * W, W)
    chain.block([order])
    result = chain.block(
        [
            chain.tx(*_cancel("bob", oid(order))),
            chain.tx(*_cancel("alice", oid(order))),
        ]
    )
    assert [r.error for r in result.receipts] == ["UnknownOrder", ""]
    assert chain.state.books.get(PERP, {}) == {}
    assert chain.state.subaccounts[sub("alice")].open_orders == 0
    assert sub("alice") not in chain.state.open_subaccounts


def test_cancel_in_the_same_block_as_the_placement() -> None:
    chain = ready_chain()
    order = chain.order("alice", PERP, BUY, 100 * W, W)
    cancel = chain.tx(*_cancel("alice", oid(order)))
    result = chain.block([cancel, order, chain.order("bob", PERP, SELL, 100 * W, W)])
    assert all(r.success for r in result.receipts)  # nonce order: place, then cancel
    assert not [e for e in result.events if isinstance(e, FillEvent)]


def _cancel(name: str, order_id: bytes) -> tuple:
    return key(name), CancelOrder(0, PERP, order_id)
