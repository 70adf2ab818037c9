"""`seqnet bench subscribers`: what block subscribers cost a validator.

One run on a fresh network of `validators` `seqnet node run` processes on
127.0.0.1 (funded load accounts), two phases at the same offered rollup load
(`rate` tx/s for `seconds`, each account's transactions to its own node,
namespaces 1..4):

1. no subscriber;
2. `subscribers` WebSocket subscribers on node 0, spread over the namespaces,
   all from the same height, run in a separate client process.

With `rounds` > 1 the pair repeats on the same network (without, with,
without, with, ...) and the cost is each figure's median over the rounds.

For each phase: committed transactions per second (from the first submission
until node 0 has committed every accepted transaction), each validator's CPU
time and node 0's CPU per committed transaction. For phase 2 also: the
subscriber client process's CPU time; the time from node 0's consensus
committing a block (`event=decided`, logged as the consensus hands the block
to the commit pipeline) to each subscriber receiving the block's message
(`commit_to_block_ms`; a message is timed when the read completing its bytes
returns, testnet/bench/ws_receiver.py) and its order (`commit_to_order_ms`: the block message
itself when it carries the order, else the order message that follows), and
from node 0 logging the block executed and stored (`event=committed`) to the
block's message (`executed_to_block_ms`; negative when the block arrived
first), each as p50, p99, max on one machine clock, over the heights node 0
decided once every subscriber was connected (`live_heights`: the ones
decided while the client process started reach it as history on connect);
and whether every
subscriber got every height's block and order once, in order. Node
0's CPU per message sent is estimated twice: against its own CPU per committed
transaction without subscribers, and against the other validators' CPU in the
same phase (they do the same consensus work over the same seconds, so this one
does not depend on how fast each phase went).

The load generator, the subscriber process and the validators share the
machine's cores; the report names the core count and the load average before
the run, so a reader can judge what else was running.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import trio

from sequencer_net.testnet.bench.cluster import BenchNetwork, bench_network
from sequencer_net.testnet.bench.traffic import RollupLoad, WireFormat, encode_body, sign_items
from sequencer_net.testnet.bench.ws_receiver import Closed, LightReceiver

TICK_S = 0.1
NAMESPACES = 4
"""The rollup load's namespaces are 1..4; subscriber i follows 1 + i % 4."""
CONNECT_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 120.0
"""How long after the last submission node 0 may take to commit the rest."""
DELIVER_TIMEOUT_S = 30.0
"""How long after that the subscribers may take to receive the last height."""
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SUBSCRIBERS_PER_ADDRESS = 25
"""Below the default [api] max_subscriptions_per_client (32)."""
MAX_RECONNECTS = 20
SETTLE_TIMEOUT_S = 30.0
SETTLE_S = 3.0
RECONNECT_DELAY_S = 0.5
_COMMITTED = re.compile(rb"event=committed height=(\d+) ")
_DECIDED = re.compile(rb"event=decided height=(\d+)\b")
_RESUME = re.compile(r"resume elsewhere from height (\d+)")


def commit_times(log: Path, event: re.Pattern[bytes] = _COMMITTED) -> dict[int, float]:
    """Height -> unix time the node logged `event` for it (by default its
    execution and storage, `event=committed`; text or JSON log lines)."""
    times: dict[int, float] = {}
    for line in log.read_bytes().splitlines():
        match = event.search(line)
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
    """`rate` tx/s of signed rollup transactions, each to its account's node,
    signed before the clock starts."""

    def __init__(
        self, bn: BenchNetwork, source: RollupLoad, rate: int, seconds: float, seed: int
    ) -> None:
        count = int(rate * seconds)
        prepared = source.prepare(rate, count, seed=seed)
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
        self.offered = count
        self.accepted = 0
        self.refused: dict[str, int] = {}
        self._lock = threading.Lock()

    def run(self) -> None:
        """Each node's share from its own thread, paced by the same ticks, so a
        node slow to answer does not hold back what the others are offered."""
        threads = [
            threading.Thread(target=self._feed, args=(i,), daemon=True)
            for i in range(len(self.urls))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _feed(self, node: int) -> None:
        start = time.monotonic()
        url = self.urls[node]
        with httpx.Client(timeout=30.0) as client:
            for i, by_node in enumerate(self.per_tick):
                txs = by_node[node]
                if txs:
                    answer = client.post(
                        f"{url}/v1/transactions/batch",
                        content=encode_body(txs, WireFormat.MSGPACK),
                        headers={"content-type": "application/msgpack"},
                    )
                    with self._lock:
                        self._count(answer, len(txs))
                time.sleep(max(0.0, start + (i + 1) * TICK_S - time.monotonic()))

    def _count(self, answer: httpx.Response, sent: int) -> None:
        if answer.status_code != 200:
            key = f"http {answer.status_code}"
            self.refused[key] = self.refused.get(key, 0) + sent
            return
        for outcome in msgspec.msgpack.decode(answer.content):
            if isinstance(outcome, bytes):
                self.accepted += 1
            else:
                self.refused[outcome[0]] = self.refused.get(outcome[0], 0) + 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_status(url: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{url}/v1/status", timeout=10.0).json()
    return answer


def settle(bn: BenchNetwork) -> None:
    """Wait (bounded) until every mempool is empty, then a little more, so a
    phase starts on a network that has committed and executed the last one's
    load (a node checks nonces against its executed state)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(int(node_status(url)["mempool_size"]) == 0 for url in bn.urls):
            break
        time.sleep(0.2)
    time.sleep(SETTLE_S)


def quantile_ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


# --- the subscriber process ---------------------------------------------------------


def client_address(index: int) -> str:
    """The loopback address subscriber `index` connects from: a few subscribers
    per address, as from several clients (each under a node's per-client cap)."""
    return f"127.0.0.{10 + index // SUBSCRIBERS_PER_ADDRESS}"


def carries_order(block_message: dict[str, Any]) -> bool:
    """Whether a block message carries its order: an `order` field, `null` for
    a block that draws no seed (no order message follows it); a message sent
    before its order was known has none."""
    return "order" in block_message


def subscriber_process(urls: list[str], first: int, conn: Connection) -> None:
    """Open one subscription per url from height `first`; send "ready" once all
    are open; on a height H from the parent, wait (bounded) until each has
    received H's block and order, then send back each one's (height, unix
    receive time) lists, of block messages and of orders (a block message
    carrying its order counts for both), and the close codes it met. A
    subscription closed with 4410 or 4008 reconnects to the same node from the
    height the close names, as a client would (the SDK would try another node
    first); what is sent again from there is not counted twice."""
    received: list[list[tuple[int, float]]] = [[] for _ in urls]
    ordered: list[list[tuple[int, float]]] = [[] for _ in urls]
    closes: dict[str, int] = {}
    skipped: list[set[int]] = [set() for _ in urls]
    position = [first] * len(urls)  # the next height each one is to receive
    owed: list[list[int]] = [[] for _ in urls]  # heights received without their order

    async def main() -> None:
        opened = 0
        all_open = trio.Event()
        progress = trio.Event()

        async def one(i: int, url: str) -> None:
            nonlocal opened, progress
            parts = urlsplit(url)
            host, port = parts.hostname or "127.0.0.1", parts.port or 80
            counted = False
            for _ in range(MAX_RECONNECTS):
                start = position[i]
                stream = await trio.open_tcp_stream(host, port, local_address=client_address(i))
                try:
                    async with stream:
                        ws = LightReceiver(stream, MAX_MESSAGE_BYTES)
                        await ws.open(f"{host}:{port}", f"{parts.path}?{parts.query}&from={start}")
                        if not counted:
                            counted = True
                            opened += 1
                            if opened == len(urls):
                                all_open.set()
                        async for raw, at in ws.messages():
                            message = msgspec.json.decode(raw)
                            kind, height = message.get("type"), message.get("height")
                            if kind == "block":
                                inline = carries_order(message)
                                if received[i] and height <= received[i][-1][0]:
                                    # Sent again from a resume height: only its
                                    # order, if it now carries it, is new.
                                    if inline and owed[i] and owed[i][0] == height:
                                        ordered[i].append((height, at))
                                        owed[i].pop(0)
                                    continue
                                received[i].append((height, at))
                                if inline:
                                    ordered[i].append((height, at))
                                else:
                                    owed[i].append(height)
                                position[i] = height + 1
                            elif kind == "order":
                                ordered[i].append((height, at))
                                if owed[i] and owed[i][0] == height:
                                    owed[i].pop(0)
                            else:
                                continue
                            progress.set()
                            progress = trio.Event()
                except Closed as closed:
                    code, said = closed.code, closed.reason
                    closes[str(code)] = closes.get(str(code), 0) + 1
                    if owed[i]:
                        position[i] = owed[i][0]  # the close names it too
                    if code == 4410:
                        # No certificate of its own for that height here: a
                        # client would fetch it elsewhere; this one goes on.
                        match = _RESUME.search(said)
                        if match is None:
                            raise
                        skipped[i].add(int(match.group(1)))
                        position[i] = int(match.group(1)) + 1
                        progress.set()
                        progress = trio.Event()
                    elif code != 4008:
                        raise
                    await trio.sleep(RECONNECT_DELAY_S)

        async with trio.open_nursery() as nursery:
            for i, url in enumerate(urls):
                nursery.start_soon(one, i, url)
            with trio.fail_after(CONNECT_TIMEOUT_S):
                await all_open.wait()
            conn.send("ready")
            last = await trio.to_thread.run_sync(conn.recv)
            with trio.move_on_after(DELIVER_TIMEOUT_S):
                while min(position) <= last or any(o and o[0] <= last for o in owed):
                    await progress.wait()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        conn.send((received, ordered, closes, [sorted(s) for s in skipped]))


def delivery_check(
    received: list[list[tuple[int, float]]], skipped: list[list[int]], first: int, last: int
) -> int:
    """How many subscribers did not receive exactly first..last, in order, once
    each, apart from the heights the node closed them on with 4410."""
    bad = 0
    for got, missing in zip(received, skipped, strict=True):
        expected = [h for h in range(first, last + 1) if h not in set(missing)]
        if [h for h, _ in got] != expected:
            bad += 1
    return bad


def live_heights(decided: dict[int, float], connected_at: float) -> dict[int, float]:
    """The heights (-> decided time) node 0 decided once every subscriber was
    connected: those it sent live. The heights from the phase's first one up
    to the connection were decided while the client process started and are
    sent as history on connect; timed from their decision they would measure
    the client's start-up, not delivery."""
    return {h: at for h, at in decided.items() if at >= connected_at}


def latency_ms(received: list[list[tuple[int, float]]], since: dict[int, float]) -> dict[str, Any]:
    """p50, p99 and max of each receipt's time after `since` its height."""
    latencies = [at - since[h] for r in received for h, at in r if h in since]
    return {
        "messages": len(latencies),
        "p50": quantile_ms(latencies, 0.5),
        "p99": quantile_ms(latencies, 0.99),
        "max": quantile_ms(latencies, 1.0),
    }


# --- one phase ----------------------------------------------------------------------


def phase(
    bn: BenchNetwork,
    source: RollupLoad,
    rate: int,
    seconds: float,
    subscribers: int,
    seed: int,
    order: str = "later",
) -> dict[str, Any]:
    settle(bn)
    load = Load(bn, source, rate, seconds, seed)
    ws = bn.urls[0].replace("http://", "ws://")
    first = int(node_status(bn.urls[0])["height"]) + 1
    sub_urls = [
        f"{ws}/v1/subscribe/blocks?namespace={1 + i % NAMESPACES}&order={order}"
        for i in range(subscribers)
    ]
    parent_end: Connection | None = None
    child: Any = None
    if subscribers:
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        child = context.Process(target=subscriber_process, args=(sub_urls, first, child_end))
        child.start()
        if not parent_end.poll(CONNECT_TIMEOUT_S) or parent_end.recv() != "ready":
            child.kill()
            raise RuntimeError("the subscribers did not connect")
    connected_at = time.time()
    try:
        before = int(node_status(bn.urls[0])["committed_txs"])
        pids = bn.pids
        cpu_before = [cpu_seconds(pid) for pid in pids]
        client_cpu_before = cpu_seconds(child.pid) if child is not None else 0.0
        started = time.monotonic()
        load.run()
        submitted = time.monotonic() - started
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        status = node_status(bn.urls[0])
        while int(status["committed_txs"]) < before + load.accepted and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
            status = node_status(bn.urls[0])
        took = time.monotonic() - started
        committed = int(status["committed_txs"]) - before
        last = int(status["height"])
        cpu = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu_before, strict=True)]
        report: dict[str, Any] = {
            "subscribers": subscribers,
            "offered_tx": load.offered,
            "accepted_tx": load.accepted,
            "refused": load.refused,
            "committed_tx": committed,
            "heights": last - first + 1,
            "submission_s": round(submitted, 2),
            "until_all_committed_s": round(took, 2),
            "committed_tx_per_s": round(committed / took, 1),
            "validator_cpu_s": [round(c, 2) for c in cpu],
            "node0_cpu_ms_per_committed_tx": round(1000 * cpu[0] / max(1, committed), 3),
        }
        if child is None or parent_end is None:
            return report
        report["subscriber_client_cpu_s"] = round(cpu_seconds(child.pid) - client_cpu_before, 2)
        parent_end.send(last)
        got, got_orders, closes, skipped = parent_end.recv()
        # What arrived after the measured window (empty blocks go on) is not counted.
        received = [[(h, at) for h, at in r if h <= last] for r in got]
        orders = [[(h, at) for h, at in r if h <= last] for r in got_orders]
    finally:
        if child is not None:
            child.join(timeout=DELIVER_TIMEOUT_S + 10)
            if child.is_alive():
                child.kill()
                child.join()
    log_path = bn.net.nodes[0].log_path
    decided_any = commit_times(log_path, _DECIDED)
    decided = live_heights(decided_any, connected_at)
    executed = {h: at for h, at in commit_times(log_path).items() if h in decided}
    messages = sum(len(r) for r in received)
    report.update(
        {
            "messages_sent": messages,
            "subscription_closes": closes,
            "node0_extra_cpu_ms_per_message": None,  # filled in by compare()
            "subscribers_not_every_height_once_in_order": delivery_check(
                received, skipped, first, last
            ),
            # A later block's order may come first (inline) while an earlier
            # one's is still to follow: each once is what counts.
            "subscribers_not_every_order_once": delivery_check(
                [sorted(r) for r in orders], skipped, first, last
            ),
            "heights_skipped_for_4410": sorted({h for k in skipped for h in k}),
            "heights_decided_before_connected": sum(
                1 for h in range(first, last + 1) if h in decided_any and h not in decided
            ),
            "commit_to_block_ms": latency_ms(received, decided),
            "commit_to_order_ms": latency_ms(orders, decided),
            "executed_to_block_ms": latency_ms(received, executed),
        }
    )
    return report


def node0_excess_cpu_s(phase_report: dict[str, Any]) -> float | None:
    """Node 0's CPU time minus the other validators' mean in the same phase:
    what serving the subscribers cost it, measured against peers that did the
    same consensus work over the same seconds (robust to how fast the phase
    went). None with one validator."""
    cpu = phase_report["validator_cpu_s"]
    if len(cpu) < 2:
        return None
    return float(cpu[0] - sum(cpu[1:]) / (len(cpu) - 1))


def compare(without: dict[str, Any], with_subs: dict[str, Any]) -> dict[str, Any]:
    """The subscribers' cost: throughput change, node 0's CPU per message (two
    estimates: against its own CPU per committed tx without subscribers, and
    against the other validators in the same phase)."""
    tps0, tps1 = without["committed_tx_per_s"], with_subs["committed_tx_per_s"]
    extra_cpu_s = with_subs["validator_cpu_s"][0] - without["validator_cpu_s"][0] * (
        with_subs["committed_tx"] / max(1, without["committed_tx"])
    )
    messages = with_subs.get("messages_sent") or 0
    per_message = round(1000 * extra_cpu_s / messages, 3) if messages else None
    with_subs["node0_extra_cpu_ms_per_message"] = per_message
    excess = [node0_excess_cpu_s(p) for p in (without, with_subs)]
    per_message_vs_peers = (
        round(1000 * (excess[1] - excess[0]) / messages, 3)
        if messages and excess[0] is not None and excess[1] is not None
        else None
    )
    return {
        "node0_cpu_s_above_other_validators": [None if e is None else round(e, 2) for e in excess],
        "node0_cpu_ms_per_message_vs_other_validators": per_message_vs_peers,
        "committed_tx_per_s_change_pct": round(100 * (tps1 - tps0) / tps0, 1) if tps0 else None,
        "node0_cpu_ms_per_committed_tx_change_pct": round(
            100
            * (
                with_subs["node0_cpu_ms_per_committed_tx"]
                - without["node0_cpu_ms_per_committed_tx"]
            )
            / max(1e-9, without["node0_cpu_ms_per_committed_tx"]),
            1,
        ),
        "node0_extra_cpu_ms_per_message": per_message,
    }


def median_cost(costs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over rounds (None where a round has none)."""

    def median(values: list[Any]) -> Any:
        known = sorted(v for v in values if isinstance(v, int | float))
        if not known:
            return None
        middle = len(known) // 2
        if len(known) % 2:
            return known[middle]
        return round((known[middle - 1] + known[middle]) / 2, 3)

    merged: dict[str, Any] = {}
    for key in costs[0]:
        values = [cost[key] for cost in costs]
        if isinstance(values[0], list):
            merged[key] = [median([v[i] for v in values]) for i in range(len(values[0]))]
        else:
            merged[key] = median(values)
    return merged


def run_subscriber_bench(
    *,
    validators: int,
    subscribers: int,
    rate: int,
    seconds: float,
    seed: int,
    echo: Callable[[str], None],
    keep: bool = False,
    rounds: int = 1,
    order: str = "later",
) -> dict[str, Any]:
    """`rounds` pairs of phases (without, then with subscribers) on one network;
    with more than one, `cost` is each figure's median over the rounds and
    `cost_by_round` lists every round's, so drift of the machine or of the
    growing chain falls on both sides. `order`: what the subscribers ask for,
    `later` (each block as soon as its inclusion is provable, its order in a
    message of its own when not known yet) or `inline` (each block message
    waits for its order)."""
    load_before = os.getloadavg()
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    with bench_network(validators, seed=seed, keep=keep, echo=echo) as bn:
        if keep:
            echo(f"network directory (kept): {bn.net.directory}")
        source = RollupLoad(seed=seed, accounts=bn.net.manifest.load.accounts)
        for number in range(rounds):
            echo(f"round {number + 1}/{rounds}: {rate} tx/s for {seconds:g} s without subscribers")
            without = phase(bn, source, rate, seconds, 0, seed + 2 * number)
            echo(f"  {without['committed_tx_per_s']} tx/s; now with {subscribers} subscribers")
            with_subs = phase(bn, source, rate, seconds, subscribers, seed + 2 * number + 1, order)
            echo(f"  {with_subs['committed_tx_per_s']} tx/s")
            pairs.append((without, with_subs))
    costs = [compare(without, with_subs) for without, with_subs in pairs]
    report: dict[str, Any] = {
        "benchmark": "subscribers",
        "validators": validators,
        "rate": rate,
        "seconds": seconds,
        "seed": seed,
        "rounds": rounds,
        "order": order,
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "phases": [p for pair in pairs for p in pair],
        "cost": costs[0] if rounds == 1 else median_cost(costs),
    }
    if rounds > 1:
        report["cost_by_round"] = costs
    return report


def summary_text(report: dict[str, Any]) -> str:
    with_subs = report["phases"][-1]  # the last round's delivery figures
    to_block = with_subs.get("commit_to_block_ms", {})
    to_order = with_subs.get("commit_to_order_ms", {})
    executed = with_subs.get("executed_to_block_ms", {})
    lines = [
        f"{report['validators']} validators, {report['rate']} tx/s offered for "
        f"{report['seconds']:g} s, {report['cores']} cores (load average before "
        f"{report['load_average_before'][0]})",
    ]
    for p in report["phases"]:
        lines.append(
            f"  {p['subscribers']:>4} subscribers: {p['committed_tx_per_s']:>7} tx/s committed, "
            f"node 0 {p['node0_cpu_ms_per_committed_tx']} ms CPU per committed tx"
        )
    by_round = report.get("cost_by_round")
    if by_round:
        lines.append(
            "  change by round: "
            + ", ".join(f"{c['committed_tx_per_s_change_pct']}%" for c in by_round)
            + " tx/s (medians below)"
        )
    lines.append(
        f"  change: {report['cost']['committed_tx_per_s_change_pct']}% tx/s; node 0 "
        f"{report['cost']['node0_extra_cpu_ms_per_message']} ms extra CPU per message sent "
        f"({report['cost']['node0_cpu_ms_per_message_vs_other_validators']} ms against the "
        "other validators); "
        f"subscriber client process {with_subs.get('subscriber_client_cpu_s')} s CPU"
    )
    for name, latency in (
        ("commit -> block", to_block),
        ("commit -> order", to_order),
        ("executed -> block", executed),
    ):
        lines.append(
            f"  {name}: p50 {latency.get('p50')} ms, p99 {latency.get('p99')} ms, "
            f"max {latency.get('max')} ms over {latency.get('messages')} messages"
        )
    lines.append(
        f"  {with_subs.get('subscribers_not_every_height_once_in_order')} subscribers missed "
        f"or repeated a block, {with_subs.get('subscribers_not_every_order_once')} "
        "an order"
    )
    return "\n".join(lines)
