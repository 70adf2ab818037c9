"""CPU of executing and storing small blocks the way a validator does, per block and per tx.

    PYTHONPATH=$PWD .venv/bin/python scripts/engine_rollup_blocks.py \
        [--mix rollup|dex|mixed] [--txs 30] [--senders 50] [--blocks 60] [--runs 5]
        [--outcomes FILE] [--profile FILE]

`rollup` (the default) is what `seqnet bench --mix rollup` commits: the node's
own local genesis (four validators, the local markets, ACCOUNT_POOL funded load
accounts), blocks of `--txs` opaque 100-300 byte payloads in namespaces 1-4
from `--senders` accounts in turn, nonces in order, the required fee, several
blocks a second. The state tree lives in a RocksNodeStore (synced commits, as
in the node), and after each block the pipeline's own `NodeStore.commit_block`
writes the block, a finalization, the transactions and the receipts, as
`execute_and_store` does (commit.py). Each run starts from a fresh genesis and
fresh stores; the CPU (process time) of `execute_block` and of `commit_block`
is summed over the blocks of a run, and the best and median over `--runs` runs
are printed per block and per transaction.

`dex` is `seqnet bench blocks`' DEX blocks (100 open accounts); `mixed` the
same with `--txs` rollup payloads from the makers (who hold positions) added
to each block. Those two time `execute_block` only, in memory; they are for
`--outcomes`, which writes one line per block: the height and keccak256 of
`encode_outcome` (state root, receipts, events), to compare two trees' engines
block by block.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from random import Random
from types import ModuleType
from typing import Any

import msgspec

from consensus.crypto import keccak256
from consensus.messages import Block, Certificate, VoteKind
from sequencer_net.cli.bench_blocks import BlocksOptions, _address, timed_blocks
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.engine import (
    ExecutionBlock,
    SequencedTransaction,
    encode_outcome,
    execute_block,
)
from sequencer_net.execution.fees import required_fee
from sequencer_net.execution.genesis import GenesisConfig, genesis_state
from sequencer_net.execution.records import ChainConfig
from sequencer_net.execution.state import ExecutionState
from sequencer_net.home.genesis import make_local_genesis
from sequencer_net.home.local_markets import genesis_markets, local_markets
from sequencer_net.storage.node_store import NodeStore
from sequencer_net.storage.state_store import RocksNodeStore
from sequencer_net.testnet.accounts import load_account_addresses
from sequencer_net.testnet.bench.limits import ACCOUNT_POOL, PAYLOAD_BYTES, ROLLUP_NAMESPACES

GENESIS_TIME_MS = 1_760_000_000_000
BLOCKS_PER_SECOND = 8


def rollup_genesis(accounts: int) -> tuple[GenesisConfig, list[bytes]]:
    secrets = [keccak256(b"engine-rollup-blocks validator %d" % i) for i in range(4)]
    funded = load_account_addresses(0, accounts)
    genesis = make_local_genesis(
        secrets,
        chain_id=31_337,
        base_p2p_port=1,
        base_api_port=101,
        genesis_time_ms=GENESIS_TIME_MS,
        funded_accounts=funded,
        markets=genesis_markets(local_markets(GENESIS_TIME_MS // 1000)),
        fund_admin=True,
    )
    return genesis.execution, [bytes(a) for a in funded]


class RollupSender:
    """Rollup blobs from `senders` in turn, each sender's nonces in order."""

    def __init__(self, config: ChainConfig, senders: list[bytes], nonces: dict[bytes, int]) -> None:
        self.config = config
        self.senders = senders
        self.nonces = nonces
        self.turn = 0

    def txs(self, rng: Random, count: int) -> list[SequencedTransaction]:
        txs = []
        for _ in range(count):
            sender = self.senders[self.turn % len(self.senders)]
            self.turn += 1
            nonce = self.nonces.get(sender, 0)
            self.nonces[sender] = nonce + 1
            namespace = 1 + rng.randrange(ROLLUP_NAMESPACES)
            payload = rng.randbytes(rng.randint(*PAYLOAD_BYTES))
            tx_hash = keccak256(encode((sender, nonce, namespace, payload)))
            fee = required_fee(self.config, len(payload))
            txs.append(SequencedTransaction(tx_hash, sender, nonce, namespace, fee, payload))
        return txs


def rollup_blocks(
    state: ExecutionState, senders: list[bytes], blocks: int, txs: int, seed: int
) -> list[ExecutionBlock]:
    rng = Random(seed)
    send = RollupSender(state.config, senders, {})
    result = []
    for k in range(blocks):
        chunk = send.txs(rng, txs)
        timestamp = state.block.timestamp + 1 + k // BLOCKS_PER_SECOND
        result.append(ExecutionBlock(state.height + 1 + k, timestamp, tuple(chunk)))
    return result


def _certificate(block: Block) -> Certificate:
    return Certificate(
        kind=VoteKind.FINALIZE,
        view=block.view,
        height=block.height,
        block=block.digest(),
        signers=[0, 1, 2],
        signatures=[bytes(65)] * 3,
    )


def run_rollup(args: argparse.Namespace, profiler: cProfile.Profile | None) -> tuple[float, float]:
    """One run from a fresh genesis: (execute CPU s, commit_block CPU s) over all blocks."""
    config, funded = rollup_genesis(ACCOUNT_POOL)
    senders = funded[: args.senders]
    with tempfile.TemporaryDirectory(prefix="engine-rollup-") as tmp:
        state_store = RocksNodeStore(Path(tmp) / "state", sync=True)
        node_store = NodeStore(Path(tmp) / "node", sync=True)
        try:
            state = genesis_state(config, state_store)
            blocks = rollup_blocks(state, senders, args.blocks, args.txs, args.seed)
            execute_cpu = store_cpu = 0.0
            parent = node_store.tip()[1]
            outcomes = []
            for engine_block in blocks:
                block = Block(
                    view=engine_block.height,
                    height=engine_block.height,
                    parent=parent,
                    proposer=0,
                    payload=keccak256(b"payload %d" % engine_block.height),
                )
                finalization = _certificate(block)
                transactions = [encode(tx) for tx in engine_block.transactions]
                hashes = [tx.tx_hash for tx in engine_block.transactions]
                if profiler is not None:
                    profiler.enable()
                started = time.process_time()
                result = execute_block(state, engine_block)
                middle = time.process_time()
                node_store.commit_block(
                    block,
                    finalization,
                    transactions,
                    result.state.state_root,
                    encode(result.receipts),
                    tx_hashes=hashes,
                )
                ended = time.process_time()
                if profiler is not None:
                    profiler.disable()
                execute_cpu += middle - started
                store_cpu += ended - middle
                outcomes.append(keccak256(encode_outcome(result)))
                state = result.state
                parent = block.digest()
            failed = sum(1 for r in result.receipts if not r.success)
            if failed:
                sys.exit(f"{failed} rollup transactions of the last block failed")
            if args.outcomes:
                _write_outcomes(args.outcomes, blocks, outcomes)
        finally:
            state_store.close()
            node_store.close()
    return execute_cpu, store_cpu


def run_dex(args: argparse.Namespace) -> None:
    options = BlocksOptions(
        open_accounts=100, resting_orders=100, blocks=args.blocks, txs_per_block=60, seed=args.seed
    )
    state, blocks = timed_blocks(options)
    if args.mix == "mixed":
        rng = Random(args.seed + 5)
        makers = [_address("maker", m) for m in range(options.markets)]
        # Each maker rested 10 orders in the setup (nonces 0-9).
        send = RollupSender(state.config, makers, {maker: 10 for maker in makers})
        mixed = []
        for b in blocks:
            txs = [*b.transactions, *send.txs(rng, args.txs)]
            rng.shuffle(txs)
            mixed.append(ExecutionBlock(b.height, b.timestamp_seconds, tuple(txs)))
        blocks = mixed
    outcomes = []
    cpu = 0.0
    ok = 0
    for block in blocks:
        started = time.process_time()
        result = execute_block(state, block)
        cpu += time.process_time() - started
        ok += sum(1 for r in result.receipts if r.success)
        outcomes.append(keccak256(encode_outcome(result)))
        state = result.state
    total = sum(len(b.transactions) for b in blocks)
    per_block = cpu * 1000 / len(blocks)
    print(
        f"{args.mix}: {len(blocks)} blocks, {total} txs ({ok} succeeded), "
        f"{per_block:.2f} ms CPU a block"
    )
    if args.outcomes:
        _write_outcomes(args.outcomes, blocks, outcomes)


def load_baseline(tree: str) -> ModuleType:
    """The `sequencer_net.execution` package of another source tree, imported as
    `baseline_execution` (its modules import each other relatively)."""
    path = Path(tree) / "sequencer_net" / "execution"
    spec = importlib.util.spec_from_file_location(
        "baseline_execution", path / "__init__.py", submodule_search_locations=[str(path)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules["baseline_execution"] = package
    spec.loader.exec_module(package)
    return package


def _as(module: ModuleType, name: str, value: object) -> object:
    """`value` as the same struct type of the baseline package."""
    return msgspec.convert(msgspec.to_builtins(value), getattr(module, name), strict=True)


def _baseline_block(engine: ModuleType, block: ExecutionBlock) -> object:
    txs = tuple(
        engine.SequencedTransaction(*msgspec.structs.astuple(tx)) for tx in block.transactions
    )
    return engine.ExecutionBlock(block.height, block.timestamp_seconds, txs)


def execute_pair(
    old_engine: ModuleType,
    old_state: Any,
    old_block: Any,
    new_state: Any,
    block: Any,
    k: int,
    totals: dict[str, float],
    run: int,
) -> tuple[Any, Any]:
    """Execute one block on the baseline's engine and on this tree's, the first
    of the two alternating with `k`, add each one's thread CPU to `totals` and
    exit if their outcomes differ; the two results."""
    order = ("this tree", "baseline") if k % 2 == 0 else ("baseline", "this tree")
    for name in order:
        started = time.thread_time()
        if name == "baseline":
            old_result = old_engine.execute_block(old_state, old_block)
        else:
            new_result = execute_block(new_state, block)
        totals[name] += time.thread_time() - started
    if old_engine.encode_outcome(old_result) != encode_outcome(new_result):
        sys.exit(f"run {run} block {block.height}: the outcomes differ")
    return old_result, new_result


def run_paired(args: argparse.Namespace) -> None:
    """Both engines on the same blocks, alternating which goes first each block:
    outcomes compared block by block, thread CPU summed per engine."""
    load_baseline(args.baseline)
    old_engine = importlib.import_module("baseline_execution.engine")
    old_genesis = importlib.import_module("baseline_execution.genesis")
    cpu: dict[str, list[float]] = {"baseline": [], "this tree": []}
    blocks_done = 0
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="engine-paired-") as tmp:
            stores = [RocksNodeStore(Path(tmp) / name, sync=True) for name in ("new", "old")]
            try:
                config, funded = rollup_genesis(ACCOUNT_POOL)
                new_state = genesis_state(config, stores[0])
                old_state = old_genesis.genesis_state(
                    _as(old_genesis, "GenesisConfig", config), stores[1]
                )
                blocks = rollup_blocks(
                    new_state, funded[: args.senders], args.blocks, args.txs, args.seed + run
                )
                totals = {"baseline": 0.0, "this tree": 0.0}
                for k, block in enumerate(blocks):
                    old_block = _baseline_block(old_engine, block)
                    old_result, new_result = execute_pair(
                        old_engine, old_state, old_block, new_state, block, k, totals, run
                    )
                    old_state, new_state = old_result.state, new_result.state
                    blocks_done += 1
                for name, total in totals.items():
                    cpu[name].append(total * 1e6 / len(blocks))
            finally:
                for store in stores:
                    store.close()
    print(
        f"{args.mix}: {blocks_done} blocks of {args.txs} txs from {args.senders} senders, "
        f"identical outcomes; execute_block thread CPU us per block, per run:"
    )
    for name, values in cpu.items():
        print(
            f"  {name:10s} min {min(values):8.1f}  median {statistics.median(values):8.1f}  "
            + " ".join(f"{v:.1f}" for v in values)
        )
    ratios = sorted(new / old for new, old in zip(cpu["this tree"], cpu["baseline"], strict=True))
    print(
        f"  this tree / baseline per run: median {statistics.median(ratios):.3f}, "
        + " ".join(f"{r:.3f}" for r in ratios)
    )


def _write_outcomes(path: str, blocks: list[ExecutionBlock], outcomes: list[bytes]) -> None:
    with open(path, "w") as out:
        for block, outcome in zip(blocks, outcomes, strict=True):
            out.write(f"{block.height} {outcome.hex()}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", choices=("rollup", "dex", "mixed"), default="rollup")
    parser.add_argument("--txs", type=int, default=30)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--blocks", type=int, default=60)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--outcomes", help="write each block's outcome hash here")
    parser.add_argument("--profile", help="write a cProfile of the timed calls here")
    parser.add_argument(
        "--baseline", help="another source tree: run its engine too, compare, time both"
    )
    args = parser.parse_args()
    if args.baseline and args.mix != "rollup":
        parser.error("--baseline runs the rollup mix (compare the others with --outcomes)")
    if args.baseline:
        run_paired(args)
        return
    if args.mix != "rollup":
        run_dex(args)
        return
    profiler = cProfile.Profile() if args.profile else None
    runs = [run_rollup(args, profiler) for _ in range(args.runs)]
    if profiler is not None:
        profiler.dump_stats(args.profile)
    per_block = [(e * 1e6 / args.blocks, s * 1e6 / args.blocks) for e, s in runs]
    execute = sorted(e for e, _ in per_block)
    store = sorted(s for _, s in per_block)
    both = sorted(e + s for e, s in per_block)
    txs = args.txs
    print(
        f"rollup: {args.blocks} blocks of {txs} txs from {args.senders} senders, "
        f"{args.runs} runs; CPU us per block (per tx), best / median"
    )
    for name, values in (("execute_block", execute), ("commit_block", store), ("both", both)):
        best, median = values[0], statistics.median(values)
        print(f"  {name:14s} {best:9.1f} ({best / txs:6.1f}) / {median:9.1f} ({median / txs:6.1f})")
    print("  runs execute_block us/block:", " ".join(f"{e:.1f}" for e, _ in per_block))


if __name__ == "__main__":
    main()
