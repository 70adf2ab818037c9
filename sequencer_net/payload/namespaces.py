"""The namespace table: one root that commits to every namespace's transactions.

A rollup reading its namespace from a block must be able to check that the
transactions it got are exactly its namespace's transactions in that block:
none altered, none added, none left out. The table makes that one small proof.

    leaves       the block's transactions (encoded, signed) in block order; a
                 transaction's leaf is its hash, keccak256(encoded bytes)
    groups       the leaves grouped by namespace, ascending; inside a namespace
                 the block's order
    ns_root(n)   MTH(hashes of namespace n's transactions)
    entry(n)     word(n) || word(count) || ns_root(n)          96 bytes, ABI words
    root         MTH(entries, ascending by namespace)

MTH is the RFC 6962 Merkle tree hash with keccak256 and its domain separation:

    MTH({})      = keccak256("")
    MTH({d})     = keccak256(0x00 || d)
    MTH(D[0:n])  = keccak256(0x01 || MTH(D[0:k]) || MTH(D[k:n])),
                   k the largest power of two smaller than n

A namespace's proof (`NamespaceProof`) is its entry's audit path in the table
(RFC 9162, 2.1.3), or, for a namespace with no transactions in the block, the
audit paths of the two entries that enclose it (adjacent indices, namespaces
below and above it; one of them missing at either end of the table). A reader
recomputes ns_root and the count from the transactions it received, so the
proof shows inclusion (each is in the block) and completeness (no other
transaction of the namespace is) at once, in O(log namespaces) hashes.

Pure: no I/O, no clock; the leader computes the root of what it proposes and
every voter recomputes it before voting (sequencer_net.payload.checks).

`merkle_root` and `namespace_root` run in C (`namespace_root` and
`merkle_root` of the state tree's extension, `_tree_native`) when it is built
and the input is a list or tuple of plain bytes / (int, bytes) pairs, else the
Python code below; both give the same roots and raise the same ValueError.
`SEQNET_PURE_PYTHON_TREE=1` forces the Python code, as for the state tree;
`implementation()` says which one runs.
"""

from __future__ import annotations

import importlib
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Annotated, Final

import msgspec
import sha3

from consensus.crypto import keccak256
from consensus.encoding import word


def _load_native() -> ModuleType | None:
    """The C table root, unless SEQNET_PURE_PYTHON_TREE is set (and not "0") or the
    extension is not built (or predates the table functions)."""
    if os.environ.get("SEQNET_PURE_PYTHON_TREE", "") not in ("", "0"):
        return None
    try:
        module = importlib.import_module("sequencer_net.execution._tree_native")
    except ImportError:
        return None
    if not all(hasattr(module, f) for f in ("namespace_root", "merkle_root", "keccak256_many")):
        return None
    return module


_native: ModuleType | None = _load_native()


def implementation() -> str:
    """Which code computes table roots: "native" (C) or "python"."""
    return "python" if _native is None else "native"


def native_keccak256_many() -> Callable[[list[bytes]], list[bytes] | None] | None:
    """The C keccak-256 of many messages at once when the native table code runs
    (the digests of sha3.keccak_256; None for a list not of exactly bytes), else
    None."""
    return None if _native is None else _native.keccak256_many


HASH_LENGTH: Final = 32
ENTRY_LENGTH: Final = 3 * HASH_LENGTH
EMPTY_ROOT: Final = keccak256(b"")
MAX_NAMESPACE: Final = 2**32 - 1
MAX_PROOF_HASHES: Final = 64
"""An audit path is at most log2(table size) long; 64 bounds any table."""

Hash = Annotated[bytes, msgspec.Meta(min_length=HASH_LENGTH, max_length=HASH_LENGTH)]
Path = Annotated[list[Hash], msgspec.Meta(max_length=MAX_PROOF_HASHES)]


class InvalidNamespaceProof(ValueError):
    """Transactions and a proof that do not match a namespace root."""


class TableEntry(msgspec.Struct, frozen=True, array_like=True):
    """One namespace's row of the table."""

    namespace: Annotated[int, msgspec.Meta(ge=0, le=MAX_NAMESPACE)]
    count: Annotated[int, msgspec.Meta(ge=1)]
    root: Hash

    def encoded(self) -> bytes:
        return word(self.namespace) + word(self.count) + self.root


class EntryProof(msgspec.Struct, frozen=True, array_like=True):
    """A table entry, its index and its audit path."""

    index: Annotated[int, msgspec.Meta(ge=0)]
    entry: TableEntry
    path: Path


class NamespaceProof(msgspec.Struct, frozen=True, array_like=True):
    """`present` for a namespace with transactions; `below` / `above` (either may
    be None at an end of the table) for one without. `size`: entries in the table."""

    namespace: Annotated[int, msgspec.Meta(ge=0, le=MAX_NAMESPACE)]
    size: Annotated[int, msgspec.Meta(ge=0)]
    present: EntryProof | None = None
    below: EntryProof | None = None
    above: EntryProof | None = None


# --- RFC 6962 Merkle tree hash ------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return keccak256(b"\x00" + data)


def node_hash(left: bytes, right: bytes) -> bytes:
    return keccak256(b"\x01" + left + right)


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH of `leaves` (raw leaf data; each is hashed with the 0x00 prefix)."""
    if _native is not None:
        root: bytes | None = _native.merkle_root(leaves)
        if root is not None:
            return root
    return _python_merkle_root(leaves)


def _python_merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return EMPTY_ROOT
    keccak = _keccak
    return _root_of_level([keccak(b"\x00" + leaf).digest() for leaf in leaves])


_keccak = sha3.keccak_256
"""keccak256 without a wrapper call: the table hashes two per transaction."""


def _root_of_level(level: list[bytes]) -> bytes:
    """The root over non-empty leaf hashes, bottom-up: each level hashes adjacent
    pairs and carries an odd last hash up unchanged. That is the RFC 6962 tree
    (`_subtree_root`: split at the largest power of two below n) hashed level
    by level, without a call per node; `level` is consumed."""
    keccak = _keccak
    while len(level) > 1:
        odd = level[-1] if len(level) & 1 else None
        level = [
            keccak(b"\x01" + left + right).digest()
            for left, right in zip(level[0::2], level[1::2], strict=False)
        ]
        if odd is not None:
            level.append(odd)
    return level[0]


def _subtree_root(hashes: Sequence[bytes], start: int, end: int) -> bytes:
    n = end - start
    if n == 1:
        return hashes[start]
    k = _split(n)
    return node_hash(_subtree_root(hashes, start, start + k), _subtree_root(hashes, start + k, end))


def audit_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """RFC 6962 PATH(index, leaves): the sibling hashes from the leaf up."""
    hashes = [leaf_hash(leaf) for leaf in leaves]
    path: list[bytes] = []
    start, end = 0, len(hashes)
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(_subtree_root(hashes, start + k, end))
            end = start + k
        else:
            path.append(_subtree_root(hashes, start, start + k))
            start = start + k
    path.reverse()
    return path


def root_from_path(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root an audit path proves for `leaf` at `index` of `size` leaves
    (RFC 9162, 2.1.3.2); InvalidNamespaceProof if the path cannot fit."""
    if not 0 <= index < size:
        raise InvalidNamespaceProof(f"index {index} outside a table of {size}")
    fn, sn = index, size - 1
    result = leaf_hash(leaf)
    for sibling in path:
        if len(sibling) != HASH_LENGTH:
            raise InvalidNamespaceProof("a path hash is not 32 bytes")
        if sn == 0:
            raise InvalidNamespaceProof("the audit path is too long")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidNamespaceProof("the audit path is too short")
    return result


# --- the table ----------------------------------------------------------------------


def group_by_namespace(
    transactions: Iterable[tuple[int, bytes]],
) -> dict[int, list[bytes]]:
    """(namespace, tx hash) in block order -> hashes per namespace, in block order."""
    groups: dict[int, list[bytes]] = {}
    for namespace, tx_hash in transactions:
        if not 0 <= namespace <= MAX_NAMESPACE or len(tx_hash) != HASH_LENGTH:
            raise ValueError("a namespace is a uint32 and a transaction hash 32 bytes")
        groups.setdefault(namespace, []).append(tx_hash)
    return groups


def table_entries(groups: dict[int, list[bytes]]) -> list[TableEntry]:
    return [
        TableEntry(namespace, len(hashes), merkle_root(hashes))
        for namespace, hashes in sorted(groups.items())
    ]


def namespace_root(transactions: Iterable[tuple[int, bytes]]) -> bytes:
    """The table root of a block's (namespace, tx hash) pairs, in block order."""
    if _native is not None:
        root: bytes | None = _native.namespace_root(transactions)
        if root is not None:
            return root
    return _python_namespace_root(transactions)


def _python_namespace_root(transactions: Iterable[tuple[int, bytes]]) -> bytes:
    entries = table_entries(group_by_namespace(transactions))
    return merkle_root([entry.encoded() for entry in entries])


class NamespaceTable:
    """A block's table, built once: hashing its root keeps every subtree's hash,
    so each namespace's proof is then O(log entries) lookups, no hashing."""

    def __init__(self, transactions: Iterable[tuple[int, bytes]]) -> None:
        self.entries = table_entries(group_by_namespace(transactions))
        self._namespaces = [entry.namespace for entry in self.entries]
        self._leaf_hashes = [leaf_hash(entry.encoded()) for entry in self.entries]
        self._subtrees: dict[tuple[int, int], bytes] = {}
        self.root = self._subtree(0, len(self.entries)) if self.entries else EMPTY_ROOT

    def _subtree(self, start: int, end: int) -> bytes:
        if end - start == 1:
            return self._leaf_hashes[start]
        cached = self._subtrees.get((start, end))
        if cached is None:
            k = _split(end - start)
            cached = node_hash(self._subtree(start, start + k), self._subtree(start + k, end))
            self._subtrees[(start, end)] = cached
        return cached

    def _audit_path(self, index: int) -> list[bytes]:
        """RFC 6962 PATH(index, entries), as `audit_path` computes it."""
        path: list[bytes] = []
        start, end = 0, len(self.entries)
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self._subtree(start + k, end))
                end = start + k
            else:
                path.append(self._subtree(start, start + k))
                start = start + k
        path.reverse()
        return path

    def _entry_proof(self, index: int) -> EntryProof:
        return EntryProof(index, self.entries[index], self._audit_path(index))

    def proof(self, namespace: int) -> NamespaceProof:
        """The proof for `namespace` (present, or enclosed by its neighbours)."""
        size = len(self.entries)
        position = bisect_left(self._namespaces, namespace)
        if position < size and self._namespaces[position] == namespace:
            return NamespaceProof(namespace, size, present=self._entry_proof(position))
        below = self._entry_proof(position - 1) if position > 0 else None
        above = self._entry_proof(position) if position < size else None
        return NamespaceProof(namespace, size, below=below, above=above)


def namespace_proof(transactions: Iterable[tuple[int, bytes]], namespace: int) -> NamespaceProof:
    """The proof for `namespace` in a block of (namespace, tx hash) pairs (one
    namespace; for several, build one `NamespaceTable` and ask it each)."""
    return NamespaceTable(transactions).proof(namespace)


def _check_entry(root: bytes, size: int, proof: EntryProof) -> None:
    if root_from_path(proof.entry.encoded(), proof.index, size, proof.path) != root:
        raise InvalidNamespaceProof(f"table entry {proof.index} is not under the root")


def verify_namespace(
    root: bytes, namespace: int, tx_hashes: Sequence[bytes], proof: NamespaceProof
) -> None:
    """Raise InvalidNamespaceProof unless `tx_hashes` (in order) are exactly the
    transactions of `namespace` in the block whose namespace table has `root`."""
    if proof.namespace != namespace:
        raise InvalidNamespaceProof("the proof is for another namespace")
    if proof.present is not None:
        entry = proof.present.entry
        if entry.namespace != namespace:
            raise InvalidNamespaceProof("the proven entry is another namespace's")
        if entry.count != len(tx_hashes):
            raise InvalidNamespaceProof(
                f"the block holds {entry.count} transactions of namespace {namespace}, "
                f"got {len(tx_hashes)}"
            )
        if merkle_root(list(tx_hashes)) != entry.root:
            raise InvalidNamespaceProof("the transactions do not hash to the namespace's root")
        _check_entry(root, proof.size, proof.present)
        return
    if tx_hashes:
        raise InvalidNamespaceProof(f"the block holds no transaction of namespace {namespace}")
    if proof.size == 0:
        if root != EMPTY_ROOT or proof.below is not None or proof.above is not None:
            raise InvalidNamespaceProof("an empty table has the empty root and no entries")
        return
    below, above = proof.below, proof.above
    if below is None and above is None:
        raise InvalidNamespaceProof("an absence proof needs a neighbouring entry")
    if below is not None:
        _check_entry(root, proof.size, below)
        if below.entry.namespace >= namespace:
            raise InvalidNamespaceProof("the entry below is not below the namespace")
        if above is None and below.index != proof.size - 1:
            raise InvalidNamespaceProof("the entry below is not the table's last")
    if above is not None:
        _check_entry(root, proof.size, above)
        if above.entry.namespace <= namespace:
            raise InvalidNamespaceProof("the entry above is not above the namespace")
        if below is None and above.index != 0:
            raise InvalidNamespaceProof("the entry above is not the table's first")
    if below is not None and above is not None and above.index != below.index + 1:
        raise InvalidNamespaceProof("the enclosing entries are not adjacent")
