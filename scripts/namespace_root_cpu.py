"""CPU of `namespace_root` on one block and of `batch_namespace_pairs`: Python and native.

    PYTHONPATH=$PWD .venv/bin/python scripts/namespace_root_cpu.py \
        [--txs 600] [--namespaces 4] [--blocks 200] [--runs 7]

Builds `--blocks` seeded blocks of `--txs` (namespace, tx hash) pairs, the
namespaces drawn from `--namespaces` random uint32 values, and computes each
block's root with both implementations; they alternate run by run, so host
noise falls on both. Each run is timed with time.process_time; the best and
median run are printed in microseconds per block. The roots are compared.

Then the same for `batch_namespace_pairs` (decode, canonical check, hash) on
`--blocks` batches of `--txs` / 4 rollup transactions (100-300 payload bytes,
the namespaces as above, random signatures: pairs do not check them), in
microseconds per transaction; the pairs are compared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from random import Random

from sequencer_net.batches.batch import Batch, batch_namespace_pairs
from sequencer_net.mempool.transaction import Transaction, encode_transaction
from sequencer_net.payload import namespaces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--txs", type=int, default=600)
    parser.add_argument("--namespaces", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    native = namespaces._native
    if native is None:
        raise SystemExit("the native table root is not built or SEQNET_PURE_PYTHON_TREE is set")
    rng = Random(14)
    names = [rng.randrange(2**32) for _ in range(args.namespaces)]
    blocks = [
        [(rng.choice(names), rng.randbytes(32)) for _ in range(args.txs)]
        for _ in range(args.blocks)
    ]
    times: dict[str, list[float]] = {"python": [], "native": []}
    roots: dict[str, list[bytes]] = {}
    for _ in range(args.runs):
        for name in ("python", "native"):
            namespaces._native = native if name == "native" else None
            started = time.process_time()
            roots[name] = [namespaces.namespace_root(block) for block in blocks]
            times[name].append((time.process_time() - started) / args.blocks * 1e6)
    namespaces._native = native
    if roots["python"] != roots["native"]:
        raise SystemExit("the roots differ")
    print(f"{args.txs} txs, {args.namespaces} namespaces, {args.blocks} blocks, roots equal")
    for name in ("python", "native"):
        runs = times[name]
        print(
            f"{name}: best {min(runs):8.1f} us/block  median {statistics.median(runs):8.1f}"
            f" us/block  runs {' '.join(f'{t:.1f}' for t in runs)}"
        )
    ratio = statistics.median(times["python"]) / statistics.median(times["native"])
    print(f"python/native (medians): {ratio:.2f}x")

    size = max(1, args.txs // 4)
    batches = [
        Batch(
            author=0,
            sequence=b,
            transactions=[
                encode_transaction(
                    Transaction(
                        31337,
                        b * size + i,
                        rng.choice(names),
                        0,
                        rng.randbytes(rng.randint(100, 300)),
                        rng.randbytes(65),
                    )
                )
                for i in range(size)
            ],
            senders=[bytes(20)] * size,
        )
        for b in range(args.blocks)
    ]
    times = {"python": [], "native": []}
    found: dict[str, list[list[tuple[int, bytes]]]] = {}
    for _ in range(args.runs):
        for name in ("python", "native"):
            namespaces._native = native if name == "native" else None
            started = time.process_time()
            found[name] = [batch_namespace_pairs(batch) for batch in batches]
            times[name].append((time.process_time() - started) / args.blocks / size * 1e6)
    namespaces._native = native
    if found["python"] != found["native"]:
        raise SystemExit("the pairs differ")
    print(f"batch_namespace_pairs: {args.blocks} batches of {size} txs, pairs equal")
    for name in ("python", "native"):
        runs = times[name]
        print(
            f"{name}: best {min(runs):6.3f} us/tx  median {statistics.median(runs):6.3f}"
            f" us/tx  runs {' '.join(f'{t:.3f}' for t in runs)}"
        )
    ratio = statistics.median(times["python"]) / statistics.median(times["native"])
    print(f"python/native (medians): {ratio:.2f}x")


if __name__ == "__main__":
    main()
