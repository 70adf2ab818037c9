"""secp256k1 helpers: strict decoding, arithmetic, hashing to the curve."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sequencer_net.fairness.group import (
    FIELD_PRIME,
    GENERATOR,
    ORDER,
    IdentityPoint,
    InvalidPoint,
    InvalidScalar,
    add,
    decode_point,
    decode_scalar,
    encode_point,
    encode_scalar,
    hash_to_curve,
    hash_to_scalar,
    lagrange_at_zero,
    mul,
    mul_base,
    neg,
    sub,
)


def test_arithmetic_agrees_with_scalars() -> None:
    a, b = 12345, ORDER - 7
    assert encode_point(add(mul_base(a), mul_base(b))) == encode_point(mul_base(a + b))
    assert encode_point(mul(mul_base(a), b)) == encode_point(mul_base(a * b))
    assert encode_point(neg(mul_base(a))) == encode_point(mul_base(ORDER - a))
    assert encode_point(sub(mul_base(a), mul_base(b))) == encode_point(mul_base(a - b))
    assert encode_point(mul_base(1)) == encode_point(GENERATOR)


def test_identity_results_raise_a_named_error() -> None:
    with pytest.raises(IdentityPoint):
        add(mul_base(5), mul_base(ORDER - 5))
    with pytest.raises(IdentityPoint):
        mul(GENERATOR, ORDER)
    with pytest.raises(IdentityPoint):
        mul_base(0)


def test_decode_point_accepts_only_compressed_curve_points() -> None:
    point = mul_base(99)
    assert encode_point(decode_point(encode_point(point))) == encode_point(point)
    uncompressed = point.format(compressed=False)
    with pytest.raises(InvalidPoint):
        decode_point(uncompressed)
    with pytest.raises(InvalidPoint):
        decode_point(b"\x04" + encode_point(point)[1:])
    with pytest.raises(InvalidPoint):
        decode_point(b"\x02" + bytes(32))  # x = 0: 0^3 + 7 is not a square
    with pytest.raises(InvalidPoint):
        decode_point(b"\x02" + FIELD_PRIME.to_bytes(32, "big"))  # x not reduced
    with pytest.raises(InvalidPoint):
        decode_point(encode_point(point)[:-1])
    with pytest.raises(InvalidPoint):
        decode_point(bytearray(encode_point(point)))  # type: ignore[arg-type]


def test_decode_scalar_is_canonical() -> None:
    assert decode_scalar(encode_scalar(ORDER - 1)) == ORDER - 1
    with pytest.raises(InvalidScalar):
        decode_scalar(ORDER.to_bytes(32, "big"))
    with pytest.raises(InvalidScalar):
        decode_scalar(bytes(31))


def test_hashing_is_deterministic_and_domain_separated() -> None:
    first = hash_to_curve(b"tag", b"message")
    assert encode_point(first) == encode_point(hash_to_curve(b"tag", b"message"))
    assert encode_point(first) != encode_point(hash_to_curve(b"tag2", b"message"))
    assert encode_point(first)[0] == 2
    # the framing is injective: moving a byte between tag and message changes the result
    assert encode_point(hash_to_curve(b"ta", b"gmessage")) != encode_point(first)
    assert hash_to_scalar(b"t", b"ab", b"c") != hash_to_scalar(b"t", b"a", b"bc")


def test_lagrange_interpolates_the_constant_term() -> None:
    def f(z: int) -> int:
        return (777 + 31337 * z + 42 * z * z) % ORDER

    for indices in ([1, 2, 3], [2, 5, 9], [7, 3, 4]):
        lambdas = lagrange_at_zero(indices)
        assert sum(lam * f(i) for lam, i in zip(lambdas, indices, strict=True)) % ORDER == 777
    with pytest.raises(ValueError):
        lagrange_at_zero([1, 1])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_decoders_raise_only_named_errors(data: bytes) -> None:
    with contextlib.suppress(InvalidPoint):
        decode_point(data)
    with contextlib.suppress(InvalidScalar):
        decode_scalar(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([2, 3]), st.binary(min_size=32, max_size=32))
def test_decode_point_on_every_prefixed_x(prefix: int, x: bytes) -> None:
    try:
        point = decode_point(bytes([prefix]) + x)
    except InvalidPoint:
        return
    assert encode_point(point) == bytes([prefix]) + x
