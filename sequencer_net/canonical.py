"""Strict msgpack decoding for everything a peer or user can send.

Every wire format here has one encoding per value, because its bytes are
hashed or signed: two byte strings for one value would give two ids for one
transaction, batch or share. `decode_strict` applies the checks in the order
that keeps a hostile input cheap:

    size        len(data) <= limit, before any parsing
    structure   msgspec decodes it, with every field's bound
    canonical   re-encoding gives back exactly `data`
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder()


def decode_strict(
    data: bytes,
    decoder: msgspec.msgpack.Decoder[T],
    *,
    limit: int,
    what: str,
    malformed: type[Exception],
    oversized: type[Exception] | None = None,
) -> T:
    """`data` decoded by `decoder`; `oversized` (default `malformed`) above `limit`
    bytes, `malformed` if it does not decode or is not the canonical encoding."""
    if len(data) > limit:
        raise (oversized or malformed)(f"{what} of {len(data)} bytes exceeds the limit of {limit}")
    try:
        value = decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise malformed(f"undecodable {what}: {exc}") from exc
    if _encoder.encode(value) != data:
        raise malformed(f"{what} is not canonically encoded")
    return value
