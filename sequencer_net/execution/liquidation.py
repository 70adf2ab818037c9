"""End-of-block liquidation: partial liquidation through the auction, then the
insurance fund, then automatic deleveraging (docs/execution.md, "Liquidation").

At the end of block N, after the auctions and the premium samples:

1. Close-outs, repeated until a pass closes nobody. Every subaccount (sorted by
   id) below maintenance
   - whose equity is <= 0 is closed out entirely: the insurance fund takes
     every position over at the valuation price and pays the account's
     negative balance (so the account is closed at its bankruptcy price), if
     the fund's equity covers that loss (insurance.take_over); otherwise the
     positions are deleveraged against the opposite side at the bankruptcy
     price (deleveraging.deleverage);
   - whose liquidation orders have now found no fill in `max_liquidation_misses`
     auctions in a row (equity still > 0) has the fund take over only the
     slice still needed: the smallest reduction below, at the valuation price
     with the liquidation fee (insurance.take_over_slice). It then meets
     maintenance again.
   A fund whose own equity fell below zero is deleveraged the same way. Each
   close-out brings an account back to maintenance or removes its every
   position, and deleveraging only shrinks positions, so the loop ends.
2. Liquidation orders. Every subaccount still below maintenance (its equity is
   > 0 now) has its open orders cancelled and gets, per market, a reduce-only
   IOC order flagged `liquidation`, resting in the book for block N+1's
   auction, where it trades like any taker order (matching.py):
   - size: the smallest reduction that brings equity back to maintenance at
     the valuation price, net of the liquidation fee: positions in descending
     order of their maintenance requirement (ties: lower market id), each by
     the fewest lots that suffice (binary search), or all of it and on to the
     next (`smallest_reduction`);
   - limit: the bankruptcy price of that slice, the price at which closing it
     leaves the account's equity at zero once the rest is valued at the same
     share: p -+ E * mmr(slice) / (MMR * |slice|), rounded to the tick away
     from the account's loss, so no fill makes the account more bankrupt;
   - per market at most `max_liquidation_notional` (quantity x valuation price)
     of such orders per block; accounts go most under water first (equity /
     maintenance ascending, ties by id), the fund's orders last;
   - `liquidation_misses`: how many auctions in a row the account's previous
     liquidation orders found no fill (0 after any fill, or when none took
     part in an auction); the order carries the count to the next block.
   A filled liquidation order pays no trading fee; liquidation_fee x the
   filled notional, capped at the equity left, goes to the fund
   (`charge_liquidation_fee`).
3. The fund's own orders: for each of its positions a reduce-only IOC at the
   index (mark for options) -+ mark_band, rounded inward to the tick, so it
   sells what it took over instead of keeping the risk.

So an account below maintenance with positive equity has its orders run in
block N+1; at the end of N+1 it meets maintenance, gets new orders (its last
ones filled at least in part, or missed fewer than `max_liquidation_misses`
auctions in a row), has the fund take the slice still needed (they missed
that many), or is closed out (its equity reached zero). One the cap left
without orders waits for a later block. Each subaccount's work is one
block-level unit (StateWriter.phase): one that raised is skipped for the block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import msgspec

from consensus.crypto import keccak256

from .auction import Side
from .deleveraging import deleverage
from .encoding import encode
from .fixed_point import SCALE
from .insurance import fund_available, take_over, take_over_slice
from .limits import MAX_AMOUNT
from .margin import (
    Maintenance,
    MaintenanceCheck,
    maintenance_risk,
    requirement,
    valuation_price,
)
from .margin_bound import MarginBound, slack_entry
from .markets import is_expired, is_oracle_fresh
from .option_margin import MAINTENANCE_GRID, OptionHolding, group_requirement
from .orders import release_order, reserved_premium
from .positions import change_open_orders, credit
from .receipts import Liquidated, LiquidationFeePaid, LiquidationOrderPlaced, OrderRemoved
from .records import (
    DEFAULT_MAX_LIQUIDATION_MISSES,
    MarketKind,
    MarketParams,
    MarketState,
    RestingOrder,
    TimeInForce,
)
from .state import (
    INSURANCE_FUND,
    ExecutionState,
    MarginInputs,
    MarginSlack,
    PhaseFailed,
    StateWriter,
    margin_inputs,
    owner_of,
)

LIQUIDATION_ORDER_TAG: Final = b"seqnet/liquidation-order/v1"
"""Domain of a liquidation order's id: keccak256(tag || encode((height, subaccount, market)))."""


def liquidate_undermargined(w: StateWriter) -> int:
    """Close out, then place liquidation and fund orders; return how many
    subaccounts were closed out (wholly or by the fund taking a slice)."""
    misses = misses_after_auction(w)
    count = 0
    skipped: set[bytes] = set()
    watch: set[bytes] = set()
    # Whether any unit may be skipped: if not, phase_skipped is False for every one.
    may_skip = w.skip_all_phases or bool(w.skipped)
    check = MaintenanceCheck(w)
    # Until the first close-out of the first pass (it may change any market's
    # state), a subaccount whose recorded slack (ExecutionState.margin_slack)
    # outweighs how far its margin can have moved is skipped, and every one
    # checked at or above maintenance gets its slack recorded.
    bound: MarginBound | None = MarginBound(w)
    recorded = w.base.margin_slack
    while True:
        acted = False
        check.forget()
        below: list[tuple[int, bytes, Maintenance]] = []  # of the last pass: nobody acted on
        watch.clear()
        to_check, boundable = _subaccounts_to_check(w)
        # The walk is over sorted(to_check). When no unit may be skipped, the ones
        # whose recorded slack vouches (skipped wherever they fall) are left out
        # of the order up front, until a close-out drops the bound.
        filtered = bound is not None and not may_skip
        if filtered:
            assert bound is not None
            order = sorted(_not_vouched(bound, recorded, to_check, boundable))
        else:
            order = sorted(to_check)
        visit = 0
        while visit < len(order):
            sid = order[visit]
            visit += 1
            if sid == INSURANCE_FUND or sid in skipped:
                continue
            if may_skip and w.phase_skipped("liquidation", sid):
                skipped.add(sid)
                continue
            if bound is not None and not filtered and sid in boundable:
                # Its recorded slack (no block wrote it since) outweighs how far its
                # equity minus maintenance can have fallen: it meets maintenance,
                # which is all its check would find.
                entry = recorded.get(sid)
                if entry is not None and bound.vouches(entry):
                    continue
            # The unit StateWriter.phase("liquidation", sid) runs, written out: the
            # check runs for every holder of a market whose index moved.
            try:
                if bound is None:
                    risk = check(sid)
                else:
                    sizes: list[tuple[int, int]] = []
                    risk = check(sid, sizes)
                if risk.equity >= risk.maintenance:
                    if bound is not None:
                        _record_slack(w, bound, sid, risk, sizes)
                    continue
                watch.add(sid)
                if risk.equity <= 0:
                    if filtered:
                        order, filtered = _all_after(order, visit, to_check), False
                    bound = None
                    check.forget()  # a close-out may change any market's state
                    close_out(w, sid, risk)
                elif misses.get(sid, 0) >= allowed_misses(w, sid):
                    if filtered:
                        order, filtered = _all_after(order, visit, to_check), False
                    bound = None
                    check.forget()
                    close_out_slice(w, sid, risk)
                    misses.pop(sid)
                else:
                    below.append(((risk.equity * SCALE) // risk.maintenance, sid, risk))
                    continue
            except PhaseFailed:
                raise
            except Exception as exc:
                raise PhaseFailed(("liquidation", sid), type(exc).__name__) from exc
            acted = True
            count += 1
        if INSURANCE_FUND not in skipped:
            if w.phase_skipped("liquidation", INSURANCE_FUND):
                skipped.add(INSURANCE_FUND)
            else:
                with w.phase("liquidation", INSURANCE_FUND):
                    if _fund_is_bankrupt(w):
                        _deleverage_fund(w)
                        acted = True
        bound = None  # later passes check everyone they name
        if not acted:
            break
    w.margin_watch = watch | skipped
    w.margin_inputs = w.margin_inputs_now()
    budget: dict[int, int] = {}
    place_liquidation_orders(w, below, budget, misses)
    place_fund_orders(w, budget)
    return count


def _not_vouched(
    bound: MarginBound,
    recorded: Mapping[bytes, MarginSlack],
    to_check: set[bytes],
    boundable: set[bytes],
) -> set[bytes]:
    """`to_check` without the subaccounts of `boundable` whose recorded slack
    vouches that they meet maintenance (`MarginBound.vouches`)."""
    left = to_check - boundable
    bound.not_vouched(recorded, boundable, left)
    return left


def _all_after(order: list[bytes], visit: int, to_check: set[bytes]) -> list[bytes]:
    """The visiting order once a close-out drops the bound: the first `visit`
    of `order`, then every subaccount of `to_check` after the last of those,
    vouched or not, as the sorted walk over all of them visits them."""
    last = order[visit - 1]
    return order[:visit] + sorted(sid for sid in to_check if sid > last)


def _record_slack(
    w: StateWriter, bound: MarginBound, sid: bytes, risk: Maintenance, sizes: list[tuple[int, int]]
) -> None:
    """Remember `sid`'s slack at the current markets (`bound`'s snapshots).
    The first one also notes the subaccount and position writes so far: an
    entry outlives the block only if nothing writes its subaccount after
    (StateWriter.commit); until the first close-out the check writes nothing."""
    if w.margin_snapshot is None:
        w.margin_snapshot = bound.snapshots
        w.margin_slack_writes = (w.subaccounts.writes(), w.positions.writes())
    w.margin_slack[sid] = slack_entry(
        risk.equity - risk.maintenance, w.height, sizes, bound.snapshots
    )


def subaccounts_to_check(w: StateWriter) -> set[bytes]:
    """The open subaccounts whose equity or maintenance may have changed since
    the previous block's check: those on the watch list it left
    (ExecutionState.margin_watch), those this block has written so far, and
    those holding a market whose margin inputs moved (`MarginInputs`: params,
    index, funding indexes; for an option also the volatility and the time to
    expiry, which moves when the block time does, until expiry). Every other
    open subaccount met maintenance with exactly these inputs at the end of the
    previous block and, being untouched, still does: checking it again would
    change nothing. All of them when the previous block left no watch list, or
    when every block-level unit is skipped (each one then records its
    PhaseSkipped event)."""
    return _subaccounts_to_check(w)[0]


def _subaccounts_to_check(w: StateWriter) -> tuple[set[bytes], set[bytes]]:
    """`subaccounts_to_check`, and those of them this block has not written
    so far: the ones a recorded slack may vouch for (an entry in
    ExecutionState.margin_slack describes the subaccount's records as they
    are at the end of the previous block)."""
    open_now = w.open_subaccounts()
    watch = w.base.margin_watch
    if watch is None or w.skip_all_phases:
        return open_now, set()
    written = w.written_subaccounts()
    before = _margin_inputs(w.base)
    moved = {mid for mid, inputs in w.margin_inputs_now().items() if before.get(mid) != inputs}
    check = (written | watch) & open_now
    boundable = (open_now & watch) - written
    if moved:
        subaccounts = w.base.subaccounts
        for sid in open_now - check:
            sub = subaccounts.get(sid)
            if sub is None:
                check.add(sid)
            elif not moved.isdisjoint(sub.markets):
                check.add(sid)
                boundable.add(sid)
    return check, boundable


def _margin_inputs(state: ExecutionState) -> dict[int, MarginInputs]:
    """Per market, the margin inputs at `state` (at its block's time)."""
    at = state.block.timestamp
    return {
        mid: margin_inputs(state.market_params.get(mid), ms, at)
        for mid, ms in state.market_states.items()
    }


def misses_after_auction(w: StateWriter) -> dict[bytes, int]:
    """Per subaccount whose liquidation orders took part in this block's
    auctions: how many auctions in a row they have now found no fill (absent:
    0, they filled or none took part)."""
    return {
        sid: before + 1
        for sid, before in sorted(w.liquidation_attempted.items())
        if sid not in w.liquidation_filled
    }


def allowed_misses(w: StateWriter, sid: bytes) -> int:
    """The smallest `max_liquidation_misses` of the markets where `sid` holds a position."""
    allowed = [
        params.max_liquidation_misses
        for market_id in w.subaccount(sid).markets
        if (params := w.params(market_id)) is not None
    ]
    return min(allowed, default=DEFAULT_MAX_LIQUIDATION_MISSES)


def _fund_is_bankrupt(w: StateWriter) -> bool:
    return bool(w.subaccount(INSURANCE_FUND).markets) and (
        maintenance_risk(w, INSURANCE_FUND).equity < 0
    )


def _deleverage_fund(w: StateWriter) -> None:
    """The fund's equity fell below zero while it holds positions: they are
    deleveraged like a bankrupt account's (nobody else can take them)."""
    risk = maintenance_risk(w, INSURANCE_FUND)
    cancel_open_orders(w, INSURANCE_FUND)
    deficit, deleveraged = deleverage(w, INSURANCE_FUND)
    w.events.append(
        Liquidated(INSURANCE_FUND, risk.equity, risk.maintenance, 0, deficit, 0, deleveraged)
    )


def close_out(w: StateWriter, sid: bytes, risk: Maintenance) -> None:
    """A bankrupt account: the fund takes everything over if it can pay the
    loss, else deleveraging. The account ends with no position and no order."""
    cancel_open_orders(w, sid)
    loss = max(-risk.equity, 0)
    fee = covered = deleveraged = 0
    if loss <= fund_available(w):
        fee, covered = take_over(w, sid)
    else:
        # The deficit the chunks left (their values floored), which is what
        # the counterparties and the fund share.
        loss, deleveraged = deleverage(w, sid)
    w.events.append(Liquidated(sid, risk.equity, risk.maintenance, fee, loss, covered, deleveraged))


def close_out_slice(w: StateWriter, sid: bytes, risk: Maintenance) -> None:
    """An account with equity > 0 whose liquidation orders missed too many
    auctions: the fund takes over the smallest reduction that brings it back to
    maintenance at the valuation price (all of it if nothing less does). The
    account has no deficit, so the fund can always take it."""
    cancel_open_orders(w, sid)
    fee = take_over_slice(w, sid, smallest_reduction(w, sid, risk))
    w.events.append(Liquidated(sid, risk.equity, risk.maintenance, fee, 0, 0, 0))


def cancel_open_orders(w: StateWriter, sid: bytes) -> None:
    for market_id in w.subaccount(sid).markets:
        book = w.writable_book(market_id)
        mine = [o.order_id for o in book.owner_orders(owner_of(sid)) if o.subaccount == sid]
        for oid in sorted(mine):
            order = book.pop(oid)
            assert order is not None
            release_order(w, market_id, order, order.quantity)
            w.events.append(OrderRemoved(market_id, oid, "liquidated"))


# --- partial liquidation through the auction -----------------------------------------


def maintenance_of(
    w: StateWriter, market_id: int, params: MarketParams, state: MarketState, size: int
) -> int:
    """One market's maintenance requirement for `size` on its own. An option is
    margined as if alone in its group (its scenario requirement without the
    hedge of other options on the same underlying): sizing a reduction with it
    may close more than the smallest amount for a hedged book, never less, and
    the account is checked again at the end of every block."""
    if params.kind == MarketKind.OPTION:
        alone = [OptionHolding(market_id, params, state, size, 0)]
        return group_requirement(w, alone, [(size,)], MAINTENANCE_GRID, initial=False)
    return requirement(params, state, size, params.maintenance_margin)


def _fee_on(params: MarketParams, quantity: int, price: int) -> int:
    notional = (quantity * price) // SCALE
    return -((-notional * params.liquidation_fee) // SCALE)  # fees round up


def smallest_reduction(w: StateWriter, sid: bytes, risk: Maintenance) -> list[tuple[int, int]]:
    """(market id, signed quantity to close) that bring equity back to
    maintenance at the valuation price, net of the liquidation fee: largest
    maintenance requirement first (ties: lower market id), each position by the
    fewest lots that suffice, or all of it and on to the next."""
    rows: list[tuple[int, int, MarketParams, MarketState, int, int]] = []
    for market_id in w.subaccount(sid).markets:
        position = w.position(sid, market_id)
        params = w.params(market_id)
        state = w.market(market_id)
        if position is None or position.size == 0 or params is None or state is None:
            continue
        price = valuation_price(w, market_id, params, state)
        required = maintenance_of(w, market_id, params, state, position.size)
        rows.append((-required, market_id, params, state, position.size, price))
    rows.sort(key=lambda row: (row[0], row[1]))
    equity, maintenance = risk.equity, risk.maintenance
    plan: list[tuple[int, int]] = []
    for minus_required, market_id, params, state, size, price in rows:
        base = (equity, maintenance + minus_required)  # without this position's requirement
        all_lots = abs(size) // params.lot_size
        final_equity, final_maintenance = _after_closing(
            w, market_id, params, state, size, price, all_lots, base
        )
        if final_equity < final_maintenance:
            plan.append((market_id, size))
            equity, maintenance = final_equity, final_maintenance
            continue
        low, high = 1, all_lots
        while low < high:
            middle = (low + high) // 2
            e, m = _after_closing(w, market_id, params, state, size, price, middle, base)
            if e >= m:
                high = middle
            else:
                low = middle + 1
        plan.append((market_id, (1 if size > 0 else -1) * low * params.lot_size))
        break
    return plan


def _after_closing(
    w: StateWriter,
    market_id: int,
    params: MarketParams,
    state: MarketState,
    size: int,
    price: int,
    lots: int,
    base: tuple[int, int],
) -> tuple[int, int]:
    """(equity, maintenance) once `lots` of the position are closed at `price`
    net of the liquidation fee; `base` is both without this position's requirement."""
    closed = lots * params.lot_size * (1 if size > 0 else -1)
    kept = maintenance_of(w, market_id, params, state, size - closed)
    return base[0] - _fee_on(params, abs(closed), price), base[1] + kept


def bankruptcy_limit(
    params: MarketParams, price: int, closing: int, share_mmr: int, equity: int, total_mmr: int
) -> int:
    """The limit of a liquidation order closing `closing` (signed, the
    position's sign): the bankruptcy price p - E * mmr_share / (MMR * closing),
    on the tick grid rounded away from the account's loss (a sell up, a buy
    down), at least one tick. 0 when a buy would need a price under one tick."""
    # A share is never more than the whole: an option sized on its own can need
    # more than its hedged group does.
    share_mmr = max(min(share_mmr, total_mmr), 0)
    share = (max(equity, 0) * share_mmr) // total_mmr if total_mmr > 0 else 0  # floor
    per_unit = (share * SCALE) // abs(closing)  # floor: a price nearer the valuation
    tick = params.tick_size
    if closing > 0:  # a long is sold: never below the bankruptcy price
        raw = price - per_unit
        return max(-((-raw) // tick) * tick, tick)
    raw = min(price + per_unit, MAX_AMOUNT)  # a short is bought back: never above it
    return (raw // tick) * tick


def place_liquidation_orders(
    w: StateWriter,
    below: list[tuple[int, bytes, Maintenance]],
    budget: dict[int, int],
    misses: dict[bytes, int],
) -> None:
    """Orders for every subaccount still below maintenance (`below`: equity /
    maintenance as a wad, id, risk), most under water first, each carrying its
    account's count of auctions missed in a row (`misses`)."""
    for _, sid, risk in sorted(below, key=lambda item: (item[0], item[1])):
        with w.phase("liquidation", sid):
            cancel_open_orders(w, sid)
            _place_for(w, sid, risk, budget, misses.get(sid, 0))


def _place_for(
    w: StateWriter, sid: bytes, risk: Maintenance, budget: dict[int, int], misses: int
) -> None:
    for market_id, closing in smallest_reduction(w, sid, risk):
        params = w.params(market_id)
        state = w.market(market_id)
        assert params is not None and state is not None
        price = valuation_price(w, market_id, params, state)
        quantity = _within_budget(budget, market_id, params, abs(closing), price)
        if quantity == 0:
            continue
        sign = 1 if closing > 0 else -1
        position = w.position(sid, market_id)
        assert position is not None
        share_mmr = maintenance_of(w, market_id, params, state, position.size) - maintenance_of(
            w, market_id, params, state, position.size - sign * quantity
        )
        limit = bankruptcy_limit(
            params, price, sign * quantity, share_mmr, risk.equity, risk.maintenance
        )
        if limit > 0:
            side = Side.SELL if sign > 0 else Side.BUY
            _place(w, sid, market_id, params, side, limit, quantity, misses)


def _within_budget(
    budget: dict[int, int], market_id: int, params: MarketParams, quantity: int, price: int
) -> int:
    """Trim `quantity` to what is left of the market's per-block liquidation cap."""
    left = budget.get(market_id, params.max_liquidation_notional)
    per_lot = (params.lot_size * price) // SCALE
    if per_lot > 0:
        quantity = min(quantity, (left // per_lot) * params.lot_size)
    budget[market_id] = left - (quantity // params.lot_size) * per_lot
    return quantity


def _place(
    w: StateWriter,
    sid: bytes,
    market_id: int,
    params: MarketParams,
    side: Side,
    limit: int,
    quantity: int,
    misses: int = 0,
) -> None:
    order_id = keccak256(LIQUIDATION_ORDER_TAG + encode((w.height, sid, market_id)))
    order = RestingOrder(
        order_id=order_id,
        subaccount=sid,
        side=side,
        limit_price=limit,
        quantity=quantity,
        time_in_force=TimeInForce.IMMEDIATE_OR_CANCEL,
        post_only=False,
        reduce_only=True,
        placed_height=w.height,
        placed_nonce=0,
        liquidation=True,
        liquidation_misses=misses,
    )
    buy = quantity if side == Side.BUY else 0
    premium = reserved_premium(params, side, limit, quantity)
    change_open_orders(w, sid, market_id, buy, quantity - buy, 1, premium)
    w.writable_book(market_id)[order_id] = order
    state = w.market(market_id)
    assert state is not None
    w.market_states.put(
        market_id, msgspec.structs.replace(state, liquidation_orders=state.liquidation_orders + 1)
    )
    w.events.append(LiquidationOrderPlaced(market_id, order_id, sid, side, limit, quantity))


def place_fund_orders(w: StateWriter, budget: dict[int, int]) -> None:
    """The fund offers each of its positions at the valuation price -+ mark_band
    (rounded inward to the tick), within what is left of the per-block cap."""
    for market_id in w.subaccount(INSURANCE_FUND).markets:
        if w.phase_skipped("fund-orders", market_id):
            continue
        with w.phase("fund-orders", market_id):
            _place_fund_order(w, market_id, budget)


def _place_fund_order(w: StateWriter, market_id: int, budget: dict[int, int]) -> None:
    position = w.position(INSURANCE_FUND, market_id)
    params = w.params(market_id)
    state = w.market(market_id)
    if position is None or position.size == 0 or params is None or state is None:
        return
    if state.paused or is_expired(params, w.timestamp):
        return
    if not is_oracle_fresh(params, state, w.timestamp):
        return
    price = valuation_price(w, market_id, params, state)
    quantity = _within_budget(budget, market_id, params, abs(position.size), price)
    if quantity == 0:
        return
    band = (price * params.mark_band) // SCALE  # floor: never wider than configured
    tick = params.tick_size
    sign = 1 if position.size > 0 else -1
    risk = maintenance_risk(w, INSURANCE_FUND)
    share_mmr = maintenance_of(w, market_id, params, state, position.size) - maintenance_of(
        w, market_id, params, state, position.size - sign * quantity
    )
    # Never past the fund's own bankruptcy price: its sales cannot make it negative.
    floor = bankruptcy_limit(
        params, price, sign * quantity, share_mmr, risk.equity, risk.maintenance
    )
    if sign > 0:
        limit = max(-((band - price) // tick) * tick, tick, floor)  # ceil(price - band)
        _place(w, INSURANCE_FUND, market_id, params, Side.SELL, limit, quantity)
    else:
        limit = min((min(price + band, MAX_AMOUNT) // tick) * tick, floor)
        if limit > 0:
            _place(w, INSURANCE_FUND, market_id, params, Side.BUY, limit, quantity)


def charge_liquidation_fee(
    w: StateWriter, market_id: int, params: MarketParams, sid: bytes, notional: int
) -> None:
    """After a liquidation order's fill: liquidation_fee x notional (rounded up),
    capped at the equity the account has left, to the insurance fund."""
    due = -((-notional * params.liquidation_fee) // SCALE)
    fee = min(due, max(maintenance_risk(w, sid).equity, 0))
    if fee:
        credit(w, sid, -fee)
        credit(w, INSURANCE_FUND, fee)
    w.events.append(LiquidationFeePaid(market_id, sid, notional, fee))
