"""An option's settlement price: the time-weighted average of its oracle spot
over the last `settlement_window` seconds before expiry (docs/execution.md,
"Settlement price").

One price at expiry can be moved by whoever moves that price for one block; an
average over a window cannot, by more than that block's share of the window.
Every block (advance_market_clock, before expiry settlement) each unsettled
option market takes one sample, as funding does for the premium:

    start    = expiry - settlement_window
    end      = min(now, expiry)
    seconds  = min(end - max(previous block time, start), SETTLEMENT_SAMPLE_MAX_SECONDS)
    settlement_twap_sum     += oracle spot * seconds
    settlement_twap_seconds += seconds

so each second of the window carries the spot the market holds at the first
block at or after it. A block takes no sample when `seconds` <= 0 (before the
window, or a second block at the same time), when the market has no price, when
its price was published after expiry, or when the price is stale at `end`
(older than oracle_staleness): those seconds are simply not counted.

At expiry the settlement price is

    S = settlement_twap_sum // settlement_twap_seconds        rounded down

(the exact mean less at most 1 wei; both sides pay and receive the same
integer payout, so the rounding creates nothing). With no sample at all the
market falls back to the oracle price, once one published at or after expiry
arrives, and says so in its OptionSettled event (`source`).

Bound: a block moves the sum by at most price * SETTLEMENT_SAMPLE_MAX_SECONDS,
so a one-block spike of size d moves S by at most d * seconds / twap_seconds,
i.e. d * 5 / window when every second of the window was sampled.
"""

from __future__ import annotations

from typing import Final

import msgspec

from .records import MarketKind, MarketParams, MarketState
from .state import StateWriter

SETTLEMENT_SAMPLE_MAX_SECONDS: Final = 5
"""Seconds one block's sample may cover. Blocks come every second or less; a
longer gap is a halt, whose seconds count as unsampled. The cap bounds one
block's weight in the average whatever its timestamp (payload drift <= 5 s),
the same bound as funding's PREMIUM_SAMPLE_MAX_SECONDS."""

SOURCE_TWAP: Final = "twap"
SOURCE_ORACLE_FALLBACK: Final = "oracle-fallback"


def sample_settlement_price(w: StateWriter, market_id: int) -> None:
    """Add this block's time-weighted spot sample to an option's settlement average."""
    params = w.params(market_id)
    state = w.market(market_id)
    assert params is not None and state is not None
    terms = params.option
    if params.kind != MarketKind.OPTION or terms is None or state.settlement_price:
        return
    end = min(w.timestamp, terms.expiry)
    start = max(w.base.block.timestamp, terms.expiry - params.settlement_window)
    seconds = min(end - start, SETTLEMENT_SAMPLE_MAX_SECONDS)
    if seconds <= 0 or not _usable_at(params, state, end):
        return
    w.market_states.put(
        market_id,
        msgspec.structs.replace(
            state,
            settlement_twap_sum=state.settlement_twap_sum + state.oracle_price * seconds,
            settlement_twap_seconds=state.settlement_twap_seconds + seconds,
        ),
    )


def _usable_at(params: MarketParams, state: MarketState, second: int) -> bool:
    """A price exists, was published by `second`, and is not stale at `second`."""
    published = state.oracle_published_at
    return (
        state.oracle_price > 0
        and published <= second
        and second - published <= params.oracle_staleness
    )


def twap_settlement_price(state: MarketState) -> int | None:
    """The window's average spot (rounded down), or None if nothing was sampled."""
    if state.settlement_twap_seconds <= 0:
        return None
    return state.settlement_twap_sum // state.settlement_twap_seconds
