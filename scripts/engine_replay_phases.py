"""CPU per transaction of each engine phase, over blocks a network committed.

Replays a capture (scripts/engine_replay.py describes the capture hook) once
from a fresh genesis with the state tree in a RocksNodeStore, every state
root checked against the captured one, and sums the process time of each
phase function of `execute_block` (wrapped by name, so any source tree with
those names can be timed: run it with that tree's PYTHONPATH):

    PYTHONPATH=$PWD .venv/bin/python scripts/engine_replay_phases.py /tmp/dump/dump-N.pkl

`commit` includes `tree.apply` (the state-tree update).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sequencer_net.execution import engine, state_tree
from sequencer_net.execution import state as state_module
from sequencer_net.execution.genesis import genesis_state
from sequencer_net.storage.state_store import RocksNodeStore

sys.path.insert(0, str(Path(__file__).parent))
from engine_replay import load_dump

PHASES = (
    "admit_transactions",
    "decode_dex_payloads",
    "aggregate_prices",
    "advance_market_clock",
    "place_triggered_orders",
    "_run",
    "run_auctions",
    "sample_premiums",
    "liquidate_undermargined",
    "evaluate_triggers",
)


def timed(
    spent: defaultdict[str, float], label: str, function: Callable[..., Any]
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label] += time.process_time() - started

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump")
    args = parser.parse_args()
    spent: defaultdict[str, float] = defaultdict(float)
    for name in PHASES:
        setattr(engine, name, timed(spent, name, getattr(engine, name)))
    writer = state_module.StateWriter
    writer.commit = timed(spent, "commit", writer.commit)  # type: ignore[method-assign]
    tree = state_tree.StateTree
    tree.apply = timed(spent, "tree.apply", tree.apply)  # type: ignore[method-assign]
    config, blocks = load_dump(args.dump)
    txs = sum(len(block.transactions) for block, _ in blocks)
    with tempfile.TemporaryDirectory(prefix="engine-phases-") as tmp:
        store = RocksNodeStore(Path(tmp) / "state", sync=True)
        try:
            state = genesis_state(config, store)
            started = time.process_time()
            for block, root in blocks:
                result = engine.execute_block(state, block)
                if result.state.state_root != root:
                    sys.exit(f"block {block.height}: state root differs from the captured one")
                state = result.state
            total = time.process_time() - started
        finally:
            store.close()
    print(f"{len(blocks)} blocks, {txs} txs; process CPU us per tx:")
    print(f"  {'execute_block':26s} {total * 1e6 / txs:7.1f}")
    for label, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {label:26s} {seconds * 1e6 / txs:7.1f}")


if __name__ == "__main__":
    main()
