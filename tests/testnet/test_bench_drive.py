"""A benchmark step against fake nodes (in-process HTTP servers on 127.0.0.1),
the report's JSON shape, CPU accounting and the verify-limit measurement."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import trio

from sequencer_net.client import DEFAULT_FEES
from sequencer_net.testnet.bench import drive
from sequencer_net.testnet.bench import run as bench_run
from sequencer_net.testnet.bench.cpu import tree_cpu_seconds
from sequencer_net.testnet.bench.drive import (
    EVENT_DELAY_METRIC,
    NULLIFIED_METRIC,
    ObserverError,
    StepDriver,
    block_tx_hash,
    histogram_delta,
    parse_counter,
    parse_histogram,
    summarize_step,
)
from sequencer_net.testnet.bench.report import REQUIRED_KEYS, cpu_model, summary_text
from sequencer_net.testnet.bench.run import BenchOptions, new_network_reason, run_benchmark
from sequencer_net.testnet.bench.traffic import AccountPool, Mix, RollupLoad, WireFormat, build_plan
from sequencer_net.testnet.bench.verify_limit import VerifyLimit, measure_verify_limit
from tests.testnet.fake_node import FakeChain, FakeNode


@dataclass
class FakeCluster:
    nodes: list[FakeNode]
    accounts: int = 256
    directory: Path = Path("/nonexistent")
    genesis_time_s: int = 0
    pids: list[int] = field(default_factory=lambda: [os.getpid()])

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def domain(self) -> Any:
        return self.nodes[0].chain.domain()

    @property
    def fees(self) -> Any:
        return DEFAULT_FEES

    @property
    def net(self) -> Any:
        return SimpleNamespace(
            nodes=self.nodes, manifest=SimpleNamespace(load=SimpleNamespace(accounts=self.accounts))
        )


@contextmanager
def fake_cluster(validators: int) -> Iterator[FakeCluster]:
    # One chain behind every fake node, as consensus would give: each serves the
    # same blocks, so node 0's blocks hold what was sent to any node.
    chain = FakeChain(name="node0", index=0, block_interval_s=0.1)
    nodes = [FakeNode(chain).serve_in_thread() for _ in range(validators)]
    try:
        yield FakeCluster(nodes)
    finally:
        for node in nodes:
            node.close()


def run_fake_step(cluster: FakeCluster, rate: float, duration_s: float) -> Any:
    plan = build_plan(
        rate,
        duration_s,
        source=RollupLoad(seed=0, accounts=64),
        nodes=len(cluster.nodes),
        domain=cluster.domain,
        fees=DEFAULT_FEES,
        wire=WireFormat.JSON,
        seed=1,
    )
    driver = StepDriver(plan, cluster.urls, cluster.pids, drain_max_s=3.0)
    return trio.run(driver.run)


def test_a_step_commits_everything_it_sent_and_measures_it() -> None:
    with fake_cluster(2) as cluster:
        record = run_fake_step(cluster, rate=200.0, duration_s=2.0)
        requests = [node.chain.requests for node in cluster.nodes]
    assert record.accepted == record.plan.total == 400
    assert record.committed == 400 and record.drained
    assert requests[0] > 0
    summary = summarize_step(record)
    numbers = summary.numbers
    assert numbers["latency_never_committed"] == 0
    assert numbers["latency_samples"] == summary.histogram.recorded > 0
    assert 0 <= numbers["p50_ms"] <= numbers["p90_ms"] <= numbers["p99_ms"]
    assert numbers["tps"] > 0 and numbers["blocks_per_s"] > 0
    # The fake node has no nullified-views metric: derived, and said so.
    assert numbers["view_changes_source"].startswith("derived")
    assert numbers["view_changes"] == 0
    assert summary.measurement.refused == 0


def commit_latencies(record: Any) -> list[float]:
    """Seconds from each committed transaction's request to its commit time."""
    out: list[float] = []
    request_id = 0
    for requests in record.plan.ticks:
        for request in requests:
            sent = record.sent_at[request_id]
            request_id += 1
            for i in range(request.first, request.first + request.count):
                if record.committed_at[i] >= 0:
                    out.append(record.committed_at[i] - sent)
    return out


@contextmanager
def one_node(chain: FakeChain) -> Iterator[FakeCluster]:
    node = FakeNode(chain).serve_in_thread()
    try:
        yield FakeCluster([node])
    finally:
        node.close()


def test_a_commit_is_timed_when_node_0_has_executed_it_not_when_its_block_is_readable() -> None:
    # Each block is readable at once but executed only 0.4 s later: a commit
    # time taken from the block (or from anything before execution) would come
    # well under 0.4 s after the request; the executed-height push cannot.
    lag = 0.4
    chain = FakeChain(name="node0", index=0, block_interval_s=0.05, executed_lag_s=lag)
    with one_node(chain) as cluster:
        record = run_fake_step(cluster, rate=100.0, duration_s=2.0)
    assert record.accepted == record.committed == record.plan.total == 200
    latencies = commit_latencies(record)
    assert len(latencies) == 200
    assert min(latencies) >= lag


def test_a_dropped_subscription_resumes_without_missing_a_block() -> None:
    # Node 0 closes the subscription after every 3 messages and refuses new ones
    # for 0.2 s (about 4 blocks): the blocks executed meanwhile must still be
    # fetched, each transaction counted once.
    chain = FakeChain(name="node0", index=0, block_interval_s=0.05, ws_drop_after=3, ws_down_s=0.2)
    with one_node(chain) as cluster:
        record = run_fake_step(cluster, rate=200.0, duration_s=2.0)
        told = list(chain.ws_sent)
        with_ours = [h for h, block in enumerate(chain.blocks, start=1) if block]
    never_told = set(with_ours) - set(told)
    assert never_told  # blocks of ours executed while no subscription was open
    assert record.accepted == record.committed == record.plan.total == 400
    assert record.drained
    assert sum(1 for at in record.committed_at if at >= 0) == 400


def test_the_observer_gives_up_when_node_0_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(drive, "REQUEST_TIMEOUT_S", 0.3)
    chain = FakeChain(name="node0", index=0)
    with socket.socket() as free:  # a port nothing listens on once closed
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}"
    plan = build_plan(
        10.0,
        1.0,
        source=RollupLoad(seed=0, accounts=64),
        nodes=1,
        domain=chain.domain(),
        fees=DEFAULT_FEES,
        wire=WireFormat.JSON,
        seed=1,
    )
    driver = StepDriver(plan, [url], [os.getpid()])

    async def observe() -> None:
        async with httpx.AsyncClient(base_url=url) as client:
            with trio.fail_after(10):
                await driver._observe(client)

    with pytest.raises(ObserverError):
        trio.run(observe)


@contextmanager
def fake_benchmark(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    started: list[int] = []

    @contextmanager
    def network(validators: int, **_: Any) -> Iterator[FakeCluster]:
        started.append(validators)
        with fake_cluster(validators) as cluster:
            yield cluster

    limit = VerifyLimit(
        processes=2, per_process_per_s=(9_000.0, 11_000.0), seconds=2.0, validators=2
    )
    monkeypatch.setattr(bench_run, "bench_network", network)
    monkeypatch.setattr(bench_run, "measure_machine_limit", lambda options, echo: limit)
    monkeypatch.setattr(bench_run, "choose_wire", lambda url, requested: WireFormat.JSON)
    yield started


def test_report_json_shape_with_a_fake_network(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_benchmark(monkeypatch) as started:
        options = BenchOptions(validators=2, duration_s=2.0, rate=100.0)
        report = run_benchmark(options, echo=lambda text: None)
    assert started == [2, 1]  # the network, then the single-validator baseline
    json.loads(json.dumps(report))  # plain JSON
    for key in REQUIRED_KEYS:
        assert key in report, key
    assert report["validators"] == 2 and report["mix"] == "rollup"
    assert report["offered_rate"] == 100.0
    # 20,000 recoveries/s; with 2 validators f = 0, so each tx is recovered once
    assert report["verify_limit_tps"] == 20_000.0
    assert report["ratio_to_limit"] == round(report["tps"] / 20_000.0, 3)
    assert report["machine"]["cores"] == os.cpu_count()
    baseline = report["baseline"]
    assert baseline["validators"] == 1 and baseline["verify_limit_tps"] == 20_000.0
    cost = report["decentralization_cost"]
    assert cost["tps_ratio"] == round(report["tps"] / baseline["tps"], 3)
    assert len(report["steps"]) == 1 and report["mode"] == "fixed"
    text = summary_text(report)
    assert "cost of decentralization" in text and "1 validator alone" in text


def test_no_baseline_means_one_network(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_benchmark(monkeypatch) as started:
        options = BenchOptions(validators=2, duration_s=2.0, rate=50.0, baseline=False)
        report = run_benchmark(options, echo=lambda text: None)
    assert started == [2]
    assert report["baseline"] is None and report["decentralization_cost"] is None


def test_block_transactions_are_hashed_unless_already_hashes() -> None:
    encoded = bytes(range(40))
    from sequencer_net.mempool.transaction import tx_hash

    expected = "0x" + tx_hash(encoded).hex()
    assert block_tx_hash("0x" + encoded.hex()) == expected
    assert block_tx_hash(expected.upper().replace("0X", "0x")) == expected


def test_parse_counter() -> None:
    text = f"# HELP x\n{NULLIFIED_METRIC} 7.0\nseqnet_view 12.0\n"
    assert parse_counter(text, NULLIFIED_METRIC) == 7.0
    assert parse_counter("seqnet_view 1\n", NULLIFIED_METRIC) is None


BURN = """
import sys, time
while time.process_time() < 0.3:
    pass
print("burnt", flush=True)
sys.stdin.readline()
"""


def test_tree_cpu_counts_a_live_child_and_a_reaped_one() -> None:
    me = os.getpid()
    before = tree_cpu_seconds([me])[me]
    child = subprocess.Popen(
        [sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "burnt"  # 0.3 s of its own CPU used
        live = tree_cpu_seconds([me])[me]
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    reaped = tree_cpu_seconds([me])[me]
    assert live - before >= 0.25  # the live child's utime + stime, not wall time
    assert reaped - before >= 0.25  # after wait(): in this process's cutime


def test_cpu_model_reads_cpuinfo() -> None:
    assert cpu_model("processor\t: 0\nmodel name\t: Test CPU 9000\n") == "Test CPU 9000"
    assert cpu_model("processor\t: 0\n") is None


def test_verify_limit_is_measured_in_worker_processes() -> None:
    from sequencer_net.testnet.bench.run import VERIFY_DOMAIN
    from sequencer_net.testnet.bench.traffic import generate_items, sign_items

    pool = AccountPool(seed=0, count=4)
    items = generate_items(Mix.ROLLUP, pool.accounts, 16, seed=0)
    secrets = [a.secret for a in pool.accounts]
    signed = sign_items(items, secrets, VERIFY_DOMAIN, DEFAULT_FEES, processes=1)
    limit = measure_verify_limit(signed, VERIFY_DOMAIN, validators=4, seconds=0.2, processes=2)
    assert limit.processes == 2 and len(limit.per_process_per_s) == 2
    assert all(rate > 0 for rate in limit.per_process_per_s)
    assert limit.tps == pytest.approx(limit.total_per_s / 2)  # f + 1 = 2 of 4 recover each tx


@pytest.mark.parametrize(
    ("mix", "clean", "sustained", "fresh"),
    [
        (Mix.ROLLUP, True, True, False),
        (Mix.ROLLUP, True, False, False),  # opaque blobs leave nothing behind
        (Mix.ROLLUP, False, True, True),
        (Mix.DEX, True, True, False),
        (Mix.DEX, True, False, True),  # the book and positions would weigh on the next step
        (Mix.MIXED, True, False, True),
        (Mix.DEX, False, True, True),
    ],
)
def test_which_steps_end_their_network(mix: Mix, clean: bool, sustained: bool, fresh: bool) -> None:
    reason = new_network_reason({"clean": clean, "sustained": sustained}, mix)
    assert (reason is not None) == fresh


EVENT_DELAY_TEXT = """# HELP seqnet_consensus_event_delay_seconds From a consensus message's arrival
# TYPE seqnet_consensus_event_delay_seconds histogram
seqnet_consensus_event_delay_seconds_bucket{{le="0.001"}} {a}
seqnet_consensus_event_delay_seconds_bucket{{le="0.01"}} {b}
seqnet_consensus_event_delay_seconds_bucket{{le="0.1"}} {c}
seqnet_consensus_event_delay_seconds_bucket{{le="+Inf"}} {d}
seqnet_consensus_event_delay_seconds_count {d}
seqnet_consensus_event_delay_seconds_sum 1.5
"""


def _delay(a: int, b: int, c: int, d: int) -> dict[float, float] | None:
    return parse_histogram(EVENT_DELAY_TEXT.format(a=a, b=b, c=c, d=d), EVENT_DELAY_METRIC)


def test_a_histogram_is_parsed_cumulatively_with_infinity() -> None:
    assert _delay(1, 2, 3, 4) == {0.001: 1.0, 0.01: 2.0, 0.1: 3.0, math.inf: 4.0}
    assert parse_histogram("seqnet_other_total 3\n", EVENT_DELAY_METRIC) is None


def test_the_window_counts_only_what_happened_inside_it() -> None:
    # Before the window: 100 fast messages. Inside: 98 more under 1 ms, one
    # under 10 ms and one under 100 ms.
    start = _delay(100, 100, 100, 100)
    end = _delay(198, 199, 200, 200)
    assert histogram_delta(start, end) == {
        "count": 100,
        "p50_le_ms": 1.0,
        "p99_le_ms": 10.0,
        "max_le_ms": 100.0,
    }


def test_a_slow_tail_beyond_the_last_bound_has_no_bound() -> None:
    delta = histogram_delta(_delay(0, 0, 0, 0), _delay(0, 0, 0, 10))
    assert delta is not None
    assert delta["p50_le_ms"] is None and delta["max_le_ms"] is None


def test_no_messages_or_no_metric() -> None:
    same = _delay(5, 5, 5, 5)
    assert histogram_delta(same, same) == {
        "count": 0,
        "p50_le_ms": None,
        "p99_le_ms": None,
        "max_le_ms": None,
    }
    assert histogram_delta(None, same) is None
