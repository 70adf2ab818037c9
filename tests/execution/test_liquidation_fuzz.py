"""Money through liquidations: a hypothesis state machine over random markets,
leveraged positions, makers, market orders, price paths, funding and expiry.

Each example draws its own market parameters (margins, liquidation fee,
per-block liquidation cap, allowed misses, band), deposits and insurance fund,
then runs rules: leveraged trades, maker quotes, market orders, option trades,
price moves of up to 40% in one step, a squeeze that puts one trader between
bankrupt and maintenance, the maker pulling its quotes (so liquidation orders
miss auctions, are placed again, and the fund takes the slice still needed),
and blocks with time jumps from 1 s to hours (funding; the option expires).
After every block:
- money: collateral + fund + fee pool - unsettled charges == net deposits, and
  the fee pool grows by exactly the fees receipts and fills report (a
  liquidation order pays no trading fee);
- long == short open interest, order and liquidation-order bookkeeping, every
  account meets maintenance or has positive equity (check_engine_invariants);
- no flat account is left negative, and the fund's equity stays >= 0 except for
  what it was forced to pay past its equity (option-expiry shortfalls, and a
  deficit larger than the equity of every counterparty deleveraging closed);
  so every loss was taken by the fund or by deleveraging;
- no block-level unit raised (no PhaseSkipped), and the same block on the same
  state gives the same bytes, also when the liquidation check looks at every
  open subaccount instead of only those whose margin may have changed.
Normal runs take a few hundred examples; `SEQNET_FUZZ_LONG=1` runs thousands
(and prints how often each path ran).
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sequencer_net.execution.engine import (
    BlockResult,
    ExecutionBlock,
    encode_outcome,
    execute_block,
)
from sequencer_net.execution.margin import subaccount_risk
from sequencer_net.execution.receipts import (
    Deleveraged,
    FillEvent,
    Liquidated,
    LiquidationFeePaid,
    LiquidationOrderPlaced,
    OptionSettled,
    PhaseSkipped,
)
from sequencer_net.execution.records import MarketParams, OptionKind
from sequencer_net.execution.state import (
    INSURANCE_FUND,
    ExecutionState,
    StateWriter,
    position_key,
)
from sequencer_net.execution.transactions import CancelOrder
from tests.execution.execution_harness import (
    BUY,
    GENESIS_TIME,
    GTC,
    IOC,
    SELL,
    Chain,
    W,
    check_engine_invariants,
    key,
    make_genesis,
    option_params,
    perp_params,
    sub,
)

LONG = os.environ.get("SEQNET_FUZZ_LONG") == "1"
EXAMPLES = 3_000 if LONG else 200
STEPS = 50 if LONG else 25

PERP_A, PERP_B, CALL = 1, 2, 3
PERPS = (PERP_A, PERP_B)
EXPIRY = GENESIS_TIME + 4 * 3_600
TRADERS = tuple(f"t{i}" for i in range(8))
STATS: Counter[str] = Counter()


def on_tick(price: int, tick: int) -> int:
    return max(price - price % tick, tick)


class LiquidationMachine(RuleBasedStateMachine):
    ORACLE_MOVE = W
    """One reporter moves the price freely here; test_oracle_fuzz.py runs the
    same machine with several reporters and the default per-block cap."""

    @initialize(data=st.data())
    def genesis(self, data: st.DataObject) -> None:
        mm = data.draw(st.integers(2, 10), label="maintenance %")
        fee = data.draw(st.integers(0, 3), label="liquidation fee %")
        cap = data.draw(st.sampled_from([20 * W, 300 * W, 10**6 * W]), label="cap")
        band = data.draw(st.sampled_from([W // 100, W // 20, W // 5]), label="band")
        perp = perp_params(
            maintenance_margin=mm * W // 100,
            initial_margin=2 * mm * W // 100,
            liquidation_fee=fee * W // 100,
            max_liquidation_notional=cap,
            max_liquidation_misses=data.draw(st.integers(1, 4), label="misses"),
            max_oracle_move=self.ORACLE_MOVE,
            mark_band=band,
            funding_interval=600,
            funding_clamp=W // 20,
            min_premium_notional=0,
        )
        deposits = {name: data.draw(st.integers(5, 3_000), label=name) * W for name in TRADERS}
        deposits["mm"] = 200_000 * W
        self.deposits = deposits
        insurance = data.draw(st.sampled_from([0, 50 * W, 5_000 * W]), label="insurance")
        move = self.ORACLE_MOVE
        markets = [
            (PERP_A, perp),
            (PERP_B, perp_params(tick_size=W // 10, lot_size=W // 100, max_oracle_move=move)),
            (CALL, option_params(OptionKind.CALL, 100 * W, EXPIRY, max_oracle_move=move)),
        ]
        self.chain = self.new_chain(data, deposits, insurance, markets)
        self.index = {PERP_A: 100 * W, PERP_B: 100 * W, CALL: 100 * W}
        self.pending: list[Any] = []
        self.shortfall = 0
        self.chain.block(self.oracle())
        # Every trader starts leveraged, long or short, against the maker.
        for name in TRADERS:
            leverage = data.draw(st.integers(1, 30), label=f"{name} leverage")
            side = data.draw(st.sampled_from((BUY, SELL)), label=f"{name} side")
            mid = data.draw(st.sampled_from(PERPS), label=f"{name} market")
            price = self.index[mid]
            lot = self.lot(mid)
            quantity = max((deposits[name] * leverage * W // price) // lot, 1) * lot
            self.pending.append(self.chain.order(name, mid, side, price, quantity, tif=IOC))
            self.pending.append(self.chain.order("mm", mid, 1 - side, price, quantity, tif=IOC))
        self.execute(1)
        for mid in PERPS:  # and the maker leaves some depth on both sides
            self.maker_quotes(mid, depth=3, lots=data.draw(st.integers(100, 20_000), label="depth"))

    def new_chain(
        self,
        data: st.DataObject,
        deposits: dict[str, int],
        insurance: int,
        markets: list[tuple[int, MarketParams]],
    ) -> Chain:
        return Chain(make_genesis(deposits, insurance=insurance, markets=markets))

    def oracle(self, dt: int = 1) -> list[Any]:
        """The price reports of the next block, `dt` seconds on."""
        return [self.chain.prices(dict(self.index), vol=W // 2, at=self.chain.now + dt)]

    def check_oracle(self, before: ExecutionState, result: BlockResult) -> None:
        """What the oracle path must hold across one block (test_oracle_fuzz.py)."""

    def tick(self, mid: int) -> int:
        return self.chain.state.market_params[mid].tick_size

    def lot(self, mid: int) -> int:
        return self.chain.state.market_params[mid].lot_size

    @rule(
        buyer=st.sampled_from(TRADERS),
        seller=st.sampled_from(TRADERS),
        mid=st.sampled_from(PERPS),
        leverage=st.integers(1, 40),
        offset=st.integers(-3, 3),
    )
    def leveraged_trade(
        self, buyer: str, seller: str, mid: int, leverage: int, offset: int
    ) -> None:
        """A trade of about `leverage` x the smaller deposit (too much: rejected)."""
        price = on_tick(self.index[mid] + offset * self.index[mid] // 100, self.tick(mid))
        stake = min(self.deposits[buyer], self.deposits[seller])
        lot = self.lot(mid)
        quantity = max((stake * leverage * W // price) // lot, 1) * lot
        self.pending.append(self.chain.order(buyer, mid, BUY, price, quantity, tif=IOC))
        self.pending.append(self.chain.order(seller, mid, SELL, price, quantity))

    @rule(mid=st.sampled_from(PERPS), depth=st.integers(1, 4), lots=st.integers(10, 3_000))
    def maker_quotes(self, mid: int, depth: int, lots: int) -> None:
        for level in range(1, depth + 1):
            gap = self.index[mid] * level // 100
            for side, price in ((BUY, self.index[mid] - gap), (SELL, self.index[mid] + gap)):
                self.pending.append(
                    self.chain.order(
                        "mm", mid, side, on_tick(price, self.tick(mid)), lots * self.lot(mid)
                    )
                )

    @rule(
        who=st.sampled_from((*TRADERS, "mm")),
        mid=st.sampled_from(PERPS),
        side=st.sampled_from((BUY, SELL)),
        lots=st.integers(1, 20_000),
    )
    def market_order(self, who: str, mid: int, side: int, lots: int) -> None:
        self.pending.append(self.chain.order(who, mid, side, 0, lots * self.lot(mid), tif=IOC))

    @rule(
        buyer=st.sampled_from(TRADERS),
        seller=st.sampled_from(TRADERS),
        lots=st.integers(1, 300),
        premium=st.integers(1, 40),
    )
    def option_trade(self, buyer: str, seller: str, lots: int, premium: int) -> None:
        quantity = lots * self.lot(CALL)
        self.pending.append(self.chain.order(buyer, CALL, BUY, premium * W, quantity, tif=IOC))
        self.pending.append(self.chain.order(seller, CALL, SELL, premium * W, quantity, tif=GTC))

    @rule(mid=st.sampled_from(PERPS), percent=st.integers(-8, 0))
    def makers_step_back(self, mid: int, percent: int) -> None:
        """The maker pulls its quotes and the price slips: liquidation orders
        may find no bid for a few blocks (the retries, then the fund's slice)."""
        for order_id, order in sorted(self.chain.state.books.get(mid, {}).items()):
            if order.subaccount == sub("mm") and not order.liquidation:
                self.pending.append(self.chain.tx(key("mm"), CancelOrder(0, mid, order_id)))
        self.move_price(mid, percent)

    @rule(
        name=st.sampled_from(TRADERS),
        depth=st.integers(1, 9),
        pull=st.booleans(),
        quiet=st.integers(0, 5),
    )
    def squeeze(self, name: str, depth: int, pull: bool, quiet: int) -> None:
        """Move the index of one of `name`'s perps so that its equity lands about
        depth/10 of the way from bankrupt to maintenance (other positions and
        funding ignored): the partial liquidation path, not a close-out. With
        `pull` the maker also pulls its quotes there; then `quiet` one-second
        blocks without a price move (misses, retries, the fund's slice)."""
        state = self.chain.state
        sid = sub(name)
        held = [
            (mid, position.size)
            for mid in PERPS
            if (position := state.positions.get(position_key(sid, mid))) is not None
            and position.size
        ]
        if not held:
            return
        mid, size = held[0]
        risk = subaccount_risk(StateWriter(state, state.height, state.block.timestamp), sid)
        price = state.market_states[mid].oracle_price
        notional = abs(size) * price // W
        # equity(p) = E + size (p - P); aim at equity(p) = depth/10 * mm * |size| * p
        aim = state.market_params[mid].maintenance_margin * depth // 10
        if size > 0:
            target = (notional - risk.equity) * W * W // max(size * (W - aim), 1)
        else:
            target = (notional + risk.equity) * W * W // (-size * (W + aim))
        self.index[mid] = max(on_tick(target, self.tick(mid)), W)
        if pull:
            self.makers_step_back(mid, 0)
        for _ in range(quiet):
            self.execute(1)

    @rule(mid=st.sampled_from((PERP_A, PERP_B, CALL)), percent=st.integers(-40, 25))
    def move_price(self, mid: int, percent: int) -> None:
        self.index[mid] = max(self.index[mid] * (100 + percent) // 100, W)

    @rule(
        dt=st.sampled_from([0, 0, 1, 1, 1, 2, 30, 600, 3_600, 7_200]),
        mid=st.sampled_from((PERP_A, PERP_B, CALL)),
        percent=st.sampled_from([0, 0, -2, -5, -10, -20, -35, 3, 10]),
    )
    def execute(self, dt: int, mid: int = PERP_A, percent: int = 0) -> None:
        """One block; the price path moves `mid` by `percent` first. A block in
        the same second as the last (dt 0) carries no reports (a reporter
        reports once a second): its moves reach the next block's."""
        self.move_price(mid, percent)
        chain = self.chain
        txs = [*(self.oracle(dt) if dt else []), *self.pending]
        self.pending = []
        before = chain.state
        block = ExecutionBlock(before.height + 1, before.block.timestamp + dt, tuple(txs))
        # The same block on the same state, every open subaccount checked
        # (no watch list): the same bytes as the incremental check gives.
        again = execute_block(dataclasses.replace(before, margin_watch=None), block)
        result = chain.block(txs, dt=dt)
        assert encode_outcome(result) == encode_outcome(again)
        assert not [e for e in result.events if isinstance(e, PhaseSkipped)]
        assert not [r for r in result.receipts if r.error in ("HandlerFailed", "BlockFailed")]
        trading = sum(e.fee for e in result.events if isinstance(e, FillEvent))
        paid = sum(r.fee for r in result.receipts)
        assert result.state.ledger.fee_pool - before.ledger.fee_pool == paid + trading
        self.check_oracle(before, result)
        # What the fund had to pay past its equity: option shortfalls, and the
        # part of a deficit the deleveraged counterparties' equity could not cover.
        self.shortfall += sum(e.deficit for e in result.events if isinstance(e, OptionSettled))
        for e in result.events:
            if isinstance(e, Liquidated):
                # Who paid a deficit never adds up to more than the deficit.
                assert e.deficit >= e.covered_by_fund + e.deleveraged, e
                self.shortfall += e.deficit - e.covered_by_fund - e.deleveraged
        for event in result.events:
            if isinstance(event, Liquidated):
                if event.equity > 0 and event.deficit == 0 and event.covered_by_fund == 0:
                    STATS["fund took a slice"] += 1
                else:
                    STATS["closed by fund" if event.covered_by_fund else "closed out"] += 1
            if isinstance(event, Deleveraged | LiquidationOrderPlaced | LiquidationFeePaid):
                STATS[type(event).__name__] += 1
            if isinstance(event, LiquidationOrderPlaced) and event.subaccount != INSURANCE_FUND:
                order = result.state.books[event.market_id].get(event.order_id)
                if order is not None and order.liquidation_misses:
                    STATS["placed again after a miss"] += 1
        STATS["blocks"] += 1

    @invariant()
    def money_is_conserved_and_every_loss_is_assigned(self) -> None:
        if not hasattr(self, "chain"):
            return
        state = self.chain.state
        check_engine_invariants(state)
        for sid, account in state.subaccounts.items():
            if not account.markets and sid != INSURANCE_FUND:
                assert account.collateral >= 0, sid.hex()
        w = StateWriter(state, state.height, state.block.timestamp)
        assert subaccount_risk(w, INSURANCE_FUND).equity >= -self.shortfall

    def teardown(self) -> None:
        if getattr(self, "pending", None):
            self.execute(1)


LiquidationMachine.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestLiquidationMachine = LiquidationMachine.TestCase


def teardown_module() -> None:
    print(f"\nliquidation fuzz counts: {dict(STATS)}")  # shown with -s
