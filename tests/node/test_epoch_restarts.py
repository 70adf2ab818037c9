"""End-to-end: a validator SIGKILLed again and again while a four-validator
network crosses short validator-set epochs resumes in the right epoch each
time (at a boundary too) and never signs twice."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from sequencer_net.home.genesis import LocalEpoch
from tests.node.harness import LocalNetwork

pytestmark = pytest.mark.slow


ROTATION = (
    ((0, 1, 2, 3), (2, 1, 1, 1)),
    ((3, 2, 1, 0), (1, 2, 1, 1)),  # the order changes too: leaders and indices move
    ((0, 1, 2, 3), (1, 1, 1, 2)),
    ((3, 2, 1, 0), (2, 1, 1, 1)),
    ((0, 1, 2, 3), (1, 1, 1, 1)),
)
"""Epochs 1-5 (members in index order, weights): validator 1 has weight 1 in each."""


def test_a_validator_killed_again_and_again_across_short_epochs_never_double_signs(
    tmp_path: Path,
) -> None:
    """Epochs of four heights; validator 1 (weight 1 in every epoch, so the others
    stay a quorum) is SIGKILLed four times, at boundaries too. It resumes in the
    right epoch every time, and no peer ever holds evidence of a double vote."""
    rng = random.Random(20261203)
    epochs = tuple(
        LocalEpoch(1 + 4 * k, members, weights=weights)
        for k, (members, weights) in enumerate(ROTATION, start=1)
    )
    net = LocalNetwork.create(tmp_path, n=4, view_timeout_ms=600, epochs=epochs)
    victim = 1
    try:
        net.start_all()
        net.wait_height([0, 1, 2, 3], 2)
        for _ in range(4):
            time.sleep(rng.uniform(0.2, 1.5))
            net.kill(victim)
            net.start(victim)
            net.wait_for("victim answers", lambda: net.status(victim) is not None, 30)
        last_first = epochs[-1].first_height
        net.wait_height([0, 1, 2, 3], last_first + 3, timeout=90)
        for i in range(4):
            status = net.status(i)
            assert status is not None and status["epoch"] == len(epochs), status
            assert net.metric(i, "seqnet_equivocation_evidence") == 0
        net.assert_agree([0, 1, 2, 3], last_first + 3)
    finally:
        net.close()
