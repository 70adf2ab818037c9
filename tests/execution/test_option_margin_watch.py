"""When the end-of-block liquidation check looks at an option holder
(liquidation.subaccounts_to_check, docs/execution.md "Option holders: checked
when an input of their margin moves").

An option's value moves with the time to expiry, and the engine's block time is
in whole seconds: a holder is checked in a block whose time differs from the
previous block's, in a block that moves a price, volatility or param of one of
its markets, and in a block that writes it; not in the other blocks of the same
second. Every block here is also compared with the full check (every open
subaccount checked, `margin_watch=None`): the same receipts, events and root.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from sequencer_net.cli.bench_blocks import BlocksOptions, timed_blocks
from sequencer_net.execution import liquidation
from sequencer_net.execution import options as options_module
from sequencer_net.execution.engine import BlockResult, ExecutionBlock, SequencedTransaction
from sequencer_net.execution.margin import maintenance_risk
from sequencer_net.execution.options import option_mark
from sequencer_net.execution.options_pricing import black_scholes_value
from sequencer_net.execution.receipts import LiquidationOrderPlaced
from sequencer_net.execution.records import OptionKind, OptionTerms
from sequencer_net.execution.state import (
    INSURANCE_FUND,
    MarginInputs,
    StateWriter,
    margin_inputs,
    option_seconds_left,
)
from sequencer_net.execution.transactions import Withdraw

from .execution_harness import (
    BUY,
    GENESIS_TIME,
    SELL,
    Chain,
    W,
    key,
    make_genesis,
    option_params,
    sub,
)
from .test_incremental_checks import execute_checked

EXPIRY = GENESIS_TIME + 30 * 86_400
VOL = 8 * W // 10
CALL = 10


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The subaccounts the incremental check looked at in the last block (its
    maintenance computed, or vouched for by its recorded slack: margin_bound.py),
    the insurance fund aside (the full-check reference run is not recorded)."""
    seen: list[bytes] = []
    original_select = liquidation._subaccounts_to_check
    last: list[object] = [None]

    def select(w: StateWriter) -> tuple[set[bytes], set[bytes]]:
        selected = original_select(w)
        if w.base.margin_watch is not None:
            if last[0] is not w:
                seen.clear()
                last[0] = w
            seen.extend(sorted(sid for sid in selected[0] - set(seen) if sid != INSURANCE_FUND))
        return selected

    monkeypatch.setattr(liquidation, "_subaccounts_to_check", select)
    yield seen


def option_chain(deposits: dict[str, int]) -> Chain:
    terms = OptionTerms(OptionKind.CALL, 100 * W, EXPIRY, 1)
    params = msgspec.structs.replace(option_params(OptionKind.CALL, 100 * W, EXPIRY), option=terms)
    chain = Chain(make_genesis(deposits, insurance=1_000 * W, markets=[(CALL, params)]))
    run(chain, [report(chain, 100 * W, VOL, chain.now + 1)], dt=1)
    return chain


def report(chain: Chain, spot: int, vol: int, at: int) -> SequencedTransaction:
    return chain.prices({CALL: spot}, vol=vol, at=at)


def run(chain: Chain, txs: list[SequencedTransaction], dt: int) -> BlockResult:
    block = ExecutionBlock(chain.state.height + 1, chain.now + dt, tuple(txs))
    result = execute_checked(chain.state, block)
    chain.state = result.state
    return result


def placed_for(result: BlockResult, name: str) -> bool:
    return any(
        isinstance(e, LiquidationOrderPlaced) and e.subaccount == sub(name) for e in result.events
    )


def test_a_safe_short_call_is_checked_only_when_time_or_its_inputs_move(
    checked: list[bytes],
) -> None:
    chain = option_chain({"alice": 1_000 * W, "bob": 100 * W})
    sold = run(
        chain,
        [chain.order("bob", CALL, SELL, 9 * W, W), chain.order("alice", CALL, BUY, 9 * W, W)],
        dt=1,
    )
    assert all(r.success for r in sold.receipts)
    run(chain, [], dt=0)  # bob was written by the previous block: checked once more
    assert sub("bob") in checked
    watch = chain.state.margin_watch
    assert watch is not None and sub("bob") not in watch
    # The same second, nothing of his moved: his margin is what it was.
    run(chain, [], dt=0)
    assert sub("bob") not in checked
    # The next second: the time to expiry moved, every holder is checked.
    run(chain, [], dt=1)
    assert sorted(checked) == sorted([sub("alice"), sub("bob")])
    run(chain, [], dt=0)
    assert checked == []
    # A report that moves only the volatility (same spot, same second).
    run(chain, [report(chain, 100 * W, 9 * W // 10, chain.now)], dt=0)
    assert sub("bob") in checked
    # A report that changes nothing either reads (only its publication time).
    run(chain, [report(chain, 100 * W, 9 * W // 10, chain.now)], dt=1)
    run(chain, [report(chain, 100 * W, 9 * W // 10, chain.now)], dt=0)
    assert checked == []


def test_a_long_drawn_on_is_liquidated_at_the_first_second_time_decay_takes_it_below(
    checked: list[bytes],
) -> None:
    """Carol buys a call and withdraws what the initial grid lets her draw on
    it. Spot and volatility never move again; the call loses time value until
    her equity falls below maintenance at second `crossing`. The last block
    before it and the same-second blocks leave her alone; the first block at
    `crossing` places her liquidation order."""
    chain = option_chain({"alice": 1_000 * W, "carol": 9 * W})
    run(
        chain,
        [chain.order("carol", CALL, BUY, 9 * W, W), chain.order("alice", CALL, SELL, 9 * W, W)],
        dt=1,
    )
    drawn = 2 * W
    assert run(chain, [chain.tx(key("carol"), Withdraw(0, drawn, key("carol").address))], dt=1)
    assert chain.state.subaccounts[sub("carol")].collateral < 0

    def below_at(t: int) -> bool:
        risk = maintenance_risk(StateWriter(chain.state, chain.state.height, t), sub("carol"))
        return risk.equity < risk.maintenance

    low, high = chain.now + 1, EXPIRY - 1
    assert not below_at(chain.now) and below_at(high)
    while low < high:  # the first second at which she is below maintenance
        middle = (low + high) // 2
        if below_at(middle):
            high = middle
        else:
            low = middle + 1
    crossing = low
    assert not below_at(crossing - 1)
    # One block a second before the crossing, with a fresh report of the same
    # prices (the oracle must stay fresh); then blocks in that same second.
    before = run(chain, [report(chain, 100 * W, VOL, crossing - 1)], dt=crossing - 1 - chain.now)
    assert not placed_for(before, "carol") and sub("carol") in checked
    for _ in range(3):
        run(chain, [], dt=0)
        assert sub("carol") not in checked
    at_crossing = run(chain, [report(chain, 100 * W, VOL, crossing)], dt=1)
    assert placed_for(at_crossing, "carol")


def test_time_stops_moving_an_option_at_expiry() -> None:
    params = option_params(OptionKind.PUT, 100 * W, EXPIRY)
    chain = option_chain({"alice": W})
    state = chain.state.market_states[CALL]
    assert option_seconds_left(params, EXPIRY - 5) == 5
    assert option_seconds_left(params, EXPIRY) == option_seconds_left(params, EXPIRY + 99) == 0
    assert option_seconds_left(None, 123) == 0
    at_expiry = margin_inputs(params, state, EXPIRY)
    assert at_expiry == margin_inputs(params, state, EXPIRY + 3_600)
    assert at_expiry != margin_inputs(params, state, EXPIRY - 1)
    assert MarginInputs._fields == (
        "params",
        "oracle_price",
        "long_index",
        "short_index",
        "oracle_volatility",
        "seconds_left",
    )


def test_option_heavy_blocks_within_a_second_match_the_full_check(checked: list[bytes]) -> None:
    """The benchmark's option workload at five blocks a second, prices every
    fifth block: every block matches the full check, and a block that neither
    starts a new second nor carries reports checks only the few subaccounts
    it and the block before wrote (traders and their fills' makers), not the
    option holders."""
    options = BlocksOptions(
        open_accounts=120,
        resting_orders=120,
        blocks=15,
        txs_per_block=3,
        option_markets=4,
        option_holders=120,
        price_every=5,
        blocks_per_second=5,
    )
    state, blocks = timed_blocks(options)
    holders = sum(1 for s in state.subaccounts.values() if any(m >= 10 for m in s.markets))
    assert holders > 100
    quiet: list[int] = []
    for k, block in enumerate(blocks):
        state = execute_checked(state, block).state
        if k % 5 > 1:  # not the block of a new second, not the one after it
            quiet.append(len(checked))
    assert quiet and max(quiet) < holders // 10


def test_the_black_scholes_memo_is_shared_by_the_blocks_of_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blocks of the same second at the same oracle inputs value options at the
    same arguments: the second block evaluates Black-Scholes for none of them,
    and its marks equal the first's (the memo holds the function's values)."""
    chain = option_chain({"alice": 1_000 * W, "bob": 100 * W})
    calls: list[int] = []

    def counted(*args: Any) -> Any:
        calls.append(1)
        return black_scholes_value(*args)

    monkeypatch.setattr(options_module, "black_scholes_value", counted)
    options_module.black_scholes_price.cache_clear()
    orders = [chain.order("bob", CALL, SELL, 9 * W, W), chain.order("alice", CALL, BUY, 9 * W, W)]
    first = run(chain, orders, dt=1)
    assert all(r.success for r in first.receipts) and calls
    evaluated = len(calls)
    state = chain.state
    mark_then = option_mark(
        StateWriter(state, state.height, state.block.timestamp),
        CALL,
        state.market_params[CALL],
        state.market_states[CALL],
    )
    again = [chain.order("bob", CALL, SELL, 9 * W, W), chain.order("alice", CALL, BUY, 9 * W, W)]
    second = run(chain, again, dt=0)
    assert all(r.success for r in second.receipts)
    assert len(calls) == evaluated
    options_module.black_scholes_price.cache_clear()
    state = chain.state
    recomputed = option_mark(
        StateWriter(state, state.height, state.block.timestamp),
        CALL,
        state.market_params[CALL],
        state.market_states[CALL],
    )
    assert recomputed == mark_then and len(calls) == evaluated + 1
