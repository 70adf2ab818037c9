"""decode_strict: the size cap before parsing, then structure, then canonical form."""

from __future__ import annotations

import msgspec
import pytest

from sequencer_net.canonical import decode_strict


class Point(msgspec.Struct, array_like=True):
    x: int
    y: int


class Malformed(ValueError):
    pass


class Oversized(Malformed):
    pass


DECODER = msgspec.msgpack.Decoder(Point)


def decode(data: bytes) -> Point:
    return decode_strict(
        data, DECODER, limit=16, what="point", malformed=Malformed, oversized=Oversized
    )


def test_canonical_bytes_decode() -> None:
    assert decode(msgspec.msgpack.encode(Point(1, 2))) == Point(1, 2)


def test_oversized_input_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(Oversized, match="point of 17 bytes exceeds the limit of 16"):
        decode(b"\xff" * 17)  # not msgpack at all: the size is what is refused


def test_undecodable_and_non_canonical_input_is_malformed() -> None:
    with pytest.raises(Malformed, match="undecodable point") as caught:
        decode(b"\xc1")
    assert not isinstance(caught.value, Oversized)
    with pytest.raises(Malformed, match="not canonically encoded"):
        decode(b"\x92\xcc\x01\x02")  # x as uint8 though it fits a positive fixint


def test_without_an_oversized_class_the_malformed_one_is_raised() -> None:
    with pytest.raises(Malformed, match="exceeds"):
        decode_strict(b"\x00" * 9, DECODER, limit=8, what="point", malformed=Malformed)
