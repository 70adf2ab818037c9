"""The consensus core over a rotating validator set in the deterministic
simulator: 4 -> 5 -> 4 -> 5 validators, joins, a leave, weight changes, one
Byzantine member per epoch, lossy then calm network; and mutations that prove
the epoch checkers catch real bugs."""

from __future__ import annotations

import pytest

from consensus.core import ConsensusCore
from consensus.io import Action, EpochEnded
from consensus.sim.epochs import EpochInstance, EpochSimParams, run_epoch_seed


def test_a_rotating_validator_set_keeps_one_chain_across_epochs() -> None:
    params = EpochSimParams()
    for seed in range(8):
        result = run_epoch_seed(params, seed)
        assert result.violations == [], f"seed {seed} {result.byzantine}: {result.violations}"
        final = len(params.rotation) - 1
        assert set(result.epoch_of_host.values()) == {final}
        assert sorted(result.ended_at) == list(range(final))
        assert min(h for m, h in result.heights.items() if m != 0) > final * params.epoch_length
        assert result.heights[0] == 3 * params.epoch_length  # left after epoch 1, followed


def test_only_silent_byzantine_members_still_end_every_epoch() -> None:
    params = EpochSimParams(behaviours=("withholder",), faulty_ms=5_000, run_ms=20_000)
    for seed in range(100, 102):
        result = run_epoch_seed(params, seed)
        assert result.violations == [], f"seed {seed} {result.byzantine}: {result.violations}"


def test_a_silent_member_that_missed_an_epochs_end_learns_it_from_the_next_epoch() -> None:
    """Seed 1044: machine 1 withholds its votes in epoch 0 and misses its end (the
    proofs sent to it are lost); honest in epoch 1, where it is needed for a
    quorum, it hears the others' epoch-1 messages, asks one of them for epoch 0's
    proof, catches up and lets epoch 1 finish."""
    result = run_epoch_seed(EpochSimParams(), 1044)
    assert result.byzantine[:2] == ["0:1:withholder", "1:4:withholder"]
    assert result.violations == [], result.violations
    assert result.epoch_of_host[1] == 3


# ---- mutations: each puts a bug back and a checker must see it -----------------------------


def _caught(params: EpochSimParams, kind: str, seeds: int = 8) -> bool:
    """Whether some seed (of the first few) shows a violation of `kind`."""
    return any(
        any(v.startswith(kind) for v in run_epoch_seed(params, seed).violations)
        for seed in range(seeds)
    )


def test_mutation_one_signing_domain_for_all_epochs_lets_replayed_votes_count() -> None:
    params = EpochSimParams(single_domain=True, crashes=False)
    assert _caught(params, "replay:")


class _NoTail(ConsensusCore):
    """Treats blocks above the last height as ordinary ones (and commits them)."""

    def _in_tail(self, height: int) -> bool:
        return False


def test_mutation_without_the_tail_an_epoch_commits_past_its_end() -> None:
    assert _caught(EpochSimParams(core_class=_NoTail, crashes=False), "epochs:")


def test_a_crash_between_the_last_commit_and_the_epoch_end_resumes_and_ends_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kill -9 right after the last block of an epoch is committed, before the
    instance's EpochEnded is carried out: on restart the machine is still in that
    epoch, ends it from its stored finalization, and goes on."""
    struck: list[tuple[int, int]] = []
    execute = EpochInstance.execute

    def crash_before_the_end(self: EpochInstance, action: Action) -> None:
        if (
            isinstance(action, EpochEnded)
            and self.host.machine in (1, 2)
            and not any(m == self.host.machine for m, _ in struck)
        ):
            struck.append((self.host.machine, self.epoch))
            host = self.host
            self.crash()
            assert not host.up and host.tip_height == action.height
            host.world.queue.at(host.world.queue.now + 50, host.restart)
            return
        execute(self, action)

    monkeypatch.setattr(EpochInstance, "execute", crash_before_the_end)
    result = run_epoch_seed(EpochSimParams(crashes=False), 7)
    assert sorted(m for m, _ in struck) == [1, 2]
    assert result.violations == [], result.violations
    assert result.restarts == 2 and set(result.epoch_of_host.values()) == {3}


def test_a_machine_down_for_three_epochs_catches_up_through_every_boundary() -> None:
    """Machine 2 (a member of every epoch) is down from 100 ms to 8 s, while the
    others go through epochs 0, 1 and 2; it restarts in epoch 0 and catches up
    epoch by epoch from the proofs and the blocks its peers still serve."""
    params = EpochSimParams(byzantine=False, crashes=False, outage=(2, 100, 8_000))
    result = run_epoch_seed(params, 11)
    assert result.violations == [], result.violations
    assert all(at < 8_000 for at in result.ended_at.values())  # all ended while it was down
    assert result.epoch_of_host[2] == 3 and result.heights[2] >= 35
