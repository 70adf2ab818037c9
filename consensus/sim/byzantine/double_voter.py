"""Votes for everything: a second notarize vote for a made-up block, and both
nullify and finalize in the same view."""

from __future__ import annotations

from consensus.messages import Message, Vote, VoteKind, encode_message
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing
from consensus.types import ZERO_DIGEST


class DoubleVoter(Behaviour):
    name = "double-voter"

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        out: Outgoing = [(to, encode_message(message))]
        if not isinstance(message, Vote):
            return out
        if message.kind == VoteKind.NOTARIZE:
            other = node.sign_vote(
                VoteKind.NOTARIZE, message.view, message.height, node.rng.randbytes(32)
            )
            out.append((node.rng.choice(node.peers()), encode_message(other)))
        elif message.kind == VoteKind.FINALIZE:
            nullify = node.sign_vote(VoteKind.NULLIFY, message.view, 0, ZERO_DIGEST)
            out.append((None, encode_message(nullify)))
        elif message.kind == VoteKind.NULLIFY:
            tally_block = node.rng.randbytes(32)
            finalize = node.sign_vote(VoteKind.FINALIZE, message.view, 1, tally_block)
            out.append((None, encode_message(finalize)))
        return out
