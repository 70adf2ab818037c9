"""Crash simulation: leveraged accounts, a 30% fall, and where every loss goes.

`simulate_crash(CrashOptions(accounts, drop, blocks, seed))` runs the real
engine (`execute_block`) on a seeded book and reports what liquidation,
the insurance fund and deleveraging did:

- block 1: oracle prices (perp index 2,000; the put's spot 2,000, vol 60%);
- block 2: every account opens a position in one uniform-price auction at
  2,000 against the house: collateral 500..5,000, leverage 2..9x, 70% long;
  every tenth account instead sells 1..3 puts (strike 1,900, 30 days);
- blocks 3..blocks+2: the index falls linearly to (1 - drop) x 2,000 and five
  makers each bid and offer 4 levels (0.5% apart, 5 units each, IOC) around it;
- SETTLE_BLOCKS more blocks at the bottom, so the last liquidation orders run.

After every block it checks money (collateral + fund + fee pool - unsettled
charges == net deposits) and open interest (long == short in every market),
and adds up the unassigned deficit: negative balances of flat accounts,
negative equity of accounts with positions, and the fund's negative equity,
i.e. losses that neither the fund nor deleveraging took. A second run from
scratch must give the same state root after every block (`replay_identical`).

Prices come as the chain's oracle does: REPORTERS validators of equal power
each report every block, and the engine takes their median. Every report goes
through `oracle_transaction`, the one place that knows its format.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from random import Random
from typing import Any

import msgspec

from consensus.crypto import keccak256
from sequencer_net.cli.bench_engine import bench_perp_params
from sequencer_net.execution.block import SequencedTransaction
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.engine import ExecutionBlock, execute_block
from sequencer_net.execution.fixed_point import SCALE, format_decimal
from sequencer_net.execution.genesis import (
    GenesisConfig,
    GenesisDeposit,
    GenesisMarket,
    genesis_state,
)
from sequencer_net.execution.margin import subaccount_risk
from sequencer_net.execution.positions import pending_charge
from sequencer_net.execution.receipts import (
    Deleveraged,
    Liquidated,
    LiquidationFeePaid,
    LiquidationOrderPlaced,
)
from sequencer_net.execution.records import (
    MarketKind,
    MarketParams,
    OptionKind,
    OptionTerms,
    OracleReporter,
    TimeInForce,
)
from sequencer_net.execution.state import INSURANCE_FUND, ExecutionState, StateWriter, subaccount_id
from sequencer_net.execution.transactions import (
    DEX_NAMESPACE,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    TxPayload,
    encode_payload,
)

W = SCALE
PERP, PUT = 1, 2
START_PRICE = 2_000 * W
VOLATILITY = 6 * W // 10
GENESIS_TIME = 1_700_000_000
SETTLE_BLOCKS = 3
MAKERS = 5
MAKER_LEVELS = 4
MAKER_LEVEL_UNITS = 5 * W
LIQUIDATION_CAP = 250_000 * W
"""Per-block liquidation notional of the perp: small enough that the cap binds."""


def _address(name: str) -> bytes:
    return keccak256(b"seqnet/crash-sim/" + name.encode())[:20]


REPORTERS = tuple(_address(f"validator{i}") for i in range(4))
"""The validators reporting prices (power 1 each)."""
ADMIN = _address("admin")
HOUSE = _address("house")


def perp_params() -> MarketParams:
    """The engine benchmarks' perpetual, with the simulation's liquidation cap."""
    return msgspec.structs.replace(bench_perp_params(), max_liquidation_notional=LIQUIDATION_CAP)


def put_params() -> MarketParams:
    return MarketParams(
        kind=MarketKind.OPTION,
        tick_size=W // 100,
        lot_size=W // 100,
        initial_margin=W // 5,
        maintenance_margin=W // 10,
        maker_fee=0,
        taker_fee=0,
        liquidation_fee=W // 100,
        funding_interval=0,
        funding_clamp=0,
        mark_band=W // 2,
        oracle_staleness=60,
        risk_free_rate=0,
        option=OptionTerms(OptionKind.PUT, 1_900 * W, GENESIS_TIME + 30 * 86_400),
    )


def oracle_transaction(
    sender: bytes, nonce: int, published_at: int, perp_index: int, put_spot: int
) -> SequencedTransaction:
    """The one place that builds an oracle price transaction for the simulation."""
    update = OracleUpdate(
        published_at,
        (OraclePrice(PERP, perp_index, 0), OraclePrice(PUT, put_spot, VOLATILITY)),
    )
    return _sequenced(sender, nonce, update)


def _sequenced(sender: bytes, nonce: int, payload: TxPayload) -> SequencedTransaction:
    data = encode_payload(payload)
    tx_hash = keccak256(encode((sender, nonce, data)))
    return SequencedTransaction(tx_hash, sender, nonce, DEX_NAMESPACE, 0, data)


@dataclass(frozen=True)
class CrashOptions:
    accounts: int = 1_000
    drop: int = 3 * W // 10
    """Fraction of the price lost over `blocks` (wad)."""
    blocks: int = 20
    seed: int = 1


@dataclass
class _Run:
    """One run of the simulation: its state, nonces, and what it observed."""

    state: ExecutionState
    nonces: dict[bytes, int] = field(default_factory=dict)
    roots: list[bytes] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    conserved: bool = True
    unassigned_deficit: int = 0
    rejected: int = 0
    execute_seconds: float = 0.0

    def nonce(self, sender: bytes) -> int:
        value = self.nonces.get(sender, 0)
        self.nonces[sender] = value + 1
        return value

    def tx(self, sender: bytes, payload: TxPayload) -> SequencedTransaction:
        return _sequenced(sender, self.nonce(sender), payload)

    def order(
        self,
        owner: bytes,
        market_id: int,
        side: int,
        price: int,
        quantity: int,
        tif: TimeInForce = TimeInForce.IMMEDIATE_OR_CANCEL,
    ) -> SequencedTransaction:
        return self.tx(owner, PlaceOrder(0, market_id, side, price, quantity, tif, False, False))

    def prices(self, index: int) -> list[SequencedTransaction]:
        """Every validator's report of `index` (the put's spot is the same)."""
        now = self.state.block.timestamp + 1
        return [oracle_transaction(v, self.nonce(v), now, index, index) for v in REPORTERS]

    def block(self, txs: list[SequencedTransaction]) -> None:
        block = ExecutionBlock(self.state.height + 1, self.state.block.timestamp + 1, tuple(txs))
        started = time.perf_counter()
        result = execute_block(self.state, block)
        self.execute_seconds += time.perf_counter() - started
        self.state = result.state
        self.roots.append(result.state_root)
        self.events.extend(result.events)
        self.rejected += sum(1 for receipt in result.receipts if not receipt.success)
        self.conserved &= money_is_conserved(self.state)
        self.unassigned_deficit = max(self.unassigned_deficit, unassigned_deficit(self.state))


def money_is_conserved(state: ExecutionState) -> bool:
    """Collateral + fund + fee pool - unsettled charges == net deposits, and
    in every market the sizes sum to zero and lots held long == open_lots."""
    total = state.ledger.fee_pool + sum(s.collateral for s in state.subaccounts.values())
    sizes: dict[int, list[int]] = {}
    for key, position in state.positions.items():
        market_id = int.from_bytes(key[21:], "big")
        params, mstate = state.market_params[market_id], state.market_states[market_id]
        total -= pending_charge(params, mstate, position)
        sizes.setdefault(market_id, []).append(position.size)
    for market_id, held in sizes.items():
        long_lots = sum(max(size, 0) for size in held) // state.market_params[market_id].lot_size
        if sum(held) != 0 or long_lots != state.market_states[market_id].open_lots:
            return False
    return total == state.ledger.net_deposits


def unassigned_deficit(state: ExecutionState) -> int:
    """Losses nobody took: flat accounts (the fund included) below zero, and
    accounts with positions whose equity is below zero."""
    w = StateWriter(state, state.height, state.block.timestamp)
    missing = 0
    for sid, account in state.subaccounts.items():
        if account.markets:
            missing += max(-subaccount_risk(w, sid).equity, 0)
        else:
            missing += max(-account.collateral, 0)
    return missing


def _genesis(accounts: list[tuple[bytes, int]], insurance: int) -> ExecutionState:
    deposits = [GenesisDeposit(subaccount_id(owner, 0), amount) for owner, amount in accounts]
    deposits.append(GenesisDeposit(subaccount_id(HOUSE, 0), 10**9 * W))
    deposits += [
        GenesisDeposit(subaccount_id(_address(f"maker{m}"), 0), 10**8 * W) for m in range(MAKERS)
    ]
    return genesis_state(
        GenesisConfig(
            chain_id=31_337,
            admin=ADMIN,
            bridge=ADMIN,
            oracles=tuple(OracleReporter(v, 1) for v in REPORTERS),
            genesis_time=GENESIS_TIME,
            deposits=tuple(deposits),
            insurance_fund=insurance,
            markets=(GenesisMarket(PERP, perp_params()), GenesisMarket(PUT, put_params())),
            fee_base=0,
            fee_per_byte=0,
        )
    )


def _run_once(options: CrashOptions) -> _Run:
    rng = Random(options.seed)
    lot = W // 1_000
    owners = [_address(f"account{i}") for i in range(options.accounts)]
    funded = [(owner, rng.randint(500, 5_000) * W) for owner in owners]
    run = _Run(_genesis(funded, insurance=options.accounts * 50 * W))
    run.block(run.prices(START_PRICE))
    opening = run.prices(START_PRICE)
    net_long = 0
    puts_sold = 0
    for i, (owner, collateral) in enumerate(funded):
        if i % 10 == 9:  # a put seller: 1..3 puts, no perp
            quantity = min(rng.randint(1, 3), collateral // (600 * W)) * W
            if quantity:
                opening.append(run.order(owner, PUT, 1, W // 100, quantity))
                puts_sold += quantity
            continue
        leverage = rng.randint(2, 9)
        size = (collateral * leverage * W // START_PRICE) // lot * lot
        long = rng.random() < 0.7
        opening.append(run.order(owner, PERP, 0 if long else 1, START_PRICE, size))
        net_long += size if long else -size
    if net_long:
        side = 1 if net_long > 0 else 0
        opening.append(run.order(HOUSE, PERP, side, START_PRICE, abs(net_long)))
    if puts_sold:
        opening.append(run.order(HOUSE, PUT, 0, 500 * W, puts_sold))
    run.block(opening)
    for step in range(1, options.blocks + SETTLE_BLOCKS + 1):
        fallen = options.drop * min(step, options.blocks) // options.blocks
        index = START_PRICE - START_PRICE * fallen // W
        index -= index % (W // 100)
        txs = run.prices(index)
        for m in range(MAKERS):
            maker = _address(f"maker{m}")
            for level in range(1, MAKER_LEVELS + 1):
                gap = index * level // 200
                gap -= gap % (W // 100)
                txs.append(run.order(maker, PERP, 0, index - gap, MAKER_LEVEL_UNITS))
                txs.append(run.order(maker, PERP, 1, index + gap, MAKER_LEVEL_UNITS))
        run.block(txs)
    return run


def simulate_crash(options: CrashOptions) -> dict[str, Any]:
    """Run the crash twice from scratch; report the first run and whether the
    second gave the same state root after every block."""
    started = time.perf_counter()
    run = _run_once(options)
    elapsed = time.perf_counter() - started
    replay = _run_once(options)
    liquidated: set[bytes] = set()
    placed = fills = closed_by_fund = 0
    fees = deleveraged_notional = deleveraged_loss = 0
    deleveraged_accounts: set[bytes] = set()
    for event in run.events:
        if isinstance(event, LiquidationOrderPlaced) and event.subaccount != INSURANCE_FUND:
            placed += 1
        elif isinstance(event, LiquidationFeePaid):
            fills += 1
            fees += event.fee
            liquidated.add(event.subaccount)
        elif isinstance(event, Liquidated):
            liquidated.add(event.subaccount)
            closed_by_fund += event.deleveraged == 0
            fees += event.fee
        elif isinstance(event, Deleveraged):
            deleveraged_accounts.add(event.subaccount)
            deleveraged_notional += abs(event.quantity) * event.price // W
            deleveraged_loss += event.loss
    state = run.state
    w = StateWriter(state, state.height, state.block.timestamp)
    fund = subaccount_risk(w, INSURANCE_FUND)
    return {
        "accounts": options.accounts,
        "drop": format_decimal(options.drop, trim=True),
        "blocks": options.blocks,
        "settle_blocks": SETTLE_BLOCKS,
        "seed": options.seed,
        "unassigned_deficit": format_decimal(run.unassigned_deficit, trim=True),
        "conserved": run.conserved,
        "replay_identical": run.roots == replay.roots,
        "liquidations": len(liquidated),
        "liquidation_orders": placed,
        "liquidation_fills": fills,
        "closed_by_fund": closed_by_fund,
        "deleveraged_accounts": len(deleveraged_accounts),
        "deleveraged_notional": format_decimal(deleveraged_notional, trim=True),
        "deleveraged_loss": format_decimal(deleveraged_loss, trim=True),
        "liquidation_fees": format_decimal(fees, trim=True),
        "insurance_fund": format_decimal(fund.equity, trim=True),
        "insurance_fund_collateral": format_decimal(
            state.subaccounts[INSURANCE_FUND].collateral, trim=True
        ),
        "rejected_transactions": run.rejected,
        "final_state_root": state.state_root.hex(),
        "execute_ms": round(run.execute_seconds * 1_000, 1),
        "elapsed_ms": round(elapsed * 1_000, 1),
    }
