"""`seqnet bench encrypted`: the same testnet under plain and under 100% encrypted load.

Each run starts a fresh local testnet without load or L1 (what `seqnet
testnet up --no-load --no-l1` starts, its nodes getting SIGTERM if the
benchmark dies), runs `seqnet load --mix rollup` on it at one rate, plain or
with `--encrypt`, reads the nodes' logs, and stops it and deletes it. For
every round, every rate is run plain and encrypted side by side, plain first
in odd rounds and encrypted first in even ones
(`run_order`), so that a machine whose speed drifts (other work on it)
affects both kinds alike and favours neither; every run is reported, and
the summary compares the medians per rate.

The load figures are the load generator's (`seqnet load --json`): the
accepted tx/s (`committed_tps`) is what the nodes accepted over the time
from its first submit until its last submit was answered (under the
offered rate when intake answers late), and p50/p99 its sampled
submit-to-commit latency. The load generator runs on the same machine and
seals every encrypted transaction itself (about 0.45 ms each), which the
plain runs do not pay.

A run *keeps up* with (sustains) its rate when what it sent was accepted
(KEPT_UP_ACCEPTED of it) at KEPT_UP_SHARE of the rate or more (intake answered on time),
every sampled transaction was seen committed, and the p99 stayed under
KEPT_UP_P99_MS (no queue grew): only there is the p50 a latency rather than
a queue. A kind sustains a rate when most of its runs
at that rate kept up. Per rate the summary gives the
encrypted/plain throughput ratio (`tps_ratio`) and the p50/p99 latency
encryption adds (`added_p50_ms`, `added_p99_ms`); at the top level the same
for the highest rate both kinds sustained (`at_rate`), and the highest rate
each kind sustained with their ratio (`max_sustained_tps`,
`sustained_rate_ratio`, a lower bound when encrypted sustained every rate
tried).

Per run, the nodes' logs give where a block's time after commit went, over
all validators' blocks holding transactions (p50 in milliseconds, counted
from the block reaching the commit pipeline with its batches): the own
share message made and persisted (`own_ms`), the first peer's message
arrived (`first_peer_ms`, negative when before), the message that completed
t arrived (`completed_ms`), t share messages verified (`ready_ms`), the wait
from the completing message's arrival to its verification
(`verify_wait_ms`), how long execution waited for the opening
(`opening_wait_ms`), commit to executed (`commit_to_executed_ms`); and the
share requests made (`shares_asked`) and the leader builds that waited for
execution (`build_waits`, `build_wait_ms` in all). The rest of the added
latency is before commit, where `certify_ms` is one step of it: an own batch
broadcast until its certificate formed (its peers verified, stored and
acknowledged it), p50 over every node's batches. `nodes_cpu_s` is the CPU time the four node
processes used from their start to the load's end (testnet start-up
included), read from /proc.

`timeline` follows every own batch of the run from its oldest transaction's
arrival to node 0's execution of its block (sequencer_net/testnet/bench/
timeline.py): p50 of the mempool wait before the cut (`mempool_wait_ms`; of
it, `held_ms` came after the batch would have been due without the
load-adaptive hold, and `held_cuts` batches were delayed by it), the cut to
the certificate, the certificate to the last proposal naming the batch, the
proposal to node 0's decision and the decision to node 0's execution.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from sequencer_net.testnet.bench.timeline import read_network, step_medians

MODES = ("plain", "encrypted")

KEPT_UP_SHARE: Final = 0.85
"""The share of the offered rate a run that keeps up is accepted at (over
the time until its last submit was answered): the load paces its submits
and holds at most 16 in flight per node, so intake that answers late holds
the load back below the rate. A submit answered a second or two late (a
synced write stalled by other work on the disk) costs a 15-20 s run up to
an eighth of its rate."""

KEPT_UP_ACCEPTED: Final = 0.99
"""The share of what the load sent that a run that keeps up had accepted: a
rare refusal (an envelope sealed to expire at a height the chain reached
before it was checked) is not a queue."""

KEPT_UP_P99_MS: Final = 3000.0
"""The p99 submit-to-commit latency of a run that keeps up: a second or two
at the rates this machine sustains; a queue that grows through a 15-20 s
load ends several seconds behind."""

PORT_ATTEMPTS: Final = 3
PORT_SHIFT: Final = 20
"""A testnet's ports can be taken for a moment by another program's outgoing
connection (the base ports may lie in the kernel's ephemeral range): the run
then starts on ports this much higher, up to PORT_ATTEMPTS times."""

_SHARES_ROUND = re.compile(
    r"event=shares_round height=(\d+) ciphertexts=(\d+) own_ms=(\d+) ready_ms=(\d+)"
    r" opened_ms=\d+(?: first_peer_ms=(-?\d+|none) completed_ms=(-?\d+))?"
)
_CERTIFIED = re.compile(r"event=batch_certified digest=\w+ round=\d+ certify_ms=(\d+)")
_BUILD_WAITED = re.compile(r"event=build_waited_for_execution .* wait_ms=(\d+)")
_BLOCK_OPENED = re.compile(r"event=block_opened height=(\d+) envelopes=\d+ wait_ms=(\d+)")
_EXECUTED = re.compile(r"event=executed height=(\d+) apply_ms=\d+ since_commit_ms=(\d+)")
_COMMITTED = re.compile(r"event=committed height=(\d+) hash=\w+ txs=(\d+)")


class BenchRunFailed(RuntimeError):
    """A testnet that would not start or a load that printed no report."""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sequencer_net.cli.main", *args]


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def post_commit_breakdown(logs: Iterable[str]) -> dict[str, Any]:
    """p50 over every node's blocks holding transactions of each post-commit
    step (`own_ms`, `ready_ms`, `opening_wait_ms`, `commit_to_executed_ms`),
    the number of such blocks, and the share requests made (`shares_asked`)."""
    steps: dict[str, list[float]] = {
        "own_ms": [],
        "first_peer_ms": [],
        "completed_ms": [],
        "ready_ms": [],
        "verify_wait_ms": [],
        "opening_wait_ms": [],
        "commit_to_executed_ms": [],
        "certify_ms": [],
    }
    blocks = asked = build_waits = build_wait_ms = 0
    for text in logs:
        with_txs = {int(h) for h, txs in _COMMITTED.findall(text) if int(txs) > 0}
        blocks += len(with_txs)
        asked += text.count("event=shares_asked")
        steps["certify_ms"].extend(float(ms) for ms in _CERTIFIED.findall(text))
        for wait in _BUILD_WAITED.findall(text):
            build_waits += 1
            build_wait_ms += int(wait)
        for height, _, own, ready, first, completed in _SHARES_ROUND.findall(text):
            if int(height) in with_txs:
                steps["own_ms"].append(float(own))
                steps["ready_ms"].append(float(ready))
                if first and first != "none":
                    steps["first_peer_ms"].append(float(first))
                if completed:
                    steps["completed_ms"].append(float(completed))
                    steps["verify_wait_ms"].append(float(ready) - float(completed))
        for height, wait in _BLOCK_OPENED.findall(text):
            if int(height) in with_txs:
                steps["opening_wait_ms"].append(float(wait))
        for height, since in _EXECUTED.findall(text):
            if int(height) in with_txs:
                steps["commit_to_executed_ms"].append(float(since))
    return {
        "blocks": blocks,
        **{name: _median(values) for name, values in steps.items()},
        "shares_asked": asked,
        "build_waits": build_waits,
        "build_wait_ms": build_wait_ms,
    }


def nodes_cpu_s(directory: Path) -> float | None:
    """CPU seconds (user and system) the testnet's node processes have used so
    far, from /proc (None where there is no /proc or a node is gone)."""
    try:
        manifest = json.loads((directory / "testnet.json").read_text())
        total_ticks = 0
        for node in manifest["nodes"]:
            fields = Path(f"/proc/{int(node['pid'])}/stat").read_text().rsplit(")", 1)[1].split()
            total_ticks += int(fields[11]) + int(fields[12])  # utime, stime
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return round(total_ticks / os.sysconf("SC_CLK_TCK"), 1)


def _node_logs(directory: Path) -> list[str]:
    return [path.read_text(errors="replace") for path in sorted(directory.glob("*/node.log"))]


def _run_once(
    encrypted: bool,
    rate: float,
    duration: float,
    validators: int,
    base_port: int,
    directory: Path,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One fresh testnet, one load run on it: the load's JSON report and the
    nodes' post-commit breakdown."""
    from sequencer_net.testnet.manifest import Manifest
    from sequencer_net.testnet.network import Testnet, TestnetError, start_testnet

    manifest = Manifest().with_overrides(validators=validators, rate=0.0, l1=False)
    net: Testnet | None = None
    failure = "no attempt"
    for attempt in range(PORT_ATTEMPTS):
        try:
            net = start_testnet(
                directory,
                manifest=manifest,
                base_port=base_port + attempt * PORT_SHIFT,
                fresh=True,
                die_with_starter=True,  # killed, the benchmark takes its nodes with it
            )
            break
        except TestnetError as exc:
            failure = str(exc)
            if "ports already in use" not in failure:
                break
    try:
        if net is None:
            raise BenchRunFailed(f"testnet up failed: {failure[-500:]}")
        load = _cli(
            "load", "--dir", str(directory), "--rate", f"{rate:g}",
            "--duration", f"{duration:g}", "--mix", "rollup", "--json",
        )  # fmt: skip
        if encrypted:
            load.append("--encrypt")
        ran = subprocess.run(load, capture_output=True, text=True, check=False)
        lines = [line for line in ran.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise BenchRunFailed(f"load printed no report: {ran.stderr.strip()[-500:]}")
        report: dict[str, Any] = json.loads(lines[-1])
        breakdown = post_commit_breakdown(_node_logs(directory))
        breakdown["nodes_cpu_s"] = nodes_cpu_s(directory)
        breakdown["timeline"] = step_medians(read_network(directory))
        return report, breakdown
    finally:
        if net is not None:
            net.stop(grace_s=5.0)
        shutil.rmtree(directory, ignore_errors=True)


def run_row(
    mode: str,
    round_: int,
    report: dict[str, Any],
    rate: float | None = None,
    breakdown: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One run as the bench reports it; `sustained` only when the rate is known."""
    latency = report.get("latency_ms", {})
    row: dict[str, Any] = {
        "round": round_,
        "mode": mode,
        "sent": report.get("sent"),
        "accepted": report.get("accepted"),
        "errors": report.get("errors", {}),
        "duration_s": report.get("duration_s"),
        "elapsed_s": report.get("elapsed_s"),
        "committed_tps": report.get("achieved_tps"),
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
        "unconfirmed": latency.get("unconfirmed"),
    }
    if rate is not None:
        row["rate"] = rate
        row["sustained"] = sustained(row, rate)
    if breakdown is not None:
        row["after_commit"] = breakdown
    return row


def sustained(row: dict[str, Any], rate: float) -> bool:
    """The run kept up with `rate`: nearly all it sent (KEPT_UP_ACCEPTED)
    accepted, at KEPT_UP_SHARE of the rate or more, every sampled
    transaction seen committed, the p99 under KEPT_UP_P99_MS."""
    tps, p99 = row.get("committed_tps"), row.get("p99_ms")
    if tps is None or p99 is None or row.get("unconfirmed"):
        return False
    sent, accepted = row.get("sent") or 0, row.get("accepted") or 0
    return bool(
        accepted >= KEPT_UP_ACCEPTED * sent
        and tps >= KEPT_UP_SHARE * rate
        and p99 <= KEPT_UP_P99_MS
    )


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per mode, the encrypted/plain throughput ratio and the p50 gap."""
    medians: dict[str, dict[str, float]] = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode and r["committed_tps"] is not None]
        if mine:
            medians[mode] = {
                key: statistics.median(float(r[key]) for r in mine)
                for key in ("committed_tps", "p50_ms", "p99_ms")
            }
    summary: dict[str, Any] = {"median": medians}
    if len(medians) == 2 and medians["plain"]["committed_tps"] > 0:
        plain, enc = medians["plain"], medians["encrypted"]
        summary["tps_ratio"] = round(enc["committed_tps"] / plain["committed_tps"], 3)
        summary["added_p50_ms"] = round(enc["p50_ms"] - plain["p50_ms"], 1)
        summary["added_p99_ms"] = round(enc["p99_ms"] - plain["p99_ms"], 1)
    sustaining = {
        mode: [r["sustained"] for r in rows if r["mode"] == mode and "sustained" in r]
        for mode in MODES
    }
    for mode, kept_up in sustaining.items():
        if kept_up:
            # Most runs of the kind kept up: one slow run on a busy machine does not count.
            summary.setdefault("sustained", {})[mode] = 2 * sum(kept_up) > len(kept_up)
    return summary


def summarize_rates(rows: list[dict[str, Any]], rates: Sequence[float]) -> dict[str, Any]:
    """`summarize` per rate, and across rates the figures at the highest rate
    both kinds sustained and each kind's highest sustained rate."""
    by_rate = {f"{rate:g}": summarize([r for r in rows if r.get("rate") == rate]) for rate in rates}
    out: dict[str, Any] = {"by_rate": by_rate}
    max_sustained: dict[str, float | None] = {}
    for mode in MODES:
        kept = [rate for rate in rates if by_rate[f"{rate:g}"].get("sustained", {}).get(mode)]
        max_sustained[mode] = max(kept) if kept else None
    out["max_sustained_tps"] = max_sustained
    plain_max, enc_max = max_sustained["plain"], max_sustained["encrypted"]
    if plain_max and enc_max is not None:
        out["sustained_rate_ratio"] = round(enc_max / plain_max, 3)
    both = [
        rate
        for rate in rates
        if all(by_rate[f"{rate:g}"].get("sustained", {}).get(m) for m in MODES)
    ]
    if both:
        at = by_rate[f"{max(both):g}"]
        out["at_rate"] = max(both)
        for key in ("tps_ratio", "added_p50_ms", "added_p99_ms"):
            if key in at:
                out[key] = at[key]
    return out


def run_order(round_: int) -> tuple[str, ...]:
    """The kinds in the order round `round_` (from 1) runs them: plain first in
    odd rounds, encrypted first in even ones."""
    return MODES if round_ % 2 else MODES[::-1]


def _timeline_text(timeline: dict[str, Any]) -> str:
    return ", ".join(f"{key.removesuffix('_ms')} {value}" for key, value in timeline.items())


def bench_encrypted(
    *,
    rates: Sequence[float],
    duration: float,
    rounds: int,
    validators: int,
    base_port: int,
    directory: Path,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for round_ in range(1, rounds + 1):
        for rate in rates:
            for mode in run_order(round_):
                report, breakdown = _run_once(
                    mode == "encrypted", rate, duration, validators, base_port, directory
                )
                row = run_row(mode, round_, report, rate, breakdown)
                rows.append(row)
                echo(
                    f"round {round_} {rate:g} tx/s {mode:<9} committed {row['committed_tps']} "
                    f"tx/s{'' if row['sustained'] else ' (not kept up)'}, p50 {row['p50_ms']} ms, "
                    f"p99 {row['p99_ms']} ms; after commit p50: own {breakdown['own_ms']} ms, "
                    f"completing message in {breakdown['completed_ms']} ms, "
                    f"t verified {breakdown['ready_ms']} ms, executed "
                    f"{breakdown['commit_to_executed_ms']} ms; asked {breakdown['shares_asked']}, "
                    f"builds waited {breakdown['build_waits']}; "
                    f"nodes' CPU {breakdown['nodes_cpu_s']} s"
                )
                echo(f"  own batches, p50 ms: {_timeline_text(breakdown['timeline'])}")
    return {
        "benchmark": "encrypted",
        "rates": list(rates),
        "duration_s": duration,
        "validators": validators,
        "kept_up_share": KEPT_UP_SHARE,
        "kept_up_p99_ms": KEPT_UP_P99_MS,
        "runs": rows,
        **summarize_rates(rows, rates),
    }
