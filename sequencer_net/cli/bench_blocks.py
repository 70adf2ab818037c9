"""Benchmark of the engine's per-block cost: many small DEX blocks over a large open state.

`bench_blocks(BlocksOptions(...))` builds, untimed:

- a genesis with `markets` perpetuals, four price reporters, one maker per
  market and `open_accounts` funded trader accounts;
- block 1: the reporters' prices (index 2,000);
- block 2: each maker rests a deep two-sided book; every trader buys or sells
  a few lots at market, so every trader holds a position (about 2x leverage);
- block 3: `resting_orders` GTC limit orders from the traders, 2-4% away from
  the index (they rest; nobody crosses them).

With `option_markets` > 0, the same blocks also list that many European
options (calls and puts, strikes around the index, 30 days, one underlying:
perpetual market 1, whose index is their spot, at 80% volatility); one option
maker per option market rests a two-sided book around the Black-Scholes mark in
block 2, and in block 3 `option_holders` of the traders also buy or sell a few
units of one option at market (about half of them short), so each of them holds
an option and a perpetual.

Then it times `execute_block` on each of `blocks` blocks of `txs_per_block`
transactions: every `price_every`-th block (the first included) the four
reporters move every market's index by up to +-0.2% (validators report once a
second, and a network commits several blocks a second), and traders place new
limit orders near the index (some cross and fill), cancel resting ones, and
send market orders. Block time advances one second every `blocks_per_second`
blocks (default 1: blocks are one second apart; the engine's block time is in
whole seconds, so a network committing several blocks a second gives them
the same time). `execute_block` pays whatever its end-of-block work costs
(auctions, premium samples, the liquidation check of every open subaccount,
the state-tree update) at this open state, the cost a network committing
several small blocks a second pays on every block.

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

import msgspec

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
from sequencer_net.execution.options_pricing import OptionType, black_scholes, years_from_seconds
from sequencer_net.execution.receipts import FillEvent
from sequencer_net.execution.records import (
    ChainConfig,
    MarketKind,
    MarketParams,
    OptionKind,
    OptionTerms,
    OracleReporter,
    TimeInForce,
)
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

OPTION_UNDERLYING = 1
"""The perpetual whose index is every option's spot (and their margin group)."""
OPTION_VOLATILITY = 8 * WAD // 10
OPTION_EXPIRY = GENESIS_TIME + 30 * 86_400
OPTION_TICK = WAD // 100
OPTION_LOT = WAD // 10
OPTION_STRIKE_STEP = 50 * WAD


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
    option_markets: int = 0
    option_holders: int = 0
    blocks_per_second: int = 1


def option_params(market: int) -> MarketParams:
    """Option `market` (0-based among the options): calls at even, puts at odd
    numbers, strikes stepping away from the index in both directions."""
    kind = OptionKind.CALL if market % 2 == 0 else OptionKind.PUT
    away = (market // 2 + 1) // 2 * (1 if (market // 2) % 2 else -1)
    return msgspec.structs.replace(
        perp_params(),
        kind=MarketKind.OPTION,
        tick_size=OPTION_TICK,
        lot_size=OPTION_LOT,
        initial_margin=15 * WAD // 100,
        maintenance_margin=8 * WAD // 100,
        maker_fee=0,
        taker_fee=3 * WAD // 10_000,
        funding_interval=0,
        funding_clamp=0,
        mark_band=WAD // 2,
        risk_free_rate=5 * WAD // 100,
        option=OptionTerms(
            kind, INDEX_PRICE + away * OPTION_STRIKE_STEP, OPTION_EXPIRY, OPTION_UNDERLYING
        ),
    )


def option_mark_at(params: MarketParams, spot: int, at: int) -> int:
    """The Black-Scholes value the engine marks the option at (setup only)."""
    terms = params.option
    assert terms is not None
    kind = OptionType.CALL if terms.option_kind == OptionKind.CALL else OptionType.PUT
    years = years_from_seconds(terms.expiry - at)
    quote = black_scholes(kind, spot, terms.strike, years, params.risk_free_rate, OPTION_VOLATILITY)
    return max(quote.price, 0)


def _prices(options: BlocksOptions, index: list[int]) -> tuple[OraclePrice, ...]:
    """Every perpetual's index and every option's spot (the underlying's index)."""
    perps = [OraclePrice(m, p, 0) for m, p in enumerate(index)]
    spot = index[OPTION_UNDERLYING % len(index)]
    opts = [
        OraclePrice(options.markets + k, spot, OPTION_VOLATILITY)
        for k in range(options.option_markets)
    ]
    return tuple(perps + opts)


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
    makers += [_address("option-maker", k) for k in range(options.option_markets)]
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
            markets=tuple(GenesisMarket(m, perp_params()) for m in range(markets))
            + tuple(
                GenesisMarket(markets + k, option_params(k)) for k in range(options.option_markets)
            ),
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

    update = OracleUpdate(GENESIS_TIME + 1, _prices(options, [INDEX_PRICE] * markets))
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
    book += _option_book(options, send)
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
    opening += _option_opening(options, send, traders)
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


def _option_book(options: BlocksOptions, send: _Sender) -> list[SequencedTransaction]:
    """Each option maker's two-sided book, five levels a side around the mark."""
    orders = []
    gtc = TimeInForce.GOOD_TILL_CANCEL
    depth = (options.option_holders // max(options.option_markets, 1) + 1) * 10 * WAD
    for k in range(options.option_markets):
        maker = _address("option-maker", k)
        mark = option_mark_at(option_params(k), INDEX_PRICE, GENESIS_TIME + 2)
        mark = mark // OPTION_TICK * OPTION_TICK
        for level in range(1, 6):
            bid = max(mark - level * 10 * OPTION_TICK, OPTION_TICK)
            ask = mark + level * 10 * OPTION_TICK
            market = options.markets + k
            orders.append(send(maker, PlaceOrder(0, market, 0, bid, depth, gtc, False, False)))
            orders.append(send(maker, PlaceOrder(0, market, 1, ask, depth, gtc, False, False)))
    return orders


def _option_opening(
    options: BlocksOptions, send: _Sender, traders: list[bytes]
) -> list[SequencedTransaction]:
    """The first `option_holders` traders buy or sell 1-5 units of one option,
    IOC through the maker's levels (a buy states its limit: it reserves the premium)."""
    if not options.option_markets:
        return []
    rng = Random(options.seed + 7)
    ioc = TimeInForce.IMMEDIATE_OR_CANCEL
    orders = []
    for i, trader in enumerate(traders[: options.option_holders]):
        k = i % options.option_markets
        mark = option_mark_at(option_params(k), INDEX_PRICE, GENESIS_TIME + 3)
        mark = mark // OPTION_TICK * OPTION_TICK
        side = rng.randrange(2)
        limit = mark + 60 * OPTION_TICK if side == 0 else max(mark - 60 * OPTION_TICK, OPTION_TICK)
        quantity = rng.randint(1, 5) * WAD
        order = PlaceOrder(0, options.markets + k, side, limit, quantity, ioc, False, False)
        orders.append(send(trader, order))
    return orders


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
        timestamp = state.block.timestamp + 1 + k // options.blocks_per_second
        txs = []
        if k % options.price_every == 0:
            index = [p + rng.randint(-40, 40) * TICK for p in index]
            prices = _prices(options, index)
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
        "option_markets": options.option_markets,
        "option_holders": options.option_holders,
        "blocks_per_second": options.blocks_per_second,
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
