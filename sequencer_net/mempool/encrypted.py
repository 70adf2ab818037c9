"""Encrypted transactions: how an envelope travels where a transaction does.

An encrypted transaction (a `sequencer_net.fairness.envelope.Envelope`, the
signed ciphertext of one signed transaction) is submitted, batched, ordered
and stored like a plain transaction, in this wire form:

    encrypted tx = 0xc1 || canonical msgpack envelope

0xc1 is the one byte msgpack never uses, so no canonical msgpack value, and
in particular no plain transaction (a msgpack array, first byte 0x96),
starts with it: the first byte tells the two apart, and each has exactly one
encoding. Its hash, like a plain transaction's, is keccak256 of the whole
wire form; clients get it back on submission and look the receipt up by it.

The whole wire form is at most MAX_TX_BYTES (the batch format's per
transaction bound), checked before anything is decoded; the envelope adds
about 550 bytes to the transaction it carries.

`open_encrypted` checks one for ordering (`open_envelope`: signature of the
sender, the ciphertext's proof under the label with this chain, namespace and
key epoch, expiry) and raises `InvalidEncryptedTransaction` naming the failed
check, or `EncryptionOff` on a chain whose genesis has no threshold key. On a
chain with validator-set epochs each epoch has its own key and key epoch
(docs/fairness.md, "A key per validator-set epoch").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consensus.encoding import Domain
from sequencer_net.fairness.envelope import (
    Envelope,
    InvalidEnvelope,
    MalformedEnvelope,
    decode_envelope,
    encode_envelope,
    open_envelope,
    open_envelope_of_any_epoch,
)
from sequencer_net.fairness.group import Point
from sequencer_net.fairness.limits import AEAD_TAG_BYTES, BLIND_BYTES
from sequencer_net.fairness.tdh2 import CiphertextProofCache

from .limits import MAX_TX_BYTES
from .transaction import InvalidTransaction, OversizedTransaction, decode_transaction

ENCRYPTED_TX_PREFIX: Final = b"\xc1"
"""msgpack's "never used" byte: no plain transaction can start with it."""

MAX_SEALED_OVERHEAD: Final = AEAD_TAG_BYTES + BLIND_BYTES + 106
"""Ciphertext body bytes that are not the inner transaction's payload, at
most: the AEAD tag, the blind, and the fixed fields of an encoded transaction
(106 bytes, mempool/limits.py MAX_TX_BYTES). The mempool asks an envelope's
max fee to cover the required fee of `len(body) - MAX_SEALED_OVERHEAD`
payload bytes: the inner payload is at least that long, so an honest envelope
whose max fee is its transaction's fee always passes, and an envelope with
garbage inside still pays about what a plain transaction of its size would."""


class EncryptionOff(InvalidTransaction):
    """An encrypted transaction on a chain without a threshold key."""


class InvalidEncryptedTransaction(InvalidTransaction):
    """An envelope that must not be ordered; `reason` names the failed check
    (the `InvalidEnvelope` subclass: WrongChain, WrongKeyEpoch, ExpiredEnvelope,
    BadEnvelopeSignature, InvalidCiphertextProof, MalformedEnvelope,
    OversizedEnvelope)."""

    def __init__(self, cause: InvalidEnvelope) -> None:
        self.reason = type(cause).__name__
        super().__init__(f"{self.reason}: {cause}")


@dataclass(frozen=True, slots=True)
class LaterKey:
    """The threshold key of a later validator-set epoch: from `first_height` on,
    envelopes are encrypted to `public_key` under key epoch `key_epoch`."""

    key_epoch: int
    first_height: int
    public_key: Point


@dataclass(frozen=True, slots=True)
class EnvelopeRules:
    """What checking an envelope needs from genesis: the network key and its
    epoch (epoch 0's, from height 1), the keys of later validator-set epochs
    (`later`, by first height; empty for a chain whose set never changes); and
    the node's memory of ciphertext proofs already checked (`proofs`, shared
    with the share maker, node/decryption.py)."""

    public_key: Point
    key_epoch: int
    proofs: CiphertextProofCache | None = None
    later: tuple[LaterKey, ...] = ()

    def key_at(self, height: int) -> tuple[int, Point]:
        """(key epoch, network key) of the validator-set epoch holding `height`:
        the only key an envelope ordered at `height` may be encrypted to."""
        key_epoch, public_key = self.key_epoch, self.public_key
        for later in self.later:
            if later.first_height > height:
                break
            key_epoch, public_key = later.key_epoch, later.public_key
        return key_epoch, public_key

    def keys(self) -> dict[int, Point]:
        """Every key epoch's network key."""
        keys = {self.key_epoch: self.public_key}
        keys.update((later.key_epoch, later.public_key) for later in self.later)
        return keys


def payload_length_floor(envelope: Envelope) -> int:
    """The fewest payload bytes the inner transaction can have (MAX_SEALED_OVERHEAD)."""
    return max(0, len(envelope.ciphertext.body) - MAX_SEALED_OVERHEAD)


def is_encrypted(encoded: bytes) -> bool:
    return encoded[:1] == ENCRYPTED_TX_PREFIX


def encode_encrypted(envelope: Envelope) -> bytes:
    """The wire form of an envelope; ValueError if it exceeds MAX_TX_BYTES."""
    encoded = ENCRYPTED_TX_PREFIX + encode_envelope(envelope)
    if len(encoded) > MAX_TX_BYTES:
        raise ValueError(f"encrypted transaction of {len(encoded)} bytes exceeds {MAX_TX_BYTES}")
    return encoded


def decode_encrypted(encoded: bytes) -> Envelope:
    """The envelope of a wire form (size and canonical form; no signature or proof
    check). Raises OversizedTransaction or InvalidEncryptedTransaction."""
    if len(encoded) > MAX_TX_BYTES:
        raise OversizedTransaction(f"transaction of {len(encoded)} bytes exceeds {MAX_TX_BYTES}")
    if not is_encrypted(encoded):
        raise InvalidEncryptedTransaction(MalformedEnvelope("no encrypted transaction prefix"))
    try:
        return decode_envelope(encoded[1:])
    except InvalidEnvelope as exc:
        raise InvalidEncryptedTransaction(exc) from exc


def open_encrypted(
    encoded: bytes, domain: Domain, rules: EnvelopeRules | None, height: int
) -> Envelope:
    """Check an encrypted transaction for ordering at `height` (0: skip the
    expiry check, which execution applies at the block's height anyway).

    Intake (`height` > 0) accepts only the key epoch of the validator-set epoch
    holding `height` (`EnvelopeRules.key_at`): an envelope of an earlier epoch
    would be refused undecrypted at commit, one of a later epoch too if it
    committed before the switch. A peer's batch (`height` 0) may hold envelopes
    of any scheduled key epoch, each checked under its own epoch's key: which
    of them the block opens is decided at commit, by the block's height."""
    if len(encoded) > MAX_TX_BYTES:
        raise OversizedTransaction(f"transaction of {len(encoded)} bytes exceeds {MAX_TX_BYTES}")
    if rules is None:
        raise EncryptionOff("encryption is off: this chain's genesis has no threshold key")
    try:
        if height == 0 and rules.later:
            return open_envelope_of_any_epoch(
                encoded[1:], domain, rules.keys(), height, rules.proofs
            )
        key_epoch, public_key = rules.key_at(height)
        return open_envelope(encoded[1:], domain, public_key, key_epoch, height, rules.proofs)
    except InvalidEnvelope as exc:
        raise InvalidEncryptedTransaction(exc) from exc


def transaction_namespace(encoded: bytes) -> int:
    """The namespace of a plain or encrypted transaction (the envelope carries
    its namespace in the clear). Raises InvalidTransaction."""
    if is_encrypted(encoded):
        return decode_encrypted(encoded).namespace
    return decode_transaction(encoded).namespace
