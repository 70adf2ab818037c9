"""Perpetual funding with a cumulative per-lot index, settled lazily.

Premium from the resting book, time-weighted (docs/execution.md, "Funding").
At the end of every block, after the auctions, each perpetual with a fresh
oracle price and not paused takes one sample:

    premium  = max(0, impact_bid - index) - max(0, index - impact_ask)
                                       (impact.py; a side without
                                        impact_notional of depth counts as 0)
    seconds  = min(now - previous block time, now - interval start,
                   PREMIUM_SAMPLE_MAX_SECONDS)
    premium_sum     += premium * seconds
    premium_seconds += seconds

so each second of the interval carries the premium of the first block at or
after it, and seconds no block sampled (a halted chain, a stale oracle, a
paused market, a gap longer than the cap) count as zero. Trades do not enter
the premium at all: only depth that stays in the book after the auction,
where anyone can trade against it, does. The same sample stores the mark
(mark.py) and the last trade. When a funding interval has passed, at the start
of the next block:

    k        = (now - last_funding_at) // funding_interval     whole intervals due
    premium  = premium_sum / funding_interval                   rounded toward zero
    premium  = clamp(premium, -bound, +bound)                   (`premium_bound`)
    bound    = floor(index * min(funding_clamp,
                                 FUNDING_MARGIN_GAP_MULTIPLE * (initial_margin
                                                                - maintenance_margin)))
    per_lot  = premium * lot_size / 10**18                      rounded toward zero
    long_index  += per_lot         (longs pay when bids sit above the index)
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
from .impact import ImpactPrices
from .mark import observe_perp
from .markets import is_oracle_fresh
from .receipts import FundingApplied
from .records import MarketKind, MarketParams, MarketState
from .state import StateWriter

PREMIUM_SAMPLE_MAX_SECONDS: Final = 5
"""Seconds one block's premium sample may cover. Blocks come every second or
less; a longer gap is a halt whose seconds count as zero. The cap also bounds
what a leader gains by stretching its block's timestamp (payload drift <= 5 s)."""


FUNDING_MARGIN_GAP_MULTIPLE: Final = SCALE
"""1.0: one interval's funding is at most (initial_margin - maintenance_margin)
of the index notional, so a position opened at the initial requirement is not
brought below maintenance by one interval of funding alone (at an unchanged
index). With 10% / 5% margins and a 1% funding_clamp the bound is 1%; with a
20% funding_clamp it is the 5% gap."""


def impact_premium(index: int, impact: ImpactPrices) -> int:
    """One block's premium sample (wad price): positive when bids for
    impact_notional sit above the index, negative when asks sit below it."""
    above = 0 if impact.bid is None else max(0, impact.bid - index)
    below = 0 if impact.ask is None else max(0, index - impact.ask)
    return above - below


def premium_bound(params: MarketParams, index: int) -> int:
    """The largest |premium| (wad price) one funding interval may charge:
    floor(index * min(funding_clamp, FUNDING_MARGIN_GAP_MULTIPLE * margin gap))."""
    gap = params.initial_margin - params.maintenance_margin
    fraction = min(params.funding_clamp, (FUNDING_MARGIN_GAP_MULTIPLE * gap) // SCALE)
    return (index * max(fraction, 0)) // SCALE  # floor: never more than the bound


def clamp_premium(params: MarketParams, index: int, premium: int) -> int:
    bound = premium_bound(params, index)
    return max(-bound, min(bound, premium))


def _toward_zero(numerator: int, denominator: int) -> int:
    quotient = abs(numerator) // denominator
    return -quotient if numerator < 0 else quotient


def funding_per_lot(params: MarketParams, state: MarketState) -> int:
    """Quote one long lot pays for the interval (negative: receives), from the samples."""
    if state.premium_sum == 0 or state.oracle_price == 0 or params.funding_interval <= 0:
        return 0
    premium = _toward_zero(state.premium_sum, params.funding_interval)
    premium = clamp_premium(params, state.oracle_price, premium)
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
    """Record this block's last trade, mark and time-weighted premium for every
    live perpetual, from the books as the auctions left them."""
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
    cleared = w.cleared_prices.get(market_id)
    observed = w.observed.get(market_id)
    if observed is not None and observed[:4] == (
        params,
        index,
        state.last_trade_price,
        cleared,
    ):
        seen = observed[4]  # the auction just observed this book: nothing moved it since
    else:
        seen = observe_perp(params, state, cleared, w.book(market_id))
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
            mark_price=seen.mark,
            premium_sum=state.premium_sum + impact_premium(index, seen.impact) * seconds,
            premium_seconds=state.premium_seconds + seconds,
            last_trade_price=seen.last_trade,
        ),
    )
