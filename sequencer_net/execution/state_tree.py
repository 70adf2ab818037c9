"""The authenticated state: a binary sparse Merkle tree over keccak-256 key paths.

Every state entry (`b"acct/" + address`, `b"pos/" + ...`, ...) is a leaf at the
path `keccak256(key)` (256 bits, most significant bit first: bit 0 chooses the
root's left or right child). The tree is kept in one canonical shape, so its
root depends only on the set of entries, never on the order they were written:

- a subtree holding no entry is *empty* and hashes to `EMPTY_ROOT` (32 zero bytes);
- a subtree holding one entry is that entry's *leaf*, wherever the subtree
  starts (the leaf is not pushed down to depth 256), so depth is ~log2(n);
- a subtree holding two or more entries is an *internal* node over its two halves.

Hashes (docs/execution.md, "State tree", gives the same at byte level):

    leaf     = keccak256(0x00 || keccak256(key) || keccak256(value))
    internal = keccak256(0x01 || left || right)
    empty    = 32 zero bytes

Nodes are content-addressed (hash -> record) in a `NodeStore`; an update writes
only new nodes, so every earlier root stays readable and provable until pruned.
`verify_proof` needs nothing but the root, the key, the claimed value and the proof.

This module is pure: no I/O besides the `NodeStore` it is handed, no clock.

`StateTree.apply` runs its batch rebuild in C (`_tree_native`, built by
setup.py) when that module imports, else the Python `_Rebuild` below; both
give the same root, the same new nodes and the same exceptions. Setting
`SEQNET_PURE_PYTHON_TREE=1` in the environment forces the Python code;
`implementation()` says which one runs.
"""

from __future__ import annotations

import importlib
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Final, Protocol

import sha3

from consensus.crypto import keccak256


def _load_native() -> ModuleType | None:
    """The C rebuild, unless SEQNET_PURE_PYTHON_TREE is set (and not "0") or it is not
    built (no C compiler at install): then the Python rebuild runs."""
    if os.environ.get("SEQNET_PURE_PYTHON_TREE", "") not in ("", "0"):
        return None
    try:
        return importlib.import_module("sequencer_net.execution._tree_native")
    except ImportError:
        return None


_native: ModuleType | None = _load_native()

HASH_LENGTH: Final = 32
PATH_BITS: Final = 256
EMPTY_ROOT: Final = bytes(HASH_LENGTH)

LEAF_TAG: Final = 0x00
INTERNAL_TAG: Final = 0x01
_LEAF_PREFIX: Final = bytes([LEAF_TAG])
_INTERNAL_PREFIX: Final = bytes([INTERNAL_TAG])

# Bounds, with their reasons.
# Keys are short structured names (prefix + address/id); 1 KiB leaves room and
# lets a leaf record carry the key length in two bytes.
MAX_KEY_BYTES: Final = 1024
# One value is one account, position, order or market record; 4 MiB is far above
# any of them and keeps a single malicious transaction from bloating a leaf.
MAX_VALUE_BYTES: Final = 4 * 1024 * 1024
# A proof: tag, optional leaf (key hash, value hash), depth, sibling bitmap and
# at most one sibling hash per path bit. Nothing valid is longer than this.
MAX_PROOF_BYTES: Final = 1 + 2 * HASH_LENGTH + 2 + PATH_BITS // 8 + PATH_BITS * HASH_LENGTH

_keccak: Final = sha3.keccak_256  # keccak256() without the call around it, for the rebuild

_PROOF_ENDS_EMPTY: Final = 0x00
_PROOF_ENDS_LEAF: Final = 0x01

# Node kinds while rebuilding. UNKNOWN: an untouched child whose record was not read.
_EMPTY: Final = 0
_LEAF: Final = 1
_INTERNAL: Final = 2
_UNKNOWN: Final = 3


class MalformedProof(ValueError):
    """Proof bytes do not decode: wrong length, unknown tag, non-canonical bitmap."""


class InvalidChange(ValueError):
    """A change passed to `StateTree.apply` has a key or value of the wrong type or size."""


class StaleHeight(ValueError):
    """A commit height is not above the store's latest committed height."""


class MissingNode(LookupError):
    """A node the tree refers to is not in the store (pruned, or a root never written)."""


class CorruptNode(ValueError):
    """A stored node record does not have a valid layout."""


@dataclass(frozen=True, slots=True)
class Commit:
    """A committed version: the state root after executing block `height`."""

    height: int
    root: bytes


class NodeStore(Protocol):
    """Content-addressed node storage: node hash -> node record.

    `put_batch` writes all `nodes` and, when `commit` is given, records it as the
    latest committed version in the same atomic write, so a reader after a crash
    sees either the previous version or this one, never a root without its nodes.
    """

    def get(self, node_hash: bytes) -> bytes | None: ...

    def put_batch(self, nodes: Mapping[bytes, bytes], commit: Commit | None = None) -> None: ...

    def uncache(self, node_hashes: list[bytes]) -> None:
        """A hint: these nodes left the latest tree (an update replaced them), so a
        store that keeps recent nodes in memory can drop them. They stay stored."""
        ...

    def latest_commit(self) -> Commit | None: ...


# A store may also offer `memory_get() -> Callable[[bytes], bytes | None]`: a
# lookup in the nodes it holds in memory (a dict's `get`), None when it does not
# hold one there. `StateTree.apply` tries it first for every node it reads and
# falls back to `get`: one C call instead of a Python method per node.


@dataclass(frozen=True, slots=True)
class ProofLeaf:
    """The leaf a proof's path ends at: its key hash and value hash."""

    key_hash: bytes
    value_hash: bytes


@dataclass(frozen=True, slots=True)
class Proof:
    """A path from the root to where `keccak256(key)` ends: a leaf or an empty subtree.

    `siblings[i]` is the hash of the sibling subtree at depth i + 1 (root first);
    `EMPTY_ROOT` stands for an empty sibling. A membership proof ends at the
    key's own leaf; a non-membership proof ends at an empty subtree or at the
    leaf of another key whose path shares the first `len(siblings)` bits.
    """

    siblings: tuple[bytes, ...]
    leaf: ProofLeaf | None

    def encode(self) -> bytes:
        """Canonical bytes: tag, [key_hash value_hash], depth u16 BE, bitmap, non-empty siblings."""
        depth = len(self.siblings)
        if depth > PATH_BITS:
            raise ValueError(f"a proof has at most {PATH_BITS} siblings, got {depth}")
        out = bytearray()
        if self.leaf is None:
            out.append(_PROOF_ENDS_EMPTY)
        else:
            out.append(_PROOF_ENDS_LEAF)
            out += self.leaf.key_hash
            out += self.leaf.value_hash
        out += depth.to_bytes(2, "big")
        bitmap = bytearray((depth + 7) // 8)
        present: list[bytes] = []
        for i, sibling in enumerate(self.siblings):
            if len(sibling) != HASH_LENGTH:
                raise ValueError("a sibling hash is 32 bytes")
            if sibling != EMPTY_ROOT:
                bitmap[i >> 3] |= 0x80 >> (i & 7)
                present.append(sibling)
        out += bitmap
        for sibling in present:
            out += sibling
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Proof:
        """Parse `encode()` output; raise `MalformedProof` at the first thing that is wrong."""
        if len(data) > MAX_PROOF_BYTES:
            raise MalformedProof(f"proof is {len(data)} bytes, above {MAX_PROOF_BYTES}")
        if not data:
            raise MalformedProof("proof is empty")
        tag = data[0]
        offset = 1
        leaf: ProofLeaf | None
        if tag == _PROOF_ENDS_EMPTY:
            leaf = None
        elif tag == _PROOF_ENDS_LEAF:
            if len(data) < offset + 2 * HASH_LENGTH:
                raise MalformedProof("proof is truncated in its leaf")
            leaf = ProofLeaf(
                key_hash=bytes(data[offset : offset + HASH_LENGTH]),
                value_hash=bytes(data[offset + HASH_LENGTH : offset + 2 * HASH_LENGTH]),
            )
            offset += 2 * HASH_LENGTH
        else:
            raise MalformedProof(f"unknown proof tag 0x{tag:02x}")
        if len(data) < offset + 2:
            raise MalformedProof("proof is truncated in its depth")
        depth = int.from_bytes(data[offset : offset + 2], "big")
        offset += 2
        if depth > PATH_BITS:
            raise MalformedProof(f"proof depth {depth} is above {PATH_BITS}")
        bitmap_len = (depth + 7) // 8
        if len(data) < offset + bitmap_len:
            raise MalformedProof("proof is truncated in its bitmap")
        bitmap = data[offset : offset + bitmap_len]
        offset += bitmap_len
        if depth & 7 and bitmap[-1] & ((1 << (8 - (depth & 7))) - 1):
            raise MalformedProof("proof bitmap has bits set past its depth")
        siblings: list[bytes] = []
        for i in range(depth):
            if bitmap[i >> 3] >> (7 - (i & 7)) & 1:
                sibling = bytes(data[offset : offset + HASH_LENGTH])
                if len(sibling) != HASH_LENGTH:
                    raise MalformedProof("proof is truncated in its siblings")
                if sibling == EMPTY_ROOT:
                    raise MalformedProof("an empty sibling must be marked absent in the bitmap")
                siblings.append(sibling)
                offset += HASH_LENGTH
            else:
                siblings.append(EMPTY_ROOT)
        if offset != len(data):
            raise MalformedProof(f"{len(data) - offset} trailing bytes after the proof")
        return cls(siblings=tuple(siblings), leaf=leaf)


def leaf_hash(key_hash: bytes, value_hash: bytes) -> bytes:
    return keccak256(_LEAF_PREFIX + key_hash + value_hash)


def internal_hash(left: bytes, right: bytes) -> bytes:
    return keccak256(_INTERNAL_PREFIX + left + right)


def verify_proof(root: bytes, key: bytes, value: bytes | None, proof: Proof) -> bool:
    """True iff `proof` shows that under `root`, `key` maps to `value` (None: is absent).

    Recomputes the root from the proof's end node up along the bits of
    `keccak256(key)`, then compares. A non-membership proof that ends at another
    key's leaf must show a leaf whose path shares the proven prefix.
    """
    depth = len(proof.siblings)
    if len(root) != HASH_LENGTH or depth > PATH_BITS:
        return False
    path = keccak256(key)
    leaf = proof.leaf
    if leaf is not None and (
        len(leaf.key_hash) != HASH_LENGTH or len(leaf.value_hash) != HASH_LENGTH
    ):
        return False
    if value is None:
        if leaf is None:
            node = EMPTY_ROOT
        else:
            if leaf.key_hash == path or not _shares_prefix(leaf.key_hash, path, depth):
                return False
            node = leaf_hash(leaf.key_hash, leaf.value_hash)
    else:
        if leaf is None or leaf.key_hash != path or leaf.value_hash != keccak256(value):
            return False
        node = leaf_hash(leaf.key_hash, leaf.value_hash)
    path_int = int.from_bytes(path, "big")
    for i in range(depth - 1, -1, -1):
        sibling = proof.siblings[i]
        if len(sibling) != HASH_LENGTH:
            return False
        if path_int >> (PATH_BITS - 1 - i) & 1:
            node = internal_hash(sibling, node)
        else:
            node = internal_hash(node, sibling)
    return node == root


def _shares_prefix(a: bytes, b: bytes, bits: int) -> bool:
    shift = PATH_BITS - bits
    return int.from_bytes(a, "big") >> shift == int.from_bytes(b, "big") >> shift


# --- node records -------------------------------------------------------------------------
# internal: 0x01 || left(32) || right(32)
# leaf:     0x00 || keccak256(key)(32) || len(key) u16 BE || key || value


def _leaf_record(path: bytes, key: bytes, value: bytes) -> bytes:
    return _LEAF_PREFIX + path + len(key).to_bytes(2, "big") + key + value


def _leaf_key_value(record: bytes) -> tuple[bytes, bytes]:
    key_len = int.from_bytes(record[33:35], "big")
    return record[35 : 35 + key_len], record[35 + key_len :]


def _load(store: NodeStore, node_hash: bytes) -> bytes:
    return _check(node_hash, store.get(node_hash))


# --- batch rebuild ------------------------------------------------------------------------
# An item is (path as int, path, key, value or None for delete, known leaf hash or None).
_Item = tuple[int, bytes, bytes, bytes | None, bytes | None]


def _check(node_hash: bytes, record: bytes | None) -> bytes:
    """`record` as read for `node_hash`, or MissingNode / CorruptNode."""
    if record is None:
        raise MissingNode(f"node {node_hash.hex()} is not in the store")
    tag = record[0] if record else -1
    if tag == INTERNAL_TAG:
        if len(record) != 1 + 2 * HASH_LENGTH:
            raise CorruptNode(f"internal node {node_hash.hex()} is {len(record)} bytes")
    elif tag == LEAF_TAG:
        if len(record) < 35 or len(record) < 35 + int.from_bytes(record[33:35], "big"):
            raise CorruptNode(f"leaf node {node_hash.hex()} is truncated")
    else:
        raise CorruptNode(f"node {node_hash.hex()} has unknown tag")
    return record


class _Rebuild:
    """One batch update: rewrites each touched subtree once, collects new nodes in `staged`."""

    __slots__ = ("items", "paths", "replaced", "staged", "store")

    def __init__(self, store: NodeStore, items: list[_Item]) -> None:
        self.store = store
        self.items = items
        self.paths = [item[0] for item in items]
        self.staged: dict[bytes, bytes] = {}
        # Nodes of the old tree that the new one no longer holds (for the store's cache).
        self.replaced: list[bytes] = []

    def run(self, root: bytes) -> bytes:
        """The root after applying every item to the tree at `root`."""
        items, paths, staged = self.items, self.paths, self.staged
        get, keccak, build, join = self.store.get, _keccak, self.build, self.join
        # A store's in-memory lookup, called without a Python frame; a miss
        # (None) goes to `get`. Records are never empty, so `or` is that test.
        memory = getattr(self.store, "memory_get", None)
        quick = get if memory is None else memory()
        merge_leaf, replaced = self.merge_leaf, self.replaced.append

        def single(node_hash: bytes, depth: int, i: int) -> tuple[bytes, int]:
            """`update` for one item that writes a value (most of a block's paths
            below the top levels): walk down to the leaf or empty slot it lands
            in, then hash back up in a loop instead of a call per level. The
            same nodes as `update`: an insert or value change keeps every
            subtree on the path holding two or more entries, so each parent is
            an internal node over the new child and its old sibling (join's one
            exception, a lone leaf beside an empty sibling, is kept below)."""
            path_int = paths[i]
            trail: list[tuple[bytes, bytes, int]] = []
            node = node_hash
            while True:
                if node == EMPTY_ROOT:
                    new = build(depth, [items[i]])
                    break
                record = quick(node) or get(node)
                if record is None or len(record) != 65 or record[0] != INTERNAL_TAG:
                    record = _check(node, record)
                    if record[0] == LEAF_TAG:
                        new = merge_leaf(node, record, depth, i, i + 1)
                        break
                if depth == PATH_BITS:
                    raise CorruptNode("path is longer than 256 bits")
                if path_int >> (PATH_BITS - 1 - depth) & 1:
                    trail.append((node, record[1:33], 1))
                    node = record[33:65]
                else:
                    trail.append((node, record[33:65], 0))
                    node = record[1:33]
                depth += 1
            if not trail:
                return new
            child, kind = new
            if child == node:
                return node_hash, _INTERNAL
            for parent, sibling, right in reversed(trail):
                replaced(parent)
                if sibling == EMPTY_ROOT and kind == _LEAF:
                    continue  # join: a lone leaf moves up (its hash has no depth)
                record = (
                    _INTERNAL_PREFIX + sibling + child
                    if right
                    else _INTERNAL_PREFIX + child + sibling
                )
                child = keccak(record).digest()
                staged[child] = record
                kind = _INTERNAL
            return child, kind

        def update(node_hash: bytes, depth: int, lo: int, hi: int) -> tuple[bytes, int]:
            """Apply items[lo:hi] (lo < hi, all under this node's prefix) to `node_hash`."""
            if hi - lo == 1 and items[lo][3] is not None:
                return single(node_hash, depth, lo)
            if node_hash == EMPTY_ROOT:
                return build(depth, [item for item in items[lo:hi] if item[3] is not None])
            record = quick(node_hash) or get(node_hash)
            if record is None or len(record) != 65 or record[0] != INTERNAL_TAG:
                record = _check(node_hash, record)
                if record[0] == LEAF_TAG:
                    return merge_leaf(node_hash, record, depth, lo, hi)
            if depth == PATH_BITS:
                raise CorruptNode("path is longer than 256 bits")
            left, right = record[1:33], record[33:65]
            # The first item with bit `depth` set (those with it clear come first).
            shift = PATH_BITS - 1 - depth
            mid = bisect_left(paths, (paths[lo] >> shift | 1) << shift, lo, hi)
            if mid == lo:
                new_right = update(right, depth + 1, lo, hi)
                if new_right[0] == right:
                    return node_hash, _INTERNAL
                new_left = (left, _EMPTY if left == EMPTY_ROOT else _UNKNOWN)
            elif mid == hi:
                new_left = update(left, depth + 1, lo, hi)
                if new_left[0] == left:
                    return node_hash, _INTERNAL
                new_right = (right, _EMPTY if right == EMPTY_ROOT else _UNKNOWN)
            else:
                new_left = update(left, depth + 1, lo, mid)
                new_right = update(right, depth + 1, mid, hi)
                if new_left[0] == left and new_right[0] == right:
                    return node_hash, _INTERNAL
            replaced(node_hash)
            left, right = new_left[0], new_right[0]
            if left != EMPTY_ROOT and right != EMPTY_ROOT:
                record = _INTERNAL_PREFIX + left + right
                node_hash = keccak(record).digest()
                staged[node_hash] = record
                return node_hash, _INTERNAL
            return join(new_left, new_right)

        if not items:
            return root
        return update(root, 0, 0, len(items))[0]

    def merge_leaf(
        self, node_hash: bytes, record: bytes, depth: int, lo: int, hi: int
    ) -> tuple[bytes, int]:
        """A leaf's subtree holds one entry: merge that entry with items[lo:hi]."""
        items = self.items
        leaf_path = record[1:33]
        leaf_int = int.from_bytes(leaf_path, "big")
        at = bisect_left(self.paths, leaf_int, lo, hi)
        if at < hi and items[at][0] == leaf_int:
            if items[at][3] == _leaf_key_value(record)[1]:
                if hi - lo == 1:
                    return node_hash, _LEAF
            else:
                self.replaced.append(node_hash)  # its entry changes or goes
            merged = [item for item in items[lo:hi] if item[3] is not None]
        else:
            key, value = _leaf_key_value(record)
            kept: _Item = (leaf_int, leaf_path, key, value, node_hash)
            merged = [item for item in items[lo:at] if item[3] is not None]
            merged.append(kept)
            merged.extend(item for item in items[at:hi] if item[3] is not None)
        return self.build(depth, merged)

    def build(self, depth: int, items: list[_Item]) -> tuple[bytes, int]:
        """The canonical subtree at `depth` holding exactly `items` (sorted, no deletes)."""
        if not items:
            return EMPTY_ROOT, _EMPTY
        if len(items) == 1:
            return self.leaf(items[0]), _LEAF
        return self._build(depth, items, [item[0] for item in items], 0, len(items)), _INTERNAL

    def _build(self, depth: int, items: list[_Item], paths: list[int], lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return self.leaf(items[lo])
        if depth == PATH_BITS:  # only a corrupt store: a leaf off its path
            raise CorruptNode("path is longer than 256 bits")
        shift = PATH_BITS - 1 - depth
        mid = bisect_left(paths, (paths[lo] >> shift | 1) << shift, lo, hi)
        left = EMPTY_ROOT if mid == lo else self._build(depth + 1, items, paths, lo, mid)
        right = EMPTY_ROOT if mid == hi else self._build(depth + 1, items, paths, mid, hi)
        return self.internal(left, right)

    def join(self, left: tuple[bytes, int], right: tuple[bytes, int]) -> tuple[bytes, int]:
        """Parent of two canonical halves; a lone leaf moves up (its hash has no depth)."""
        if right[0] == EMPTY_ROOT:
            if left[0] == EMPTY_ROOT:
                return EMPTY_ROOT, _EMPTY
            if self.is_leaf(left):
                return left[0], _LEAF
        elif left[0] == EMPTY_ROOT and self.is_leaf(right):
            return right[0], _LEAF
        return self.internal(left[0], right[0]), _INTERNAL

    def is_leaf(self, node: tuple[bytes, int]) -> bool:
        if node[1] == _UNKNOWN:
            return _load(self.store, node[0])[0] == LEAF_TAG
        return node[1] == _LEAF

    def leaf(self, item: _Item) -> bytes:
        _, path, key, value, known = item
        if known is not None:
            return known  # an existing leaf moved to another depth: same hash, already stored
        assert value is not None
        node_hash: bytes = _keccak(_LEAF_PREFIX + path + _keccak(value).digest()).digest()
        self.staged[node_hash] = _leaf_record(path, key, value)
        return node_hash

    def internal(self, left: bytes, right: bytes) -> bytes:
        record = _INTERNAL_PREFIX + left + right
        node_hash: bytes = _keccak(record).digest()
        self.staged[node_hash] = record
        return node_hash


# --- the tree -----------------------------------------------------------------------------


class StateTree:
    """A view of the state tree at one root, over a shared `NodeStore`.

    `apply` moves this view to a new root; every root written before stays
    readable (`get(key, root=...)`, `prove(key, root=...)`) until the store prunes it.
    """

    __slots__ = ("_height", "_root", "_store")

    def __init__(
        self, store: NodeStore, root: bytes = EMPTY_ROOT, height: int | None = None
    ) -> None:
        if len(root) != HASH_LENGTH:
            raise ValueError("a root is 32 bytes")
        if root != EMPTY_ROOT:
            _load(store, root)
        self._store = store
        self._root = root
        self._height = height

    @classmethod
    def open(cls, store: NodeStore) -> StateTree:
        """The tree at the store's latest committed version, or empty if none."""
        commit = store.latest_commit()
        if commit is None:
            return cls(store)
        return cls(store, commit.root, commit.height)

    @property
    def root(self) -> bytes:
        return self._root

    @property
    def height(self) -> int | None:
        """Height of the version this view was opened at or last committed, if any."""
        return self._height

    @property
    def store(self) -> NodeStore:
        return self._store

    def apply(self, changes: Mapping[bytes, bytes | None], height: int | None = None) -> bytes:
        """Set each key to its value (None deletes it) and return the new root.

        Writes only the nodes on the changed paths, in one `put_batch`; cost is
        O(len(changes) * log n) hashes. With `height`, the new root is recorded as
        the committed version for that height in the same atomic write.
        Raises `InvalidChange` or `StaleHeight` before anything is written.
        """
        if height is not None:
            latest = self._store.latest_commit()
            if height < 0 or (latest is not None and height <= latest.height):
                raise StaleHeight(f"height {height} is not above the latest committed height")
        rebuilt = None if _native is None else _native_rebuild(self._store, changes, self._root)
        if rebuilt is None:
            items = sorted(_item(key, value) for key, value in changes.items())
            rebuild = _Rebuild(self._store, items)
            rebuilt = rebuild.run(self._root), rebuild.staged, rebuild.replaced
        new_root, staged, replaced = rebuilt
        commit = None if height is None else Commit(height=height, root=new_root)
        if staged or commit is not None:
            self._store.put_batch(staged, commit)
        if replaced:
            self._store.uncache(replaced)
        self._root = new_root
        if height is not None:
            self._height = height
        return new_root

    def get(self, key: bytes, root: bytes | None = None) -> bytes | None:
        """The value at `key` under `root` (default: the current root), or None."""
        path = keccak256(key)
        path_int = int.from_bytes(path, "big")
        node_hash = self._root if root is None else root
        for depth in range(PATH_BITS + 1):
            if node_hash == EMPTY_ROOT:
                return None
            record = _load(self._store, node_hash)
            if record[0] == LEAF_TAG:
                return _leaf_key_value(record)[1] if record[1:33] == path else None
            node_hash = record[33:65] if path_int >> (PATH_BITS - 1 - depth) & 1 else record[1:33]
        raise CorruptNode("path is longer than 256 bits")

    def prove(self, key: bytes, root: bytes | None = None) -> Proof:
        """A membership proof if `key` is present under `root`, else a non-membership proof."""
        path_int = int.from_bytes(keccak256(key), "big")
        node_hash = self._root if root is None else root
        siblings: list[bytes] = []
        for depth in range(PATH_BITS + 1):
            if node_hash == EMPTY_ROOT:
                return Proof(siblings=tuple(siblings), leaf=None)
            record = _load(self._store, node_hash)
            if record[0] == LEAF_TAG:
                value = _leaf_key_value(record)[1]
                leaf = ProofLeaf(key_hash=record[1:33], value_hash=keccak256(value))
                return Proof(siblings=tuple(siblings), leaf=leaf)
            if path_int >> (PATH_BITS - 1 - depth) & 1:
                siblings.append(record[1:33])
                node_hash = record[33:65]
            else:
                siblings.append(record[33:65])
                node_hash = record[1:33]
        raise CorruptNode("path is longer than 256 bits")

    def items(self, root: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) under `root`, in path order (keccak256(key) ascending)."""
        start = self._root if root is None else root
        stack = [start] if start != EMPTY_ROOT else []
        while stack:
            record = _load(self._store, stack.pop())
            if record[0] == LEAF_TAG:
                yield _leaf_key_value(record)
                continue
            for child in (record[33:65], record[1:33]):
                if child != EMPTY_ROOT:
                    stack.append(child)


def implementation() -> str:
    """Which batch rebuild `StateTree.apply` runs: "native" (C) or "python"."""
    return "python" if _native is None else "native"


def _native_rebuild(
    store: NodeStore, changes: Mapping[bytes, bytes | None], root: bytes
) -> tuple[bytes, dict[bytes, bytes], list[bytes]] | None:
    """`_Rebuild(store, items).run(root)` in C: (new root, staged, replaced), or None
    when a key or value is not plain bytes of a valid size (the Python code then
    raises the same `InvalidChange`, or takes a bytes subclass)."""
    assert _native is not None
    get = store.get
    memory = getattr(store, "memory_get", None)
    quick: object = get if memory is None else memory()
    # A dict's bound `get` (both stores): pass the dict, which C reads without a call.
    owner = getattr(quick, "__self__", None)
    if type(owner) is dict and quick == owner.get:
        quick = owner
    result: tuple[bytes, dict[bytes, bytes], list[bytes]] | None = _native.rebuild(
        changes, root, quick, get, MissingNode, CorruptNode
    )
    return result


def _item(key: bytes, value: bytes | None) -> _Item:
    if not isinstance(key, bytes) or len(key) > MAX_KEY_BYTES:
        raise InvalidChange(f"a key is bytes of at most {MAX_KEY_BYTES} bytes: {key!r:.80}")
    if value is not None and (not isinstance(value, bytes) or len(value) > MAX_VALUE_BYTES):
        raise InvalidChange(f"the value of {key!r:.80} is not bytes of <= {MAX_VALUE_BYTES}")
    path = keccak256(key)
    return (int.from_bytes(path, "big"), path, key, value, None)


def reachable_nodes(store: NodeStore, roots: Iterable[bytes]) -> set[bytes]:
    """Hashes of every node under any of `roots`: what pruning must keep."""
    seen: set[bytes] = set()
    stack = [root for root in roots if root != EMPTY_ROOT]
    while stack:
        node_hash = stack.pop()
        if node_hash in seen:
            continue
        seen.add(node_hash)
        record = _load(store, node_hash)
        if record[0] == INTERNAL_TAG:
            for child in (record[1:33], record[33:65]):
                if child != EMPTY_ROOT and child not in seen:
                    stack.append(child)
    return seen


class MemoryNodeStore:
    """A `NodeStore` in a dict: for tests, tools and the in-memory benchmark."""

    __slots__ = ("_latest", "_nodes", "_roots")

    def __init__(self) -> None:
        self._nodes: dict[bytes, bytes] = {}
        self._roots: dict[int, bytes] = {}
        self._latest: Commit | None = None

    def get(self, node_hash: bytes) -> bytes | None:
        return self._nodes.get(node_hash)

    def memory_get(self) -> Callable[[bytes], bytes | None]:
        return self._nodes.get

    def put_batch(self, nodes: Mapping[bytes, bytes], commit: Commit | None = None) -> None:
        self._nodes.update(nodes)
        if commit is not None:
            self._roots[commit.height] = commit.root
            self._latest = commit

    def uncache(self, node_hashes: list[bytes]) -> None:
        pass  # everything is in memory here

    def latest_commit(self) -> Commit | None:
        return self._latest

    def root_at(self, height: int) -> bytes | None:
        return self._roots.get(height)

    def prune(self, keep_from_height: int) -> int:
        """Forget committed versions below `keep_from_height` (the latest is always kept)
        and every node no kept version reaches, including nodes of uncommitted roots.
        Returns the number of nodes removed."""
        self._roots = {h: r for h, r in self._roots.items() if h >= keep_from_height}
        kept_roots = list(self._roots.values())
        if self._latest is not None:
            self._roots[self._latest.height] = self._latest.root
            kept_roots.append(self._latest.root)
        live = reachable_nodes(self, kept_roots)
        dead = [h for h in self._nodes if h not in live]
        for node_hash in dead:
            del self._nodes[node_hash]
        return len(dead)

    def __len__(self) -> int:
        return len(self._nodes)
