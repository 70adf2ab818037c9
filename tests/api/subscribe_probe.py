"""Probe: what do block subscriptions cost, and how fast do they deliver?
(Not a pytest test.)

Starts a fresh network of VALIDATORS `seqnet node run` processes on 127.0.0.1
(funded load accounts) and measures, printing one JSON line:

- latency: one subscriber on node 0 (namespace 1), first on an idle network
  (BLOCKS/2 heights), then under LIGHT_RATE tx/s of rollup load (BLOCKS
  heights): the time from node 0 logging the block's commit
  (`event=committed`, written right after the subscription feed is told) to
  the subscriber receiving its message (p50, p99, max; same machine clock);
- throughput: the same offered rollup load (RATE tx/s for SECONDS, to every
  node) with no subscriber and then with SUBSCRIBERS subscribers on node 0
  (spread over the load's namespaces 1..4): how long the submissions took,
  how long until node 0 had committed every accepted transaction, committed
  transactions per second over that time, each validator process's CPU
  time (node 0 serves the subscribers), and the messages each subscriber
  received. The load generator, the subscribers and the validators share the
  machine's cores.

    python tests/api/subscribe_probe.py --validators 4 --blocks 100 \\
        --light-rate 200 --rate 1000 --seconds 20 --subscribers 100

Everything started is stopped at the end; talks only to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio
from trio_websocket import open_websocket_url

from sequencer_net.testnet.bench.cluster import BenchNetwork, bench_network
from sequencer_net.testnet.bench.traffic import RollupLoad, WireFormat, encode_body, sign_items

TICK_S = 0.1
_COMMITTED = re.compile(rb"event=committed height=(\d+) ")


def commit_times(log: Path) -> dict[int, float]:
    """Height -> unix time node logged its commit (text or JSON log lines)."""
    times: dict[int, float] = {}
    for line in log.read_bytes().splitlines():
        match = _COMMITTED.search(line)
        if match is None:
            continue
        if line.startswith(b"{"):
            at = float(json.loads(line)["ts"])
        else:
            stamp = line[:23].decode()  # "2026-12-02 15:14:56,123"
            at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        times.setdefault(int(match.group(1)), at)
    return times


class Load:
    """RATE tx/s of signed rollup transactions, each to its account's node."""

    def __init__(self, bn: BenchNetwork, source: RollupLoad, rate: int, seconds: float) -> None:
        count = int(rate * seconds)
        prepared = source.prepare(rate, count, seed=int(time.time()))
        signed = sign_items(prepared.items, prepared.secrets, bn.domain, bn.fees)
        n = len(bn.urls)
        self.per_tick: list[list[list[bytes]]] = []
        step = max(1, int(rate * TICK_S))
        for first in range(0, count, step):
            by_node: list[list[bytes]] = [[] for _ in range(n)]
            for item, tx in zip(
                prepared.items[first : first + step], signed[first : first + step], strict=True
            ):
                by_node[prepared.homes[item.account] % n].append(tx)
            self.per_tick.append(by_node)
        self.urls = bn.urls
        self.source = source
        self.rate = rate
        self.positions = set(range(len(prepared.secrets)))
        self.accepted = 0
        self.refused: dict[str, int] = {}

    def run(self, stop: threading.Event | None = None) -> None:
        start = time.monotonic()
        with httpx.Client(timeout=30.0) as client:
            for i, by_node in enumerate(self.per_tick):
                if stop is not None and stop.is_set():
                    return
                for url, txs in zip(self.urls, by_node, strict=True):
                    if not txs:
                        continue
                    answer = client.post(
                        f"{url}/v1/transactions/batch",
                        content=encode_body(txs, WireFormat.MSGPACK),
                        headers={"content-type": "application/msgpack"},
                    )
                    if answer.status_code != 200:
                        key = f"http {answer.status_code}"
                        self.refused[key] = self.refused.get(key, 0) + len(txs)
                        continue
                    for outcome in msgspec.msgpack.decode(answer.content):
                        if isinstance(outcome, bytes):
                            self.accepted += 1
                        else:
                            self.refused[outcome[0]] = self.refused.get(outcome[0], 0) + 1
                time.sleep(max(0.0, start + (i + 1) * TICK_S - time.monotonic()))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def committed_txs(url: str) -> int:
    return int(httpx.get(f"{url}/v1/status", timeout=10.0).json()["committed_txs"])


async def subscribe(url: str, count: int, received: list[tuple[int, float]]) -> None:
    async with open_websocket_url(url) as ws:
        while len(received) < count:
            message = msgspec.json.decode(await ws.get_message())
            if message.get("type") == "block":
                received.append((message["height"], time.time()))


async def many_subscribers(urls: list[str], stop: trio.Event, counts: list[int]) -> None:
    async def one(i: int, url: str) -> None:
        async with open_websocket_url(url) as ws:
            while True:
                await ws.get_message()
                counts[i] += 1

    async with trio.open_nursery() as nursery:
        for i, url in enumerate(urls):
            nursery.start_soon(one, i, url)
        await stop.wait()
        nursery.cancel_scope.cancel()


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def throughput_run(
    bn: BenchNetwork, source: RollupLoad, rate: int, seconds: float, subscribers: int
) -> dict[str, Any]:
    load = Load(bn, source, rate, seconds)
    ws = bn.urls[0].replace("http://", "ws://")
    sub_urls = [f"{ws}/v1/subscribe/blocks?namespace={1 + i % 4}" for i in range(subscribers)]
    counts = [0] * subscribers
    token: list[Any] = []

    def serve_subscribers() -> None:
        async def main() -> None:
            stop = trio.Event()
            token.append((trio.lowlevel.current_trio_token(), stop))
            await many_subscribers(sub_urls, stop, counts)

        trio.run(main)

    thread = threading.Thread(target=serve_subscribers, daemon=True)
    if subscribers:
        thread.start()
        time.sleep(2.0)  # all connected and idle
    before = committed_txs(bn.urls[0])
    pids = [node.pid for node in bn.net.nodes if node.pid is not None]
    cpu_before = [cpu_seconds(pid) for pid in pids]
    started = time.monotonic()
    load.run()
    submitted = time.monotonic() - started
    deadline = time.monotonic() + 120.0
    while committed_txs(bn.urls[0]) < before + load.accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    took = time.monotonic() - started
    after = committed_txs(bn.urls[0])
    cpu = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu_before, strict=True)]
    if subscribers:
        trio_token, stop = token[0]
        trio.from_thread.run_sync(stop.set, trio_token=trio_token)
        thread.join(timeout=20)
    return {
        "subscribers": subscribers,
        "offered_tx": sum(len(t) for tick in load.per_tick for t in tick),
        "accepted_tx": load.accepted,
        "refused": load.refused,
        "committed_tx": after - before,
        "submission_s": round(submitted, 2),
        "until_all_committed_s": round(took, 2),
        "committed_tx_per_s": round((after - before) / took, 1),
        "validator_cpu_s": [round(c, 1) for c in cpu],
        "node0_cpu_ms_per_committed_tx": round(1000 * cpu[0] / max(1, after - before), 3),
        "subscriber_messages_min": min(counts) if counts else None,
        "subscriber_messages_max": max(counts) if counts else None,
    }


def latency(bn: BenchNetwork, blocks: int, load: Load | None) -> dict[str, Any]:
    """One subscriber on node 0 (namespace 1) for `blocks` heights from the next."""
    received: list[tuple[int, float]] = []
    tip = httpx.get(f"{bn.urls[0]}/v1/status", timeout=10.0).json()["height"]
    url = bn.urls[0].replace("http://", "ws://")
    url += f"/v1/subscribe/blocks?namespace=1&from={tip + 1}"
    stop = threading.Event()
    feeder = None
    if load is not None:
        feeder = threading.Thread(target=load.run, args=(stop,), daemon=True)
        feeder.start()
    trio.run(subscribe, url, blocks, received)
    stop.set()
    if feeder is not None:
        feeder.join(timeout=30)
    commits = commit_times(bn.net.nodes[0].log_path)
    values = [at - commits[h] for h, at in received if h in commits]
    return {
        "blocks": len(values),
        "offered_tx_per_s": None if load is None else load.rate,
        "p50": quantile(values, 0.5),
        "p99": quantile(values, 0.99),
        "max": quantile(values, 1.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=100)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--light-rate", type=int, default=200)
    args = parser.parse_args()
    with bench_network(args.validators) as bn:
        source = RollupLoad(seed=0, accounts=bn.net.manifest.load.accounts)
        idle = latency(bn, args.blocks // 2, None)
        # Under a light load, so blocks carry transactions.
        light = Load(bn, source, args.light_rate, 2.0 * args.blocks)
        loaded = latency(bn, args.blocks, light)
        source.unfinished(light.positions)  # the rest was never sent: retire them
        time.sleep(2.0)
        without = throughput_run(bn, source, args.rate, args.seconds, 0)
        with_subs = throughput_run(bn, source, args.rate, args.seconds, args.subscribers)
    print(
        json.dumps(
            {
                "validators": args.validators,
                "commit_to_subscriber_ms": {"idle": idle, "light_load": loaded},
                "throughput": [without, with_subs],
            }
        )
    )


if __name__ == "__main__":
    main()
