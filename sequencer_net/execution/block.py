"""What the engine executes: the committed sequencer transactions of one block.

A transaction's signature is recovered by the validators designated to verify
its batch (at intake by its author, and by f others; batches/certificate.py),
and the node hands the engine each committed transaction of every namespace,
in block order, with the sender its certified batch carries: the engine stays
pure and does no signature recovery. These structs carry exactly that. They
are built by the caller, not decoded from the network, but the engine still
checks every field itself (`check_transaction`): totality does not depend on
the caller being right. A transaction's structs are `gc=False`, as the state's
records are (records.py).
"""

from __future__ import annotations

from typing import Final

import msgspec

from .exceptions import MalformedTransaction
from .limits import MAX_FEE, MAX_NAMESPACE, MAX_NONCE, MAX_PAYLOAD_BYTES

TX_HASH_BYTES: Final = 32
ADDRESS_BYTES: Final = 20


class SequencedTransaction(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One committed sequencer transaction (sequencer_net/mempool/transaction.py).

    `tx_hash` is keccak256 of the signed transaction's canonical bytes (unique:
    it covers the signature); `sender` the 20-byte address its signature
    recovers to; `nonce`, `namespace`, `fee` and `payload` are its fields.
    """

    tx_hash: bytes
    sender: bytes
    nonce: int
    namespace: int
    fee: int
    payload: bytes


class FailedReveal(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A committed encrypted transaction that yields no transaction to execute
    (docs/fairness.md): its decrypted contents failed a check (`reason`, one of
    the envelope module's REVEAL_* reasons), or it was ordered past its expiry
    height ("expired", never decrypted), or at a height of another key epoch
    than its own ("key_epoch_mismatch", never decrypted). The engine charges
    `fee` (the envelope's max fee; 0 when expired or of another key epoch) to
    `sender` and nothing else: receipt error "FailedDecryption", no nonce used."""

    tx_hash: bytes
    sender: bytes
    fee: int
    reason: str


class ExecutionBlock(msgspec.Struct, frozen=True, array_like=True):
    """A committed block as the engine sees it: consensus fixed height, time and
    order. An encrypted transaction appears at its position as the transaction it
    revealed (a SequencedTransaction) or as a FailedReveal."""

    height: int
    timestamp_seconds: int
    transactions: tuple[SequencedTransaction | FailedReveal, ...]


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is an int subclass and no nonce


def check_transaction(tx: object) -> SequencedTransaction:
    """Return `tx` if every field is in range; raise MalformedTransaction otherwise."""
    if not isinstance(tx, SequencedTransaction):
        raise MalformedTransaction("not a SequencedTransaction")
    if type(tx.tx_hash) is not bytes or len(tx.tx_hash) != TX_HASH_BYTES:
        raise MalformedTransaction("tx_hash must be 32 bytes")
    if type(tx.sender) is not bytes or len(tx.sender) != ADDRESS_BYTES:
        raise MalformedTransaction("sender must be a 20-byte address")
    if tx.sender == bytes(ADDRESS_BYTES):
        raise MalformedTransaction("the zero address signs nothing")
    if not _is_int(tx.nonce) or not 0 <= tx.nonce <= MAX_NONCE:
        raise MalformedTransaction("nonce must be a uint64")
    if not _is_int(tx.namespace) or not 0 <= tx.namespace <= MAX_NAMESPACE:
        raise MalformedTransaction("namespace must be a uint32")
    if not _is_int(tx.fee) or not 0 <= tx.fee <= MAX_FEE:
        raise MalformedTransaction("fee must be a uint64")
    if type(tx.payload) is not bytes or len(tx.payload) > MAX_PAYLOAD_BYTES:
        raise MalformedTransaction(f"payload must be bytes, at most {MAX_PAYLOAD_BYTES}")
    return tx


def check_failed_reveal(tx: FailedReveal) -> FailedReveal:
    """Return `tx` if every field is in range; raise MalformedTransaction otherwise."""
    if type(tx.tx_hash) is not bytes or len(tx.tx_hash) != TX_HASH_BYTES:
        raise MalformedTransaction("tx_hash must be 32 bytes")
    if type(tx.sender) is not bytes or len(tx.sender) != ADDRESS_BYTES:
        raise MalformedTransaction("sender must be a 20-byte address")
    if tx.sender == bytes(ADDRESS_BYTES):
        raise MalformedTransaction("the zero address signs nothing")
    if not _is_int(tx.fee) or not 0 <= tx.fee <= MAX_FEE:
        raise MalformedTransaction("fee must be a uint64")
    if type(tx.reason) is not str:
        raise MalformedTransaction("reason must be a string")
    return tx


def hash_of(tx: object) -> bytes:
    """The input's hash if it has a well-formed one, else b"" (for receipts)."""
    tx_hash = getattr(tx, "tx_hash", b"")
    return tx_hash if type(tx_hash) is bytes and len(tx_hash) == TX_HASH_BYTES else b""


def sender_of(tx: object) -> bytes:
    """The input's sender if it is a 20-byte address, else b"" (for receipts)."""
    sender = getattr(tx, "sender", b"")
    return sender if type(sender) is bytes and len(sender) == ADDRESS_BYTES else b""
