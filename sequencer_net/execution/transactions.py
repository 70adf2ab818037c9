"""DEX transactions: what each kind carries and how it is encoded.

A DEX transaction is an ordinary sequencer transaction (chain id, nonce,
namespace, fee, payload, one EIP-712 signature: sequencer_net/mempool/
transaction.py) in namespace DEX_NAMESPACE (0). Its payload is the canonical
encoding (`encoding.encode`) of exactly one `TxPayload` below, with no inner
signature, nonce or chain id: the sender is the outer signer, the nonce and fee
are the outer ones, and the outer transaction hash is the order id
(docs/execution.md, "Transactions").

`decode_payload` is the engine's decode edge for these bytes: whatever they
hold, it returns a payload or raises MalformedTransaction.

The payload structs are `gc=False`, as the state's records are (records.py):
frozen, with only immutable fields, they cannot be part of a cycle.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from .encoding import NonCanonicalEncoding, bounded_decoder, decode_canonical, encode
from .exceptions import MalformedTransaction
from .limits import ORDER_ID_BYTES
from .records import (
    MarketIdInt,
    MarketParams,
    SubaccountNumber,
    TimeInForce,
)

DEX_NAMESPACE: Final = 0
"""Sequencer namespace whose payloads the engine executes; every other namespace
is rollup data, ordered and charged a fee but not executed."""

SHORT_BYTES_LIMIT: Final = 32
WireBytes = Annotated[bytes, msgspec.Meta(max_length=SHORT_BYTES_LIMIT)]
"""A short byte field as decoded (ids and addresses): at most 32 bytes."""
OrderIdBytes = Annotated[bytes, msgspec.Meta(min_length=ORDER_ID_BYTES, max_length=ORDER_ID_BYTES)]


class Deposit(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=1):
    """Mint collateral with no L1 behind it: the faucet of local testnets. Only
    the admin or the genesis `bridge` key may send it. L1 deposits arrive as
    `L1DepositReport`s instead."""

    subaccount: WireBytes
    amount: int


class Withdraw(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=2, omit_defaults=True):
    """Pay `amount` to `recipient` on L1 (docs/execution.md, "L1 bridge").

    `token` b"" (omitted from the encoding, so a payload from before it existed
    decodes the same) or the chain's collateral token: debit collateral from
    the sender's subaccount `subaccount_number`. Any other 20-byte token (ETH is
    20 zero bytes): debit the sender's L1 asset balance of it
    (`subaccount_number` must be 0). Either way the engine writes the L1
    withdrawal record b"wd/" + id that the L1 bridge pays against.
    """

    subaccount_number: SubaccountNumber
    amount: int
    recipient: WireBytes
    token: WireBytes = b""


class Transfer(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=3):
    """Move collateral from one of the sender's subaccounts to any subaccount."""

    subaccount_number: SubaccountNumber
    to_subaccount: WireBytes
    amount: int


class PlaceOrder(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=4, omit_defaults=True):
    """An order for this block's auction. `limit_price` 0 means a market order (IOC).

    The last four fields are optional (0: unused) and, when 0, are not written
    at all (encoding.py), so a payload from before they existed decodes to the
    same order: `client_id` the owner's id for the order (uint64, unique among
    the subaccount's open orders), `good_til` its expiry (unix seconds),
    `trigger` a TriggerKind (1 stop, 2 take-profit) and `trigger_price` the mark
    price that arms it (docs/execution.md, "Orders").
    """

    subaccount_number: SubaccountNumber
    market_id: MarketIdInt
    side: int
    limit_price: int
    quantity: int
    time_in_force: TimeInForce
    post_only: bool
    reduce_only: bool
    client_id: int = 0
    good_til: int = 0
    trigger: int = 0
    trigger_price: int = 0


class CancelOrder(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=5):
    subaccount_number: SubaccountNumber
    market_id: MarketIdInt
    order_id: OrderIdBytes


class OraclePrice(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One market's price: index (perp) or underlying spot (option), and implied vol."""

    market_id: MarketIdInt
    price: int
    volatility: int


class OracleUpdate(msgspec.Struct, frozen=True, array_like=True, tag=6):
    """Prices observed at `published_at` (unix seconds). Only oracle keys may send it."""

    published_at: int
    prices: tuple[OraclePrice, ...]


class ListMarket(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=7):
    """Governance: list a new market. Admin only."""

    market_id: MarketIdInt
    params: MarketParams


class UpdateMarketParams(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=8):
    """Governance: replace a market's parameters (kind, lot size, option terms fixed)."""

    market_id: MarketIdInt
    params: MarketParams


class SetMarketPaused(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=9):
    """Governance: pause (no new orders, no auction) or resume a market."""

    market_id: MarketIdInt
    paused: bool


class CancelOrderByClientId(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=16):
    """Cancel the open (resting, pending or conditional) order of one of the
    sender's subaccounts that carries `client_id`, in whatever market it is."""

    subaccount_number: SubaccountNumber
    client_id: int


class L1DepositReport(msgspec.Struct, frozen=True, gc=False, array_like=True, tag=17):
    """An oracle reporter saw the L1 bridge's `Deposited(nonce, ..., subaccount,
    token, amount)` event at its confirmation depth. Reporters holding more
    than 2/3 of the power reporting the same content credit it, once
    (l1_bridge.py). `nonce` is the L1 deposit nonce (uint64), `subaccount` 21
    bytes, `token` the 20-byte L1 token (20 zero bytes: ETH), `amount` in the
    token's base units (an amount of 2**255 or more is reported as 2**255 - 1:
    wire integers stop at int256, and the engine refuses it either way)."""

    nonce: int
    subaccount: WireBytes
    token: WireBytes
    amount: int


TxPayload = (
    Deposit
    | Withdraw
    | Transfer
    | PlaceOrder
    | CancelOrder
    | OracleUpdate
    | ListMarket
    | UpdateMarketParams
    | SetMarketPaused
    | CancelOrderByClientId
    | L1DepositReport
)

ORDER_PAYLOADS: Final = (PlaceOrder, CancelOrder, CancelOrderByClientId)
"""Payload kinds that go to the order phase (their outcome ignores block position)."""


def encode_payload(payload: TxPayload) -> bytes:
    """The bytes a DEX transaction carries as its payload (canonical msgpack)."""
    return encode(payload)


_KINDS_BY_TAG: Final[dict[int, type]] = {
    kind.__struct_config__.tag: kind for kind in TxPayload.__args__
}
"""Each payload kind by its tag (the first element of its array)."""


def _decode_by_tag(data: bytes) -> TxPayload | None:
    """The payload `decode_canonical(data, TxPayload)` returns, converted as
    the one struct its tag names (msgspec rebuilds its view of the union on
    every convert, about 12 us; a struct type's is kept, 0.4 us); None if
    anything is off, and the caller then takes the union path, which raises
    the same error it always did. When this returns a value, the union path
    returns the same one: it reads the same tag, picks the same struct and
    converts the same fields, and the same canonical re-encoding is checked."""
    try:
        raw = bounded_decoder().decode(data)
        if type(raw) is not list or not raw or type(raw[0]) is not int:
            return None
        kind = _KINDS_BY_TAG.get(raw[0])
        if kind is None:
            return None
        value: TxPayload = msgspec.convert(raw, type=kind, strict=True)
        return value if encode(value) == data else None
    except Exception:
        return None


def decode_payload(data: bytes) -> TxPayload:
    """Decode a DEX payload; any failure is MalformedTransaction.

    This is the decode edge, so it catches everything decoding can raise on
    hostile bytes: msgspec's DecodeError and ValidationError (which also enforce
    the widths of market ids, subaccount numbers and order ids), non-canonical
    bytes, integers wider than int256 (`decode_canonical(bounded_ints=True)`),
    the RecursionError deeply nested arrays raise inside msgspec, and anything
    else.
    """
    fast = _decode_by_tag(data)
    if fast is not None:
        return fast
    try:
        return decode_canonical(data, TxPayload, bounded_ints=True)  # type: ignore[arg-type]
    except (NonCanonicalEncoding, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedTransaction(str(exc)[:160]) from exc
    except Exception as exc:  # RecursionError, OverflowError, ...: hostile bytes
        raise MalformedTransaction(f"undecodable payload ({type(exc).__name__})") from exc
