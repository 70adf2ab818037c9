"""End-of-block liquidation of subaccounts below maintenance margin.

After the auctions, every subaccount holding positions is checked (sorted by id,
so the result ignores block order). If equity < maintenance requirement:
1. its open orders in every market are removed;
2. each position is taken over by the insurance fund at the valuation price
   (index for perps, Black-Scholes mark for options); the account is paid
   floor(size * price), the same integer the fund pays, so nothing is created;
3. a liquidation fee of ceil(sum |size| * price * liquidation_fee) goes to the
   fund, capped at what equity is left (never pushing the account below zero);
4. a remaining negative balance is a deficit: insurance.cover_deficit.
Afterwards the account has no positions, no orders and collateral >= 0, so it
meets maintenance. A socialized loss can lower other accounts' equity, so the
check repeats until a pass liquidates nobody (each pass closes an account, so
this ends). The fund itself is never liquidated. Each subaccount's check is one
block-level unit (StateWriter.phase): one that raised is skipped for the block.
"""

from __future__ import annotations

from .fixed_point import SCALE
from .insurance import cover_deficit
from .margin import subaccount_risk, valuation_price
from .orders import release_order
from .positions import change_size, credit, settle_charges
from .receipts import Liquidated, OrderRemoved, PositionTransferred
from .state import INSURANCE_FUND, StateWriter


def liquidate_undermargined(w: StateWriter) -> int:
    """Liquidate until every open subaccount meets maintenance; return how many."""
    count = 0
    skipped: set[bytes] = set()
    while True:
        liquidated_in_pass = 0
        socialized = False
        for sid in sorted(w.open_subaccounts()):
            if sid == INSURANCE_FUND or sid in skipped:
                continue
            if w.phase_skipped("liquidation", sid):
                skipped.add(sid)
                continue
            with w.phase("liquidation", sid):
                risk = subaccount_risk(w, sid)
                if risk.equity >= risk.maintenance:
                    continue
                socialized |= _liquidate(w, sid, risk.equity, risk.maintenance) > 0
            liquidated_in_pass += 1
        count += liquidated_in_pass
        if not socialized:
            return count


def _cancel_orders(w: StateWriter, sid: bytes) -> None:
    for market_id in w.subaccount(sid).markets:
        book = w.books.get(market_id)
        if book is None:
            book = dict(w.book(market_id))
            w.books[market_id] = book
        for oid in sorted(oid for oid, order in book.items() if order.subaccount == sid):
            order = book.pop(oid)
            release_order(w, market_id, order, order.quantity)
            w.events.append(OrderRemoved(market_id, oid, "liquidated"))


def _liquidate(w: StateWriter, sid: bytes, equity: int, maintenance: int) -> int:
    """Close everything of `sid`; return the socialized amount."""
    _cancel_orders(w, sid)
    fee_due = 0
    largest: tuple[int, int, int] | None = None  # (notional, -market id, size)
    for market_id in w.subaccount(sid).markets:
        position = settle_charges(w, sid, market_id)
        size = position.size
        if size == 0:
            continue
        params = w.params(market_id)
        state = w.market(market_id)
        assert params is not None and state is not None
        price = valuation_price(w, market_id, params, state)
        value = (size * price) // SCALE  # toward -inf: the liquidated side gets less
        credit(w, sid, value)
        credit(w, INSURANCE_FUND, -value)
        change_size(w, sid, market_id, -size)
        change_size(w, INSURANCE_FUND, market_id, size)
        notional = (abs(size) * price) // SCALE
        fee_due += -((-notional * params.liquidation_fee) // SCALE)  # fees round up
        candidate = (notional, -market_id, size)
        if largest is None or candidate > largest:
            largest = candidate
        w.events.append(PositionTransferred(market_id, sid, size, price))
    collateral = w.subaccount(sid).collateral
    fee = min(fee_due, max(collateral, 0))
    credit(w, sid, -fee)
    credit(w, INSURANCE_FUND, fee)
    deficit = max(-collateral, 0)
    covered = socialized = 0
    if deficit:
        socialize_in = None if largest is None else (-largest[1], largest[2] < 0)
        covered, socialized = cover_deficit(w, sid, deficit, socialize_in)
    w.events.append(Liquidated(sid, equity, maintenance, fee, deficit, covered, socialized))
    return socialized
