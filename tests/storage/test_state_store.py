"""The state tree on rocksdict: versions survive a close and reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from sequencer_net.execution.state_tree import (
    EMPTY_ROOT,
    Commit,
    MissingNode,
    StateTree,
    verify_proof,
)
from sequencer_net.storage.state_store import RocksNodeStore


def block_changes(height: int) -> dict[bytes, bytes | None]:
    changes: dict[bytes, bytes | None] = {
        b"acct/" + bytes([i]): b"balance %d at %d" % (i, height) for i in range(height * 10)
    }
    if height > 1:
        changes[b"acct/\x00"] = None
    return changes


def test_versions_survive_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state"
    roots: dict[int, bytes] = {}
    with RocksNodeStore(path) as store:
        tree = StateTree.open(store)
        assert tree.root == EMPTY_ROOT
        for height in range(1, 6):
            roots[height] = tree.apply(block_changes(height), height=height)
        # Written after the last commit but never committed: not where a restart resumes.
        tree.apply({b"acct/uncommitted": b"1"})

    with RocksNodeStore(path) as store:
        assert store.latest_commit() == Commit(height=5, root=roots[5])
        tree = StateTree.open(store)
        assert (tree.root, tree.height) == (roots[5], 5)
        assert tree.get(b"acct/uncommitted") is None
        assert tree.get(b"acct/\x00") is None
        assert tree.get(b"acct/\x31") == b"balance 49 at 5"
        assert len(dict(tree.items())) == 49
        for height, root in roots.items():
            assert store.root_at(height) == root
            assert tree.get(b"acct/\x03", root=root) == b"balance 3 at %d" % height
        proof = tree.prove(b"acct/\x31")
        assert verify_proof(roots[5], b"acct/\x31", b"balance 49 at 5", proof)

        # The reopened tree keeps growing from the same state as an in-memory one would.
        assert tree.apply({b"acct/\x01": None}, height=6) != roots[5]
        assert store.latest_commit() == Commit(height=6, root=tree.root)


def test_prune_removes_old_versions_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "state"
    with RocksNodeStore(path) as store:
        tree = StateTree(store)
        roots = [tree.apply(block_changes(h), height=h) for h in range(1, 5)]
        assert store.prune(keep_from_height=3) > 0
    with RocksNodeStore(path) as store:
        tree = StateTree.open(store)
        assert store.root_at(2) is None
        assert store.root_at(3) == roots[2]
        assert tree.get(b"acct/\x05", root=roots[2]) == b"balance 5 at 3"
        assert tree.get(b"acct/\x05") == b"balance 5 at 4"
        with pytest.raises(MissingNode):
            tree.get(b"acct/\x05", root=roots[1])
        assert store.prune(keep_from_height=3) == 0


def test_a_second_open_of_the_same_directory_is_refused(tmp_path: Path) -> None:
    with RocksNodeStore(tmp_path / "state"), pytest.raises(Exception, match=r"(?i)lock"):
        RocksNodeStore(tmp_path / "state")


def test_pruned_nodes_are_gone_from_the_open_store_too(tmp_path: Path) -> None:
    # The node cache must not keep answering for nodes prune deleted.
    with RocksNodeStore(tmp_path / "state") as store:
        tree = StateTree(store)
        roots = [tree.apply(block_changes(h), height=h) for h in range(1, 5)]
        assert tree.get(b"acct/\x05", root=roots[1]) == b"balance 5 at 2"
        assert store.get(roots[1]) is not None
        assert store.prune(keep_from_height=3) > 0
        assert store.get(roots[1]) is None
        with pytest.raises(MissingNode):
            tree.get(b"acct/\x05", root=roots[1])
        assert tree.get(b"acct/\x05") == b"balance 5 at 4"


@pytest.mark.parametrize("cache_size", [0, 1, 7, 1_000_000])
def test_the_node_cache_does_not_change_what_is_read(tmp_path: Path, cache_size: int) -> None:
    # Tiny caches turn their generations over on almost every write and read.
    with RocksNodeStore(tmp_path / "state", cache_size=cache_size) as store:
        tree = StateTree(store)
        roots = {h: tree.apply(block_changes(h), height=h) for h in range(1, 7)}
        for height, root in roots.items():
            expected = {
                b"acct/" + bytes([i]): b"balance %d at %d" % (i, height)
                for i in range(1 if height > 1 else 0, height * 10)
            }
            assert dict(tree.items(root=root)) == expected
    with RocksNodeStore(tmp_path / "state") as reopened:
        assert dict(StateTree.open(reopened).items()) == expected
