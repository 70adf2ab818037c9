"""Option margin by scenario revaluation: naked shorts, spreads, longs, floors, orders."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sequencer_net.execution import options as options_module
from sequencer_net.execution.margin import MaintenanceCheck, maintenance_risk, subaccount_risk
from sequencer_net.execution.option_margin import (
    INITIAL_GRID,
    MAINTENANCE_GRID,
    SHORT_FLOOR_DIVISOR,
    OptionHolding,
    OptionRequirements,
    group_key,
    group_option_requirement,
    group_option_terms,
    group_requirement,
    option_requirements,
    scenario_values,
    single_option_requirement,
    single_option_terms,
)
from sequencer_net.execution.options import intrinsic_value, option_mark
from sequencer_net.execution.options_pricing import (
    OptionType,
    black_scholes,
    black_scholes_value,
    years_from_seconds,
)
from sequencer_net.execution.receipts import Liquidated, LiquidationOrderPlaced
from sequencer_net.execution.records import (
    MarketParams,
    OptionKind,
    OptionTerms,
    Position,
    Subaccount,
)
from sequencer_net.execution.state import StateWriter, position_key
from sequencer_net.execution.transactions import Withdraw
from tests.execution.execution_harness import (
    BUY,
    GENESIS_TIME,
    INSURANCE_FUND,
    SELL,
    Chain,
    W,
    check_engine_invariants,
    collateral,
    key,
    make_genesis,
    option_params,
    size,
    sub,
)

EXPIRY = GENESIS_TIME + 30 * 86_400
VOL = 8 * W // 10
RATE = W // 20
ETH = 1  # the underlying id every option below declares, except LONE_CALL
C100, C101, C105, C300, P95, LONE_CALL = 10, 11, 12, 13, 14, 15
STRIKES = {C100: 100, C101: 101, C105: 105, C300: 300, P95: 95, LONE_CALL: 105}


def listed(kind: OptionKind, strike: int, underlying: int = ETH) -> MarketParams:
    terms = OptionTerms(kind, strike * W, EXPIRY, underlying)
    return msgspec.structs.replace(option_params(kind, strike * W, EXPIRY), option=terms)


def margin_chain(deposits: dict[str, int] | None = None) -> Chain:
    markets = [
        (mid, listed(OptionKind.PUT if mid == P95 else OptionKind.CALL, strike))
        for mid, strike in STRIKES.items()
    ]
    markets[-1] = (LONE_CALL, listed(OptionKind.CALL, 105, underlying=0))
    chain = Chain(
        make_genesis(
            deposits or {"alice": 1_000 * W, "bob": 1_000 * W},
            insurance=1_000 * W,
            markets=markets,
        )
    )
    chain.block([chain.prices(dict.fromkeys(STRIKES, 100 * W), vol=VOL)])
    return chain


def writer(chain: Chain) -> StateWriter:
    state = chain.state
    return StateWriter(state, state.height, state.block.timestamp)


def requirements(
    chain: Chain,
    sizes: dict[int, int],
    sells: dict[int, int] | None = None,
    *,
    initial: bool = True,
) -> OptionRequirements:
    state = chain.state
    holdings = [
        OptionHolding(
            mid, state.market_params[mid], state.market_states[mid], q, (sells or {}).get(mid, 0)
        )
        for mid, q in sorted(sizes.items())
    ]
    return option_requirements(writer(chain), holdings, initial=initial)


def bs(chain: Chain, mid: int, spot: int, vol: int, at: int | None = None) -> int:
    """The option's Black-Scholes value now (or `at`), computed directly, not
    through the engine."""
    kind = OptionType.PUT if mid == P95 else OptionType.CALL
    years = years_from_seconds(EXPIRY - (chain.now if at is None else at))
    return black_scholes(kind, spot, STRIKES[mid] * W, years, RATE, vol).price


def mark(chain: Chain, mid: int) -> int:
    state = chain.state
    return option_mark(writer(chain), mid, state.market_params[mid], state.market_states[mid])


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def test_grids_are_the_documented_ones_and_initial_contains_maintenance() -> None:
    pct = W // 100
    assert MAINTENANCE_GRID.spot_shocks == tuple(p * pct for p in (-8, -4, 0, 4, 8))
    assert MAINTENANCE_GRID.volatility_shocks == tuple(p * pct for p in (-5, 0, 5))
    assert set(MAINTENANCE_GRID.spot_shocks) <= set(INITIAL_GRID.spot_shocks)
    assert set(MAINTENANCE_GRID.volatility_shocks) <= set(INITIAL_GRID.volatility_shocks)
    assert (min(INITIAL_GRID.spot_shocks), max(INITIAL_GRID.spot_shocks)) == (-15 * pct, 15 * pct)
    assert max(INITIAL_GRID.volatility_shocks) == 10 * pct


def test_naked_short_call_needs_its_loss_at_spot_and_vol_up() -> None:
    chain = margin_chain()
    m = mark(chain, C100)
    req = requirements(chain, {C100: -2 * W})
    # Worst maintenance scenario: spot +8%, vol +5 points; initial: +15%, +10 points.
    maintenance = 2 * (bs(chain, C100, 108 * W, 85 * W // 100) - m)
    initial = 2 * (bs(chain, C100, 115 * W, 90 * W // 100) - m)
    assert req.maintenance == maintenance
    assert req.initial == req.initial_with_orders == initial
    # About 5.50 and 11.06 per unit around a mark of 9.33 (ATM, 30 days, 80% vol).
    assert 5 * W < maintenance // 2 < 6 * W and 11 * W < initial // 2 < 12 * W


def test_naked_short_put_needs_its_loss_at_spot_down_and_vol_up() -> None:
    chain = margin_chain()
    m = mark(chain, P95)
    req = requirements(chain, {P95: -W})
    assert req.maintenance == bs(chain, P95, 92 * W, 85 * W // 100) - m
    assert req.initial == bs(chain, P95, 85 * W, 90 * W // 100) - m


def test_a_far_out_of_the_money_short_still_needs_the_floor() -> None:
    chain = margin_chain()
    req = requirements(chain, {C300: -3 * W})
    # Its worst scenario loss is far below a wei-scale fraction of spot; the
    # floor is |size| * spot * fraction / 10: 3 * 100 * 10% / 10 and 20% / 10.
    assert bs(chain, C300, 115 * W, 90 * W // 100) - mark(chain, C300) < W // 100
    assert req.maintenance == 3 * W
    assert req.initial == 6 * W


def test_a_call_spread_needs_at_most_its_max_loss() -> None:
    chain = margin_chain()
    m100, m105, m101 = mark(chain, C100), mark(chain, C105), mark(chain, C101)
    spread = requirements(chain, {C100: -W, C105: W})
    naked = requirements(chain, {C100: -W})
    max_loss = 5 * W - (m100 - m105)  # pays 5 at worst, is marked at -(m100 - m105)
    assert 0 < spread.maintenance <= spread.initial <= max_loss
    assert spread.initial < naked.initial / 2  # the long leg hedges the short
    # A 1-wide spread: the floor (2 per short at initial) exceeds what it can
    # lose, so it needs exactly its max loss, 1 - (m100 - m101) ~ 0.55.
    tight = requirements(chain, {C100: -W, C101: W})
    assert tight.initial == tight.maintenance == W - (m100 - m101)
    assert tight.initial < W


def test_options_without_a_shared_underlying_are_not_netted() -> None:
    chain = margin_chain()
    hedged = requirements(chain, {C100: -W, C105: W})
    unhedged = requirements(chain, {C100: -W, LONE_CALL: W})
    alone = requirements(chain, {C100: -W})
    long_alone = requirements(chain, {LONE_CALL: W})
    assert unhedged.initial == alone.initial + long_alone.initial > hedged.initial


def test_a_long_call_never_needs_more_than_its_mark() -> None:
    chain = margin_chain()
    m = mark(chain, C100)
    req = requirements(chain, {C100: 3 * W})
    assert req.maintenance == 3 * (m - bs(chain, C100, 92 * W, 75 * W // 100))
    assert req.initial == 3 * (m - bs(chain, C100, 85 * W, 70 * W // 100))
    assert req.initial < 3 * m


def test_long_only_needs_nothing_beyond_the_premium() -> None:
    """Exactly the premium as collateral buys the option; afterwards only the
    long's worst value over the initial grid can be drawn on, and the long
    alone is never liquidated, however far the spot falls."""
    chain = margin_chain({"alice": 1_000 * W, "carol": 9 * W})
    result = chain.block(
        [
            chain.order("carol", C100, BUY, 9 * W, W),  # 9 of premium from 9 of collateral
            chain.order("alice", C100, SELL, 9 * W, W),
        ]
    )
    assert all(r.success for r in result.receipts), result.receipts
    assert size(chain.state, sub("carol"), C100) == W
    assert collateral(chain.state, sub("carol")) == 0
    risk = subaccount_risk(writer(chain), sub("carol"))
    assert risk.equity - risk.initial >= 0 and risk.equity >= risk.maintenance
    # Free collateral is the call's value at spot -15%, vol -10 points (~2.27,
    # at the next block's time): a second call's premium must fit in it.
    worst = bs(chain, C100, 85 * W, 70 * W // 100, at=chain.now + 1)
    tick = W // 100
    too_much = chain.block([chain.order("carol", C100, BUY, (worst // tick + 1) * tick, W)])
    assert too_much.receipts[0].error == "InsufficientMargin"
    worst = bs(chain, C100, 85 * W, 70 * W // 100, at=chain.now + 1)
    fits = chain.block([chain.order("carol", C100, BUY, (worst // tick) * tick, W)])
    assert fits.receipts[0].success, fits.receipts[0]
    # Even with the spot halved the long is never liquidated: it only loses its mark.
    crash = chain.block([chain.prices(dict.fromkeys(STRIKES, 50 * W), vol=VOL)])
    assert not [e for e in crash.events if isinstance(e, Liquidated)]
    assert size(chain.state, sub("carol"), C100) == W


def test_credit_drawn_on_a_long_is_liquidated_while_the_mark_still_covers_it() -> None:
    chain = margin_chain({"alice": 1_000 * W, "carol": 9 * W})
    chain.block(
        [chain.order("carol", C100, BUY, 9 * W, W), chain.order("alice", C100, SELL, 9 * W, W)]
    )
    drawn = bs(chain, C100, 85 * W, 70 * W // 100, at=chain.now + 1)  # all that is free
    withdrawal = Withdraw(0, drawn, key("carol").address)
    assert chain.block([chain.tx(key("carol"), withdrawal)]).receipts[0].success
    assert collateral(chain.state, sub("carol")) == -drawn
    spot = 100
    placed_at = None
    liquidated: list[Liquidated] = []
    while not liquidated and spot > 60:
        spot -= 1
        moved = chain.block([chain.prices(dict.fromkeys(STRIKES, spot * W), vol=VOL)])
        placed = [e for e in moved.events if isinstance(e, LiquidationOrderPlaced)]
        if placed_at is None and any(e.subaccount == sub("carol") for e in placed):
            placed_at = spot
        liquidated = [e for e in moved.events if isinstance(e, Liquidated)]
    # Below maintenance at spot 90: the call shocked by -8%, -5 points is then
    # worth less than the 2.25 drawn, but its mark (about 4.68) still covers it
    # (equity about 2.43): a liquidation order goes into the next auction.
    assert placed_at == 90
    # Nobody buys the call: the order is placed again at spots 89 and 88, and
    # after its third miss (spot 87, equity still positive) the fund takes only
    # the slice that brings carol back to maintenance; she keeps the rest.
    assert spot == 87
    assert len(liquidated) == 1 and liquidated[0].equity > 0 and liquidated[0].deficit == 0
    assert 0 < size(chain.state, sub("carol"), C100) < W
    assert size(chain.state, INSURANCE_FUND, C100) == W - size(chain.state, sub("carol"), C100)
    risk = subaccount_risk(writer(chain), sub("carol"))
    assert 0 < risk.maintenance <= risk.equity
    check_engine_invariants(chain.state)


def test_open_sells_count_at_their_worse_outcome_in_each_scenario() -> None:
    chain = margin_chain()
    m = mark(chain, C100)
    # Long 1 call with an order to sell 2: it may end long 1 or short 1.
    req = requirements(chain, {C100: W}, sells={C100: 2 * W})
    up = bs(chain, C100, 115 * W, 90 * W // 100) - m  # the short's loss
    down = m - bs(chain, C100, 85 * W, 70 * W // 100)  # the long's loss
    assert req.initial == requirements(chain, {C100: W}).initial == down
    assert req.initial_with_orders == max(up, down)


def test_a_fine_short_call_becomes_liquidatable_after_a_large_spot_move() -> None:
    chain = margin_chain({"alice": 1_000 * W, "bob": 12 * W})
    sold = chain.block(
        [chain.order("bob", C100, SELL, 9 * W, W), chain.order("alice", C100, BUY, 9 * W, W)]
    )
    assert all(r.success for r in sold.receipts), sold.receipts
    risk = subaccount_risk(writer(chain), sub("bob"))
    # Equity 12 + 9 - 9.33, maintenance ~5.5: fine (and initial ~11.06 is met too).
    assert risk.equity >= risk.initial >= risk.maintenance > 0
    calm = chain.block([chain.prices(dict.fromkeys(STRIKES, 101 * W), vol=VOL)])
    assert not [e for e in calm.events if isinstance(e, Liquidated)]
    # Spot 110: the call is marked ~16.3, equity ~4.7, and a further +8% would
    # cost more than that: below maintenance while equity is still positive.
    moved = chain.block([chain.prices(dict.fromkeys(STRIKES, 110 * W), vol=VOL)])
    risk = subaccount_risk(writer(chain), sub("bob"))
    assert 0 < risk.equity < risk.maintenance
    [placed] = [e for e in moved.events if isinstance(e, LiquidationOrderPlaced)]
    # Partial: only the part of the short that brings it back to maintenance.
    assert (placed.subaccount, placed.side) == (sub("bob"), BUY)
    assert 0 < placed.quantity < W
    # Nobody sells the call back: the order is placed again twice, and after
    # its third miss the fund takes over that part of the short, no more.
    for _ in range(2):
        missed = chain.block([])
        assert not [e for e in missed.events if isinstance(e, Liquidated)]
        [again] = [e for e in missed.events if isinstance(e, LiquidationOrderPlaced)]
        assert (again.subaccount, again.quantity) == (sub("bob"), placed.quantity)
    after = chain.block([])
    [liquidated] = [e for e in after.events if isinstance(e, Liquidated)]
    assert liquidated.subaccount == sub("bob")
    assert 0 < liquidated.equity < liquidated.maintenance_requirement
    assert liquidated.deficit == 0
    assert size(chain.state, sub("bob"), C100) == -W + placed.quantity
    assert size(chain.state, INSURANCE_FUND, C100) == -placed.quantity
    risk = subaccount_risk(writer(chain), sub("bob"))
    assert risk.maintenance <= risk.equity
    check_engine_invariants(chain.state)


def revaluations_for_20_subaccounts(monkeypatch: pytest.MonkeyPatch, *, initial: bool) -> int:
    """Black-Scholes evaluations while 20 subaccounts, each holding three option
    markets, are margined in one block."""
    chain = margin_chain()
    calls: list[int] = []

    def counted(*args: Any) -> Any:
        calls.append(1)
        return black_scholes_value(*args)

    monkeypatch.setattr(options_module, "black_scholes_value", counted)
    options_module.black_scholes_price.cache_clear()  # count this block's evaluations
    w = writer(chain)
    state = chain.state
    for q in range(1, 21):
        holdings = [
            OptionHolding(mid, state.market_params[mid], state.market_states[mid], s * q * W, 0)
            for mid, s in ((C100, -1), (C105, 1), (P95, -1))
        ]
        option_requirements(w, holdings, initial=initial)
    return len(calls)


def test_revaluations_are_shared_by_every_subaccount_in_a_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """45 Black-Scholes evaluations per option market per block (the initial
    grid; maintenance reuses them), however many subaccounts are margined."""
    grid = len(INITIAL_GRID.spot_shocks) * len(INITIAL_GRID.volatility_shocks)
    assert revaluations_for_20_subaccounts(monkeypatch, initial=True) == 3 * grid == 135


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([C100, C101, C105, C300, P95, LONE_CALL]),
            st.integers(-5, 5),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda t: t[0],
    )
)
def test_initial_is_at_least_maintenance_and_orders_only_add(
    legs: list[tuple[int, int, int]],
) -> None:
    chain = CHAIN
    sizes = {mid: q * W for mid, q, _ in legs}
    sells = {mid: s * W for mid, _, s in legs}
    req = requirements(chain, sizes, sells=sells)
    assert 0 <= req.maintenance <= req.initial <= req.initial_with_orders
    only = requirements(chain, sizes, sells=sells, initial=False)
    assert only == OptionRequirements(req.maintenance, 0, 0)


def test_maintenance_alone_revalues_only_the_maintenance_grid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Liquidation checks and fee balances need maintenance only: 15 Black-Scholes
    evaluations per option market per block, not the initial grid's 45."""
    grid = len(MAINTENANCE_GRID.spot_shocks) * len(MAINTENANCE_GRID.volatility_shocks)
    assert revaluations_for_20_subaccounts(monkeypatch, initial=False) == 3 * grid == 45


CHAIN = margin_chain()


def reference_group_requirement(
    w: StateWriter,
    group: list[OptionHolding],
    sizes: list[tuple[int, ...]],
    grid: Any,
    *,
    initial: bool,
) -> int:
    """The group requirement by its definition: every scenario's loss summed
    over the markets, no per-market shortcut."""
    if all(q == 0 for options in sizes for q in options):
        return 0
    marks = [option_mark(w, h.market_id, h.params, h.state) for h in group]
    columns = [scenario_values(w, h, grid) for h in group]
    worst = max(
        sum(
            max(q * (m - v) for q in options)
            for options, m, v in zip(sizes, marks, values, strict=True)
        )
        for values in zip(*columns, strict=True)
    )
    scale = SHORT_FLOOR_DIVISOR * W
    floor = sum(
        max(-min(options), 0)
        * h.state.oracle_price
        * (h.params.initial_margin if initial else h.params.maintenance_margin)
        for h, options in zip(group, sizes, strict=True)
    )
    required = max(max(worst, 0) * scale, floor)
    # The loss at expiry is piecewise linear in the spot: its largest value is
    # at 0, a strike or a point where a payoff crosses its mark, or unbounded
    # above every strike when the group is net short calls.
    terms = [h.params.option for h in group]
    assert all(t is not None for t in terms)
    slope = sum(
        -min(options)
        for t, options in zip(terms, sizes, strict=True)
        if t is not None and t.option_kind == OptionKind.CALL
    )
    cap = None
    if slope <= 0:
        points = {0}
        for t, m in zip(terms, marks, strict=True):
            assert t is not None
            points |= {t.strike, t.strike + m, max(t.strike - m, 0)}
        cap = max(
            sum(
                max(q * (m - intrinsic_value(t, spot)) for q in options)
                for t, options, m in zip(terms, sizes, marks, strict=True)
                if t is not None
            )
            for spot in points
        )
    if cap is not None:
        required = min(required, max(cap, 0) * scale)
    return ceil_div(required, scale * W)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([C100, C101, C105, C300, P95, LONE_CALL]),
            st.integers(-7 * W, 7 * W),
            st.integers(0, 3 * W),
        ),
        min_size=1,
        max_size=3,
        unique_by=lambda t: t[0],
    ),
    st.lists(st.integers(60 * W, 140 * W), min_size=1, max_size=3),
    st.sampled_from([W // 10, 8 * W // 10, 2 * W]),
    st.booleans(),
)
def test_group_requirement_equals_its_definition_as_inputs_move_in_one_block(
    legs: list[tuple[int, int, int]], spots: list[int], vol: int, maintenance: bool
) -> None:
    """The per-market shortcut and the per-block scenario caches give the
    scenario sum's result exactly, for one option or several, with or without
    sells, while the oracle inputs change within the block (one writer for
    every spot: each spot is a new cache key, never a stale value)."""
    w = writer(CHAIN)
    grid = MAINTENANCE_GRID if maintenance else INITIAL_GRID
    for spot in spots:
        group = holdings_at(legs, spot, vol)
        choices: list[list[tuple[int, ...]]] = [
            [(h.size,) for h in group],
            [(h.size, h.size - h.open_sell) for h in group],
        ]
        for sizes in choices:
            fresh = writer(CHAIN)
            expected = reference_group_requirement(
                fresh, group, sizes, grid, initial=not maintenance
            )
            assert group_requirement(w, group, sizes, grid, initial=not maintenance) == expected
        check_option_requirements(w, group)
        if len(group) == 1:
            h = group[0]
            reqs = option_requirements(w, [h], initial=True)
            assert reqs.maintenance == reference_group_requirement(
                writer(CHAIN), group, [(h.size,)], MAINTENANCE_GRID, initial=False
            )
            assert reqs.initial_with_orders == reference_group_requirement(
                writer(CHAIN), group, [(h.size, h.size - h.open_sell)], INITIAL_GRID, initial=True
            )


def check_option_requirements(w: StateWriter, holdings: list[OptionHolding]) -> None:
    """`option_requirements` (several options of a group: their terms kept in
    the writer for the block, `cached_group_terms`) equals the definition
    summed over the groups, twice in a row on the same writer (the second time
    from the kept terms); a holding with new market records is a new entry."""
    groups: dict[tuple[int, int], list[OptionHolding]] = {}
    for h in holdings:
        groups.setdefault(group_key(h.market_id, h.params), []).append(h)
    expected = [0, 0, 0]
    for group in groups.values():
        now = [(h.size,) for h in group]
        both = [(h.size, h.size - h.open_sell) for h in group]
        for k, (sizes, grid, initial) in enumerate(
            [(now, MAINTENANCE_GRID, False), (now, INITIAL_GRID, True), (both, INITIAL_GRID, True)]
        ):
            expected[k] += reference_group_requirement(
                writer(CHAIN), group, sizes, grid, initial=initial
            )
    for _ in range(2):
        assert tuple(option_requirements(w, holdings, initial=True)) == tuple(expected)
        assert option_requirements(w, holdings, initial=False).maintenance == expected[0]
        alone = option_requirements(w, holdings, orders_only=True)
        assert alone == OptionRequirements(0, 0, expected[2])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([C100, C101, C105, C300, P95, LONE_CALL]),
            st.integers(-7 * W, 7 * W) | st.just(0),
        ),
        min_size=1,
        max_size=4,
        unique_by=lambda t: t[0],
    ),
    st.integers(60 * W, 140 * W),
    st.sampled_from([W // 10, 8 * W // 10, 2 * W]),
    st.booleans(),
)
def test_size_independent_terms_give_the_definition(
    legs: list[tuple[int, int]], spot: int, vol: int, maintenance: bool
) -> None:
    """A market's (or group's) terms computed once, then applied to any sizes
    (what the liquidation check and fee balances do for every holder) give the
    scenario sum's result exactly: single options, groups, longs, shorts, zeros."""
    check_size_independent_terms(legs, spot, vol, maintenance)


@pytest.mark.parametrize(
    "legs",
    [
        [(C100, 3 * W), (C105, -3 * W)],  # call spread: capped by its max loss
        [(C105, -2 * W), (C101, 2 * W), (P95, -W)],
        [(P95, 4 * W)],
        [(P95, -4 * W), (C300, W)],
    ],
)
@pytest.mark.parametrize("maintenance", [True, False])
def test_size_independent_terms_give_the_definition_for_spreads(
    legs: list[tuple[int, int]], maintenance: bool
) -> None:
    """Groups that are not net short calls, where the loss cap binds."""
    for spot in (70 * W, 100 * W, 130 * W):
        check_size_independent_terms(legs, spot, 8 * W // 10, maintenance)


def holdings_at(legs: list[tuple[int, int, int]], spot: int, vol: int) -> list[OptionHolding]:
    """Holdings of (market, size, open sell) with each market's oracle at
    `spot` and `vol`."""
    state = CHAIN.state
    return [
        OptionHolding(
            mid,
            state.market_params[mid],
            msgspec.structs.replace(
                state.market_states[mid], oracle_price=spot, oracle_volatility=vol
            ),
            q,
            s,
        )
        for mid, q, s in legs
    ]


def check_size_independent_terms(
    legs: list[tuple[int, int]], spot: int, vol: int, maintenance: bool
) -> None:
    grid = MAINTENANCE_GRID if maintenance else INITIAL_GRID
    group = holdings_at([(mid, q, 0) for mid, q in legs], spot, vol)
    sizes = [h.size for h in group]
    expected = reference_group_requirement(
        writer(CHAIN), group, [(q,) for q in sizes], grid, initial=not maintenance
    )
    w = writer(CHAIN)
    terms = group_option_terms(w, group, grid, initial=not maintenance)
    assert group_option_requirement(terms, sizes) == expected
    # The same terms serve every other set of sizes (here: negated, halved).
    for other in ([-q for q in sizes], [q // 2 for q in sizes]):
        reference = reference_group_requirement(
            writer(CHAIN), group, [(q,) for q in other], grid, initial=not maintenance
        )
        assert group_option_requirement(terms, other) == reference
    for h in group:
        single = single_option_terms(w, h, grid, initial=not maintenance)
        for q in (h.size, -h.size, 0, 1, -1):
            reference = reference_group_requirement(
                writer(CHAIN), [h], [(q,)], grid, initial=not maintenance
            )
            assert single_option_requirement(single, q) == reference


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([C100, C101, C105, C300, P95, LONE_CALL]),
            st.integers(-5, 5).map(lambda q: q * W),
        ),
        min_size=1,
        max_size=6,
        unique_by=lambda t: t[0],
    ),
    st.integers(-50 * W, 500 * W),
)
def test_the_liquidation_check_gives_maintenance_risk_for_any_option_book(
    legs: list[tuple[int, int]], cash: int
) -> None:
    """`MaintenanceCheck` (markets read once, terms per market and per group
    shared) equals `maintenance_risk` for holders of one or several options in
    one or several groups (LONE_CALL is a group of its own), checked one after
    another with the same check, as the liquidation check does."""
    state = CHAIN.state
    w = writer(CHAIN)
    holders = []
    for k in range(3):  # the same book, then its negation, then half of it
        sid = sub("holder", k + 1)
        held = [(mid, q if k == 0 else -q if k == 1 else q // 2) for mid, q in legs]
        for mid, q in held:
            snapshot = (
                state.market_states[mid].long_index
                if q >= 0
                else state.market_states[mid].short_index
            )
            w.positions.put(position_key(sid, mid), Position(q, snapshot, 0, 0, 0))
        w.subaccounts.put(sid, Subaccount(cash, tuple(sorted(m for m, _ in held)), 0))
        holders.append(sid)
    check = MaintenanceCheck(w)
    for sid in holders:
        assert check(sid) == maintenance_risk(w, sid)
