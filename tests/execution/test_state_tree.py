"""The authenticated state tree: hashing, canonical shape, proofs, incremental writes."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import keccak256
from sequencer_net.execution.state_tree import (
    EMPTY_ROOT,
    MAX_KEY_BYTES,
    MAX_PROOF_BYTES,
    Commit,
    InvalidChange,
    MalformedProof,
    MemoryNodeStore,
    MissingNode,
    Proof,
    ProofLeaf,
    StaleHeight,
    StateTree,
    verify_proof,
)


class CountingStore(MemoryNodeStore):
    """Counts node writes, to show that an update touches one path only."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def put_batch(self, nodes: Mapping[bytes, bytes], commit: Commit | None = None) -> None:
        self.writes += len(nodes)
        super().put_batch(nodes, commit)


def bit(path: bytes, i: int) -> int:
    return path[i // 8] >> (7 - i % 8) & 1


def leaf(key: bytes, value: bytes) -> bytes:
    return keccak256(b"\x00" + keccak256(key) + keccak256(value))


def node(left: bytes, right: bytes) -> bytes:
    return keccak256(b"\x01" + left + right)


# --- hashing, pinned at byte level (docs/execution.md "State tree") -----------------------


def test_empty_tree_root_is_32_zero_bytes_and_proves_absence() -> None:
    tree = StateTree(MemoryNodeStore())
    assert tree.root == bytes(32)
    assert tree.get(b"acct/x") is None
    proof = tree.prove(b"acct/x")
    assert proof == Proof(siblings=(), leaf=None)
    assert verify_proof(tree.root, b"acct/x", None, proof)
    assert not verify_proof(tree.root, b"acct/x", b"", proof)


def test_single_entry_root_is_its_leaf_hash() -> None:
    tree = StateTree(MemoryNodeStore())
    root = tree.apply({b"acct/a": b"100"})
    assert root == leaf(b"acct/a", b"100")


def test_two_entries_split_at_their_first_differing_bit_with_empty_siblings_above() -> None:
    # Find two keys whose paths agree on bits 0 and 1 and differ at bit 2.
    first = b"k0"
    path = keccak256(first)
    second = next(
        k
        for k in (b"k%d" % i for i in range(1, 1000))
        if [bit(keccak256(k), i) for i in range(3)]
        == [*[bit(path, i) for i in (0, 1)], 1 - bit(path, 2)]
    )
    tree = StateTree(MemoryNodeStore())
    root = tree.apply({first: b"a", second: b"b"})

    lo, hi = (first, b"a"), (second, b"b")
    if bit(path, 2):
        lo, hi = hi, lo
    subtree = node(leaf(*lo), leaf(*hi))  # at depth 2
    for depth in (1, 0):
        subtree = node(EMPTY_ROOT, subtree) if bit(path, depth) else node(subtree, EMPTY_ROOT)
    assert root == subtree
    assert tree.prove(first).siblings == (EMPTY_ROOT, EMPTY_ROOT, leaf(second, b"b"))


def test_deleting_back_to_one_entry_collapses_to_that_leaf() -> None:
    tree = StateTree(MemoryNodeStore())
    tree.apply({b"a": b"1", b"b": b"2", b"c": b"3"})
    root = tree.apply({b"a": None, b"c": None})
    assert root == leaf(b"b", b"2")
    assert tree.apply({b"b": None}) == EMPTY_ROOT


# --- property test against a dict model ---------------------------------------------------

KEYS = [b"acct/" + bytes([i]) for i in range(24)] + [b"", b"pos/\x00", b"mkt/BTC-PERP"]
batches = st.lists(
    st.dictionaries(
        st.sampled_from(KEYS), st.none() | st.binary(max_size=6), min_size=0, max_size=12
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=120, deadline=None)
@given(batches=batches, order=st.randoms(use_true_random=False), probe=st.binary(max_size=4))
def test_tree_matches_a_dict_model(
    batches: list[dict[bytes, bytes | None]], order: random.Random, probe: bytes
) -> None:
    tree = StateTree(MemoryNodeStore())
    model: dict[bytes, bytes] = {}
    history: list[tuple[bytes, dict[bytes, bytes]]] = []
    for batch in batches:
        tree.apply(batch)
        for key, value in batch.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
        history.append((tree.root, dict(model)))
        for key in KEYS:
            assert tree.get(key) == model.get(key)

    # Earlier versions stay readable.
    for root, snapshot in history:
        for key in KEYS:
            assert tree.get(key, root=root) == snapshot.get(key)

    # History independence: same content, any insertion order, one key at a time.
    fresh = StateTree(MemoryNodeStore())
    entries = list(model.items())
    order.shuffle(entries)
    for key, value in entries:
        fresh.apply({key: value})
    assert fresh.root == tree.root
    assert dict(tree.items()) == model

    for key in [*KEYS, probe]:
        value = model.get(key)
        proof = Proof.decode(tree.prove(key).encode())
        assert proof == tree.prove(key)
        assert verify_proof(tree.root, key, value, proof)
        # Tampered claims fail.
        assert not verify_proof(tree.root, key, (value or b"") + b"!", proof)
        if value is not None:
            assert not verify_proof(tree.root, key, None, proof)
            assert not verify_proof(tree.root, key + b"?", value, proof)
        # Tampered proofs fail.
        for i, sibling in enumerate(proof.siblings):
            bad = bytes([sibling[0] ^ 1]) + sibling[1:]
            siblings = (*proof.siblings[:i], bad, *proof.siblings[i + 1 :])
            assert not verify_proof(tree.root, key, value, Proof(siblings, proof.leaf))
        if proof.siblings:
            assert not verify_proof(tree.root, key, value, Proof(proof.siblings[1:], proof.leaf))
        assert not verify_proof(
            tree.root, key, value, Proof((*proof.siblings, EMPTY_ROOT), proof.leaf)
        )
        if proof.leaf is not None:
            wrong = ProofLeaf(proof.leaf.key_hash, keccak256(b"other"))
            assert not verify_proof(tree.root, key, value, Proof(proof.siblings, wrong))
            if value is not None and proof.siblings:
                # Claiming absence by hiding the leaf fails.
                assert not verify_proof(tree.root, key, None, Proof(proof.siblings, None))


# --- incremental writes -------------------------------------------------------------------


def test_one_key_change_in_10000_keys_writes_one_path() -> None:
    store = CountingStore()
    tree = StateTree(store)
    tree.apply({b"acct/" + i.to_bytes(4, "big"): b"v%d" % i for i in range(10_000)})
    assert store.writes > 10_000  # every leaf and internal node once

    for change in ({b"acct/" + (77).to_bytes(4, "big"): b"new"}, {b"acct/new": b"1"}):
        store.writes = 0
        tree.apply(change)
        (key,) = change
        depth = len(tree.prove(key).siblings)
        assert depth < 40
        # The new leaf plus one internal node per level above it, nothing else.
        assert store.writes == depth + 1
        assert store.writes < 64

    store.writes = 0
    before = tree.root
    tree.apply({b"acct/" + (5).to_bytes(4, "big"): b"v5", b"acct/absent": None})
    assert tree.root == before
    assert store.writes == 0


def test_a_batch_rebuilds_shared_upper_nodes_once() -> None:
    store = CountingStore()
    tree = StateTree(store)
    tree.apply({b"k%d" % i: b"v" for i in range(4_000)})
    store.writes = 0
    tree.apply({b"k%d" % i: b"w" for i in range(0, 4_000, 40)})  # 100 keys
    separate = 0
    for i in range(0, 4_000, 40):
        separate += len(tree.prove(b"k%d" % i).siblings) + 1
    assert store.writes < separate * 3 // 4


# --- errors and versions ------------------------------------------------------------------


def test_invalid_changes_raise_before_anything_is_written() -> None:
    store = CountingStore()
    tree = StateTree(store)
    with pytest.raises(InvalidChange):
        tree.apply({b"ok": b"1", b"x" * (MAX_KEY_BYTES + 1): b"1"})
    with pytest.raises(InvalidChange):
        tree.apply({b"ok": "text"})  # type: ignore[dict-item]
    assert store.writes == 0
    assert tree.root == EMPTY_ROOT


def test_commit_heights_must_increase_and_open_resumes_at_latest() -> None:
    store = MemoryNodeStore()
    tree = StateTree(store)
    r1 = tree.apply({b"a": b"1"}, height=1)
    r2 = tree.apply({b"b": b"2"}, height=2)
    with pytest.raises(StaleHeight):
        tree.apply({b"c": b"3"}, height=2)
    assert tree.get(b"c") is None
    assert store.latest_commit() == Commit(height=2, root=r2)
    reopened = StateTree.open(store)
    assert (reopened.root, reopened.height) == (r2, 2)
    assert store.root_at(1) == r1


def test_opening_an_unknown_root_raises_missing_node() -> None:
    with pytest.raises(MissingNode):
        StateTree(MemoryNodeStore(), root=b"\x11" * 32)


def test_prune_drops_old_versions_and_keeps_the_kept_ones() -> None:
    store = MemoryNodeStore()
    tree = StateTree(store)
    roots = [tree.apply({b"k%d" % i: b"h%d" % h for i in range(50)}, height=h) for h in range(4)]
    removed = store.prune(keep_from_height=2)
    assert removed > 0
    assert store.root_at(1) is None
    assert tree.get(b"k7", root=roots[2]) == b"h2"
    assert tree.get(b"k7", root=roots[3]) == b"h3"
    with pytest.raises(MissingNode):
        tree.get(b"k7", root=roots[1])
    assert store.prune(keep_from_height=2) == 0


# --- proof encoding -----------------------------------------------------------------------


def _some_proof() -> tuple[bytes, Proof]:
    tree = StateTree(MemoryNodeStore())
    tree.apply({b"k%d" % i: b"v" for i in range(300)})
    return tree.root, tree.prove(b"k7")


def test_proof_encoding_is_compact_and_round_trips() -> None:
    root, proof = _some_proof()
    data = proof.encode()
    assert proof.leaf is not None
    present = sum(1 for s in proof.siblings if s != EMPTY_ROOT)
    depth = len(proof.siblings)
    assert len(data) == 1 + 64 + 2 + (depth + 7) // 8 + 32 * present
    assert Proof.decode(data) == proof
    assert verify_proof(root, b"k7", b"v", Proof.decode(data))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x02" + bytes(2), "tag"),
        (b"\x01" + bytes(10), "leaf"),
        (b"\x00\x00", "depth"),
        (b"\x00\x01\x01" + bytes(33), "above"),
        (b"\x00\x00\x03\x01", "past its depth"),
        (b"\x00\x00\x01\x80" + bytes(32), "marked absent"),
        (b"\x00\x00\x01\x80" + b"\x11" * 31, "siblings"),
        (b"\x00\x00\x00\x00", "trailing"),
        (b"\x00" * (MAX_PROOF_BYTES + 1), "above"),
    ],
)
def test_malformed_proof_bytes_raise_malformed_proof(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedProof, match=reason):
        Proof.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_accepts_only_canonical_bytes(data: bytes) -> None:
    try:
        proof = Proof.decode(data)
    except MalformedProof:
        return
    assert proof.encode() == data


class _GetOnlyStore:
    """A store with `get` and no `memory_get`: apply reads every node through `get`."""

    def __init__(self) -> None:
        self.inner = MemoryNodeStore()
        self.reads = 0

    def get(self, node_hash: bytes) -> bytes | None:
        self.reads += 1
        return self.inner.get(node_hash)

    def put_batch(self, nodes: Mapping[bytes, bytes], commit: Commit | None = None) -> None:
        self.inner.put_batch(nodes, commit)

    def uncache(self, node_hashes: list[bytes]) -> None:
        pass

    def latest_commit(self) -> Commit | None:
        return self.inner.latest_commit()


def test_a_store_without_a_memory_lookup_gives_the_same_roots_and_nodes() -> None:
    rng = random.Random(7)
    plain, fast = _GetOnlyStore(), MemoryNodeStore()
    trees = StateTree(plain), StateTree(fast)
    for _ in range(20):
        batch: dict[bytes, bytes | None] = {
            b"k/%d" % rng.randrange(300): rng.choice([None, rng.randbytes(8)]) for _ in range(25)
        }
        assert trees[0].apply(batch) == trees[1].apply(batch)
    assert plain.reads > 0
    assert len(plain.inner) == len(fast)
