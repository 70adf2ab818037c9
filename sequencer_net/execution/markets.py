"""Markets: governance listing, parameter updates, pausing, and oracle prices.

Governance transactions must be signed by the admin key fixed in genesis.
Oracle prices come from the validators' reports (oracle.py); a price is usable
for `oracle_staleness` seconds after its `published_at` (see `is_oracle_fresh`).
While a market's price is stale (or missing) new orders in it are rejected
(`StaleOraclePrice`) and its auction does not run; margin and liquidation keep
using the last price, because halting liquidations is worse than a stale mark.
"""

from __future__ import annotations

import msgspec

from .exceptions import (
    InvalidMarketParams,
    MarketExists,
    MarketNotTrading,
    StaleOraclePrice,
    Unauthorized,
    UnknownMarket,
)
from .fixed_point import SCALE
from .limits import (
    MAX_AMOUNT,
    MAX_FUNDING_INTERVAL_SECONDS,
    MAX_LIQUIDATION_MISSES,
    MAX_MARKET_ID,
    MAX_OPTION_TENOR_SECONDS,
    MAX_SETTLEMENT_WINDOW_SECONDS,
)
from .records import MarketKind, MarketParams, MarketState, OptionKind
from .state import StateWriter
from .transactions import ListMarket, SetMarketPaused, UpdateMarketParams

MAX_FEE_RATE = SCALE // 10
"""Fees above 10% of notional are a typo, not a policy."""


def new_market_state(now: int) -> MarketState:
    return MarketState(
        paused=False,
        oracle_price=0,
        oracle_volatility=0,
        oracle_published_at=0,
        mark_price=0,
        long_index=0,
        short_index=0,
        premium_sum=0,
        premium_seconds=0,
        last_funding_at=now,
        open_lots=0,
        settlement_price=0,
    )


def check_market_params(params: MarketParams, now: int) -> None:
    """Raise InvalidMarketParams unless the parameters are consistent.

    `tick_size * lot_size` must be a multiple of SCALE so that a fill's notional
    (quantity * price / SCALE) is an exact integer: no rounding, hence nothing
    created or destroyed, when collateral changes hands.
    """

    def fail(why: str) -> InvalidMarketParams:
        return InvalidMarketParams(why)

    if params.kind not in (MarketKind.PERPETUAL, MarketKind.OPTION):
        raise fail("unknown market kind")
    if not (0 < params.tick_size <= MAX_AMOUNT and 0 < params.lot_size <= MAX_AMOUNT):
        raise fail("tick and lot size must be positive")
    if (params.tick_size * params.lot_size) % SCALE != 0:
        raise fail("tick_size * lot_size must be a multiple of 10**18 (exact notionals)")
    if not (0 < params.maintenance_margin <= params.initial_margin <= SCALE):
        raise fail("need 0 < maintenance_margin <= initial_margin <= 1")
    for name in ("maker_fee", "taker_fee", "liquidation_fee"):
        if not 0 <= getattr(params, name) <= MAX_FEE_RATE:
            raise fail(f"{name} must be in [0, 0.1]")
    if not 0 <= params.mark_band < SCALE:
        raise fail("mark_band must be in [0, 1)")
    if not 0 < params.oracle_staleness <= MAX_FUNDING_INTERVAL_SECONDS:
        raise fail("oracle_staleness must be positive and at most a week")
    if not -SCALE <= params.risk_free_rate <= SCALE:
        raise fail("risk_free_rate must be in [-1, 1]")
    if not 0 <= params.min_premium_notional <= MAX_AMOUNT:
        raise fail("min_premium_notional must be in [0, MAX_AMOUNT]")
    if not 0 < params.max_oracle_move <= SCALE:
        raise fail("max_oracle_move must be in (0, 1]")
    if not 0 < params.impact_notional <= MAX_AMOUNT:
        raise fail("impact_notional must be in (0, MAX_AMOUNT]")
    if not 0 <= params.settlement_window <= MAX_SETTLEMENT_WINDOW_SECONDS:
        raise fail("settlement_window must be in [0, a day]")
    if not 0 < params.max_liquidation_notional <= MAX_AMOUNT:
        raise fail("max_liquidation_notional must be in (0, MAX_AMOUNT]")
    if not 0 < params.max_liquidation_misses <= MAX_LIQUIDATION_MISSES:
        raise fail("max_liquidation_misses must be in [1, 100]")
    if params.kind == MarketKind.PERPETUAL:
        if params.option is not None:
            raise fail("a perpetual has no option terms")
        if not 0 < params.funding_interval <= MAX_FUNDING_INTERVAL_SECONDS:
            raise fail("funding_interval must be positive and at most a week")
        if not 0 <= params.funding_clamp <= SCALE:
            raise fail("funding_clamp must be in [0, 1]")
    else:
        terms = params.option
        if terms is None:
            raise fail("an option market needs option terms")
        if terms.option_kind not in (OptionKind.CALL, OptionKind.PUT):
            raise fail("unknown option kind")
        if not 0 < terms.strike <= MAX_AMOUNT:
            raise fail("strike must be positive")
        if not 0 <= terms.underlying <= MAX_MARKET_ID:
            raise fail("underlying must be an id in [0, 2**32 - 1]")
        if terms.expiry <= now:
            raise fail("expiry must be in the future")
        if terms.expiry - now > MAX_OPTION_TENOR_SECONDS:
            raise fail("expiry must be at most ten years after listing")
        if params.funding_interval != 0 or params.funding_clamp != 0:
            raise fail("options have no funding")
        if params.settlement_window <= 0:
            raise fail("an option needs a positive settlement_window")


def _require_admin(w: StateWriter, sender: bytes) -> None:
    if sender != w.config.admin:
        raise Unauthorized("governance transactions need the admin key")


def apply_list_market(w: StateWriter, sender: bytes, tx: ListMarket) -> None:
    _require_admin(w, sender)
    if not 0 <= tx.market_id <= MAX_MARKET_ID:
        raise InvalidMarketParams("market id out of range")
    if w.params(tx.market_id) is not None:
        raise MarketExists(f"market {tx.market_id} is already listed")
    check_market_params(tx.params, w.timestamp)
    w.market_params.put(tx.market_id, tx.params)
    w.market_states.put(tx.market_id, new_market_state(w.timestamp))


def apply_update_market(w: StateWriter, sender: bytes, tx: UpdateMarketParams) -> None:
    """Replace parameters; kind, lot size, option terms and settlement window are
    fixed at listing (the funding index is kept per lot, a position's meaning must
    not change, and the settlement average must cover the window it started on)."""
    _require_admin(w, sender)
    old = w.params(tx.market_id)
    if old is None:
        raise UnknownMarket(f"market {tx.market_id} is not listed")
    new = tx.params
    fixed = (new.kind, new.lot_size, new.option, new.settlement_window)
    if fixed != (old.kind, old.lot_size, old.option, old.settlement_window):
        raise InvalidMarketParams(
            "kind, lot_size, option terms and settlement_window cannot change"
        )
    if new.option is None:
        check_market_params(new, w.timestamp)
    else:  # an option's expiry may already be near; check everything else
        check_market_params(
            msgspec.structs.replace(
                new, option=msgspec.structs.replace(new.option, expiry=w.timestamp + 1)
            ),
            w.timestamp,
        )
    if new.tick_size != old.tick_size:
        _require_book_on_grid(w, tx.market_id, new.tick_size)
    w.market_params.put(tx.market_id, new)


def _require_book_on_grid(w: StateWriter, market_id: int, tick_size: int) -> None:
    """A new tick size must keep every resting order on the grid (the auction
    takes only grid prices). Governance runs before the order phase, so the
    book here is exactly the resting orders. Cost O(book), admin-only."""
    for order in w.book(market_id).values():
        if order.limit_price % tick_size:
            raise InvalidMarketParams(
                "tick_size would leave resting orders off the grid: choose a divisor "
                "of the old tick, or wait until those orders are gone"
            )


def apply_set_paused(w: StateWriter, sender: bytes, tx: SetMarketPaused) -> None:
    _require_admin(w, sender)
    state = w.market(tx.market_id)
    if state is None:
        raise UnknownMarket(f"market {tx.market_id} is not listed")
    w.market_states.put(tx.market_id, msgspec.structs.replace(state, paused=tx.paused))


def is_oracle_fresh(params: MarketParams, state: MarketState, now: int) -> bool:
    """A price exists and is at most `oracle_staleness` seconds old."""
    return state.oracle_price > 0 and now - state.oracle_published_at <= params.oracle_staleness


def is_expired(params: MarketParams, now: int) -> bool:
    return params.option is not None and now >= params.option.expiry


def require_trading(w: StateWriter, market_id: int) -> tuple[MarketParams, MarketState]:
    """The market's params and state if it accepts orders now; else raise."""
    params = w.params(market_id)
    state = w.market(market_id)
    if params is None or state is None:
        raise UnknownMarket(f"market {market_id} is not listed")
    if state.paused:
        raise MarketNotTrading(f"market {market_id} is paused")
    if is_expired(params, w.timestamp):
        raise MarketNotTrading(f"market {market_id} has expired")
    if not is_oracle_fresh(params, state, w.timestamp):
        raise StaleOraclePrice(f"market {market_id} has no fresh oracle price")
    return params, state


def premium_clearing_price(params: MarketParams, cleared: tuple[int, int] | None) -> int | None:
    """The block's clearing price as the mark's last trade (mark.py): None when
    the market did not trade, or traded less than `min_premium_notional`
    (volume * price), so that a dust trade never becomes the last trade."""
    if cleared is None:
        return None
    price, volume = cleared
    if (volume * price) // SCALE < params.min_premium_notional:  # floor: dust stays dust
        return None
    return price
