"""The consensus core in the deterministic simulator: many seeds, every Byzantine
behaviour, and mutations that prove the checkers catch real bugs."""

from __future__ import annotations

import pytest

from consensus.core import ConsensusCore
from consensus.limits import MAX_BLOCKS_PER_RESPONSE, SYNC_GAP
from consensus.messages import Block, Certificate, SyncRequest, Vote, VoteKind
from consensus.sim.byzantine import BEHAVIOURS
from consensus.sim.checkers import Checkers
from consensus.sim.node import payload_is_valid
from consensus.sim.runner import _run_one, run_many
from consensus.sim.simulator import SimParams, measure_good_case, run_seed, validator_key
from consensus.types import ZERO_DIGEST, Validator, ValidatorIndex, ValidatorSet

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
    assert summary.max_recovery_share <= 1
    assert summary.max_recovery_timeouts <= params.liveness_bound(summary.max_level_at_heal)
    assert summary.good_case_commit_delays == 3


def test_400_seeds_four_validators_one_byzantine() -> None:
    _assert_clean(SimParams(validators=4, byzantine=1), range(400))


def test_seven_validators_two_byzantine() -> None:
    _assert_clean(SimParams(validators=7, byzantine=2), range(10_000, 10_040))


def test_ten_validators_three_byzantine() -> None:
    _assert_clean(SimParams(validators=10, byzantine=3), range(20_000, 20_012))


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_each_byzantine_behaviour(behaviour: str) -> None:
    _assert_clean(SimParams(validators=4, byzantine=1, behaviours=(behaviour,)), range(20, 32))


def test_a_network_slower_than_the_timeout_keeps_committing_and_recovers() -> None:
    # 40 s in which every message takes 250 ms against a 400 ms view timeout: the
    # timeouts back off until views complete; the checkers demand commits during
    # the slow period and sustained commits after it.
    params = SimParams(bad_period_ms=40_000, bad_delay_ms=250, calm_ms=8_000)
    _assert_clean(params, range(6))


def test_a_long_bad_period_with_heavy_loss_recovers() -> None:
    params = SimParams(bad_period_ms=60_000, bad_delay_ms=1_500, bad_loss=0.3, calm_ms=8_000)
    _assert_clean(params, range(4))


def test_more_views_skipped_than_any_proposal_carries_or_any_old_cap() -> None:
    # 1,300 s of 2,100 ms delays: above the capped timeout, so every view is
    # nullified (about 300 in a row, more than the old cap of 256); then the
    # network heals and a leader must extend the last notarized block.
    params = SimParams(
        bad_period_ms=1_300_000, bad_delay_ms=2_100, calm_ms=8_000, crashes=False, byzantine=0
    )
    result = run_seed(params, 1)
    assert result.violations == []
    assert result.committed_height > 50


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
    caught = (
        any(v.startswith("agreement") for v in run_seed(params, seed).violations)
        for seed in range(20)
    )
    assert any(caught)  # stops at the first seed that shows it


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


# ---- mutations: each fixed halt, put back, is found by the simulator --------------


class _HeightsNotBound(ConsensusCore):
    """The old tally (by block only) and parent check (by view and block only)."""

    def _maybe_certify(self, kind, vote, votes):  # type: ignore[no-untyped-def]
        if self._holds_certificate_of(kind, vote.view):
            return
        same = sorted((v for v in votes.values() if v.block == vote.block), key=lambda v: v.signer)
        signers = [ValidatorIndex(v.signer) for v in same]
        if self.validators.weight_of(signers) < self.validators.quorum_weight:
            return
        cert = Certificate(
            kind, vote.view, vote.height, vote.block, signers, [v.signature for v in same]
        )
        self._learn_certificate(cert, forward=True)

    def _is_certified(self, cert):  # type: ignore[no-untyped-def]
        held = self._notarizations.get(cert.view)
        return (held is not None and held.block == cert.block) or super()._is_certified(cert)

    def _consider_voting(self, view):  # type: ignore[no-untyped-def]
        self._blind = True  # the old voter did not compare the parent block's height
        try:
            super()._consider_voting(view)
        finally:
            self._blind = False

    def known_block(self, digest):  # type: ignore[no-untyped-def]
        return None if getattr(self, "_blind", False) else super().known_block(digest)


class _FixedTimeouts(ConsensusCore):
    def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.pacemaker.max_level = 0


class _SyncOnlyWhenFarBehind(_FixedTimeouts):
    """The old commit path: more than SYNC_GAP heights behind, only sync forward."""

    def _try_commit(self) -> None:
        target = self._finalization
        if target is not None and target.height - self.committed.height > SYNC_GAP:
            self._fetch(SyncRequest(self.committed.height + 1, MAX_BLOCKS_PER_RESPONSE))
            return
        super()._try_commit()


class _SkipCap(ConsensusCore):
    """The old cap: a leader could justify at most 256 skipped views."""

    def _select_parent(self, view):  # type: ignore[no-untyped-def]
        found, cert = super()._select_parent(view)
        parent_view = 0 if cert is None else cert.view
        if found and view - parent_view - 1 > 256:
            return False, None
        return found, cert


def _violations(params: SimParams, seeds: range) -> list[str]:
    return [v for seed in seeds for v in _run_one(params, seed).violations]


def test_mutation_unbound_heights_is_caught() -> None:
    for behaviour in ("height-forger", "height-liar"):
        params = SimParams(behaviours=(behaviour,), core_class=_HeightsNotBound)
        assert _violations(params, range(6)), behaviour


def test_mutation_fixed_timeouts_is_caught_as_no_progress_on_a_slow_network() -> None:
    params = SimParams(bad_period_ms=40_000, bad_delay_ms=250, core_class=_FixedTimeouts)
    assert any("while every message took" in v for v in _violations(params, range(2)))


def test_mutation_sync_only_when_far_behind_halts_after_a_long_unfinalized_run() -> None:
    params = SimParams(
        bad_period_ms=40_000, bad_delay_ms=250, calm_ms=8_000, core_class=_SyncOnlyWhenFarBehind
    )
    assert any("after the network healed" in v for v in _violations(params, range(3)))


def test_mutation_skip_cap_halts_after_a_long_nullified_run() -> None:
    params = SimParams(
        bad_period_ms=1_300_000,
        bad_delay_ms=2_100,
        calm_ms=8_000,
        crashes=False,
        byzantine=0,
        core_class=_SkipCap,
    )
    assert any("after the network healed" in v for v in _violations(params, range(1, 2)))


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


def test_the_liveness_bound_grows_with_the_backoff_in_force_at_the_heal() -> None:
    params = SimParams(validators=4, byzantine=1)
    assert params.liveness_bound() == 4  # f + 3
    assert params.liveness_bound(1) == 2 * 1.5 + 2  # f + 1 views at 1.5 base timeouts, + 2
    assert params.liveness_bound(2) == 2 * 2.25 + 2
    bounds = [params.liveness_bound(level) for level in range(params.max_backoff_steps + 3)]
    assert bounds == sorted(bounds)
    assert bounds[-1] == params.liveness_bound(params.max_backoff_steps)  # levels are capped
    slow = SimParams(validators=4, byzantine=1, bad_period_ms=10_000, bad_delay_ms=250)
    assert slow.liveness_bound(0) == 2 * slow.max_timeout_factor() + 2


def test_a_heal_with_backed_off_timeouts_gets_the_time_those_timeouts_take() -> None:
    # Seed 3914 of the 10,000-seed run: the honest validators had backed off one
    # level when the network healed, and recovery took 4.36 base timeouts, more
    # than f + 3 = 4 but within f + 1 views at 1.5 base timeouts plus two.
    result = run_seed(SimParams(validators=4, byzantine=1), 3914)
    assert result.level_at_heal >= 1
    assert result.recovery_timeouts is not None
    assert SimParams().liveness_bound() < result.recovery_timeouts
    assert result.recovery_timeouts <= SimParams().liveness_bound(result.level_at_heal)
    assert result.violations == []
