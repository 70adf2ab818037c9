"""The native (C) table root against the Python one: the same roots for every
block shape, the same ValueError for a bad pair, the Python code (and its
exception) for inputs the C code does not take, no leaks.

The native functions are called directly and the Python ones through the
module's `_python_*` functions, whatever SEQNET_PURE_PYTHON_TREE says.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from random import Random
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import keccak256
from sequencer_net.payload import namespaces
from sequencer_net.payload.namespaces import EMPTY_ROOT, MAX_NAMESPACE

native: ModuleType = pytest.importorskip(
    "sequencer_net.execution._tree_native",
    reason="the C extension is not built (python setup.py build_ext --inplace)",
)

ROOT = Path(__file__).resolve().parents[2]
BAD_PAIR = "a namespace is a uint32 and a transaction hash 32 bytes"


def block(rng: Random, size: int, names: int) -> list[tuple[int, bytes]]:
    pool = [rng.randrange(MAX_NAMESPACE + 1) for _ in range(names)]
    return [(rng.choice(pool), rng.randbytes(32)) for _ in range(size)]


def both_roots(pairs: Any) -> tuple[bytes, bytes]:
    got = native.namespace_root(pairs)
    assert got is not None
    return got, namespaces._python_namespace_root(pairs)


SIZES = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 600]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("names", [1, 2, 4, 50, 1000])
def test_native_and_python_roots_agree_at_every_tree_shape(size: int, names: int) -> None:
    rng = Random(size * 7919 + names)
    pairs = block(rng, size, names)
    got, want = both_roots(pairs)
    assert got == want
    assert native.namespace_root(tuple(pairs)) == want
    hashes = [h for _, h in pairs]
    assert native.merkle_root(hashes) == namespaces._python_merkle_root(hashes)


def test_the_empty_block_has_the_empty_root() -> None:
    assert native.namespace_root([]) == EMPTY_ROOT == keccak256(b"")
    assert native.merkle_root([]) == EMPTY_ROOT


def test_one_namespace_per_transaction_and_the_extreme_namespaces() -> None:
    rng = Random(3)
    pairs = [(ns, rng.randbytes(32)) for ns in (MAX_NAMESPACE, 0, 5, MAX_NAMESPACE - 1, 1)]
    got, want = both_roots(pairs)
    assert got == want
    # Equal hashes in two namespaces, and the same namespace spread across the block.
    twice = [(1, b"\x07" * 32), (2, b"\x07" * 32), (1, b"\x08" * 32), (2, b"\x07" * 32)]
    got, want = both_roots(twice)
    assert got == want


@given(
    st.lists(
        st.tuples(st.integers(0, MAX_NAMESPACE), st.binary(min_size=32, max_size=32)),
        max_size=300,
    )
)
@settings(max_examples=300, deadline=None)
def test_any_block_has_the_same_root(pairs: list[tuple[int, bytes]]) -> None:
    got, want = both_roots(pairs)
    assert got == want


@given(
    st.lists(st.tuples(st.integers(0, 8), st.integers(0, 2**16)), max_size=300).map(
        lambda items: [(ns, keccak256(i.to_bytes(4, "big"))) for ns, i in items]
    )
)
@settings(max_examples=300, deadline=None)
def test_blocks_of_few_namespaces_have_the_same_root(pairs: list[tuple[int, bytes]]) -> None:
    got, want = both_roots(pairs)
    assert got == want


@given(st.lists(st.binary(max_size=300), max_size=150))
@settings(max_examples=300, deadline=None)
def test_merkle_root_of_any_leaf_data_is_the_same(leaves: list[bytes]) -> None:
    assert native.merkle_root(leaves) == namespaces._python_merkle_root(leaves)


@given(st.lists(st.binary(max_size=700), max_size=40))
@settings(max_examples=300, deadline=None)
def test_keccak256_many_is_keccak256_of_each(messages: list[bytes]) -> None:
    assert native.keccak256_many(messages) == [keccak256(m) for m in messages]
    assert native.keccak256_many(tuple(messages)) == [keccak256(m) for m in messages]


def test_keccak256_many_at_the_block_boundaries() -> None:
    rng = Random(9)
    lengths = [0, 1, 134, 135, 136, 137, 271, 272, 273, 407, 408, 409, 1000]
    messages = [rng.randbytes(n) for n in lengths for _ in range(3)]
    rng.shuffle(messages)
    assert native.keccak256_many(messages) == [keccak256(m) for m in messages]
    assert native.keccak256_many([]) == []
    assert native.keccak256_many([b"a", bytearray(b"b")]) is None
    assert native.keccak256_many(m for m in messages) is None


BAD_PAIRS: list[tuple[Any, Any]] = [
    (-1, b"\x00" * 32),
    (MAX_NAMESPACE + 1, b"\x00" * 32),
    (2**64, b"\x00" * 32),
    (-(2**70), b"\x00" * 32),
    (0, b"\x00" * 31),
    (0, b"\x00" * 33),
    (0, b""),
    (-1, "not bytes"),  # the namespace is checked first, as in Python
]


@pytest.mark.parametrize("bad", BAD_PAIRS)
@pytest.mark.parametrize("at", [0, 1, 5])
def test_a_bad_pair_raises_the_same_value_error(bad: tuple[Any, Any], at: int) -> None:
    rng = Random(at)
    pairs: list[Any] = block(rng, 6, 3)
    pairs.insert(at, bad)
    with pytest.raises(ValueError) as python_error:
        namespaces._python_namespace_root(pairs)
    with pytest.raises(ValueError) as native_error:
        native.namespace_root(pairs)
    assert str(native_error.value) == str(python_error.value) == BAD_PAIR
    assert type(native_error.value) is type(python_error.value)
    with pytest.raises(ValueError, match=BAD_PAIR):
        namespaces.namespace_root(pairs)


def test_a_bad_pair_before_one_the_c_code_does_not_take_raises_first() -> None:
    pairs: list[Any] = [(0, b"\x00" * 32), (0, b"\x00" * 5), (1.5, b"\x00" * 32)]
    with pytest.raises(ValueError, match=BAD_PAIR):
        native.namespace_root(pairs)


OTHER_INPUTS: list[Any] = [
    [(1, bytearray(32))],  # a bytes-like hash: Python takes it
    [(True, b"\x00" * 32)],  # a bool namespace
    [(1.0, b"\x00" * 32)],  # a float namespace
    [(1, b"\x00" * 32), [2, b"\x01" * 32]],  # a pair that is a list
    [(1, b"\x00" * 32, 3)],  # three items
    [("1", b"\x00" * 32)],  # a str namespace
    [(1, b"\x00" * 32), 5],  # not a pair at all
]


@pytest.mark.parametrize("pairs", OTHER_INPUTS)
def test_inputs_the_c_code_does_not_take_run_the_python_code(pairs: list[Any]) -> None:
    assert native.namespace_root(pairs) is None
    try:
        want: Any = namespaces._python_namespace_root(pairs)
    except Exception as exc:  # what the Python code raises, the wrapper raises
        with pytest.raises(type(exc)):
            namespaces.namespace_root(pairs)
    else:
        if namespaces._native is not None:
            assert namespaces.namespace_root(pairs) == want


def test_a_generator_is_left_to_the_python_code_unconsumed() -> None:
    pairs = [(1, b"\x01" * 32), (0, b"\x02" * 32)]
    generator = (p for p in pairs)
    assert native.namespace_root(generator) is None
    assert namespaces.namespace_root(generator) == namespaces._python_namespace_root(pairs)
    assert native.merkle_root(h for _, h in pairs) is None
    assert native.merkle_root([b"a", bytearray(b"b")]) is None
    assert namespaces.merkle_root([b"a", bytearray(b"b")]) == namespaces.merkle_root([b"a", b"b"])


def test_no_leaks() -> None:
    rng = Random(5)
    pairs = block(rng, 200, 8)
    bad: list[Any] = [*pairs[:10], (0, b"short")]
    other: list[Any] = [*pairs[:10], (1.0, b"\x00" * 32)]

    def run() -> None:
        native.namespace_root(pairs)
        native.merkle_root([h for _, h in pairs])
        native.namespace_root(other)
        native.keccak256_many([h for _, h in pairs])
        native.keccak256_many([b"x", bytearray(3)])
        with pytest.raises(ValueError):
            native.namespace_root(bad)

    for _ in range(50):
        run()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            run()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 64 * 1024, grown


def test_the_one_at_a_time_hashing_gives_the_same_roots() -> None:
    """The table hashes eight messages at once where the CPU has AVX-512
    (`hash_ways()` 8); SEQNET_SCALAR_KECCAK=1 makes it hash one at a time.
    A child process with that setting computes the same roots."""
    script = (
        "import sys\n"
        "from random import Random\n"
        "from sequencer_net.execution import _tree_native as native\n"
        "assert native.hash_ways() == 1\n"
        "rng = Random(11)\n"
        "for size in (0, 1, 2, 3, 7, 8, 9, 17, 64, 65, 600):\n"
        "    for names in (1, 3, 50):\n"
        "        pool = [rng.randrange(2**32) for _ in range(names)]\n"
        "        pairs = [(rng.choice(pool), rng.randbytes(32)) for _ in range(size)]\n"
        "        leaves = [rng.randbytes(rng.randrange(300)) for _ in range(size)]\n"
        "        print(native.namespace_root(pairs).hex(), native.merkle_root(leaves).hex())\n"
        "        print(b''.join(native.keccak256_many(leaves)).hex())\n"
    )
    environment = {**os.environ, "SEQNET_SCALAR_KECCAK": "1"}
    environment["PYTHONPATH"] = os.pathsep.join([str(ROOT), environment.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rng = Random(11)
    lines = done.stdout.splitlines()
    expected = []
    for size in (0, 1, 2, 3, 7, 8, 9, 17, 64, 65, 600):
        for names in (1, 3, 50):
            pool = [rng.randrange(2**32) for _ in range(names)]
            pairs = [(rng.choice(pool), rng.randbytes(32)) for _ in range(size)]
            leaves = [rng.randbytes(rng.randrange(300)) for _ in range(size)]
            root = namespaces._python_namespace_root(pairs)
            assert native.namespace_root(pairs) == root
            expected.append(f"{root.hex()} {namespaces._python_merkle_root(leaves).hex()}")
            expected.append(b"".join(keccak256(leaf) for leaf in leaves).hex())
    assert lines == expected
