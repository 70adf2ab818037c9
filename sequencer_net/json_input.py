"""JSON from outside, parsed without letting its nesting reach the parser.

Python's C JSON parser recurses once per nested array or object and relies on
the interpreter's recursion limit to stop. A dependency this project imports
(py_ecc, through the Ethereum libraries) raises that limit to 100,000, far past
what the C stack holds, so a few hundred kilobytes of `[` from a hostile peer
would crash the process instead of raising. Everything that parses JSON it did
not write itself (price feeds, a node's answers and subscription messages, a
rollup's transaction payloads) goes through `loads_bounded`, which measures the
nesting first (a scan over the structural characters only) and refuses deep
documents with `JsonTooDeep`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

MAX_JSON_DEPTH: Final = 64
"""Nesting every document this project reads stays far below."""

_STRUCTURAL: Final = re.compile(rb'["\\\[\]{}]')


class JsonTooDeep(ValueError):
    """A JSON document nested deeper than the reader allows."""


def nesting_depth(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects, brackets inside strings ignored."""
    raw = data.encode() if isinstance(data, str) else data
    depth = deepest = 0
    in_string = False
    escaped_at = -1  # the position a backslash in a string escapes
    for match in _STRUCTURAL.finditer(raw):
        position = match.start()
        char = raw[position]
        if in_string:
            if position == escaped_at:
                continue
            if char == 0x5C:  # backslash: the next character is escaped
                escaped_at = position + 1
            elif char == 0x22:
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
        elif char in (0x5D, 0x7D):
            depth -= 1
    return deepest


def loads_bounded(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH, **kwargs: Any) -> Any:
    """`json.loads(data, **kwargs)` for a document nested at most `max_depth`
    deep; JsonTooDeep (a ValueError) otherwise, before any parsing."""
    depth = nesting_depth(data)
    if depth > max_depth:
        raise JsonTooDeep(f"JSON nested {depth} deep; at most {max_depth} is read")
    return json.loads(data, **kwargs)
