"""The whole benchmark: verify limit, the N-validator network, the baseline.

    run_benchmark
      measure_verify_limit           (before any node runs: the cores are idle)
      run_network(N)                 bench_network -> steps -> result
        step: build_plan (sign, pack) -> StepDriver.run -> summarize_step -> judge_step
      run_network(1)                 the single-sequencer baseline, same load
      report                         numbers, ratios, machine, git commit

A step's numbers are those of its measurement window; a network's result is
the step at the highest sustained rate (search) or the one step (--rate).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from consensus.encoding import Domain
from sequencer_net.client import DEFAULT_FEES
from sequencer_net.testnet.bench.cluster import BenchNetwork, bench_network, first_leaf
from sequencer_net.testnet.bench.drive import REFUSED, StepDriver, StepRecord, summarize_step
from sequencer_net.testnet.bench.limits import (
    DEFAULT_LATENCY_BOUND_MS,
    DEFAULT_MAX_STEPS,
    RAMP_START_FRACTION,
    VERIFY_SAMPLE_TXS,
    VERIFY_SECONDS,
)
from sequencer_net.testnet.bench.report import git_commit, machine, step_line
from sequencer_net.testnet.bench.sustain import RateSearch, Verdict, judge_step
from sequencer_net.testnet.bench.traffic import (
    AccountPool,
    MarketLoad,
    Mix,
    RollupLoad,
    TrafficSource,
    WireFormat,
    build_plan,
    generate_items,
    sign_items,
)
from sequencer_net.testnet.bench.verify_limit import (
    VerifyLimit,
    measure_verify_limit,
    verify_limit_tps,
)
from sequencer_net.testnet.bench.ws_sender import stream_served

Echo = Callable[[str], None]

VERIFY_DOMAIN = Domain(chain_id=31337, verifying_contract=bytes(20), genesis_hash=bytes(32))
"""Any domain does for timing recovery: its cost does not depend on the values."""


@dataclass(frozen=True, slots=True)
class BenchOptions:
    validators: int = 4
    duration_s: float = 10.0
    rate: float | None = None
    mix: Mix = Mix.ROLLUP
    latency_bound_ms: float = DEFAULT_LATENCY_BOUND_MS
    max_steps: int = DEFAULT_MAX_STEPS
    baseline: bool = True
    keep: bool = False
    wan_delay_ms: float | None = None
    seed: int = 0
    wire: str = "auto"  # auto | json | msgpack | stream


def measure_machine_limit(options: BenchOptions, echo: Echo) -> VerifyLimit:
    pool = AccountPool(options.seed, 16)
    items = generate_items(options.mix, pool.accounts, VERIFY_SAMPLE_TXS, options.seed)
    secrets = [account.secret for account in pool.accounts]
    signed = sign_items(items, secrets, VERIFY_DOMAIN, DEFAULT_FEES, processes=1)
    limit = measure_verify_limit(signed, VERIFY_DOMAIN, options.validators, seconds=VERIFY_SECONDS)
    echo(
        f"verify limit: {limit.total_per_s:.0f} signature recoveries/s on {limit.processes} "
        f"processes -> {limit.tps:.0f} tx/s for {options.validators} validator(s)"
    )
    return limit


def choose_wire(url: str, requested: str) -> WireFormat:
    """`auto`: the WebSocket stream if the node answers an empty batch on it,
    else msgpack POSTs if it answers a msgpack batch in msgpack, else JSON."""
    if requested != "auto":
        return WireFormat(requested)
    if stream_served(url):
        return WireFormat.STREAM
    try:
        response = httpx.post(
            f"{url}/v1/transactions/batch",
            content=b"\x90",  # an empty msgpack array
            headers={"content-type": "application/msgpack"},
            timeout=5.0,
        )
    except httpx.HTTPError:
        return WireFormat.JSON
    if response.headers.get("content-type", "").startswith("application/msgpack"):
        return WireFormat.MSGPACK
    return WireFormat.JSON


def run_step(
    bn: BenchNetwork,
    source: TrafficSource,
    rate: float,
    options: BenchOptions,
    wire: WireFormat,
    step_seed: int,
    echo: Echo,
) -> dict[str, Any]:
    """Sign, drive and judge one step; retire the accounts it left unfinished."""
    started = time.monotonic()
    echo(f"  signing {int(rate * options.duration_s)} transactions for {rate:g} tx/s...")
    plan = build_plan(
        rate,
        options.duration_s,
        source=source,
        nodes=len(bn.net.nodes),
        domain=bn.domain,
        fees=bn.fees,
        wire=wire,
        seed=step_seed,
    )
    signing_s = time.monotonic() - started
    driver = StepDriver(plan, bn.urls, bn.pids)
    try:
        record = trio.run(driver.run)
    except BaseExceptionGroup as group:
        raise first_leaf(group) from group
    unfinished = unfinished_accounts(record)
    source.unfinished(unfinished)
    summary = summarize_step(record)
    verdict = judge_step(summary.measurement, options.latency_bound_ms)
    return {
        **summary.numbers,
        "sustained": verdict.sustained,
        "reasons": list(verdict.reasons),
        "client_bound": verdict.client_bound,
        "signing_s": round(signing_s, 2),
        "accounts": plan.accounts,
        "clean": not unfinished,
    }


def unfinished_accounts(record: StepRecord) -> set[int]:
    """Accounts (positions in the step's load) with a refused or uncommitted
    transaction: a nonce gap, or a nonce still pending."""
    plan = record.plan
    return {
        plan.account_of[i]
        for i in range(plan.total)
        if record.outcome[i] == REFUSED or record.committed_at[i] < 0
    }


def traffic_source(options: BenchOptions, bn: BenchNetwork) -> TrafficSource:
    accounts = bn.net.manifest.load.accounts
    if options.mix is Mix.ROLLUP:
        return RollupLoad(options.seed, accounts)
    return MarketLoad(options.seed, accounts, options.mix, bn.domain, bn.fees, bn.genesis_time_s)


def run_network(
    validators: int,
    options: BenchOptions,
    limit: VerifyLimit,
    echo: Echo,
    rate: float | None,
) -> dict[str, Any]:
    """Start a network of `validators`, run its steps, return its result."""
    limit_tps = verify_limit_tps(limit.per_process_per_s, validators)
    rng = random.Random(options.seed * 1_000 + validators)
    steps: list[dict[str, Any]] = []
    search = None
    if rate is None:
        search = RateSearch(start=limit_tps / RAMP_START_FRACTION, max_steps=options.max_steps)
    next_rate = rate if search is None else search.next_rate()
    wire = WireFormat.JSON
    while next_rate is not None:
        # A fresh network; replaced after a step that left transactions refused or
        # uncommitted (a backlog or nonce gaps would weigh on the next step), and
        # with DEX traffic after any step not sustained (the market's state would).
        echo(f"starting {validators} validator(s)...")
        with bench_network(
            validators,
            seed=options.seed,
            keep=options.keep,
            wan_delay_ms=options.wan_delay_ms,
            echo=echo,
        ) as bn:
            wire = choose_wire(bn.urls[0], options.wire)
            echo(f"  committing; submitting {wire} batches; directory {bn.directory}")
            source = traffic_source(options, bn)
            while next_rate is not None:
                step = run_step(bn, source, next_rate, options, wire, rng.randrange(2**32), echo)
                steps.append(step)
                echo(step_line(len(steps), validators, step))
                if search is None:
                    next_rate = None
                    break
                search.record(next_rate, _verdict_of(step))
                next_rate = search.next_rate()
                replace = None if next_rate is None else new_network_reason(step, options.mix)
                if replace is not None:
                    echo(f"  {replace}: new network")
                    break
    return network_result(validators, options, limit_tps, steps, search, wire)


def new_network_reason(step: dict[str, Any], mix: Mix) -> str | None:
    """Why the next step must run on a fresh network, or None to keep this one."""
    if not step["clean"]:
        return "the step left transactions refused or uncommitted"
    if mix is not Mix.ROLLUP and not step["sustained"]:
        # An overloaded market keeps what it could not clear (resting orders,
        # open positions) and every later block pays for them.
        return "the step overloaded the market"
    return None


def _verdict_of(step: dict[str, Any]) -> Verdict:
    return Verdict(step["sustained"], tuple(step["reasons"]), step["client_bound"])


STEP_KEYS = (
    "offered_rate",
    "tps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "latency_samples",
    "latency_never_committed",
    "blocks_per_s",
    "view_changes",
    "view_changes_source",
    "consensus_event_delay",
    "gc_pauses",
    "cpu_per_node",
    "client_cpu",
)


def network_result(
    validators: int,
    options: BenchOptions,
    limit_tps: float,
    steps: list[dict[str, Any]],
    search: RateSearch | None,
    wire: WireFormat,
) -> dict[str, Any]:
    """The network's numbers: the highest sustained step (search), the one step
    (fixed rate), or, if nothing was sustained, the lowest-rate step, flagged."""
    if search is None:
        chosen = steps[0]
        max_sustained = chosen["offered_rate"] if chosen["sustained"] else None
    else:
        sustained = [s for s in steps if s["sustained"]]
        chosen = (
            max(sustained, key=lambda s: s["offered_rate"])
            if sustained
            else min(steps, key=lambda s: s["offered_rate"])
        )
        max_sustained = chosen["offered_rate"] if sustained else None
    result: dict[str, Any] = {key: chosen[key] for key in STEP_KEYS}
    result.update(
        validators=validators,
        mode="fixed" if search is None else "search",
        sustained=chosen["sustained"],
        reasons=chosen["reasons"],
        max_sustained_rate=max_sustained,
        verify_limit_tps=round(limit_tps, 1),
        ratio_to_limit=round(chosen["tps"] / limit_tps, 3) if limit_tps > 0 else None,
        search_stopped=None if search is None else search.stopped,
        wire=str(wire),
        steps=steps,
    )
    delay = options.wan_delay_ms
    if delay:
        result["wan_delay_ms"] = delay
        result["delay_multiples"] = {
            q: None if chosen[f"{q}_ms"] is None else round(chosen[f"{q}_ms"] / delay, 2)
            for q in ("p50", "p90", "p99")
        }
    return result


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def run_benchmark(options: BenchOptions, echo: Echo) -> dict[str, Any]:
    """Everything `seqnet bench` does; the JSON report."""
    started = time.monotonic()
    host = machine()
    code = git_commit()
    limit = measure_machine_limit(options, echo)
    main = run_network(options.validators, options, limit, echo, options.rate)
    report: dict[str, Any] = {
        **main,
        "mix": str(options.mix),
        "duration_s": options.duration_s,
        "latency_bound_ms": options.latency_bound_ms,
        "seed": options.seed,
        "verify": {
            "processes": limit.processes,
            "seconds": limit.seconds,
            "recoveries_per_s": round(limit.total_per_s, 1),
            "per_process_per_s": [round(r, 1) for r in limit.per_process_per_s],
        },
        "observer": "node 0, executed height pushed (WS /v1/subscribe/executed)",
        "wan_delay_ms": options.wan_delay_ms,
        "machine": host,
        "git_commit": code["commit"],
        "git_dirty": code["dirty"],
        "baseline": None,
        "decentralization_cost": None,
    }
    if options.baseline and options.validators > 1:
        # The same load: the same rate, or a fresh search (the baseline's limit is higher).
        baseline = run_network(1, options, limit, echo, options.rate)
        report["baseline"] = baseline
        report["decentralization_cost"] = {
            "tps_ratio": _ratio(main["tps"], baseline["tps"]),
            "p50_ratio": _ratio(main["p50_ms"], baseline["p50_ms"]),
            "p99_ratio": _ratio(main["p99_ms"], baseline["p99_ms"]),
        }
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return report
