"""The trader traffic stream (sequencer_net.testnet.market): deterministic per seed,
pure with respect to sending, and a market the engine actually runs.

The engine tests sign every item as the load generator does, hand the block to
`execute_block` exactly as the commit pipeline does (sender recovered from the
signature, hash of the signed bytes) and count outcomes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.crypto import PrivateKey, keccak256
from sequencer_net.client import FeeSchedule
from sequencer_net.execution.engine import ExecutionBlock, SequencedTransaction, execute_block
from sequencer_net.execution.genesis import genesis_state
from sequencer_net.execution.receipts import AuctionCleared, PhaseSkipped
from sequencer_net.execution.records import MarketKind
from sequencer_net.execution.state import ExecutionState
from sequencer_net.execution.transactions import (
    DEX_NAMESPACE,
    CancelOrder,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    decode_payload,
    encode_payload,
)
from sequencer_net.home.genesis import Genesis, make_local_genesis
from sequencer_net.home.local_markets import genesis_markets, local_markets
from sequencer_net.mempool.transaction import decode_transaction, recover_sender, tx_hash
from sequencer_net.pricefeed.sources import local_simulated_source
from sequencer_net.testnet.accounts import load_account_addresses, market_operator_key
from sequencer_net.testnet.load import transaction_signer
from sequencer_net.testnet.market import (
    MIXED_ROLLUP_SHARE,
    MarketTraffic,
    TrafficConfig,
    TrafficItem,
    TrafficSigner,
    market_traffic,
    presign,
    traffic_keys,
)

GENESIS_TIME = 1_700_000_000
START = GENESIS_TIME + 30
ACCOUNTS = 40
FAILURES_THE_STREAM_MAY_CAUSE = {"UnknownOrder", "InvalidOrder"}
"""A blind stream cancels quotes that filled meanwhile (UnknownOrder) and closes
positions a liquidation already closed (InvalidOrder: reduce-only with nothing
to reduce). Anything else failing means the stream sends what the engine refuses."""


VALIDATOR = PrivateKey(keccak256(b"market-traffic validator"))


@cache
def local_genesis(accounts: int = ACCOUNTS, seed: int = 0) -> Genesis:
    """What `testnet up` writes: the markets, funded traders, admin and operator."""
    return make_local_genesis(
        [VALIDATOR.secret],
        chain_id=31337,
        base_p2p_port=30_000,
        base_api_port=30_100,
        genesis_time_ms=GENESIS_TIME * 1000,
        funded_accounts=load_account_addresses(seed, accounts),
        markets=genesis_markets(local_markets(GENESIS_TIME)),
        market_operator=market_operator_key(seed).address,
        fund_admin=True,
    )


def config(**changes: object) -> TrafficConfig:
    base = TrafficConfig(
        seed=0, accounts=ACCOUNTS, mix="dex", rate=200.0, start_time_s=START,
        genesis_time_s=GENESIS_TIME,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


def fake_ids(item: TrafficItem) -> bytes:
    """Order ids without signing: enough where only the stream itself is checked."""
    return keccak256(repr(item).encode())


@dataclass
class Run:
    """A stream executed block by block; outcomes counted by action kind."""

    state: ExecutionState
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    blocks: int = 0
    market_blocks_cleared: int = 0


def kind_of(item: TrafficItem) -> str:
    if item.namespace != DEX_NAMESPACE:
        return "rollup"
    return type(decode_payload(item.payload)).__name__


def execute_stream(cfg: TrafficConfig, count: int, per_block: int = 50) -> Run:
    """Sign `count` items, execute them `per_block` at a time at their planned times."""
    genesis = local_genesis(cfg.accounts, cfg.seed)
    domain = genesis.domain()
    traffic, signer = market_traffic(
        cfg, transaction_signer(domain, fees=FeeSchedule.of_genesis(genesis))
    )
    run = Run(genesis_state(genesis.execution))
    items = list(itertools.islice(traffic, count))
    markets = len(run.state.market_params)
    prices = local_simulated_source(cfg.seed)
    fees = FeeSchedule.of_genesis(genesis)
    reported_at = 0
    for first in range(0, count, per_block):
        chunk = items[first : first + per_block]
        # Sent on plan: the block's time is the planned time of its last item.
        timestamp = cfg.start_time_s + int((first + len(chunk)) / cfg.rate)
        # The validator reports the seed's walk first, as `testnet up`'s do.
        sequenced = []
        if timestamp - 1 > reported_at:
            reported_at = timestamp - 1
            quotes = tuple(
                OraclePrice(m.market_id, prices.price(m.market_id, reported_at), m.volatility)
                for m in cfg.markets()
            )
            payload = encode_payload(OracleUpdate(reported_at, quotes))
            sequenced.append(
                SequencedTransaction(
                    keccak256(payload),
                    VALIDATOR.address,
                    run.blocks,
                    DEX_NAMESPACE,
                    fees.fee_for(len(payload)),
                    payload,
                )
            )
        reports = len(sequenced)
        for item in chunk:
            encoded = signer.encoded(item)
            tx = decode_transaction(encoded)
            sender = recover_sender(tx, domain)
            sequenced.append(
                SequencedTransaction(
                    tx_hash(encoded), bytes(sender), tx.nonce, tx.namespace, tx.fee, tx.payload
                )
            )
        result = execute_block(
            run.state, ExecutionBlock(run.state.height + 1, timestamp, tuple(sequenced))
        )
        run.state = result.state
        run.blocks += 1
        assert all(receipt.success for receipt in result.receipts[:reports])
        for item, receipt in zip(chunk, result.receipts[reports:], strict=True):
            run.outcomes[(kind_of(item), receipt.error or "ok")] += 1
        run.events.update(type(event).__name__ for event in result.events)
        run.market_blocks_cleared += sum(isinstance(e, AuctionCleared) for e in result.events)
        assert not any(isinstance(e, PhaseSkipped) for e in result.events), result.events
    run.market_blocks_cleared = run.market_blocks_cleared * 100 // (run.blocks * markets)
    return run


# --- determinism and shape -------------------------------------------------------------


def test_the_same_seed_gives_the_same_stream_and_another_seed_another() -> None:
    first = list(itertools.islice(MarketTraffic(config(), fake_ids), 3000))
    again = list(itertools.islice(MarketTraffic(config(), fake_ids), 3000))
    other = list(itertools.islice(MarketTraffic(config(seed=1), fake_ids), 3000))
    assert first == again
    assert first != other


def test_signed_streams_are_identical_bytes_for_the_same_seed() -> None:
    domain = local_genesis().domain()
    one, signer_one = market_traffic(config(), transaction_signer(domain))
    two, signer_two = market_traffic(config(), transaction_signer(domain))
    assert [b for _, b in presign(one, signer_one, 400)] == [
        b for _, b in presign(two, signer_two, 400)
    ]


def test_presign_takes_exactly_count_items_and_order_ids_are_the_sent_hashes() -> None:
    domain = local_genesis().domain()
    traffic, signer = market_traffic(config(), transaction_signer(domain))
    signed = presign(traffic, signer, 500)
    assert len(signed) == 500
    # The stream was not consumed past the 500th item.
    reference = list(itertools.islice(MarketTraffic(config(), fake_ids), 501))
    assert [item.nonce for item, _ in signed] == [item.nonce for item in reference[:500]]
    assert next(traffic).nonce == reference[500].nonce
    # Every cancel names the hash of bytes that were (or will be) sent.
    sent_hashes = {tx_hash(encoded) for _, encoded in signed}
    for item, _ in signed:
        payload = decode_payload(item.payload) if item.namespace == DEX_NAMESPACE else None
        if isinstance(payload, CancelOrder):
            assert payload.order_id in sent_hashes


def test_the_stream_sends_no_prices_and_quotes_around_the_walk_the_validators_report() -> None:
    cfg = config(rate=50.0)
    traffic = MarketTraffic(cfg, fake_ids)
    items = list(itertools.islice(traffic, 50 * 20))
    assert not any(
        isinstance(decode_payload(item.payload), OracleUpdate)
        for item in items
        if item.namespace == DEX_NAMESPACE
    )
    # After 20 planned seconds the traders' perp references are the walk's
    # price at the last step, the price a validator with this seed reports.
    source = local_simulated_source(cfg.seed)
    at = START + 19 - cfg.model.price_lag_s
    assert traffic._references[1] == source.price(1, at)
    assert traffic._references[2] == source.price(2, at)
    assert source.price(1, at) != source.price(1, at - 5)  # the walk moves


def test_each_accounts_nonces_count_up_from_its_first_nonce() -> None:
    cfg = config(first_nonces=tuple(range(ACCOUNTS)), operator_nonce=7, mix="mixed")
    traffic = MarketTraffic(cfg, fake_ids)
    expected = [*range(ACCOUNTS), 7]
    for item in itertools.islice(traffic, 5000):
        assert item.nonce == expected[item.account]
        expected[item.account] += 1
    assert traffic.next_nonces() == expected[:ACCOUNTS]
    assert traffic.next_operator_nonce() == expected[ACCOUNTS]


def test_mixes() -> None:
    rollup = list(itertools.islice(MarketTraffic(config(mix="rollup", namespace=9)), 200))
    assert {item.namespace for item in rollup} == {9}
    assert [item.account for item in rollup[:ACCOUNTS]] == list(range(ACCOUNTS))  # round robin
    assert all(100 <= len(item.payload) <= 300 for item in rollup)
    dex = list(itertools.islice(MarketTraffic(config(mix="dex"), fake_ids), 2000))
    assert {item.namespace for item in dex} == {DEX_NAMESPACE}
    mixed = list(itertools.islice(MarketTraffic(config(mix="mixed"), fake_ids), 5000))
    share = sum(item.namespace != DEX_NAMESPACE for item in mixed) / len(mixed)
    # Follow-ups (the new quote of an amend), oracle prices and scheduled
    # cancels and closes are never replaced by a blob: about one in five.
    assert 0.6 * MIXED_ROLLUP_SHARE < share < MIXED_ROLLUP_SHARE
    assert 0.15 < share < 0.25


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**64 - 1),
    accounts=st.integers(1, 60),
    rate=st.sampled_from([1.0, 7.5, 50.0, 400.0, 3000.0]),
    mix=st.sampled_from(["dex", "mixed"]),
)
def test_every_order_is_on_its_markets_grid(
    seed: int, accounts: int, rate: float, mix: str
) -> None:
    """Whatever the seed, rate or account count: every payload decodes, prices sit
    on the tick grid, sizes on the lot, option buys carry a limit, and every
    account is one the genesis funds (a trader or the operator)."""
    cfg = config(seed=seed, accounts=accounts, rate=rate, mix=mix)
    markets = {m.market_id: m.params for m in cfg.markets()}
    for item in itertools.islice(MarketTraffic(cfg, fake_ids), 600):
        assert 0 <= item.account <= accounts
        if item.namespace != DEX_NAMESPACE:
            continue
        payload = decode_payload(item.payload)
        if isinstance(payload, PlaceOrder):
            params = markets[payload.market_id]
            assert payload.quantity > 0 and payload.quantity % params.lot_size == 0
            assert payload.limit_price % params.tick_size == 0
            if params.kind == MarketKind.OPTION and payload.side == 0:
                assert payload.limit_price > 0
            assert item.account < accounts  # traders trade, the operator does not
        elif isinstance(payload, OracleUpdate):
            assert item.account == accounts
            assert all(p.price > 0 for p in payload.prices)


def test_traffic_keys_are_the_load_accounts_then_the_operator() -> None:
    keys = traffic_keys(3, 5)
    assert [k.address for k in keys[:5]] == load_account_addresses(3, 5)
    assert keys[5].address == market_operator_key(3).address


def test_a_signer_signs_each_item_once() -> None:
    calls: list[int] = []

    def sign(key: object, nonce: int, namespace: int, payload: bytes) -> bytes:
        calls.append(nonce)
        return payload + nonce.to_bytes(8, "big")

    signer = TrafficSigner(traffic_keys(0, 2), sign)
    item = TrafficItem(0, 5, 0, b"x")
    order_id = signer.order_id(item)
    assert signer.encoded(item) == b"x" + (5).to_bytes(8, "big")
    assert order_id == tx_hash(b"x" + (5).to_bytes(8, "big"))
    assert calls == [5]
    signer.encoded(item)  # not kept any more: signed again
    assert calls == [5, 5]


# --- the engine runs it ---------------------------------------------------------------


def test_the_engine_accepts_the_stream_and_the_market_clears() -> None:
    run = execute_stream(config(), 1500)  # 7.5 s of a 200 tx/s load, 30 blocks
    total = sum(run.outcomes.values())
    failed = {key: n for key, n in run.outcomes.items() if key[1] != "ok"}
    assert total == 1500
    assert sum(failed.values()) <= 0.12 * total, failed
    assert {error for _, error in failed} <= FAILURES_THE_STREAM_MAY_CAUSE, failed
    assert run.events["OraclePriceSet"] >= 7  # the validator's report set a price each second
    for kind in ("PlaceOrder", "CancelOrder", "Deposit", "Withdraw", "Transfer"):
        assert run.outcomes[(kind, "ok")] > 0, kind
    assert run.events["FillEvent"] > 300
    assert run.market_blocks_cleared >= 80  # % of (block, market) pairs with a clearing


def test_over_minutes_funding_accrues_and_leveraged_traders_are_liquidated() -> None:
    # 80 s at 40 tx/s with the default model: the walk has room to move.
    run = execute_stream(config(rate=40.0), 3200, per_block=20)
    assert run.events["FundingApplied"] >= 2  # two perpetuals, 60 s intervals
    # Liquidated through the auction (a liquidation order filled) or closed out.
    assert run.events["LiquidationOrderPlaced"] >= 1
    assert run.events["LiquidationFeePaid"] + run.events["Liquidated"] >= 1
    perp = run.state.market_states[1]
    assert perp.long_index != 0 and perp.open_lots > 0
    failed = {key: n for key, n in run.outcomes.items() if key[1] != "ok"}
    assert {error for _, error in failed} <= FAILURES_THE_STREAM_MAY_CAUSE, failed
