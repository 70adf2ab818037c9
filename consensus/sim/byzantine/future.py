"""Sends correctly signed votes for views far ahead, and certificates for views
that never happened (signed by itself alone)."""

from __future__ import annotations

from consensus.messages import Certificate, Message, VoteKind, encode_message
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing
from consensus.types import ZERO_DIGEST


class Future(Behaviour):
    name = "future"

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        out: Outgoing = [(to, encode_message(message))]
        if node.core is None:
            return out
        ahead = node.core.view + node.rng.choice([2, 10, 1000, 2**40])
        vote = node.sign_vote(VoteKind.NULLIFY, ahead, 0, ZERO_DIGEST)
        out.append((None, encode_message(vote)))
        lone = Certificate(
            kind=VoteKind.NULLIFY,
            view=ahead,
            height=0,
            block=ZERO_DIGEST,
            signers=[node.index],
            signatures=[vote.signature],
        )
        out.append((None, encode_message(lone)))
        return out
