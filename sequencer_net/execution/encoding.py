"""The one canonical byte encoding for everything the engine hashes or signs.

Values are frozen, `array_like` msgspec Structs encoded as MessagePack arrays
(a tagged struct puts its integer tag first). MessagePack integers stop at 64
bits, and wad amounts (10**18 per unit) pass that at 18.4 units, so an integer
outside [-2**63, 2**64) (what MessagePack's int formats hold) is written as the
extension type `BIG_INT_EXT` whose payload is its minimal-length big-endian
two's complement. Inside that range integers use MessagePack's smallest format. The choice depends
only on the value, so every machine writes the same bytes; decoders accept only
bytes that re-encode identically (`decode_canonical`), so one value has exactly
one encoding and one hash.

A Struct declared with `omit_defaults=True` drops its trailing fields that hold
their defaults (msgspec itself writes every field of an `array_like` struct).
That is how a record or payload grows: a field appended with a default leaves
the bytes of every value that does not use it unchanged, so an old payload
still decodes canonically, and writing the default explicitly is refused as
non-canonical (the value has one encoding). Such structs always take the slow
path below.

Never hash `repr`, JSON or a dict: dict order is an accident of history.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

import msgspec

from .limits import MAX_WIRE_INT_BYTES

BIG_INT_EXT: Final = 1
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1

T = TypeVar("T")


class NonCanonicalEncoding(ValueError):
    """Bytes decode, but are not the canonical encoding of what they decode to."""


def _big_int_bytes(value: int) -> bytes:
    length = (value.bit_length() + 8) // 8  # one sign bit, rounded up to whole bytes
    return value.to_bytes(length, "big", signed=True)


def to_wire(value: Any) -> Any:
    """Turn a Struct tree into MessagePack-ready lists, big ints into extensions."""
    kind = type(value)
    if kind is int:
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
        return msgspec.msgpack.Ext(BIG_INT_EXT, _big_int_bytes(value))
    if kind is bytes or kind is bool or kind is str or value is None:
        return value
    if isinstance(value, msgspec.Struct):
        config = value.__struct_config__
        tag = config.tag
        fields: list[Any] = [] if tag is None else [tag]
        values = msgspec.structs.astuple(value)
        if config.omit_defaults:
            values = values[: _kept_fields(value, values)]
        for field in values:
            kind = type(field)
            if kind is int:
                small = _INT64_MIN <= field <= _UINT64_MAX
                fields.append(
                    field if small else msgspec.msgpack.Ext(BIG_INT_EXT, _big_int_bytes(field))
                )
            elif kind is bytes or field is None:
                fields.append(field)
            else:
                fields.append(to_wire(field))
        return fields
    if kind is tuple or kind is list:
        return [to_wire(item) for item in value]
    if isinstance(value, int):  # IntEnum members: encode their integer value
        return to_wire(int(value))
    raise TypeError(f"no canonical encoding for {kind.__name__}")


def _kept_fields(value: msgspec.Struct, values: tuple[Any, ...]) -> int:
    """How many leading fields an `omit_defaults` struct writes: all but the
    trailing run of fields equal to their defaults. An IntEnum member counts as
    its integer (it encodes as one); a bool never equals an int default."""
    defaults = _DEFAULTS.get(type(value))
    if defaults is None:
        defaults = tuple(field.default for field in msgspec.structs.fields(value))
        _DEFAULTS[type(value)] = defaults
    kept = len(values)
    while kept:
        default = defaults[kept - 1]
        field = values[kept - 1]
        if (
            default is msgspec.NODEFAULT
            or field != default
            or isinstance(field, bool) != isinstance(default, bool)
        ):
            break
        kept -= 1
    return kept


_DEFAULTS: dict[type, tuple[Any, ...]] = {}
_ENCODER: Final = msgspec.msgpack.Encoder()


def encode(value: Any) -> bytes:
    """The canonical bytes of `value` (a Struct, tuple, int, bytes, str, bool or None).

    msgspec's own encoder writes exactly these bytes when every integer fits
    MessagePack (tests/execution/test_encoding.py checks the two paths agree), so
    it is tried first; a big integer makes it raise and the slow path runs (and
    runs first for that struct type from then on: `_WIDE`). A struct declared
    `omit_defaults` (at the top level) always takes the slow path.
    """
    kind = type(value)
    if kind in _WIDE:
        return _ENCODER.encode(to_wire(value))
    config = getattr(value, "__struct_config__", None)
    if config is not None and config.omit_defaults:
        return _ENCODER.encode(to_wire(value))
    try:
        return _ENCODER.encode(value)
    except OverflowError:
        if config is not None:
            _WIDE.add(kind)
        return _ENCODER.encode(to_wire(value))


_WIDE: set[type] = set()
"""Struct types a value of which has held a big integer (wad collateral, fee
pools, prices): their next values go to the slow path at once, which writes
the same bytes as the fast one and costs less than the fast one's failed try
(an OverflowError raised after encoding part of the value). Which path runs
never changes the bytes, only the time."""


def _ext_hook(code: int, data: memoryview) -> Any:
    if code != BIG_INT_EXT:
        raise NonCanonicalEncoding(f"unknown extension type {code}")
    value = int.from_bytes(data, "big", signed=True)
    if _INT64_MIN <= value <= _UINT64_MAX:
        raise NonCanonicalEncoding("a small integer was written as an extension")
    return value


def _bounded_ext_hook(code: int, data: memoryview) -> Any:
    if len(data) > MAX_WIRE_INT_BYTES:
        raise NonCanonicalEncoding(f"an integer wider than {MAX_WIRE_INT_BYTES} bytes")
    return _ext_hook(code, data)


_DECODER: Final = msgspec.msgpack.Decoder(ext_hook=_ext_hook)
_BOUNDED_DECODER: Final = msgspec.msgpack.Decoder(ext_hook=_bounded_ext_hook)


def bounded_decoder() -> msgspec.msgpack.Decoder[Any]:
    """The untyped decoder `decode_canonical(bounded_ints=True)` reads with."""
    return _BOUNDED_DECODER


def decode_canonical(data: bytes, kind: type[T], *, bounded_ints: bool = False) -> T:
    """Decode `data` as `kind`, accepting only its canonical encoding.

    `bounded_ints` (transactions) also refuses any integer wider than int256
    (limits.MAX_WIRE_INT_BYTES). Raises NonCanonicalEncoding or
    msgspec.ValidationError/DecodeError.
    """
    raw = (_BOUNDED_DECODER if bounded_ints else _DECODER).decode(data)
    value = msgspec.convert(raw, type=kind, strict=True)
    if encode(value) != data:
        raise NonCanonicalEncoding("bytes are not the canonical encoding")
    return value
