"""Throughput of intake and durable writes (not a test: pytest does not collect it).

    .venv/bin/python -m tests.mempool.bench_intake

Prints synced save_vote/s, synced commit_block/s with 1000 txs, synced
save_pending_transactions/s, mempool check+add tx/s and take_batch tx/s.
"""

from __future__ import annotations

import tempfile
import time

from consensus.crypto import keccak256
from consensus.io import SafetyRecord
from consensus.messages import Block, Certificate, VoteKind
from sequencer_net.mempool.limits import MempoolLimits
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction
from sequencer_net.storage.node_store import NodeStore
from tests.mempool.factories import DOMAIN, KEYS


def signed_txs(count: int, payload_bytes: int = 100) -> list[bytes]:
    return [
        encode_transaction(
            sign_transaction(
                KEYS[i % len(KEYS)], DOMAIN, i // len(KEYS), 1, 0, b"p" * payload_bytes
            )
        )
        for i in range(count)
    ]


def bench_store(directory: str) -> None:
    with NodeStore(directory + "/db") as store:
        votes = 2000
        start = time.perf_counter()
        for view in range(1, votes + 1):
            block = Block(view=view, height=view, parent=bytes(32), proposer=0, payload=b"x" * 200)
            store.save_vote(SafetyRecord(view=view, notarized=block.digest()), [block])
        rate = votes / (time.perf_counter() - start)
        print(f"save_vote (synced, with its block): {rate:,.0f}/s")

        txs = signed_txs(1000)
        blocks = 200
        start = time.perf_counter()
        for height in range(1, blocks + 1):
            parent = store.tip()[1]
            block = Block(view=height, height=height, parent=parent, proposer=0, payload=b"p")
            finalization = Certificate(
                kind=VoteKind.FINALIZE, view=height, height=height, block=block.digest(),
                signers=[0, 1, 2], signatures=[bytes(65)] * 3,
            )  # fmt: skip
            distinct = [tx + b"%d" % height for tx in txs]  # new hashes every block
            store.commit_block(block, finalization, distinct, keccak256(b"%d" % height))
        elapsed = time.perf_counter() - start
        print(
            f"commit_block (synced, 1000 txs of {len(txs[0])} B): "
            f"{blocks / elapsed:,.1f} blocks/s = {blocks * 1000 / elapsed:,.0f} tx/s"
        )

        calls = 500
        start = time.perf_counter()
        for i in range(calls):
            store.save_pending_transactions(txs[i % 100 * 10 : i % 100 * 10 + 10])
        rate = calls / (time.perf_counter() - start)
        print(f"save_pending_transactions (synced, 10 txs): {rate:,.0f} calls/s")


def bench_mempool() -> None:
    count = 20_000
    encoded = signed_txs(count)
    pool = Mempool(DOMAIN, MempoolLimits(nonce_window=count))
    start = time.perf_counter()
    for now_ms, tx in enumerate(encoded):
        pool.add(pool.check(tx), now_ms)
    print(f"mempool check+add: {count / (time.perf_counter() - start):,.0f} tx/s (one core)")
    start = time.perf_counter()
    while pool.untaken_count():
        taken = pool.take_batch(2048, 512 * 1024)
        pool.mark_batched(c.hash for c in taken)
    print(f"take_batch+mark_batched: {count / (time.perf_counter() - start):,.0f} tx/s")


def main() -> None:
    with tempfile.TemporaryDirectory(dir=".") as directory:
        bench_store(directory)
    bench_mempool()


if __name__ == "__main__":
    main()
