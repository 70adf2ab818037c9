"""Perpetual funding with a cumulative per-lot index, settled lazily.

Premium, time-weighted (docs/execution.md, "Funding"). At the end of every block
each perpetual with a fresh oracle price and not paused takes one sample:

    premium  = mark - index            (mark: markets.perp_mark_price; an auction
                                        below min_premium_notional counts as no trade)
    seconds  = min(now - previous block time, now - interval start,
                   PREMIUM_SAMPLE_MAX_SECONDS)
    premium_sum     += premium * seconds
    premium_seconds += seconds

so each second of the interval carries the premium of the first block at or
after it, and seconds no block sampled (a halted chain, a stale oracle, a
paused market, a gap longer than the cap) count as zero. When a funding
interval has passed, at the start of the next block:

    k        = (now - last_funding_at) // funding_interval     whole intervals due
    premium  = premium_sum / funding_interval                   rounded toward zero
    premium  = clamp(premium, -floor(index * clamp), +floor(index * clamp))
    per_lot  = premium * lot_size / 10**18                      rounded toward zero
    long_index  += per_lot         (longs pay when the mark is above the index)
    short_index -= per_lot         (shorts receive the same amount)

The samples belong to the first interval due; the k - 1 intervals after it had
no block at all, so their premium is zero and they charge nothing.

No account is touched: a position settles its charge lots * (index - snapshot)
when it next changes (positions.settle_charges), and margin counts the pending
charge. Because lots held long always equal lots held short and both sides use
the same integer per_lot, funding creates or destroys nothing, exactly.
The cost is O(markets) per interval, not O(accounts) (dYdX v4 does the same).
"""

from __future__ import annotations

from typing import Final

import msgspec

from .fixed_point import SCALE
from .markets import is_oracle_fresh, perp_mark_price, premium_clearing_price
from .receipts import FundingApplied
from .records import MarketKind, MarketParams, MarketState
from .state import StateWriter

PREMIUM_SAMPLE_MAX_SECONDS: Final = 5
"""Seconds one block's premium sample may cover. Blocks come every second or
less; a longer gap is a halt whose seconds count as zero. The cap also bounds
what a leader gains by stretching its block's timestamp (payload drift <= 5 s)."""


def _toward_zero(numerator: int, denominator: int) -> int:
    quotient = abs(numerator) // denominator
    return -quotient if numerator < 0 else quotient


def funding_per_lot(params: MarketParams, state: MarketState) -> int:
    """Quote one long lot pays for the interval (negative: receives), from the samples."""
    if state.premium_sum == 0 or state.oracle_price == 0 or params.funding_interval <= 0:
        return 0
    premium = _toward_zero(state.premium_sum, params.funding_interval)
    bound = (state.oracle_price * params.funding_clamp) // SCALE
    premium = max(-bound, min(bound, premium))
    return _toward_zero(premium * params.lot_size, SCALE)


def apply_due_funding(w: StateWriter) -> None:
    for market_id in sorted(w.market_params.live_keys()):
        if w.phase_skipped("funding", market_id):
            continue
        with w.phase("funding", market_id):
            _fund_market(w, market_id)


def _fund_market(w: StateWriter, market_id: int) -> None:
    params = w.params(market_id)
    state = w.market(market_id)
    assert params is not None and state is not None
    if params.kind != MarketKind.PERPETUAL or params.funding_interval <= 0:
        return
    due = (w.timestamp - state.last_funding_at) // params.funding_interval
    if due <= 0:
        return
    per_lot = funding_per_lot(params, state)
    state = msgspec.structs.replace(
        state,
        long_index=state.long_index + per_lot,
        short_index=state.short_index - per_lot,
        premium_sum=0,
        premium_seconds=0,
        last_funding_at=state.last_funding_at + due * params.funding_interval,
    )
    w.market_states.put(market_id, state)
    w.events.append(FundingApplied(market_id, due, per_lot, state.long_index, state.short_index))


def sample_premiums(w: StateWriter) -> None:
    """Record this block's mark and time-weighted premium for every live perpetual."""
    for market_id in sorted(w.market_params.live_keys()):
        if w.phase_skipped("premium", market_id):
            continue
        with w.phase("premium", market_id):
            _sample_market(w, market_id)


def _sample_market(w: StateWriter, market_id: int) -> None:
    params = w.params(market_id)
    state = w.market(market_id)
    assert params is not None and state is not None
    if params.kind != MarketKind.PERPETUAL or state.paused:
        return
    if not is_oracle_fresh(params, state, w.timestamp):
        return
    index = state.oracle_price
    cleared = premium_clearing_price(params, w.cleared_prices.get(market_id))
    mark = perp_mark_price(params, index, cleared)
    seconds = max(
        0,
        min(
            w.timestamp - w.base.block.timestamp,
            w.timestamp - state.last_funding_at,
            PREMIUM_SAMPLE_MAX_SECONDS,
        ),
    )
    w.market_states.put(
        market_id,
        msgspec.structs.replace(
            state,
            mark_price=mark,
            premium_sum=state.premium_sum + (mark - index) * seconds,
            premium_seconds=state.premium_seconds + seconds,
        ),
    )
