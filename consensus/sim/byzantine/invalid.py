"""Sends what an honest validator never would: garbage and oversized bytes, votes
with broken signatures, signed proposals with a wrong height or an invalid
payload, proposals in views it does not lead."""

from __future__ import annotations

from consensus.limits import MAX_MESSAGE_BYTES
from consensus.messages import Block, Message, Proposal, Vote, VoteKind, encode_message
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing


class InvalidSender(Behaviour):
    name = "invalid"

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        rng = node.rng
        roll = rng.randrange(30)  # oversized bytes are costly: rarer than the rest
        if roll in (0, 5, 6):
            return [(to, rng.randbytes(rng.randint(0, 200)))]
        if roll == 1:
            return [(to, b"\x93" + bytes(MAX_MESSAGE_BYTES))]
        if roll in (2, 7, 8) and isinstance(message, Vote):
            broken = bytearray(message.signature)
            broken[rng.randrange(64)] ^= 0xFF
            forged = Vote(
                kind=message.kind,
                view=message.view,
                height=message.height,
                block=message.block,
                signer=message.signer,
                signature=bytes(broken),
            )
            return [(to, encode_message(forged))]
        if roll in (3, 9, 10) and isinstance(message, Proposal):
            return [(to, encode_message(self._bad_proposal(node, message)))]
        if roll in (4, 11) and node.core is not None:
            return [(to, encode_message(message)), (None, self._unled_proposal(node))]
        return [(to, encode_message(message))]

    def _bad_proposal(self, node: ByzantineNode, proposal: Proposal) -> Proposal:
        """Correctly signed by the leader, yet invalid: bad payload or bad height."""
        block = proposal.block
        if node.rng.random() < 0.5:
            bad = Block(block.view, block.height, block.parent, block.proposer, b"bad payload")
        else:
            bad = Block(block.view, block.height + 1, block.parent, block.proposer, block.payload)
        signature = node.sign_vote(VoteKind.NOTARIZE, bad.view, bad.height, bad.digest()).signature
        return Proposal(bad, signature, proposal.parent, proposal.skipped)

    def _unled_proposal(self, node: ByzantineNode) -> bytes:
        assert node.core is not None
        view = node.core.view
        block = Block(view, 1, node.genesis.digest(), node.index, b"ok-not-my-turn")
        signature = node.sign_vote(VoteKind.NOTARIZE, view, 1, block.digest()).signature
        return encode_message(Proposal(block, signature, None, []))
