"""What executing a block reports: one receipt per transaction, plus events.

Receipts and events are encoded canonically (`encoding.encode`) so two
validators can compare a block's outcome byte for byte. They are `gc=False`,
as the state's records are (records.py): frozen, with only immutable fields,
they cannot be part of a cycle.
"""

from __future__ import annotations

import msgspec


class Receipt(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """The outcome of one transaction (of any namespace), in block order.

    `tx_hash` and `sender` are empty when the input's own were malformed.
    `error` is the name of the exception that rejected the transaction ("" on
    success) and `reason` its message. `fee` is what the sender paid (0 when
    the transaction was refused before paying: docs/execution.md, "Fees").
    """

    tx_hash: bytes
    sender: bytes
    success: bool
    error: str
    reason: str
    fee: int = 0


class FillEvent(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=1):
    market_id: int
    order_id: bytes
    subaccount: bytes
    side: int
    price: int
    quantity: int
    fee: int
    maker: bool


class OrderRemoved(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=2):
    """An order left the book without filling: `why` is one of "self-trade",
    "post-only-would-cross", "reduce-only", "immediate-or-cancel", "liquidated",
    "recovered" (a liquidation order whose account meets maintenance again),
    "expired", "cancelled", "good-til" (its good-til time passed),
    "trigger-rejected" (a triggered stop/take-profit could not be placed)."""

    market_id: int
    order_id: bytes
    why: str


class AuctionCleared(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=3):
    market_id: int
    price: int
    volume: int
    mark_price: int


class FundingApplied(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=4):
    """Longs pay `per_lot` quote per lot to shorts (negative: shorts pay longs)."""

    market_id: int
    intervals: int
    per_lot: int
    long_index: int
    short_index: int


class Liquidated(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=5):
    """A close-out (liquidation.py). With `equity` <= 0 every position of the
    subaccount was closed: the insurance fund took them over (`covered_by_fund`
    = the loss it paid) or, when the fund could not pay, they were deleveraged
    against the opposite side (`deleveraged` = the loss those counterparties
    bore at the bankruptcy price); `deficit` is the negative equity left after
    closing at the valuation price. With `equity` > 0 the account's liquidation
    orders had missed `max_liquidation_misses` auctions in a row and the fund
    took over only the slice that brings it back to maintenance (the
    `PositionTransferred` events before this one say how much)."""

    subaccount: bytes
    equity: int
    maintenance_requirement: int
    fee: int
    deficit: int
    covered_by_fund: int
    deleveraged: int


class PositionTransferred(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=6):
    market_id: int
    subaccount: bytes
    size: int
    price: int


class OptionSettled(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=7):
    """`source` says where `settlement_price` came from: "twap" (the average of
    `twap_seconds` sampled seconds before expiry) or "oracle-fallback" (nothing
    was sampled; the oracle price published at or after expiry)."""

    market_id: int
    settlement_price: int
    payout_per_lot: int
    deficit: int
    twap_seconds: int = 0
    source: str = ""


class Withdrawn(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=8):
    """Collateral or an L1 asset left the engine; the L1 bridge pays `recipient`
    against a posted root that holds the record b"wd/" + `withdrawal_id`.

    `subaccount` is the debited subaccount (collateral) or the owner's 20-byte
    address (an L1 asset balance); `token` the L1 token paid (20 zero bytes:
    ETH); `withdrawal_id` None when no L1 record was written (collateral on a
    chain without `collateral_token`: docs/execution.md, "L1 bridge")."""

    subaccount: bytes
    recipient: bytes
    amount: int
    token: bytes = b""
    withdrawal_id: int | None = None


class Credited(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=21):
    """Reporters holding more than 2/3 of the power reported L1 deposit `nonce`
    with this content, and the engine credited it: quote collateral of
    `subaccount` (`collateral` true) or the L1 asset balance of its owner."""

    nonce: int
    subaccount: bytes
    token: bytes
    amount: int
    collateral: bool


class DepositRefused(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=22):
    """A reporter quorum agreed on L1 deposit `nonce`, but the engine cannot
    credit it (`why`: "amount" out of (0, MAX_AMOUNT], "overflow" of the uint256
    balance). The nonce is settled all the same, so later deposits still go in;
    the funds stay in the L1 bridge."""

    nonce: int
    subaccount: bytes
    token: bytes
    amount: int
    why: str


class PhaseSkipped(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=9):
    """A block-level phase raised for one market (or one subaccount) and was
    skipped for this block; `phase` is "funding", "expiry", "good-til",
    "triggered", "auction", "premium", "liquidation", "fund-orders", "trigger"
    or "all", `error` the exception's class name.
    The engine re-ran the block without it (docs/execution.md, "Totality")."""

    phase: str
    market_id: int
    subaccount: bytes
    error: str


class LiquidationOrderPlaced(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=10):
    """At the end of a block the engine placed a reduce-only IOC order for a
    subaccount below maintenance (or for the insurance fund's positions) into
    the next block's auction, limit at the bankruptcy price (fund: the band)."""

    market_id: int
    order_id: bytes
    subaccount: bytes
    side: int
    limit_price: int
    quantity: int


class LiquidationFeePaid(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=11):
    """A liquidation order filled: `fee` = liquidation_fee x the filled notional,
    capped at the equity left, went to the insurance fund."""

    market_id: int
    subaccount: bytes
    notional: int
    fee: int


class Deleveraged(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=12):
    """Automatic deleveraging: `quantity` (signed, the bankrupt side's) of the
    bankrupt subaccount's position was closed against `counterparty` at the
    valuation `price`, and the counterparty paid `loss` of the bankrupt
    account's deficit (together: the bankruptcy price)."""

    market_id: int
    subaccount: bytes
    counterparty: bytes
    quantity: int
    price: int
    loss: int


class OraclePriceSet(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=20):
    """The block's oracle price for a market: the power-weighted median of the
    fresh reports (oracle.py). `published_at` is the time by which reporters
    holding more than 2/3 of the power had reported; `capped` is true when the
    per-block move cap held the price back from the median."""

    market_id: int
    price: int
    volatility: int
    published_at: int
    capped: bool


class OrderTriggered(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=16):
    """A stop or take-profit order's trigger was crossed by the block's closing
    `mark_price`; the order enters the next block's auction."""

    market_id: int
    order_id: bytes
    mark_price: int


Event = (
    FillEvent
    | OrderRemoved
    | AuctionCleared
    | FundingApplied
    | Liquidated
    | PositionTransferred
    | OptionSettled
    | Withdrawn
    | PhaseSkipped
    | LiquidationOrderPlaced
    | LiquidationFeePaid
    | Deleveraged
    | OraclePriceSet
    | OrderTriggered
    | Credited
    | DepositRefused
)
