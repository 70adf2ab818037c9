"""The namespace table (sequencer_net/payload/namespaces.py): every proof of an
honest table verifies, and every lie a node could tell about a namespace's
transactions (one altered, dropped, added or reordered; a forged entry; a
namespace said to be absent) is caught. Every test runs with the native (C)
table root and with the Python one."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import keccak256
from sequencer_net.payload import namespaces
from sequencer_net.payload.namespaces import (
    EMPTY_ROOT,
    EntryProof,
    InvalidNamespaceProof,
    NamespaceProof,
    NamespaceTable,
    TableEntry,
    audit_path,
    group_by_namespace,
    leaf_hash,
    merkle_root,
    namespace_proof,
    namespace_root,
    node_hash,
    root_from_path,
    table_entries,
    verify_namespace,
)

try:  # whatever SEQNET_PURE_PYTHON_TREE says: both run
    _NATIVE: ModuleType | None = importlib.import_module("sequencer_net.execution._tree_native")
except ImportError:
    _NATIVE = None


@pytest.fixture(
    scope="module",
    autouse=True,
    params=[
        pytest.param("native", marks=pytest.mark.skipif(_NATIVE is None, reason="not built")),
        "python",
    ],
)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """The table root's implementation every test of this module runs with."""
    saved = namespaces._native
    namespaces._native = _NATIVE if request.param == "native" else None
    try:
        yield request.param
    finally:
        namespaces._native = saved


def h(i: int) -> bytes:
    return keccak256(i.to_bytes(8, "big"))


blocks = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 10**6)), max_size=40).map(
    lambda pairs: [(ns, h(i)) for ns, i in pairs]
)


def of(block: list[tuple[int, bytes]], namespace: int) -> list[bytes]:
    return [tx for ns, tx in block if ns == namespace]


def test_the_merkle_tree_hash_is_rfc_6962_with_keccak() -> None:
    a, b, c = b"a", b"b", b"c"
    assert merkle_root([]) == keccak256(b"")
    assert merkle_root([a]) == keccak256(b"\x00a")
    assert merkle_root([a, b]) == node_hash(leaf_hash(a), leaf_hash(b))
    # Three leaves split 2 + 1, not 1 + 2 and not by duplicating the last.
    assert merkle_root([a, b, c]) == node_hash(node_hash(leaf_hash(a), leaf_hash(b)), leaf_hash(c))


@given(st.integers(1, 70), st.data())
@settings(max_examples=200)
def test_every_audit_path_proves_its_leaf_and_only_at_its_index(
    size: int, data: st.DataObject
) -> None:
    leaves = [bytes([i % 256, i // 256]) for i in range(size)]
    index = data.draw(st.integers(0, size - 1))
    path = audit_path(leaves, index)
    root = merkle_root(leaves)
    assert root_from_path(leaves[index], index, size, path) == root
    assert len(path) <= (size - 1).bit_length()
    other = data.draw(st.integers(0, size - 1))
    if other != index:
        with pytest.raises(InvalidNamespaceProof):
            if root_from_path(leaves[index], other, size, path) != root:
                raise InvalidNamespaceProof("does not prove")


@given(blocks, st.integers(0, 7))
@settings(max_examples=300)
def test_an_honest_proof_verifies_for_every_namespace(
    block: list[tuple[int, bytes]], ns: int
) -> None:
    root = namespace_root(block)
    proof = namespace_proof(block, ns)
    verify_namespace(root, ns, of(block, ns), proof)
    # The proof survives the wire (it is what a node sends a subscriber).
    import msgspec

    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(proof), type=NamespaceProof)
    verify_namespace(root, ns, of(block, ns), wire)


@given(blocks.filter(lambda b: len(b) >= 1), st.data())
@settings(max_examples=300)
def test_a_lie_about_a_namespace_is_caught(
    block: list[tuple[int, bytes]], data: st.DataObject
) -> None:
    ns = data.draw(st.sampled_from(sorted({n for n, _ in block})))
    root = namespace_root(block)
    proof = namespace_proof(block, ns)
    txs = of(block, ns)
    lies = [txs[:-1], [*txs, h(10**7)], [h(10**7 + 1), *txs[1:]]]
    if len(txs) >= 2 and txs[0] != txs[1]:
        lies.append([txs[1], txs[0], *txs[2:]])  # reordered
    for lie in lies:
        with pytest.raises(InvalidNamespaceProof):
            verify_namespace(root, ns, lie, proof)
    # A node that says the namespace is absent cannot prove it.
    absent = namespace_proof([(n, t) for n, t in block if n != ns], ns)
    with pytest.raises(InvalidNamespaceProof):
        verify_namespace(root, ns, [], absent)
    # A forged entry (the lie's own count and root) is not under the root.
    padded = [*txs, h(10**9)]
    forged_entry = TableEntry(ns, len(padded), merkle_root(padded))
    forged = NamespaceProof(
        ns, proof.size, present=EntryProof(proof.present.index, forged_entry, proof.present.path)
    )
    with pytest.raises(InvalidNamespaceProof):
        verify_namespace(root, ns, padded, forged)
    # Another block's root does not accept this block's proof.
    with pytest.raises(InvalidNamespaceProof):
        verify_namespace(namespace_root([*block, (ns, h(10**8))]), ns, txs, proof)


def _reference_proof(block: list[tuple[int, bytes]], namespace: int) -> NamespaceProof:
    """The proof built the direct way: the table's audit path per entry."""
    entries = table_entries(group_by_namespace(block))
    leaves = [entry.encoded() for entry in entries]

    def entry_proof(index: int) -> EntryProof:
        return EntryProof(index, entries[index], audit_path(leaves, index))

    size = len(entries)
    position = next((i for i, e in enumerate(entries) if e.namespace >= namespace), size)
    if position < size and entries[position].namespace == namespace:
        return NamespaceProof(namespace, size, present=entry_proof(position))
    below = entry_proof(position - 1) if position > 0 else None
    above = entry_proof(position) if position < size else None
    return NamespaceProof(namespace, size, below=below, above=above)


@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 10**6)), max_size=80).map(
        lambda pairs: [(ns, h(i)) for ns, i in pairs]
    )
)
@settings(max_examples=100, deadline=None)
def test_one_table_build_gives_every_namespaces_proof_as_built_alone(
    block: list[tuple[int, bytes]],
) -> None:
    table = NamespaceTable(block)
    assert table.root == namespace_root(block)
    for namespace in range(42):  # each present one, each gap and both ends
        assert table.proof(namespace) == _reference_proof(block, namespace)


def test_absence_at_the_ends_and_in_an_empty_block() -> None:
    block = [(2, h(1)), (4, h(2)), (2, h(3))]
    root = namespace_root(block)
    for ns in (0, 3, 9):
        proof = namespace_proof(block, ns)
        assert proof.present is None
        verify_namespace(root, ns, [], proof)
    empty = namespace_proof([], 5)
    assert namespace_root([]) == EMPTY_ROOT
    verify_namespace(EMPTY_ROOT, 5, [], empty)
    # Neighbours that are not adjacent do not prove absence: drop the middle entry's
    # proof and pair the first and the last of three.
    three = [(1, h(1)), (3, h(2)), (5, h(3))]
    root3 = namespace_root(three)
    first = namespace_proof(three, 1).present
    last = namespace_proof(three, 5).present
    assert first is not None and last is not None
    with pytest.raises(InvalidNamespaceProof, match="adjacent"):
        verify_namespace(root3, 3, [], NamespaceProof(3, 3, below=first, above=last))


def test_the_table_keeps_block_order_inside_a_namespace() -> None:
    forward = namespace_root([(1, h(1)), (1, h(2))])
    backward = namespace_root([(1, h(2)), (1, h(1))])
    assert forward != backward
    # Interleaving other namespaces does not change namespace 1's entry.
    mixed = [(7, h(9)), (1, h(1)), (3, h(8)), (1, h(2))]
    proof = namespace_proof(mixed, 1)
    assert proof.present is not None and proof.present.entry.root == merkle_root([h(1), h(2)])


def _rfc6962_root(leaves: list[bytes]) -> bytes:
    """MTH as RFC 6962 defines it, recursively: the reference the level-by-level
    hashing must equal."""
    if not leaves:
        return keccak256(b"")
    if len(leaves) == 1:
        return keccak256(b"\x00" + leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return keccak256(b"\x01" + _rfc6962_root(leaves[:k]) + _rfc6962_root(leaves[k:]))


@given(st.integers(0, 300), st.binary(max_size=8))
@settings(max_examples=150, deadline=None)
def test_merkle_root_hashed_level_by_level_is_the_rfc6962_tree(size: int, salt: bytes) -> None:
    leaves = [keccak256(salt + i.to_bytes(4, "big")) for i in range(size)]
    assert merkle_root(leaves) == _rfc6962_root(leaves)


@given(st.lists(st.binary(max_size=100), max_size=70))
@settings(max_examples=100, deadline=None)
def test_merkle_root_of_any_leaf_data_is_the_rfc6962_tree(leaves: list[bytes]) -> None:
    assert merkle_root(leaves) == _rfc6962_root(leaves)


@given(blocks)
@settings(max_examples=100, deadline=None)
def test_namespace_root_is_the_table_of_rfc6962_roots(block: list[tuple[int, bytes]]) -> None:
    groups: dict[int, list[bytes]] = {}
    for namespace, tx in block:
        groups.setdefault(namespace, []).append(tx)
    entries = [
        namespace.to_bytes(32, "big") + len(txs).to_bytes(32, "big") + _rfc6962_root(txs)
        for namespace, txs in sorted(groups.items())
    ]
    assert namespace_root(block) == _rfc6962_root(entries)
