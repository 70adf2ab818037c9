"""`seqnet sim --attack NAME`: the fair-ordering attack suite (sequencer_net/fairness/attacks/)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import click

from sequencer_net.fairness.attacks.report import AttackReport
from sequencer_net.fairness.attacks.runner import ATTACKS, merge, run_attack


def _delay(summary: dict[str, int] | None) -> str:
    return "-" if summary is None else f"{summary['p50']}/{summary['max']}"


def _line(r: AttackReport, label: str) -> str:
    j = r.as_json()
    delay, honest = _delay(j["victim_delay_rounds"]), _delay(j["honest_delay_rounds"])
    verdict = "SUCCEEDED" if r.broken else "defended"
    extra = ""
    if r.baseline_attempts:
        extra = (
            f"  (byzantine-leader rate {r.attack_rate:.3f} vs honest {r.honest_rate:.3f}, "
            f"chance margin {r.advantage_margin():.3f})"
        )
    return (
        f"{r.attack:16} {label:>4}  attempts {r.attempts:5}  success rate "
        f"{r.success_rate:6.3f}  delay p50/max {delay} (honest {honest})  "
        f"identical {'yes' if r.identical else 'NO'}  "
        f"{verdict}{extra}"
    )


def run_attacks(
    names: Sequence[str], sizes: Sequence[int], seeds: Sequence[int], as_json: bool
) -> bool:
    """Run each attack at each committee size over `seeds`; print the summary.
    Returns whether any attack succeeded (or honest results differed)."""
    started = time.monotonic()
    results: dict[str, list[AttackReport]] = {}
    for name in names:
        for n in sizes:
            report = run_attack(name, n, seeds)
            results.setdefault(name, []).append(report)
            if not as_json:
                click.echo(_line(report, f"n={n}"))
                for seed, what in sorted(report.failed_seeds.items()):
                    click.echo(f"  seed {seed}: {what[0]}")
                    click.echo(f"    replay: seqnet sim --attack {name} -n {n} --seed {seed}")
    broken = any(r.broken for reports in results.values() for r in reports)
    if as_json:
        summary = {
            "attacks": {
                name: {
                    **{
                        k: v
                        for k, v in merge(reports).as_json().items()
                        if k not in ("n", "failed_seeds")
                    },
                    "succeeded": any(r.broken for r in reports),
                    "by_n": {str(r.n): r.as_json() for r in reports},
                }
                for name, reports in results.items()
            },
            "seeds": list(seeds),
            "validators": list(sizes),
            "succeeded": broken,
            "elapsed_s": round(time.monotonic() - started, 1),
        }
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        failed = [name for name, reports in results.items() if any(r.broken for r in reports)]
        click.echo(
            f"{len(names)} attacks x n in {list(sizes)} x {len(seeds)} seeds: "
            f"{'succeeded: ' + ', '.join(failed) if failed else 'all defended'}  "
            f"({time.monotonic() - started:.1f} s)"
        )
    return broken


ATTACK_CHOICES = [*ATTACKS, "all"]
