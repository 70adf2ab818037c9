"""A validator's view of the genesis epoch schedule: who is who in each epoch,
which instance to run, and where a restarted node resumes.

The p2p layer numbers the validators once, in genesis order (a "peer"); each
epoch numbers its own set (an "index", what the epoch's consensus instance
speaks). `EpochMembers` maps between the two. A chain whose later epochs
change only weights (every epoch has the same members) is what the node runs
today; `check_supported` refuses a genesis whose epochs add or remove members,
naming the limitation.

`resume_epoch` finds the epoch a node is in from its store alone: it moved to
epoch e + 1 when it stored epoch e's end proof and committed e's last block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from consensus.crypto import Address
from consensus.epochs import Anchor, EpochSchedule, InvalidEpochEnd, verify_epoch_end
from consensus.types import Height, Validator, ValidatorIndex, ValidatorSet
from consensus.verifier import SignatureVerifier
from sequencer_net.home.genesis import Genesis
from sequencer_net.storage.node_store import CorruptStore, NodeStore


class UnsupportedEpochs(ValueError):
    """A genesis schedule the node cannot run yet."""


def check_supported(genesis: Genesis) -> None:
    """Refuse epochs whose member set differs from epoch 0's: validators joining
    or leaving the set are not supported by the node yet (weights may change)."""
    first = {v.address for v in genesis.validators}
    for number in range(1, len(genesis.epochs) + 1):
        members = {v.address for v in genesis.epoch_validators(number)}
        if members != first:
            joining = len(members - first)
            leaving = len(first - members)
            raise UnsupportedEpochs(
                f"genesis epoch {number} changes the validator members ({joining} joining, "
                f"{leaving} leaving): this node runs epochs that change weights only, with "
                f"the same members as epoch 0"
            )


class EpochMembers:
    """Peer numbers (genesis order) <-> each epoch's validator indices."""

    def __init__(self, genesis: Genesis) -> None:
        self._peers = {v.address: i for i, v in enumerate(genesis.validators)}
        self._index: list[dict[int, ValidatorIndex]] = []
        self._peer: list[list[int]] = []
        for number in range(len(genesis.epochs) + 1):
            peers = [self._peers[v.address] for v in genesis.epoch_validators(number)]
            self._peer.append(peers)
            self._index.append({p: ValidatorIndex(i) for i, p in enumerate(peers)})

    def index_of(self, epoch: int, peer: int) -> ValidatorIndex | None:
        """`peer`'s index in `epoch`'s set, or None when it is not a member."""
        return self._index[epoch].get(peer)

    def peer_of(self, epoch: int, index: int) -> int | None:
        peers = self._peer[epoch]
        return peers[index] if 0 <= index < len(peers) else None

    def peers(self, epoch: int) -> list[int]:
        return list(self._peer[epoch])


def weights_in_peer_order(genesis: Genesis, epoch: int) -> ValidatorSet:
    """`epoch`'s voting power laid over the peer numbering: what batch
    acknowledgements and certificates (signed by peer number) count in it."""
    weight = {v.address: v.weight for v in genesis.epoch_validators(epoch)}
    return ValidatorSet(
        [Validator(Address(v.address), weight[v.address]) for v in genesis.validators]
    )


@dataclass(frozen=True)
class EpochPlan:
    """What the consensus driver needs to run a chain of several epochs."""

    schedule: EpochSchedule
    members: EpochMembers
    verifier: Callable[[int], SignatureVerifier]
    """The signer and checker of an epoch's domain."""
    genesis: Anchor
    """Epoch 0's anchor: the genesis block at height 0."""


def resume_epoch(store: NodeStore, plan: EpochPlan) -> tuple[int, Anchor]:
    """The epoch this node is in, and that epoch's anchor, from its store: every
    epoch whose end proof is stored and whose last block is committed is over.
    (An epoch whose proof is stored but whose last commits were lost in a crash
    is resumed: its instance commits them again from the proof.)"""
    height = store.tip()[0]
    epoch, anchor = 0, plan.genesis
    schedule = plan.schedule
    while True:
        last = schedule.last_height(epoch)
        if last is None or height < last:
            return epoch, anchor
        proof = store.epoch_end(epoch)
        if proof is None:
            return epoch, anchor
        try:
            digest = verify_epoch_end(
                proof,
                epoch=epoch,
                last_height=last,
                validators=schedule.epoch(epoch).validators,
                verifier=plan.verifier(epoch),
            )
        except InvalidEpochEnd as exc:
            raise CorruptStore(f"stored end proof of epoch {epoch}: {exc}") from exc
        epoch, anchor = epoch + 1, Anchor(digest, Height(last))
