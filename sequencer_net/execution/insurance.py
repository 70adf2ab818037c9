"""The insurance fund and socialized loss.

When a liquidated (or expired-short) subaccount ends with negative collateral
(deficit D > 0, it is bankrupt):
1. The insurance fund pays min(D, max(fund equity, 0)) to it.
2. The rest R is socialized across the side that profited in the market where
   the bankrupt position was largest: per_lot = ceil(R / open_lots) is added to
   that side's charge index (lazily settled, like funding), R goes to the bankrupt
   account, and the rounding excess per_lot * open_lots - R goes to the fund.
3. Only if nobody holds that side (or no market is given) the fund pays R anyway
   and its collateral goes below zero: the loss is then visible in one place.
The bankrupt account ends at exactly zero collateral, and every unit is accounted
for (tests/execution/test_invariants.py pins this).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from .margin import subaccount_risk
from .positions import credit
from .state import INSURANCE_FUND, StateWriter


class DeficitCover(NamedTuple):
    covered_by_fund: int
    socialized: int


def fund_available(w: StateWriter) -> int:
    return max(subaccount_risk(w, INSURANCE_FUND).equity, 0)


def cover_deficit(
    w: StateWriter, sid: bytes, deficit: int, socialize_in: tuple[int, bool] | None
) -> DeficitCover:
    """Bring `sid` (with collateral -deficit) back to zero. `socialize_in` is
    (market id, True if the longs of that market pay)."""
    covered = min(deficit, fund_available(w))
    credit(w, INSURANCE_FUND, -covered)
    credit(w, sid, covered)
    rest = deficit - covered
    socialized = 0
    if rest and socialize_in is not None:
        market_id, longs_pay = socialize_in
        state = w.market(market_id)
        assert state is not None
        if state.open_lots > 0:
            per_lot = -((-rest) // state.open_lots)  # ceiling: collect at least R
            excess = per_lot * state.open_lots - rest
            if longs_pay:
                state = msgspec.structs.replace(state, long_index=state.long_index + per_lot)
            else:
                state = msgspec.structs.replace(state, short_index=state.short_index + per_lot)
            w.market_states.put(market_id, state)
            credit(w, sid, rest)
            credit(w, INSURANCE_FUND, excess)
            socialized = rest
            rest = 0
    if rest:
        credit(w, INSURANCE_FUND, -rest)
        credit(w, sid, rest)
        covered += rest
    return DeficitCover(covered, socialized)
