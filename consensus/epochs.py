"""Validator-set epochs: which set signs for which heights, in which domain,
and the proof that an epoch has ended.

An `EpochSchedule` splits the chain's heights into epochs: epoch 0 starts at
height 1 and each later epoch at a strictly higher first height; an epoch ends
at the height before the next one starts (the last epoch has no end). Each
epoch runs its own consensus instance over its own validator set, in its own
signing domain (`epoch_domain_separator`), so no vote or certificate of one
epoch counts in another even where the sets overlap and views restart at 1.

An epoch hands over to the next at its last block. The instance commits that
block (and nothing above it) and emits `EpochEnded` with an `EpochEndProof`:
the finalization that committed it and the empty "tail" blocks between the
certified block and the last block. `verify_epoch_end` checks a proof against
the epoch's validator set alone (docs/consensus.md, "Validator-set epochs").
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.crypto import keccak256
from consensus.encoding import word
from consensus.limits import U64_MAX
from consensus.messages import EpochEndProof, MalformedMessage, VoteKind, check_certificate_shape
from consensus.types import Digest, Height, ValidatorSet
from consensus.verifier import SignatureVerifier

EPOCH_DOMAIN_TAG = keccak256(b"seqnet epoch signing domain")
"""Prefixed to (chain separator, epoch) when deriving an epoch's separator; no
EIP-712 domain hash input starts with it."""


class InvalidSchedule(ValueError):
    """An epoch schedule that breaks a rule (first heights, numbering, bounds)."""


class InvalidEpochEnd(ValueError):
    """An epoch-end proof that does not prove the end of the epoch it names."""


@dataclass(frozen=True, slots=True)
class Epoch:
    number: int
    first_height: Height
    validators: ValidatorSet


@dataclass(frozen=True, slots=True)
class Anchor:
    """What an epoch's instance builds on: the digest and height of the last block
    of the previous epoch (the genesis block, height 0, for epoch 0). It counts
    as view 0 of the epoch."""

    digest: Digest
    height: Height

    def __post_init__(self) -> None:
        if len(self.digest) != 32:
            raise ValueError("an anchor digest is 32 bytes")
        if not 0 <= self.height < U64_MAX:
            raise ValueError("anchor height out of range")


class EpochSchedule:
    """The epochs of a chain, by height. Validated on construction."""

    def __init__(self, epochs: Sequence[Epoch]) -> None:
        if not epochs:
            raise InvalidSchedule("a schedule needs at least one epoch")
        for i, epoch in enumerate(epochs):
            if epoch.number != i:
                raise InvalidSchedule(f"epoch at position {i} is numbered {epoch.number}")
        if epochs[0].first_height != 1:
            raise InvalidSchedule("epoch 0 must start at height 1")
        for before, after in itertools.pairwise(epochs):
            if after.first_height <= before.first_height:
                raise InvalidSchedule(
                    f"epoch {after.number} starts at height {after.first_height}, not above "
                    f"epoch {before.number}'s first height {before.first_height}"
                )
        if epochs[-1].first_height >= U64_MAX:
            raise InvalidSchedule("first heights must stay below 2**63 - 1")
        self.epochs: tuple[Epoch, ...] = tuple(epochs)

    def __len__(self) -> int:
        return len(self.epochs)

    def epoch(self, number: int) -> Epoch:
        if not 0 <= number < len(self.epochs):
            raise KeyError(f"no epoch {number}")
        return self.epochs[number]

    def epoch_of(self, height: int) -> Epoch:
        """The epoch whose heights hold `height` (>= 1)."""
        if height < 1:
            raise ValueError("heights of epochs start at 1")
        low, high = 0, len(self.epochs) - 1
        while low < high:  # the last epoch whose first height is <= height
            mid = (low + high + 1) // 2
            if self.epochs[mid].first_height <= height:
                low = mid
            else:
                high = mid - 1
        return self.epochs[low]

    def validators_for(self, height: int) -> ValidatorSet:
        return self.epoch_of(height).validators

    def last_height(self, number: int) -> Height | None:
        """The last height of epoch `number`; None for the last epoch (unbounded)."""
        self.epoch(number)
        if number + 1 == len(self.epochs):
            return None
        return Height(self.epochs[number + 1].first_height - 1)


def epoch_domain_separator(chain_separator: bytes, epoch: int) -> bytes:
    """The signing domain of `epoch`. Epoch 0 signs in the chain's own domain (so a
    chain that never rotates signs exactly as before); epoch e >= 1 signs in
    keccak(tag || chain separator || uint256 e), distinct for every epoch and
    from every EIP-712 domain separator."""
    if len(chain_separator) != 32:
        raise ValueError("a domain separator is 32 bytes")
    if not 0 <= epoch <= U64_MAX:
        raise ValueError("epoch out of range")
    if epoch == 0:
        return chain_separator
    return keccak256(EPOCH_DOMAIN_TAG + chain_separator + word(epoch))


def verify_epoch_end(
    proof: EpochEndProof,
    *,
    epoch: int,
    last_height: int,
    validators: ValidatorSet,
    verifier: SignatureVerifier,
) -> Digest:
    """The digest of the last block of `epoch` (at `last_height`, from the
    schedule), if `proof` proves it; raises InvalidEpochEnd otherwise.

    Checks, in order: the proof names this epoch; its certificate is a
    finalization at or above `last_height`, signed by a quorum of the epoch's set
    in the epoch's domain (`verifier`); the tail holds exactly the blocks from the
    certified one down to `last_height + 1`, each the parent of the one before,
    every one with an empty payload. The last block is the parent of the lowest
    tail block (the certified block itself when the tail is empty).
    """
    final = proof.finalization
    tail = proof.tail
    if proof.epoch != epoch:
        raise InvalidEpochEnd(f"proof names epoch {proof.epoch}, not {epoch}")
    if proof.last_height != last_height:
        raise InvalidEpochEnd(f"proof names last height {proof.last_height}, not {last_height}")
    try:
        check_certificate_shape(final)
    except MalformedMessage as exc:
        raise InvalidEpochEnd(f"malformed finalization: {exc}") from exc
    if final.kind != VoteKind.FINALIZE:
        raise InvalidEpochEnd("the certificate is not a finalization")
    if final.height < last_height:
        raise InvalidEpochEnd("the finalization is below the epoch's last height")
    if len(tail) != final.height - last_height:
        raise InvalidEpochEnd(
            f"tail has {len(tail)} blocks; heights {last_height + 1}..{final.height} need "
            f"{final.height - last_height}"
        )
    if not verifier.check_certificate(validators, final):
        raise InvalidEpochEnd("the finalization does not verify against the epoch's set")
    if tail and tail[0].view != final.view:
        raise InvalidEpochEnd("the certified tail block has another view")
    expected: bytes = final.block
    height = final.height
    for block in tail:
        if block.payload:
            raise InvalidEpochEnd(f"tail block at height {block.height} carries a payload")
        if block.height != height or block.digest() != expected:
            raise InvalidEpochEnd(f"tail block at height {height} is not on the certified chain")
        expected = block.parent
        height -= 1
    return Digest(expected)
