"""`seqnet bench`: the network benchmark (no subcommand, sequencer_net/testnet/bench/)
and benchmarks of the engine's hot paths (`auction`, `block`), and a crash
simulation of liquidations (`crash`).

Each benchmark builds its input from a seed (printed, so a run replays with
`--seed`), times only the code under test with `time.perf_counter`, and reports
the best of several repetitions: the minimum is the least noisy estimate of the
code's own cost on a shared machine.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path
from random import Random
from typing import Any

import click

from sequencer_net.execution.auction import (
    AuctionOrder,
    ClearingResult,
    Side,
    clear_batch_auction,
)
from sequencer_net.testnet.bench.limits import (
    MAX_RECOVERY_FAULT_S,
    MAX_RECOVERY_ROUNDS,
    MIN_RECOVERY_FAULT_S,
)

WAD = 10**18
# One market around a price of 2,000 units: tick 0.01, lot 0.001 (wad-scaled).
BENCH_REFERENCE_PRICE = 2_000 * WAD
BENCH_TICK_SIZE = WAD // 100
BENCH_LOT_SIZE = WAD // 1_000
# Limits fall within +-2% of the reference (4,000 ticks of 0.01 each side).
BENCH_PRICE_SPREAD_TICKS = 4_000
BENCH_MAX_LOTS = 10_000
# About one order in twenty is a market order.
BENCH_MARKET_ORDER_ONE_IN = 20


def build_random_orders(count: int, seed: int) -> list[AuctionOrder]:
    """`count` random orders in one market around `BENCH_REFERENCE_PRICE`.

    Buys and sells are equally likely; limits are uniform within the spread, so
    the books overlap and a large part of them crosses. Same seed, same orders.
    """
    rng = Random(seed)
    orders = []
    for _ in range(count):
        side = Side.BUY if rng.getrandbits(1) else Side.SELL
        limit: int | None = None
        if rng.randrange(BENCH_MARKET_ORDER_ONE_IN):
            offset = rng.randint(-BENCH_PRICE_SPREAD_TICKS, BENCH_PRICE_SPREAD_TICKS)
            limit = BENCH_REFERENCE_PRICE + offset * BENCH_TICK_SIZE
        orders.append(
            AuctionOrder(
                order_id=rng.randbytes(32),
                side=side,
                limit_price=limit,
                quantity=rng.randint(1, BENCH_MAX_LOTS) * BENCH_LOT_SIZE,
            )
        )
    return orders


def _format_wad(value: int) -> str:
    whole, fraction = divmod(value, WAD)
    return f"{whole}.{fraction:018d}".rstrip("0").rstrip(".")


NETWORK_OPTIONS = (
    "validators",
    "duration",
    "rate",
    "mix",
    "latency_bound_ms",
    "max_steps",
    "no_baseline",
    "keep",
    "wan_delay_ms",
    "seed",
    "wire",
    "as_json",
)


@click.group(invoke_without_command=True)
@click.option(
    "--validators",
    "-n",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Validators in the benchmark network (all on this machine).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=2.0),
    default=10.0,
    show_default=True,
    help="Seconds of load per step (the first quarter, at least 1 s, is warm-up).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Offer this many tx/s for one step instead of searching for the highest sustained rate.",
)
@click.option(
    "--mix",
    type=click.Choice(["rollup", "dex", "mixed"]),
    default="rollup",
    show_default=True,
    help="rollup: opaque 100-300 byte payloads in namespaces 1-4; dex: the testnet's "
    "trader traffic (orders, oracle prices, deposits) in namespace 0; mixed: the "
    "same with one in five a rollup blob.",
)
@click.option(
    "--latency-bound-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=1000.0,
    show_default=True,
    help="A sustained rate keeps p99 submit-to-commit under this.",
)
@click.option(
    "--max-steps",
    type=click.IntRange(1, 30),
    default=8,
    show_default=True,
    help="Steps of the rate search per network (ramp, then bisection).",
)
@click.option(
    "--no-baseline",
    is_flag=True,
    help="Skip the single-validator baseline (run by default when N > 1).",
)
@click.option("--keep", is_flag=True, help="Keep the networks' directories (logs, data).")
@click.option(
    "--wan-delay-ms",
    type=click.FloatRange(min=0),
    default=None,
    help="Each validator in its own network namespace, D ms one-way delay between "
    "any two (netem). Needs root, iproute2 and a kernel with netem; 0 gives "
    "the namespaces without delay.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Seed of accounts and payloads.",
)
@click.option(
    "--wire",
    type=click.Choice(["auto", "json", "msgpack", "stream"]),
    default="auto",
    show_default=True,
    help="How batches are submitted: stream (msgpack messages on WS "
    "/v1/transactions/stream), msgpack or json (POST /v1/transactions/batch); "
    "auto uses the stream when the nodes serve it, else msgpack, else JSON.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the report as one JSON object (progress goes to stderr).",
)
@click.pass_context
def bench(ctx: click.Context, /, **options: Any) -> None:
    """Benchmarks: the network (no subcommand) and the engine's hot paths.

    \b
    seqnet bench [--validators N] [--duration S] [--rate R] [--mix M] [--json]
    starts a fresh local network of N real `seqnet node run` processes on
    127.0.0.1 (a temporary directory, removed afterwards unless --keep),
    measures this machine's signature-recovery limit, and then either offers
    --rate R tx/s for S seconds, or searches for the highest rate the network
    sustains: committed tx/s within 5% of offered, p99 submit-to-commit under
    --latency-bound-ms, and a backlog that does not grow. The search doubles
    the rate from 1/8 of the verify limit, then bisects; each step is printed.
    Transactions are signed before each step and submitted in batches, so the
    client is not the bottleneck (its CPU is reported). A transaction's commit
    time is when node 0 pushes (WS /v1/subscribe/executed) that it has
    committed and executed the block holding it. The same load then
    runs against one validator alone, and the report gives the ratio of the
    two (the cost of decentralization). Every process started is stopped at
    the end, on errors and on Ctrl-C. docs/performance.md explains each number.

    \b
    Examples:
      seqnet bench --validators 4 --duration 10 --json
      seqnet bench -n 4 --rate 2000 --duration 20 --mix dex
      sudo seqnet bench -n 4 --rate 500 --wan-delay-ms 50

    \b
    Subcommands time the engine alone (seeded, best of N repetitions):
      seqnet bench auction --orders 10000
      seqnet bench block --orders 5000 --markets 10
      seqnet bench blocks --open-accounts 10000 --blocks 20 --txs 100
      seqnet bench crash --accounts 1000 --drop 0.30 --blocks 20
      seqnet bench tdh2 --shareholders 4 --shareholders 16
    """
    if ctx.invoked_subcommand is not None:
        given = [
            name
            for name in NETWORK_OPTIONS
            if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
        ]
        if given:
            raise click.UsageError(
                "network benchmark options go without a subcommand: "
                + ", ".join("--" + name.replace("_", "-") for name in given)
            )
        return
    from sequencer_net.cli.bench_network import run_network_bench
    from sequencer_net.testnet.bench.run import BenchOptions
    from sequencer_net.testnet.bench.traffic import Mix

    run_network_bench(
        BenchOptions(
            validators=options["validators"],
            duration_s=options["duration"],
            rate=options["rate"],
            mix=Mix(options["mix"]),
            latency_bound_ms=options["latency_bound_ms"],
            max_steps=options["max_steps"],
            baseline=not options["no_baseline"],
            keep=options["keep"],
            wan_delay_ms=options["wan_delay_ms"],
            seed=options["seed"],
            wire=options["wire"],
        ),
        as_json=options["as_json"],
    )


@bench.command()
@click.option(
    "--orders",
    "count",
    type=click.IntRange(min=0),
    default=10_000,
    show_default=True,
    help="Number of random orders in the batch.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of the order generator (random if omitted; always printed).",
)
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Time this many runs and report the fastest.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def auction(count: int, seed: int | None, repeat: int, as_json: bool) -> None:
    """Time one market's uniform-price batch auction on random orders.

    Builds ORDERS random buy and sell orders (about 5% market orders) within
    2% of a reference price of 2000 (wad-scaled, tick 0.01, lot 0.001), then
    times `clear_batch_auction` with time.perf_counter and reports the best of
    --repeat runs as clear_ms. Order generation is not timed.

    Example: seqnet bench auction --orders 10000 --seed 1 --json
    """
    if seed is None:
        seed = secrets.randbits(32)
    orders = build_random_orders(count, seed)
    best_seconds: float | None = None
    result: ClearingResult | None = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = clear_batch_auction(
            orders,
            tick_size=BENCH_TICK_SIZE,
            lot_size=BENCH_LOT_SIZE,
            reference_price=BENCH_REFERENCE_PRICE,
        )
        elapsed = time.perf_counter() - started
        if best_seconds is None or elapsed < best_seconds:
            best_seconds = elapsed
    assert result is not None and best_seconds is not None
    clear_ms = round(best_seconds * 1_000, 3)
    report = {
        "benchmark": "auction",
        "seed": seed,
        "orders": count,
        "repeat": repeat,
        "clear_ms": clear_ms,
        "price": result.price,
        "volume": result.volume,
        "fills": len(result.fills),
        "tick_size": BENCH_TICK_SIZE,
        "lot_size": BENCH_LOT_SIZE,
        "reference_price": BENCH_REFERENCE_PRICE,
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    price = "none (nothing crosses)" if result.price is None else _format_wad(result.price)
    click.echo(f"seed:      {seed}")
    click.echo(f"orders:    {count}")
    click.echo(f"price:     {price}")
    click.echo(f"volume:    {_format_wad(result.volume)}")
    click.echo(f"fills:     {len(result.fills)}")
    click.echo(f"clear_ms:  {clear_ms:.3f} (best of {repeat} runs, time.perf_counter)")


@bench.command()
@click.option(
    "--orders", default=5_000, show_default=True, help="Signed transactions in the block."
)
@click.option(
    "--markets", default=10, show_default=True, help="Perpetual markets they spread over."
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Seed for accounts and orders."
)
@click.option(
    "--mix",
    type=click.Choice(["orders", "dex"]),
    default="orders",
    show_default=True,
    help="orders: new limit and market orders only. dex: orders, cancels, four "
    "validators' price reports moving the index 3% down, and the liquidations it causes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def block(orders: int, markets: int, seed: int, mix: str, as_json: bool) -> None:
    """Execute one block of ORDERS signed transactions across MARKETS markets.

    Times `execute_block` alone, fed recovered senders as a node feeds it
    (nonces, fees, payload decoding, margin checks, one batch auction per
    market, liquidation checks, the state-tree update). Signature recovery,
    which a node does once at intake, is timed apart. Reports `execute_ms`
    and `signature_recovery_ms`.
    """
    if orders < 1 or markets < 1:
        raise click.BadParameter("--orders and --markets must be at least 1")
    from sequencer_net.cli.bench_engine import bench_block, bench_dex_block

    if mix == "dex" and orders < 10:
        raise click.BadParameter("--mix dex needs at least 10 transactions", param_hint="--orders")
    report = (
        bench_block(orders, markets, seed)
        if mix == "orders"
        else bench_dex_block(orders, markets, seed)
    )
    if as_json:
        click.echo(json.dumps({"benchmark": "block", **report}))
        return
    for name, value in report.items():
        click.echo(f"{name + ':':<24}{value}")


@bench.command("blocks")
@click.option(
    "--open-accounts",
    default=1_000,
    show_default=True,
    help="Trader accounts, each holding a position before the timed blocks.",
)
@click.option(
    "--resting-orders",
    type=int,
    default=None,
    help="GTC orders resting away from the index [default: --open-accounts].",
)
@click.option("--blocks", default=20, show_default=True, help="Timed blocks.")
@click.option("--txs", default=100, show_default=True, help="Transactions per timed block.")
@click.option("--markets", default=10, show_default=True, help="Perpetual markets.")
@click.option(
    "--price-every",
    default=5,
    show_default=True,
    help="Every Nth timed block carries the validators' reports moving every index.",
)
@click.option(
    "--options",
    "option_markets",
    default=0,
    show_default=True,
    help="European option markets on perpetual 1's index (calls and puts).",
)
@click.option(
    "--option-holders",
    type=int,
    default=None,
    help="Traders that also hold an option [default: every trader when --options > 0].",
)
@click.option(
    "--blocks-per-second",
    default=1,
    show_default=True,
    help="Timed blocks sharing one block time (the engine's time is in whole seconds).",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Seed for accounts and orders."
)
@click.option(
    "--profile", is_flag=True, help="Also split the time by engine phase (cProfile, slower)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def blocks_command(
    open_accounts: int,
    resting_orders: int | None,
    blocks: int,
    txs: int,
    markets: int,
    price_every: int,
    option_markets: int,
    option_holders: int | None,
    blocks_per_second: int,
    seed: int,
    profile: bool,
    as_json: bool,
) -> None:
    """Time many small DEX blocks over a large open state.

    Untimed setup: OPEN_ACCOUNTS traders each open a position against makers'
    books in MARKETS perpetuals, and RESTING_ORDERS GTC orders rest away from
    the index. Then each of BLOCKS blocks of TXS transactions (new orders, some
    crossing, cancels, market orders; every PRICE_EVERY-th block the
    validators' price reports) is executed and timed: `execute_block`'s whole
    cost, end-of-block work included, at that open state. Reports the median,
    mean and max per block (`block_ms_*`, wall clock; `block_cpu_ms_median`,
    this process's CPU) and, with --profile, the mean per phase (`phases_ms`).
    With --options, OPTION_HOLDERS traders also hold one of that many options.

    \b
    Examples:
      seqnet bench blocks --open-accounts 10000 --blocks 20 --txs 100 --json
      seqnet bench blocks --open-accounts 2000 --options 8 --txs 1 --blocks 40 \\
          --blocks-per-second 5
    """
    if min(open_accounts, blocks, txs, markets, price_every, blocks_per_second) < 1:
        raise click.BadParameter("every count must be at least 1")
    if option_markets < 0 or (option_holders is not None and option_holders < 0):
        raise click.BadParameter("--options and --option-holders cannot be negative")
    if price_every < blocks_per_second:
        raise click.BadParameter(
            "reporters report once a second: --price-every must be >= --blocks-per-second"
        )
    holders = open_accounts if option_holders is None else min(option_holders, open_accounts)
    from sequencer_net.cli.bench_blocks import BlocksOptions, bench_blocks

    options = BlocksOptions(
        open_accounts=open_accounts,
        resting_orders=open_accounts if resting_orders is None else resting_orders,
        blocks=blocks,
        txs_per_block=txs,
        markets=markets,
        price_every=price_every,
        seed=seed,
        profile=profile,
        option_markets=option_markets,
        option_holders=holders if option_markets else 0,
        blocks_per_second=blocks_per_second,
    )
    report = bench_blocks(options)
    if as_json:
        click.echo(json.dumps({"benchmark": "blocks", **report}))
        return
    for name, value in report.items():
        click.echo(f"{name + ':':<24}{value}")


def _drop_fraction(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from sequencer_net.execution.fixed_point import SCALE, parse_decimal

    try:
        drop = parse_decimal(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from error
    if not 0 < drop < SCALE:
        raise click.BadParameter("the drop is a fraction strictly between 0 and 1, e.g. 0.30")
    return drop


@bench.command()
@click.option(
    "--accounts",
    type=click.IntRange(min=1, max=100_000),
    default=1_000,
    show_default=True,
    help="Leveraged accounts opened before the fall.",
)
@click.option(
    "--drop",
    default="0.30",
    show_default=True,
    callback=_drop_fraction,
    help="Fraction the price loses, linearly over --blocks (a decimal, e.g. 0.30).",
)
@click.option(
    "--blocks",
    type=click.IntRange(min=1, max=10_000),
    default=20,
    show_default=True,
    help="Blocks over which the price falls (3 more settle at the bottom).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the accounts.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def crash(accounts: int, drop: int, blocks: int, seed: int, as_json: bool) -> None:
    """Simulate a crash: ACCOUNTS leveraged accounts, the price falls by DROP.

    Runs the real engine on a seeded book: each account opens a perpetual
    position at 2,000 (collateral 500..5,000, 2..9x, 70% long; every tenth
    sells 1..3 puts instead), five makers quote 4 levels each side every
    block, and the index falls linearly by --drop over --blocks, then holds
    for 3 blocks. Reports how many accounts were liquidated, what went
    through the auction, what the insurance fund took over, what was
    deleveraged, and checks after every block that money is conserved
    (`conserved`), that no loss was left unassigned (`unassigned_deficit`,
    must be 0) and that a second run from scratch gives the same state roots
    (`replay_identical`). Exit status 1 if any check fails.

    
    Example:
      seqnet bench crash --accounts 1000 --drop 0.30 --blocks 20 --json
    """
    from sequencer_net.cli.bench_crash import CrashOptions, simulate_crash

    report = simulate_crash(CrashOptions(accounts=accounts, drop=drop, blocks=blocks, seed=seed))
    if as_json:
        click.echo(json.dumps({"benchmark": "crash", **report}))
    else:
        for name, value in report.items():
            click.echo(f"{name + ':':<28}{value}")
    healthy = report["conserved"] and report["replay_identical"]
    if not healthy or report["unassigned_deficit"] != "0":
        raise SystemExit(1)


def _fault_kinds(ctx: click.Context, param: click.Parameter, value: str) -> tuple[Any, ...]:
    from sequencer_net.testnet.bench.recovery import parse_faults

    try:
        return parse_faults(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


@bench.command()
@click.option(
    "--faults",
    default="kill,pause,disconnect",
    show_default=True,
    callback=_fault_kinds,
    help="Fault kinds, applied in this order each round: kill (kill -9, then restart), "
    "pause (SIGSTOP, then SIGCONT), disconnect (cut the validator links through the "
    "admin API, then restore them).",
)
@click.option(
    "--fault-s",
    type=click.FloatRange(MIN_RECOVERY_FAULT_S, MAX_RECOVERY_FAULT_S),
    default=5.0,
    show_default=True,
    help="Seconds each fault lasts before it is healed.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, MAX_RECOVERY_ROUNDS),
    default=2,
    show_default=True,
    help="Times the whole list of faults is applied.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=100.0,
    show_default=True,
    help="Load in tx/s (the testnet's mixed traffic) during the whole run; 0: none.",
)
@click.option("--keep", is_flag=True, help="Keep the network's directory (logs, data).")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the report as one JSON object (progress goes to stderr).",
)
def recovery(
    faults: tuple[Any, ...], fault_s: float, rounds: int, rate: float, keep: bool, as_json: bool
) -> None:
    """How a 4-validator network recovers from one faulted validator.

    \b
    Starts a fresh network of 4 `seqnet node run` processes on 127.0.0.1
    (view timeout 1000 ms, a temporary directory removed afterwards unless
    --keep), runs --rate tx/s of load, waits 5 s, then for each round and
    each fault kind: faults one validator (1, 2, 3 in turn; node 0 is never
    faulted), holds the fault --fault-s seconds, heals it, waits (at most
    30 s) until the node has caught up, and lets the network run 3 s. Every
    node's /v1/status is polled every 20 ms. Per fault it reports the longest
    commit gap among the healthy nodes, when the node's API answered again,
    when it reached the height the others had at the heal and their live
    height, how far behind it was, and its links; each number next to its
    target (gap <= 2 view timeouts, caught up <= 1 s, a paused
    node keeps its links). At the end it checks that every node holds the
    same block at their common height (exit status 1 if not). Every process
    started is stopped at the end, on errors and on Ctrl-C.
    docs/performance.md explains each key of the report.

    \b
    Examples:
      seqnet bench recovery --json
      seqnet bench recovery --faults kill --fault-s 2 --rounds 1
      seqnet bench recovery --faults pause,disconnect --fault-s 10 --rate 500 --keep
    """
    from sequencer_net.cli.bench_network import INTERRUPTED_EXIT, sigterm_as_sigint
    from sequencer_net.testnet.bench.cluster import CleanupIncomplete
    from sequencer_net.testnet.bench.recovery import (
        RecoveryBenchError,
        RecoveryOptions,
        report_text,
        run_recovery,
    )
    from sequencer_net.testnet.network import TestnetError

    def echo(text: str) -> None:
        click.echo(text, err=as_json)

    options = RecoveryOptions(faults=faults, fault_s=fault_s, rounds=rounds, rate=rate, keep=keep)
    try:
        with sigterm_as_sigint():
            report = run_recovery(options, echo)
    except KeyboardInterrupt:
        click.echo("interrupted: every process the benchmark started is stopped", err=True)
        sys.exit(INTERRUPTED_EXIT)
    except (RecoveryBenchError, TestnetError, CleanupIncomplete) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo("")
        click.echo(report_text(report))
    if report["agreement"]["agree"] is False:
        sys.exit(1)


@bench.command("l1-gas")
@click.option(
    "--validators",
    "-n",
    "counts",
    type=click.IntRange(1, 64),
    multiple=True,
    help="Validator counts to measure (repeatable); default 4, 7, 10 and 16.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as one JSON object.")
def l1_gas(counts: tuple[int, ...], as_json: bool) -> None:
    """Gas of a steady Commitments.post, and of equivocation evidence, on L1.

    \b
    For each n: a fresh anvil on 127.0.0.1 (node_modules/.bin/anvil, or
    $SEQNET_ANVIL), the contracts deployed with n validators of equal power,
    two headers posted with a bare quorum of signatures (floor(2n/3) + 1);
    the second post's gasUsed is reported, next to its target where one is
    set, then the gasUsed of submitEvidence (two FINALIZE votes of one
    validator for different blocks; a first offender, which alone does not
    freeze the contract) and of submitEvidenceOfEpoch (the same offence in
    epoch 0, on a second deployment that schedules epoch 1 from height 3; its
    second post, in epoch 0, is "scheduled"). Gas is deterministic: a rerun
    prints the same numbers.

    \b
    Examples:
      seqnet bench l1-gas
      seqnet bench l1-gas -n 4 -n 100 --json
    """
    from sequencer_net.l1.anvil import AnvilError
    from sequencer_net.l1.gas import BENCH_VALIDATOR_COUNTS, POST_GAS_TARGETS, measure

    try:
        rows = [measure(n) for n in (counts or BENCH_VALIDATOR_COUNTS)]
    except AnvilError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        report = {
            "benchmark": "l1-gas",
            "rows": [
                {
                    "validators": row.validators,
                    "signers": row.signers,
                    "post_gas": row.gas,
                    "target": POST_GAS_TARGETS.get(row.validators),
                    "evidence_gas": row.evidence_gas,
                    "epoch_evidence_gas": row.epoch_evidence_gas,
                    "scheduled_post_gas": row.scheduled_post_gas,
                }
                for row in rows
            ],
        }
        click.echo(json.dumps(report))
        return
    click.echo(
        f"{'validators':>10} {'signers':>8} {'post gas':>10} {'target':>13} {'scheduled':>10}"
        f" {'evidence gas':>13} {'epoch evidence':>15}"
    )
    for row in rows:
        target = POST_GAS_TARGETS.get(row.validators)
        mark = ""
        if target is not None:
            mark = f"{target:,}" + (" ok" if row.gas <= target else " OVER")
        click.echo(
            f"{row.validators:>10} {row.signers:>8} {row.gas:>10,} {mark:>13} "
            f"{row.scheduled_post_gas:>10,} {row.evidence_gas:>13,} {row.epoch_evidence_gas:>15,}"
        )


@bench.command("l1-lag")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=".seqnet-testnet",
    show_default=True,
    help="A testnet directory after (or during) a run with the L1 on.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def l1_lag(directory: Path, as_json: bool) -> None:
    """Commit to posted: how long finalized blocks waited to be on the L1.

    \b
    Reads the testnet's node logs: for every height a posting covered, the
    time from the first node committing it to that posting landing on the
    L1, in seconds and in L1 blocks (the testnet's anvil block time).

    \b
    Example:
      bash scripts/run.sh --duration 60 && seqnet bench l1-lag
    """
    from sequencer_net.testnet.bench.l1_lag import measure_l1_lag
    from sequencer_net.testnet.network import Testnet, TestnetError

    try:
        net = Testnet.load(directory)
    except TestnetError as exc:
        raise click.ClickException(str(exc)) from exc
    if net.l1 is None:
        raise click.ClickException(f"the testnet in {directory} runs without an L1")
    block_time_s = net.l1.spec.block_time_s
    lag = measure_l1_lag([node.log_path for node in net.nodes if node.log_path.exists()])
    if lag.heights == 0:
        raise click.ClickException("no posting found in the node logs (did the run post?)")
    median, p90 = lag.percentile(0.5), lag.percentile(0.9)
    assert median is not None and p90 is not None
    report = {
        "benchmark": "l1-lag",
        "postings": lag.postings,
        "heights": lag.heights,
        "l1_block_time_s": block_time_s,
        "lag_s": {"p50": round(median, 3), "p90": round(p90, 3), "max": round(max(lag.lags_s), 3)},
        "lag_l1_blocks": {
            "p50": round(median / block_time_s, 2),
            "p90": round(p90 / block_time_s, 2),
        },
        "gas_per_posting": {"min": min(lag.gas), "max": max(lag.gas)},
    }
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(
        f"{lag.postings} postings covering {lag.heights} heights; commit to posted "
        f"p50 {median:.1f} s ({median / block_time_s:.1f} L1 blocks), p90 {p90:.1f} s "
        f"({p90 / block_time_s:.1f} L1 blocks), max {max(lag.lags_s):.1f} s; "
        f"gas per posting {min(lag.gas):,}..{max(lag.gas):,}"
    )


@bench.command("tdh2")
@click.option(
    "--shareholders",
    "-n",
    "sizes",
    type=click.IntRange(min=1, max=1024),
    multiple=True,
    default=(4, 16),
    show_default=True,
    help="Number of key shareholders (repeatable); t is f+1 with f = (n-1)//3.",
)
@click.option(
    "--block-size",
    type=click.IntRange(min=1, max=16_384),
    default=100,
    show_default=True,
    help="Ciphertexts one aggregated share message covers.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of keys and nonces.")
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Time this many runs of each operation and report the fastest.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per size.")
def tdh2(sizes: tuple[int, ...], block_size: int, seed: int, repeat: int, as_json: bool) -> None:
    """Time the encrypted mempool's threshold cryptography, in microseconds.

    For each n, deals a t-of-n TDH2 key (t = f+1) from --seed and times one
    core doing: encrypt, verify_ciphertext, share (a decryption share, after
    checking the ciphertext), verify_share, the aggregated share message and
    its verification per ciphertext at --block-size ciphertexts, combine
    (verifying t shares), combine_verified (interpolation and AEAD alone),
    decrypt_per_ct (t - 1 aggregated verifications plus combine_verified: one
    node's cost per ciphertext of a block), and the threshold coin.

    Example: seqnet bench tdh2 -n 4 -n 16 --block-size 100 --json
    """
    from sequencer_net.cli.bench_tdh2 import bench_tdh2
    from sequencer_net.fairness.tdh2 import max_faults

    for n in sizes:
        report = bench_tdh2(n, max_faults(n) + 1, block_size, seed, repeat)
        if as_json:
            click.echo(json.dumps({"benchmark": "tdh2", **report}))
            continue
        click.echo(f"n={n} t={report['t']} block_size={block_size} seed={seed} (microseconds)")
        for name, value in report.items():
            if name.endswith("_us"):
                click.echo(f"  {name[:-3] + ':':<28}{value:>10.1f}")


@bench.command("encrypted")
@click.option(
    "--rate",
    "rates",
    type=click.FloatRange(min=0, min_open=True),
    multiple=True,
    default=(50.0, 100.0),
    show_default=True,
    help="Rollup transactions per second offered; repeat for several rates.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1.0, max=600.0),
    default=20.0,
    show_default=True,
    help="Seconds of load per run.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Rounds of runs; each runs every rate plain and encrypted (plain first in odd rounds).",
)
@click.option(
    "--validators",
    "-n",
    type=click.IntRange(1, 16),
    default=4,
    show_default=True,
    help="Validators of each testnet (all on this machine).",
)
@click.option(
    "--base-port",
    type=click.IntRange(1024, 65000),
    default=27100,
    show_default=True,
    help="Ports of the testnets (as `testnet up --base-port`).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".seqnet-bench-encrypted"),
    show_default=True,
    help="Directory of each run's testnet (deleted after the run).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
def encrypted(
    rates: tuple[float, ...],
    duration: float,
    rounds: int,
    validators: int,
    base_port: int,
    directory: Path,
    as_json: bool,
) -> None:
    """Committed tx/s and latency of plain vs 100% encrypted load, side by side.

    Runs --rounds rounds of fresh --no-l1 testnets: for each --rate one
    under `seqnet load --mix rollup`, one under the same load with
    --encrypt, in turn (plain first in odd rounds, encrypted first in even
    ones), and prints every run (with where its blocks' time after commit
    went, and its own batches' steps from arrival to execution), the medians
    per rate, the latency encryption adds at
    the highest rate both kinds kept up with, and the highest rate each kept
    up with (details in sequencer_net/cli/bench_encrypted.py).

    Example: seqnet bench encrypted --rate 50 --rate 100 --duration 20 --rounds 3
    """
    from sequencer_net.cli.bench_encrypted import BenchRunFailed, bench_encrypted

    def echo(text: str) -> None:
        click.echo(text, err=as_json)

    try:
        report = bench_encrypted(
            rates=sorted(set(rates)),
            duration=duration,
            rounds=rounds,
            validators=validators,
            base_port=base_port,
            directory=directory,
            echo=echo,
        )
    except BenchRunFailed as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report))
        return
    for rate, summary in report["by_rate"].items():
        for mode, median in summary["median"].items():
            kept_up = summary.get("sustained", {}).get(mode)
            click.echo(
                f"{rate} tx/s median {mode:<9} committed {median['committed_tps']:.1f} tx/s"
                f"{'' if kept_up else ' (not kept up)'}, "
                f"p50 {median['p50_ms']:.0f} ms, p99 {median['p99_ms']:.0f} ms"
            )
        if "tps_ratio" in summary:
            click.echo(
                f"{rate} tx/s encrypted/plain throughput {summary['tps_ratio']:.0%}, "
                f"p50 added {summary['added_p50_ms']:+.0f} ms, "
                f"p99 added {summary['added_p99_ms']:+.0f} ms"
            )
    if "at_rate" in report:
        click.echo(
            f"at {report['at_rate']:g} tx/s (highest rate both kept up with): "
            f"p50 added {report['added_p50_ms']:+.0f} ms, "
            f"throughput ratio {report['tps_ratio']:.0%}"
        )
    highest = report["max_sustained_tps"]
    click.echo(
        f"highest rate kept up with: plain {highest['plain']}, encrypted {highest['encrypted']}"
        + (
            f" (ratio {report['sustained_rate_ratio']:.0%})"
            if "sustained_rate_ratio" in report
            else ""
        )
    )


@bench.command("subscribers")
@click.option(
    "--validators",
    "-n",
    type=click.IntRange(1, 16),
    default=4,
    show_default=True,
    help="Validators in the benchmark network (all on this machine).",
)
@click.option(
    "--subscribers",
    type=click.IntRange(1, 5_000),
    default=100,
    show_default=True,
    help="Block subscribers on node 0 in the second phase (namespaces 1-4 in turn).",
)
@click.option(
    "--rate",
    type=click.IntRange(1, 100_000),
    default=600,
    show_default=True,
    help="Rollup transactions per second offered in each phase.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=1.0, max=600.0),
    default=15.0,
    show_default=True,
    help="Seconds of load per phase.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**32 - 1),
    default=0,
    show_default=True,
    help="Seed of accounts and payloads.",
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="Pairs of phases (without, then with subscribers) on the same network; "
    "the cost is the median over them.",
)
@click.option(
    "--order",
    type=click.Choice(["later", "inline"]),
    default="later",
    show_default=True,
    help="What the subscribers ask for: each block as soon as its inclusion is provable, "
    "its order in a message of its own when not known yet (later), or each block "
    "message with its order (inline).",
)
@click.option("--keep", is_flag=True, help="Keep the network's directory (logs, data).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def subscribers(
    validators: int,
    subscribers: int,
    rate: int,
    seconds: float,
    seed: int,
    rounds: int,
    order: str,
    keep: bool,
    as_json: bool,
) -> None:
    """What block subscribers cost a validator, in one run.

    Starts a fresh network on 127.0.0.1, offers --rate tx/s of rollup load for
    --seconds with no subscriber, then again with --subscribers WebSocket
    subscribers on node 0 (in a separate client process), and reports for both
    committed tx/s, each validator's CPU and node 0's CPU per committed
    transaction; for the second also the client process's CPU, the time from
    node 0's consensus commit of a block to each subscriber's receipt of the
    block and of its order, and from node 0's execution of it to the block's
    receipt (p50/p99/max, over the heights decided once every subscriber was
    connected), and whether every subscriber got every height's
    block and order once, in order. Everything started is stopped at the end.

    Example: seqnet bench subscribers --subscribers 100 --rate 600 --seconds 15 --json
    """
    from sequencer_net.cli.bench_network import sigterm_as_sigint
    from sequencer_net.cli.bench_subscribers import run_subscriber_bench, summary_text

    with sigterm_as_sigint():
        report = run_subscriber_bench(
            validators=validators,
            subscribers=subscribers,
            rate=rate,
            seconds=seconds,
            seed=seed,
            echo=lambda text: click.echo(text, err=True),
            keep=keep,
            rounds=rounds,
            order=order,
        )
    click.echo(json.dumps(report) if as_json else summary_text(report))
