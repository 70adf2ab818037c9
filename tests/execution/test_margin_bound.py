"""margin_bound.MarginBound: how far a subaccount's equity minus maintenance
can fall as its markets move is never more than `decrease_bound` says.

Each example holds the same subaccount (collateral, perpetual and option
positions with funding snapshots) at two moments: A, where its slack is
recorded, and B, with the oracle price, volatility, funding indexes and the
block time moved. The fall from A to B (computed by `maintenance_risk`, the
definition) must be at most the bound from A's snapshot to B's.
"""

from __future__ import annotations

import dataclasses
from random import Random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sequencer_net.execution.engine import ExecutionBlock, encode_outcome, execute_block
from sequencer_net.execution.fees import DEFAULT_FEE_BASE, DEFAULT_FEE_PER_BYTE
from sequencer_net.execution.margin import MaintenanceCheck, maintenance_risk
from sequencer_net.execution.margin_bound import RATE_DENOMINATOR, MarginBound, slack_entry
from sequencer_net.execution.records import OptionKind, OptionTerms, Position, Subaccount
from sequencer_net.execution.state import ExecutionState, StateWriter, position_key

from .execution_harness import (
    BUY,
    GENESIS_TIME,
    SELL,
    Chain,
    W,
    key,
    make_genesis,
    option_params,
    perp_params,
    sub,
)

BASE = DEFAULT_FEE_BASE

PERP, PERP2, CALL, PUT, LONE, CALL2 = 1, 2, 3, 4, 5, 6
MARKETS = (PERP, PERP2, CALL, PUT, LONE, CALL2)
EXPIRY = GENESIS_TIME + 20 * 86_400
SID = sub("alice")


def _option(kind: OptionKind, strike: int, underlying: int) -> object:
    params = option_params(kind, strike, EXPIRY)
    return msgspec.structs.replace(params, option=OptionTerms(kind, strike, EXPIRY, underlying))


GENESIS = make_genesis(
    {"alice": 1_000 * W},
    markets=[
        (PERP, perp_params()),
        (PERP2, perp_params(lot_size=W // 10, maintenance_margin=W // 12)),
        (CALL, _option(OptionKind.CALL, 100 * W, 9)),
        (PUT, _option(OptionKind.PUT, 95 * W, 9)),
        (LONE, _option(OptionKind.CALL, 110 * W, 0)),
        (CALL2, _option(OptionKind.CALL, 110 * W, 9)),
    ],
)
LOTS = {PERP: W // 1000, PERP2: W // 10} | dict.fromkeys((CALL, PUT, LONE, CALL2), W // 100)


def holding_writer(
    base: ExecutionState,
    at: int,
    legs: dict[int, tuple[int, int]],
    collateral: int,
    markets: dict[int, tuple[int, int, int, int]],
) -> StateWriter:
    """A writer at time `at` where SID holds `legs` (market -> lots, funding
    snapshot) and each market has (price, volatility, long index, short index)."""
    w = StateWriter(base, base.height + 1, at)
    for mid, (price, vol, long_index, short_index) in markets.items():
        state = w.market_states.get(mid)
        assert state is not None
        w.market_states.put(
            mid,
            msgspec.structs.replace(
                state,
                oracle_price=price,
                oracle_volatility=vol,
                long_index=long_index,
                short_index=short_index,
            ),
        )
    w.subaccounts.put(SID, Subaccount(collateral, tuple(sorted(legs)), 0))
    for mid, (lots, snapshot) in legs.items():
        w.positions.put(position_key(SID, mid), Position(lots * LOTS[mid], snapshot, 0, 0, 0, 0))
    return w


def moved(value: int, per_mille: int) -> int:
    return max(value + value * per_mille // 1000, 1)


market_inputs = st.tuples(
    st.integers(60 * W, 140 * W),  # price (spot for options)
    st.sampled_from([W // 10, W // 2, 9 * W // 10]),  # volatility
    st.integers(-50 * W, 50 * W),  # long index
    st.integers(-50 * W, 50 * W),  # short index
)
moves = st.tuples(
    st.integers(-120, 120),  # price, per mille
    st.integers(-200, 200),  # volatility, per mille
    st.integers(-3 * W, 3 * W),  # long index
    st.integers(-3 * W, 3 * W),  # short index
)


@settings(max_examples=150, deadline=None)
@given(
    legs=st.dictionaries(
        st.sampled_from(MARKETS),
        st.tuples(st.integers(-900, 900), st.integers(-40 * W, 40 * W)),
        min_size=1,
        max_size=5,
    ),
    inputs=st.fixed_dictionaries(dict.fromkeys(MARKETS, market_inputs)),
    changes=st.fixed_dictionaries(dict.fromkeys(MARKETS, moves)),
    collateral=st.integers(0, 10**6 * W),
    seconds=st.sampled_from([0, 1, 2, 60, 3_600, 86_400]),
)
def test_the_fall_of_equity_minus_maintenance_is_within_the_bound(
    legs: dict[int, tuple[int, int]],
    inputs: dict[int, tuple[int, int, int, int]],
    changes: dict[int, tuple[int, int, int, int]],
    collateral: int,
    seconds: int,
) -> None:
    check_fall(legs, inputs, changes, collateral, seconds)


@settings(max_examples=200, deadline=None)
@given(
    long_call=st.integers(0, 300),
    short_call=st.integers(0, 300),
    put=st.integers(-300, 300),
    spot=st.integers(80 * W, 130 * W),
    vol=st.sampled_from([W // 50, W // 10, W // 2]),
    spot_move=st.integers(-60, 60),
    vol_move=st.integers(-300, 300),
    seconds=st.sampled_from([1, 3_600, 86_400, 10 * 86_400]),
)
def test_spreads_and_far_shorts_stay_within_the_bound(
    long_call: int,
    short_call: int,
    put: int,
    spot: int,
    vol: int,
    spot_move: int,
    vol_move: int,
    seconds: int,
) -> None:
    """Groups where the loss cap (a call spread) or the short floor (a far
    out-of-the-money short at a low volatility) is what binds."""
    legs = {CALL: (long_call, 0), CALL2: (-short_call, 0), PUT: (put, 0)}
    inputs = dict.fromkeys(MARKETS, (spot, vol, 0, 0))
    changes = dict.fromkeys(MARKETS, (spot_move, vol_move, 0, 0))
    check_fall(legs, inputs, changes, 0, seconds)


def check_fall(
    legs: dict[int, tuple[int, int]],
    inputs: dict[int, tuple[int, int, int, int]],
    changes: dict[int, tuple[int, int, int, int]],
    collateral: int,
    seconds: int,
) -> None:
    at = GENESIS_TIME + 10
    then = holding_writer(GENESIS, at, legs, collateral, inputs)
    sizes: list[tuple[int, int]] = []
    before = MaintenanceCheck(then)(SID, sizes)
    assert before == maintenance_risk(then, SID)
    assert sizes == [(mid, legs[mid][0] * LOTS[mid]) for mid in sorted(legs) if legs[mid][0]]
    snapshot = MarginBound(then).snapshots

    later_inputs = {
        mid: (moved(p, dp), moved(v, dv), li + dli, si + dsi)
        for (mid, (p, v, li, si)), (dp, dv, dli, dsi) in zip(
            inputs.items(), changes.values(), strict=True
        )
    }
    base = dataclasses.replace(GENESIS, margin_snapshots={5: snapshot})
    now = holding_writer(base, at + seconds, legs, collateral, later_inputs)
    after = maintenance_risk(now, SID)

    entry = (before.equity - before.maintenance, 5, *(x for pair in sizes for x in pair))
    bound = MarginBound(now)
    fell = bound.decrease_bound(entry)
    assert fell is not None
    actual = (before.equity - before.maintenance) - (after.equity - after.maintenance)
    assert actual <= fell
    check_pre_test(bound, sizes, snapshot, fell)


def check_pre_test(
    bound: MarginBound, sizes: list[tuple[int, int]], snapshot: object, fell: int
) -> None:
    """The one-compare pre-test (an entry's tolerated rate against
    `MarginBound.rate`) never vouches for a slack below the exact bound, and
    it does vouch for a large enough one. The tolerated rate grows with the
    slack, so the slack just below the bound is the one to try."""
    rate = bound.rate(5)
    assert rate is not None
    assert isinstance(snapshot, dict)
    if fell >= 1:
        short = slack_entry(fell - 1, 5, sizes, snapshot)
        assert short[:-1] == (fell - 1, 5, *(x for pair in sizes for x in pair))
        assert short[-1] < rate
        assert not bound.vouches(short)
    ample = fell + 4 * len(sizes) + 1 + rate * sum(abs(s) for _, s in sizes) // RATE_DENOMINATOR + 1
    entry = slack_entry(ample, 5, sizes, snapshot)
    assert entry[-1] >= rate or not sizes
    assert bound.vouches(entry)


def test_nothing_moved_bounds_only_the_rounding() -> None:
    legs = {PERP: (300, W), CALL: (-40, 0), PUT: (25, 0), LONE: (-7, 0)}
    inputs = dict.fromkeys(MARKETS, (100 * W, W // 2, 2 * W, -W))
    then = holding_writer(GENESIS, GENESIS_TIME + 10, legs, 500 * W, inputs)
    sizes: list[tuple[int, int]] = []
    before = MaintenanceCheck(then)(SID, sizes)
    base = dataclasses.replace(GENESIS, margin_snapshots={5: MarginBound(then).snapshots})
    now = holding_writer(base, GENESIS_TIME + 10, legs, 500 * W, inputs)
    entry = (before.equity - before.maintenance, 5, *(x for pair in sizes for x in pair))
    # The rounding only: 2 per perpetual, 1 + 2 per option.
    assert MarginBound(now).decrease_bound(entry) == 2 + 3 * 3


def test_the_pre_test_never_vouches_without_a_bound() -> None:
    """An entry holding a market its snapshot lacks tolerates nothing (-1); a
    params change or a dropped snapshot leaves its height without a rate."""
    legs = {PERP: (300, W), CALL: (-40, 0)}
    inputs = dict.fromkeys(MARKETS, (100 * W, W // 2, 0, 0))
    then = holding_writer(GENESIS, GENESIS_TIME + 10, legs, 500 * W, inputs)
    sizes: list[tuple[int, int]] = []
    before = MaintenanceCheck(then)(SID, sizes)
    snapshot = MarginBound(then).snapshots
    slack = before.equity - before.maintenance
    entry = slack_entry(slack, 5, sizes, snapshot)
    assert entry[-1] > 0
    without_call = {mid: snap for mid, snap in snapshot.items() if mid != CALL}
    assert slack_entry(slack, 5, sizes, without_call)[-1] == -1
    assert slack_entry(slack, 5, [], snapshot)[-1] == -1  # nothing held: the exact bound
    base = dataclasses.replace(GENESIS, margin_snapshots={5: snapshot})
    now = holding_writer(base, GENESIS_TIME + 11, legs, 500 * W, inputs)
    assert MarginBound(now).rate(5) is not None
    assert MarginBound(now).vouches(entry)
    params = now.market_params.get(PERP2)  # a market the entry does not hold
    assert params is not None
    now.market_params.put(PERP2, msgspec.structs.replace(params, maintenance_margin=W // 4))
    assert MarginBound(now).rate(5) is None
    assert MarginBound(now).vouches(entry)  # by the exact bound
    now.market_params.put(PERP, msgspec.structs.replace(params, maintenance_margin=W // 4))
    assert not MarginBound(now).vouches(entry)
    forgotten = holding_writer(GENESIS, GENESIS_TIME + 11, legs, 500 * W, inputs)
    assert MarginBound(forgotten).rate(5) is None
    assert not MarginBound(forgotten).vouches(entry)


def test_no_bound_across_a_params_change_or_a_dropped_snapshot() -> None:
    legs = {PERP: (300, W), CALL: (-40, 0)}
    inputs = dict.fromkeys(MARKETS, (100 * W, W // 2, 0, 0))
    then = holding_writer(GENESIS, GENESIS_TIME + 10, legs, 500 * W, inputs)
    sizes: list[tuple[int, int]] = []
    before = MaintenanceCheck(then)(SID, sizes)
    entry = (before.equity - before.maintenance, 5, *(x for pair in sizes for x in pair))
    base = dataclasses.replace(GENESIS, margin_snapshots={5: MarginBound(then).snapshots})
    now = holding_writer(base, GENESIS_TIME + 11, legs, 500 * W, inputs)
    assert MarginBound(now).decrease_bound(entry) is not None
    params = now.market_params.get(PERP)
    assert params is not None
    now.market_params.put(PERP, msgspec.structs.replace(params, maintenance_margin=W // 4))
    assert MarginBound(now).decrease_bound(entry) is None
    forgotten = holding_writer(GENESIS, GENESIS_TIME + 11, legs, 500 * W, inputs)
    assert MarginBound(forgotten).decrease_bound(entry) is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fee_balances_from_recorded_slack_give_the_computed_outcomes(seed: int) -> None:
    """Admission takes a sender's fee as covered when its recorded slack less
    the bound covers it, and computes the balance otherwise: every block's
    receipts, events and root equal those of the same block with no slack
    recorded (every balance computed). Holders of a perpetual offer fees
    around what their equity above maintenance allows, as prices move."""
    rng = Random(seed)
    names = ["alice", "bob", "carol", "dave"]
    chain = Chain(
        make_genesis(
            {"alice": 60 * W, "bob": 80 * W, "carol": 10_000 * W, "dave": 10_000 * W, "oracle": W},
            markets=[(PERP, perp_params(maker_fee=0, taker_fee=0))],
            fee_base=DEFAULT_FEE_BASE,
            fee_per_byte=DEFAULT_FEE_PER_BYTE,
        )
    )
    chain.block([chain.prices({PERP: 100 * W})])
    chain.block(
        [
            chain.order("alice", PERP, BUY, 100 * W, 5 * W),
            chain.order("carol", PERP, SELL, 100 * W, 5 * W),
            chain.order("bob", PERP, SELL, 100 * W, 7 * W),
            chain.order("dave", PERP, BUY, 100 * W, 7 * W),
        ]
    )
    price = 100 * W
    covered = 0
    for _ in range(40):
        txs = []
        if rng.random() < 0.5:
            price += rng.randrange(-3, 4) * W
            txs.append(chain.prices({PERP: price}))
        for name in rng.sample(names, 3):
            state = chain.state
            w = StateWriter(state, state.height + 1, state.block.timestamp)
            risk = maintenance_risk(w, sub(name))
            spare = max(risk.equity - risk.maintenance, 0)
            fee = max(rng.choice([spare // 10, spare // 2, spare - W, spare, spare + 1]), BASE)
            txs.append(chain.raw(key(name), b"x", namespace=3, fee=fee))
        block = ExecutionBlock(chain.state.height + 1, chain.now + rng.choice([0, 1]), tuple(txs))
        reference = execute_block(dataclasses.replace(chain.state, margin_slack={}), block)
        result = execute_block(chain.state, block)
        assert encode_outcome(result) == encode_outcome(reference)
        covered += sum(1 for r in result.receipts if r.success)
        chain.state = result.state
    assert covered  # some fees went through
