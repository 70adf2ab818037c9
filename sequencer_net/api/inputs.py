"""Parsing what clients send: path parameters and JSON bodies, strictly.

Each function either returns a value of the documented type and range or
raises ApiError 400 `bad_request` saying what was expected. None of them lets
a RecursionError, OverflowError or UnicodeDecodeError through: those are
client mistakes, not server errors.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sequencer_net.api.errors import ApiError, bad_request
from sequencer_net.api.limits import ADDRESS_BYTES, MAX_HEIGHT, TX_HASH_BYTES

_DECIMAL = re.compile(r"[0-9]{1,20}")
_HEX = re.compile(r"(?:0x)?((?:[0-9a-fA-F]{2})*)")


def parse_height(text: str) -> int:
    """A block height: ASCII decimal digits, 0..MAX_HEIGHT (no sign, no spaces)."""
    if _DECIMAL.fullmatch(text) is None or int(text) > MAX_HEIGHT:
        raise bad_request(f"height must be a decimal integer in 0..{MAX_HEIGHT}")
    return int(text)


def parse_hex(text: object, what: str) -> bytes:
    """0x-prefixed (or bare) hex with an even number of digits, nothing else."""
    if not isinstance(text, str):
        raise bad_request(f"{what} must be a 0x-hex string")
    match = _HEX.fullmatch(text)
    if match is None:
        raise bad_request(f"{what} is not valid hex")
    return bytes.fromhex(match[1])


def parse_tx_hash(text: str) -> bytes:
    """A transaction hash: 32 bytes of hex."""
    digest = parse_hex(text, "hash")
    if len(digest) != TX_HASH_BYTES:
        raise bad_request(f"hash must be {TX_HASH_BYTES} bytes of hex")
    return digest


def parse_address(text: str) -> bytes:
    """An account address: 20 bytes of hex (0x-prefixed or bare)."""
    address = parse_hex(text, "address")
    if len(address) != ADDRESS_BYTES:
        raise bad_request(f"address must be {ADDRESS_BYTES} bytes of hex")
    return address


MAX_JSON_BRACKETS = 64
"""Opening brackets (`[` and `{`) a JSON body may contain at all. Every body the
API takes is a flat object (at most one list inside), so a body with more is
refused before parsing: nesting depth never reaches the parser, whatever
Python's recursion limit (a parser running out of C stack crashes the process,
which no exception handler can catch)."""


def parse_json_object(body: bytes, expected: str) -> dict[str, Any]:
    """A JSON object; `expected` shows the client the shape it should have sent."""
    if body.count(b"[") + body.count(b"{") > MAX_JSON_BRACKETS:
        raise bad_request(f"body nests too deep: expected {expected}")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # bad JSON or UTF-8; nesting deeper than Python's stack
        raise bad_request(f"body is not JSON: expected {expected}") from None
    if not isinstance(document, dict):
        raise bad_request(f"expected {expected}")
    return document


def require(document: dict[str, Any], key: str, kind: type, expected: str) -> Any:
    """`document[key]`, which must be a `kind` (bool is not an int here)."""
    value = document.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ApiError(400, "bad_request", f"expected {expected}")
    return value
