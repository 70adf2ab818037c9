"""Option settlement at the time-weighted average spot of the window before expiry."""

from __future__ import annotations

import msgspec
import pytest

from sequencer_net.execution.exceptions import InvalidMarketParams
from sequencer_net.execution.markets import check_market_params
from sequencer_net.execution.receipts import OptionSettled
from sequencer_net.execution.records import OptionKind
from sequencer_net.execution.settlement import SETTLEMENT_SAMPLE_MAX_SECONDS
from sequencer_net.execution.transactions import UpdateMarketParams
from tests.execution.execution_harness import (
    ADMIN,
    BUY,
    GENESIS_TIME,
    SELL,
    Chain,
    W,
    check_engine_invariants,
    collateral,
    make_genesis,
    option_params,
    size,
    sub,
)

CALL = 10
EXPIRY = GENESIS_TIME + 1_000
WINDOW = 60
VOL = 8 * W // 10


def settlement_chain(window: int = WINDOW) -> Chain:
    """alice long 2 calls (strike 90) from bob, bought at genesis + 2."""
    params = option_params(OptionKind.CALL, 90 * W, EXPIRY, settlement_window=window)
    chain = Chain(
        make_genesis(
            {"alice": 1_000 * W, "bob": 1_000 * W},
            insurance=1_000 * W,
            markets=[(CALL, params)],
        )
    )
    chain.block([chain.prices({CALL: 100 * W}, vol=VOL)])
    traded = chain.block(
        [
            chain.order("alice", CALL, BUY, 12 * W, 2 * W),
            chain.order("bob", CALL, SELL, 12 * W, 2 * W),
        ]
    )
    assert all(r.success for r in traded.receipts), traded.receipts
    assert size(chain.state, sub("alice"), CALL) == 2 * W
    return chain


def run_to_expiry(chain: Chain, prices: dict[int, int], dt: int = 1) -> OptionSettled:
    """Blocks every `dt` seconds from the window's start to expiry; the oracle
    posts `prices[t]` in the block at time t (100 where not given)."""
    chain.block([], dt=EXPIRY - WINDOW - chain.now)
    settled: list[OptionSettled] = []
    while not settled:
        t = chain.now + dt
        price = prices.get(t, 100 * W)
        posted = [chain.prices({CALL: price}, vol=VOL, at=t)] if t <= EXPIRY else []
        result = chain.block(posted, dt=dt)
        settled = [e for e in result.events if isinstance(e, OptionSettled)]
        check_engine_invariants(chain.state)
    assert chain.now == EXPIRY
    return settled[0]


def test_settlement_is_the_time_weighted_average_rounded_down() -> None:
    chain = settlement_chain()
    alice, bob = collateral(chain.state, sub("alice")), collateral(chain.state, sub("bob"))
    # 30 s at 100, then 30 s at 101.01 (published at EXPIRY - 29 .. EXPIRY).
    late = {t: 10_101 * W // 100 for t in range(EXPIRY - 29, EXPIRY + 1)}
    settled = run_to_expiry(chain, late)
    # (30 * 100 + 30 * 101.01) / 60 = 100.505 exactly.
    assert settled.settlement_price == 100_505 * W // 1000
    assert (settled.twap_seconds, settled.source) == (60, "twap")
    state = chain.state.market_states[CALL]
    assert state.settlement_price == settled.settlement_price
    # Payout: intrinsic 10.505 per unit, lot 0.01 -> 0.10505 per lot, 200 lots.
    assert settled.payout_per_lot == 10_505 * W // 100_000
    assert collateral(chain.state, sub("alice")) == alice + 21_010 * W // 1000
    assert collateral(chain.state, sub("bob")) == bob - 21_010 * W // 1000


def test_a_mean_with_dust_rounds_down_by_less_than_one_wei() -> None:
    chain = settlement_chain()
    settled = run_to_expiry(chain, {EXPIRY - 10: 100 * W + 1})
    # (59 * 100 W + 100 W + 1) / 60: the 1 wei is lost to the floor.
    assert settled.settlement_price == 100 * W


def test_a_one_block_spike_moves_the_settlement_by_its_share_of_the_window() -> None:
    chain = settlement_chain()
    settled = run_to_expiry(chain, {EXPIRY - 1: 200 * W})  # +100 for one 1-s block
    # (59 * 100 + 200) / 60 = 101.6666...: the spike of 100 counts 1/60.
    assert settled.settlement_price == 6_100 * W // 60
    assert settled.settlement_price - 100 * W <= 100 * W * 1 // WINDOW
    # A spot settlement would have paid intrinsic(200) = 110 per unit instead of 11.67.
    assert settled.payout_per_lot == (6_100 * W // 60 - 90 * W) // 100


def test_a_block_after_a_halt_counts_at_most_five_seconds() -> None:
    chain = settlement_chain()
    chain.block([], dt=EXPIRY - WINDOW - chain.now)
    for _ in range(30):  # 30 s at 100
        chain.block([chain.prices({CALL: 100 * W}, vol=VOL)])
    # The chain halts 20 s; the first block after it carries a spike of 200 (the
    # most the oracle moves in one block here: max_oracle_move is 100%).
    chain.block([chain.prices({CALL: 200 * W}, vol=VOL)], dt=20)
    state = chain.state.market_states[CALL]
    assert state.settlement_twap_seconds == 30 + SETTLEMENT_SAMPLE_MAX_SECONDS
    for _ in range(EXPIRY - chain.now - 1):
        chain.block([chain.prices({CALL: 100 * W}, vol=VOL)])
    result = chain.block([chain.prices({CALL: 100 * W}, vol=VOL)])
    [settled] = [e for e in result.events if isinstance(e, OptionSettled)]
    # 45 sampled seconds: 40 at 100, 5 at 200 -> 111.11...; the halt's other
    # 15 s are not sampled, so the spike weighs 5/45, not 20/60.
    assert settled.twap_seconds == 45
    assert settled.settlement_price == (40 * 100 + 5 * 200) * W // 45


def test_a_price_published_after_expiry_is_not_averaged_in() -> None:
    chain = settlement_chain()
    chain.block([], dt=EXPIRY - WINDOW - chain.now)
    for _ in range(WINDOW - 2):  # sampled up to EXPIRY - 2, at 100
        chain.block([chain.prices({CALL: 100 * W}, vol=VOL)])
    # The next block comes 4 s later, after expiry, with a price published then.
    result = chain.block([chain.prices({CALL: 150 * W}, vol=VOL, at=chain.now + 4)], dt=4)
    [settled] = [e for e in result.events if isinstance(e, OptionSettled)]
    assert settled.twap_seconds == WINDOW - 2
    assert settled.settlement_price == 100 * W


def test_with_no_sample_the_settlement_falls_back_to_the_oracle_and_says_so() -> None:
    chain = settlement_chain()
    # No price in the whole window (the last one is stale long before it).
    chain.block([], dt=EXPIRY - chain.now)
    assert chain.state.market_states[CALL].settlement_price == 0  # waits for a price
    result = chain.block([chain.prices({CALL: 97 * W}, vol=VOL, at=EXPIRY + 1)])
    [settled] = [e for e in result.events if isinstance(e, OptionSettled)]
    assert (settled.settlement_price, settled.twap_seconds) == (97 * W, 0)
    assert settled.source == "oracle-fallback"
    assert settled.payout_per_lot == 7 * W // 100


def test_the_settlement_window_is_validated_and_fixed_at_listing() -> None:
    for bad in (0, 86_401):
        with pytest.raises(InvalidMarketParams):
            check_market_params(
                option_params(OptionKind.CALL, 90 * W, EXPIRY, settlement_window=bad),
                GENESIS_TIME,
            )
    longest = option_params(OptionKind.CALL, 90 * W, EXPIRY, settlement_window=86_400)
    check_market_params(longest, GENESIS_TIME)  # a day is the limit, and allowed
    chain = settlement_chain()
    params = chain.state.market_params[CALL]
    changed = msgspec.structs.replace(params, settlement_window=WINDOW + 1)
    result = chain.block([chain.tx(ADMIN, UpdateMarketParams(CALL, changed))])
    assert result.receipts[0].error == "InvalidMarketParams"
