"""Client order ids, good-til orders, stop and take-profit orders."""

from __future__ import annotations

import msgspec
import pytest

from sequencer_net.execution.encoding import encode
from sequencer_net.execution.exceptions import MalformedTransaction
from sequencer_net.execution.limits import (
    MAX_CONDITIONAL_ORDERS_PER_SUBACCOUNT,
    MAX_GOOD_TIL_SECONDS,
)
from sequencer_net.execution.receipts import FillEvent, OrderRemoved, OrderTriggered
from sequencer_net.execution.records import RestingOrder, TriggerKind
from sequencer_net.execution.state import (
    PREFIX_CLIENT_ID,
    PREFIX_CONDITIONAL,
    PREFIX_GOOD_TIL,
    load_state,
    state_entries,
)
from sequencer_net.execution.transactions import (
    CancelOrder,
    CancelOrderByClientId,
    PlaceOrder,
    decode_payload,
    encode_payload,
)
from tests.execution.execution_harness import (
    BUY,
    GTC,
    IOC,
    SELL,
    Chain,
    W,
    check_engine_invariants,
    key,
    make_genesis,
    perp_params,
    position,
    size,
    sub,
)

PERP = 1
STOP, TAKE_PROFIT = TriggerKind.STOP, TriggerKind.TAKE_PROFIT


def ready_chain() -> Chain:
    names = ("alice", "bob", "carol")
    chain = Chain(make_genesis({n: 100_000 * W for n in names}, markets=[(PERP, perp_params())]))
    chain.block([chain.prices({PERP: 100 * W})])
    return chain


def long_alice(chain: Chain, price: int = 100) -> None:
    """Alice buys 1 from Bob at `price`; the mark ends at the index."""
    chain.block(
        [
            chain.prices({PERP: price * W}),
            chain.order("alice", PERP, BUY, price * W, W),
            chain.order("bob", PERP, SELL, price * W, W),
        ]
    )
    assert size(chain.state, sub("alice"), PERP) == W


def removed(result: object, why: str) -> list[bytes]:
    events = result.events  # type: ignore[attr-defined]
    return [e.order_id for e in events if isinstance(e, OrderRemoved) and e.why == why]


def triggered(result: object) -> list[bytes]:
    events = result.events  # type: ignore[attr-defined]
    return [e.order_id for e in events if isinstance(e, OrderTriggered)]


def errors(result: object) -> list[str]:
    return [r.error for r in result.receipts]  # type: ignore[attr-defined]


def open_orders(chain: Chain, name: str) -> int:
    return chain.state.subaccounts[sub(name)].open_orders


def open_buy(chain: Chain, name: str) -> int:
    found = position(chain.state, sub(name), PERP)
    return 0 if found is None else found.open_buy


# --- encoding -------------------------------------------------------------------------


def test_an_order_without_the_new_fields_keeps_its_old_bytes_and_decodes() -> None:
    old = PlaceOrder(0, PERP, BUY, 5 * W, W, GTC, False, False)  # wad amounts below 2**64
    fields = [4, 0, PERP, BUY, 5 * W, W, 0, False, False]
    assert encode_payload(old) == msgspec.msgpack.encode(fields)
    assert decode_payload(msgspec.msgpack.encode(fields)) == old
    # Explicit zeros for the optional fields are a second encoding: refused.
    with pytest.raises(MalformedTransaction):
        decode_payload(msgspec.msgpack.encode([*fields, 0, 0, 0, 0]))
    with_id = PlaceOrder(0, PERP, BUY, 5 * W, W, GTC, False, False, client_id=9)
    assert encode_payload(with_id) == msgspec.msgpack.encode([*fields, 9])
    assert decode_payload(encode_payload(with_id)) == with_id
    # An IntEnum default encodes as its integer: trimmed the same way.
    enum_none = msgspec.structs.replace(old, trigger=TriggerKind.NONE)
    assert encode_payload(enum_none) == encode_payload(old)
    stop = msgspec.structs.replace(with_id, client_id=0, trigger=1, trigger_price=10**30)
    assert decode_payload(encode_payload(stop)) == stop  # the big-integer path trims too


def test_a_resting_order_without_the_new_fields_keeps_its_old_bytes() -> None:
    order = RestingOrder(bytes(32), bytes(21), BUY, 5 * W, W, GTC, False, False, 3, 4)
    assert encode(order) == msgspec.msgpack.encode(list(msgspec.structs.astuple(order))[:10])
    dated = msgspec.structs.replace(order, good_til=5)
    assert encode(dated) == msgspec.msgpack.encode([*msgspec.structs.astuple(order)[:10], 0, 5])


# --- client ids -----------------------------------------------------------------------


def test_a_duplicate_client_id_is_rejected_while_the_first_order_is_open() -> None:
    chain = ready_chain()
    first = chain.order("alice", PERP, BUY, 90 * W, W, client_id=7)
    again = chain.order("alice", PERP, BUY, 91 * W, W, client_id=7)
    other_sub = chain.order("bob", PERP, BUY, 89 * W, W, client_id=7)
    result = chain.block([first, again, other_sub])
    assert errors(result) == ["", "DuplicateClientId", ""]
    assert "client id 7" in result.receipts[1].reason
    result = chain.block([chain.order("alice", PERP, BUY, 92 * W, W, client_id=7)])
    assert errors(result) == ["DuplicateClientId"]
    # Once the order is gone (here: filled), the id is free again.
    chain.block([chain.order("carol", PERP, SELL, 90 * W, W)])
    assert first.tx_hash not in chain.state.books[PERP]
    result = chain.block([chain.order("alice", PERP, BUY, 80 * W, W, client_id=7)])
    assert errors(result) == [""]
    check_engine_invariants(chain.state)


def test_cancel_by_client_id_removes_the_order_and_releases_its_reservation() -> None:
    chain = ready_chain()
    placed = chain.order("alice", PERP, BUY, 90 * W, 2 * W, client_id=41)
    chain.block([placed])
    assert open_buy(chain, "alice") == 2 * W and open_orders(chain, "alice") == 1
    result = chain.block([chain.tx(key("alice"), CancelOrderByClientId(0, 41))])
    assert errors(result) == [""]
    assert PERP not in chain.state.books
    assert open_buy(chain, "alice") == 0 and open_orders(chain, "alice") == 0
    assert not chain.state.order_index.get(PREFIX_CLIENT_ID)
    # Nothing left under that id; Bob cannot cancel Alice's ids.
    result = chain.block([chain.tx(key("alice"), CancelOrderByClientId(0, 41))])
    assert errors(result) == ["UnknownOrder"]
    chain.block([chain.order("alice", PERP, BUY, 90 * W, W, client_id=42)])
    result = chain.block([chain.tx(key("bob"), CancelOrderByClientId(0, 42))])
    assert errors(result) == ["UnknownOrder"]
    check_engine_invariants(chain.state)


def test_cancel_by_client_id_in_the_block_that_placed_the_order() -> None:
    chain = ready_chain()
    placed = chain.order("alice", PERP, BUY, 100 * W, W, client_id=5)
    cancel = chain.tx(key("alice"), CancelOrderByClientId(0, 5))
    crossing = chain.order("bob", PERP, SELL, 100 * W, W)
    result = chain.block([placed, cancel, crossing])
    assert errors(result) == ["", "", ""]
    assert not [e for e in result.events if isinstance(e, FillEvent)]
    assert size(chain.state, sub("alice"), PERP) == 0
    check_engine_invariants(chain.state)


# --- good-til -------------------------------------------------------------------------


def test_a_good_til_order_expires_at_the_first_block_at_or_after_its_time() -> None:
    chain = ready_chain()
    good_til = chain.now + 3
    placed = chain.order("alice", PERP, BUY, 99 * W, 2 * W, good_til=good_til, client_id=3)
    chain.block([placed])  # now + 1
    chain.block([chain.prices({PERP: 100 * W})])  # now + 2
    assert placed.tx_hash in chain.state.books[PERP]
    assert open_buy(chain, "alice") == 2 * W
    # The block at good_til: removed before the auction, so Bob's sell does not fill it.
    result = chain.block([chain.prices({PERP: 100 * W}), chain.order("bob", PERP, SELL, 99 * W, W)])
    assert chain.now == good_til
    assert removed(result, "good-til") == [placed.tx_hash]
    assert not [e for e in result.events if isinstance(e, FillEvent)]
    assert open_buy(chain, "alice") == 0 and open_orders(chain, "alice") == 0
    assert not chain.state.order_index.get(PREFIX_GOOD_TIL)
    assert not chain.state.order_index.get(PREFIX_CLIENT_ID)
    check_engine_invariants(chain.state)


def test_good_til_is_removed_when_a_block_jumps_past_it() -> None:
    chain = ready_chain()
    placed = chain.order("alice", PERP, BUY, 99 * W, W, good_til=chain.now + 2)
    chain.block([placed])
    result = chain.block([], dt=50)
    assert removed(result, "good-til") == [placed.tx_hash]
    assert PERP not in chain.state.books
    check_engine_invariants(chain.state)


def test_good_til_must_be_in_the_future_and_within_the_horizon() -> None:
    chain = ready_chain()
    at = chain.now + 1  # the next block's time
    result = chain.block(
        [
            chain.order("alice", PERP, BUY, 90 * W, W, good_til=at),
            chain.order("alice", PERP, BUY, 90 * W, W, good_til=at - 10),
            chain.order("alice", PERP, BUY, 90 * W, W, good_til=at + MAX_GOOD_TIL_SECONDS + 1),
            chain.order("alice", PERP, BUY, 90 * W, W, good_til=at + 10, tif=IOC),
            chain.order("alice", PERP, BUY, 90 * W, W, good_til=at + MAX_GOOD_TIL_SECONDS),
        ]
    )
    assert errors(result) == ["InvalidOrder"] * 4 + [""]


# --- stop and take-profit -------------------------------------------------------------


def test_a_stop_sell_triggers_only_after_the_mark_crosses_and_trades_next_block() -> None:
    chain = ready_chain()
    long_alice(chain)
    stop = chain.order(
        "alice", PERP, SELL, 0, W, tif=IOC, reduce_only=True, trigger=STOP, trigger_price=95 * W
    )
    bid = chain.order("carol", PERP, BUY, 93 * W, W)
    result = chain.block([stop, bid])
    assert errors(result) == ["", ""]
    assert stop.tx_hash not in chain.state.books.get(PERP, {})  # waiting, not in the book
    assert open_orders(chain, "alice") == 1
    assert position(chain.state, sub("alice"), PERP).open_sell == 0  # reserves nothing
    result = chain.block([chain.prices({PERP: 96 * W})])
    assert chain.state.market_states[PERP].mark_price == 96 * W
    assert triggered(result) == []
    result = chain.block([chain.prices({PERP: 95 * W})])  # mark <= trigger at block end
    assert triggered(result) == [stop.tx_hash]
    assert size(chain.state, sub("alice"), PERP) == W  # not in this block's auction
    result = chain.block([chain.prices({PERP: 94 * W})])
    fills = [e for e in result.events if isinstance(e, FillEvent)]
    assert {(e.order_id, e.quantity, e.price) for e in fills} == {
        (stop.tx_hash, W, 93 * W),
        (bid.tx_hash, W, 93 * W),
    }
    assert [e.maker for e in fills if e.order_id == stop.tx_hash] == [False]
    assert size(chain.state, sub("alice"), PERP) == 0
    assert open_orders(chain, "alice") == 0
    assert not chain.state.order_index.get(PREFIX_CONDITIONAL)
    check_engine_invariants(chain.state)


def test_a_take_profit_sell_triggers_when_the_mark_rises_to_it() -> None:
    chain = ready_chain()
    long_alice(chain)
    tp = chain.order("alice", PERP, SELL, 104 * W, W, trigger=TAKE_PROFIT, trigger_price=105 * W)
    chain.block([tp])
    assert triggered(chain.block([chain.prices({PERP: 104 * W})])) == []
    assert triggered(chain.block([chain.prices({PERP: 105 * W})])) == [tp.tx_hash]
    chain.block([chain.prices({PERP: 105 * W})])
    resting = chain.state.books[PERP][tp.tx_hash]  # a GTC limit: it rests once placed
    assert resting.limit_price == 104 * W and resting.placed_height == chain.state.height
    assert position(chain.state, sub("alice"), PERP).open_sell == W
    check_engine_invariants(chain.state)


def test_buy_triggers_mirror_the_sell_ones() -> None:
    chain = ready_chain()
    long_alice(chain)  # Bob is short 1
    stop = chain.order("bob", PERP, BUY, 110 * W, W, trigger=STOP, trigger_price=103 * W)
    tp = chain.order("bob", PERP, BUY, 90 * W, W, trigger=TAKE_PROFIT, trigger_price=97 * W)
    chain.block([stop, tp])
    assert triggered(chain.block([chain.prices({PERP: 102 * W})])) == []
    assert triggered(chain.block([chain.prices({PERP: 103 * W})])) == [stop.tx_hash]
    assert triggered(chain.block([chain.prices({PERP: 97 * W})])) == [tp.tx_hash]
    check_engine_invariants(chain.state)


def test_triggers_fire_in_age_order_and_enter_the_next_auction_together() -> None:
    chain = ready_chain()
    long_alice(chain)
    first = chain.order("alice", PERP, SELL, 90 * W, W // 2, trigger=STOP, trigger_price=95 * W)
    second = chain.order("alice", PERP, SELL, 90 * W, W // 2, trigger=STOP, trigger_price=99 * W)
    chain.block([second])
    chain.block([first])
    result = chain.block([chain.prices({PERP: 94 * W})])
    assert triggered(result) == [second.tx_hash, first.tx_hash]
    chain.block([chain.prices({PERP: 94 * W})])
    assert set(chain.state.books[PERP]) == {first.tx_hash, second.tx_hash}
    check_engine_invariants(chain.state)


def test_a_triggered_order_that_fails_placement_is_removed() -> None:
    chain = ready_chain()
    long_alice(chain)
    stop = chain.order(
        "alice", PERP, SELL, 0, W, tif=IOC, reduce_only=True, trigger=STOP, trigger_price=95 * W
    )
    chain.block([stop])
    chain.block(
        [chain.order("alice", PERP, SELL, 100 * W, W), chain.order("carol", PERP, BUY, 100 * W, W)]
    )
    assert size(chain.state, sub("alice"), PERP) == 0  # flat before the stop fires
    chain.block([chain.prices({PERP: 94 * W})])
    result = chain.block([chain.prices({PERP: 94 * W})])
    assert removed(result, "trigger-rejected") == [stop.tx_hash]
    assert open_orders(chain, "alice") == 0
    check_engine_invariants(chain.state)


def test_conditional_orders_cancel_by_id_and_client_id_and_expire_by_good_til() -> None:
    chain = ready_chain()
    by_id = chain.order("alice", PERP, SELL, 90 * W, W, trigger=STOP, trigger_price=95 * W)
    by_cid = chain.order(
        "alice", PERP, SELL, 90 * W, W, trigger=STOP, trigger_price=95 * W, client_id=8
    )
    dated = chain.order(
        "alice", PERP, SELL, 90 * W, W, trigger=STOP, trigger_price=95 * W, good_til=chain.now + 2
    )
    chain.block([by_id, by_cid, dated])
    assert open_orders(chain, "alice") == 3
    result = chain.block(
        [
            chain.tx(key("alice"), CancelOrder(0, PERP, by_id.tx_hash)),
            chain.tx(key("alice"), CancelOrderByClientId(0, 8)),
        ]
    )
    assert errors(result) == ["", ""]
    assert sorted(removed(result, "cancelled")) == sorted([by_id.tx_hash, by_cid.tx_hash])
    assert removed(result, "good-til") == [dated.tx_hash]
    assert open_orders(chain, "alice") == 0
    assert not chain.state.order_index.get(PREFIX_CONDITIONAL)
    check_engine_invariants(chain.state)


def test_conditional_orders_are_capped_per_subaccount_and_count_as_open_orders() -> None:
    chain = ready_chain()
    txs = [
        chain.order("alice", PERP, SELL, 90 * W, W, trigger=STOP, trigger_price=95 * W)
        for _ in range(MAX_CONDITIONAL_ORDERS_PER_SUBACCOUNT + 1)
    ]
    result = chain.block(txs)
    assert errors(result) == [""] * MAX_CONDITIONAL_ORDERS_PER_SUBACCOUNT + ["TooManyOrders"]
    assert open_orders(chain, "alice") == MAX_CONDITIONAL_ORDERS_PER_SUBACCOUNT
    result = chain.block([chain.order("alice", PERP, BUY, 90 * W, W)])  # plain orders still fit
    assert errors(result) == [""]
    check_engine_invariants(chain.state)


def test_hostile_values_in_the_new_fields_give_rejected_receipts() -> None:
    chain = ready_chain()
    bad = [
        {"client_id": -1},
        {"client_id": 2**64},
        {"client_id": 2**255 - 1},
        {"good_til": -1},
        {"good_til": 2**200},
        {"trigger": 3},
        {"trigger": -1},
        {"trigger": STOP, "trigger_price": 0},
        {"trigger": STOP, "trigger_price": -W},
        {"trigger": STOP, "trigger_price": 2**255 - 1},
        {"trigger": STOP, "trigger_price": W + 1},  # off the tick grid
        {"trigger_price": 95 * W},  # a price without a kind
    ]
    txs = [chain.order("alice", PERP, BUY, 90 * W, W, **fields) for fields in bad]  # type: ignore[arg-type]
    cancels = [
        chain.tx(key("alice"), CancelOrderByClientId(0, v)) for v in (0, -1, 2**64, 2**255 - 1)
    ]
    result = chain.block([*txs, *cancels])
    assert all(not r.success and r.error for r in result.receipts), errors(result)
    assert errors(result)[-4:] == ["InvalidOrder"] * 4
    assert PERP not in chain.state.books and not any(chain.state.order_index.values())
    check_engine_invariants(chain.state)


def test_the_order_index_survives_a_reload_from_the_tree() -> None:
    chain = ready_chain()
    chain.block(
        [
            chain.order("alice", PERP, BUY, 90 * W, W, client_id=1, good_til=chain.now + 100),
            chain.order(
                "alice", PERP, SELL, 90 * W, W, trigger=STOP, trigger_price=95 * W, client_id=2
            ),
        ]
    )
    state = chain.state
    reloaded = load_state(state.store, state.state_root)
    assert state_entries(reloaded) == state_entries(state)
    assert reloaded.order_index == state.order_index
    assert len(state.order_index[PREFIX_CLIENT_ID]) == 2


def test_option_triggers_use_the_black_scholes_mark() -> None:
    from sequencer_net.execution.options import option_mark
    from sequencer_net.execution.records import OptionKind
    from sequencer_net.execution.state import StateWriter
    from tests.execution.execution_harness import option_params

    call = 7
    start = 1_700_000_000
    chain = Chain(
        make_genesis(
            {"alice": 100_000 * W},
            markets=[(call, option_params(OptionKind.CALL, 100 * W, start + 30 * 86_400))],
        )
    )
    chain.block([chain.prices({call: 100 * W}, vol=W // 2)])
    state = chain.state
    reader = StateWriter(state, state.height, state.block.timestamp)
    mark = option_mark(reader, call, state.market_params[call], state.market_states[call])
    tick = state.market_params[call].tick_size
    below, above = (mark // tick) * tick, (mark // tick + 2) * tick
    lot = state.market_params[call].lot_size
    reached = chain.order("alice", call, SELL, above, lot, trigger=TAKE_PROFIT, trigger_price=below)
    not_yet = chain.order("alice", call, SELL, above, lot, trigger=TAKE_PROFIT, trigger_price=above)
    result = chain.block([reached, not_yet, chain.prices({call: 100 * W}, vol=W // 2)])
    assert triggered(result) == [reached.tx_hash]
    [event] = [e for e in result.events if isinstance(e, OrderTriggered)]
    now = chain.state
    reader = StateWriter(now, now.height, now.block.timestamp)
    assert event.mark_price == option_mark(
        reader, call, now.market_params[call], now.market_states[call]
    )
    check_engine_invariants(chain.state)


def test_a_trigger_check_that_raises_is_skipped_and_the_order_keeps_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sequencer_net.execution import timed_orders
    from sequencer_net.execution.receipts import PhaseSkipped

    chain = ready_chain()
    stop = chain.order("alice", PERP, SELL, 90 * W, W, trigger=STOP, trigger_price=95 * W)
    chain.block([stop])

    def broken(*args: object) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(timed_orders, "_evaluate_market", broken)
    result = chain.block([chain.prices({PERP: 90 * W})])
    assert [e for e in result.events if isinstance(e, PhaseSkipped)] == [
        PhaseSkipped("trigger", PERP, b"", "ZeroDivisionError")
    ]
    assert triggered(result) == [] and all(r.success for r in result.receipts)
    monkeypatch.undo()
    assert triggered(chain.block([chain.prices({PERP: 90 * W})])) == [stop.tx_hash]
    check_engine_invariants(chain.state)
