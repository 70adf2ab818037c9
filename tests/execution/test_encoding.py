"""Canonical encoding, and DEX payloads at the decode edge."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sequencer_net.execution.encoding import (
    NonCanonicalEncoding,
    decode_canonical,
    encode,
    to_wire,
)
from sequencer_net.execution.exceptions import MalformedTransaction
from sequencer_net.execution.records import Position, TimeInForce
from sequencer_net.execution.transactions import (
    Deposit,
    ListMarket,
    PlaceOrder,
    Transfer,
    decode_payload,
    encode_payload,
)
from tests.execution.execution_harness import W, perp_params, sub

big_ints = st.integers(min_value=-(2**200), max_value=2**200)


@given(a=big_ints, b=big_ints, c=big_ints, d=big_ints)
def test_big_integers_round_trip_canonically(a: int, b: int, c: int, d: int) -> None:
    value = Position(a, b, c, d)
    data = encode(value)
    assert decode_canonical(data, Position) == value
    # The fast path (msgspec native) and the slow path agree wherever both apply.
    assert data == msgspec.msgpack.encode(to_wire(value))


def test_small_integer_written_as_extension_is_rejected() -> None:
    sneaky = msgspec.msgpack.encode([msgspec.msgpack.Ext(1, (5).to_bytes(1, "big")), 0, 0, 0])
    with pytest.raises(NonCanonicalEncoding):
        decode_canonical(sneaky, Position)


def test_non_minimal_msgpack_is_rejected() -> None:
    canonical = encode(Position(1, 2, 3, 4))
    padded = b"\x96\xcd\x00\x01" + canonical[2:]  # 1 written as uint16
    assert msgspec.msgpack.decode(padded) == [1, 2, 3, 4, 0, 0]
    with pytest.raises(NonCanonicalEncoding):
        decode_canonical(padded, Position)


def test_dex_payloads_round_trip_canonically() -> None:
    payloads = [
        Transfer(0, sub("bob"), 10 * W),
        ListMarket(1, perp_params()),
        PlaceOrder(3, 2**32 - 1, 1, 0, W, TimeInForce.IMMEDIATE_OR_CANCEL, False, True),
    ]
    for payload in payloads:
        data = encode_payload(payload)
        assert decode_payload(data) == payload
        assert encode_payload(decode_payload(data)) == data


def test_tampered_or_garbage_payloads_are_malformed_never_a_crash() -> None:
    data = encode_payload(ListMarket(1, perp_params()))
    for bad in (
        b"",
        b"\xc1",  # never-used msgpack byte
        data[:-1],
        data + b"\x00",
        b"\x91" * 999,  # nesting: RecursionError inside msgspec
        encode([5, 0, 2**32, bytes(32)]),  # CancelOrder with a 5-byte market id
        encode([5, 256, 1, bytes(32)]),  # subaccount number beyond one byte
        encode([5, 0, 1, bytes(31)]),  # order id of 31 bytes
        encode([1, bytes(21), 2**300]),  # an integer wider than int256
        encode([99, 1, 2]),  # unknown tag
    ):
        with pytest.raises(MalformedTransaction):
            decode_payload(bad)


def test_int256_is_the_widest_integer_a_payload_may_carry() -> None:
    assert decode_payload(encode([1, bytes(21), 2**255 - 1])) == Deposit(bytes(21), 2**255 - 1)
    with pytest.raises(MalformedTransaction):
        decode_payload(encode([1, bytes(21), 2**256]))  # 33 bytes with the sign bit


def test_a_struct_type_that_once_held_a_big_integer_still_encodes_small_values_the_same() -> None:
    wide = Position(2**70, -(2**70), 3, 4)
    small = Position(1, -2, 3, 4)
    assert encode(wide) == msgspec.msgpack.encode(to_wire(wide))
    # Position now takes the slow path first: the bytes are msgspec's own.
    assert encode(small) == msgspec.msgpack.encode(small)
    assert decode_canonical(encode(small), Position) == small
