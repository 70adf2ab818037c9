"""The perturbation schedule is a pure function of elapsed time."""

from __future__ import annotations

from sequencer_net.testnet.manifest import Perturbation, PerturbationAction, parse_manifest
from sequencer_net.testnet.schedule import next_perturbation_at, perturbations_due

KILL, RESTART = PerturbationAction.KILL, PerturbationAction.RESTART

SCHEDULE = parse_manifest(
    """
    [[perturbation]]
    at_s = 0
    action = "pause"
    node = 3
    [[perturbation]]
    at_s = 10
    action = "kill"
    node = 2
    [[perturbation]]
    at_s = 10
    action = "resume"
    node = 3
    [[perturbation]]
    at_s = 20.5
    action = "restart"
    node = 2
    """
).perturbations


def test_nothing_is_due_before_its_time() -> None:
    assert perturbations_due(SCHEDULE, 1, 9.999) == ([], 1)


def test_a_perturbation_at_zero_fires_at_the_start() -> None:
    due, applied = perturbations_due(SCHEDULE, 0, 0.0)
    assert [p.action for p in due] == [PerturbationAction.PAUSE] and applied == 1


def test_same_instant_fires_together_in_manifest_order() -> None:
    due, applied = perturbations_due(SCHEDULE, 1, 10.0)
    assert [(p.action, p.node) for p in due] == [(KILL, 2), (PerturbationAction.RESUME, 3)]
    assert applied == 3


def test_a_late_tick_fires_everything_overdue_once() -> None:
    due, applied = perturbations_due(SCHEDULE, 0, 100.0)
    assert len(due) == 4 and applied == 4
    assert perturbations_due(SCHEDULE, applied, 200.0) == ([], 4)


def test_replaying_the_same_times_gives_the_same_actions() -> None:
    def replay(times: list[float]) -> list[Perturbation]:
        applied, fired = 0, []
        for t in times:
            due, applied = perturbations_due(SCHEDULE, applied, t)
            fired += due
        return fired

    coarse = replay([0, 15, 30])
    fine = replay([x / 2 for x in range(61)])
    assert coarse == fine == list(SCHEDULE)


def test_next_perturbation_at() -> None:
    assert next_perturbation_at(SCHEDULE, 0) == 0.0
    assert next_perturbation_at(SCHEDULE, 3) == 20.5
    assert next_perturbation_at(SCHEDULE, 4) is None
    assert next_perturbation_at((), 0) is None
    assert perturbations_due((Perturbation(1.0, RESTART, 0),), 0, 0.5) == ([], 0)
