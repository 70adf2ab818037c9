"""The state before block 1: chain config, fees, initial deposits, insurance fund, markets."""

from __future__ import annotations

from dataclasses import replace

import msgspec

from .encoding import encode
from .fees import DEFAULT_FEE_BASE, DEFAULT_FEE_PER_BYTE, check_fee_schedule
from .limits import MAX_MARKET_ID
from .markets import check_market_params, new_market_state
from .records import BlockInfo, ChainConfig, Ledger, MarketParams, OracleReporter, Subaccount
from .state import (
    INSURANCE_FUND,
    KEY_CONFIG,
    ExecutionState,
    StateWriter,
)
from .state_tree import EMPTY_ROOT, MemoryNodeStore, NodeStore, StateTree

MAX_ORACLE_POWER = 2**64
"""An oracle reporter's power is a validator's voting power: a 64-bit weight."""


class GenesisDeposit(msgspec.Struct, frozen=True, array_like=True):
    subaccount: bytes  # 21 bytes: address || subaccount number
    amount: int


class GenesisMarket(msgspec.Struct, frozen=True, array_like=True):
    market_id: int
    params: MarketParams


class GenesisConfig(msgspec.Struct, frozen=True, array_like=True):
    """Everything fixed at height 0.

    `admin` signs governance transactions (listing, parameters, pausing);
    `bridge` signs deposits (until the L1 bridge lands, usually the admin);
    `oracles` report prices, each with a power (a network's validators with
    their voting power); the oracle price is their weighted median
    (oracle.py). `insurance_fund` is the fund's opening collateral.
    `deposits` fund subaccounts: every sender pays its transactions' fees from
    its subaccount 0, so whoever sends from height 1 on (admin, oracles, load
    accounts) needs a deposit there. `fee_base` and `fee_per_byte` set the fee
    every transaction must offer (fees.required_fee). `collateral_token` is
    the L1 ERC-20 the quote collateral is (b"": none; docs/execution.md,
    "L1 bridge"): L1 deposits of it credit collateral, collateral withdrawals
    are paid in it. It is a real token's address, so never 20 zero bytes (ETH).
    """

    chain_id: int
    admin: bytes
    bridge: bytes
    oracles: tuple[OracleReporter, ...]
    genesis_time: int
    deposits: tuple[GenesisDeposit, ...] = ()
    insurance_fund: int = 0
    markets: tuple[GenesisMarket, ...] = ()
    fee_base: int = DEFAULT_FEE_BASE
    fee_per_byte: int = DEFAULT_FEE_PER_BYTE
    collateral_token: bytes = b""


def genesis_state(config: GenesisConfig, store: NodeStore | None = None) -> ExecutionState:
    """Build and commit the height-0 state. Raises ValueError for a bad config."""
    if len(config.admin) != 20 or len(config.bridge) != 20:
        raise ValueError("admin and bridge are 20-byte addresses")
    if any(len(oracle.address) != 20 for oracle in config.oracles):
        raise ValueError("oracles are 20-byte addresses")
    if any(not 0 < oracle.power <= MAX_ORACLE_POWER for oracle in config.oracles):
        raise ValueError(f"an oracle's power must be in [1, {MAX_ORACLE_POWER}]")
    if len({oracle.address for oracle in config.oracles}) != len(config.oracles):
        raise ValueError("an oracle address appears twice")
    if config.insurance_fund < 0 or any(d.amount <= 0 for d in config.deposits):
        raise ValueError("genesis amounts must be positive")
    if any(len(d.subaccount) != 21 or d.subaccount == INSURANCE_FUND for d in config.deposits):
        raise ValueError("a genesis deposit names a 21-byte subaccount, not the insurance fund")
    check_fee_schedule(config.fee_base, config.fee_per_byte)
    if config.collateral_token and len(config.collateral_token) != 20:
        raise ValueError("collateral_token is a 20-byte address (or empty: none)")
    if config.collateral_token == bytes(20):
        raise ValueError("collateral_token cannot be the zero address (that is ETH)")
    store = store if store is not None else MemoryNodeStore()
    chain = ChainConfig(
        chain_id=config.chain_id,
        admin=config.admin,
        bridge=config.bridge,
        oracles=tuple(sorted(config.oracles, key=lambda oracle: oracle.address)),
        fee_base=config.fee_base,
        fee_per_byte=config.fee_per_byte,
        collateral_token=config.collateral_token,
    )
    empty = ExecutionState(
        config=chain,
        block=BlockInfo(height=0, timestamp=config.genesis_time),
        ledger=Ledger(fee_pool=0, net_deposits=0),
        nonces={},
        subaccounts={},
        positions={},
        market_params={},
        market_states={},
        books={},
        open_subaccounts=frozenset(),
        store=store,
        state_root=EMPTY_ROOT,
    )
    # The config key is written once, here: no transaction changes it.
    empty = replace(empty, state_root=StateTree(store).apply({KEY_CONFIG: encode(chain)}))
    writer = StateWriter(empty, height=0, timestamp=config.genesis_time)
    total = config.insurance_fund
    writer.subaccounts.put(INSURANCE_FUND, Subaccount(config.insurance_fund, (), 0))
    for deposit in config.deposits:
        sub = writer.subaccount(deposit.subaccount)
        writer.subaccounts.put(
            deposit.subaccount,
            Subaccount(sub.collateral + deposit.amount, sub.markets, sub.open_orders),
        )
        total += deposit.amount
    writer.ledger = Ledger(fee_pool=0, net_deposits=total)
    if len({market.market_id for market in config.markets}) != len(config.markets):
        raise ValueError("two genesis markets share a market id")
    for market in config.markets:
        if not 0 <= market.market_id <= MAX_MARKET_ID:
            raise ValueError(f"market id {market.market_id} does not fit 4 bytes")
        check_market_params(market.params, config.genesis_time)
        writer.market_params.put(market.market_id, market.params)
        writer.market_states.put(market.market_id, new_market_state(config.genesis_time))
    return writer.commit()
