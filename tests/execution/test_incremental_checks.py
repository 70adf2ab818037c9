"""The end-of-block liquidation check looks only at subaccounts whose margin may
have changed (liquidation.subaccounts_to_check); these tests replay seeded
workloads and assert that every block gives the same receipts, events and state
root as the reference: the same block on the same state with the watch list
dropped (`margin_watch=None`), which checks every open subaccount.
"""

from __future__ import annotations

import dataclasses
from random import Random

import pytest

from sequencer_net.cli import bench_crash
from sequencer_net.cli.bench_blocks import BlocksOptions, timed_blocks
from sequencer_net.cli.bench_crash import HOUSE, MAKERS, PERP, PUT, START_PRICE
from sequencer_net.execution.engine import (
    BlockResult,
    ExecutionBlock,
    encode_outcome,
    execute_block,
)
from sequencer_net.execution.margin import MaintenanceCheck, maintenance_risk
from sequencer_net.execution.margin_bound import MarginBound
from sequencer_net.execution.receipts import Liquidated, LiquidationOrderPlaced
from sequencer_net.execution.state import INSURANCE_FUND, ExecutionState, StateWriter
from sequencer_net.execution.transactions import UpdateMarketParams

from .execution_harness import (
    ADMIN,
    BUY,
    SELL,
    Chain,
    W,
    make_genesis,
    perp_params,
    size,
    sub,
)

SEED = 7


def execute_checked(state: ExecutionState, block: ExecutionBlock) -> BlockResult:
    """`execute_block`, asserting the outcome equals the full-check reference."""
    result = execute_block(state, block)
    reference = execute_block(dataclasses.replace(state, margin_watch=None), block)
    assert encode_outcome(result) == encode_outcome(reference), f"height {block.height}"
    assert result.state.open_subaccounts == reference.state.open_subaccounts
    check_watch_list(result.state)
    return result


def check_watch_list(state: ExecutionState) -> None:
    """What the next block relies on: every open subaccount off the watch list
    (option holders included) meets maintenance at this state."""
    w = StateWriter(state, state.height, state.block.timestamp)
    check = MaintenanceCheck(w)  # each market read once: the same values
    for sid in sorted(state.open_subaccounts):
        assert check(sid) == maintenance_risk(w, sid), sid.hex()
    check_slack_entries(state)
    watch = state.margin_watch
    if watch is None:
        return
    for sid in state.open_subaccounts - watch:
        if sid == INSURANCE_FUND:
            continue
        risk = maintenance_risk(w, sid)
        assert risk.equity >= risk.maintenance, sid.hex()


def check_slack_entries(state: ExecutionState) -> None:
    """What the next block's check relies on to skip a subaccount: each
    recorded slack describes the subaccount's positions as they are (no block
    wrote it since), and its slack now is at least the recorded one minus the
    bound from the recorded inputs to the current ones."""
    w = StateWriter(state, state.height, state.block.timestamp)
    bound = MarginBound(w)
    for sid, entry in state.margin_slack.items():
        assert sid in state.open_subaccounts
        sizes: list[tuple[int, int]] = []
        risk = MaintenanceCheck(w)(sid, sizes)
        assert len(entry) % 2 == 1  # ends in its tolerated rate (margin_bound.slack_entry)
        assert list(entry[2:-1]) == [x for pair in sizes for x in pair], sid.hex()
        fell = bound.decrease_bound(entry)
        if fell is not None:
            assert risk.equity - risk.maintenance >= entry[0] - fell, sid.hex()
        rate = bound.rate(entry[1])
        if rate is not None and entry[-1] >= rate:  # the pre-test vouches: so does the bound
            assert fell is not None and entry[0] >= fell, sid.hex()
            assert risk.equity >= risk.maintenance, sid.hex()


def test_small_blocks_over_an_open_state_match_the_full_check() -> None:
    """The benchmark's workload: many small blocks, prices every third block."""
    options = BlocksOptions(
        open_accounts=200, resting_orders=200, blocks=100, txs_per_block=30, price_every=3
    )
    state, blocks = timed_blocks(options)
    watched = []
    for block in blocks:
        state = execute_checked(state, block).state
        assert state.margin_watch is not None
        watched.append(len(state.margin_watch))
    # The point of the watch list: most open subaccounts are not in it.
    assert max(watched) < len(state.open_subaccounts) // 2


def test_a_crash_with_sparse_prices_and_pulled_quotes_matches_the_full_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Leveraged perps and short puts through a falling, jumping price reported
    every third block, makers sometimes pulling their quotes, a small per-block
    liquidation cap: liquidation orders, misses, fund slices and close-outs,
    each block checked."""
    rng = Random(SEED)
    lot = W // 1_000
    # A per-block liquidation cap this small leaves some accounts below
    # maintenance without orders: they stay on the watch list unwritten.
    monkeypatch.setattr(bench_crash, "LIQUIDATION_CAP", 20_000 * W)
    owners = [bench_crash._address(f"account{i}") for i in range(120)]
    funded = [(owner, rng.randint(500, 5_000) * W) for owner in owners]
    run = bench_crash._Run(bench_crash._genesis(funded, insurance=120 * 50 * W))
    monkeypatch.setattr(bench_crash, "execute_block", execute_checked)
    run.block(run.prices(START_PRICE))
    opening = run.prices(START_PRICE)
    net_long = puts_sold = 0
    for i, (owner, collateral) in enumerate(funded):
        if i % 10 == 9:
            quantity = min(rng.randint(1, 3), collateral // (600 * W)) * W
            if quantity:
                opening.append(run.order(owner, PUT, 1, W // 100, quantity))
                puts_sold += quantity
            continue
        size = (collateral * rng.randint(2, 9) * W // START_PRICE) // lot * lot
        long = rng.random() < 0.7
        opening.append(run.order(owner, PERP, 0 if long else 1, START_PRICE, size))
        net_long += size if long else -size
    if net_long:
        opening.append(run.order(HOUSE, PERP, 1 if net_long > 0 else 0, START_PRICE, abs(net_long)))
    if puts_sold:
        opening.append(run.order(HOUSE, PUT, 0, 500 * W, puts_sold))
    run.block(opening)
    index = START_PRICE
    for step in range(90):
        txs = []
        if step % 3 == 0:
            index = index * (1_000 + rng.randint(-60, 25)) // 1_000
            index -= index % (W // 100)
            txs = run.prices(index)
        if rng.random() < 0.7:
            for m in range(MAKERS):
                maker = bench_crash._address(f"maker{m}")
                gap = index * (m + 1) // 200
                gap -= gap % (W // 100)
                txs.append(run.order(maker, PERP, 0, index - gap, 5 * W))
                txs.append(run.order(maker, PERP, 1, index + gap, 5 * W))
        run.block(txs)
    kinds = {type(event) for event in run.events}
    assert Liquidated in kinds and LiquidationOrderPlaced in kinds
    assert run.conserved


def test_a_margin_increase_rechecks_the_markets_holders_in_that_block() -> None:
    """Alice meets maintenance and is off the watch list; nothing of hers moves,
    but governance raises the market's margins: the same block checks her and
    places her liquidation order, as the full check does."""
    perp = 1
    chain = Chain(
        make_genesis(
            {"alice": 1_000 * W, "bob": 10**6 * W, "admin": W},
            insurance=10**5 * W,
            markets=[(perp, perp_params())],
        )
    )
    chain.block([chain.prices({perp: 1_000 * W})])
    chain.block(
        [
            chain.order("bob", perp, SELL, 1_000 * W, 5 * W),
            chain.order("alice", perp, BUY, 1_000 * W, 5 * W),
        ]
    )
    assert size(chain.state, sub("alice"), perp) == 5 * W  # 5x: equity 1,000 of 5,000
    chain.block([])
    watch = chain.state.margin_watch
    assert watch is not None and sub("alice") not in watch
    stricter = perp_params(initial_margin=W // 2, maintenance_margin=W // 4)
    update = chain.tx(ADMIN, UpdateMarketParams(perp, stricter))
    block = ExecutionBlock(chain.state.height + 1, chain.now + 1, (update,))
    result = execute_checked(chain.state, block)
    assert all(receipt.success for receipt in result.receipts)
    placed = [e for e in result.events if isinstance(e, LiquidationOrderPlaced)]
    assert [e.subaccount for e in placed] == [sub("alice")]


def test_a_fill_far_above_the_index_is_checked_in_its_own_block() -> None:
    """Alice is off the watch list; in one block she buys far above the index
    (a wide mark band lets the auction clear there) and loses her equity: that
    same block closes her out, as the full check does."""
    perp = 1
    chain = Chain(
        make_genesis(
            {"alice": 1_000 * W, "bob": 10**6 * W, "admin": W},
            insurance=10**5 * W,
            markets=[(perp, perp_params(mark_band=W // 2))],
        )
    )
    chain.block([chain.prices({perp: 1_000 * W})])
    chain.block(
        [
            chain.order("bob", perp, SELL, 1_000 * W, 5 * W),
            chain.order("alice", perp, BUY, 1_000 * W, 5 * W),
        ]
    )
    chain.block([])
    watch = chain.state.margin_watch
    assert watch is not None and sub("alice") not in watch
    orders = (
        chain.order("bob", perp, SELL, 1_400 * W, 4 * W),
        chain.order("alice", perp, BUY, 1_400 * W, 4 * W),
    )
    block = ExecutionBlock(chain.state.height + 1, chain.now + 1, orders)
    result = execute_checked(chain.state, block)
    assert [e.subaccount for e in result.events if isinstance(e, Liquidated)] == [sub("alice")]
