"""The insurance fund: it takes over the positions of accounts the market could
not liquidate, and pays negative balances while its equity lasts.

`take_over(w, sid)` (liquidation.close_out, when the fund's equity covers the
account's loss):
1. every position of `sid` moves to the fund at the valuation price (index for
   perps, mark for options): the account is credited floor(size * price) and
   the fund pays the same integer;
2. if the account's collateral is then >= 0 (it had equity left: its orders
   found no liquidity), a liquidation fee ceil(notional * liquidation_fee),
   capped at that collateral, goes to the fund;
3. if it is < 0 (deficit D), the fund pays D: the account ends at exactly
   zero, i.e. it was closed at its bankruptcy price.
`take_over_slice(w, sid, plan)` (liquidation.close_out_slice, an account with
equity > 0 whose liquidation orders missed `max_liquidation_misses` auctions in
a row): only the listed part of each position moves to the fund at the
valuation price, and the liquidation fee on it, capped at the equity left, goes
to the fund; the account keeps the rest.
A loss the fund cannot cover is deleveraged instead (deleveraging.py); nothing
is socialized through the charge indexes any more. The fund sells what it took
over with reduce-only orders every block (liquidation.place_fund_orders).

`cover_deficit` is what expiry uses for a short left negative after cash
settlement (the market is gone: nobody to deleverage against): the fund pays,
past its equity if it must, so the loss is visible in one place.
"""

from __future__ import annotations

from typing import NamedTuple

from .fixed_point import SCALE
from .margin import maintenance_risk, settled_positions, valuation_price
from .positions import change_size, credit, settle_charges
from .receipts import PositionTransferred
from .records import MarketParams
from .state import INSURANCE_FUND, StateWriter


class DeficitCover(NamedTuple):
    covered_by_fund: int
    beyond_fund_equity: int
    """The part the fund paid although its equity did not cover it."""


def fund_available(w: StateWriter) -> int:
    return max(maintenance_risk(w, INSURANCE_FUND).equity, 0)


def cover_deficit(w: StateWriter, sid: bytes, deficit: int) -> DeficitCover:
    """Bring `sid` (with collateral -deficit) back to zero from the fund."""
    beyond = max(deficit - fund_available(w), 0)
    credit(w, INSURANCE_FUND, -deficit)
    credit(w, sid, deficit)
    return DeficitCover(deficit, beyond)


def _transfer_to_fund(
    w: StateWriter, sid: bytes, market_id: int, params: MarketParams, quantity: int, price: int
) -> int:
    """Move `quantity` (signed, part of `sid`'s position) of `market_id` to the
    fund at `price`; return the liquidation fee it owes (rounded up)."""
    value = (quantity * price) // SCALE  # toward -inf: the liquidated side gets less
    credit(w, sid, value)
    credit(w, INSURANCE_FUND, -value)
    change_size(w, sid, market_id, -quantity, price)
    change_size(w, INSURANCE_FUND, market_id, quantity, price)
    notional = (abs(quantity) * price) // SCALE
    w.events.append(PositionTransferred(market_id, sid, quantity, price))
    return -((-notional * params.liquidation_fee) // SCALE)  # fees round up


def take_over(w: StateWriter, sid: bytes) -> tuple[int, int]:
    """Move every position of `sid` to the fund; return (fee, deficit paid)."""
    fee_due = 0
    for market_id, params, _, size, price in settled_positions(w, sid):
        fee_due += _transfer_to_fund(w, sid, market_id, params, size, price)
    collateral = w.subaccount(sid).collateral
    fee = min(fee_due, max(collateral, 0))
    credit(w, sid, -fee)
    credit(w, INSURANCE_FUND, fee)
    deficit = max(-collateral, 0)
    if deficit:
        cover_deficit(w, sid, deficit)
    return fee, deficit


def take_over_slice(w: StateWriter, sid: bytes, plan: list[tuple[int, int]]) -> int:
    """Move each (market id, signed quantity) of `plan`, part of a position of
    `sid` with its sign, to the fund at the valuation price; return the fee."""
    fee_due = 0
    for market_id, quantity in plan:
        size = settle_charges(w, sid, market_id).size
        params = w.params(market_id)
        state = w.market(market_id)
        assert params is not None and state is not None
        assert quantity != 0 and abs(quantity) <= abs(size) and (quantity > 0) == (size > 0)
        price = valuation_price(w, market_id, params, state)
        fee_due += _transfer_to_fund(w, sid, market_id, params, quantity, price)
    fee = min(fee_due, max(maintenance_risk(w, sid).equity, 0))
    credit(w, sid, -fee)
    credit(w, INSURANCE_FUND, fee)
    return fee
