"""The wire codec: round trips, and every kind of malformed input is refused."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.limits import MAX_MESSAGE_BYTES
from consensus.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Certificate,
    MalformedMessage,
    Proposal,
    Vote,
    VoteKind,
    decode_message,
    encode_message,
)
from consensus.types import ZERO_DIGEST

SIG = b"\x01" * 65
D = b"\x02" * 32


def test_round_trip_of_every_message_type() -> None:
    block = Block(3, 2, D, 3, b"payload")
    parent = Certificate(VoteKind.NOTARIZE, 2, 1, D, [0, 1, 2], [SIG] * 3)
    messages = [
        Vote(VoteKind.NOTARIZE, 3, 2, D, 1, SIG),
        Vote(VoteKind.NULLIFY, 3, 0, ZERO_DIGEST, 1, SIG),
        parent,
        Proposal(block, SIG, parent, []),
        BlockRequest(D, 10),
        BlockResponse([block]),
    ]
    for message in messages:
        assert decode_message(encode_message(message)) == message


def test_oversized_bytes_are_refused_before_decoding() -> None:
    with pytest.raises(MalformedMessage, match="exceeds"):
        decode_message(b"\x00" * (MAX_MESSAGE_BYTES + 1))


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (Vote(VoteKind.NOTARIZE, 0, 1, D, 1, SIG), "view must be at least 1"),
        (Vote(VoteKind.NULLIFY, 3, 1, D, 1, SIG), "nullify vote names no block"),
        (Vote(VoteKind.FINALIZE, 3, 0, D, 1, SIG), "height >= 1"),
        (
            Certificate(VoteKind.NOTARIZE, 2, 1, D, [1, 0, 2], [SIG] * 3),
            "strictly increasing",
        ),
        (
            Certificate(VoteKind.NOTARIZE, 2, 1, D, [0, 1, 2], [SIG] * 2),
            "different number",
        ),
        (Proposal(Block(3, 2, D, 3, b""), SIG, None, []), "omit its parent"),
        (
            Proposal(
                Block(3, 2, D, 3, b""),
                SIG,
                Certificate(VoteKind.NOTARIZE, 2, 2, D, [0, 1, 2], [SIG] * 3),
                [],
            ),
            "does not certify",
        ),
        (
            Proposal(
                Block(3, 2, D, 3, b""),
                SIG,
                Certificate(VoteKind.NOTARIZE, 1, 1, D, [0, 1, 2], [SIG] * 3),
                [Certificate(VoteKind.NOTARIZE, 2, 1, D, [0, 1, 2], [SIG] * 3)],
            ),
            "nullifications only",
        ),
        (
            Proposal(
                Block(5, 2, D, 1, b""),
                SIG,
                Certificate(VoteKind.NOTARIZE, 1, 1, D, [0, 1, 2], [SIG] * 3),
                [Certificate(VoteKind.NULLIFY, 2, 0, ZERO_DIGEST, [0, 1, 2], [SIG] * 3)],
            ),
            "consecutive views just below",
        ),
        (
            BlockResponse([Block(3, 2, D, 3, b""), Block(2, 1, D, 2, b"")]),
            "descending chain",
        ),
    ],
)
def test_structurally_invalid_messages_are_refused(message: object, reason: str) -> None:
    data = msgspec.msgpack.encode(message)
    with pytest.raises(MalformedMessage, match=reason):
        decode_message(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        msgspec.msgpack.encode([99, 1, 2]),  # unknown tag
        msgspec.msgpack.encode([1, 1, 3, 2, D, 1, SIG[:64]]),  # short signature
        msgspec.msgpack.encode([1, 4, 3, 2, D, 1, SIG]),  # vote kind out of range
        msgspec.msgpack.encode([1, 1, -3, 2, D, 1, SIG]),  # negative view
        msgspec.msgpack.encode([1, 1, 2**63, 2, D, 1, SIG]),  # view out of range
        msgspec.msgpack.encode([4, D, 65]),  # asks for too many blocks
        msgspec.msgpack.encode([2, 1, 3, 2, D, [], []]),  # empty certificate
    ],
)
def test_undecodable_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_message(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_malformed_only(data: bytes) -> None:
    try:
        message = decode_message(data)
    except MalformedMessage:
        return
    assert decode_message(encode_message(message)) == message
