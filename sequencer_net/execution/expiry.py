"""Cash settlement of European options at expiry.

At the first block whose timestamp is at or after the expiry the market settles
at S, the time-weighted average of its oracle spot over the settlement window
(settlement.py; sampled every block, this one included). If no second of the
window was sampled, S is the oracle price instead, at the first block whose
market holds a price published at or after the expiry (the OptionSettled event
says which). Then:

    payout_per_lot = floor(intrinsic(S) * lot_size / 10**18)    payouts round down

every long receives lots * payout_per_lot and every short pays the same integer,
the book is emptied, all positions close. A short left with negative collateral
and no other position is covered by the insurance fund (insurance.cover_deficit;
the market is gone, so there is nobody to socialize to). From expiry until it
settles the market accepts no orders and is marked at intrinsic.
Settlement walks the positions once per expiring market (a one-off cost).
"""

from __future__ import annotations

import msgspec

from .fixed_point import SCALE
from .insurance import cover_deficit
from .options import intrinsic_value
from .orders import release_order
from .positions import change_size, credit, settle_charges
from .receipts import OptionSettled, OrderRemoved
from .records import MarketKind
from .settlement import (
    SOURCE_ORACLE_FALLBACK,
    SOURCE_TWAP,
    sample_settlement_price,
    twap_settlement_price,
)
from .state import StateWriter


def settle_expired_options(w: StateWriter) -> None:
    for market_id in sorted(w.market_params.live_keys()):
        if w.phase_skipped("expiry", market_id):
            continue
        with w.phase("expiry", market_id):
            sample_settlement_price(w, market_id)
            _settle_if_due(w, market_id)


def _settle_if_due(w: StateWriter, market_id: int) -> None:
    params = w.params(market_id)
    state = w.market(market_id)
    assert params is not None and state is not None
    terms = params.option
    if params.kind != MarketKind.OPTION or terms is None or state.settlement_price:
        return
    if w.timestamp < terms.expiry:
        return
    price = twap_settlement_price(state)
    source = SOURCE_TWAP
    if price is None:
        if state.oracle_published_at < terms.expiry or state.oracle_price == 0:
            return
        price, source = state.oracle_price, SOURCE_ORACLE_FALLBACK
    _settle(w, market_id, params.lot_size, intrinsic_value(terms, price), price, source)


def _settle(
    w: StateWriter, market_id: int, lot_size: int, intrinsic: int, price: int, source: str
) -> None:
    payout_per_lot = (intrinsic * lot_size) // SCALE  # payouts round down
    book = w.writable_book(market_id)
    for oid in sorted(book):
        order = book.pop(oid)
        assert order is not None
        release_order(w, market_id, order, order.quantity)
        w.events.append(OrderRemoved(market_id, oid, "expired"))
    suffix = market_id.to_bytes(4, "big")
    holders = sorted(key[:21] for key in w.positions.live_keys() if key[21:] == suffix)
    shorts: list[bytes] = []
    for sid in holders:
        position = settle_charges(w, sid, market_id)
        if position.size == 0:
            continue
        credit(w, sid, (position.size // lot_size) * payout_per_lot)
        if position.size < 0:
            shorts.append(sid)
        change_size(w, sid, market_id, -position.size)
    total_deficit = 0
    for sid in shorts:
        sub = w.subaccount(sid)
        if sub.collateral < 0 and not sub.markets:
            total_deficit += -sub.collateral
            cover_deficit(w, sid, -sub.collateral)
    state = w.market(market_id)
    assert state is not None
    w.market_states.put(market_id, msgspec.structs.replace(state, settlement_price=price))
    w.events.append(
        OptionSettled(
            market_id,
            price,
            payout_per_lot,
            total_deficit,
            state.settlement_twap_seconds,
            source,
        )
    )
