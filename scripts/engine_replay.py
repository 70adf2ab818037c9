"""Replay the blocks a real network committed through the engine: CPU per tx, same roots.

Capture (a node's genesis config and every block it executed, with the state
root it reached; the hook in scripts/capture_blocks/ wraps the node's
`genesis_state` and `execute_block` when SEQNET_DUMP_DIR is set, one file per
node process):

    mkdir -p /tmp/dump && PYTHONPATH=$PWD:$PWD/scripts/capture_blocks \
        SEQNET_DUMP_DIR=/tmp/dump seqnet bench -n 4 --mix dex --rate 500 \
        --duration 20 --no-baseline

Replay (each run from a fresh genesis, the state tree in a RocksNodeStore as in
the node; every block's state root is checked against the captured one, and
the CPU (process time) of `execute_block` is summed):

    PYTHONPATH=$PWD .venv/bin/python scripts/engine_replay.py /tmp/dump/dump-N.pkl \
        [--runs 3] [--outcomes FILE] [--profile FILE] [--baseline TREE]

`--baseline TREE` runs another source tree's engine on the same blocks too,
alternating which goes first each block, compares every block's outcome
(state root, receipts, events) and prints both engines' thread CPU.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from consensus.crypto import keccak256
from sequencer_net.execution.engine import ExecutionBlock, encode_outcome, execute_block
from sequencer_net.execution.genesis import GenesisConfig, genesis_state
from sequencer_net.storage.state_store import RocksNodeStore

sys.path.insert(0, str(Path(__file__).parent))
from engine_rollup_blocks import _as, _baseline_block, execute_pair, load_baseline


def load_dump(path: str) -> tuple[GenesisConfig, list[tuple[ExecutionBlock, bytes]]]:
    config: GenesisConfig | None = None
    blocks: list[tuple[ExecutionBlock, bytes]] = []
    with open(path, "rb") as f:
        while True:
            try:
                item: Any = pickle.load(f)
            except EOFError:
                break
            if item[0] == "genesis" and config is None:
                config = item[1]
            elif item[0] == "block":
                blocks.append((item[1], item[2]))
    if config is None:
        sys.exit(f"{path}: no genesis config captured")
    return config, blocks


def run_once(
    config: GenesisConfig,
    blocks: list[tuple[ExecutionBlock, bytes]],
    profiler: cProfile.Profile | None,
    outcomes: list[bytes] | None,
) -> float:
    with tempfile.TemporaryDirectory(prefix="engine-replay-") as tmp:
        store = RocksNodeStore(Path(tmp) / "state", sync=True)
        try:
            state = genesis_state(config, store)
            cpu = 0.0
            for block, root in blocks:
                if profiler is not None:
                    profiler.enable()
                started = time.process_time()
                result = execute_block(state, block)
                cpu += time.process_time() - started
                if profiler is not None:
                    profiler.disable()
                if result.state.state_root != root:
                    sys.exit(f"block {block.height}: state root differs from the captured one")
                if outcomes is not None:
                    outcomes.append(keccak256(encode_outcome(result)))
                state = result.state
        finally:
            store.close()
    return cpu


def run_paired(
    config: GenesisConfig, blocks: list[tuple[ExecutionBlock, bytes]], args: argparse.Namespace
) -> None:
    load_baseline(args.baseline)
    old_engine = importlib.import_module("baseline_execution.engine")
    old_genesis = importlib.import_module("baseline_execution.genesis")
    old_blocks = [_baseline_block(old_engine, b) for b, _ in blocks]
    txs = sum(len(b.transactions) for b, _ in blocks)
    cpu: dict[str, list[float]] = {"baseline": [], "this tree": []}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="engine-replay-") as tmp:
            stores = [RocksNodeStore(Path(tmp) / name, sync=True) for name in ("new", "old")]
            try:
                new_state = genesis_state(config, stores[0])
                old_state = old_genesis.genesis_state(
                    _as(old_genesis, "GenesisConfig", config), stores[1]
                )
                totals = {"baseline": 0.0, "this tree": 0.0}
                pairs = zip(blocks, old_blocks, strict=True)
                for k, ((block, root), old_block) in enumerate(pairs):
                    old_result, new_result = execute_pair(
                        old_engine, old_state, old_block, new_state, block, k, totals, run
                    )
                    if new_result.state.state_root != root:
                        sys.exit(f"block {block.height}: state root differs from the captured one")
                    old_state, new_state = old_result.state, new_result.state
                for name, total in totals.items():
                    cpu[name].append(total * 1e6 / txs)
            finally:
                for store in stores:
                    store.close()
    print(f"{len(blocks)} blocks, {txs} txs, identical outcomes; execute_block thread CPU us a tx:")
    for name, values in cpu.items():
        print(
            f"  {name:10s} median {statistics.median(values):8.1f}  "
            + " ".join(f"{v:.1f}" for v in values)
        )
    ratios = sorted(old / new for new, old in zip(cpu["this tree"], cpu["baseline"], strict=True))
    print("  baseline / this tree per run: " + " ".join(f"{r:.2f}" for r in ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--outcomes", help="write each block's outcome hash here")
    parser.add_argument("--profile", help="write a cProfile of the timed calls here")
    parser.add_argument("--baseline", help="another source tree: run its engine too, compare")
    args = parser.parse_args()
    config, blocks = load_dump(args.dump)
    if args.baseline:
        run_paired(config, blocks, args)
        return
    txs = sum(len(b.transactions) for b, _ in blocks)
    profiler = cProfile.Profile() if args.profile else None
    outcomes: list[bytes] | None = [] if args.outcomes else None
    runs = []
    for run in range(args.runs):
        runs.append(run_once(config, blocks, profiler, outcomes if run == 0 else None))
    if profiler is not None:
        profiler.dump_stats(args.profile)
    if args.outcomes and outcomes is not None:
        with open(args.outcomes, "w") as out:
            for (block, _), outcome in zip(blocks, outcomes, strict=True):
                out.write(f"{block.height} {outcome.hex()}\n")
    per_tx = [c * 1e6 / txs for c in runs]
    print(
        f"{len(blocks)} blocks, {txs} txs, state roots as captured; execute_block CPU us per tx: "
        f"median {statistics.median(per_tx):.1f}, runs " + " ".join(f"{v:.1f}" for v in per_tx)
    )


if __name__ == "__main__":
    main()
