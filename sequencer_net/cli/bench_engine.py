"""Benchmark of the execution engine: one block of signed orders across markets.

`bench_block(orders, markets, seed)` builds a genesis with funded accounts and
`markets` perpetual markets, posts oracle prices in block 1, then times
`execute_block` on block 2 holding `orders` signed random limit/market orders
(signature recovery, nonces, margin checks, one batch auction per market,
premium sampling, liquidation checks and the state-tree update all included).
Building and signing the block is not timed. The lead wires this into
`seqnet bench block`.
"""

from __future__ import annotations

import time
from random import Random
from typing import Any

from consensus.crypto import PrivateKey, keccak256
from sequencer_net.execution.engine import ExecutionBlock, execute_block
from sequencer_net.execution.genesis import (
    GenesisConfig,
    GenesisDeposit,
    GenesisMarket,
    genesis_state,
)
from sequencer_net.execution.receipts import AuctionCleared, FillEvent
from sequencer_net.execution.records import MarketKind, MarketParams, TimeInForce
from sequencer_net.execution.state import subaccount_id
from sequencer_net.execution.transactions import (
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    recover_transaction,
    sign_transaction,
)

WAD = 10**18
CHAIN_ID = 31_337
GENESIS_TIME = 1_700_000_000
ORDERS_PER_ACCOUNT = 5
INDEX_PRICE = 2_000 * WAD
TICK = WAD // 100
LOT = WAD // 1_000
SPREAD_TICKS = 2_000  # limits within +-1% of the index


def _market_params() -> MarketParams:
    return MarketParams(
        kind=MarketKind.PERPETUAL,
        tick_size=TICK,
        lot_size=LOT,
        initial_margin=WAD // 10,
        maintenance_margin=WAD // 20,
        maker_fee=WAD // 10_000,
        taker_fee=5 * WAD // 10_000,
        liquidation_fee=WAD // 100,
        funding_interval=3_600,
        funding_clamp=WAD // 100,
        mark_band=WAD // 20,
        oracle_staleness=60,
        risk_free_rate=0,
        option=None,
    )


def _key(label: str, i: int) -> PrivateKey:
    return PrivateKey(keccak256(f"seqnet-bench/{label}/{i}".encode()))


def bench_block(orders: int = 5_000, markets: int = 10, seed: int = 1) -> dict[str, Any]:
    """Time one block of `orders` signed orders over `markets` markets; return numbers."""
    rng = Random(seed)
    admin = _key("admin", 0)
    oracle = _key("oracle", 0)
    accounts = [_key("trader", i) for i in range(max(1, -(-orders // ORDERS_PER_ACCOUNT)))]
    state = genesis_state(
        GenesisConfig(
            chain_id=CHAIN_ID,
            admin=admin.address,
            bridge=admin.address,
            oracles=(oracle.address,),
            genesis_time=GENESIS_TIME,
            deposits=tuple(
                GenesisDeposit(subaccount_id(k.address, 0), 1_000_000 * WAD) for k in accounts
            ),
            insurance_fund=1_000_000 * WAD,
            markets=tuple(GenesisMarket(m, _market_params()) for m in range(markets)),
        )
    )
    update = OracleUpdate(
        GENESIS_TIME + 1, tuple(OraclePrice(m, INDEX_PRICE, 0) for m in range(markets))
    )
    state = execute_block(
        state,
        ExecutionBlock(1, GENESIS_TIME + 1, (sign_transaction(oracle, CHAIN_ID, 0, update),)),
    ).state
    txs = []
    for i in range(orders):
        signer = accounts[i // ORDERS_PER_ACCOUNT]
        side = rng.randrange(2)
        market = rng.randrange(markets)
        quantity = rng.randint(1, 1_000) * LOT
        if rng.randrange(20) == 0:
            payload = PlaceOrder(
                0, market, side, 0, quantity, TimeInForce.IMMEDIATE_OR_CANCEL, False, False
            )
        else:
            price = INDEX_PRICE + rng.randint(-SPREAD_TICKS, SPREAD_TICKS) * TICK
            payload = PlaceOrder(
                0, market, side, price, quantity, TimeInForce.GOOD_TILL_CANCEL, False, False
            )
        txs.append(sign_transaction(signer, CHAIN_ID, i % ORDERS_PER_ACCOUNT, payload))
    block = ExecutionBlock(2, GENESIS_TIME + 2, tuple(txs))

    started = time.perf_counter()
    for tx in txs:
        recover_transaction(tx)
    recover_seconds = time.perf_counter() - started

    started = time.perf_counter()
    result = execute_block(state, block)
    execute_seconds = time.perf_counter() - started

    accepted = sum(1 for r in result.receipts if r.success)
    fills = sum(1 for e in result.events if isinstance(e, FillEvent))
    auctions = sum(1 for e in result.events if isinstance(e, AuctionCleared))
    return {
        "orders": orders,
        "markets": markets,
        "accounts": len(accounts),
        "seed": seed,
        "accepted": accepted,
        "fills": fills,
        "auctions_cleared": auctions,
        "execute_ms": round(execute_seconds * 1_000, 2),
        "per_order_us": round(execute_seconds * 1e6 / max(orders, 1), 2),
        "signature_recovery_ms": round(recover_seconds * 1_000, 2),
        "resting_orders": sum(len(book) for book in result.state.books.values()),
        "state_root": result.state.state_root.hex(),
    }
