"""The secp256k1 group for threshold encryption: scalars, points, hashing.

Points are `coincurve.PublicKey` values (libsecp256k1 does the arithmetic);
on the wire a point is its 33-byte compressed encoding and a scalar its
32-byte big-endian encoding, and nothing else is accepted. The identity has
no encoding, so no decoded point is ever the identity; an operation whose
result would be the identity raises `IdentityPoint` (for honest inputs that
happens with probability about 2**-256).

Every function that takes bytes from a user or a peer (`decode_point`,
`decode_scalar`) is total: it returns a value or raises `InvalidGroupElement`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Final

import coincurve

from consensus.crypto import SECP256K1_N, keccak256

Point = coincurve.PublicKey
RandomBytes = Callable[[int], bytes]
"""A source of randomness: `n -> n bytes`. `secrets.token_bytes` by default;
tests pass a seeded `random.Random(seed).randbytes`."""

ORDER: Final = SECP256K1_N
FIELD_PRIME: Final = 2**256 - 2**32 - 977
POINT_LENGTH: Final = 33
SCALAR_LENGTH: Final = 32
HASH_TO_CURVE_TRIES: Final = 256
"""Each try succeeds with probability about 1/2, so 256 failures in a row
happen with probability 2**-256: the bound exists only to keep the loop finite."""


class InvalidGroupElement(ValueError):
    """Bytes that are not a canonical point or scalar encoding."""


class InvalidPoint(InvalidGroupElement):
    """Not a 33-byte compressed secp256k1 point on the curve."""


class InvalidScalar(InvalidGroupElement):
    """Not a 32-byte big-endian integer below the group order."""


class IdentityPoint(ArithmeticError):
    """An operation's result is the point at infinity, which has no encoding."""


def _secret(k: int) -> bytes:
    k %= ORDER
    if k == 0:
        raise IdentityPoint("multiplication by zero")
    return k.to_bytes(SCALAR_LENGTH, "big")


GENERATOR: Final = coincurve.PublicKey.from_valid_secret((1).to_bytes(32, "big"))


def mul_base(k: int) -> Point:
    """k * G."""
    return coincurve.PublicKey.from_valid_secret(_secret(k))


def mul(point: Point, k: int) -> Point:
    """k * point."""
    return point.multiply(_secret(k))


def add(*points: Point) -> Point:
    """The sum of one or more points."""
    if len(points) == 1:
        return points[0]
    try:
        return coincurve.PublicKey.combine_keys(list(points))
    except ValueError as exc:
        raise IdentityPoint("the points sum to the identity") from exc


def neg(point: Point) -> Point:
    """-point: the same x with the other y, i.e. the other compressed prefix."""
    encoded = point.format(compressed=True)
    return coincurve.PublicKey(bytes([encoded[0] ^ 1]) + encoded[1:])


def sub(a: Point, b: Point) -> Point:
    """a - b."""
    return add(a, neg(b))


def encode_point(point: Point) -> bytes:
    return point.format(compressed=True)


def decode_point(data: bytes) -> Point:
    """The point `data` encodes; raise InvalidPoint unless it is exactly a
    33-byte compressed encoding (prefix 02 or 03, x below p) of a curve point."""
    if not isinstance(data, bytes) or len(data) != POINT_LENGTH:
        raise InvalidPoint(f"a point is {POINT_LENGTH} compressed bytes")
    if data[0] not in (2, 3):
        raise InvalidPoint("a point must be compressed (prefix 02 or 03)")
    if int.from_bytes(data[1:], "big") >= FIELD_PRIME:
        raise InvalidPoint("point x coordinate is not below the field prime")
    try:
        return coincurve.PublicKey(data)
    except ValueError as exc:
        raise InvalidPoint("x is not the coordinate of a curve point") from exc


def encode_scalar(k: int) -> bytes:
    if not 0 <= k < ORDER:
        raise ValueError("scalar out of range")
    return k.to_bytes(SCALAR_LENGTH, "big")


def decode_scalar(data: bytes) -> int:
    """The scalar `data` encodes; raise InvalidScalar unless it is 32 bytes and
    below the group order (so each scalar has exactly one encoding)."""
    if not isinstance(data, bytes) or len(data) != SCALAR_LENGTH:
        raise InvalidScalar(f"a scalar is {SCALAR_LENGTH} bytes")
    k = int.from_bytes(data, "big")
    if k >= ORDER:
        raise InvalidScalar("scalar is not below the group order")
    return k


def frame(tag: bytes, parts: tuple[bytes, ...]) -> bytes:
    """An injective encoding of (tag, parts): every item length-prefixed."""
    out = [len(tag).to_bytes(4, "big"), tag]
    for part in parts:
        out.append(len(part).to_bytes(4, "big"))
        out.append(part)
    return b"".join(out)


def hash_to_scalar(tag: bytes, *parts: bytes) -> int:
    """A scalar from a domain tag and byte strings (Fiat-Shamir challenges).

    512 hash bits reduced mod n: the bias is about 2**-256."""
    framed = frame(tag, parts)
    wide = keccak256(b"\x00" + framed) + keccak256(b"\x01" + framed)
    return int.from_bytes(wide, "big") % ORDER


def hash_to_curve(tag: bytes, message: bytes) -> Point:
    """A point nobody knows the discrete log of, deterministic in (tag, message).

    Try-and-increment: x = keccak(frame(tag, message, counter)); the first x
    below p that is a curve point's coordinate, with the even-y point (prefix
    02). Inputs are public, so the variable running time leaks nothing."""
    for counter in range(HASH_TO_CURVE_TRIES):
        x = keccak256(frame(tag, (message, counter.to_bytes(2, "big"))))
        if int.from_bytes(x, "big") >= FIELD_PRIME:
            continue
        try:
            return coincurve.PublicKey(b"\x02" + x)
        except ValueError:
            continue
    raise IdentityPoint("hash to curve found no point")  # probability 2**-256


def random_scalar(rng: RandomBytes | None = None) -> int:
    """A uniform nonzero scalar: 64 random bytes reduced mod n (bias ~2**-256)."""
    source = rng if rng is not None else secrets.token_bytes
    for _ in range(HASH_TO_CURVE_TRIES):
        k = int.from_bytes(source(64), "big") % ORDER
        if k != 0:
            return k
    raise ValueError("the random source returned only zero scalars")


def lagrange_at_zero(indices: list[int]) -> list[int]:
    """The Lagrange coefficients that interpolate f(0) from f(i), i in `indices`.

    lambda_i = prod_{j != i} j / (j - i) mod n; indices must be distinct and in [1, n)."""
    if len(set(indices)) != len(indices) or any(not 0 < i < ORDER for i in indices):
        raise ValueError("share indices must be distinct and nonzero")
    coefficients = []
    for i in indices:
        numerator = 1
        denominator = 1
        for j in indices:
            if j != i:
                numerator = numerator * j % ORDER
                denominator = denominator * (j - i) % ORDER
        coefficients.append(numerator * pow(denominator, -1, ORDER) % ORDER)
    return coefficients
