"""Benchmark of the engine's per-block cost: many small DEX blocks over a large open state.

`bench_blocks(BlocksOptions(...))` builds, untimed:

- a genesis with `markets` perpetuals, four price reporters, one maker per
  market and `open_accounts` funded trader accounts;
- block 1: the reporters' prices (index 2,000);
- block 2: each maker rests a deep two-sided book; every trader buys or sells
  a few lots at market, so every trader holds a position (about 2x leverage);
- block 3: `resting_orders` GTC limit orders from the traders, 2-4% away from
  the index (they rest; nobody crosses them).

Then it times `execute_block` on each of `blocks` blocks of `txs_per_block`
transactions: every `price_every`-th block (the first included) the four
reporters move every market's index by up to +-0.2% (validators report once a
second, and a network commits several blocks a second), and traders place new
limit orders near the index (some cross and fill), cancel resting ones, and
send market orders. Blocks are one second apart, so `execute_block` pays
whatever its end-of-block work costs (auctions, premium samples, the
liquidation check of every open subaccount, the state-tree update) at this
open state, the cost a network committing several small blocks a second pays
on every block.

Transactions are built as the commit pipeline hands them to the engine
(`SequencedTransaction`, sender recovered): no signatures are made or
recovered, since `seqnet bench block` already times that apart. With
`profile`, one cProfile run over the timed blocks splits the cost by engine
phase (`phases_ms`: cumulative time per phase function, over all timed blocks).
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from dataclasses import dataclass
from random import Random
from typing import Any

from consensus.crypto import keccak256
from sequencer_net.cli.bench_engine import GENESIS_TIME, INDEX_PRICE, LOT, TICK, WAD
from sequencer_net.cli.bench_engine import bench_perp_params as perp_params
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.engine import (
    ExecutionBlock,
    SequencedTransaction,
    execute_block,
)
from sequencer_net.execution.fees import required_fee
from sequencer_net.execution.genesis import (
    GenesisConfig,
    GenesisDeposit,
    GenesisMarket,
    genesis_state,
)
from sequencer_net.execution.receipts import FillEvent
from sequencer_net.execution.records import ChainConfig, OracleReporter, TimeInForce
from sequencer_net.execution.state import ExecutionState, subaccount_id
from sequencer_net.execution.transactions import (
    DEX_NAMESPACE,
    CancelOrder,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    TxPayload,
    encode_payload,
)

REPORTERS = 4
SETUP_BLOCK_SIZE = 20_000
"""Setup transactions per block (a large open state takes several blocks)."""

PHASES = (
    "admit_transactions",
    "decode_dex_payloads",
    "_run",
    "aggregate_prices",
    "advance_market_clock",
    "place_triggered_orders",
    "run_auctions",
    "sample_premiums",
    "liquidate_undermargined",
    "evaluate_triggers",
    "commit",
)
"""Engine functions whose cumulative time `profile` reports (engine.py's phases;
`_run` is every transaction's handler, `commit` the snapshot and tree update)."""


@dataclass(frozen=True)
class BlocksOptions:
    open_accounts: int = 1_000
    resting_orders: int = 1_000
    blocks: int = 20
    txs_per_block: int = 100
    markets: int = 10
    price_every: int = 5
    seed: int = 1
    profile: bool = False


def _address(label: str, i: int) -> bytes:
    return keccak256(f"seqnet-bench-blocks/{label}/{i}".encode())[:20]


class _Sender:
    """Builds committed transactions with per-sender nonces and the required fee."""

    def __init__(self, config: ChainConfig) -> None:
        self.config = config
        self.nonces: dict[bytes, int] = {}
        self.count = 0

    def __call__(self, sender: bytes, payload: TxPayload) -> SequencedTransaction:
        nonce = self.nonces.get(sender, 0)
        self.nonces[sender] = nonce + 1
        self.count += 1
        data = encode_payload(payload)
        tx_hash = keccak256(encode((sender, nonce, self.count)))
        fee = required_fee(self.config, len(data))
        return SequencedTransaction(tx_hash, sender, nonce, DEX_NAMESPACE, fee, data)


def build_open_state(
    options: BlocksOptions,
) -> tuple[ExecutionState, _Sender, list[bytes], list[bytes], list[tuple[bytes, int, bytes]]]:
    """The untimed setup (module docstring): the state after it, the sender,
    the reporters, the traders and the resting orders (owner, market, id)."""
    rng = Random(options.seed)
    markets = options.markets
    reporters = [_address("validator", i) for i in range(REPORTERS)]
    makers = [_address("maker", m) for m in range(markets)]
    traders = [_address("trader", i) for i in range(options.open_accounts)]
    deposits = [GenesisDeposit(subaccount_id(a, 0), 10**12 * WAD) for a in [*reporters, *makers]]
    deposits += [GenesisDeposit(subaccount_id(a, 0), 100_000 * WAD) for a in traders]
    state = genesis_state(
        GenesisConfig(
            chain_id=31_337,
            admin=reporters[0],
            bridge=reporters[0],
            oracles=tuple(OracleReporter(a, 1) for a in reporters),
            genesis_time=GENESIS_TIME,
            deposits=tuple(deposits),
            insurance_fund=10**9 * WAD,
            markets=tuple(GenesisMarket(m, perp_params()) for m in range(markets)),
        )
    )
    send = _Sender(state.config)
    height = 0

    def run(txs: list[SequencedTransaction]) -> None:
        nonlocal state, height
        for start in range(0, max(len(txs), 1), SETUP_BLOCK_SIZE):
            height += 1
            chunk = tuple(txs[start : start + SETUP_BLOCK_SIZE])
            state = execute_block(state, ExecutionBlock(height, GENESIS_TIME + height, chunk)).state

    update = OracleUpdate(
        GENESIS_TIME + 1, tuple(OraclePrice(m, INDEX_PRICE, 0) for m in range(markets))
    )
    run([send(a, update) for a in reporters])
    gtc, ioc = TimeInForce.GOOD_TILL_CANCEL, TimeInForce.IMMEDIATE_OR_CANCEL
    depth = (options.open_accounts // markets + 1) * 100 * LOT
    book = []
    for m, maker in enumerate(makers):
        for level in range(1, 6):
            book.append(
                send(
                    maker, PlaceOrder(0, m, 0, INDEX_PRICE - level * TICK, depth, gtc, False, False)
                )
            )
            book.append(
                send(
                    maker, PlaceOrder(0, m, 1, INDEX_PRICE + level * TICK, depth, gtc, False, False)
                )
            )
    run(book)
    opening = [
        send(
            trader,
            PlaceOrder(
                0, i % markets, rng.randrange(2), 0, rng.randint(1, 100) * LOT, ioc, False, False
            ),
        )
        for i, trader in enumerate(traders)
    ]
    run(opening)
    resting: list[tuple[bytes, int, bytes]] = []
    orders = []
    for _ in range(options.resting_orders):
        trader = traders[rng.randrange(len(traders))]
        market = rng.randrange(markets)
        side = rng.randrange(2)
        away = rng.randint(200, 400) * INDEX_PRICE // 10_000 // TICK * TICK
        price = INDEX_PRICE - away if side == 0 else INDEX_PRICE + away
        tx = send(
            trader, PlaceOrder(0, market, side, price, rng.randint(1, 10) * LOT, gtc, False, False)
        )
        orders.append(tx)
        resting.append((trader, market, tx.tx_hash))
    run(orders)
    return state, send, reporters, traders, resting


def timed_blocks(
    options: BlocksOptions,
) -> tuple[ExecutionState, list[ExecutionBlock]]:
    """The open state and the blocks to time (built, not executed)."""
    state, send, reporters, traders, resting = build_open_state(options)
    rng = Random(options.seed + 1)
    gtc, ioc = TimeInForce.GOOD_TILL_CANCEL, TimeInForce.IMMEDIATE_OR_CANCEL
    blocks = []
    index = [INDEX_PRICE] * options.markets
    for k in range(options.blocks):
        height = state.height + 1 + k
        timestamp = state.block.timestamp + 1 + k
        txs = []
        if k % options.price_every == 0:
            index = [p + rng.randint(-40, 40) * TICK for p in index]
            prices = tuple(OraclePrice(m, p, 0) for m, p in enumerate(index))
            txs = [send(a, OracleUpdate(timestamp, prices)) for a in reporters]
        while len(txs) < options.txs_per_block:
            trader = traders[rng.randrange(len(traders))]
            market = rng.randrange(options.markets)
            roll = rng.randrange(20)
            if roll < 3 and resting:
                owner, mid, order_id = resting.pop(rng.randrange(len(resting)))
                txs.append(send(owner, CancelOrder(0, mid, order_id)))
            elif roll < 4:
                size = rng.randint(1, 20) * LOT
                txs.append(
                    send(
                        trader, PlaceOrder(0, market, rng.randrange(2), 0, size, ioc, False, False)
                    )
                )
            else:
                side = rng.randrange(2)
                price = index[market] + rng.randint(-20, 20) * TICK
                size = rng.randint(1, 20) * LOT
                tx = send(trader, PlaceOrder(0, market, side, price, size, gtc, False, False))
                txs.append(tx)
                resting.append((trader, market, tx.tx_hash))
        blocks.append(ExecutionBlock(height, timestamp, tuple(txs)))
    return state, blocks


def bench_blocks(options: BlocksOptions) -> dict[str, Any]:
    """Time `execute_block` on each small block; return numbers (module docstring)."""
    started = time.perf_counter()
    state, blocks = timed_blocks(options)
    setup_seconds = time.perf_counter() - started
    opened = len(state.open_subaccounts)
    resting = sum(len(book) for book in state.books.values())
    times: list[float] = []
    cpu_times: list[float] = []
    fills = 0
    profiler = cProfile.Profile() if options.profile else None
    for block in blocks:
        if profiler is not None:
            profiler.enable()
        started, cpu_started = time.perf_counter(), time.process_time()
        result = execute_block(state, block)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
        if profiler is not None:
            profiler.disable()
        fills += sum(1 for e in result.events if isinstance(e, FillEvent))
        state = result.state
    report: dict[str, Any] = {
        "open_accounts": options.open_accounts,
        "open_subaccounts": opened,
        "resting_orders": resting,
        "markets": options.markets,
        "price_every": options.price_every,
        "blocks": options.blocks,
        "txs_per_block": options.txs_per_block,
        "seed": options.seed,
        "setup_s": round(setup_seconds, 1),
        "block_ms_median": round(statistics.median(times) * 1_000, 2),
        "block_ms_mean": round(statistics.fmean(times) * 1_000, 2),
        "block_ms_max": round(max(times) * 1_000, 2),
        "block_cpu_ms_median": round(statistics.median(cpu_times) * 1_000, 2),
        "tx_per_s_engine": round(options.txs_per_block / statistics.median(times)),
        "fills": fills,
        "state_root": state.state_root.hex(),
    }
    if profiler is not None:
        report["phases_ms"] = _phase_times(profiler, len(blocks))
    return report


def _phase_times(profiler: cProfile.Profile, blocks: int) -> dict[str, float]:
    """Mean cumulative milliseconds per block of each PHASES function (profiled,
    so slower than unprofiled; for the split, not the total)."""
    stats = pstats.Stats(profiler)
    found: dict[str, float] = {}
    for (filename, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        if name in PHASES and "execution" in filename:
            found[name] = found.get(name, 0.0) + row[3]
    return {name: round(found.get(name, 0.0) * 1_000 / blocks, 2) for name in PHASES}
