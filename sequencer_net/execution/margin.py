"""Cross-margin risk of a subaccount: equity and margin requirements.

    equity = collateral
             - sum(pending charges)                       (funding)
             + sum(size * valuation price)                 rounded toward -inf
    perp requirement(f)  = |size| * index * f             rounded toward +inf
    option requirement   = option_margin.option_requirements: per underlying,
                           the worst loss over a grid of spot x volatility
                           shocks, at least a floor per short, at most the
                           group's maximum loss                rounded toward +inf

The valuation price is the oracle index for perpetuals (so a thin auction cannot
push anyone into liquidation) and the Black-Scholes mark for options. Perps stay
on the index rather than the mark (mark.py): the mark comes from this venue's
own book, which one account can shape for the block in which liquidation runs
(docs/execution.md, "Mark price").
Maintenance uses `maintenance_margin` and the maintenance grid; initial uses
`initial_margin` and the wider initial grid; initial with orders is the worst
case over the subaccount's open orders: per perp market the larger requirement
of size + open buys and size - open sells; per option group the scenario
requirement with every option's open sells filled or not (whichever is worse
in each scenario), plus the premium its open buy orders reserve
(`Position.open_buy_premium`).

Long options (docs/execution.md, "Option margin"): their premium is paid in
full from free collateral (an option buy order reserves quantity * limit of it
when placed), their mark counts in equity, and the scenario grid counts what
they could lose, which is never more than that mark. A long option is never
bought on credit; what can be drawn against one is its worst value over the
initial grid, and an account that drew on it is liquidated once the long,
shocked by the maintenance grid, no longer covers the credit: while its mark
still does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from .fixed_point import SCALE
from .option_margin import (
    MAINTENANCE_GRID,
    GroupOptionTerms,
    OptionHolding,
    SingleOptionTerms,
    group_key,
    group_option_requirement,
    group_option_terms,
    option_requirements,
    single_option_requirement,
    single_option_terms,
)
from .options import option_mark
from .positions import pending_charge, settle_charges
from .records import MarketKind, MarketParams, MarketState, Position
from .state import StateWriter

_SCALE_SQUARED = SCALE * SCALE


class Risk(NamedTuple):
    equity: int
    maintenance: int
    initial: int
    initial_with_orders: int


class Maintenance(NamedTuple):
    """Equity and the maintenance requirement: all that liquidation, fees and
    the insurance fund look at. The same values as `Risk`'s first two fields,
    without the initial grids (three times the scenarios of maintenance)."""

    equity: int
    maintenance: int


def valuation_price(
    w: StateWriter, market_id: int, params: MarketParams, state: MarketState
) -> int:
    if params.kind == MarketKind.PERPETUAL:
        return state.oracle_price
    return option_mark(w, market_id, params, state)


def settled_positions(
    w: StateWriter, sid: bytes
) -> Iterator[tuple[int, MarketParams, MarketState, int, int]]:
    """Each non-zero position of `sid`, its charges settled just before it is
    yielded: (market id, params, state, size, valuation price). Lazy, so a
    caller may move one position before the next is settled."""
    for market_id in w.subaccount(sid).markets:
        size = settle_charges(w, sid, market_id).size
        if size == 0:
            continue
        params = w.params(market_id)
        state = w.market(market_id)
        assert params is not None and state is not None
        yield market_id, params, state, size, valuation_price(w, market_id, params, state)


def requirement(params: MarketParams, state: MarketState, size: int, fraction: int) -> int:
    """Margin a perpetual position of `size` needs at `fraction` (rounded up)."""
    if size == 0:
        return 0
    return -((-abs(size) * state.oracle_price * fraction) // _SCALE_SQUARED)  # ceiling


def _perp_with_orders(params: MarketParams, state: MarketState, position: Position) -> int:
    """The initial requirement of one perp market with every open order assumed filled."""
    return max(
        requirement(params, state, position.size + position.open_buy, params.initial_margin),
        requirement(params, state, position.size - position.open_sell, params.initial_margin),
    )


def subaccount_risk(w: StateWriter, sid: bytes) -> Risk:
    return _risk(w, sid, initial=True)


def meets_initial_with_orders(w: StateWriter, sid: bytes) -> bool:
    """`subaccount_risk(w, sid)`'s equity >= initial_with_orders: what a new
    order, a withdrawal or a transfer must keep, computed without the
    maintenance and plain initial requirements it does not read."""
    risk = _risk(w, sid, initial=True, orders_only=True)
    return risk.equity >= risk.initial_with_orders


def maintenance_risk(w: StateWriter, sid: bytes) -> Maintenance:
    """`subaccount_risk`'s equity and maintenance, computed without the initial
    requirements."""
    risk = _risk(w, sid, initial=False)
    return Maintenance(risk.equity, risk.maintenance)


def _risk(w: StateWriter, sid: bytes, *, initial: bool, orders_only: bool = False) -> Risk:
    """Equity and requirements; with `initial` False the initial ones are 0;
    with `orders_only` only equity and initial_with_orders (the others 0).

    A perpetual's terms are written out here (`pending_charge`, the index as
    its valuation price, `requirement`): the liquidation check runs this for
    every holder of a market whose index moved."""
    sub = w.subaccount(sid)
    equity = sub.collateral
    maintenance = initial_requirement = with_orders = 0
    options: list[OptionHolding] = []
    positions, market_params, market_states = w.positions, w.market_params, w.market_states
    for market_id in sub.markets:
        position = positions.get(sid + market_id.to_bytes(4, "big"))
        params = market_params.get(market_id)
        state = market_states.get(market_id)
        assert position is not None and params is not None and state is not None
        size = position.size
        if params.kind == MarketKind.PERPETUAL:
            if size:
                price = state.oracle_price
                index = state.long_index if size > 0 else state.short_index
                equity -= abs(size) // params.lot_size * (index - position.index_snapshot)
                equity += (size * price) // SCALE  # toward -inf: equity is never overstated
                maintenance -= (-abs(size) * price * params.maintenance_margin) // _SCALE_SQUARED
                if initial:
                    initial_requirement -= (
                        -abs(size) * price * params.initial_margin
                    ) // _SCALE_SQUARED
            if initial:
                with_orders += _perp_with_orders(params, state, position)
            continue
        if size:
            equity -= pending_charge(params, state, position)
            price = valuation_price(w, market_id, params, state)
            equity += (size * price) // SCALE
        options.append(OptionHolding(market_id, params, state, size, position.open_sell))
        with_orders += position.open_buy_premium
    if orders_only:
        if options:
            with_orders += option_requirements(w, options, orders_only=True).initial_with_orders
        return Risk(equity, 0, 0, with_orders)
    if options:
        option = option_requirements(w, options, initial=initial)
        maintenance += option.maintenance
        initial_requirement += option.initial
        with_orders += option.initial_with_orders
    if not initial:
        return Risk(equity, maintenance, 0, 0)
    return Risk(equity, maintenance, initial_requirement, with_orders)


def free_collateral(w: StateWriter, sid: bytes) -> int:
    """Equity above the initial requirement including open orders (may be negative)."""
    risk = subaccount_risk(w, sid)
    return risk.equity - risk.initial_with_orders


class MaintenanceCheck:
    """`maintenance_risk` of many subaccounts of one writer, each market's
    inputs read once: what the end-of-block liquidation check runs for every
    holder of a market whose inputs moved.

    The per-market values (params, state, index and funding indexes, an
    option's mark) are remembered until `forget`; the caller forgets them
    whenever it changes any state (a close-out), so every result equals
    `maintenance_risk(w, sid)` at the moment of the call (the same terms, each
    rounded the same way, summed in the same order)."""

    __slots__ = ("_groups", "_markets", "_options", "_w")

    def __init__(self, w: StateWriter) -> None:
        self._w = w
        self._markets: dict[int, tuple[MarketParams, MarketState, int, bool]] = {}
        self._options: dict[int, SingleOptionTerms] = {}
        self._groups: dict[tuple[int, ...], GroupOptionTerms] = {}

    def forget(self) -> None:
        self._markets.clear()
        self._options.clear()
        self._groups.clear()

    def _market(self, market_id: int) -> tuple[MarketParams, MarketState, int, bool]:
        """A market's params, state, valuation price (-1 for an option until a
        non-zero position needs its mark, computed then as `maintenance_risk`
        does) and whether it is a perpetual."""
        w = self._w
        params = w.market_params.get(market_id)
        state = w.market_states.get(market_id)
        assert params is not None and state is not None
        perpetual = params.kind == MarketKind.PERPETUAL
        entry = (params, state, state.oracle_price if perpetual else -1, perpetual)
        self._markets[market_id] = entry
        return entry

    def _mark(self, market_id: int, params: MarketParams, state: MarketState) -> int:
        price = valuation_price(self._w, market_id, params, state)
        self._markets[market_id] = (params, state, price, False)
        return price

    def _options_requirement(self, options: list[OptionHolding]) -> int:
        """`option_requirements(w, options, initial=False).maintenance`: per
        group (sorted by key, as there), from its markets' size-independent terms."""
        if len(options) == 1:
            groups = [options]
        else:
            by_key: dict[tuple[int, int], list[OptionHolding]] = {}
            for holding in options:
                by_key.setdefault(group_key(holding.market_id, holding.params), []).append(holding)
            groups = [by_key[key] for key in sorted(by_key)]
        total = 0
        for group in groups:
            if len(group) == 1:
                holding = group[0]
                if not holding.size:
                    continue
                terms = self._options.get(holding.market_id)
                if terms is None:
                    terms = single_option_terms(self._w, holding, MAINTENANCE_GRID, initial=False)
                    self._options[holding.market_id] = terms
                total += single_option_requirement(terms, holding.size)
                continue
            sizes = [h.size for h in group]
            if not any(sizes):
                continue
            ids = tuple(h.market_id for h in group)
            group_terms = self._groups.get(ids)
            if group_terms is None:
                group_terms = group_option_terms(self._w, group, MAINTENANCE_GRID, initial=False)
                self._groups[ids] = group_terms
            total += group_option_requirement(group_terms, sizes)
        return total

    def __call__(self, sid: bytes, sizes: list[tuple[int, int]] | None = None) -> Maintenance:
        """`maintenance_risk(w, sid)`; with `sizes`, also append (market id,
        size) of each non-zero position to it."""
        w = self._w
        sub = w.subaccount(sid)
        equity = sub.collateral
        maintenance = 0
        options: list[OptionHolding] = []
        positions, markets = w.positions, self._markets
        for market_id in sub.markets:
            position = positions.get(sid + market_id.to_bytes(4, "big"))
            assert position is not None
            entry = markets.get(market_id) or self._market(market_id)
            params, state, price, perpetual = entry
            size = position.size
            if sizes is not None and size:
                sizes.append((market_id, size))
            if perpetual:
                if size:
                    index = state.long_index if size > 0 else state.short_index
                    equity -= abs(size) // params.lot_size * (index - position.index_snapshot)
                    equity += (size * price) // SCALE
                    fraction = params.maintenance_margin
                    maintenance -= (-abs(size) * price * fraction) // _SCALE_SQUARED
                continue
            if size:
                equity -= pending_charge(params, state, position)
                if price < 0:
                    price = self._mark(market_id, params, state)
                equity += (size * price) // SCALE
            options.append(OptionHolding(market_id, params, state, size, position.open_sell))
        if options:
            maintenance += self._options_requirement(options)
        return Maintenance(equity, maintenance)
