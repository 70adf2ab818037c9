"""Benchmark of the execution engine: one block of DEX orders across markets.

`bench_block(orders, markets, seed)` builds a genesis with funded accounts and
`markets` perpetual markets, posts oracle prices in block 1, then times
`execute_block` on block 2 holding `orders` random limit/market orders.

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
from sequencer_net.execution.receipts import AuctionCleared, FillEvent
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
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    TxPayload,
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
            markets=tuple(GenesisMarket(m, _market_params()) for m in range(markets)),
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
