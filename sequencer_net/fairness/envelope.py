"""The encrypted transaction envelope: what a user submits to the encrypted mempool.

An envelope carries one signed rollup transaction (mempool/transaction.py),
encrypted to the network's threshold key (tdh2.py), with the fields ordering
and fee charging need in the clear:

    version, chain_id, namespace, key_epoch, sender, expiry_height, max_fee,
    ciphertext, payload_hash, signature

Wire format: a msgpack array of these fields in this order (the ciphertext a
nested array); only the canonical encoding is accepted.

    plaintext    = blind (32 random bytes) || encoded inner transaction
    payload_hash = keccak(blind || inner tx || sender || word(nonce))
    label        = keccak("seqnet/tdh2/v1" || word(chain_id) || word(namespace)
                          || word(key_epoch) || sender || word(expiry_height))

The ciphertext's proof is bound to `label`, so copying someone's ciphertext
into an envelope with another sender, chain, namespace, epoch or expiry makes
the proof fail. The payload hash commits to the inner transaction without
revealing it (the blind keeps a guessed transaction from being confirmed).
The sender signs an EIP-712 digest of every other field:

    ENVELOPE_TYPEHASH = keccak("EncryptedTransaction(uint8 version,uint32 namespace,"
                               "uint64 keyEpoch,address sender,uint64 expiryHeight,"
                               "uint256 maxFee,bytes32 ciphertextHash,bytes32 payloadHash)")
    digest = keccak(0x19 0x01 || domainSeparator || keccak(ENVELOPE_TYPEHASH || words...))

with ciphertextHash = keccak(canonical ciphertext encoding) and the chain id in
the domain separator (`consensus.encoding.Domain`).

`open_envelope` checks an envelope before it is ordered; `reveal` checks the
decrypted inner transaction against it after the block commits and the
ciphertext is combined, returning the transaction or a deterministic
`RevealFailed(reason)`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Final

import msgspec

from consensus.crypto import (
    ADDRESS_LENGTH,
    SIGNATURE_LENGTH,
    InvalidSignature,
    PrivateKey,
    keccak256,
    recover_address,
)
from consensus.encoding import Domain, word
from sequencer_net.canonical import decode_strict
from sequencer_net.mempool.limits import MAX_FEE, MAX_NAMESPACE, MAX_NONCE
from sequencer_net.mempool.transaction import (
    InvalidTransaction,
    Transaction,
    decode_transaction,
    encode_transaction,
    recover_sender,
)

from .group import Point, RandomBytes
from .limits import BLIND_BYTES, MAX_ENVELOPE_BYTES
from .tdh2 import (
    Ciphertext,
    CiphertextProofCache,
    DecryptionFailed,
    encode,
    encrypt,
    verify_ciphertext,
)

ENVELOPE_VERSION: Final = 1
LABEL_TAG: Final = b"seqnet/tdh2/v1"
ENVELOPE_TYPEHASH: Final = keccak256(
    b"EncryptedTransaction(uint8 version,uint32 namespace,uint64 keyEpoch,address sender,"
    b"uint64 expiryHeight,uint256 maxFee,bytes32 ciphertextHash,bytes32 payloadHash)"
)


class InvalidEnvelope(ValueError):
    """An envelope that must not be ordered; subclasses name why."""


class OversizedEnvelope(InvalidEnvelope):
    pass


class MalformedEnvelope(InvalidEnvelope):
    """Not a canonical envelope encoding, a field out of bounds or an unknown version."""


class WrongChain(InvalidEnvelope):
    pass


class WrongKeyEpoch(InvalidEnvelope):
    """Encrypted to another epoch's threshold key."""


class ExpiredEnvelope(InvalidEnvelope):
    """The height it would be ordered at is past its expiry height."""


class BadEnvelopeSignature(InvalidEnvelope):
    """The signature is malformed or does not recover the envelope's sender."""


class InvalidCiphertextProof(InvalidEnvelope):
    """The ciphertext's proof does not verify under the envelope's label."""


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    version: Annotated[int, msgspec.Meta(ge=0, le=255)]
    chain_id: Annotated[int, msgspec.Meta(ge=0, le=MAX_NONCE)]
    namespace: Annotated[int, msgspec.Meta(ge=0, le=MAX_NAMESPACE)]
    key_epoch: Annotated[int, msgspec.Meta(ge=0, le=MAX_NONCE)]
    sender: Annotated[bytes, msgspec.Meta(min_length=ADDRESS_LENGTH, max_length=ADDRESS_LENGTH)]
    expiry_height: Annotated[int, msgspec.Meta(ge=0, le=MAX_NONCE)]
    max_fee: Annotated[int, msgspec.Meta(ge=0, le=MAX_FEE)]
    ciphertext: Ciphertext
    payload_hash: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    signature: Annotated[
        bytes, msgspec.Meta(min_length=SIGNATURE_LENGTH, max_length=SIGNATURE_LENGTH)
    ]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Envelope)


def encode_envelope(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def decode_envelope(data: bytes) -> Envelope:
    """Size cap (before parsing), structure, field bounds, canonical form, version."""
    if not isinstance(data, bytes):
        raise MalformedEnvelope("expected bytes")
    envelope = decode_strict(
        data,
        _decoder,
        limit=MAX_ENVELOPE_BYTES,
        what="envelope",
        malformed=MalformedEnvelope,
        oversized=OversizedEnvelope,
    )
    if envelope.version != ENVELOPE_VERSION:
        raise MalformedEnvelope(f"unknown envelope version {envelope.version}")
    return envelope


def envelope_label(
    chain_id: int, namespace: int, key_epoch: int, sender: bytes, expiry_height: int
) -> bytes:
    """The 32-byte label a ciphertext's proof and AEAD are bound to."""
    if len(sender) != ADDRESS_LENGTH:
        raise ValueError("sender must be a 20-byte address")
    return keccak256(
        LABEL_TAG
        + word(chain_id)
        + word(namespace)
        + word(key_epoch)
        + sender
        + word(expiry_height)
    )


def payload_commitment(blind: bytes, inner_tx: bytes, sender: bytes, nonce: int) -> bytes:
    """keccak(blind || inner tx || sender || word(nonce)): the hiding commitment."""
    return keccak256(blind + inner_tx + sender + word(nonce))


def envelope_digest(
    domain: Domain,
    version: int,
    namespace: int,
    key_epoch: int,
    sender: bytes,
    expiry_height: int,
    max_fee: int,
    ciphertext: Ciphertext,
    payload_hash: bytes,
) -> bytes:
    """The EIP-712 digest the sender signs (see the module docstring)."""
    struct_hash = keccak256(
        ENVELOPE_TYPEHASH
        + word(version)
        + word(namespace)
        + word(key_epoch)
        + bytes(12)
        + sender
        + word(expiry_height)
        + word(max_fee)
        + keccak256(encode(ciphertext))
        + payload_hash
    )
    return keccak256(b"\x19\x01" + domain.separator() + struct_hash)


def _digest_of(domain: Domain, envelope: Envelope) -> bytes:
    return envelope_digest(
        domain,
        envelope.version,
        envelope.namespace,
        envelope.key_epoch,
        envelope.sender,
        envelope.expiry_height,
        envelope.max_fee,
        envelope.ciphertext,
        envelope.payload_hash,
    )


def seal(
    key: PrivateKey,
    domain: Domain,
    public_key: Point,
    key_epoch: int,
    expiry_height: int,
    max_fee: int,
    tx: Transaction,
    rng: RandomBytes | None = None,
) -> Envelope:
    """Encrypt `tx` (signed by `key`) into an envelope signed by `key`.

    Client side; raises ValueError if `tx` is not `key`'s, is for another
    chain, or its fee exceeds `max_fee`."""
    if tx.chain_id != domain.chain_id:
        raise ValueError("the transaction is for another chain")
    if tx.fee > max_fee:
        raise ValueError("the transaction's fee exceeds max_fee")
    if recover_sender(tx, domain) != key.address:
        raise ValueError("the transaction is not signed by this key")
    blind = rng(BLIND_BYTES) if rng is not None else secrets.token_bytes(BLIND_BYTES)
    inner = encode_transaction(tx)
    sender = bytes(key.address)
    label = envelope_label(domain.chain_id, tx.namespace, key_epoch, sender, expiry_height)
    ciphertext = encrypt(public_key, blind + inner, label, rng)
    payload_hash = payload_commitment(blind, inner, sender, tx.nonce)
    digest = envelope_digest(
        domain,
        ENVELOPE_VERSION,
        tx.namespace,
        key_epoch,
        sender,
        expiry_height,
        max_fee,
        ciphertext,
        payload_hash,
    )
    return Envelope(
        version=ENVELOPE_VERSION,
        chain_id=domain.chain_id,
        namespace=tx.namespace,
        key_epoch=key_epoch,
        sender=sender,
        expiry_height=expiry_height,
        max_fee=max_fee,
        ciphertext=ciphertext,
        payload_hash=payload_hash,
        signature=bytes(key.sign_digest(digest)),
    )


def label_of(envelope: Envelope) -> bytes:
    return envelope_label(
        envelope.chain_id,
        envelope.namespace,
        envelope.key_epoch,
        envelope.sender,
        envelope.expiry_height,
    )


def open_envelope(
    data: bytes,
    domain: Domain,
    public_key: Point,
    key_epoch: int,
    height: int,
    proofs: CiphertextProofCache | None = None,
) -> Envelope:
    """Decode and check an envelope for ordering at `height`; raise an
    InvalidEnvelope subclass at the first check that fails:

    size (before parsing), canonical structure and version, chain, key epoch,
    expiry (height <= expiry_height), the signature recovers `sender`, the
    ciphertext's proof holds under the label (`proofs`: a ciphertext found
    there was checked before; one that passes is added)."""
    envelope = decode_envelope(data)
    if envelope.chain_id != domain.chain_id:
        raise WrongChain(f"envelope is for chain {envelope.chain_id}, not {domain.chain_id}")
    if envelope.key_epoch != key_epoch:
        raise WrongKeyEpoch(f"envelope is for key epoch {envelope.key_epoch}, not {key_epoch}")
    return _check_opened(envelope, domain, public_key, height, proofs)


def open_envelope_of_any_epoch(
    data: bytes,
    domain: Domain,
    keys: Mapping[int, Point],
    height: int,
    proofs: CiphertextProofCache | None = None,
) -> Envelope:
    """`open_envelope` for an envelope of any key epoch in `keys` (key epoch ->
    that epoch's network key), its proof checked under its own epoch's key: how
    a peer's batch is checked on a chain with a key per validator-set epoch (a
    validator ahead of the others must not refuse an honest batch made before
    the switch). A key epoch not in `keys` raises WrongKeyEpoch."""
    envelope = decode_envelope(data)
    if envelope.chain_id != domain.chain_id:
        raise WrongChain(f"envelope is for chain {envelope.chain_id}, not {domain.chain_id}")
    public_key = keys.get(envelope.key_epoch)
    if public_key is None:
        raise WrongKeyEpoch(f"envelope is for key epoch {envelope.key_epoch}, which has no key")
    return _check_opened(envelope, domain, public_key, height, proofs)


def _check_opened(
    envelope: Envelope,
    domain: Domain,
    public_key: Point,
    height: int,
    proofs: CiphertextProofCache | None,
) -> Envelope:
    """The checks after chain and key epoch: expiry, signature, ciphertext proof."""
    if height > envelope.expiry_height:
        raise ExpiredEnvelope(f"envelope expired at height {envelope.expiry_height}")
    try:
        signer = recover_address(_digest_of(domain, envelope), envelope.signature)
    except InvalidSignature as exc:
        raise BadEnvelopeSignature(str(exc)) from exc
    if signer != envelope.sender:
        raise BadEnvelopeSignature("the signature does not recover the envelope's sender")
    if not verify_ciphertext(public_key, envelope.ciphertext, label_of(envelope), proofs):
        raise InvalidCiphertextProof("the ciphertext's proof fails under the envelope's label")
    return envelope


# -- after decryption ---------------------------------------------------------------

REVEAL_DECRYPTION: Final = "decryption"
REVEAL_SHORT_PLAINTEXT: Final = "short_plaintext"
REVEAL_MALFORMED_TX: Final = "malformed_inner_tx"
REVEAL_WRONG_CHAIN: Final = "inner_chain_mismatch"
REVEAL_WRONG_NAMESPACE: Final = "inner_namespace_mismatch"
REVEAL_FEE_ABOVE_MAX: Final = "inner_fee_above_max"
REVEAL_BAD_SIGNATURE: Final = "inner_signature"
REVEAL_WRONG_SENDER: Final = "sender_mismatch"
REVEAL_WRONG_PAYLOAD_HASH: Final = "payload_hash_mismatch"


@dataclass(frozen=True, slots=True)
class RevealFailed:
    """A decrypted envelope that yields no transaction; `reason` is one of the
    REVEAL_* constants. Every node gets the same reason for the same envelope."""

    reason: str


def reveal(
    envelope: Envelope, decrypted: bytes | DecryptionFailed, domain: Domain
) -> Transaction | RevealFailed:
    """The inner transaction, checked against the envelope, in this order:
    decryption succeeded, the plaintext holds a blind and a canonical signed
    transaction for the envelope's chain and namespace, with a fee at most
    max_fee, signed by the envelope's sender, and the payload hash matches."""
    if isinstance(decrypted, DecryptionFailed):
        return RevealFailed(REVEAL_DECRYPTION)
    if len(decrypted) <= BLIND_BYTES:
        return RevealFailed(REVEAL_SHORT_PLAINTEXT)
    blind, inner = decrypted[:BLIND_BYTES], decrypted[BLIND_BYTES:]
    try:
        tx = decode_transaction(inner)
    except InvalidTransaction:
        return RevealFailed(REVEAL_MALFORMED_TX)
    if tx.chain_id != envelope.chain_id:
        return RevealFailed(REVEAL_WRONG_CHAIN)
    if tx.namespace != envelope.namespace:
        return RevealFailed(REVEAL_WRONG_NAMESPACE)
    if tx.fee > envelope.max_fee:
        return RevealFailed(REVEAL_FEE_ABOVE_MAX)
    try:
        sender = recover_sender(tx, domain)
    except InvalidTransaction:
        return RevealFailed(REVEAL_BAD_SIGNATURE)
    if sender != envelope.sender:
        return RevealFailed(REVEAL_WRONG_SENDER)
    if payload_commitment(blind, inner, envelope.sender, tx.nonce) != envelope.payload_hash:
        return RevealFailed(REVEAL_WRONG_PAYLOAD_HASH)
    return tx
