"""Orders that change with the clock or the mark: good-til expiry, stop and
take-profit triggers (docs/execution.md, "Client ids, good-til and conditional
orders").

Three block-level steps, each one unit per market (StateWriter.phase):

    expire_good_til_orders    market clock, before any order of the block:
                              every order (resting or conditional) whose
                              good_til <= block time is removed like a cancel
                              (OrderRemoved "good-til")
    place_triggered_orders    start of the order phase: every conditional order
                              triggered at the end of the previous block becomes
                              a pending order of this block's auction (placed at
                              this height, so it is a taker), or is removed
                              ("trigger-rejected") if it no longer passes the
                              placement checks (market trading, reduce-only,
                              market slots, initial margin)
    evaluate_triggers         end of the block, after marks and liquidations:
                              every waiting conditional order whose trigger the
                              market's mark crossed is marked triggered
                              (OrderTriggered)

Order is deterministic: markets by id; within a market by age (placement height,
then nonce, then order id).

Cost: the good-til index and the trigger index are read through sorted key
ranges (order_index.live_keys_between), so a block touches the orders that
are due or crossed, plus one sort of an index's keys in a block after it
changed; waiting orders that nothing crossed cost nothing per block.
"""

from __future__ import annotations

import msgspec

from .exceptions import EngineInvariantBroken, MarketNotTrading, TransactionRejected
from .markets import is_expired, is_oracle_fresh, require_trading
from .options import option_mark
from .order_index import (
    FALLS,
    arm_conditional,
    armed_keys,
    conditional,
    crossed_trigger_keys,
    direction,
    live_keys_between,
    market_trigger_keys,
    remove_conditional,
)
from .orders import enter_order, release_order
from .receipts import OrderRemoved, OrderTriggered
from .records import ConditionalOrder, MarketKind
from .state import PREFIX_GOOD_TIL, StateWriter, order_key


def _age(cond: ConditionalOrder) -> tuple[int, int, bytes]:
    return (cond.order.placed_height, cond.order.placed_nonce, cond.order.order_id)


def triggers_at(cond: ConditionalOrder, mark: int) -> bool:
    """Has `mark` crossed the trigger? Sell stop: mark <= trigger; sell
    take-profit: mark >= trigger; a buy the mirror of each."""
    falls = direction(cond) == FALLS
    return mark <= cond.trigger_price if falls else mark >= cond.trigger_price


# --- good-til -------------------------------------------------------------------------


def expire_good_til_orders(w: StateWriter) -> None:
    """Remove every order whose good-til time is at or before the block time."""
    bound = (w.timestamp + 1).to_bytes(8, "big")
    by_market: dict[int, list[bytes]] = {}
    for key in live_keys_between(w, PREFIX_GOOD_TIL, b"", bound):
        by_market.setdefault(int.from_bytes(key[8:12], "big"), []).append(key)
    for market_id in sorted(by_market):
        if w.phase_skipped("good-til", market_id):
            continue
        with w.phase("good-til", market_id):
            for key in by_market[market_id]:
                _expire(w, market_id, key)


def _expire(w: StateWriter, market_id: int, key: bytes) -> None:
    order_id = key[12:]
    resting = w.book(market_id).get(order_id)
    cancelled = w.cancelled_orders.get(order_key(market_id, order_id))
    if resting is not None and not cancelled:
        w.cancelled_orders.put(order_key(market_id, order_id), True)
        release_order(w, market_id, resting, resting.quantity)
        w.events.append(OrderRemoved(market_id, order_id, "good-til"))
        return
    waiting = conditional(w, market_id, order_id)
    if waiting is not None:
        remove_conditional(w, market_id, waiting, "good-til")
        return
    w.order_index[PREFIX_GOOD_TIL].put(key, None)  # unreachable: entries leave with orders


# --- conditional orders ---------------------------------------------------------------


def _decoded(w: StateWriter, market_id: int, order_ids: list[bytes]) -> list[ConditionalOrder]:
    found = (conditional(w, market_id, order_id) for order_id in order_ids)
    return sorted((c for c in found if c is not None), key=_age)


def place_triggered_orders(w: StateWriter) -> None:
    """Enter every order triggered at the end of the previous block into this
    block's auction; one that no longer passes the placement checks is removed."""
    by_market: dict[int, list[bytes]] = {}
    for key in armed_keys(w):
        by_market.setdefault(int.from_bytes(key[:4], "big"), []).append(key[4:])
    for market_id in sorted(by_market):
        if w.phase_skipped("triggered", market_id):
            continue
        with w.phase("triggered", market_id):
            triggered = sorted(
                _decoded(w, market_id, by_market[market_id]),
                key=lambda c: (c.triggered_at, _age(c)),
            )
            for cond in triggered:
                mark = w.checkpoint()
                try:
                    _enter_triggered(w, market_id, cond)
                except TransactionRejected:  # it no longer passes: dropped
                    w.rollback(mark)
                    remove_conditional(w, market_id, cond, "trigger-rejected")
                w.release()


def _enter_triggered(w: StateWriter, market_id: int, cond: ConditionalOrder) -> None:
    remove_conditional(w, market_id, cond, None)  # keeps its open-order count and index
    params, _ = require_trading(w, market_id)
    order = msgspec.structs.replace(cond.order, placed_height=w.height)
    enter_order(w, market_id, params, order, count=0)


def evaluate_triggers(w: StateWriter) -> None:
    """Arm every waiting conditional order whose trigger this block's mark crossed."""
    for market_id in sorted(w.market_params.live_keys()):
        if not market_trigger_keys(w, market_id) or w.phase_skipped("trigger", market_id):
            continue
        with w.phase("trigger", market_id):
            _evaluate_market(w, market_id)


def _evaluate_market(w: StateWriter, market_id: int) -> None:
    params = w.params(market_id)
    state = w.market(market_id)
    if params is None or state is None:
        raise MarketNotTrading(f"market {market_id} is not listed")  # unreachable
    if is_expired(params, w.timestamp):
        keys = market_trigger_keys(w, market_id)
        for cond in _decoded(w, market_id, [key[37:] for key in keys]):
            remove_conditional(w, market_id, cond, "expired")
        return
    if state.paused or not is_oracle_fresh(params, state, w.timestamp):
        return
    if params.kind == MarketKind.PERPETUAL:
        mark = state.mark_price
    else:
        mark = option_mark(w, market_id, params, state)
    if mark <= 0:
        return
    crossed = crossed_trigger_keys(w, market_id, mark)
    for cond in _decoded(w, market_id, [key[37:] for key in crossed]):
        if not triggers_at(cond, mark):
            raise EngineInvariantBroken("the trigger index returned an uncrossed order")
        arm_conditional(w, market_id, cond, w.height)
        w.events.append(OrderTriggered(market_id, cond.order.order_id, mark))
