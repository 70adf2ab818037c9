"""Named scalar types and the validator set of the consensus core."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from typing import NewType

from consensus.crypto import ADDRESS_LENGTH, Address

View = NewType("View", int)  # consensus round; strictly increasing, starts at 1
Height = NewType("Height", int)  # position in the chain; genesis is 0
ValidatorIndex = NewType("ValidatorIndex", int)  # position in the validator set
Digest = NewType("Digest", bytes)  # 32-byte keccak-256 digest

ZERO_DIGEST = Digest(bytes(32))


@dataclass(frozen=True, slots=True)
class Validator:
    address: Address
    weight: int  # voting power, > 0


class ValidatorSet:
    """An ordered set of validators with weighted voting power.

    A quorum is any set of validators holding more than two thirds of the total
    weight: `quorum_weight = floor(2 * total / 3) + 1`. With n = 3f + 1 equal
    weights that is 2f + 1. Any two quorums then overlap in more than a third of
    the weight, which is more than the Byzantine validators can hold; every
    safety argument in docs/consensus.md rests on that overlap.
    """

    def __init__(self, validators: Sequence[Validator]) -> None:
        if not validators:
            raise ValueError("a validator set needs at least one validator")
        addresses = [v.address for v in validators]
        if len(set(addresses)) != len(addresses):
            raise ValueError("duplicate validator address")
        for v in validators:
            if len(v.address) != ADDRESS_LENGTH:
                raise ValueError("validator address must be 20 bytes")
            if v.weight <= 0:
                raise ValueError("validator weight must be positive")
        self.validators: tuple[Validator, ...] = tuple(validators)
        self.total_weight: int = sum(v.weight for v in validators)
        self._index: dict[bytes, ValidatorIndex] = {
            v.address: ValidatorIndex(i) for i, v in enumerate(validators)
        }
        self._schedule: tuple[ValidatorIndex, ...] = leader_schedule([v.weight for v in validators])

    def __len__(self) -> int:
        return len(self.validators)

    @property
    def quorum_weight(self) -> int:
        return (2 * self.total_weight) // 3 + 1

    @property
    def max_faulty_weight(self) -> int:
        """The most weight that may be Byzantine with safety intact (f)."""
        return (self.total_weight - 1) // 3

    def index_of(self, address: bytes) -> ValidatorIndex | None:
        return self._index.get(address)

    def address(self, index: ValidatorIndex) -> Address:
        return self.validators[index].address

    def contains(self, index: int) -> bool:
        return 0 <= index < len(self.validators)

    def weight_of(self, signers: Sequence[ValidatorIndex]) -> int:
        return sum(self.validators[i].weight for i in signers)

    def leader(self, view: View) -> ValidatorIndex:
        """The leader of a view: the weighted schedule, repeated (docs/consensus.md,
        "Leaders"). With equal weights this is round robin, `view mod n`."""
        return self._schedule[view % len(self._schedule)]


MAX_SCHEDULE_SLOTS = 4096
"""Length bound of the leader schedule. Weights are reduced by their greatest
common divisor; if their sum is still larger, they are scaled down to about
this many slots (each validator keeps at least one)."""


def leader_schedule(weights: Sequence[int]) -> tuple[ValidatorIndex, ...]:
    """A deterministic leader order in which each validator leads in proportion
    to its weight, spread evenly (stride scheduling).

    Validator i with s_i slots leads at the points (j + 1/2) / s_i of one cycle,
    j = 0 .. s_i - 1; the schedule lists all points in increasing order (exact
    fractions, lower index first on ties). Over one cycle of `sum(slots)` views
    validator i leads exactly s_i times.
    """
    divisor = 0
    for w in weights:
        divisor = gcd(divisor, w)
    slots = [w // divisor for w in weights]
    total = sum(slots)
    if total > MAX_SCHEDULE_SLOTS:
        slots = [max(1, s * MAX_SCHEDULE_SLOTS // total) for s in slots]
    points = [(Fraction(2 * j + 1, 2 * s), i) for i, s in enumerate(slots) for j in range(s)]
    points.sort()
    return tuple(ValidatorIndex(i) for _, i in points)
