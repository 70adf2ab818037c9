"""Batch availability: acknowledgements, certificates, and the book of held ones.

A validator that received a batch from its author, verified every transaction
in it and stored it durably signs an acknowledgement (`BatchAck`) for the
author: the EIP-712 digest of (batch digest, author index, author round)
under the genesis-bound domain (consensus/encoding.py `batch_ack_digest`),
where the round is the batch's own `sequence`. It acknowledges at most one
batch per (author, round), ever. Acknowledgements carrying more than two
thirds of the voting power, the author's own among them, form a
`BatchCertificate`: at least f+1 honest validators then hold the batch, so it
can be fetched by digest by anyone, and its author cannot have a second
certified batch for the same round.

Wire format (the CERT channel, and the certificate request): one kind byte,
then a canonical msgpack array::

    0x01 || [batch, author, round, signer, signature]          a BatchAck
    0x02 || [batch, author, round, [signer...], [signature...]] a BatchCertificate

Sizes are checked before decoding; a certificate's signers are strictly
increasing member indices (so it has one encoding and no duplicate).

Pure: no trio, no network, no store. The shell is sequencer_net/node/certifying.py.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Final

import msgspec

from consensus.crypto import SIGNATURE_LENGTH, Address, PrivateKey
from consensus.encoding import batch_ack_digest
from consensus.limits import MAX_VALIDATORS, U64_MAX
from consensus.types import ValidatorIndex, ValidatorSet

MAX_ACK_BYTES: Final = 128
"""One encoded acknowledgement: kind byte, 32-byte digest, three integers and a
65-byte signature (about 110 bytes)."""
MAX_CERTIFICATE_BYTES: Final = 64 + MAX_VALIDATORS * (SIGNATURE_LENGTH + 5)
"""One encoded certificate with a signature from every one of MAX_VALIDATORS."""
MAX_HELD_CERTIFICATES: Final = 50_000
"""Certificates a validator keeps in memory; the oldest are forgotten first
(an included batch's certificate is dropped as soon as it is seen included)."""

Recover = Callable[[bytes, bytes], Address | None]
"""(digest, signature) -> the signing address, or None (SignatureVerifier.recover)."""

_Digest32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
_Signature = Annotated[
    bytes, msgspec.Meta(min_length=SIGNATURE_LENGTH, max_length=SIGNATURE_LENGTH)
]
_Index = Annotated[int, msgspec.Meta(ge=0, lt=MAX_VALIDATORS)]
_Round = Annotated[int, msgspec.Meta(ge=0, le=U64_MAX)]


class InvalidCertMessage(ValueError):
    """An acknowledgement or certificate that must be ignored; subclasses say why."""


class MalformedCertMessage(InvalidCertMessage):
    """Too long, an unknown kind, not canonical msgpack, or a field out of bounds."""


class UnknownSigner(InvalidCertMessage):
    """A signer index that is not a member of the validator set."""


class BadAckSignature(InvalidCertMessage):
    """A signature that does not recover the named signer's address."""


class UnsortedSigners(InvalidCertMessage):
    """A certificate's signers are not strictly increasing (or a signer repeats)."""


class InsufficientPower(InvalidCertMessage):
    """A certificate's signers hold no more than two thirds of the voting power."""


class BatchAck(msgspec.Struct, frozen=True, array_like=True):
    batch: _Digest32
    author: _Index
    round: _Round
    signer: _Index
    signature: _Signature


class BatchCertificate(msgspec.Struct, frozen=True, array_like=True):
    batch: _Digest32
    author: _Index
    round: _Round
    signers: Annotated[list[_Index], msgspec.Meta(min_length=1, max_length=MAX_VALIDATORS)]
    signatures: Annotated[list[_Signature], msgspec.Meta(min_length=1, max_length=MAX_VALIDATORS)]


class CertMessageKind(enum.IntEnum):
    ACK = 1
    CERTIFICATE = 2


_encoder = msgspec.msgpack.Encoder()
_ack_decoder = msgspec.msgpack.Decoder(BatchAck)
_cert_decoder = msgspec.msgpack.Decoder(BatchCertificate)


def encode_cert_message(message: BatchAck | BatchCertificate) -> bytes:
    kind = CertMessageKind.ACK if isinstance(message, BatchAck) else CertMessageKind.CERTIFICATE
    return bytes([kind]) + _encoder.encode(message)


def decode_cert_message(data: bytes) -> BatchAck | BatchCertificate:
    """Decode one CERT-channel message; raise MalformedCertMessage.

    Checks, in order: not empty, the kind byte, the size bound of that kind,
    msgpack structure and field bounds, canonical encoding."""
    if not data:
        raise MalformedCertMessage("empty message")
    kind, body = data[0], data[1:]
    decoder: msgspec.msgpack.Decoder[BatchAck] | msgspec.msgpack.Decoder[BatchCertificate]
    if kind == CertMessageKind.ACK:
        limit, decoder = MAX_ACK_BYTES, _ack_decoder
    elif kind == CertMessageKind.CERTIFICATE:
        limit, decoder = MAX_CERTIFICATE_BYTES, _cert_decoder
    else:
        raise MalformedCertMessage(f"unknown kind {kind}")
    if len(data) > limit:
        raise MalformedCertMessage(f"{len(data)} bytes, more than {limit}")
    try:
        message = decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedCertMessage(f"undecodable: {exc}") from exc
    if _encoder.encode(message) != body:
        raise MalformedCertMessage("not canonically encoded")
    return message


def decode_certificate(data: bytes) -> BatchCertificate:
    """A message that must be a certificate (answers to a certificate request)."""
    message = decode_cert_message(data)
    if not isinstance(message, BatchCertificate):
        raise MalformedCertMessage("an acknowledgement where a certificate was expected")
    return message


# ---- signing and verifying ---------------------------------------------------------------


def sign_ack(
    key: PrivateKey, separator: bytes, signer: int, batch: bytes, author: int, round_: int
) -> BatchAck:
    digest = batch_ack_digest(separator, batch, author, round_)
    return BatchAck(batch, author, round_, signer, bytes(key.sign_digest(digest)))


def verify_ack(validators: ValidatorSet, separator: bytes, ack: BatchAck, recover: Recover) -> None:
    """The signer is a member and its signature covers (batch, author, round)."""
    if not validators.contains(ack.signer) or not validators.contains(ack.author):
        raise UnknownSigner(f"signer {ack.signer} or author {ack.author} is not a validator")
    digest = batch_ack_digest(separator, ack.batch, ack.author, ack.round)
    if recover(digest, ack.signature) != validators.address(ValidatorIndex(ack.signer)):
        raise BadAckSignature(f"signature of {ack.signer} does not verify")


def verify_certificate(
    validators: ValidatorSet, separator: bytes, cert: BatchCertificate, recover: Recover
) -> None:
    """Distinct members (strictly increasing indices), one valid signature each
    over (batch, author, round), holding a quorum of the voting power."""
    if len(cert.signers) != len(cert.signatures):
        raise MalformedCertMessage("signers and signatures differ in number")
    if not validators.contains(cert.author):
        raise UnknownSigner(f"author {cert.author} is not a validator")
    if any(b <= a for a, b in zip(cert.signers, cert.signers[1:], strict=False)):
        raise UnsortedSigners("signers are not strictly increasing")
    if not all(validators.contains(i) for i in cert.signers):
        raise UnknownSigner("a signer is not a validator")
    signers = [ValidatorIndex(i) for i in cert.signers]
    if validators.weight_of(signers) < validators.quorum_weight:
        raise InsufficientPower(
            f"signers hold {validators.weight_of(signers)} of the {validators.quorum_weight} needed"
        )
    digest = batch_ack_digest(separator, cert.batch, cert.author, cert.round)
    for signer, signature in zip(signers, cert.signatures, strict=True):
        if recover(digest, signature) != validators.address(signer):
            raise BadAckSignature(f"signature of {signer} does not verify")


class AckCollector:
    """The acknowledgements of one own batch, until they form a certificate.
    Acks are verified by the caller (`verify_ack`); this only counts power."""

    def __init__(self, validators: ValidatorSet, batch: bytes, author: int, round_: int) -> None:
        self.validators = validators
        self.batch = batch
        self.author = author
        self.round = round_
        self._signatures: dict[int, bytes] = {}

    def add(self, ack: BatchAck) -> BatchCertificate | None:
        """Count `ack` (one per signer); the certificate once the acks hold a quorum."""
        if (ack.batch, ack.author, ack.round) != (self.batch, self.author, self.round):
            return None
        self._signatures.setdefault(ack.signer, ack.signature)
        signers = sorted(self._signatures)
        weight = self.validators.weight_of([ValidatorIndex(i) for i in signers])
        if weight < self.validators.quorum_weight:
            return None
        return BatchCertificate(
            self.batch,
            self.author,
            self.round,
            signers,
            [self._signatures[i] for i in signers],
        )


# ---- the book of held certificates -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeldCertificate:
    certificate: BatchCertificate
    first_view: int
    """The consensus view at which this validator first held the certificate:
    what "oldest first" and "overdue" are measured by (docs/consensus.md)."""
    first_ms: int = 0
    """This validator's monotonic clock (ms) when it first held it: "overdue"
    also needs this much time to have passed (docs/consensus.md)."""

    def order(self) -> tuple[int, int, int, bytes]:
        c = self.certificate
        return (self.first_view, c.author, c.round, c.batch)


class CertificateBook:
    """The certificates this validator holds, by batch digest, with the view
    each was first held at. Bounded: the oldest are forgotten first."""

    def __init__(self, limit: int = MAX_HELD_CERTIFICATES) -> None:
        self.limit = limit
        self._held: OrderedDict[bytes, HeldCertificate] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, batch: object) -> bool:
        return batch in self._held

    def get(self, batch: bytes) -> HeldCertificate | None:
        return self._held.get(batch)

    def add(self, cert: BatchCertificate, view: int, now_ms: int = 0) -> bool:
        """Hold a verified certificate from `view` (and monotonic time `now_ms`)
        on; False if already held."""
        if cert.batch in self._held:
            return False
        self._held[cert.batch] = HeldCertificate(cert, view, now_ms)
        while len(self._held) > self.limit:
            self._held.popitem(last=False)
        return True

    def drop(self, batches: Iterable[bytes]) -> None:
        for batch in batches:
            self._held.pop(batch, None)

    def restart_views(self) -> None:
        """Views restart at 1 in a new validator-set epoch: every held certificate
        counts from view 0 of it on (its time bound and its order are kept)."""
        for batch, held in self._held.items():
            self._held[batch] = HeldCertificate(held.certificate, 0, held.first_ms)

    def oldest_first(self) -> list[HeldCertificate]:
        """Every held certificate, by (first view, author, round, digest)."""
        return sorted(self._held.values(), key=HeldCertificate.order)

    def overdue(
        self, view: int, delay_views: int, now_ms: int = 0, delay_ms: int = 0
    ) -> list[HeldCertificate]:
        """Those held for at least `delay_views` views at `view` and at least
        `delay_ms` at `now_ms`, oldest first."""
        return [
            h
            for h in self.oldest_first()
            if view - h.first_view >= delay_views and now_ms - h.first_ms >= delay_ms
        ]
