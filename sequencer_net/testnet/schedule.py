"""When perturbations fire: a pure function of elapsed time.

The runner keeps one integer, how many perturbations it has applied, and asks
`perturbations_due` what to do now; time enters only as an argument, so the
schedule is tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Sequence

from sequencer_net.testnet.manifest import Perturbation


def perturbations_due(
    perturbations: Sequence[Perturbation], applied: int, elapsed_s: float
) -> tuple[list[Perturbation], int]:
    """The perturbations to apply at `elapsed_s`, and the new applied count.

    `perturbations` is sorted by `at_s` (as `parse_manifest` returns them); one
    fires once `elapsed_s >= at_s`. Those at the same instant come out in
    manifest order; several overdue ones (a slow tick) come out together.
    """
    end = applied
    while end < len(perturbations) and perturbations[end].at_s <= elapsed_s:
        end += 1
    return list(perturbations[applied:end]), end


def next_perturbation_at(perturbations: Sequence[Perturbation], applied: int) -> float | None:
    """Elapsed seconds at which the next perturbation fires, or None when all have."""
    if applied >= len(perturbations):
        return None
    return perturbations[applied].at_s
