"""Run attacks over seeds and committee sizes; the registry of attacks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

from . import bad_shares, censor, crash, frontrun, maul, reorder, replay, withhold
from .committee import Committee, make_committee
from .report import AttackReport, SeedOutcome

ATTACKS: dict[str, Callable[[Committee], SeedOutcome]] = {
    "censor": censor.run,
    "reorder": reorder.run,
    "frontrun": frontrun.run,
    "withhold-shares": withhold.run,
    "bad-shares": bad_shares.run,
    "maul": maul.run,
    "replay": replay.run,
    "crash": crash.run,
}
"""Every attack by its command-line name (`seqnet sim --attack NAME`)."""

DEFAULT_SEEDS = 10
"""Seeds per attack and committee size when `--seeds` is not given: all
attacks at n = 4 and n = 7 in well under a minute."""

COMMITTEE_SIZES = (4, 7)


@lru_cache(maxsize=64)
def committee_for(n: int, seed: int) -> Committee:
    return make_committee(n, seed)


def run_attack(
    name: str,
    n: int,
    seeds: Iterable[int],
    on_seed: Callable[[int, SeedOutcome], None] | None = None,
) -> AttackReport:
    """Run attack `name` with n validators (f = (n - 1) // 3 Byzantine) on each seed."""
    attack = ATTACKS[name]
    report = AttackReport(name, n)
    for seed in seeds:
        outcome = attack(committee_for(n, seed))
        report.add(seed, outcome)
        if on_seed is not None:
            on_seed(seed, outcome)
    return report


def merge(reports: Sequence[AttackReport]) -> AttackReport:
    """One attack's reports at several committee sizes, summed (n = 0)."""
    total = AttackReport(reports[0].attack, 0)
    for r in reports:
        total.absorb(r)
    return total
