"""As leader, proposes two different valid blocks for the same view, one to each
half of the validators, and finalizes each of them once it sees it notarized."""

from __future__ import annotations

from consensus.messages import (
    Block,
    Certificate,
    Message,
    Proposal,
    VoteKind,
    encode_message,
)
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing
from consensus.sim.node import VALID_PAYLOAD_PREFIX


class Equivocator(Behaviour):
    name = "equivocator"

    def __init__(self) -> None:
        self.equivocated: set[int] = set()  # views in which it proposed twins

    def incoming(self, node: ByzantineNode, message: Message) -> Outgoing:
        if (
            isinstance(message, Certificate)
            and message.kind == VoteKind.NOTARIZE
            and message.view in self.equivocated
        ):
            vote = node.sign_vote(VoteKind.FINALIZE, message.view, message.height, message.block)
            return [(None, encode_message(vote))]
        return []

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        if not isinstance(message, Proposal) or to is not None:
            return [(to, encode_message(message))]
        block = message.block
        twin_block = Block(
            view=block.view,
            height=block.height,
            parent=block.parent,
            proposer=block.proposer,
            payload=VALID_PAYLOAD_PREFIX + node.rng.randbytes(16),
        )
        twin_signature = node.sign_vote(
            VoteKind.NOTARIZE, block.view, block.height, twin_block.digest()
        ).signature
        twin = Proposal(
            block=twin_block,
            signature=twin_signature,
            parent=message.parent,
            skipped=message.skipped,
        )
        self.equivocated.add(block.view)
        peers = node.peers()
        node.rng.shuffle(peers)
        half = len(peers) // 2
        out: Outgoing = [(p, encode_message(message)) for p in peers[:half]]
        out += [(p, encode_message(twin)) for p in peers[half:]]
        return out
