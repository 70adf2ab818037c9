"""Benchmark of the execution engine: one block of DEX orders across markets.

`bench_block(orders, markets, seed)` builds a genesis with funded accounts and
`markets` perpetual markets, posts oracle prices in block 1, then times
`execute_block` on block 2 holding `orders` random limit/market orders.

`bench_dex_block(transactions, markets, seed)` times a block of the DEX mix a
live venue sees: new orders, cancels of resting orders, price reports from
four validators that move the index down 4% (the median moves it, under the
5% per-block cap), and the liquidations that move causes. Blocks 2 and 3
(untimed) lay the resting book, open positions near 10x leverage and move the
index 4% down; block 4, the next 4% down, is timed (the leveraged accounts
fall below maintenance: liquidation orders for the next auction). Block 5,
the same mix and a third 4% step, is timed too (`liquidation_block_*`): the
liquidation orders trade in its auctions, and the accounts the step leaves
bankrupt are closed out (the insurance fund takes them over).

Each order is a real single-signature sequencer transaction (namespace 0,
EIP-712 signed, the required fee offered). The node recovers every signature
once, at intake; the benchmark does the same, untimed by `execute_ms`, and
reports that cost separately as `signature_recovery_ms`. `execute_ms` is the
engine alone, fed the recovered senders as the commit pipeline feeds it:
nonce windows, fees, payload decoding, margin checks, one batch auction per
market, premium sampling, liquidation checks and the state-tree update.
"""

from __future__ import annotations

import time
from random import Random
from typing import Any

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.execution.engine import ExecutionBlock, SequencedTransaction, execute_block
from sequencer_net.execution.fees import required_fee
from sequencer_net.execution.genesis import (
    GenesisConfig,
    GenesisDeposit,
    GenesisMarket,
    genesis_state,
)
from sequencer_net.execution.receipts import (
    AuctionCleared,
    FillEvent,
    Liquidated,
    LiquidationOrderPlaced,
)
from sequencer_net.execution.records import (
    ChainConfig,
    MarketKind,
    MarketParams,
    OracleReporter,
    TimeInForce,
)
from sequencer_net.execution.state import subaccount_id
from sequencer_net.execution.transactions import (
    DEX_NAMESPACE,
    CancelOrder,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    TxPayload,
    decode_payload,
    encode_payload,
)
from sequencer_net.mempool.transaction import (
    decode_transaction,
    encode_transaction,
    recover_sender,
    sign_transaction,
    tx_hash,
)

WAD = 10**18
CHAIN_ID = 31_337
DOMAIN = Domain(CHAIN_ID, bytes(20), bytes(32))
GENESIS_TIME = 1_700_000_000
ORDERS_PER_ACCOUNT = 5
INDEX_PRICE = 2_000 * WAD
TICK = WAD // 100
LOT = WAD // 1_000
SPREAD_TICKS = 2_000  # limits within +-1% of the index


def bench_perp_params() -> MarketParams:
    """The perpetual the engine benchmarks trade (the crash simulation too)."""
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


def signed_dex_transaction(
    key: PrivateKey, config: ChainConfig, nonce: int, payload: TxPayload
) -> bytes:
    """One namespace-0 sequencer transaction, offering exactly the required fee."""
    data = encode_payload(payload)
    fee = required_fee(config, len(data))
    return encode_transaction(sign_transaction(key, DOMAIN, nonce, DEX_NAMESPACE, fee, data))


def intake(encoded: bytes) -> SequencedTransaction:
    """What the node does once per transaction: decode, recover the sender."""
    tx = decode_transaction(encoded)
    sender = recover_sender(tx, DOMAIN)
    return SequencedTransaction(
        tx_hash(encoded), bytes(sender), tx.nonce, tx.namespace, tx.fee, tx.payload
    )


def bench_block(orders: int = 5_000, markets: int = 10, seed: int = 1) -> dict[str, Any]:
    """Time one block of `orders` DEX orders over `markets` markets; return numbers."""
    rng = Random(seed)
    admin = _key("admin", 0)
    oracle = _key("oracle", 0)
    accounts = [_key("trader", i) for i in range(max(1, -(-orders // ORDERS_PER_ACCOUNT)))]
    funded = [admin, oracle, *accounts]
    state = genesis_state(
        GenesisConfig(
            chain_id=CHAIN_ID,
            admin=admin.address,
            bridge=admin.address,
            oracles=(OracleReporter(oracle.address, 1),),
            genesis_time=GENESIS_TIME,
            deposits=tuple(
                GenesisDeposit(subaccount_id(k.address, 0), 1_000_000 * WAD) for k in funded
            ),
            insurance_fund=1_000_000 * WAD,
            markets=tuple(GenesisMarket(m, bench_perp_params()) for m in range(markets)),
        )
    )
    config = state.config
    update = OracleUpdate(
        GENESIS_TIME + 1, tuple(OraclePrice(m, INDEX_PRICE, 0) for m in range(markets))
    )
    prices = intake(signed_dex_transaction(oracle, config, 0, update))
    state = execute_block(state, ExecutionBlock(1, GENESIS_TIME + 1, (prices,))).state
    encoded = []
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
        encoded.append(signed_dex_transaction(signer, config, i % ORDERS_PER_ACCOUNT, payload))

    started = time.perf_counter()
    txs = tuple(intake(tx) for tx in encoded)
    recover_seconds = time.perf_counter() - started

    block = ExecutionBlock(2, GENESIS_TIME + 2, txs)
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
        "fees_paid": sum(r.fee for r in result.receipts),
        "resting_orders": sum(len(book) for book in result.state.books.values()),
        "state_root": result.state.state_root.hex(),
    }


REPORTERS = 4
"""Validators reporting prices in the DEX mix (power 1 each)."""
MIX_CANCEL_SHARE = 0.15
MIX_LEVERED_SHARE = 0.10
"""Of the DEX mix's accounts: the share holding a position near 10x leverage."""
MIX_PRICE_DROP_BP = 400
"""Per block, twice: an account at 10x loses 8% of its notional, below maintenance."""


def bench_dex_block(transactions: int = 5_000, markets: int = 10, seed: int = 1) -> dict[str, Any]:
    """Time one block of the DEX mix (see the module docstring); return numbers."""
    rng = Random(seed)
    admin = _key("admin", 0)
    reporters = [_key("validator", i) for i in range(REPORTERS)]
    accounts = [_key("trader", i) for i in range(max(2, -(-transactions // ORDERS_PER_ACCOUNT)))]
    makers = [_key("maker", i) for i in range(markets)]
    levered = accounts[: max(1, int(len(accounts) * MIX_LEVERED_SHARE))]
    deposits = [
        GenesisDeposit(subaccount_id(k.address, 0), 1_000_000 * WAD)
        for k in [admin, *reporters, *makers, *accounts[len(levered) :]]
    ] + [GenesisDeposit(subaccount_id(k.address, 0), 2_100 * WAD) for k in levered]
    state = genesis_state(
        GenesisConfig(
            chain_id=CHAIN_ID,
            admin=admin.address,
            bridge=admin.address,
            oracles=tuple(OracleReporter(k.address, 1) for k in reporters),
            genesis_time=GENESIS_TIME,
            deposits=tuple(deposits),
            insurance_fund=10_000_000 * WAD,
            markets=tuple(GenesisMarket(m, bench_perp_params()) for m in range(markets)),
        )
    )
    config = state.config
    nonces: dict[bytes, int] = {}

    def send(key: PrivateKey, payload: TxPayload) -> bytes:
        nonce = nonces.get(key.address, 0)
        nonces[key.address] = nonce + 1
        return signed_dex_transaction(key, config, nonce, payload)

    def reports(at: int, price: int) -> list[bytes]:
        update = OracleUpdate(at, tuple(OraclePrice(m, price, 0) for m in range(markets)))
        return [send(k, update) for k in reporters]

    def run(height: int, encoded: list[bytes]) -> Any:
        block = ExecutionBlock(height, GENESIS_TIME + height, tuple(intake(tx) for tx in encoded))
        return execute_block(state, block)

    state = run(1, reports(GENESIS_TIME + 1, INDEX_PRICE)).state
    # Block 2: makers rest a deep book; the leveraged accounts buy about 10x
    # (2,100 of collateral, 10 units at 2,000: 20,000 of notional) from it.
    setup: list[bytes] = []
    gtc, ioc = TimeInForce.GOOD_TILL_CANCEL, TimeInForce.IMMEDIATE_OR_CANCEL
    for m, maker in enumerate(makers):
        for level in range(1, 11):
            setup.append(
                send(
                    maker,
                    PlaceOrder(0, m, 1, INDEX_PRICE + level * TICK, 1_000 * WAD, gtc, False, False),
                )
            )
            setup.append(
                send(
                    maker,
                    PlaceOrder(
                        0, m, 0, INDEX_PRICE - 50 * level * TICK, 1_000 * WAD, gtc, False, False
                    ),
                )
            )
    for i, key in enumerate(levered):
        setup.append(send(key, PlaceOrder(0, i % markets, 0, 0, 10 * WAD, ioc, False, False)))
    resting: list[tuple[PrivateKey, int, bytes]] = []
    for i in range(len(levered), len(accounts)):
        key = accounts[i]
        market = rng.randrange(markets)
        price = INDEX_PRICE - rng.randint(1, SPREAD_TICKS) * TICK
        encoded = send(
            key, PlaceOrder(0, market, 0, price, rng.randint(1, 100) * LOT, gtc, False, False)
        )
        setup.append(encoded)
        resting.append((key, market, tx_hash(encoded)))
    state = run(2, setup).state
    first_drop = INDEX_PRICE * (10_000 - MIX_PRICE_DROP_BP) // 10_000 // TICK * TICK
    state = run(3, reports(GENESIS_TIME + 3, first_drop)).state

    def mix(height: int, index: int) -> list[bytes]:
        """Reports moving the index to `index`, cancels of resting orders, new orders."""
        encoded_txs = reports(GENESIS_TIME + height, index)
        cancels = min(int(transactions * MIX_CANCEL_SHARE), len(resting))
        for position in sorted(rng.sample(range(len(resting)), cancels), reverse=True):
            key, market, order_id = resting.pop(position)
            encoded_txs.append(send(key, CancelOrder(0, market, order_id)))
        while len(encoded_txs) < transactions:
            key = accounts[len(levered) + rng.randrange(len(accounts) - len(levered))]
            side = rng.randrange(2)
            price = index + rng.randint(-SPREAD_TICKS, SPREAD_TICKS) * TICK
            payload = PlaceOrder(
                0,
                rng.randrange(markets),
                side,
                price,
                rng.randint(1, 1_000) * LOT,
                gtc,
                False,
                False,
            )
            encoded_txs.append(send(key, payload))
        return encoded_txs

    # Block 4, timed: reports 4% lower again, cancels, new orders.
    dropped = first_drop * (10_000 - MIX_PRICE_DROP_BP) // 10_000 // TICK * TICK
    encoded_txs = mix(4, dropped)
    started = time.perf_counter()
    txs = tuple(intake(tx) for tx in encoded_txs)
    recover_seconds = time.perf_counter() - started
    block = ExecutionBlock(4, GENESIS_TIME + 4, txs)
    started = time.perf_counter()
    result = execute_block(state, block)
    execute_seconds = time.perf_counter() - started
    # Block 5, timed: the liquidation orders trade; a third step down bankrupts some.
    third_drop = dropped * (10_000 - MIX_PRICE_DROP_BP) // 10_000 // TICK * TICK
    next_block = ExecutionBlock(5, GENESIS_TIME + 5, tuple(intake(tx) for tx in mix(5, third_drop)))
    started = time.perf_counter()
    liquidating = execute_block(result.state, next_block)
    liquidating_seconds = time.perf_counter() - started
    liquidation_orders = {
        e.order_id for e in result.events if isinstance(e, LiquidationOrderPlaced)
    }
    receipts = result.receipts
    kinds = [type(decode_payload(tx.payload)).__name__ for tx in txs]
    ok = [r.success for r in receipts]
    return {
        "mix": "dex",
        "transactions": len(txs),
        "markets": markets,
        "seed": seed,
        "orders_accepted": sum(
            1 for k, s in zip(kinds, ok, strict=True) if s and k == "PlaceOrder"
        ),
        "cancels_accepted": sum(
            1 for k, s in zip(kinds, ok, strict=True) if s and k == "CancelOrder"
        ),
        "reports_accepted": sum(
            1 for k, s in zip(kinds, ok, strict=True) if s and k == "OracleUpdate"
        ),
        # Accounts the block liquidated: a liquidation order for the next auction,
        # or closed out by the fund or deleveraging.
        "liquidations": len(
            {
                e.subaccount
                for e in result.events
                if isinstance(e, (Liquidated, LiquidationOrderPlaced))
            }
        ),
        "index_after": str(result.state.market_states[0].oracle_price / WAD),
        "fills": sum(1 for e in result.events if isinstance(e, FillEvent)),
        "execute_ms": round(execute_seconds * 1_000, 2),
        "tx_per_s_engine": round(len(txs) / execute_seconds),
        "signature_recovery_ms": round(recover_seconds * 1_000, 2),
        "state_root": result.state.state_root.hex(),
        "liquidation_block_execute_ms": round(liquidating_seconds * 1_000, 2),
        "liquidation_block_tx_per_s_engine": round(
            len(next_block.transactions) / liquidating_seconds
        ),
        "liquidation_block_fills": sum(1 for e in liquidating.events if isinstance(e, FillEvent)),
        # Fills of the liquidation orders block 4 placed.
        "liquidation_block_liquidation_fills": sum(
            1
            for e in liquidating.events
            if isinstance(e, FillEvent) and e.order_id in liquidation_orders
        ),
        "liquidation_block_close_outs": sum(
            1 for e in liquidating.events if isinstance(e, Liquidated)
        ),
        "liquidation_block_index_after": str(liquidating.state.market_states[0].oracle_price / WAD),
    }
