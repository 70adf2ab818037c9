"""What the benchmark prints: the machine, the code, a step line, the summary."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[3]

REQUIRED_KEYS = (
    "tps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "blocks_per_s",
    "view_changes",
    "cpu_per_node",
    "verify_limit_tps",
    "ratio_to_limit",
    "offered_rate",
    "mix",
    "validators",
    "machine",
    "git_commit",
)
"""Keys `seqnet bench --json` always prints (a number may be null: never faked)."""


def cpu_model(cpuinfo: str | None = None) -> str | None:
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


def load_average() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_average_at_start": load_average(),
        "kernel": os.uname().release,
    }


def git_commit(root: Path = REPO_ROOT) -> dict[str, Any]:
    """{"commit": sha or None, "dirty": whether the tree has uncommitted changes}."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", "-C", str(root), *args],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f}"


def step_line(number: int, validators: int, step: dict[str, Any]) -> str:
    verdict = "sustained" if step["sustained"] else "NOT sustained"
    line = (
        f"  step {number} n={validators} {step['offered_rate']:>8.0f} tx/s offered: "
        f"{step['tps']:>8.1f} committed, p50 {_ms(step['p50_ms'])} ms, "
        f"p99 {_ms(step['p99_ms'])} ms, {step['blocks_per_s']:.1f} blocks/s, "
        f"view changes {step['view_changes']}, client cpu {step['client_cpu']:.2f} -> {verdict}"
    )
    if step["reasons"]:
        line += "\n      " + "; ".join(step["reasons"])
    return line


def _event_delay(delay: dict[str, Any] | None) -> str:
    """Node 0's consensus event delay over the window, as bucket bounds."""
    if delay is None:
        return "- (not exported by the node)"
    if not delay["count"]:
        return "no consensus messages in the window"

    def bound(ms: float | None) -> str:
        return "> 1 s" if ms is None else f"<= {ms:g} ms"

    return (
        f"p50 {bound(delay['p50_le_ms'])}, p99 {bound(delay['p99_le_ms'])}, "
        f"max {bound(delay['max_le_ms'])} ({delay['count']} messages, node 0)"
    )


def _gc_pauses(pauses: dict[str, Any] | None) -> str:
    """The nodes' garbage collections over the window, summed over the nodes."""
    if pauses is None:
        return "- (not exported by the nodes)"
    parts = []
    for generation, numbers in pauses.items():
        largest = numbers["max_le_ms"]
        worst = (
            ""
            if not any(numbers["count"])
            else (", max > 1 s" if largest is None else f", max <= {largest:g} ms")
        )
        parts.append(
            f"{generation} {sum(numbers['count'])}: {sum(numbers['total_ms']):.0f} ms "
            f"(cpu {sum(numbers['cpu_ms']):.0f} ms{worst})"
        )
    return "; ".join(parts) + " (all nodes)"


def network_lines(title: str, result: dict[str, Any]) -> list[str]:
    cpu = ", ".join(f"{c:.2f}" for c in result["cpu_per_node"])
    if result["mode"] == "fixed":
        verdict = "sustained" if result["sustained"] else "NOT sustained"
        what = f"{result['offered_rate']:g} tx/s offered ({verdict})"
    elif result.get("max_sustained_rate") is not None:
        what = f"highest sustained rate {result['max_sustained_rate']:g} tx/s"
    else:
        what = f"no rate sustained (numbers of the lowest, {result['offered_rate']:g} tx/s)"
    lines = [
        f"{title}: {what}",
        f"  committed and executed   {result['tps']} tx/s",
        f"  submit -> commit         p50 {_ms(result['p50_ms'])} ms, "
        f"p90 {_ms(result['p90_ms'])} ms, p99 {_ms(result['p99_ms'])} ms",
        f"  blocks/s                 {result['blocks_per_s']}",
        f"  view changes             {result['view_changes']} ({result['view_changes_source']})",
        f"  consensus event delay    {_event_delay(result.get('consensus_event_delay'))}",
        f"  gc collections           {_gc_pauses(result.get('gc_pauses'))}",
        f"  cpu per node (s/s)       {cpu}; client {result['client_cpu']}",
        f"  verify limit             {result['verify_limit_tps']} tx/s for "
        f"{result['validators']} validator(s); ratio {result['ratio_to_limit']}",
    ]
    if result.get("delay_multiples"):
        m = result["delay_multiples"]
        lines.append(
            f"  in one-way delays        p50 {m['p50']}x, p99 {m['p99']}x "
            f"({result['wan_delay_ms']:g} ms)"
        )
    return lines


def summary_text(report: dict[str, Any]) -> str:
    lines = network_lines(f"{report['validators']} validators, {report['mix']} mix", report)
    baseline = report.get("baseline")
    if baseline is not None:
        lines += network_lines("1 validator alone (baseline)", baseline)
        cost = report["decentralization_cost"]
        lines.append(
            f"cost of decentralization: {report['validators']} validators commit "
            f"{cost['tps_ratio']}x the tx/s of one alone; p50 latency {cost['p50_ratio']}x, "
            f"p99 {cost['p99_ratio']}x"
        )
    m = report["machine"]
    lines.append(
        f"machine: {m['cores']} cores ({m['cpu_model']}), load average at start "
        f"{m['load_average_at_start']}; code {report['git_commit']}"
        + (" (with uncommitted changes)" if report.get("git_dirty") else "")
    )
    return "\n".join(lines)
