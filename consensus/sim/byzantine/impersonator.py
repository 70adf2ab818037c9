"""Signs votes with its own key but names another validator as the signer."""

from __future__ import annotations

from consensus.messages import Message, Vote, encode_message
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing


class Impersonator(Behaviour):
    name = "impersonator"

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        out: Outgoing = [(to, encode_message(message))]
        if isinstance(message, Vote):
            victim = node.rng.choice(node.peers())
            forged = Vote(
                kind=message.kind,
                view=message.view,
                height=message.height,
                block=message.block,
                signer=victim,
                signature=message.signature,
            )
            out.append((None, encode_message(forged)))
        return out
