"""A validator's view of the genesis epoch schedule: who is who in each epoch,
which instance to run, and where a restarted node resumes.

The p2p layer numbers every member of any epoch once, in `Genesis.members()`
order (a "peer"; on a chain whose set never changes, the validator index);
each epoch numbers its own set (an "index", what the epoch's consensus
instance speaks). `EpochMembers` maps between the two. A node runs the
consensus core of each epoch it is a member of and follows the chain (blocks
checked against the epoch's set, its last block by the end proof) through the
epochs it is not a member of.

`resume_epoch` finds the epoch a node is in from its store alone: it moved to
epoch e + 1 when it stored epoch e's end proof and committed e's last block.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from consensus.crypto import Address
from consensus.epochs import Anchor, EpochSchedule, InvalidEpochEnd, verify_epoch_end
from consensus.types import Height, Validator, ValidatorIndex, ValidatorSet
from consensus.verifier import SignatureVerifier
from sequencer_net.home.genesis import Genesis
from sequencer_net.storage.node_store import CorruptStore, NodeStore


class EpochMembers:
    """Peer numbers (genesis order) <-> each epoch's validator indices."""

    def __init__(self, genesis: Genesis) -> None:
        self._peers = {v.address: i for i, v in enumerate(genesis.members())}
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

    def peer_count(self) -> int:
        """Every member of any epoch."""
        return len(self._peers)


class PeerPower(ValidatorSet):
    """One epoch's voting power numbered as the p2p peers are: every member of
    any epoch keeps its peer number, and those outside the epoch hold no power
    and are not `contains`-ed (their acknowledgements, signatures and batches do
    not count in it). Quorums are the epoch's own."""

    def __init__(self, peers: Sequence[Validator], epoch_weights: Mapping[bytes, int]) -> None:
        super().__init__([v for v in peers if epoch_weights.get(v.address, 0) > 0])
        self.validators = tuple(
            Validator(v.address, epoch_weights.get(v.address, 0)) for v in peers
        )
        self._index = {
            v.address: ValidatorIndex(i) for i, v in enumerate(self.validators) if v.weight > 0
        }
        members = [i for i, v in enumerate(self.validators) if v.weight > 0]
        self._schedule = tuple(ValidatorIndex(members[i]) for i in self._schedule)

    def contains(self, index: int) -> bool:
        return 0 <= index < len(self.validators) and self.validators[index].weight > 0


def weights_in_peer_order(genesis: Genesis, epoch: int) -> ValidatorSet:
    """`epoch`'s voting power laid over the peer numbering: what batch
    acknowledgements and certificates (signed by peer number) count in it."""
    weight = {v.address: v.weight for v in genesis.epoch_validators(epoch)}
    peers = [Validator(Address(v.address), 1) for v in genesis.members()]
    if len(weight) == len(peers):
        return ValidatorSet([Validator(v.address, weight[v.address]) for v in peers])
    return PeerPower(peers, weight)


@dataclass(frozen=True)
class EpochPlan:
    """What the consensus driver needs to run a chain of several epochs."""

    schedule: EpochSchedule
    members: EpochMembers
    verifier: Callable[[int], SignatureVerifier]
    """The signer and checker of an epoch's domain."""
    genesis: Anchor
    """Epoch 0's anchor: the genesis block at height 0."""
    me: int | None = None
    """This node's peer number; None: a member of every epoch."""

    def is_member(self, epoch: int) -> bool:
        """Whether this node runs `epoch`'s consensus core (else it follows it)."""
        return self.me is None or self.members.index_of(epoch, self.me) is not None


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
