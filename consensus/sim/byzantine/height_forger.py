"""As leader, re-attaches its parent's certificate with the height changed and
proposes a block at that forged height on the real parent. An honest voter must
see that the certificate's signatures do not cover the forged height and refuse
to vote; before heights were bound to blocks, this halted the chain."""

from __future__ import annotations

from consensus.limits import U64_MAX
from consensus.messages import Block, Certificate, Message, Proposal, VoteKind, encode_message
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing


class HeightForger(Behaviour):
    name = "height-forger"

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        if not isinstance(message, Proposal) or message.parent is None:
            return [(to, encode_message(message))]
        parent = message.parent
        forged_height = node.rng.choice([parent.height + 1000, parent.height + 7, U64_MAX - 1])
        forged_parent = Certificate(
            kind=parent.kind,
            view=parent.view,
            height=forged_height,
            block=parent.block,
            signers=parent.signers,
            signatures=parent.signatures,
        )
        old = message.block
        block = Block(old.view, forged_height + 1, old.parent, old.proposer, old.payload)
        signature = node.sign_vote(
            VoteKind.NOTARIZE, block.view, block.height, block.digest()
        ).signature
        forged = Proposal(block, signature, forged_parent, message.skipped)
        return [(to, encode_message(forged))]
