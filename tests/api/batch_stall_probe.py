"""Probe: does a 10,000-transaction batch submission stall a node's event loop?
(Not a pytest test.)

Starts a fresh network of VALIDATORS `seqnet node run` processes on 127.0.0.1
(funded load accounts), signs COUNT rollup transactions, and posts them to node
0 in one `POST /v1/transactions/batch` while a thread polls node 0's
`GET /v1/status` every 10 ms. Prints one JSON line: how long the submission
took, how many were accepted, and the status round trips during it (max,
p99, median), each of which waits for the node's event loop.

    python tests/api/batch_stall_probe.py --validators 4 --count 10000

Everything started is stopped at the end; talks only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import httpx

from sequencer_net.testnet.bench.cluster import bench_network
from sequencer_net.testnet.bench.traffic import (
    Mix,
    RollupLoad,
    WireFormat,
    encode_body,
    generate_items,
    sign_items,
)

POLL_S = 0.01


def poll_status(url: str, stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    with httpx.Client(timeout=10.0) as client:
        while not stop.is_set():
            sent = time.monotonic()
            client.get(f"{url}/v1/status").raise_for_status()
            samples.append((sent, time.monotonic() - sent))
            time.sleep(max(0.0, sent + POLL_S - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--wire", choices=[w.value for w in WireFormat], default="json")
    args = parser.parse_args()
    with bench_network(args.validators) as bn:
        load = RollupLoad(seed=0, accounts=bn.net.manifest.load.accounts)  # the funded ones
        accounts = load.pool.take(max(1, args.count // 16))
        items = generate_items(Mix.ROLLUP, accounts, args.count, seed=7)
        signed = sign_items(items, [a.secret for a in accounts], bn.domain, bn.fees)
        wire = WireFormat(args.wire)
        body = encode_body(signed, wire)
        content_type = "application/msgpack" if wire is WireFormat.MSGPACK else "application/json"
        url = bn.urls[0]
        samples: list[tuple[float, float]] = []
        stop = threading.Event()
        poller = threading.Thread(target=poll_status, args=(url, stop, samples), daemon=True)
        poller.start()
        time.sleep(1.0)  # a second of quiet round trips first
        started = time.monotonic()
        with httpx.Client(timeout=60.0) as client:
            answer = client.post(
                f"{url}/v1/transactions/batch",
                content=body,
                headers={"content-type": content_type},
            )
        took = time.monotonic() - started
        time.sleep(0.5)
        stop.set()
        poller.join(timeout=15)
    results = answer.json().get("results", []) if answer.status_code == 200 else []
    accepted = sum(1 for r in results if "hash" in r)
    during = sorted(rtt for sent, rtt in samples if started - POLL_S <= sent <= started + took)
    before = sorted(rtt for sent, rtt in samples if sent < started - POLL_S)

    def ms(values: list[float], q: float) -> float | None:
        if not values:
            return None
        return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)

    print(
        json.dumps(
            {
                "validators": args.validators,
                "transactions": args.count,
                "body_bytes": len(body),
                "wire": wire.value,
                "http_status": answer.status_code,
                "accepted": accepted,
                "submission_s": round(took, 3),
                "status_polls_during": len(during),
                "status_rtt_during_ms": {
                    "median": round(statistics.median(during) * 1000, 1) if during else None,
                    "p99": ms(during, 0.99),
                    "max": round(max(during) * 1000, 1) if during else None,
                },
                "status_rtt_before_ms": {"median": ms(before, 0.5), "max": ms(before, 1.0)},
            }
        )
    )


if __name__ == "__main__":
    main()
