"""An exact bound on how far a subaccount's margin can move with its markets.

The liquidation check (liquidation.py) looks at every holder of a market whose
margin inputs moved: in the first block of each second every option holder
(the time to expiry moved) and with each oracle update every holder of that
market. Most of them are far above maintenance, and the inputs moved a little.
When the check finds a subaccount at or above maintenance it records its
slack, equity - maintenance, with the markets' inputs then
(`state.MarginSlack`). In a later block, if no block wrote the subaccount
since (same collateral, same positions), the slack now is at least the
recorded one minus `decrease_bound`, a bound on how much its equity minus
maintenance can have fallen as the inputs moved from those recorded to the
current ones. When that is still >= 0 the subaccount meets maintenance, and
the check, which would find exactly that and do nothing, is skipped.

The bound, per non-zero position of size s (|s| the absolute size, lots =
|s| // lot size, every quantity an exact integer; a change of a market's
params gives no bound):

    perpetual:  lots * |d index| + ceil(|s| * |d price| * (1 + mmr))  + 2
                (pending funding; equity's floor(s * price) and the
                requirement's ceil(|s| * price * mmr) each move by at most
                their exact change plus one unit of rounding)
    option:     lots * |d index| + ceil(|s| * |d mark|) + 1     (equity)
                plus, over the subaccount's options,
                ceil(sum |s| * (scale * (max_j |d delta_j| + 2 M) + |d floor|)
                     / (scale * SCALE)) + 2 per option

where delta_j = mark - value in maintenance scenario j, floor = spot *
maintenance margin, M the largest |d mark| of its options and scale =
SHORT_FLOOR_DIVISOR * SCALE. The option term bounds the change of the
scenario requirement (option_margin.py) of every group: before rounding it
is min(max(max(worst, 0) * scale, short floor), max(cap, 0) * scale) (or
without the cap), and max and min move no more than their arguments do; the
worst scenario loss max_j sum_k s_k delta_jk moves by at most sum |s_k|
max_j |d delta_jk|; the short floor by sum |s_k| |d floor_k|; the loss cap,
the largest of sum_k s_k (mark_k - payoff_k(x)) over expiry spots x among 0,
the strikes and where a payoff crosses its mark, by at most 2 M sum |s_k|
(the marks move it by sum |s_k| |d mark_k|, and each such spot moves by at
most one |d mark|, over which the sum changes by at most sum |s_k| per unit);
the rounding up adds at most 1 per group, and summing groups before rounding
at most 1 more.

A block tests thousands of entries, nearly all with a slack far above their
bound, so a one-compare pre-test comes first. Each entry ends in a tolerated
rate, fixed when it is recorded (`slack_entry`): floor((slack - 4 n - 1) * R /
sum |s|) over its n positions, R = RATE_DENOMINATOR (-1, never vouching, when
that is negative, it holds nothing, or a market it holds has no snapshot).
Per recorded height, `MarginBound.rate` is the largest over that snapshot's
markets of the bound's growth per unit of size, times R and rounded up:

    ceil(R * max(|d long index|, |d short index|) / lot)
      + perpetual:  R * |d price| * (SCALE + mmr) / SCALE**2
      + option:     R * |d mark| / SCALE
                    + R * (scale * (max_j |d delta_j| + 2 M) + |d floor|)
                        / (scale * SCALE)

(None, no pre-test, when some market of the snapshot has no terms or the
snapshot is gone). Each position's terms above are at most |s| times its
market's figure / R plus a constant (3 for a perpetual, 4 for an option: its
own rounding and +1, and its 2 in the group sum), and the group sum's
rounding adds 1: the bound is at most sum |s| * rate / R + 4 n + 1, so a
tolerated rate >= the rate means slack >= bound, which the exact bound would
find. An entry the pre-test cannot vouch for gets the exact bound
(`MarginBound.vouches`). The per-market parts of the rate are kept per
recorded snapshot object, and `snapshots` reuses the latest height's object
for a market whose inputs did not move, so the heights between two moves of
a market share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from .fixed_point import SCALE
from .option_margin import MAINTENANCE_GRID, SHORT_FLOOR_DIVISOR, OptionHolding, scenario_deltas
from .records import MarketKind
from .state import MarginSlack, MarketSnapshot, StateWriter

_SCALE_SQUARED = SCALE * SCALE
_OPTION_SCALE = SHORT_FLOOR_DIVISOR * SCALE
_OPTION_DENOMINATOR = _OPTION_SCALE * SCALE
RATE_DENOMINATOR = _OPTION_DENOMINATOR
"""The denominator of `MarginBound.rate` and of an entry's tolerated rate: a
multiple of SCALE**2 and of the option spread's denominator, so that only the
funding term needs rounding."""
_UNKNOWN = object()


class _Terms(NamedTuple):
    """One market's part of the bound per unit of size, between a recorded
    snapshot and now (see the module docstring)."""

    option: bool
    lot_size: int
    long_index: int  # |d long funding index|
    short_index: int  # |d short funding index|
    price: int  # perpetual: |d index| * (SCALE + mmr); option: |d mark|
    spread: int  # option: scale * (max_j |d delta_j| + 2 M) + |d floor|


class MarginBound:
    """The current markets' snapshots (taken on first use: the caller uses
    one bound while the markets do not change) and `decrease_bound` against
    the recorded ones of the writer's base state."""

    __slots__ = ("_now", "_rates", "_recorded", "_terms", "_units", "_w")

    def __init__(self, w: StateWriter) -> None:
        self._w = w
        self._recorded = w.base.margin_snapshots
        self._now: dict[int, MarketSnapshot] | None = None
        # Per recorded height: each market's terms, absent when its params
        # changed or it is gone (all absent: no snapshot of that height is kept).
        self._terms: dict[int, dict[int, _Terms]] = {}
        # Per recorded height: `rate` (None: no rate).
        self._rates: dict[int, int | None] = {}
        # Per recorded MarketSnapshot (by identity: `snapshots` reuses an equal
        # one of the latest height, so many heights share one), its `_unit`.
        self._units: dict[int, tuple[bool, int, int] | None] = {}

    @property
    def snapshots(self) -> Mapping[int, MarketSnapshot]:
        """Every market's inputs now (what an entry recorded now refers to)."""
        if self._now is None:
            w = self._w
            self._now = {}
            latest = self._recorded[max(self._recorded)] if self._recorded else {}
            for market_id in sorted(w.market_states.live_keys()):
                try:
                    snap = _snapshot(w, market_id)
                except Exception:  # never expected: its holders are then checked
                    snap = None
                if snap is not None:
                    before = latest.get(market_id)
                    # The same object when nothing moved: rates are cached per object.
                    self._now[market_id] = before if before == snap else snap
        return self._now

    def _terms_since(self, height: int) -> dict[int, _Terms]:
        """Each market's terms from the snapshot of `height` to now (empty if
        no snapshot of that height is kept)."""
        found = self._terms.get(height)
        if found is not None:
            return found
        recorded = self._recorded.get(height)
        terms: dict[int, _Terms] = {}
        self._terms[height] = terms
        if recorded is None:
            return terms
        now = self.snapshots
        moved: list[tuple[int, MarketSnapshot, MarketSnapshot]] = []
        for market_id, then in recorded.items():
            current = now.get(market_id)
            if current is not None and current.params == then.params:
                moved.append((market_id, then, current))
        # M: the largest move of any option's mark (at least that of any group).
        largest = max(
            (abs(c.price - t.price) for _, t, c in moved if c.params.kind != MarketKind.PERPETUAL),
            default=0,
        )
        for market_id, then, current in moved:
            params = current.params
            price = abs(current.price - then.price)
            option = params.kind != MarketKind.PERPETUAL
            if option:
                if len(then.deltas) != len(current.deltas):
                    continue
                delta = max(
                    (abs(a - b) for a, b in zip(current.deltas, then.deltas, strict=True)),
                    default=0,
                )
                spread = _OPTION_SCALE * (delta + 2 * largest) + abs(current.floor - then.floor)
            else:
                price *= SCALE + params.maintenance_margin
                spread = 0
            terms[market_id] = _Terms(
                option,
                params.lot_size,
                abs(current.long_index - then.long_index),
                abs(current.short_index - then.short_index),
                price,
                spread,
            )
        return terms

    def rate(self, height: int) -> int | None:
        """The largest, over the markets of the snapshot of `height`, of how
        far their terms to now can lower equity minus maintenance per unit of
        size, times RATE_DENOMINATOR and rounded up (see `vouches`). None when
        some market of that snapshot has no terms (params changed, gone) or
        the snapshot is no longer kept."""
        found = self._rates.get(height, _UNKNOWN)
        if found is not _UNKNOWN:
            return found  # type: ignore[return-value]
        rate: int | None = None
        try:
            recorded = self._recorded.get(height)
            if recorded is not None:
                units = self._units
                rate = options = largest = 0
                for market_id, then in recorded.items():
                    key = id(then)
                    if key in units:
                        unit = units[key]
                    else:
                        unit = units[key] = self._unit(market_id, then)
                    if unit is None:
                        rate = None
                        break
                    option, base, mark = unit
                    if option:
                        options = max(options, base)
                        largest = max(largest, mark)
                    else:
                        rate = max(rate, base)
                if rate is not None and options:
                    # The spread's 2 M, M the largest move of any option's mark.
                    rate = max(rate, options + 2 * _OPTION_SCALE * largest)
        except Exception:  # never expected: the exact bound decides
            rate = None
        self._rates[height] = rate
        return rate

    def _unit(self, market_id: int, then: MarketSnapshot) -> tuple[bool, int, int] | None:
        """One market's part of `rate` from `then` to now, times
        RATE_DENOMINATOR and rounded up: (option, the part without an option
        spread's 2 M term, |d mark|); None where `_terms_since` has no terms."""
        current = self.snapshots.get(market_id)
        if current is None or current.params != then.params:
            return None
        params = current.params
        index = max(
            abs(current.long_index - then.long_index), abs(current.short_index - then.short_index)
        )
        unit = -(-index * RATE_DENOMINATOR // params.lot_size)
        price = abs(current.price - then.price)
        if params.kind == MarketKind.PERPETUAL:
            # |d index| * (SCALE + mmr) / SCALE**2, the price term of the bound
            unit += price * (SCALE + params.maintenance_margin) * SHORT_FLOOR_DIVISOR
            return False, unit, 0
        if len(then.deltas) != len(current.deltas):
            return None
        delta = max(
            (abs(a - b) for a, b in zip(current.deltas, then.deltas, strict=True)), default=0
        )
        # |d mark| / SCALE, and the spread without its 2 M: (scale * max_j |d delta_j|
        # + |d floor|) / (scale * SCALE)
        unit += price * _OPTION_SCALE + _OPTION_SCALE * delta + abs(current.floor - then.floor)
        return True, unit, price

    def vouches(self, entry: MarginSlack) -> bool:
        """True if `entry`'s subaccount still meets maintenance: its recorded
        slack is at least `decrease_bound(entry)`. A one-compare pre-test
        (`slack_entry`'s last item against `rate`) answers most entries; the
        exact bound the others."""
        length = len(entry)
        if length & 1:
            rate = self._rates.get(entry[1], _UNKNOWN)
            if rate is _UNKNOWN:
                rate = self.rate(entry[1])
            if rate is not None and entry[length - 1] >= rate:  # type: ignore[operator]
                return True
        fell = self.decrease_bound(entry)
        return fell is not None and entry[0] >= fell

    def not_vouched(
        self, recorded: Mapping[bytes, MarginSlack], sids: Iterable[bytes], into: set[bytes]
    ) -> None:
        """Add to `into` each of `sids` without an entry in `recorded` or
        whose entry does not vouch (`vouches`, written out: it runs for
        thousands of subaccounts a block)."""
        get = recorded.get
        rates = self._rates
        for sid in sids:
            entry = get(sid)
            if entry is None:
                into.add(sid)
                continue
            length = len(entry)
            if length & 1:
                rate = rates.get(entry[1], _UNKNOWN)
                if rate is _UNKNOWN:
                    rate = self.rate(entry[1])
                if rate is not None and entry[length - 1] >= rate:  # type: ignore[operator]
                    continue
            fell = self.decrease_bound(entry)
            if fell is None or entry[0] < fell:
                into.add(sid)

    def decrease_bound(self, entry: MarginSlack) -> int | None:
        """An upper bound on how much the subaccount's equity minus maintenance
        fell from the inputs its entry was recorded at to the current ones
        (None: no bound; that block's snapshot is no longer kept, or a market's
        params changed or it is gone). Never raises: anything unexpected is
        None, and the caller computes the margin instead."""
        try:
            terms = self._terms.get(entry[1])
            if terms is None:
                terms = self._terms_since(entry[1])
            total = spread = options = 0
            for k in range(2, len(entry) - 1, 2):  # an odd length ends in `slack_entry`'s rate
                term = terms.get(entry[k])
                if term is None:
                    return None
                option, lot, long_index, short_index, price, unit_spread = term
                size = entry[k + 1]
                if size > 0:
                    magnitude, index = size, long_index
                else:
                    magnitude, index = -size, short_index
                total += (magnitude // lot) * index
                if option:
                    total += -(-(magnitude * price) // SCALE) + 1
                    spread += magnitude * unit_spread
                    options += 1
                else:
                    total += -(-(magnitude * price) // _SCALE_SQUARED) + 2
            if options:
                total += -(-spread // _OPTION_DENOMINATOR) + 2 * options
            return total
        except Exception:  # never expected
            return None


def slack_entry(
    slack: int, height: int, sizes: list[tuple[int, int]], snapshots: Mapping[int, MarketSnapshot]
) -> MarginSlack:
    """The MarginSlack of a subaccount found `slack` >= 0 above maintenance at
    `height` with the non-zero positions `sizes` (market id, size), the
    markets then being `snapshots`: (slack, height, market id, size, ...,
    tolerated rate). The tolerated rate is floor((slack - 4 n - 1) *
    RATE_DENOMINATOR / sum |size|) over its n positions, or -1 (never vouches)
    when that is negative, it holds nothing or a market without a snapshot."""
    entry = [slack, height]
    exposure = 0
    covered = True
    for market_id, size in sizes:
        entry.append(market_id)
        entry.append(size)
        exposure += abs(size)
        if market_id not in snapshots:
            covered = False
    margin = slack - 4 * len(sizes) - 1
    tolerated = -1
    if covered and exposure > 0 and margin >= 0:
        tolerated = margin * RATE_DENOMINATOR // exposure
    entry.append(tolerated)
    return tuple(entry)


def _snapshot(w: StateWriter, market_id: int) -> MarketSnapshot | None:
    """The market's inputs now (None if it has no params or state)."""
    params = w.market_params.get(market_id)
    state = w.market_states.get(market_id)
    if params is None or state is None:
        return None
    if params.kind == MarketKind.PERPETUAL:
        return MarketSnapshot(
            params, state.oracle_price, state.long_index, state.short_index, (), 0
        )
    holding = OptionHolding(market_id, params, state, 0, 0)
    mark, deltas, _, _ = scenario_deltas(w, holding, MAINTENANCE_GRID)
    floor = state.oracle_price * params.maintenance_margin
    return MarketSnapshot(params, mark, state.long_index, state.short_index, deltas, floor)
