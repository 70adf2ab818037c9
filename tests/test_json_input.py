"""JSON from outside is measured before it is parsed (sequencer_net/json_input.py)."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sequencer_net.json_input import JsonTooDeep, loads_bounded, nesting_depth

documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n'),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\k'), children, max_size=3)
    ),
    max_leaves=20,
)


def depth_of(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@given(documents)
def test_the_measured_depth_is_the_documents_nesting_whatever_its_strings_hold(
    value: object,
) -> None:
    text = json.dumps(value)
    assert nesting_depth(text) == depth_of(value)
    assert loads_bounded(text.encode()) == value


def test_deep_documents_are_refused_before_parsing_even_with_a_raised_recursion_limit() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # what a dependency does; the C parser would crash
    try:
        with pytest.raises(JsonTooDeep, match="nested 200000 deep"):
            loads_bounded(b"[" * 200_000)
        with pytest.raises(JsonTooDeep):
            loads_bounded('{"a":' * 65 + "1" + "}" * 65)
        assert loads_bounded("[" * 64 + "]" * 64) is not None
    finally:
        sys.setrecursionlimit(limit)


def test_escaped_quotes_do_not_end_a_string() -> None:
    assert nesting_depth(r'["a\"[[[", {"b\\": [1]}]') == 3
    assert nesting_depth(r'"\\"[]') == 1
