"""Batch availability: acknowledgements, certificates, and the book of held ones.

A validator that received a batch from its author and stored it durably signs
an acknowledgement (`BatchAck`) for the author: the EIP-712 digest of (batch
digest, author index, author round, verified) under the genesis-bound domain
(consensus/encoding.py `batch_ack_digest`), where the round is the batch's own
`sequence` and `verified` says whether the signer checked every transaction's
signature and carried sender in the batch. It acknowledges at most one batch
per (author, round), ever (it may send that one batch's ack twice: first
unverified, later verified). Acknowledgements form a `BatchCertificate` when
they carry more than two thirds of the voting power, the author's own among
them, AND the verified ones carry more than f (`max_faulty_weight`): at least
f+1 honest validators then hold the batch, so it can be fetched by digest by
anyone, its author cannot have a second certified batch for the same round,
and at least one honest validator verified it, so every validator may trust
its carried senders without recovering a signature.

Who verifies at once (`designated_verifiers`): the author, then the members
after it by index (wrapping), until their weight exceeds f. With four equal
validators that is the author and the next one. The others store and
acknowledge unverified, and verify only if the batch is still uncertified
after a bound (sequencer_net/node/certifying.py), so a missing or silent
designated verifier costs time, never liveness.

Wire format (the CERT channel, and the certificate request): one kind byte,
then a canonical msgpack array::

    0x01 || [batch, author, round, signer, signature, verified]      a BatchAck
    0x02 || [batch, author, round, [signer...], [signature...], [verified...]]
                                                                     a BatchCertificate

Sizes are checked before decoding; a certificate's signers are strictly
increasing member indices (so it has one encoding and no duplicate), with one
signature and one verified flag (a msgpack boolean) each.

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
"""One encoded acknowledgement: kind byte, 32-byte digest, three integers, a
65-byte signature and a boolean (about 111 bytes)."""
MAX_CERTIFICATE_BYTES: Final = 64 + MAX_VALIDATORS * (SIGNATURE_LENGTH + 6)
"""One encoded certificate with a signature and flag from every one of MAX_VALIDATORS."""
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


class InsufficientVerifiedPower(InvalidCertMessage):
    """A certificate's verified signers hold no more than f of the voting power:
    no honest validator need have checked the batch's signatures."""


class BatchAck(msgspec.Struct, frozen=True, array_like=True):
    batch: _Digest32
    author: _Index
    round: _Round
    signer: _Index
    signature: _Signature
    verified: bool


class BatchCertificate(msgspec.Struct, frozen=True, array_like=True):
    batch: _Digest32
    author: _Index
    round: _Round
    signers: Annotated[list[_Index], msgspec.Meta(min_length=1, max_length=MAX_VALIDATORS)]
    signatures: Annotated[list[_Signature], msgspec.Meta(min_length=1, max_length=MAX_VALIDATORS)]
    verified: Annotated[list[bool], msgspec.Meta(min_length=1, max_length=MAX_VALIDATORS)]


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


def designated_verifiers(validators: ValidatorSet, author: int) -> frozenset[int]:
    """The validators that verify `author`'s batches at once: the author, then
    the members after it by index (wrapping), until their weight exceeds f.
    Deterministic from the validator set and the author alone."""
    n = len(validators)
    if not validators.contains(author):
        return frozenset()
    chosen: list[ValidatorIndex] = []
    for step in range(n):
        chosen.append(ValidatorIndex((author + step) % n))
        if validators.weight_of(chosen) > validators.max_faulty_weight:
            break
    return frozenset(chosen)


def sign_ack(
    key: PrivateKey,
    separator: bytes,
    signer: int,
    batch: bytes,
    author: int,
    round_: int,
    verified: bool,
) -> BatchAck:
    digest = batch_ack_digest(separator, batch, author, round_, verified)
    return BatchAck(batch, author, round_, signer, bytes(key.sign_digest(digest)), verified)


def verify_ack(validators: ValidatorSet, separator: bytes, ack: BatchAck, recover: Recover) -> None:
    """The signer is a member and its signature covers (batch, author, round, verified)."""
    if not validators.contains(ack.signer) or not validators.contains(ack.author):
        raise UnknownSigner(f"signer {ack.signer} or author {ack.author} is not a validator")
    digest = batch_ack_digest(separator, ack.batch, ack.author, ack.round, ack.verified)
    if recover(digest, ack.signature) != validators.address(ValidatorIndex(ack.signer)):
        raise BadAckSignature(f"signature of {ack.signer} does not verify")


def verify_certificate(
    validators: ValidatorSet, separator: bytes, cert: BatchCertificate, recover: Recover
) -> None:
    """Distinct members (strictly increasing indices), one valid signature each
    over (batch, author, round, its verified flag), holding a quorum of the
    voting power, the verified ones more than f of it."""
    if not len(cert.signers) == len(cert.signatures) == len(cert.verified):
        raise MalformedCertMessage("signers, signatures and flags differ in number")
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
    verified = validators.weight_of([i for i, v in zip(signers, cert.verified, strict=True) if v])
    if verified <= validators.max_faulty_weight:
        raise InsufficientVerifiedPower(
            f"verified signers hold {verified}, not more than {validators.max_faulty_weight}"
        )
    digests = {
        flag: batch_ack_digest(separator, cert.batch, cert.author, cert.round, flag)
        for flag in (False, True)
    }
    for signer, signature, flag in zip(signers, cert.signatures, cert.verified, strict=True):
        if recover(digests[flag], signature) != validators.address(signer):
            raise BadAckSignature(f"signature of {signer} does not verify")


class AckCollector:
    """The acknowledgements of one own batch, until they form a certificate.
    Acks are verified by the caller (`verify_ack`); this only counts power.
    One ack per signer is kept: its first, or a verified one over an unverified."""

    def __init__(self, validators: ValidatorSet, batch: bytes, author: int, round_: int) -> None:
        self.validators = validators
        self.batch = batch
        self.author = author
        self.round = round_
        self._acks: dict[int, tuple[bytes, bool]] = {}

    def add(self, ack: BatchAck) -> BatchCertificate | None:
        """Count `ack`; the certificate once the acks hold a quorum and the
        verified ones more than f."""
        if (ack.batch, ack.author, ack.round) != (self.batch, self.author, self.round):
            return None
        prior = self._acks.get(ack.signer)
        if prior is None or (ack.verified and not prior[1]):
            self._acks[ack.signer] = (ack.signature, ack.verified)
        signers = sorted(self._acks)
        weight = self.validators.weight_of([ValidatorIndex(i) for i in signers])
        if weight < self.validators.quorum_weight:
            return None
        verified = [ValidatorIndex(i) for i in signers if self._acks[i][1]]
        if self.validators.weight_of(verified) <= self.validators.max_faulty_weight:
            return None
        return BatchCertificate(
            self.batch,
            self.author,
            self.round,
            signers,
            [self._acks[i][0] for i in signers],
            [self._acks[i][1] for i in signers],
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
