"""Python CPU per transaction of a peer batch's intake and of a block's namespace root.

Builds realistic batches in memory (signed rollup transactions: distinct
senders, 100-300 byte payloads, namespaces 1-4, as `seqnet bench --mix rollup`
offers) and times, with time.process_time over repetitions:

    remember      BatchPool.receive(verify=False) of each batch into a fresh
                  pool (decode, structure checks, store write, pairs cached):
                  the path of a validator that is not a designated verifier
    build_root    what PayloadService.build does over the held batches: their
                  pairs from the pool, block_namespace_pairs, namespace_root
    check_root    what PayloadService.check does for the namespace root:
                  the pairs (as PayloadService._namespace_pairs) and
                  check_namespace_root

Prints the median microseconds per transaction of each. In-process, no
network, no validators: run it without the machine lock.

    PYTHONPATH=$PWD /work/main/.venv/bin/python scripts/batch_intake_cpu.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.batches.batch import Batch, batch_digest, encode_batch
from sequencer_net.batches.pool import BatchPool
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.payload import checks
from sequencer_net.payload.format import BlockPayload
from sequencer_net.payload.namespaces import namespace_root
from sequencer_net.storage.group_commit import GroupCommit
from sequencer_net.storage.node_store import NodeStore

DOMAIN = Domain(
    chain_id=31337,
    verifying_contract=bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"),
    genesis_hash=keccak256(b"batch intake bench"),
)


def make_batches(count: int, size: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    encoded: list[bytes] = []
    for b in range(count):
        txs: list[bytes] = []
        senders: list[bytes] = []
        for i in range(size):
            key = PrivateKey(keccak256(b"bench sender %d %d" % (b, i)))
            payload = rng.randbytes(rng.randint(100, 300))
            tx = sign_transaction(key, DOMAIN, 0, rng.randint(1, 4), 0, payload)
            txs.append(encode_transaction(tx))
            senders.append(bytes(key.address))
        encoded.append(encode_batch(Batch(b % 4, b // 4, txs, senders)))
    return encoded


def median_us_per_tx(run: Callable[[], None], txs: int, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.process_time()
        run()
        samples.append((time.process_time() - started) * 1e6 / txs)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    batches = make_batches(args.batches, args.size, seed=1)
    digests = [batch_digest(e) for e in batches]
    txs = args.batches * args.size

    with tempfile.TemporaryDirectory() as tmp:
        stores: list[NodeStore] = []

        def fresh_pool() -> BatchPool:
            store = NodeStore(Path(tmp) / f"db{len(stores)}", sync=False)
            stores.append(store)
            return BatchPool(
                store, VerifierPool(DOMAIN, threads=1), GroupCommit(store.write_synced)
            )

        pools = [fresh_pool() for _ in range(args.repeat)]
        remember_samples: list[float] = []

        async def receive_all() -> None:
            for pool in pools:
                started = time.process_time()
                for sender, (digest, encoded) in enumerate(zip(digests, batches, strict=True)):
                    got = await pool.receive(sender % 4, encoded, verify=False, digest=digest)
                    assert got == digest
                remember_samples.append((time.process_time() - started) * 1e6 / txs)

        trio.run(receive_all)
        pool = pools[-1]

        def build() -> None:
            per_batch = [(d, pool.namespace_pairs(d)) for d in digests]
            pairs = checks.block_namespace_pairs(p for _, p in per_batch if p is not None)
            namespace_root(pairs)

        per_batch = [pool.namespace_pairs(d) for d in digests]
        root = namespace_root(checks.block_namespace_pairs(p for p in per_batch if p is not None))
        payload = BlockPayload(
            timestamp_ms=0,
            state_height=0,
            state_root=bytes(32),
            batches=digests,
            namespace_root=root,
            forced=[],
        )

        def check() -> None:
            per: list[list[tuple[int, bytes]]] = []
            for d in digests:
                pairs = pool.namespace_pairs(d)
                assert pairs is not None
                per.append(pairs)
            checks.check_namespace_root(payload, checks.block_namespace_pairs(per))

        build_us = median_us_per_tx(build, txs, args.repeat)
        check_us = median_us_per_tx(check, txs, args.repeat)
        for store in stores:
            store.close()
    print(f"batches={args.batches} x {args.size} txs, repeat={args.repeat}, root={root.hex()[:16]}")
    print(
        f"remember (receive, verify=False) us/tx median: {statistics.median(remember_samples):.2f}"
    )
    print(f"build_root us/tx median: {build_us:.2f}")
    print(f"check_root us/tx median: {check_us:.2f}")


if __name__ == "__main__":
    main()
