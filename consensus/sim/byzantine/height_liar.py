"""Signs its notarize and finalize votes with a wrong height (and now and then the
right one too), so honest validators see votes for the right block naming
another height. Votes are tallied per (view, height, block): the lies never
count towards a certificate, and a lie beside the truth is evidence."""

from __future__ import annotations

from consensus.limits import U64_MAX
from consensus.messages import Message, Vote, VoteKind, encode_message
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing


class HeightLiar(Behaviour):
    name = "height-liar"

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        if not isinstance(message, Vote) or message.kind == VoteKind.NULLIFY:
            return [(to, encode_message(message))]
        lie = node.rng.choice([message.height + 1, message.height + 999, U64_MAX])
        lying = node.sign_vote(VoteKind(message.kind), message.view, lie, message.block)
        out: Outgoing = [(to, encode_message(lying))]
        if node.rng.random() < 0.3:
            out.append((to, encode_message(message)))
        return out
