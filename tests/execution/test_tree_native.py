"""The native (C) state-tree rebuild against the Python one: same roots, same new
nodes in the same order, same replaced nodes, same exceptions, no leaks.

Every test runs both implementations in one process: the native one through the
compiled module, the Python one by switching `state_tree._native` off, whatever
SEQNET_PURE_PYTHON_TREE says.
"""

from __future__ import annotations

import gc
import itertools
import random
import sys
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sha3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.crypto import keccak256
from sequencer_net.execution import state_tree
from sequencer_net.execution.state_tree import (
    EMPTY_ROOT,
    Commit,
    CorruptNode,
    InvalidChange,
    MemoryNodeStore,
    MissingNode,
    StateTree,
)
from sequencer_net.storage.state_store import RocksNodeStore

native: ModuleType = pytest.importorskip(
    "sequencer_net.execution._tree_native",
    reason="the C extension is not built (python setup.py build_ext --inplace)",
)


@contextmanager
def implementation(name: str) -> Iterator[None]:
    """Run `StateTree.apply` with the named rebuild."""
    saved = state_tree._native
    state_tree._native = native if name == "native" else None
    try:
        yield
    finally:
        state_tree._native = saved


# --- keccak-256 -----------------------------------------------------------------------------


def test_keccak_known_vectors() -> None:
    assert native.keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert native.keccak256(b"abc").hex() == (
        "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    )


@pytest.mark.parametrize("length", [1, 31, 32, 33, 64, 65, 135, 136, 137, 271, 272, 273, 1000])
def test_keccak_at_block_boundaries_matches_pysha3(length: int) -> None:
    data = bytes((7 * i + length) & 0xFF for i in range(length))
    assert native.keccak256(data) == sha3.keccak_256(data).digest()


@given(st.binary(max_size=700))
@settings(max_examples=300, deadline=None)
def test_keccak_matches_pysha3(data: bytes) -> None:
    assert native.keccak256(data) == sha3.keccak_256(data).digest()
    assert native.keccak256(bytearray(data)) == keccak256(data)  # any buffer


# --- recording stores ------------------------------------------------------------------------


class RecordingMemoryStore(MemoryNodeStore):
    """Records every put_batch (nodes in order, commit) and uncache."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[Any] = []

    def put_batch(self, nodes: Mapping[bytes, bytes], commit: Commit | None = None) -> None:
        self.log.append(("put", list(nodes.items()), commit))
        super().put_batch(nodes, commit)

    def uncache(self, node_hashes: list[bytes]) -> None:
        self.log.append(("uncache", list(node_hashes)))


class CallableLookupStore(RecordingMemoryStore):
    """A memory lookup that is not a dict's `get`: the native code calls it."""

    def memory_get(self) -> Callable[[bytes], bytes | None]:
        nodes = self._nodes
        return lambda node_hash: nodes.get(node_hash)


class GetOnlyStore(RecordingMemoryStore):
    """No memory lookup at all: every read is a `get` (called twice on a miss)."""

    memory_get = None  # type: ignore[assignment]


class RecordingRocksStore(RocksNodeStore):
    def __init__(self, path: Path, cache_size: int) -> None:
        super().__init__(path, sync=False, cache_size=cache_size)
        self.log: list[Any] = []

    def put_batch(self, nodes: Mapping[bytes, bytes], commit: Commit | None = None) -> None:
        self.log.append(("put", list(nodes.items()), commit))
        super().put_batch(nodes, commit)

    def uncache(self, node_hashes: list[bytes]) -> None:
        self.log.append(("uncache", list(node_hashes)))
        super().uncache(node_hashes)

    def cache_state(self) -> Any:
        return list(self._young.items()), list(self._old.items()), self._disk_reads


STORE_KINDS = ["memory", "callable", "get-only", "rocks", "rocks-small-cache"]


def make_store(kind: str, tmp: Path, name: str) -> Any:
    if kind == "memory":
        return RecordingMemoryStore()
    if kind == "callable":
        return CallableLookupStore()
    if kind == "get-only":
        return GetOnlyStore()
    # A small cache: generations turn over and nodes come from disk within one rebuild.
    return RecordingRocksStore(tmp / name, cache_size=64 if kind == "rocks-small-cache" else 4096)


def store_state(store: Any) -> Any:
    if isinstance(store, RecordingRocksStore):
        return store.cache_state(), store.latest_commit()
    return dict(store._nodes), store.latest_commit()


# --- keys -----------------------------------------------------------------------------------


def _keys_sharing_prefixes() -> list[bytes]:
    """Keys in groups whose paths share their first 16+ bits (found by search)."""
    by_prefix: dict[bytes, list[bytes]] = {}
    for i in range(60_000):
        key = b"near/" + i.to_bytes(4, "big")
        by_prefix.setdefault(native.keccak256(key)[:2], []).append(key)
    groups = sorted((keys for keys in by_prefix.values() if len(keys) >= 3), key=len)
    out: list[bytes] = []
    for keys in groups[-8:]:
        paths = sorted(keys, key=keccak256)
        out.extend(paths[:4])
    # Pairs sharing 24+ bits: the longest common prefixes among the groups.
    best = sorted(
        (
            (_common_bits(keccak256(a), keccak256(b)), a, b)
            for keys in by_prefix.values()
            for a, b in itertools.pairwise(sorted(keys, key=keccak256))
        ),
        reverse=True,
    )[:4]
    for _, a, b in best:
        out += [a, b]
    return list(dict.fromkeys(out))


def _common_bits(a: bytes, b: bytes) -> int:
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return 256 - x.bit_length()


NEAR_KEYS = _keys_sharing_prefixes()
POOL = [b"acct/" + bytes([i]) for i in range(24)] + NEAR_KEYS
VALUES = [b"", b"a", b"b", b"\x00" * 40, bytes(range(200)), b"v" * 300]


def test_the_key_pool_has_long_shared_prefixes() -> None:
    paths = sorted(keccak256(key) for key in NEAR_KEYS)
    longest = max(_common_bits(a, b) for a, b in itertools.pairwise(paths))
    assert longest >= 24
    assert sum(_common_bits(a, b) >= 16 for a, b in itertools.pairwise(paths)) >= 16


# --- differential runs -----------------------------------------------------------------------


def run_both(
    kind: str, tmp: Path, batches: list[dict[bytes, bytes | None]], check_keys: list[bytes]
) -> None:
    """Apply `batches` with each implementation to its own store; compare every step."""
    stores = {name: make_store(kind, tmp, name) for name in ("native", "python")}
    trees = {name: StateTree(store) for name, store in stores.items()}
    try:
        for height, changes in enumerate(batches):
            roots = {}
            for name, tree in trees.items():
                with implementation(name):
                    roots[name] = tree.apply(changes, height=height if height % 3 else None)
            assert roots["native"] == roots["python"]
            assert stores["native"].log == stores["python"].log
            assert store_state(stores["native"]) == store_state(stores["python"])
        for key in check_keys:
            assert trees["native"].get(key) == trees["python"].get(key)
            assert trees["native"].prove(key) == trees["python"].prove(key)
        assert list(trees["native"].items()) == list(trees["python"].items())
    finally:
        for store in stores.values():
            if isinstance(store, RocksNodeStore):
                store.close()


batch_strategy = st.dictionaries(
    st.sampled_from(POOL),
    st.one_of(st.none(), st.sampled_from(VALUES)),
    max_size=24,
)


@pytest.mark.parametrize("kind", STORE_KINDS)
@given(batches=st.lists(batch_strategy, min_size=1, max_size=8), data=st.data())
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_native_matches_python_on_random_batches(
    kind: str, tmp_path_factory: pytest.TempPathFactory, batches: list[Any], data: Any
) -> None:
    if data.draw(st.booleans()):
        # Then delete everything written: back to the empty tree.
        written = {key for batch in batches for key in batch}
        batches = [*batches, dict.fromkeys(written)]
    run_both(kind, tmp_path_factory.mktemp("t"), batches, POOL[:40])


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_native_matches_python_on_edge_cases(kind: str, tmp_path: Path) -> None:
    key, other = NEAR_KEYS[-2], NEAR_KEYS[-1]  # paths sharing 24+ bits
    batches: list[dict[bytes, bytes | None]] = [
        {},  # empty tree, no change
        {key: None},  # delete from the empty tree
        {key: b"1"},  # single entry
        {key: b"1"},  # unchanged value
        {key: b"1", other: None},  # unchanged value plus a delete of an absent key
        {other: b"2"},  # a neighbour deep below
        {key: b"1", other: b"2"},  # both unchanged
        {key: None},  # back to one entry: the leaf moves up
        {key: b"3", other: None},  # swap
        {key: None},  # empty again
        {key: b"4", other: b"5", POOL[0]: b"6"},
        dict.fromkeys([key, other, POOL[0]]),  # delete everything
        {},
    ]
    run_both(kind, tmp_path, batches, [key, other, POOL[0], POOL[1]])
    assert batches  # the run compared each step


@pytest.mark.parametrize("kind", ["memory", "rocks-small-cache"])
def test_native_matches_python_on_a_seeded_larger_run(kind: str, tmp_path: Path) -> None:
    rng = random.Random(14)
    keys = [b"acct/" + rng.randbytes(20) for _ in range(1500)] + NEAR_KEYS
    present: set[bytes] = set()
    batches: list[dict[bytes, bytes | None]] = []
    batches.append({key: rng.randbytes(rng.randrange(1, 120)) for key in keys[:1200]})
    present.update(keys[:1200])
    for _ in range(12):
        changes: dict[bytes, bytes | None] = {}
        for key in rng.sample(keys, 250):
            if key in present and rng.random() < 0.3:
                changes[key] = None
                present.discard(key)
            else:
                changes[key] = rng.randbytes(rng.randrange(0, 90))
                present.add(key)
        batches.append(changes)
    run_both(kind, tmp_path, batches, rng.sample(keys, 60))


# --- invalid changes fall back to the Python code ---------------------------------------------


class Key(bytes):
    pass


@pytest.mark.parametrize(
    "changes",
    [
        {"acct/x": b"1"},
        {b"k" * 1025: b"1"},
        {b"k": "v"},
        {b"k": b"v" * (4 * 1024 * 1024 + 1)},
        {b"a": b"1", 5: b"2"},
    ],
)
def test_invalid_changes_raise_the_same_invalid_change(changes: Any) -> None:
    messages = []
    for name in ("native", "python"):
        store = RecordingMemoryStore()
        tree = StateTree(store)
        with implementation(name), pytest.raises(InvalidChange) as raised:
            tree.apply(changes, height=1)
        assert store.log == [] and len(store) == 0
        messages.append(str(raised.value))
    assert messages[0] == messages[1]


def test_a_bytes_subclass_key_gives_the_same_root() -> None:
    roots = []
    for name in ("native", "python"):
        with implementation(name):
            roots.append(StateTree(MemoryNodeStore()).apply({Key(b"a"): b"1", b"b": Key(b"2")}))
    assert roots[0] == roots[1] == StateTree(MemoryNodeStore()).apply({b"a": b"1", b"b": b"2"})


# --- missing and corrupt records -------------------------------------------------------------


def _base_store() -> tuple[MemoryNodeStore, bytes]:
    store = MemoryNodeStore()
    tree = StateTree(store)
    root = tree.apply({key: b"v" + key for key in POOL}, height=1)
    return store, root


def _deep_node(store: MemoryNodeStore, root: bytes, want_leaf: bool) -> bytes:
    """A node below the root (a leaf or an internal node) on some key's path."""
    tree = StateTree(store, root)
    proof = tree.prove(NEAR_KEYS[-1])
    path = keccak256(NEAR_KEYS[-1])
    node = root
    for depth in range(len(proof.siblings)):
        record = store.get(node)
        assert record is not None and record[0] == 1
        node = record[33:65] if path[depth // 8] >> (7 - depth % 8) & 1 else record[1:33]
        if not want_leaf and depth == len(proof.siblings) // 2:
            return node
    return node


def _leaf_record(key: bytes, value: bytes, path: bytes | None = None) -> bytes:
    return b"\x00" + (path or keccak256(key)) + len(key).to_bytes(2, "big") + key + value


CORRUPTIONS: dict[str, Callable[[bytes], bytes | None]] = {
    "missing": lambda record: None,
    "empty": lambda record: b"",
    "unknown tag": lambda record: b"\x02" + record[1:],
    "internal too short": lambda record: b"\x01" + bytes(63),
    "internal too long": lambda record: b"\x01" + bytes(65),
    "lone tag byte": lambda record: b"\x00",
    "truncated leaf": lambda record: b"\x00" + bytes(33),
    "leaf key length past the end": lambda record: b"\x00" + bytes(32) + b"\x01\x00" + b"k" * 40,
    "leaf key length at the end": lambda record: b"\x00" + bytes(32) + b"\x00\x05" + b"kkkk",
}


def _apply_both(
    make: Callable[[], tuple[MemoryNodeStore, bytes]],
    changes: dict[bytes, bytes | None],
) -> list[tuple[type[BaseException] | None, str, bytes | None]]:
    """(exception type, message, new root) per implementation; the store must not change
    on an exception."""
    outcomes: list[tuple[type[BaseException] | None, str, bytes | None]] = []
    for name in ("native", "python"):
        store, root = make()
        before = dict(store._nodes), store.latest_commit()
        tree = StateTree(store, root)
        with implementation(name):
            try:
                new_root = tree.apply(changes, height=2)
            except (MissingNode, CorruptNode) as exc:
                assert (dict(store._nodes), store.latest_commit()) == before
                assert tree.root == root
                outcomes.append((type(exc), str(exc), None))
                continue
        outcomes.append((None, "", new_root))
    return outcomes


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("where", ["leaf", "internal", "sibling"])
@pytest.mark.parametrize("batch", ["one write", "one delete", "many"])
def test_missing_and_corrupt_nodes_raise_the_same_in_both(
    corruption: str, where: str, batch: str
) -> None:
    def make() -> tuple[MemoryNodeStore, bytes]:
        store, root = _base_store()
        target = _deep_node(store, root, want_leaf=where == "leaf")
        if where == "sibling":
            # The sibling of the key's leaf: read only to see whether it is a leaf
            # (when the key's leaf goes and its sibling may move up).
            tree = StateTree(store, root)
            siblings = tree.prove(NEAR_KEYS[-1]).siblings
            target = next(s for s in reversed(siblings) if s != EMPTY_ROOT)
        record = store._nodes[target]
        changed = CORRUPTIONS[corruption](record)
        if changed is None:
            del store._nodes[target]
        else:
            store._nodes[target] = changed
        return store, root

    key = NEAR_KEYS[-1]
    changes: dict[bytes, bytes | None] = {
        "one write": {key: b"new"},
        "one delete": {key: None},
        "many": {**{k: b"x" for k in POOL[::3]}, key: None, NEAR_KEYS[-2]: b"y"},
    }[batch]
    native_outcome, python_outcome = _apply_both(make, changes)
    assert native_outcome == python_outcome
    if where != "sibling":
        assert native_outcome[0] is not None  # the walk read the corrupt node


def test_a_cycle_raises_path_too_long_in_both() -> None:
    # A node whose children are itself: a walk never ends at a leaf.
    cycle = b"\x11" * 32

    def make() -> tuple[MemoryNodeStore, bytes]:
        store = MemoryNodeStore()
        store._nodes[cycle] = b"\x01" + cycle + cycle
        return store, cycle

    for changes in ({b"k": b"v"}, {b"k": None}, {b"a": b"1", b"b": b"2", b"c": None}):
        outcomes = _apply_both(make, changes)  # type: ignore[arg-type]
        assert outcomes[0] == outcomes[1] == (CorruptNode, "path is longer than 256 bits", None)


def test_a_leaf_off_its_path_raises_path_too_long_in_both() -> None:
    # The root's right child is a leaf whose path starts with bit 0 and is all ones
    # after: merged with a key on the right, the split never separates them.
    key = next(k for k in (b"r" + bytes([i]) for i in range(256)) if keccak256(k)[0] >= 0x80)
    off_path = b"\x7f" + b"\xff" * 31
    leaf_hash = b"\x22" * 32
    root = b"\x33" * 32

    def make() -> tuple[MemoryNodeStore, bytes]:
        store = MemoryNodeStore()
        store._nodes[leaf_hash] = _leaf_record(b"k", b"v", off_path)
        store._nodes[root] = b"\x01" + EMPTY_ROOT + leaf_hash
        return store, root

    outcomes = _apply_both(make, {key: b"v"})
    assert outcomes[0] == outcomes[1] == (CorruptNode, "path is longer than 256 bits", None)


def test_a_store_get_that_raises_propagates_unchanged() -> None:
    class Failing(MemoryNodeStore):
        def get(self, node_hash: bytes) -> bytes | None:
            raise OSError("disk gone")

        memory_get = None  # type: ignore[assignment]

    store = MemoryNodeStore()
    root = StateTree(store).apply({b"a": b"1", b"b": b"2"})
    failing = Failing()
    failing._nodes.update(store._nodes)
    for name in ("native", "python"):
        with implementation(name), pytest.raises(OSError, match="disk gone"):
            StateTree(failing, root).apply({b"c": b"3"})


def test_a_record_that_is_not_bytes_raises_type_error_natively() -> None:
    store = MemoryNodeStore()
    root = StateTree(store).apply({b"a": b"1", b"b": b"2"})
    store._nodes[root] = bytearray(store._nodes[root])  # type: ignore[assignment]
    with pytest.raises(TypeError, match="bytes"):
        native.rebuild({b"c": b"3"}, root, store._nodes, store.get, MissingNode, CorruptNode)


# --- arbitrary well-formed trees: not canonical, leaves off their paths ---------------------

SMALL_POOL = [*POOL[:6], *NEAR_KEYS[-4:]]
ODD_PATHS = [b"\x7f" + b"\xff" * 31, b"\x80" + bytes(31), b"\xff" * 32, bytes(32)]

node_strategy = st.recursive(
    st.one_of(
        st.just(("empty",)),
        st.tuples(
            st.just("leaf"),
            st.sampled_from(SMALL_POOL),
            st.sampled_from(VALUES),
            st.one_of(st.none(), st.sampled_from(ODD_PATHS)),  # None: the key's own path
        ),
    ),
    lambda children: st.tuples(st.just("node"), children, children),
    max_leaves=16,
)


def _materialize(store: MemoryNodeStore, node: Any) -> bytes:
    """Write `node` (empty / leaf / internal over two nodes) to `store`; its hash."""
    if node[0] == "empty":
        return EMPTY_ROOT
    if node[0] == "leaf":
        _, key, value, path = node
        path = path or keccak256(key)
        node_hash = keccak256(b"\x00" + path + keccak256(value))
        store._nodes[node_hash] = _leaf_record(key, value, path)
        return node_hash
    record = b"\x01" + _materialize(store, node[1]) + _materialize(store, node[2])
    node_hash = keccak256(record)
    store._nodes[node_hash] = record
    return node_hash


@st.composite
def near_canonical_shape(draw: st.DrawFn) -> Any:
    """A tree of some of SMALL_POOL on their own paths, but not always in canonical
    shape: lone leaves pushed down below empty siblings, internal nodes over two empty
    halves, now and then a leaf off its path."""
    rng = draw(st.randoms(use_true_random=False))
    entries = sorted(
        ((keccak256(key), key) for key in SMALL_POOL if rng.random() < 0.6), key=lambda e: e[0]
    )

    def shape(entries: list[tuple[bytes, bytes]], depth: int) -> Any:
        if not entries:
            if depth < 40 and rng.random() < 0.15:
                return ("node", ("empty",), ("empty",))
            return ("empty",)
        if len(entries) == 1 and (depth >= 40 or rng.random() < 0.6):
            key = entries[0][1]
            odd = rng.choice(ODD_PATHS) if rng.random() < 0.05 else None
            return ("leaf", key, rng.choice(VALUES), odd)
        left = [e for e in entries if not e[0][depth // 8] >> (7 - depth % 8) & 1]
        right = entries[len(left) :]
        return ("node", shape(left, depth + 1), shape(right, depth + 1))

    return shape(entries, 0)


@given(
    shape=st.one_of(node_strategy, near_canonical_shape()),
    batches=st.lists(
        st.dictionaries(
            st.sampled_from(SMALL_POOL), st.one_of(st.none(), st.sampled_from(VALUES)), max_size=8
        ),
        min_size=1,
        max_size=4,
    ),
    callable_lookup=st.booleans(),
)
@settings(max_examples=400, deadline=None)
def test_native_matches_python_on_arbitrary_stored_trees(
    shape: Any, batches: list[dict[bytes, bytes | None]], callable_lookup: bool
) -> None:
    outcomes = []
    for name in ("native", "python"):
        store = CallableLookupStore() if callable_lookup else RecordingMemoryStore()
        root = _materialize(store, shape)
        tree = StateTree(store, root)
        steps: list[Any] = []
        with implementation(name):
            for changes in batches:
                before = dict(store._nodes)
                try:
                    steps.append(tree.apply(changes))
                except (MissingNode, CorruptNode) as exc:
                    assert dict(store._nodes) == before and tree.root == root
                    steps.append((type(exc), str(exc)))
                    break
                root = tree.root
        outcomes.append((steps, store.log, dict(store._nodes)))
    assert outcomes[0] == outcomes[1]


def _rebuild_outcome(store: MemoryNodeStore, root: bytes, changes: Any, use_native: bool) -> Any:
    """The rebuild's result (root, staged nodes in order, replaced) or its exception."""
    try:
        if use_native:
            with implementation("native"):
                result = state_tree._native_rebuild(store, changes, root)
            assert result is not None
            return result[0], list(result[1].items()), result[2]
        rebuild = state_tree._Rebuild(
            store, sorted(state_tree._item(key, value) for key, value in changes.items())
        )
        new_root = rebuild.run(root)
        return new_root, list(rebuild.staged.items()), rebuild.replaced
    except (MissingNode, CorruptNode) as exc:
        return type(exc), str(exc)


def test_native_matches_python_on_randomly_damaged_stores() -> None:
    # Records truncated, bit-flipped, replaced by random bytes, retagged, given a
    # random key length, swapped for another node's, or deleted.
    rng = random.Random(1414)
    keys = [b"k" + bytes([i]) for i in range(60)]
    seen: set[Any] = set()
    for _ in range(400):
        store = MemoryNodeStore()
        root = StateTree(store).apply(
            {k: rng.randbytes(rng.randrange(40)) for k in rng.sample(keys, rng.randrange(1, 40))}
        )
        nodes = dict(store._nodes)
        hashes = list(nodes)
        for _ in range(rng.randrange(1, 4)):
            target = rng.choice(hashes)
            if target not in nodes:
                continue
            record = bytearray(nodes[target])
            damage = rng.randrange(7)
            if damage == 0:
                record = record[: rng.randrange(len(record) + 1)]
            elif damage == 1 and record:
                record[rng.randrange(len(record))] ^= 1 << rng.randrange(8)
            elif damage == 2:
                record = bytearray(rng.randbytes(rng.randrange(80)))
            elif damage == 3:
                record[0:1] = bytes([rng.randrange(3)])
            elif damage == 4 and len(record) >= 35:
                record[33:35] = rng.randbytes(2)
            elif damage == 5:
                record = bytearray(nodes.get(rng.choice(hashes), b"\x02"))
            elif damage == 6:
                del nodes[target]
                continue
            nodes[target] = bytes(record)
        changes = {
            k: None if rng.random() < 0.3 else rng.randbytes(rng.randrange(40))
            for k in rng.sample(keys, rng.randrange(1, 20))
        }
        outcomes = []
        for use_native in (True, False):
            damaged = MemoryNodeStore()
            damaged._nodes.update(nodes)
            outcomes.append(_rebuild_outcome(damaged, root, changes, use_native))
            assert damaged._nodes == nodes
        assert outcomes[0] == outcomes[1]
        seen.add(outcomes[0][0] if outcomes[0][0] in (MissingNode, CorruptNode) else "ok")
    assert seen == {"ok", MissingNode, CorruptNode}


# --- references and memory ----------------------------------------------------------------------


def test_many_applies_do_not_leak_references_or_memory() -> None:
    store = MemoryNodeStore()
    tree = StateTree(store)
    with implementation("native"):
        tree.apply({key: b"v" + key for key in POOL})
    value_a, value_b = b"value-a" * 3, b"value-b" * 3
    keys = POOL[::2]
    batches = [dict.fromkeys(keys, value_a), dict.fromkeys(keys, value_b)]
    corrupt = MemoryNodeStore()
    corrupt._nodes[b"\x11" * 32] = b"\x05"
    corrupt_tree = StateTree.__new__(StateTree)
    corrupt_tree._store, corrupt_tree._root, corrupt_tree._height = corrupt, b"\x11" * 32, None
    watched = [
        value_a,
        value_b,
        keys[0],
        batches[0],
        store._nodes,
        EMPTY_ROOT,
        MissingNode,
        CorruptNode,
        corrupt._nodes,
    ]

    def rounds(count: int) -> None:
        with implementation("native"):
            for i in range(count):
                tree.apply(batches[i % 2])  # after two rounds: no new nodes
                tree.apply({keys[1]: None})
                tree.apply({keys[1]: value_a})
                with pytest.raises(CorruptNode):
                    corrupt_tree.apply({b"k": b"v"})

    rounds(20)
    gc.collect()
    counts = [sys.getrefcount(obj) for obj in watched]
    tracemalloc.start()
    try:
        rounds(20)
        gc.collect()
        start, _ = tracemalloc.get_traced_memory()
        rounds(400)
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [sys.getrefcount(obj) for obj in watched] == counts
    # 400 rounds read and write some thousands of nodes: one leaked object per node
    # would be hundreds of kB.
    assert end - start < 64 * 1024, (start, end)
