"""The state tree's node store on disk (rocksdict, raw bytes).

Layout (one RocksDB, default column family, raw mode):

    b"n/" + node_hash(32)     -> node record (see sequencer_net.execution.state_tree)
    b"v/" + height u64 BE     -> root(32) committed at that height
    b"m/latest"               -> height u64 BE || root(32), the latest committed version

A version's nodes, its `v/` record and the `m/latest` record go in one
WriteBatch, written with sync when it carries a commit: after a crash the store
reopens at the last committed root with every node of it present. Nodes written
without a commit (an `apply` with no height) are not synced and are dropped by
the next `prune`.

Node records are content-addressed and never change, so the store keeps the
ones it recently wrote or read in memory (`NODE_CACHE_SIZE` a generation, two
generations): every block rewrites the paths to the keys it changed, and the
next block reads most of them again (the upper levels of the tree always).
`prune` empties the cache with the nodes it deletes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from sequencer_net.execution.state_tree import (
    EMPTY_ROOT,
    HASH_LENGTH,
    Commit,
    CorruptNode,
    reachable_nodes,
)

NODE_PREFIX = b"n/"
VERSION_PREFIX = b"v/"
LATEST_KEY = b"m/latest"
_HEIGHT_BYTES = 8
# Node records a cache generation holds before it becomes the old one (about
# 70-300 bytes each, so the two generations hold some tens of MB at most).
NODE_CACHE_SIZE = 65_536
# RocksDB's write buffer (memtable) size. Every block inserts a few thousand nodes
# under random keys; RocksDB's default 64 MiB memtable makes each insert a walk
# through a skip list far larger than the CPU caches. A 16 MiB one took about
# a third off the write's CPU at 10,000 open accounts (docs/performance.md).
MEMTABLE_BYTES = 16 * 1024 * 1024


def _version_key(height: int) -> bytes:
    return VERSION_PREFIX + height.to_bytes(_HEIGHT_BYTES, "big")


class RocksNodeStore:
    """A `NodeStore` in a RocksDB directory. Holds the RocksDB lock until `close()`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: bool = True,
        cache_size: int = NODE_CACHE_SIZE,
    ) -> None:
        # Two generations: a hit in the old one moves to the young one, and a full
        # young one replaces the old. Each step is one dict operation or one
        # assignment, so a reader on another thread at worst misses and reads disk.
        self._cache_size = cache_size
        self._young: dict[bytes, bytes] = {}
        self._old: dict[bytes, bytes] = {}
        self._disk_reads = 0  # node records read from RocksDB since the last uncache
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(MEMTABLE_BYTES)
        self._db = Rdict(os.fspath(path), options)
        self._commit_options = WriteOptions()
        self._commit_options.sync = sync
        self._nodes_options = WriteOptions()
        self._latest = self._read_latest()

    def _read_latest(self) -> Commit | None:
        record = self._db.get(LATEST_KEY)
        if record is None:
            return None
        if len(record) != _HEIGHT_BYTES + HASH_LENGTH:
            raise CorruptNode(f"latest-version record is {len(record)} bytes")
        height = int.from_bytes(record[:_HEIGHT_BYTES], "big")
        return Commit(height=height, root=bytes(record[_HEIGHT_BYTES:]))

    def get(self, node_hash: bytes) -> bytes | None:
        record = self._young.get(node_hash)
        if record is not None:
            return record
        record = self._old.get(node_hash)
        if record is None:
            record = self._db.get(NODE_PREFIX + node_hash)
            if record is None:
                return None
            self._disk_reads += 1
        self._remember(node_hash, record)
        return record

    def memory_get(self) -> Callable[[bytes], bytes | None]:
        """The young generation's lookup (`StateTree.apply` tries it before `get`).
        A generation change while it is held leaves it looking in the old one:
        records are content-addressed, so a hit is still right, and a miss falls
        back to `get`."""
        return self._young.get

    def _remember(self, node_hash: bytes, record: bytes) -> None:
        if self._cache_size <= 0:
            return
        young = self._young
        if len(young) >= self._cache_size:
            self._old = young
            young = self._young = {}
        young[node_hash] = record

    def put_batch(self, nodes: Mapping[bytes, bytes], commit: Commit | None = None) -> None:
        """Write `nodes` and, if given, `commit` as the latest version, in one atomic batch."""
        batch = WriteBatch(raw_mode=True)
        # In key order: RocksDB inserts a sorted batch into its memtable with
        # fewer cache misses (about a fifth less CPU for a block's few thousand nodes).
        for node_hash in sorted(nodes):
            batch.put(NODE_PREFIX + node_hash, nodes[node_hash])
        if commit is None:
            self._db.write(batch, self._nodes_options)
        else:
            batch.put(_version_key(commit.height), commit.root)
            batch.put(LATEST_KEY, commit.height.to_bytes(_HEIGHT_BYTES, "big") + commit.root)
            self._db.write(batch, self._commit_options)
            self._latest = commit
        # Only after the write: a failed write leaves the cache as it was.
        if len(self._young) + len(nodes) <= self._cache_size:
            self._young.update(nodes)  # the common case, in one C-level call
        else:
            for node_hash, record in nodes.items():
                self._remember(node_hash, record)

    def uncache(self, node_hashes: list[bytes]) -> None:
        """Drop nodes an update replaced from memory: the next blocks read the new
        tree, so the room goes to its nodes. They stay on disk for older roots.

        Only while the cache is too small for the trees being read, which a read
        from disk since the last call shows: a drop costs a dict operation per
        node, about what the block's reads of the same nodes cost."""
        if not self._disk_reads:
            return
        self._disk_reads = 0
        # This update read every one of them, so they are in the young generation.
        pop = self._young.pop
        for node_hash in node_hashes:
            pop(node_hash, None)

    def latest_commit(self) -> Commit | None:
        return self._latest

    def root_at(self, height: int) -> bytes | None:
        """The root committed at `height`, or None if never committed or pruned."""
        root: bytes | None = self._db.get(_version_key(height))
        return root

    def prune(self, keep_from_height: int) -> int:
        """Forget versions below `keep_from_height` (the latest is always kept) and
        every node that no kept version reaches. Returns the number of nodes removed.

        Cost is O(stored nodes): run it rarely (e.g. every few thousand blocks).
        """
        batch = WriteBatch(raw_mode=True)
        kept_roots: list[bytes] = []
        for key in self._keys_with_prefix(VERSION_PREFIX):
            if int.from_bytes(key[len(VERSION_PREFIX) :], "big") < keep_from_height:
                batch.delete(key)
            else:
                root = self._db.get(key)
                if root is not None:
                    kept_roots.append(bytes(root))
        if self._latest is not None:
            kept_roots.append(self._latest.root)
        live = reachable_nodes(self, [r for r in kept_roots if r != EMPTY_ROOT])
        removed = 0
        for key in self._keys_with_prefix(NODE_PREFIX):
            if key[len(NODE_PREFIX) :] not in live:
                batch.delete(key)
                removed += 1
        self._db.write(batch, self._commit_options)
        self._young = {}
        self._old = {}
        return removed

    def _keys_with_prefix(self, prefix: bytes) -> Iterator[bytes]:
        for key in self._db.keys(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                return
            yield key

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RocksNodeStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
