"""Option margin by scenario revaluation (docs/execution.md, "Option margin").

A subaccount's option positions are grouped by underlying
(`OptionTerms.underlying`; 0 = none declared, the option is a group of its
own). Each group is one portfolio: for every scenario of a grid (a relative
spot shock and an absolute volatility shock, the same for every option of the
group) every option is revalued with the engine's Black-Scholes
(`options.option_value`, cached per block and market, so all subaccounts share
one revaluation per scenario; `scenario_values` keeps each market's values over
a whole grid as one tuple per block) and

    loss(scenario) = sum_k size_k * (mark_k - value_k(scenario))

The group's requirement is

    requirement = min(max(worst loss over the grid, short floor), max loss)

    short floor = sum over short positions |size| * spot * fraction / 10
                  (fraction: the market's maintenance or initial margin), so a
                  far out-of-the-money short still needs some margin;
    max loss    = the largest loss against the marks over every spot at expiry
                  (the payoffs are piecewise linear in the expiry spot, so 0,
                  the strikes and, with orders, the points where a payoff
                  crosses its mark are enough); unbounded when the group is
                  net short calls. A spread never needs more than it can lose.

rounded up once. The mark itself is in equity (margin.py), so a long loses at
most its mark: long options never need more than their premium, which was
paid in full (buy orders reserve it). Grids (initial contains maintenance, so
initial >= maintenance for every portfolio):

    maintenance: spot -8%, -4%, 0, +4%, +8%                    x vol -5, 0, +5 points
    initial:     spot -15%, -12%, -8%, -4%, 0, +4%, +8%, +12%, +15%
                                                               x vol -10, -5, 0, +5, +10 points

A shocked spot is floor(spot * (1 + shock)); a shocked volatility is at least
MIN_SCENARIO_VOLATILITY.

Open orders (initial with orders): a sell order may fill, so each market's
size is either its size or size - open sells; the loss is linear in the size,
so per scenario (and per expiry spot) the worse of the two is taken for each
market, which is the worst combination exactly. A buy order adds only the
premium it reserves (margin.py): a long can lose no more than what it costs.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Final, NamedTuple

from .fixed_point import SCALE
from .options import option_mark, option_value
from .records import MarketParams, MarketState, OptionKind, OptionTerms
from .state import StateWriter

_PERCENT: Final = SCALE // 100


class ScenarioGrid(NamedTuple):
    """Relative spot shocks and absolute volatility shocks (wads), crossed."""

    spot_shocks: tuple[int, ...]
    volatility_shocks: tuple[int, ...]


MAINTENANCE_GRID: Final = ScenarioGrid(
    tuple(p * _PERCENT for p in (-8, -4, 0, 4, 8)),
    tuple(p * _PERCENT for p in (-5, 0, 5)),
)
"""What liquidation checks: 5 x 3 = 15 scenarios."""

INITIAL_GRID: Final = ScenarioGrid(
    tuple(p * _PERCENT for p in (-15, -12, -8, -4, 0, 4, 8, 12, 15)),
    tuple(p * _PERCENT for p in (-10, -5, 0, 5, 10)),
)
"""What new orders, withdrawals and transfers need: 9 x 5 = 45 scenarios, a
superset of the maintenance grid."""

MIN_SCENARIO_VOLATILITY: Final = _PERCENT
"""A volatility shocked down stays at least 1% (Black-Scholes needs vol > 0)."""

SHORT_FLOOR_DIVISOR: Final = 10
"""A short needs at least a tenth of its margin fraction of spot per unit."""


class OptionHolding(NamedTuple):
    """One option market of a subaccount: its position and unfilled sells."""

    market_id: int
    params: MarketParams
    state: MarketState
    size: int
    open_sell: int


class OptionRequirements(NamedTuple):
    maintenance: int
    initial: int
    initial_with_orders: int


def group_key(market_id: int, params: MarketParams) -> tuple[int, int]:
    """Options with the same declared underlying share a group; an option with
    none (0) is a group of its own."""
    assert params.option is not None
    underlying = params.option.underlying
    return (0, underlying) if underlying else (1, market_id)


def option_requirements(
    w: StateWriter,
    holdings: Iterable[OptionHolding],
    *,
    initial: bool = True,
    orders_only: bool = False,
) -> OptionRequirements:
    """The three requirements of a subaccount's options, summed over its groups;
    with `initial` False only maintenance (the initial ones are 0); with
    `orders_only` only initial_with_orders (the others 0)."""
    if orders_only:
        return OptionRequirements(0, 0, _initial_with_orders(w, holdings))
    if isinstance(holdings, list) and len(holdings) == 1:  # one group of one option
        h = holdings[0]
        now = (h.size,)
        maintenance = _single_requirement(w, h, now, MAINTENANCE_GRID, initial=False)
        if not initial:
            return OptionRequirements(maintenance, 0, 0)
        alone = _single_requirement(w, h, now, INITIAL_GRID, initial=True)
        if not h.open_sell:
            return OptionRequirements(maintenance, alone, alone)
        both = (h.size, h.size - h.open_sell)
        return OptionRequirements(
            maintenance, alone, _single_requirement(w, h, both, INITIAL_GRID, initial=True)
        )
    groups: dict[tuple[int, int], list[OptionHolding]] = {}
    for holding in holdings:
        groups.setdefault(group_key(holding.market_id, holding.params), []).append(holding)
    maintenance = initial_total = with_orders = 0
    for key in sorted(groups):
        group = groups[key]
        if len(group) == 1:
            current = [(group[0].size,)]
            maintenance += group_requirement(w, group, current, MAINTENANCE_GRID, initial=False)
            if not initial:
                continue
            group_initial = group_requirement(w, group, current, INITIAL_GRID, initial=True)
            initial_total += group_initial
            h = group[0]
            if h.open_sell:
                both_sizes = [(h.size, h.size - h.open_sell)]
                with_orders += group_requirement(w, group, both_sizes, INITIAL_GRID, initial=True)
            else:
                with_orders += group_initial
            continue
        # Several options: `group_requirement` from the group's terms, kept for
        # the block while its markets' records are the same objects.
        sizes_now = [h.size for h in group]
        terms = cached_group_terms(w, group, MAINTENANCE_GRID, initial=False)
        maintenance += group_option_requirement(terms, sizes_now)
        if not initial:
            continue
        terms = cached_group_terms(w, group, INITIAL_GRID, initial=True)
        group_initial = group_option_requirement(terms, sizes_now)
        initial_total += group_initial
        if any(h.open_sell for h in group):
            possible = [(h.size, h.size - h.open_sell) if h.open_sell else (h.size,) for h in group]
            with_orders += group_option_requirement_with_orders(terms, possible)
        else:
            with_orders += group_initial
    return OptionRequirements(maintenance, initial_total, with_orders)


def _initial_with_orders(w: StateWriter, holdings: Iterable[OptionHolding]) -> int:
    """`option_requirements(w, holdings).initial_with_orders`, alone: per group
    the initial requirement with every open sell filled or not (without open
    sells, the plain initial requirement)."""
    groups: dict[tuple[int, int], list[OptionHolding]] = {}
    for holding in holdings:
        groups.setdefault(group_key(holding.market_id, holding.params), []).append(holding)
    total = 0
    for key in sorted(groups):
        group = groups[key]
        if len(group) == 1:
            h = group[0]
            sizes = (h.size, h.size - h.open_sell) if h.open_sell else (h.size,)
            total += _single_requirement(w, h, sizes, INITIAL_GRID, initial=True)
            continue
        terms = cached_group_terms(w, group, INITIAL_GRID, initial=True)
        if any(h.open_sell for h in group):
            possible = [(h.size, h.size - h.open_sell) if h.open_sell else (h.size,) for h in group]
            total += group_option_requirement_with_orders(terms, possible)
        else:
            total += group_option_requirement(terms, [h.size for h in group])
    return total


def group_requirement(
    w: StateWriter,
    group: Sequence[OptionHolding],
    sizes: Sequence[tuple[int, ...]],
    grid: ScenarioGrid,
    *,
    initial: bool,
) -> int:
    """min(max(worst scenario loss, short floor), max loss), rounded up once.

    `sizes[k]` lists the sizes market k may end up with (with orders: now or
    with every sell filled). Exact integer arithmetic: losses are wad^2
    numerators, the floor a wad^3 numerator; all three are compared over the
    common denominator SHORT_FLOOR_DIVISOR * SCALE^2.

    The loss is linear in each size, so with d_j = mark - value_j (per market,
    `scenario_deltas`) the worst loss of one market at size s is s * max_j d_j
    for s >= 0 and s * min_j d_j for s < 0: a group of one option (most of
    them) needs no pass over the grid."""
    if len(group) == 1:
        return _single_requirement(w, group[0], sizes[0], grid, initial=initial)
    if all(size == 0 for options in sizes for size in options):
        return 0
    deltas = [scenario_deltas(w, h, grid) for h in group]
    marks = [d[0] for d in deltas]
    columns = [d[1] for d in deltas]
    worst: int
    if all(len(options) == 1 for options in sizes):
        single = [options[0] for options in sizes]
        worst = max(sum(map(operator.mul, single, column)) for column in zip(*columns, strict=True))
    else:
        worst = max(
            sum(max(size * d for size in options) for options, d in zip(sizes, column, strict=True))
            for column in zip(*columns, strict=True)
        )
    scale = SHORT_FLOOR_DIVISOR * SCALE
    required = max(max(worst, 0) * scale, _short_floor(group, sizes, initial=initial))
    cap = _max_loss(group, sizes, marks)
    if cap is not None:
        required = min(required, max(cap, 0) * scale)
    return -(-required // (scale * SCALE))  # margin rounds up


def _single_requirement(
    w: StateWriter,
    holding: OptionHolding,
    options: tuple[int, ...],
    grid: ScenarioGrid,
    *,
    initial: bool,
) -> int:
    """`group_requirement` of a group of one option, written out."""
    if not any(options):
        return 0
    mark, _, highest, lowest = scenario_deltas(w, holding, grid)
    worst = max(size * highest if size >= 0 else size * lowest for size in options)
    scale = SHORT_FLOOR_DIVISOR * SCALE
    params = holding.params
    fraction = params.initial_margin if initial else params.maintenance_margin
    short = max(-min(options), 0)
    required = max(max(worst, 0) * scale, short * holding.state.oracle_price * fraction)
    # The largest loss against the mark over every spot at expiry (_max_loss):
    # at the points 0, the strike and where the payoff crosses the mark.
    terms = _terms(holding)
    strike = terms.strike
    if terms.option_kind == OptionKind.CALL:
        if min(options) < 0:  # net short a call: unbounded
            return -(-required // (scale * SCALE))
        values = (max(-strike, 0), 0, max(mark, 0))
    else:
        values = (max(strike, 0), 0, max(strike - max(strike - mark, 0), 0))
    if len(options) == 1:
        size = options[0]
        cap = max(size * (mark - values[0]), size * (mark - values[1]), size * (mark - values[2]))
    else:
        cap = max(size * (mark - value) for value in values for size in options)
    required = min(required, max(cap, 0) * scale)
    return -(-required // (scale * SCALE))  # margin rounds up


def scenario_values(w: StateWriter, holding: OptionHolding, grid: ScenarioGrid) -> tuple[int, ...]:
    """The option's value in every scenario of `grid` (spot shocks outer,
    volatility shocks inner), computed once per block per market inputs and
    grid and shared by every subaccount holding it."""
    key = _scenario_key(holding, grid)
    cached = w.scenario_values.get(key)
    if cached is None:
        cached = tuple(
            option_value(
                w,
                holding.market_id,
                holding.params,
                _shocked(holding, spot_shock),
                _vol(holding, vol_shock),
            )
            for spot_shock in grid.spot_shocks
            for vol_shock in grid.volatility_shocks
        )
        w.scenario_values[key] = cached
    return cached


def scenario_deltas(
    w: StateWriter, holding: OptionHolding, grid: ScenarioGrid
) -> tuple[int, tuple[int, ...], int, int]:
    """(mark, mark - value in every scenario of `grid`, the largest and the
    smallest of those differences): per block and market inputs, as
    `scenario_values`, shared by every subaccount holding the option."""
    key = _scenario_key(holding, grid)
    cached = w.scenario_deltas.get(key)
    if cached is None:
        mark = option_mark(w, holding.market_id, holding.params, holding.state)
        deltas = tuple(mark - value for value in scenario_values(w, holding, grid))
        cached = (mark, deltas, max(deltas), min(deltas))
        w.scenario_deltas[key] = cached
    return cached


def _scenario_key(holding: OptionHolding, grid: ScenarioGrid) -> tuple[int, int, int, int, object]:
    """What an option's scenario values depend on within a block: its market,
    the oracle's price and volatility, the rate and the grid (the two standard
    grids by a small tag, since a tuple's hash is not kept; any other by value)."""
    state = holding.state
    return (
        holding.market_id,
        state.oracle_price,
        state.oracle_volatility,
        holding.params.risk_free_rate,
        0 if grid is MAINTENANCE_GRID else 1 if grid is INITIAL_GRID else grid,
    )


def _shocked(holding: OptionHolding, shock: int) -> int:
    return (holding.state.oracle_price * (SCALE + shock)) // SCALE  # floor


def _vol(holding: OptionHolding, shock: int) -> int:
    """The shocked volatility; 0 (value at intrinsic) if the market has none."""
    vol = holding.state.oracle_volatility
    if vol <= 0:
        return 0
    return max(vol + shock, MIN_SCENARIO_VOLATILITY)


def _short_floor(
    group: Sequence[OptionHolding], sizes: Sequence[tuple[int, ...]], *, initial: bool
) -> int:
    """sum over shorts |size| * spot * fraction (wad^3; divided by 10 by the caller's scale)."""
    total = 0
    for holding, options in zip(group, sizes, strict=True):
        short = max(-min(options), 0)
        params = holding.params
        fraction = params.initial_margin if initial else params.maintenance_margin
        total += short * holding.state.oracle_price * fraction
    return total


def _max_loss(
    group: Sequence[OptionHolding], sizes: Sequence[tuple[int, ...]], marks: Sequence[int]
) -> int | None:
    """The largest loss against the marks over every spot at expiry (wad^2), or
    None when it is unbounded (net short calls as the spot grows)."""
    slope = 0  # d(loss)/d(spot) for a spot above every strike and crossing
    points = {0}
    legs: list[tuple[bool, int, tuple[int, ...], int]] = []
    for holding, options, mark in zip(group, sizes, marks, strict=True):
        term = _terms(holding)
        strike = term.strike
        points.add(strike)
        call = term.option_kind == OptionKind.CALL
        if call:
            slope += -min(options)
            points.add(strike + mark)  # where the payoff crosses the mark
        else:
            points.add(max(strike - mark, 0))
        legs.append((call, strike, options, mark))
    if slope > 0:
        return None
    # The loss at each point (`_loss` against the intrinsic values), written out.
    worst: int | None = None
    for spot in points:
        total = 0
        for call, strike, options, mark in legs:
            if call:
                value = spot - strike if spot > strike else 0
            else:
                value = strike - spot if strike > spot else 0
            diff = mark - value
            if len(options) == 1:
                total += options[0] * diff
            else:
                total += max(size * diff for size in options)
        if worst is None or total > worst:
            worst = total
    return worst


def _terms(holding: OptionHolding) -> OptionTerms:
    terms = holding.params.option
    assert terms is not None
    return terms


class SingleOptionTerms(NamedTuple):
    """What `_single_requirement` reads of one option market for one grid and
    margin fraction, none of it from the holding's size: (mark, the largest and
    smallest scenario difference, the spot, the fraction, the three payoff
    values the loss cap is taken at; None for a call, whose short is unbounded)."""

    mark: int
    highest: int
    lowest: int
    spot: int
    fraction: int
    call: bool
    values: tuple[int, int, int]


def single_option_terms(
    w: StateWriter, holding: OptionHolding, grid: ScenarioGrid, *, initial: bool
) -> SingleOptionTerms:
    """The size-independent part of `_single_requirement` for `holding`'s market."""
    mark, _, highest, lowest = scenario_deltas(w, holding, grid)
    params = holding.params
    fraction = params.initial_margin if initial else params.maintenance_margin
    terms = _terms(holding)
    strike = terms.strike
    call = terms.option_kind == OptionKind.CALL
    if call:
        values = (max(-strike, 0), 0, max(mark, 0))
    else:
        values = (max(strike, 0), 0, max(strike - max(strike - mark, 0), 0))
    return SingleOptionTerms(
        mark, highest, lowest, holding.state.oracle_price, fraction, call, values
    )


def single_option_requirement(terms: SingleOptionTerms, size: int) -> int:
    """`_single_requirement(w, holding, (size,), grid, initial=...)` from the
    market's `single_option_terms`: the same integers in the same order."""
    if not size:
        return 0
    worst = size * terms.highest if size >= 0 else size * terms.lowest
    scale = SHORT_FLOOR_DIVISOR * SCALE
    short = -size if size < 0 else 0
    required = max(max(worst, 0) * scale, short * terms.spot * terms.fraction)
    if terms.call and size < 0:  # net short a call: unbounded
        return -(-required // (scale * SCALE))
    mark = terms.mark
    first, second, third = terms.values
    cap = max(size * (mark - first), size * (mark - second), size * (mark - third))
    required = min(required, max(cap, 0) * scale)
    return -(-required // (scale * SCALE))  # margin rounds up


class GroupOptionTerms(NamedTuple):
    """What `group_requirement` reads of a group's markets for one grid and
    margin fraction, none of it from the sizes: per scenario the markets'
    differences (mark - value), per market spot x fraction and whether it is a
    call, and per point of `_max_loss` the markets' differences mark - payoff."""

    columns: tuple[tuple[int, ...], ...]
    floors: tuple[int, ...]
    calls: tuple[bool, ...]
    points: tuple[tuple[int, ...], ...]


def group_option_terms(
    w: StateWriter, group: Sequence[OptionHolding], grid: ScenarioGrid, *, initial: bool
) -> GroupOptionTerms:
    """The size-independent part of `group_requirement` for `group`'s markets."""
    deltas = [scenario_deltas(w, h, grid) for h in group]
    marks = [d[0] for d in deltas]
    columns = tuple(zip(*(d[1] for d in deltas), strict=True))
    floors = tuple(
        h.state.oracle_price * (h.params.initial_margin if initial else h.params.maintenance_margin)
        for h in group
    )
    spots = {0}
    legs: list[tuple[bool, int, int]] = []
    for holding, mark in zip(group, marks, strict=True):
        term = _terms(holding)
        strike = term.strike
        spots.add(strike)
        call = term.option_kind == OptionKind.CALL
        spots.add(strike + mark if call else max(strike - mark, 0))
        legs.append((call, strike, mark))
    points = tuple(
        tuple(
            mark
            - (
                (spot - strike if spot > strike else 0)
                if call
                else (strike - spot if strike > spot else 0)
            )
            for call, strike, mark in legs
        )
        for spot in sorted(spots)
    )
    return GroupOptionTerms(columns, floors, tuple(leg[0] for leg in legs), points)


def group_option_requirement(terms: GroupOptionTerms, sizes: Sequence[int]) -> int:
    """`group_requirement(w, group, [(s,) for s in sizes], grid, initial=...)`
    from the group's `group_option_terms`: the same integers."""
    if not any(sizes):
        return 0
    worst: int = max(sum(map(operator.mul, sizes, column)) for column in terms.columns)
    scale = SHORT_FLOOR_DIVISOR * SCALE
    floor: int = sum(-size * f for size, f in zip(sizes, terms.floors, strict=True) if size < 0)
    required = max(max(worst, 0) * scale, floor)
    slope = sum(-size for size, call in zip(sizes, terms.calls, strict=True) if call)
    if slope <= 0:  # else net short calls: the loss is unbounded
        cap: int = max(sum(map(operator.mul, sizes, point)) for point in terms.points)
        required = min(required, max(cap, 0) * scale)
    return -(-required // (scale * SCALE))  # margin rounds up


def cached_group_terms(
    w: StateWriter, group: Sequence[OptionHolding], grid: ScenarioGrid, *, initial: bool
) -> GroupOptionTerms:
    """`group_option_terms(w, group, grid, initial=initial)`, remembered in the
    writer (`StateWriter.group_terms`) for the rest of the block. The terms
    depend on each market's params and state records and the block time only;
    a remembered entry is used when every holding's params and state are the
    very objects it was computed from (records are immutable, so the same
    object holds the same values; an entry keeps its objects alive)."""
    tag = 0 if grid is MAINTENANCE_GRID else 1 if grid is INITIAL_GRID else None
    if tag is None:
        return group_option_terms(w, group, grid, initial=initial)
    key = (tag, initial, *(h.market_id for h in group))
    cached = w.group_terms.get(key)
    if cached is not None:
        records, terms = cached
        if len(records) == len(group) and all(
            params is h.params and state is h.state
            for (params, state), h in zip(records, group, strict=True)
        ):
            return terms
    terms = group_option_terms(w, group, grid, initial=initial)
    w.group_terms[key] = (tuple((h.params, h.state) for h in group), terms)
    return terms


def group_option_requirement_with_orders(
    terms: GroupOptionTerms, sizes: Sequence[tuple[int, ...]]
) -> int:
    """`group_requirement(w, group, sizes, grid, initial=...)` from the group's
    `group_option_terms`, where `sizes[k]` lists the sizes market k may end
    up with (now, or with its open sells filled): the same integers.

    Each market's worst term max(s * d for s in its sizes) is high * d for
    d >= 0 and low * d otherwise (high, low: its largest and smallest size),
    that is low * d + (high - low) * max(d, 0): two products summed over the
    markets per scenario (and per point of the loss cap)."""
    highs = [max(options) for options in sizes]
    lows = [min(options) for options in sizes]
    if not any(highs) and not any(lows):
        return 0
    spans = [high - low for high, low in zip(highs, lows, strict=True)]
    worst: int = _worst_over(highs, lows, spans, terms.columns)
    scale = SHORT_FLOOR_DIVISOR * SCALE
    floor: int = sum(-low * f for low, f in zip(lows, terms.floors, strict=True) if low < 0)
    required = max(max(worst, 0) * scale, floor)
    slope = sum(-low for low, call in zip(lows, terms.calls, strict=True) if call)
    if slope <= 0:  # else net short calls: the loss is unbounded
        cap = _worst_over(highs, lows, spans, terms.points)
        required = min(required, max(cap, 0) * scale)
    return -(-required // (scale * SCALE))  # margin rounds up


def _worst_over(
    highs: list[int], lows: list[int], spans: list[int], rows: tuple[tuple[int, ...], ...]
) -> int:
    """max over rows of sum_k max(high_k * d_k, low_k * d_k) (high_k >= low_k):
    high * d for d > 0, else low * d. Two markets (a call and a put on one
    underlying, the common group) written out."""
    if len(highs) == 2:
        h0, h1 = highs
        l0, l1 = lows
        return max((h0 * a if a > 0 else l0 * a) + (h1 * b if b > 0 else l1 * b) for a, b in rows)
    worst: int = max(
        sum(map(operator.mul, lows, row))
        + sum(span * d for span, d in zip(spans, row, strict=True) if d > 0)
        for row in rows
    )
    return worst
