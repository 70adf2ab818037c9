"""`seqnet bench encrypted`: the same testnet under plain and under 100% encrypted load.

Each round starts a fresh local testnet (`seqnet testnet up --detach --no-load
--no-l1`), runs `seqnet load --mix rollup` on it at the given rate, plain or
with `--encrypt`, and stops it (`seqnet testnet down --clean`). Rounds
alternate plain, encrypted, plain, encrypted, ... so that a machine whose
speed drifts (other work on it) affects both kinds alike; every run is
reported, and the summary compares the medians.

The figures are the load generator's (`seqnet load --json`): committed tx/s
is what it accepted over the time from its first submit until its last
sampled transaction committed, and p50/p99 its sampled submit-to-commit
latency. The load generator runs on the same machine and seals every
encrypted transaction itself (about 0.45 ms each), which the plain runs do
not pay.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODES = ("plain", "encrypted")


class BenchRunFailed(RuntimeError):
    """A testnet that would not start or a load that printed no report."""


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "sequencer_net.cli.main", *args]


def _run_once(
    encrypted: bool,
    rate: float,
    duration: float,
    validators: int,
    base_port: int,
    directory: Path,
) -> dict[str, Any]:
    """One fresh testnet, one load run on it; the load's JSON report."""
    up = subprocess.run(
        _cli(
            "testnet", "up", "-n", str(validators), "--fresh", "--detach", "--no-load",
            "--no-l1", "--dir", str(directory), "--base-port", str(base_port),
        ),
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    try:
        if up.returncode != 0:
            raise BenchRunFailed(f"testnet up failed: {up.stderr.strip()[-500:]}")
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
        return report
    finally:
        subprocess.run(
            _cli("testnet", "down", "--dir", str(directory), "--grace", "5", "--clean"),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


def run_row(mode: str, round_: int, report: dict[str, Any]) -> dict[str, Any]:
    latency = report.get("latency_ms", {})
    return {
        "round": round_,
        "mode": mode,
        "accepted": report.get("accepted"),
        "committed_tps": report.get("achieved_tps"),
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
        "unconfirmed": latency.get("unconfirmed"),
    }


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
        summary["throughput_ratio"] = round(enc["committed_tps"] / plain["committed_tps"], 3)
        summary["p50_added_ms"] = round(enc["p50_ms"] - plain["p50_ms"], 1)
    return summary


def bench_encrypted(
    *,
    rate: float,
    duration: float,
    rounds: int,
    validators: int,
    base_port: int,
    directory: Path,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for round_ in range(1, rounds + 1):
        for mode in MODES:
            report = _run_once(
                mode == "encrypted", rate, duration, validators, base_port, directory
            )
            row = run_row(mode, round_, report)
            rows.append(row)
            echo(
                f"round {round_} {mode:<9} committed {row['committed_tps']} tx/s, "
                f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms"
            )
    return {
        "benchmark": "encrypted",
        "rate": rate,
        "duration_s": duration,
        "validators": validators,
        "runs": rows,
        **summarize(rows),
    }
