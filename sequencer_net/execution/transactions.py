"""Transactions: what each kind carries, how it is encoded, signed and recovered.

Signing (docs/execution.md, "Transactions"):

    envelope = TxEnvelope(chain_id, nonce, payload)        # canonical msgpack
    digest   = keccak256(TX_DOMAIN || encode(envelope))
    signature = 65-byte r || s || v over digest (consensus.crypto, low s)

The transaction hash, which is also an order's id, is keccak256 of the canonical
encoding of the whole `SignedTransaction` (envelope and signature): the digest
alone does not name the sender, so two senders signing the same payload at the
same nonce would share it. The chain id sits inside what is signed, so a
transaction replays on no other chain;
the domain tag keeps a transaction signature from ever being a valid vote or
any other message signed by the same key.
"""

from __future__ import annotations

from typing import Final

import msgspec

from consensus.crypto import InvalidSignature, PrivateKey, keccak256, recover_address

from .encoding import NonCanonicalEncoding, decode_canonical, encode
from .exceptions import BadSignature, MalformedTransaction
from .limits import MAX_ENCODED_TRANSACTION_BYTES
from .records import Address, MarketParams, TimeInForce

TX_DOMAIN: Final = b"seqnet/execution/tx/v1\x00"


class Deposit(msgspec.Struct, frozen=True, array_like=True, tag=1):
    """Credit collateral bridged in from L1. Only the bridge key (or admin) may send it."""

    subaccount: bytes
    amount: int


class Withdraw(msgspec.Struct, frozen=True, array_like=True, tag=2):
    """Debit collateral from one of the sender's subaccounts, to `recipient` on L1."""

    subaccount_number: int
    amount: int
    recipient: bytes


class Transfer(msgspec.Struct, frozen=True, array_like=True, tag=3):
    """Move collateral from one of the sender's subaccounts to any subaccount."""

    subaccount_number: int
    to_subaccount: bytes
    amount: int


class PlaceOrder(msgspec.Struct, frozen=True, array_like=True, tag=4):
    """An order for this block's auction. `limit_price` 0 means a market order (IOC)."""

    subaccount_number: int
    market_id: int
    side: int
    limit_price: int
    quantity: int
    time_in_force: TimeInForce
    post_only: bool
    reduce_only: bool


class CancelOrder(msgspec.Struct, frozen=True, array_like=True, tag=5):
    subaccount_number: int
    market_id: int
    order_id: bytes


class OraclePrice(msgspec.Struct, frozen=True, array_like=True):
    """One market's price: index (perp) or underlying spot (option), and implied vol."""

    market_id: int
    price: int
    volatility: int


class OracleUpdate(msgspec.Struct, frozen=True, array_like=True, tag=6):
    """Prices observed at `published_at` (unix seconds). Only oracle keys may send it."""

    published_at: int
    prices: tuple[OraclePrice, ...]


class ListMarket(msgspec.Struct, frozen=True, array_like=True, tag=7):
    """Governance: list a new market. Admin only."""

    market_id: int
    params: MarketParams


class UpdateMarketParams(msgspec.Struct, frozen=True, array_like=True, tag=8):
    """Governance: replace a market's parameters (kind, lot size, option terms fixed)."""

    market_id: int
    params: MarketParams


class SetMarketPaused(msgspec.Struct, frozen=True, array_like=True, tag=9):
    """Governance: pause (no new orders, no auction) or resume a market."""

    market_id: int
    paused: bool


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
)

ORDER_PAYLOADS: Final = (PlaceOrder, CancelOrder)
"""Payload kinds that go to the order phase (their outcome ignores block position)."""


class TxEnvelope(msgspec.Struct, frozen=True, array_like=True):
    chain_id: int
    nonce: int
    payload: TxPayload


class SignedTransaction(msgspec.Struct, frozen=True, array_like=True):
    """What a block carries: the canonical envelope bytes and the signature over them."""

    envelope: bytes
    signature: bytes


class RecoveredTransaction(msgspec.Struct, frozen=True):
    """A transaction whose signature checked out: who sent what, under which hash."""

    tx_hash: bytes
    sender: Address
    envelope: TxEnvelope


def signing_digest(envelope_bytes: bytes) -> bytes:
    """keccak256(TX_DOMAIN || envelope bytes): what is signed, and the tx hash."""
    return keccak256(TX_DOMAIN + envelope_bytes)


def sign_transaction(
    key: PrivateKey, chain_id: int, nonce: int, payload: TxPayload
) -> SignedTransaction:
    """Build and sign a transaction (used by clients, tests and the benchmark)."""
    envelope_bytes = encode(TxEnvelope(chain_id=chain_id, nonce=nonce, payload=payload))
    signature = key.sign_digest(signing_digest(envelope_bytes))
    return SignedTransaction(envelope=envelope_bytes, signature=bytes(signature))


def transaction_hash(tx: SignedTransaction) -> bytes:
    """keccak256 of the signed transaction's canonical bytes (unique per sender)."""
    return keccak256(encode(tx))


def recover_transaction(tx: SignedTransaction) -> RecoveredTransaction:
    """Decode the envelope and recover the sender.

    Raises MalformedTransaction (too long, not canonical, wrong shape) or
    BadSignature (does not recover, high s, wrong length).
    """
    if len(tx.envelope) > MAX_ENCODED_TRANSACTION_BYTES:
        raise MalformedTransaction("transaction too long")
    try:
        envelope = decode_canonical(tx.envelope, TxEnvelope)
    except (NonCanonicalEncoding, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedTransaction(str(exc)) from exc
    digest = signing_digest(tx.envelope)
    try:
        sender = recover_address(digest, tx.signature)
    except InvalidSignature as exc:
        raise BadSignature(str(exc)) from exc
    return RecoveredTransaction(
        tx_hash=transaction_hash(tx), sender=Address(bytes(sender)), envelope=envelope
    )
