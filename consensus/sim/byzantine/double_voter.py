"""Votes for everything: notarizes every proposal it sees (an equivocating
leader's twins included), finalizes every notarization, nullifies views it
finalized, and adds notarize votes for made-up blocks."""

from __future__ import annotations

from consensus.messages import Certificate, Message, Proposal, Vote, VoteKind, encode_message
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing
from consensus.types import ZERO_DIGEST


class DoubleVoter(Behaviour):
    name = "double-voter"

    def __init__(self) -> None:
        self.signed: set[tuple[int, bytes]] = set()

    def incoming(self, node: ByzantineNode, message: Message) -> Outgoing:
        """Co-sign whatever it hears of: any proposal or notarize vote, any notarization."""
        block: bytes
        if isinstance(message, Proposal):
            kind, view, height, block = (
                VoteKind.NOTARIZE,
                message.block.view,
                message.block.height,
                message.block.digest(),
            )
        elif isinstance(message, Vote) and message.kind == VoteKind.NOTARIZE:
            kind, view, height, block = (
                VoteKind.NOTARIZE,
                message.view,
                message.height,
                message.block,
            )
        elif isinstance(message, Certificate) and message.kind == VoteKind.NOTARIZE:
            kind, view, height, block = (
                VoteKind.FINALIZE,
                message.view,
                message.height,
                message.block,
            )
        else:
            return []
        if (kind, block) in self.signed or len(self.signed) > 100_000:
            return []
        self.signed.add((kind, block))
        return [(None, encode_message(node.sign_vote(kind, view, height, block)))]

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
        return out
