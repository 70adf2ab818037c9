"""Python CPU of the commit pipeline's event-loop part, per transaction.

    PYTHONPATH=$PWD .venv/bin/python scripts/commit_loop_cpu.py \
        [--batches 4] [--txs 300] [--blocks 10] [--runs 5] [--own 4] [--profile FILE]

Builds blocks the way `seqnet bench --mix rollup` fills them: `--batches`
batches of `--txs` signed rollup transactions each (100-300 byte payloads,
namespaces 1-4), every transaction from its own sender, each batch carrying
its senders and held (stored, its hashes cached) in the pipeline's batch
pool. One transaction in `--own` was accepted by this node: it is in the
mempool (taken into this node's batches) and in `accepted_at`, as on one
validator of `--own` sharing the load. The mempool's memory of committed
hashes is full (its bound), as on a validator that has run a while.

For each block, two event-loop steps are timed (time.process_time), as a
validator runs them: `_begin_opening` (when the block arrives: its order
seed round starts) and `apply` (resolve, open, order, then report), with a
threshold key whose seed is at hand (no waiting), and the engine's
execution and storage, which run on the pipeline's worker thread, left out
(the worker returns the state unchanged, so the store's tip stays and each
block's transactions stay uncommitted). A run sums the blocks; the best and
median over `--runs` runs are printed in microseconds per transaction.
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from random import Random
from typing import Any

import trio

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from consensus.io import Commit
from consensus.messages import Block, Certificate, VoteKind
from sequencer_net.batches.batch import Batch, batch_digest, encode_batch
from sequencer_net.batches.pool import BatchPool
from sequencer_net.execution.engine import BlockResult
from sequencer_net.execution.genesis import GenesisConfig, genesis_state
from sequencer_net.execution.records import OracleReporter
from sequencer_net.fairness.envelope import Envelope
from sequencer_net.mempool.mempool import CheckedTx, Mempool, check_transaction
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.metrics import Metrics
from sequencer_net.node.commit import CommitPipeline
from sequencer_net.node.decryption import OpenedBlock
from sequencer_net.node.gc_pauses import tune_gc
from sequencer_net.node.status import ChainStatus
from sequencer_net.payload.format import BlockPayload, encode_payload
from sequencer_net.payload.namespaces import namespace_root
from sequencer_net.storage.group_commit import GroupCommit
from sequencer_net.storage.node_store import NodeStore

DOMAIN = Domain(
    chain_id=31_337,
    verifying_contract=bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"),
    genesis_hash=keccak256(b"commit-loop-cpu genesis"),
)
GENESIS_DIGEST = keccak256(b"commit-loop-cpu genesis block")


class _SeedAtHand:
    """A decryptor whose order seed is ready when asked (no share round)."""

    on_opened: Callable[[int, OpenedBlock], None] | None = None

    def key_epoch_at(self, height: int) -> int:
        return 0

    def begin(self, height: int, block: bytes, envelopes: Sequence[Envelope]) -> None:
        pass

    def discard(self, height: int) -> None:
        pass

    async def open_block(
        self, height: int, block: bytes, envelopes: Sequence[Envelope]
    ) -> OpenedBlock:
        return OpenedBlock([], keccak256(b"seed %d" % height))


class _NoFetch:
    async def fetch(self, request: object, prefer: int | None = None) -> int:
        raise AssertionError("every batch is held here")


class _NoExecution:
    """The worker thread's stand-in: the block executes to the same state."""

    def __init__(self, result: BlockResult) -> None:
        self.result = result

    async def run(self, fn: Callable[[], BlockResult]) -> BlockResult:
        return self.result


def _blocks(
    keys: list[PrivateKey], batches: int, txs: int, blocks: int
) -> list[list[list[tuple[bytes, bytes]]]]:
    """Per block, per batch, (encoded, sender) of each transaction."""
    rng = Random(7)
    out = []
    for b in range(blocks):
        block = []
        for i in range(batches):
            batch = []
            for j in range(txs):
                key = keys[i * txs + j]
                payload = rng.randbytes(rng.randint(100, 300))
                tx = sign_transaction(key, DOMAIN, b, rng.randint(1, 4), 0, payload)
                batch.append((encode_transaction(tx), bytes(key.address)))
            block.append(batch)
        out.append(block)
    return out


async def _run(args: argparse.Namespace) -> None:
    senders = args.batches * args.txs
    keys = [PrivateKey(keccak256(b"commit-loop-cpu %d" % i)) for i in range(senders)]
    blocks = _blocks(keys, args.batches, args.txs, args.blocks * args.runs)
    admin = keys[0].address
    state = genesis_state(
        GenesisConfig(
            chain_id=DOMAIN.chain_id,
            admin=admin,
            bridge=admin,
            oracles=(OracleReporter(admin, 1),),
            genesis_time=1_700_000_000,
        )
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = NodeStore(Path(tmp) / "chain", genesis_digest=GENESIS_DIGEST, sync=False)
        try:
            mempool = Mempool(DOMAIN)
            for i in range(mempool.limits.recent_committed):
                mempool._recent_committed[keccak256(b"old %d" % i)] = None
            verifier = VerifierPool(DOMAIN, threads=1)
            pool = BatchPool(store, verifier, GroupCommit(store.write_synced))
            accepted_at: dict[bytes, float] = {}
            pipeline = CommitPipeline(
                store=store,
                pool=pool,
                fetcher=_NoFetch(),  # type: ignore[arg-type]
                mempool=mempool,
                state=state,
                metrics=Metrics(),
                status=ChainStatus(),
                accepted_at=accepted_at,
                state_root_at=lambda height: None,
                own_index=0,
                domain=DOMAIN,
                decryptor=_SeedAtHand(),  # type: ignore[arg-type]
            )
            pipeline._worker = _NoExecution(BlockResult(state, (), ()))  # type: ignore[assignment]
            runs: list[tuple[float, float]] = []
            count = 0
            tune_gc()  # as a validator runs
            profiler = cProfile.Profile() if args.profile else None
            for run in range(args.runs):
                opening = applying = 0.0
                for index in range(args.blocks):
                    height = run * args.blocks + index + 1
                    block, commit, own = await _stage(pool, blocks[height - 1], height, args.own)
                    for checked in own:
                        mempool.add(checked, restoring=True)
                        accepted_at[checked.hash] = time.monotonic()
                    mempool.mark_batched([checked.hash for checked in own])
                    prepared = pipeline._prepared_for(block)
                    if profiler is not None:
                        profiler.enable()
                    t0 = time.process_time()
                    pipeline._begin_opening(block, prepared)
                    t1 = time.process_time()
                    await pipeline.apply(commit)
                    t2 = time.process_time()
                    if profiler is not None:
                        profiler.disable()
                    opening += t1 - t0
                    applying += t2 - t1
                    count = sum(len(batch) for batch in blocks[height - 1])
                runs.append((opening / (args.blocks * count), applying / (args.blocks * count)))
                opened_us, applied_us = runs[-1][0] * 1e6, runs[-1][1] * 1e6
                print(
                    f"run {run + 1}: begin_opening {opened_us:.2f} us/tx, "
                    f"apply {applied_us:.2f} us/tx, total {opened_us + applied_us:.2f} us/tx"
                )
            for name, values in (
                ("begin_opening", [o for o, _ in runs]),
                ("apply", [a for _, a in runs]),
                ("total", [o + a for o, a in runs]),
            ):
                print(
                    f"{name}: best {min(values) * 1e6:.2f} us/tx, "
                    f"median {statistics.median(values) * 1e6:.2f} us/tx "
                    f"({args.runs} runs of {args.blocks} blocks of {count} txs)"
                )
            if profiler is not None:
                profiler.dump_stats(args.profile)
        finally:
            store.close()


async def _stage(
    pool: BatchPool, block_txs: list[list[tuple[bytes, bytes]]], height: int, own: int
) -> tuple[Block, Commit, list[CheckedTx]]:
    """Hold the block's batches in the pool; the block, its commit, and this
    node's own transactions (checked, for the mempool)."""
    digests = []
    pairs: list[tuple[int, bytes]] = []
    mine: list[CheckedTx] = []
    for author, txs in enumerate(block_txs):
        batch = Batch(author, height, [e for e, _ in txs], [s for _, s in txs])
        encoded = encode_batch(batch)
        digest = batch_digest(encoded)
        checked = [check_transaction(e, DOMAIN) for e, _ in txs]
        await pool.add_own(digest, encoded, batch, checked)
        digests.append(digest)
        pairs.extend((c.namespace, c.hash) for c in checked)
        mine.extend(c for n, c in enumerate(checked) if n % own == 0)
    payload = BlockPayload(1_000 * height, 0, b"\x00" * 32, digests, namespace_root(pairs), [])
    block = Block(height, height, GENESIS_DIGEST, 0, encode_payload(payload))
    signatures = [b"\x00" * 65]
    finalization = Certificate(VoteKind.FINALIZE, height, height, block.digest(), [0], signatures)
    return block, Commit(block, finalization), mine


def main(argv: list[str] | None = None) -> Any:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--txs", type=int, default=300)
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--own", type=int, default=4)
    parser.add_argument("--profile", help="write a cProfile of the timed steps to this file")
    trio.run(_run, parser.parse_args(argv))


if __name__ == "__main__":
    main()
