"""Rollup transactions: wire format, EIP-712-style signing and sender recovery.

A transaction carries an opaque payload for one rollup (its `namespace`) and is
signed by an ordinary Ethereum key over an EIP-712 typed structure:

    TX_TYPEHASH = keccak("Transaction(uint64 nonce,uint32 namespace,uint256 fee,"
                         "bytes32 payloadHash)")
    structHash  = keccak(TX_TYPEHASH || word(nonce) || word(namespace) || word(fee)
                         || keccak(payload))
    digest      = keccak(0x19 0x01 || domainSeparator || structHash)

`domainSeparator` is `consensus.encoding.Domain(chain_id, verifying_contract,
genesis_hash)`, the same domain validators sign votes under, so a transaction
is valid on one network only. A trader action in namespace 0 (an order, a
cancel, a withdrawal, a transfer) is instead signed over a typed structure of
its own fields, which a wallet can show (typed.py); the signature is still
the transaction's one signature. Signatures are 65 bytes r || s || v with low s
(`consensus.crypto`).

Wire format: a msgpack array [chain_id, nonce, namespace, fee, payload,
signature]. Only the canonical encoding is accepted, so a signed transaction
has exactly one encoding and `tx_hash` (keccak of it) names it uniquely.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

import msgspec
import sha3

from consensus.crypto import (
    SIGNATURE_LENGTH,
    Address,
    InvalidSignature,
    PrivateKey,
    keccak256,
    recover_address,
)
from consensus.encoding import Domain
from sequencer_net.canonical import decode_strict
from sequencer_net.execution.transactions import DEX_NAMESPACE

from .limits import MAX_FEE, MAX_NAMESPACE, MAX_NONCE, MAX_TX_BYTES, MAX_TX_PAYLOAD_BYTES
from .typed import struct_hash, typed_action

TX_TYPEHASH = keccak256(
    b"Transaction(uint64 nonce,uint32 namespace,uint256 fee,bytes32 payloadHash)"
)
_keccak = sha3.keccak_256


class InvalidTransaction(ValueError):
    """Bytes that are not an acceptable signed transaction; subclasses name why."""


class OversizedTransaction(InvalidTransaction):
    """The encoded transaction is longer than MAX_TX_BYTES."""


class MalformedTransaction(InvalidTransaction):
    """Not a canonical msgpack transaction, or a field is out of its bounds."""


class WrongChain(InvalidTransaction):
    """Signed for another network's chain id."""


class BadSignature(InvalidTransaction):
    """The signature is malformed, malleable (high s) or does not recover."""


class Transaction(msgspec.Struct, frozen=True, array_like=True):
    chain_id: Annotated[int, msgspec.Meta(ge=0, le=MAX_NONCE)]
    nonce: Annotated[int, msgspec.Meta(ge=0, le=MAX_NONCE)]
    namespace: Annotated[int, msgspec.Meta(ge=0, le=MAX_NAMESPACE)]
    fee: Annotated[int, msgspec.Meta(ge=0, le=MAX_FEE)]
    payload: Annotated[bytes, msgspec.Meta(max_length=MAX_TX_PAYLOAD_BYTES)]
    signature: Annotated[
        bytes, msgspec.Meta(min_length=SIGNATURE_LENGTH, max_length=SIGNATURE_LENGTH)
    ]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Transaction)


@lru_cache(maxsize=16)
def _digest_prefix(domain: Domain) -> bytes:
    """0x19 0x01 || domainSeparator: what every digest under `domain` starts with."""
    return b"\x19\x01" + domain.separator()


_last_prefix: tuple[Domain | None, bytes] = (None, b"")
"""The last domain's digest prefix, found by identity: a node checks every
transaction under one Domain object, and an identity test is cheaper than
the lru_cache's hash of the domain's fields. One tuple, replaced whole, so
threads read a consistent pair."""


def transaction_digest(
    domain: Domain, nonce: int, namespace: int, fee: int, payload: bytes
) -> bytes:
    """The 32-byte EIP-712 digest a sender signs (chain id comes from `domain`)."""
    global _last_prefix
    if not 0 <= nonce <= MAX_NONCE:
        raise ValueError("nonce out of range")
    if not 0 <= namespace <= MAX_NAMESPACE:
        raise ValueError("namespace out of range")
    if not 0 <= fee <= MAX_FEE:
        raise ValueError("fee out of range")
    last_domain, prefix = _last_prefix
    if last_domain is not domain:
        prefix = _digest_prefix(domain)
        _last_prefix = (domain, prefix)
    if namespace == DEX_NAMESPACE:
        action = typed_action(payload)
        if action is not None:  # a trader action: signed as its own typed data
            return _keccak(prefix + struct_hash(nonce, fee, action)).digest()  # type: ignore[no-any-return]
    # the three words are in range (checked above), so to_bytes cannot overflow
    struct = _keccak(
        b"".join(
            (
                TX_TYPEHASH,
                nonce.to_bytes(32, "big"),
                namespace.to_bytes(32, "big"),
                fee.to_bytes(32, "big"),
                _keccak(payload).digest(),
            )
        )
    ).digest()
    return _keccak(prefix + struct).digest()  # type: ignore[no-any-return]


def sign_transaction(
    key: PrivateKey, domain: Domain, nonce: int, namespace: int, fee: int, payload: bytes
) -> Transaction:
    if len(payload) > MAX_TX_PAYLOAD_BYTES:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_TX_PAYLOAD_BYTES}")
    if not 0 <= domain.chain_id <= MAX_NONCE:
        raise ValueError("chain id does not fit the transaction wire format")
    signature = key.sign_digest(transaction_digest(domain, nonce, namespace, fee, payload))
    return Transaction(
        chain_id=domain.chain_id,
        nonce=nonce,
        namespace=namespace,
        fee=fee,
        payload=payload,
        signature=bytes(signature),
    )


def encode_transaction(tx: Transaction) -> bytes:
    return _encoder.encode(tx)


def decode_transaction(data: bytes) -> Transaction:
    """Decode one signed transaction; raise an InvalidTransaction subclass otherwise.

    Checks, in order: the raw size (before any parsing), msgpack structure and
    every field's bound, and that `data` is the canonical encoding. The
    signature is checked by `recover_sender`.
    """
    return decode_strict(
        data,
        _decoder,
        limit=MAX_TX_BYTES,
        what="transaction",
        malformed=MalformedTransaction,
        oversized=OversizedTransaction,
    )


def decode_transaction_or_none(data: bytes) -> Transaction | None:
    """`decode_transaction(data)`, or None where it raises: the same checks
    (raw size, msgpack structure and field bounds, canonical encoding), for a
    caller that skips what does not decode, once per transaction of a block
    (no exception raised, no message formatted)."""
    if len(data) > MAX_TX_BYTES:
        return None
    try:
        tx = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return tx if _encoder.encode(tx) == data else None


def tx_hash(encoded: bytes) -> bytes:
    """The transaction's id: keccak-256 of its (canonical) encoded bytes."""
    return keccak256(encoded)


def recover_sender(tx: Transaction, domain: Domain) -> Address:
    """The address that signed `tx` for `domain`; raise WrongChain or BadSignature."""
    if tx.chain_id != domain.chain_id:
        raise WrongChain(f"transaction is for chain {tx.chain_id}, not {domain.chain_id}")
    digest = transaction_digest(domain, tx.nonce, tx.namespace, tx.fee, tx.payload)
    try:
        return recover_address(digest, tx.signature)
    except InvalidSignature as exc:
        raise BadSignature(str(exc)) from exc
