"""The values stored in the state tree, one frozen msgspec Struct per kind.

Units: every amount, price, size, fee rate and margin fraction is a wad integer
(10**18 = 1.0, see fixed_point.SCALE); times are whole seconds; ids are ints.
Keys for these records are built in `state.py` ("Key layout").

Every record is `gc=False`: the garbage collector never tracks one. A node
holds hundreds of thousands of them (a subaccount, position and order per
trader), and a record that held a tuple or an enum was tracked, so were the
dicts holding them, and every young and middle collection walked them again.
It is safe because a record cannot be part of a reference cycle: it is frozen
and its fields are only ints, bytes, bools, enum members, tuples of those and
other records (tests/execution/test_records_gc.py keeps it so); reference
counting frees it as before.
"""

from __future__ import annotations

import enum
from typing import Annotated, NewType

import msgspec

from .limits import MAX_MARKET_ID, MAX_SUBACCOUNT_NUMBER

Address = NewType("Address", bytes)
"""20-byte Ethereum-style address of a signing key."""

SubaccountId = NewType("SubaccountId", bytes)
"""21 bytes: owner address || subaccount number (one byte)."""

MarketIdInt = Annotated[int, msgspec.Meta(ge=0, le=MAX_MARKET_ID)]
"""A market id as decoded: it must fit the 4-byte state key."""

SubaccountNumber = Annotated[int, msgspec.Meta(ge=0, le=MAX_SUBACCOUNT_NUMBER)]
"""A subaccount number as decoded: one byte of the subaccount id."""

DEFAULT_MIN_PREMIUM_NOTIONAL = 1_000 * 10**18
"""1,000 units of quote: a trade smaller than this does not become the last trade
of the mark price (docs/execution.md, "Mark price")."""

DEFAULT_IMPACT_NOTIONAL = 10_000 * 10**18
"""10,000 units of quote: the impact bid and ask are the average prices of
selling and buying this much against the resting book (impact.py)."""

DEFAULT_MAX_ORACLE_MOVE = 5 * 10**16
"""5%: the most the oracle price may move in one block (oracle.py)."""

DEFAULT_SETTLEMENT_WINDOW = 1_800
"""30 minutes: an option settles at the time-weighted average of its oracle
spot over the last 30 minutes before expiry (Derive/Lyra v2 uses the same)."""

DEFAULT_MAX_LIQUIDATION_NOTIONAL = 1_000_000 * 10**18
"""1,000,000 units of quote: the notional (at the valuation price) of the
liquidation orders one market takes per block (docs/execution.md, "Liquidation")."""

DEFAULT_MAX_LIQUIDATION_MISSES = 3
"""An account's liquidation orders may find no fill in three auctions in a row
before the insurance fund takes over what still needs closing
(docs/execution.md, "Liquidation")."""

MarketId = NewType("MarketId", int)
OrderId = NewType("OrderId", bytes)
"""32 bytes: the hash of the transaction that placed the order."""


class MarketKind(enum.IntEnum):
    PERPETUAL = 0
    OPTION = 1


class OptionKind(enum.IntEnum):
    CALL = 0
    PUT = 1


class TimeInForce(enum.IntEnum):
    GOOD_TILL_CANCEL = 0
    IMMEDIATE_OR_CANCEL = 1


class OracleReporter(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A key whose price reports count toward the oracle median, with its weight.
    A network's reporters are its validators, weighted by voting power."""

    address: bytes
    power: int


class PriceReport(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One reporter's latest price for one market (oracle.py)."""

    published_at: int
    price: int
    volatility: int


class ChainConfig(msgspec.Struct, frozen=True, gc=False, array_like=True, omit_defaults=True):
    """Fixed at genesis: who governs, who reports prices and L1 deposits (and
    with what weight), who may mint test collateral (`bridge`, the local
    faucet), the sequencing fee every transaction pays: fee_base +
    fee_per_byte * payload length, in wad of the quote asset (docs/execution.md,
    "Fees"), and `collateral_token`, the L1 ERC-20 that is the quote collateral
    (20 bytes; b"": none, so no L1 deposit mints collateral and a collateral
    withdrawal writes no L1 record: docs/execution.md, "L1 bridge").
    `oracles` is sorted by address."""

    chain_id: int
    admin: bytes
    bridge: bytes
    oracles: tuple[OracleReporter, ...]
    fee_base: int
    fee_per_byte: int
    collateral_token: bytes = b""


class BridgeState(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """The L1 bridge's counters (l1_bridge.py). Every L1 deposit nonce below
    `resolved_below` was credited (or refused) by a reporter quorum;
    `next_withdrawal` is the id the next L1 withdrawal record gets."""

    resolved_below: int
    next_withdrawal: int


class DepositVote(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One content reported for an L1 deposit nonce, and who reported it
    (addresses sorted ascending)."""

    subaccount: bytes
    token: bytes
    amount: int
    reporters: tuple[bytes, ...]


class DepositTally(msgspec.Struct, frozen=True, gc=False, array_like=True, omit_defaults=True):
    """The reports of one L1 deposit nonce: each distinct content with its
    reporters, in the order first reported. `resolved` (with no votes) marks a
    nonce above `BridgeState.resolved_below` that a quorum already settled."""

    votes: tuple[DepositVote, ...]
    resolved: bool = False


class BlockInfo(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """The last executed block."""

    height: int
    timestamp: int


class Ledger(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Global totals. `net_deposits` is what the conservation invariant equals."""

    fee_pool: int
    net_deposits: int


class NonceWindow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Which of a sender's nonces are used (docs/execution.md, "Nonces").

    `highest` is the highest nonce used; bit i of `used` (i < NONCE_WINDOW) is
    set when nonce highest - i is used (bit 0 always is). Nonces at or below
    highest - NONCE_WINDOW count as used."""

    highest: int
    used: int


class Subaccount(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """Quote collateral (may be negative: a long perp is bought on credit, dYdX v4
    style), the sorted ids of markets where a `Position` record exists, and the
    number of the subaccount's open orders (resting or pending)."""

    collateral: int
    markets: tuple[int, ...]
    open_orders: int


class Account(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """The state entry of an owner's subaccount 0: its `Subaccount` fields
    followed by the owner's `NonceWindow` (highest -1, used 0: no nonce used
    yet). One entry, so the fee debit and the nonce a sender's transactions
    use in a block write one key (docs/execution.md, "State model")."""

    collateral: int
    markets: tuple[int, ...]
    open_orders: int
    nonce_highest: int
    nonce_used: int


class Position(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A subaccount's exposure in one market.

    `size` is signed (long > 0), a multiple of the market's lot size.
    `index_snapshot` is the value of the cumulative charge index of the side the
    position is on (long or short) when it was last settled; the unsettled charge
    is |size| / lot_size * (index_now - index_snapshot) (docs/execution.md,
    "Funding"). `open_buy` / `open_sell` are the unfilled quantities of the
    subaccount's orders in this market (resting or pending in this block).
    `open_buy_premium` (options only) is the premium those buy orders reserve:
    sum of unfilled quantity * limit price, exact (docs/execution.md, "Margin").
    """

    size: int
    index_snapshot: int
    open_buy: int
    open_sell: int
    open_buy_premium: int = 0
    entry_notional: int = 0
    """Signed quote value at which the current size was opened: size times the
    average entry price (long > 0), rounded toward -inf; 0 when flat. Only used
    to rank deleveraging counterparties by profit (deleveraging.py)."""


class OptionTerms(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """`underlying` names the asset the option is on: options with the same
    nonzero id are margined together, as one portfolio (option_margin.py);
    0 means none declared, and the option is margined on its own. Any id
    governance picks; the testnet uses the market id of the asset's perpetual."""

    option_kind: OptionKind
    strike: int
    expiry: int  # unix seconds
    underlying: int = 0


class MarketParams(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """What governance sets when listing a market (and may later update).

    Fractions are wad (5% = 5 * 10**16). `tick_size * lot_size` must be a
    multiple of 10**18, so every fill's notional is an exact wad integer.
    `lot_size` and `kind` and `option` never change after listing (the charge
    index is per lot).
    """

    kind: MarketKind
    tick_size: int
    lot_size: int
    initial_margin: int
    maintenance_margin: int
    maker_fee: int
    taker_fee: int
    liquidation_fee: int
    funding_interval: int  # seconds; 0 for options
    funding_clamp: int  # max |premium| per interval as a fraction of the index (funding.py)
    mark_band: int  # the mark stays within index * (1 +- mark_band) (mark.py)
    oracle_staleness: int  # seconds an oracle price stays usable
    risk_free_rate: int  # options: the Black-Scholes rate r (wad, per year)
    option: OptionTerms | None
    min_premium_notional: int = DEFAULT_MIN_PREMIUM_NOTIONAL
    """Perpetuals: an auction whose notional (volume * price) is below this does
    not become the mark's last trade (docs/execution.md, "Mark price")."""
    impact_notional: int = DEFAULT_IMPACT_NOTIONAL
    """Perpetuals: the quote notional (wad) whose average fill price against the
    resting book is the impact bid / ask of the mark and the funding premium
    (impact.py, docs/execution.md, "Funding")."""
    max_oracle_move: int = DEFAULT_MAX_ORACLE_MOVE
    """The most the oracle price may move in one block, as a fraction of the
    last price (docs/execution.md, "Oracle")."""
    settlement_window: int = DEFAULT_SETTLEMENT_WINDOW
    """Options: seconds before expiry over which the oracle spot is averaged into
    the settlement price (settlement.py); fixed at listing."""
    max_liquidation_notional: int = DEFAULT_MAX_LIQUIDATION_NOTIONAL
    """The most notional (quantity * valuation price) of liquidation orders placed
    into one block's auction of this market: a cascade goes through the book at
    most this fast (docs/execution.md, "Liquidation")."""
    max_liquidation_misses: int = DEFAULT_MAX_LIQUIDATION_MISSES
    """How many auctions in a row a subaccount's liquidation orders may find no
    fill before the insurance fund takes over the slice they were for; for an
    account with positions in several markets the smallest of their values
    counts (docs/execution.md, "Liquidation")."""


class MarketState(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """What changes block to block.

    `oracle_price` is the perp's index price or the option's underlying spot;
    `oracle_volatility` the option's implied volatility (wad, per sqrt year).
    `long_index` / `short_index`: cumulative quote charged per lot to a long /
    short position (funding moves them in opposite directions). `open_lots`:
    lots held long (== lots held short).
    `premium_sum` is the current funding interval's sum of premium * seconds
    covered, `premium_seconds` the seconds covered so far (funding.py).
    `last_trade_price`: perpetuals, the most recent auction clearing price whose
    notional reached `min_premium_notional` (0: none yet); one input of the mark.
    """

    paused: bool
    oracle_price: int
    oracle_volatility: int
    oracle_published_at: int
    mark_price: int
    long_index: int
    short_index: int
    premium_sum: int
    premium_seconds: int
    last_funding_at: int
    open_lots: int
    settlement_price: int  # options: 0 until settled at expiry
    last_trade_price: int = 0
    settlement_twap_sum: int = 0
    """Options: sum of oracle spot * seconds sampled in the settlement window."""
    settlement_twap_seconds: int = 0
    """Options: seconds of the settlement window sampled so far (settlement.py)."""
    liquidation_orders: int = 0
    """Liquidation orders placed into the book at the end of the previous block:
    the next block runs this market's auction for them even without new orders."""


class RestingOrder(msgspec.Struct, frozen=True, gc=False, array_like=True, omit_defaults=True):
    """An order in a market's book (or pending in the current block).

    Age is (`placed_height`, `placed_nonce`): smaller is older. Orders placed in
    an earlier block than the current one are makers. `client_id` (0: none) is
    the owner's own id for it, `good_til` (0: none) the unix time at which it
    expires; both are omitted from the encoding when 0 (encoding.py).
    """

    order_id: bytes
    subaccount: bytes
    side: int  # auction.Side
    limit_price: int  # 0: market order (IOC)
    quantity: int  # unfilled quantity
    time_in_force: TimeInForce
    post_only: bool
    reduce_only: bool
    placed_height: int
    placed_nonce: int
    client_id: int = 0
    good_til: int = 0
    liquidation: bool = False
    """Placed by the engine for a subaccount below maintenance (or for the
    insurance fund): reduce-only, immediate-or-cancel, no trading fee, and its
    owner cannot cancel it (liquidation.py)."""
    liquidation_misses: int = 0
    """A liquidation order's: how many auctions in a row its owner's liquidation
    orders had found no fill when it was placed (liquidation.py)."""


class TriggerKind(enum.IntEnum):
    """What arms a conditional order (docs/execution.md, "Stop and take-profit orders")."""

    NONE = 0
    STOP = 1  # sell: mark <= trigger; buy: mark >= trigger
    TAKE_PROFIT = 2  # sell: mark >= trigger; buy: mark <= trigger


class ConditionalOrder(msgspec.Struct, frozen=True, gc=False, array_like=True, omit_defaults=True):
    """A stop or take-profit order waiting for the mark to cross `trigger_price`.

    `order` is what it becomes once triggered (its `placed_height` is the block
    it was submitted in; it is re-stamped when it enters an auction).
    `triggered_at` is 0 while it waits, else the height of the block whose
    closing mark crossed the trigger: it enters the next block's auction.
    """

    order: RestingOrder
    trigger: int  # TriggerKind
    trigger_price: int
    triggered_at: int = 0
