"""Run the simulator over many seeds (optionally in parallel) and summarise."""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from consensus.sim.simulator import (
    SeedResult,
    SimParams,
    measure_good_case,
    run_seed,
    sim_domain,
)
from consensus.verifier import SignatureVerifier

_verifier: SignatureVerifier | None = None


def _run_one(params: SimParams, seed: int) -> SeedResult:
    """Run one seed; an exception inside the run is itself a reported failure."""
    global _verifier
    if _verifier is None:  # one memo per worker process, reused across seeds
        _verifier = SignatureVerifier(sim_domain().separator())
    try:
        return run_seed(params, seed, _verifier)
    except Exception as exc:
        lines = traceback.format_exception_only(type(exc), exc)
        return SeedResult(seed, [f"crash: {''.join(lines).strip()}"], 0, None, 0, 0, 0)


def _run_star(args: tuple[SimParams, int]) -> SeedResult:
    return _run_one(*args)


def iterate_seeds(params: SimParams, seeds: Iterable[int], jobs: int) -> Iterator[SeedResult]:
    work = [(params, s) for s in seeds]
    if jobs <= 1 or len(work) <= 1:
        for item in work:
            yield _run_star(item)
        return
    context = multiprocessing.get_context("fork")
    with context.Pool(jobs) as pool:
        yield from pool.imap_unordered(_run_star, work, chunksize=4)


@dataclass
class Summary:
    validators: int
    byzantine: int
    seeds: int = 0
    failed_seeds: list[int] = field(default_factory=list)
    violations: int = 0
    committed_blocks: int = 0
    good_case_commit_delays: float = 0.0
    max_recovery_timeouts: float = 0.0
    liveness_bound_timeouts: float = 0
    """The bound with no timeout backed off at the heal (f + 3 after chaos)."""
    max_level_at_heal: int = 0
    max_recovery_share: float = 0.0
    """The worst seed's recovery as a share of its own bound (which grows with the
    backoff level its honest validators had at the heal); above 1 is a violation."""
    max_messages_per_block: float = 0.0
    evidence: int = 0
    malformed_rejected: int = 0
    messages: int = 0
    elapsed_s: float = 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "validators": self.validators,
            "byzantine": self.byzantine,
            "seeds": self.seeds,
            "violations": self.violations,
            "failed_seeds": sorted(self.failed_seeds),
            "committed_blocks": self.committed_blocks,
            "good_case_commit_delays": self.good_case_commit_delays,
            "max_recovery_timeouts": round(self.max_recovery_timeouts, 3),
            "liveness_bound_timeouts": round(self.liveness_bound_timeouts, 3),
            "max_level_at_heal": self.max_level_at_heal,
            "max_recovery_share_of_bound": round(self.max_recovery_share, 3),
            "max_messages_per_block_per_n2": self.max_messages_per_block,
            "evidence_reported": self.evidence,
            "malformed_rejected": self.malformed_rejected,
            "messages": self.messages,
            "elapsed_s": round(self.elapsed_s, 2),
        }


def run_many(
    params: SimParams,
    seeds: Iterable[int],
    jobs: int = 1,
    on_result: Callable[[SeedResult], None] | None = None,
) -> Summary:
    started = time.perf_counter()
    summary = Summary(params.validators, params.byzantine)
    summary.liveness_bound_timeouts = params.liveness_bound()
    summary.good_case_commit_delays = measure_good_case(params.validators).commit_delays
    for result in iterate_seeds(params, seeds, jobs):
        summary.seeds += 1
        summary.committed_blocks += result.committed_height
        summary.evidence += result.evidence
        summary.malformed_rejected += result.malformed
        summary.messages += result.messages
        summary.max_messages_per_block = max(
            summary.max_messages_per_block, result.messages_per_block
        )
        summary.max_level_at_heal = max(summary.max_level_at_heal, result.level_at_heal)
        if result.recovery_timeouts is not None:
            summary.max_recovery_timeouts = max(
                summary.max_recovery_timeouts, result.recovery_timeouts
            )
            share = result.recovery_timeouts / params.liveness_bound(result.level_at_heal)
            summary.max_recovery_share = max(summary.max_recovery_share, share)
        if result.violations:
            summary.failed_seeds.append(result.seed)
            summary.violations += len(result.violations)
        if on_result is not None:
            on_result(result)
    summary.elapsed_s = time.perf_counter() - started
    return summary
