"""The liquidation state machine on the real oracle path: several reporters
with random powers, a Byzantine minority, stale reporters, the default cap.

`OracleMachine` runs every rule of `LiquidationMachine` (leveraged trades,
crashes, funding, expiry, liquidations) with these differences:
- genesis lists 4 to 7 reporters with powers 1..10; a random subset holding
  less than 1/3 of the power is Byzantine and reports, every block, prices
  and volatilities drawn anywhere in the accepted range (from 1 wei to
  MAX_AMOUNT) or far-off timestamps;
- honest reporters report the machine's price path with their own offset
  (within 1%), and a random set of them falls silent for a while (their last
  report goes stale after `oracle_staleness`);
- every market has the default `max_oracle_move` (5% per block).
Besides the invariants of the liquidation fuzz, after every block, per market:
- the applied price moves at most floor(previous * max_oracle_move);
- without fresh reports from more than 2/3 of the power it does not move;
- with them, it is no farther from the range of fresh honest reports than the
  previous price was, less one full cap step (it is inside the range or has
  moved the whole cap toward it): the Byzantine minority cannot pull it out.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import rule

from consensus.crypto import PrivateKey
from sequencer_net.execution.engine import BlockResult
from sequencer_net.execution.fixed_point import SCALE
from sequencer_net.execution.genesis import (
    GenesisConfig,
    GenesisDeposit,
    GenesisMarket,
    genesis_state,
)
from sequencer_net.execution.limits import MAX_AMOUNT, MAX_VOLATILITY
from sequencer_net.execution.records import DEFAULT_MAX_ORACLE_MOVE, MarketParams, OracleReporter
from sequencer_net.execution.state import ExecutionState, report_key
from sequencer_net.execution.transactions import OraclePrice, OracleUpdate
from tests.execution.execution_harness import ADMIN, CHAIN_ID, GENESIS_TIME, Chain, W, key, sub
from tests.execution.test_liquidation_fuzz import (
    EXAMPLES,
    STATS,
    STEPS,
    LiquidationMachine,
)

REPORTER_KEYS = tuple(key(f"reporter{i}") for i in range(7))


def distance(price: int, low: int, high: int) -> int:
    return max(low - price, price - high, 0)


class OracleMachine(LiquidationMachine):
    ORACLE_MOVE = DEFAULT_MAX_ORACLE_MOVE

    def new_chain(
        self,
        data: st.DataObject,
        deposits: dict[str, int],
        insurance: int,
        markets: list[tuple[int, MarketParams]],
    ) -> Chain:
        count = data.draw(st.integers(4, 7), label="reporters")
        self.reporters: list[PrivateKey] = list(REPORTER_KEYS[:count])
        self.powers = [data.draw(st.integers(1, 10), label=f"power {i}") for i in range(count)]
        total = sum(self.powers)
        order = data.draw(st.permutations(range(count)), label="byzantine order")
        most = data.draw(st.integers(0, count), label="byzantine at most")
        byzantine: set[int] = set()
        for i in order:  # as many as fit below 1/3 of the power, up to `most`
            power = sum(self.powers[j] for j in byzantine) + self.powers[i]
            if len(byzantine) < most and 3 * power < total:
                byzantine.add(i)
        self.byzantine = frozenset(byzantine)
        self.silent: frozenset[int] = frozenset()
        self.offsets = [data.draw(st.integers(-10, 10), label=f"offset {i}") for i in range(count)]
        self.lies: list[tuple[int, int, int]] = [(1, 0, 0)]  # (price, volatility, time shift)
        funded = {**deposits, **{f"reporter{i}": 1_000 * W for i in range(count)}}
        state = genesis_state(
            GenesisConfig(
                chain_id=CHAIN_ID,
                admin=ADMIN.address,
                bridge=ADMIN.address,
                oracles=tuple(
                    sorted(
                        (
                            OracleReporter(k.address, p)
                            for k, p in zip(self.reporters, self.powers, strict=True)
                        ),
                        key=lambda r: r.address,
                    )
                ),
                genesis_time=GENESIS_TIME,
                deposits=tuple(GenesisDeposit(sub(n), amount) for n, amount in funded.items()),
                insurance_fund=insurance,
                markets=tuple(GenesisMarket(mid, params) for mid, params in markets),
            )
        )
        STATS["oracle: byzantine reporters"] += len(self.byzantine)
        return Chain(state)

    @rule(silent=st.sets(st.integers(0, 6), max_size=4))
    def reporters_fall_silent(self, silent: set[int]) -> None:
        self.silent = frozenset(i for i in silent if i < len(self.reporters))

    @rule(
        lies=st.lists(
            st.tuples(
                st.one_of(st.integers(1, 10**6), st.integers(1, MAX_AMOUNT)),
                st.integers(0, MAX_VOLATILITY),
                st.sampled_from([0, 0, 0, -30, -3_600, 5]),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def byzantine_reports(self, lies: list[tuple[int, int, int]]) -> None:
        self.lies = lies

    def oracle(self, dt: int = 1) -> list[Any]:
        at = self.chain.now + dt
        txs = []
        for i, signer in enumerate(self.reporters):
            if i in self.byzantine:
                price, vol, shift = self.lies[i % len(self.lies)]
                prices = tuple(OraclePrice(mid, price, vol) for mid in sorted(self.index))
                txs.append(self.chain.tx(signer, OracleUpdate(at + shift, prices)))
            elif i not in self.silent:
                quoted = {
                    mid: max(price * (1_000 + self.offsets[i]) // 1_000, 1)
                    for mid, price in self.index.items()
                }
                prices = tuple(OraclePrice(mid, p, W // 2) for mid, p in sorted(quoted.items()))
                txs.append(self.chain.tx(signer, OracleUpdate(at, prices)))
        return txs

    def check_oracle(self, before: ExecutionState, result: BlockResult) -> None:
        now = result.state.block.timestamp
        total = sum(self.powers)
        reports = result.state.reports
        for mid, params in sorted(result.state.market_params.items()):
            old = before.market_states[mid].oracle_price
            new = result.state.market_states[mid].oracle_price
            fresh_power = 0
            honest = []
            for i, signer in enumerate(self.reporters):
                stored = reports.get(report_key(mid, signer.address))
                if stored is None or now - stored.published_at > params.oracle_staleness:
                    continue
                fresh_power += self.powers[i]
                if i not in self.byzantine:
                    honest.append(stored.price)
            if old == 0:
                continue  # the first price of a market is not capped
            step = (old * params.max_oracle_move) // SCALE
            assert abs(new - old) <= step, (mid, old, new)
            if 3 * fresh_power <= 2 * total:
                assert new == old, (mid, old, new)
                STATS["oracle: no quorum"] += 1
                continue
            low, high = min(honest), max(honest)
            assert distance(new, low, high) <= max(distance(old, low, high) - step, 0), (
                mid,
                old,
                new,
                low,
                high,
            )
            STATS["oracle: capped" if distance(new, low, high) else "oracle: in honest range"] += 1


OracleMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestOracleMachine = OracleMachine.TestCase


def teardown_module() -> None:
    print(f"\noracle fuzz counts: {dict(STATS)}")  # shown with -s
