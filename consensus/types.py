"""Named scalar types and the validator set of the consensus core."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
        """Round-robin leader of a view (docs/consensus.md, "Leaders")."""
        return ValidatorIndex(view % len(self.validators))
