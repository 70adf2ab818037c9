"""Prices no single key can move: the validators report, the engine takes the median.

Every validator is an oracle reporter, weighted by its voting power (ChainConfig.
oracles, fixed at genesis). A reporter sends `OracleUpdate(published_at, prices)`
as an ordinary transaction; `apply_price_report` keeps, per market and
reporter, its latest report (state key b"report/" + market + address). A report
must come from a reporter, be newer than that reporter's previous report for the
market, not be after the block time and not already stale.

Once per block, after the account phase and before funding, expiries and the
auctions, `aggregate_prices` computes each market's price (docs/execution.md,
"Oracle"):

    fresh      reports with block_time - published_at <= oracle_staleness
    quorum     3 * power(fresh) > 2 * power(all reporters)
    price      the power-weighted (lower) median of the fresh prices: the
               smallest p with 2 * power(fresh prices <= p) >= power(fresh);
               ties in price are broken by address, so the order is total
    volatility the weighted median of the fresh volatilities, the same way
    published  the largest t such that reporters holding more than 2/3 of all
               the power reported at or after t (the quorum's age)
    cap        with a previous price P, the new price is clamped to
               P +- floor(P * max_oracle_move)

Without a quorum nothing changes: the market keeps its last price and
`published_at`, so it turns stale (`markets.is_oracle_fresh`) exactly when no
2/3 of the power has reported within `oracle_staleness`. With the quorum
present, reporters holding less than a third of all power hold less than half
of the fresh power, so the median lies between two honest reports: a minority
of reporters, however far off, cannot move the price outside the honest range,
and the cap bounds how far even the honest median moves in one block.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from .exceptions import InvalidOracleUpdate, Unauthorized, UnknownMarket
from .fixed_point import SCALE
from .limits import MAX_AMOUNT, MAX_ORACLE_PRICES, MAX_VOLATILITY
from .receipts import OraclePriceSet
from .records import MarketKind, MarketState, OracleReporter, PriceReport
from .state import StateWriter, report_key
from .transactions import OracleUpdate


def reporter_power(reporters: Iterable[OracleReporter], address: bytes) -> int:
    """The reporter's power, or 0 for a key that is not a reporter."""
    for reporter in reporters:
        if reporter.address == address:
            return reporter.power
    return 0


def apply_price_report(w: StateWriter, sender: bytes, tx: OracleUpdate) -> None:
    """Store each price as the sender's latest report for its market."""
    if reporter_power(w.config.oracles, sender) == 0:
        raise Unauthorized("price reports come from the oracle reporters (the validators)")
    if not 0 < len(tx.prices) <= MAX_ORACLE_PRICES:
        raise InvalidOracleUpdate(f"an update carries 1 to {MAX_ORACLE_PRICES} prices")
    if tx.published_at > w.timestamp:
        raise InvalidOracleUpdate("published_at is after the block timestamp")
    seen: set[int] = set()
    for quote in tx.prices:
        if quote.market_id in seen:
            raise InvalidOracleUpdate(f"market {quote.market_id} appears twice")
        seen.add(quote.market_id)
        params = w.params(quote.market_id)
        if params is None:
            raise UnknownMarket(f"market {quote.market_id} is not listed")
        if w.timestamp - tx.published_at > params.oracle_staleness:
            raise InvalidOracleUpdate(f"market {quote.market_id}: the report is already stale")
        key = report_key(quote.market_id, sender)
        previous = w.reports.get(key)
        if previous is not None and tx.published_at <= previous.published_at:
            raise InvalidOracleUpdate(f"market {quote.market_id}: report is not newer")
        if not 0 < quote.price <= MAX_AMOUNT or not 0 <= quote.volatility <= MAX_VOLATILITY:
            raise InvalidOracleUpdate(
                "price must be in (0, MAX_AMOUNT], volatility in [0, MAX_VOLATILITY]"
            )
        if params.kind == MarketKind.OPTION and quote.volatility == 0:
            raise InvalidOracleUpdate("an option market needs a positive implied volatility")
        w.reports.put(key, PriceReport(tx.published_at, quote.price, quote.volatility))


def weighted_median(values: Iterable[tuple[int, bytes, int]]) -> int:
    """The lower power-weighted median of (value, address, power) entries: the
    smallest value v with 2 * power(entries <= v) >= total power."""
    ordered = sorted(values)
    total = sum(power for _, _, power in ordered)
    if total <= 0:
        raise ValueError("the median of nothing")
    running = 0
    for value, _, power in ordered:
        running += power
        if 2 * running >= total:
            return value
    raise AssertionError("unreachable: the running power reaches the total")


def quorum_time(reports: Iterable[tuple[int, int]], total_power: int) -> int | None:
    """The largest t such that more than 2/3 of `total_power` reported at or after
    t, from (published_at, power) pairs; None without such a quorum."""
    running = 0
    for published_at, power in sorted(reports, reverse=True):
        running += power
        if 3 * running > 2 * total_power:
            return published_at
    return None


def capped_move(previous: int, target: int, max_move: int) -> int:
    """`target` clamped to previous +- floor(previous * max_move); no cap before
    the first price."""
    if previous <= 0:
        return target
    band = (previous * max_move) // SCALE
    return min(max(target, previous - band), previous + band)


def aggregate_prices(w: StateWriter) -> None:
    """Set every listed market's oracle price from its fresh reports."""
    reporters = w.config.oracles
    if not reporters:
        return
    for market_id in sorted(w.market_params.live_keys()):
        if w.phase_skipped("oracle", market_id):
            continue
        with w.phase("oracle", market_id):
            _aggregate_market(w, market_id, reporters)


def _aggregate_market(
    w: StateWriter, market_id: int, reporters: tuple[OracleReporter, ...]
) -> None:
    params = w.params(market_id)
    state = w.market(market_id)
    assert params is not None and state is not None
    fresh: list[tuple[OracleReporter, PriceReport]] = []
    for reporter in reporters:
        report = w.reports.get(report_key(market_id, reporter.address))
        if report is not None and w.timestamp - report.published_at <= params.oracle_staleness:
            fresh.append((reporter, report))
    total = sum(reporter.power for reporter in reporters)
    published_at = quorum_time(((r.published_at, o.power) for o, r in fresh), total)
    if published_at is None:
        return  # no quorum: the last price stays and turns stale on its own
    median = weighted_median((r.price, o.address, o.power) for o, r in fresh)
    volatility = weighted_median((r.volatility, o.address, o.power) for o, r in fresh)
    price = capped_move(state.oracle_price, median, params.max_oracle_move)
    _set_price(w, market_id, state, price, volatility, published_at, price != median)


def _set_price(
    w: StateWriter,
    market_id: int,
    state: MarketState,
    price: int,
    volatility: int,
    published_at: int,
    capped: bool,
) -> None:
    if (state.oracle_price, state.oracle_volatility, state.oracle_published_at) == (
        price,
        volatility,
        published_at,
    ):
        return
    w.market_states.put(
        market_id,
        msgspec.structs.replace(
            state,
            oracle_price=price,
            oracle_volatility=volatility,
            oracle_published_at=published_at,
        ),
    )
    w.events.append(OraclePriceSet(market_id, price, volatility, published_at, capped))
