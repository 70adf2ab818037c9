"""Consensus messages, their wire codec, and structural checks.

Wire format: msgpack arrays (msgspec `array_like` structs), the first element
a small integer tag naming the message type. The codec caps the raw size
before decoding, msgspec enforces every field's type and length bound while
decoding, and `check_well_formed` enforces the structural rules that need more
than one field. Membership and signatures are checked by the core, which knows
the validator set. Signed digests come from `consensus.encoding`, never from
these bytes.
"""

from __future__ import annotations

import itertools
from enum import IntEnum
from typing import Annotated

import msgspec

from consensus.encoding import block_hash
from consensus.limits import (
    MAX_BLOCKS_PER_RESPONSE,
    MAX_CARRIED_NULLIFICATIONS,
    MAX_CERTIFICATES_PER_RESPONSE,
    MAX_EPOCH_TAIL_BLOCKS,
    MAX_MESSAGE_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_SYNC_BLOCKS,
    MAX_VALIDATORS,
    U64_MAX,
)
from consensus.types import ZERO_DIGEST, Digest, Height, ValidatorIndex, View


class VoteKind(IntEnum):
    NOTARIZE = 1  # "this block is a valid extension for this view"
    NULLIFY = 2  # "this view timed out for me"
    FINALIZE = 3  # "I saw this block notarized and never nullified its view"


Bytes32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
SignatureBytes = Annotated[bytes, msgspec.Meta(min_length=65, max_length=65)]
U64 = Annotated[int, msgspec.Meta(ge=0, le=U64_MAX)]
Index = Annotated[int, msgspec.Meta(ge=0, lt=MAX_VALIDATORS)]
Kind = Annotated[int, msgspec.Meta(ge=1, le=3)]


class MalformedMessage(ValueError):
    """Bytes that are not a well-formed consensus message (size, type or structure)."""


class Block(msgspec.Struct, frozen=True, array_like=True):
    """A proposed block. Its identity is `digest()`, an EIP-712 struct hash."""

    view: U64
    height: U64
    parent: Bytes32
    proposer: Index
    payload: Annotated[bytes, msgspec.Meta(max_length=MAX_PAYLOAD_BYTES)]

    def digest(self) -> Digest:
        return block_hash(
            View(self.view),
            Height(self.height),
            Digest(self.parent),
            self.payload,
            ValidatorIndex(self.proposer),
        )


class Vote(msgspec.Struct, frozen=True, array_like=True, tag=1):
    kind: Kind
    view: U64
    height: U64
    block: Bytes32
    signer: Index
    signature: SignatureBytes


class Certificate(msgspec.Struct, frozen=True, array_like=True, tag=2):
    """A quorum of votes of one kind for one (view, height, block).

    Notarization, nullification and finalization certificates share this shape;
    signers are strictly increasing validator indices, one signature each.
    """

    kind: Kind
    view: U64
    height: U64
    block: Bytes32
    signers: Annotated[list[Index], msgspec.Meta(min_length=1, max_length=MAX_VALIDATORS)]
    signatures: Annotated[
        list[SignatureBytes], msgspec.Meta(min_length=1, max_length=MAX_VALIDATORS)
    ]


class Proposal(msgspec.Struct, frozen=True, array_like=True, tag=3):
    """A leader's block, its notarize signature, and the certificates justifying it.

    `parent` is the notarization (or finalization) of the parent block; it is
    None only for a block on top of genesis. Every view strictly between the
    parent's view and this block's view must be nullified; `skipped` carries the
    nullifications of the highest of those views (at most
    MAX_CARRIED_NULLIFICATIONS, consecutive, ending just below the block's view)
    and voters fetch any others they lack.
    """

    block: Block
    signature: SignatureBytes
    parent: Certificate | None
    skipped: Annotated[list[Certificate], msgspec.Meta(max_length=MAX_CARRIED_NULLIFICATIONS)]


class BlockRequest(msgspec.Struct, frozen=True, array_like=True, tag=4):
    """Ask for the block with `digest` and up to `max_count - 1` of its ancestors."""

    digest: Bytes32
    max_count: Annotated[int, msgspec.Meta(ge=1, le=MAX_BLOCKS_PER_RESPONSE)]


class BlockResponse(msgspec.Struct, frozen=True, array_like=True, tag=5):
    """Blocks in descending height, each the parent of the one before."""

    blocks: Annotated[list[Block], msgspec.Meta(max_length=MAX_BLOCKS_PER_RESPONSE)]


class SyncRequest(msgspec.Struct, frozen=True, array_like=True, tag=6):
    """Ask for committed blocks from `from_height` on (forward catch-up sync)."""

    from_height: Annotated[int, msgspec.Meta(ge=1, le=U64_MAX)]
    max_count: Annotated[int, msgspec.Meta(ge=1, le=MAX_BLOCKS_PER_RESPONSE)]


class SyncResponse(msgspec.Struct, frozen=True, array_like=True, tag=7):
    """Consecutive committed blocks, ascending, and a finalization of the last one.

    The finalization certifies the last block; the hash chain certifies the rest.
    The first block is normally the one asked for; when the finalization that
    commits it certifies a block too far above to fit one response, the blocks
    are the top of that range instead and the asker fetches the rest backwards.
    """

    blocks: Annotated[list[Block], msgspec.Meta(min_length=1, max_length=MAX_SYNC_BLOCKS)]
    finalization: Certificate


class CertificateRequest(msgspec.Struct, frozen=True, array_like=True, tag=8):
    """Ask for the notarizations and nullifications of views `first_view` ..
    `last_view` (inclusive): a voter missing a skipped view's nullification, or a
    leader that cannot find its parent, asks a peer for them."""

    first_view: Annotated[int, msgspec.Meta(ge=1, le=U64_MAX)]
    last_view: Annotated[int, msgspec.Meta(ge=1, le=U64_MAX)]


class CertificateResponse(msgspec.Struct, frozen=True, array_like=True, tag=9):
    """Certificates the responder holds for views of a CertificateRequest."""

    certificates: Annotated[
        list[Certificate], msgspec.Meta(max_length=MAX_CERTIFICATES_PER_RESPONSE)
    ]


Message = (
    Vote
    | Certificate
    | Proposal
    | BlockRequest
    | BlockResponse
    | SyncRequest
    | SyncResponse
    | CertificateRequest
    | CertificateResponse
)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode_message(message: Message) -> bytes:
    return _encoder.encode(message)


def decode_message(data: bytes, *, anchored: bool = False) -> Message:
    """Decode and structurally check one message; raise MalformedMessage otherwise.

    `anchored`: the message belongs to an epoch after the first, whose chain
    starts above an anchor of any height, so a proposal without a parent
    certificate may have any height (the core checks it against its anchor)."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        message = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedMessage(f"undecodable message: {exc}") from exc
    check_well_formed(message, anchored=anchored)
    return message


def check_vote_shape(kind: int, view: int, height: int, block: bytes) -> None:
    if view < 1:
        raise MalformedMessage("view must be at least 1")
    if kind == VoteKind.NULLIFY:
        if height != 0 or block != ZERO_DIGEST:
            raise MalformedMessage("a nullify vote names no block (height 0, zero digest)")
    elif height < 1:
        raise MalformedMessage("a notarize or finalize vote names a block of height >= 1")


def check_certificate_shape(cert: Certificate) -> None:
    check_vote_shape(cert.kind, cert.view, cert.height, cert.block)
    if len(cert.signers) != len(cert.signatures):
        raise MalformedMessage("certificate has a different number of signers and signatures")
    if any(a >= b for a, b in zip(cert.signers, cert.signers[1:], strict=False)):
        raise MalformedMessage("certificate signers must be strictly increasing")


def check_proposal_shape(proposal: Proposal, *, anchored: bool = False) -> None:
    block = proposal.block
    if block.view < 1 or block.height < 1:
        raise MalformedMessage("a proposed block has view >= 1 and height >= 1")
    parent_view = 0
    if proposal.parent is None:
        if block.height != 1 and not anchored:
            raise MalformedMessage("only a block of height 1 may omit its parent certificate")
    else:
        parent = proposal.parent
        check_certificate_shape(parent)
        if parent.kind == VoteKind.NULLIFY:
            raise MalformedMessage("parent certificate must be a notarization or finalization")
        if parent.block != block.parent or parent.height + 1 != block.height:
            raise MalformedMessage("parent certificate does not certify the block's parent")
        if parent.view >= block.view:
            raise MalformedMessage("parent view must be below the block's view")
        parent_view = parent.view
    expected = block.view - len(proposal.skipped)
    if expected <= parent_view:
        raise MalformedMessage("skipped nullifications reach down to the parent's view")
    for cert in proposal.skipped:
        check_certificate_shape(cert)
        if cert.kind != VoteKind.NULLIFY:
            raise MalformedMessage("skipped views are justified by nullifications only")
        if cert.view != expected:
            raise MalformedMessage(
                "skipped nullifications must cover consecutive views just below the block's"
            )
        expected += 1


def check_well_formed(message: Message, *, anchored: bool = False) -> None:
    match message:
        case Vote():
            check_vote_shape(message.kind, message.view, message.height, message.block)
        case Certificate():
            check_certificate_shape(message)
        case Proposal():
            check_proposal_shape(message, anchored=anchored)
        case BlockRequest() | SyncRequest():
            pass
        case CertificateRequest():
            if message.last_view < message.first_view:
                raise MalformedMessage("certificate request names an empty range")
            if message.last_view - message.first_view >= MAX_CERTIFICATES_PER_RESPONSE:
                raise MalformedMessage("certificate request names too many views")
        case CertificateResponse():
            for cert in message.certificates:
                check_certificate_shape(cert)
        case SyncResponse():
            check_certificate_shape(message.finalization)
            blocks = message.blocks
            for parent, child in itertools.pairwise(blocks):
                if child.parent != parent.digest() or child.height != parent.height + 1:
                    raise MalformedMessage("sync blocks must form an ascending chain")
            last = blocks[-1]
            final = message.finalization
            if (
                final.kind != VoteKind.FINALIZE
                or final.block != last.digest()
                or final.height != last.height
                or final.view != last.view
            ):
                raise MalformedMessage("sync finalization must certify the last block")
        case BlockResponse():
            for child, parent in zip(message.blocks, message.blocks[1:], strict=False):
                if child.parent != parent.digest() or child.height != parent.height + 1:
                    raise MalformedMessage("response blocks must form a descending chain")


# ---- epochs ------------------------------------------------------------------------
# Every epoch runs its own consensus instance, and views restart at 1 in each, so
# a message means something only together with its epoch. Drivers that run more
# than one epoch send the messages above inside an EpochEnvelope and route it by
# `epoch`; the per-epoch signing domain makes a vote or certificate moved into
# another epoch's envelope fail verification there anyway.


class EpochEndProof(msgspec.Struct, frozen=True, array_like=True, tag=10):
    """The proof that epoch `epoch` ended with its block at `last_height`.

    `finalization` is the certificate that committed that block: it certifies
    the block itself or a block of the epoch's empty tail above it. `tail` holds
    the tail blocks from the certified one down to `last_height + 1`, newest
    first (empty when the finalization certifies the last block). Checked by
    `consensus.epochs.verify_epoch_end`.
    """

    epoch: U64
    last_height: U64
    finalization: Certificate
    tail: Annotated[list[Block], msgspec.Meta(max_length=MAX_EPOCH_TAIL_BLOCKS)]


class EpochEnvelope(msgspec.Struct, frozen=True, array_like=True, tag=11):
    """One consensus message (its wire bytes) of epoch `epoch`."""

    epoch: U64
    message: Annotated[bytes, msgspec.Meta(max_length=MAX_MESSAGE_BYTES)]


class EpochEndRequest(msgspec.Struct, frozen=True, array_like=True, tag=12):
    """Ask a peer for the EpochEndProof of `epoch` (a validator joining the next
    epoch, or one that fell behind an epoch boundary)."""

    epoch: U64


EpochWire = EpochEnvelope | EpochEndProof | EpochEndRequest

_epoch_decoder: msgspec.msgpack.Decoder[EpochWire] = msgspec.msgpack.Decoder(EpochWire)

MAX_EPOCH_WIRE_BYTES = MAX_MESSAGE_BYTES + 64
"""An envelope adds its tag, the epoch and a length prefix to one message."""


def encode_epoch_wire(item: EpochWire) -> bytes:
    return _encoder.encode(item)


def decode_epoch_wire(data: bytes) -> EpochWire:
    """Decode the outer layer of an epoch-routed message; raise MalformedMessage.

    The inner message of an envelope stays bytes: the driver decodes it with
    `decode_message(..., anchored=epoch > 0)` once it knows the epoch is one it
    runs. A proof's certificate and tail are checked by `verify_epoch_end`."""
    if len(data) > MAX_EPOCH_WIRE_BYTES:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds {MAX_EPOCH_WIRE_BYTES}")
    try:
        return _epoch_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedMessage(f"undecodable epoch message: {exc}") from exc
