"""The oracle: the validators report, the engine takes the power-weighted median.

No single reporter moves a price: one report far off changes nothing, a price
needs reports from more than 2/3 of the power, and the price moves at most
`max_oracle_move` per block (sequencer_net/execution/oracle.py).
"""

from __future__ import annotations

import pytest

from consensus.crypto import PrivateKey
from sequencer_net.execution.engine import ExecutionBlock, execute_block
from sequencer_net.execution.genesis import (
    GenesisConfig,
    GenesisDeposit,
    GenesisMarket,
    genesis_state,
)
from sequencer_net.execution.markets import is_oracle_fresh
from sequencer_net.execution.oracle import capped_move, quorum_time, weighted_median
from sequencer_net.execution.receipts import Liquidated, LiquidationOrderPlaced, OraclePriceSet
from sequencer_net.execution.records import OracleReporter
from sequencer_net.execution.state import ExecutionState, load_state, state_entries
from sequencer_net.execution.transactions import OraclePrice, OracleUpdate

from .execution_harness import (
    ADMIN,
    BUY,
    CHAIN_ID,
    GENESIS_TIME,
    ORACLE,
    SELL,
    Chain,
    W,
    check_engine_invariants,
    key,
    perp_params,
    size,
    sub,
)

PERP = 1
REPORTERS = [key(f"validator{i}") for i in range(4)]


def network(
    powers: list[int], *, max_move: int = W, deposits: dict[str, int] | None = None
) -> Chain:
    funded = {**(deposits or {}), **{f"validator{i}": 1_000 * W for i in range(len(powers))}}
    state = genesis_state(
        GenesisConfig(
            chain_id=CHAIN_ID,
            admin=ADMIN.address,
            bridge=ADMIN.address,
            oracles=tuple(
                OracleReporter(REPORTERS[i].address, power) for i, power in enumerate(powers)
            ),
            genesis_time=GENESIS_TIME,
            deposits=tuple(GenesisDeposit(sub(n), amount) for n, amount in funded.items()),
            insurance_fund=10_000 * W,
            markets=(GenesisMarket(PERP, perp_params(max_oracle_move=max_move)),),
        )
    )
    return Chain(state)


def report(chain: Chain, reporter: int, price: int, at: int | None = None):
    published = chain.now + 1 if at is None else at
    return chain.tx(REPORTERS[reporter], OracleUpdate(published, (OraclePrice(PERP, price, 0),)))


def oracle_price(state: ExecutionState) -> int:
    return state.market_states[PERP].oracle_price


def test_weighted_median_takes_the_lower_median_by_power() -> None:
    a, b, c, d = (bytes([i]) * 20 for i in range(4))
    assert weighted_median([(100, a, 1), (101, b, 1), (102, c, 1), (10**9, d, 1)]) == 101
    # Reporters holding more than half the power decide alone.
    assert weighted_median([(100, a, 5), (1, b, 1), (10**9, c, 1), (10**9, d, 1)]) == 100
    # Equal prices: ties broken by address, same value either way.
    assert weighted_median([(7, b, 1), (7, a, 1)]) == 7


def test_quorum_time_is_when_more_than_two_thirds_of_the_power_had_reported() -> None:
    # Four reporters of power 1: the third freshest report is the quorum's age.
    assert quorum_time([(10, 1), (12, 1), (11, 1), (3, 1)], total_power=4) == 10
    assert quorum_time([(10, 1), (12, 1)], total_power=4) is None  # 2/4 is not > 2/3
    assert quorum_time([(10, 5), (12, 1)], total_power=8) == 10  # 6/8 > 2/3


def test_capped_move_clamps_to_a_fraction_of_the_last_price() -> None:
    assert capped_move(0, 500, W // 20) == 500  # no cap before the first price
    assert capped_move(100 * W, 200 * W, W // 20) == 105 * W
    assert capped_move(100 * W, 10 * W, W // 20) == 95 * W
    assert capped_move(100 * W, 101 * W, W // 20) == 101 * W


def test_the_price_is_the_median_of_the_reporters_and_one_far_off_report_does_not_move_it() -> None:
    chain = network([1, 1, 1, 1])
    result = chain.block(
        [report(chain, 0, 100 * W), report(chain, 1, 101 * W), report(chain, 2, 102 * W)]
    )
    assert all(r.success for r in result.receipts)
    assert oracle_price(chain.state) == 101 * W
    assert [e for e in result.events if isinstance(e, OraclePriceSet)] == [
        OraclePriceSet(PERP, 101 * W, 0, chain.now, False)
    ]
    # The fourth validator reports x1000, then 10**-18: the median of four
    # stays between honest reports (the lower median: the second lowest).
    chain.block([report(chain, 3, 101_000 * W)])
    assert oracle_price(chain.state) == 101 * W
    chain.block([report(chain, 3, 1)])
    assert oracle_price(chain.state) == 100 * W


def test_without_more_than_two_thirds_of_the_power_the_price_stays_then_goes_stale() -> None:
    chain = network([1, 1, 1, 1])
    result = chain.block([report(chain, 0, 100 * W), report(chain, 1, 100 * W)])
    assert oracle_price(chain.state) == 0  # 2 of 4 is not more than 2/3
    assert not any(isinstance(e, OraclePriceSet) for e in result.events)
    chain.block([report(chain, 2, 100 * W)])
    assert oracle_price(chain.state) == 100 * W
    params = chain.state.market_params[PERP]
    published = chain.state.market_states[PERP].oracle_published_at
    # Nobody reports again: the price is kept, and stale once the quorum's
    # reports are older than oracle_staleness.
    chain.block([], dt=params.oracle_staleness - (chain.now - published))
    assert is_oracle_fresh(params, chain.state.market_states[PERP], chain.now)
    chain.block([], dt=1)
    assert oracle_price(chain.state) == 100 * W
    assert not is_oracle_fresh(params, chain.state.market_states[PERP], chain.now)
    # One validator alone cannot refresh it.
    chain.block([report(chain, 3, 120 * W)])
    assert not is_oracle_fresh(params, chain.state.market_states[PERP], chain.now)
    assert oracle_price(chain.state) == 100 * W


def test_power_weights_the_median_and_the_quorum() -> None:
    chain = network([5, 1, 1, 1])
    chain.block([report(chain, 0, 100 * W)])
    assert oracle_price(chain.state) == 0  # 5 of 8 is not more than 2/3
    chain.block([report(chain, 1, 200 * W)])
    # 6 of 8 reported; the power-5 reporter holds most of it, so its price wins.
    assert oracle_price(chain.state) == 100 * W


def test_the_price_moves_at_most_max_oracle_move_per_block_toward_the_median() -> None:
    chain = network([1, 1, 1, 1], max_move=W // 20)
    chain.block([report(chain, i, 100 * W) for i in range(4)])
    assert oracle_price(chain.state) == 100 * W
    result = chain.block([report(chain, i, 200 * W) for i in range(4)])
    assert oracle_price(chain.state) == 105 * W
    assert [e.capped for e in result.events if isinstance(e, OraclePriceSet)] == [True]
    chain.block([])  # no new report: the same fresh median, one more capped step
    assert oracle_price(chain.state) == 105 * W + 105 * W // 20


def test_reports_from_keys_outside_the_reporter_set_are_refused_and_change_nothing() -> None:
    chain = network([1, 1, 1, 1], deposits={"oracle": 1_000 * W})
    before = chain.state.state_root
    result = chain.block(
        [chain.tx(ORACLE, OracleUpdate(chain.now + 1, (OraclePrice(PERP, W, 0),)))]
    )
    (receipt,) = result.receipts
    assert not receipt.success and receipt.error == "Unauthorized"
    assert not chain.state.reports and oracle_price(chain.state) == 0
    assert chain.state.state_root != before  # the fee and nonce are spent, nothing else


@pytest.mark.parametrize(
    ("published_offset", "error"),
    [(2, "InvalidOracleUpdate"), (-61, "InvalidOracleUpdate")],
    ids=["from the future", "already stale"],
)
def test_a_report_from_the_future_or_already_stale_is_refused(
    published_offset: int, error: str
) -> None:
    chain = network([1, 1, 1, 1])
    result = chain.block([report(chain, 0, 100 * W, at=chain.now + published_offset)])
    assert [(r.success, r.error) for r in result.receipts] == [(False, error)]


def test_a_reporter_cannot_replace_its_report_with_an_older_one() -> None:
    chain = network([1, 1, 1, 1])
    at = chain.now + 1
    chain.block([report(chain, i, 100 * W, at=at) for i in range(3)])
    result = chain.block([report(chain, 0, 50 * W, at=at)])
    assert [(r.success, r.error) for r in result.receipts] == [(False, "InvalidOracleUpdate")]


def test_report_order_inside_a_block_does_not_matter() -> None:
    chain = network([1, 2, 3, 4])
    txs = [report(chain, i, (100 + 7 * i) * W) for i in range(4)]
    forward = execute_block(chain.state, ExecutionBlock(1, chain.now + 1, tuple(txs)))
    backward = execute_block(chain.state, ExecutionBlock(1, chain.now + 1, tuple(reversed(txs))))
    assert forward.state.state_root == backward.state.state_root
    assert forward.state.market_states[PERP].oracle_price == 114 * W  # power 3 + 4 of 10


def test_reports_survive_a_restart_of_the_state() -> None:
    chain = network([1, 1, 1, 1])
    chain.block([report(chain, i, (100 + i) * W) for i in range(4)])
    reloaded = load_state(chain.state.store, chain.state.state_root)
    assert reloaded.reports == chain.state.reports and len(reloaded.reports) == 4
    assert state_entries(reloaded) == state_entries(chain.state)


def test_one_reporter_far_off_liquidates_nobody() -> None:
    """A long at 10x sits near maintenance; one validator reports the price at
    1/1000: with the other three honest nothing is liquidated."""
    chain = network([1, 1, 1, 1], deposits={"alice": 1_000 * W, "bob": 100_000 * W})
    chain.block([report(chain, i, 100 * W) for i in range(4)])
    chain.block(
        [
            chain.order("bob", PERP, SELL, 100 * W, 90 * W),
            chain.order("alice", PERP, BUY, 100 * W, 90 * W),
        ]
    )
    assert size(chain.state, sub("alice"), PERP) == 90 * W
    result = chain.block([report(chain, 3, 100 * W // 1000)])
    assert oracle_price(chain.state) == 100 * W
    assert not any(isinstance(e, (Liquidated, LiquidationOrderPlaced)) for e in result.events)
    assert size(chain.state, sub("alice"), PERP) == 90 * W
    check_engine_invariants(chain.state)
    # While a quorum moving the price does liquidate her: the oracle still works.
    result = chain.block([report(chain, i, 90 * W) for i in range(3)])
    assert oracle_price(chain.state) == 90 * W
    placed = [e for e in result.events if isinstance(e, LiquidationOrderPlaced)]
    assert [e.subaccount for e in placed] == [sub("alice")]
    check_engine_invariants(chain.state)


def test_genesis_refuses_a_bad_reporter_set() -> None:
    base = dict(
        chain_id=CHAIN_ID,
        admin=ADMIN.address,
        bridge=ADMIN.address,
        genesis_time=GENESIS_TIME,
    )
    a = PrivateKey(b"\x01" * 32).address
    with pytest.raises(ValueError, match="twice"):
        genesis_state(GenesisConfig(oracles=(OracleReporter(a, 1), OracleReporter(a, 2)), **base))
    with pytest.raises(ValueError, match="power"):
        genesis_state(GenesisConfig(oracles=(OracleReporter(a, 0),), **base))
