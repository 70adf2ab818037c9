"""The consensus core in the deterministic simulator: many seeds, every Byzantine
behaviour, and mutations that prove the checkers catch real bugs."""

from __future__ import annotations

import pytest

from consensus.messages import Block, Vote, VoteKind
from consensus.sim.byzantine import BEHAVIOURS
from consensus.sim.checkers import Checkers
from consensus.sim.node import payload_is_valid
from consensus.sim.runner import run_many
from consensus.sim.simulator import SimParams, measure_good_case, run_seed, validator_key
from consensus.types import ZERO_DIGEST, Validator, ValidatorSet

JOBS = 2


def _assert_clean(params: SimParams, seeds: range) -> None:
    failures: list[str] = []
    summary = run_many(
        params,
        seeds,
        jobs=JOBS,
        on_result=lambda r: failures.extend(
            f"seed {r.seed} {r.behaviours}: {v}" for v in r.violations
        ),
    )
    assert failures == [], "\n".join(failures[:10])
    assert summary.seeds == len(seeds)
    assert summary.committed_blocks > 10 * len(seeds)  # it made progress, not just no harm
    assert summary.max_recovery_timeouts <= params.liveness_bound()
    assert summary.good_case_commit_delays == 3


def test_500_seeds_four_validators_one_byzantine() -> None:
    _assert_clean(SimParams(validators=4, byzantine=1), range(500))


def test_seven_validators_two_byzantine() -> None:
    _assert_clean(SimParams(validators=7, byzantine=2), range(10_000, 10_040))


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_each_byzantine_behaviour(behaviour: str) -> None:
    _assert_clean(SimParams(validators=4, byzantine=1, behaviours=(behaviour,)), range(20, 32))


def test_equivocation_is_detected_as_evidence() -> None:
    params = SimParams(behaviours=("equivocator",), crashes=False)
    assert sum(run_seed(params, seed).evidence for seed in range(3)) > 0


def test_good_case_commits_three_message_delays_after_the_proposal() -> None:
    for n in (4, 7):
        good = measure_good_case(n)
        assert good.commit_delays == 3
        assert good.blocks >= 20


def test_a_seed_replays_exactly() -> None:
    params = SimParams()
    first, second = run_seed(params, 77), run_seed(params, 77)
    assert first == second
    assert run_seed(params, 78) != first


class _TwoFQuorum(ValidatorSet):
    """Mutation: a quorum of 2f instead of 2f+1."""

    @property
    def quorum_weight(self) -> int:
        return (2 * self.total_weight) // 3


def test_mutation_broken_quorum_is_caught_as_a_safety_violation() -> None:
    params = SimParams(validator_set=_TwoFQuorum, behaviours=("equivocator",))
    violations = [v for seed in range(20) for v in run_seed(params, seed).violations]
    assert any(v.startswith("agreement") for v in violations)


def test_mutation_forgetting_the_safety_record_is_caught_as_double_signing() -> None:
    params = SimParams(byzantine=0, persist_safety=False)
    violations = [v for seed in range(30) for v in run_seed(params, seed).violations]
    assert any(v.startswith("double-sign") for v in violations)


def _checkers() -> tuple[Checkers, ValidatorSet]:
    validators = ValidatorSet([Validator(validator_key(i).address, 1) for i in range(4)])
    return Checkers(validators, {0, 1, 2, 3}, payload_is_valid, lambda: 0), validators


def test_checker_flags_a_double_sign() -> None:
    checkers, _ = _checkers()
    checkers.on_send(1, Vote(VoteKind.NULLIFY, 4, 0, ZERO_DIGEST, 1, b"\x01" * 65))
    assert checkers.violations == []
    checkers.on_send(1, Vote(VoteKind.FINALIZE, 4, 2, b"\x05" * 32, 1, b"\x01" * 65))
    assert checkers.violations == ["double-sign: validator 1 nullified and finalized view 4"]


def test_checker_flags_disagreement_and_invalid_blocks() -> None:
    checkers, _ = _checkers()
    genesis = b"\x00" * 32
    a = Block(1, 1, genesis, 1, b"ok-a")
    b = Block(1, 1, genesis, 1, b"bad")
    checkers.on_commit(0, a, genesis)
    checkers.on_commit(2, b, genesis)
    text = "\n".join(checkers.violations)
    assert "agreement" in text
    assert "never proposed" in text
    assert "invalid payload" in text


def test_late_joiner_catches_up_from_genesis_by_forward_sync() -> None:
    # One validator starts only after 15 s of virtual time (> 64 blocks behind):
    # it must sync forward by height, then agree and keep committing.
    params = SimParams(
        byzantine=0,
        late_joiner=True,
        network_faults=False,
        crashes=False,
        chaos_ms=15_000,
        calm_ms=3_000,
    )
    for seed in range(3):
        result = run_seed(params, seed)
        assert result.violations == []
        assert result.committed_height > 64
