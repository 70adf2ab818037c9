"""CPU of `StateTree.apply` alone, per written key: the Python and the native rebuild.

    PYTHONPATH=$PWD .venv/bin/python scripts/tree_apply_cpu.py \
        [--entries 20000] [--keys 430] [--blocks 20] [--runs 5] [--store memory|rocks]
        [--rebuild-only]

Fills a tree with `--entries` entries (`acct/` + 20 random bytes -> 80-byte
values), then applies `--blocks` blocks of `--keys` changes each (a value
change of a present key in 9 of 10, an insert of a new key in 1 of 10), as a
block of DEX transactions writes. The two implementations alternate run by run
on their own copy of the tree (the same seeded blocks), so host noise falls on
both. Each block is timed with time.process_time (the hashing of the keys, the
rebuild, the store's `put_batch`); the best and median run are printed in
microseconds per written key. The roots of both are compared at the end.

`--rebuild-only` times the rebuild alone (hash and sort the keys, walk the
tree, hash the new nodes; no `put_batch`): every block is applied to the
filled tree's root and its new nodes are dropped, so the tree does not grow.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
import time
from pathlib import Path
from random import Random
from typing import Any

from sequencer_net.execution import state_tree
from sequencer_net.execution.state_tree import MemoryNodeStore, StateTree
from sequencer_net.storage.state_store import RocksNodeStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=430)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--store", choices=["memory", "rocks"], default="memory")
    parser.add_argument("--rebuild-only", action="store_true")
    args = parser.parse_args()

    try:  # whatever SEQNET_PURE_PYTHON_TREE says: both are timed
        native = importlib.import_module("sequencer_net.execution._tree_native")
    except ImportError:
        raise SystemExit(
            "the native rebuild is not built (python setup.py build_ext --inplace)"
        ) from None
    rng = Random(14)
    keys = [b"acct/" + rng.randbytes(20) for _ in range(args.entries)]
    genesis = {key: rng.randbytes(80) for key in keys}
    with tempfile.TemporaryDirectory() as tmp:
        trees: dict[str, StateTree] = {}
        for name in ("python", "native"):
            store: Any
            if args.store == "rocks":
                store = RocksNodeStore(Path(tmp) / name, sync=False)
            else:
                store = MemoryNodeStore()
            tree = StateTree(store)
            tree.apply(genesis, height=0)
            trees[name] = tree
        per_key: dict[str, list[float]] = {"python": [], "native": []}
        height = 0
        for run in range(args.runs):
            blocks = []
            for _ in range(args.blocks):
                changes: dict[bytes, bytes | None] = {}
                while len(changes) < args.keys:
                    if rng.random() < 0.1:
                        key = b"acct/" + rng.randbytes(20)
                        keys.append(key)
                    else:
                        key = rng.choice(keys)
                    changes[key] = rng.randbytes(80)
                blocks.append(changes)
            order = ("python", "native") if run % 2 == 0 else ("native", "python")
            for name in order:
                state_tree._native = native if name == "native" else None
                tree = trees[name]
                spent = 0.0
                for i, changes in enumerate(blocks):
                    if args.rebuild_only:
                        start = time.process_time()
                        rebuilt: object
                        if name == "native":
                            rebuilt = state_tree._native_rebuild(tree.store, changes, tree.root)
                        else:
                            items = sorted(state_tree._item(k, v) for k, v in changes.items())
                            rebuilt = state_tree._Rebuild(tree.store, items).run(tree.root)
                        spent += time.process_time() - start
                        assert rebuilt is not None
                        continue
                    start = time.process_time()
                    tree.apply(changes, height=height + 1 + i)
                    spent += time.process_time() - start
                per_key[name].append(spent / (args.blocks * args.keys) * 1e6)
            height += args.blocks
        state_tree._native = native
        same = trees["python"].root == trees["native"].root
        for tree in trees.values():
            if isinstance(tree.store, RocksNodeStore):
                tree.store.close()
    print(
        f"entries={args.entries} keys/block={args.keys} blocks={args.blocks} runs={args.runs} "
        f"store={args.store} rebuild_only={args.rebuild_only} same_roots={same}"
    )
    for name in ("python", "native"):
        values = per_key[name]
        print(
            f"{name:>6}: best {min(values):6.2f} us/key  median {statistics.median(values):6.2f}"
            f" us/key  runs {' '.join(f'{v:.2f}' for v in values)}"
        )
    print(
        f"python/native (medians): "
        f"{statistics.median(per_key['python']) / statistics.median(per_key['native']):.2f}x"
    )


if __name__ == "__main__":
    main()
