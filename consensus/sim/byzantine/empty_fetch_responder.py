"""Answers every fetch uselessly (empty, or with blocks and certificates nobody
asked for) and sends such answers unasked. A useless answer must neither clear
the asker's outstanding request nor make it ask everyone again: before, each
one started a new request to every peer (a message storm)."""

from __future__ import annotations

from consensus.messages import (
    Block,
    BlockResponse,
    CertificateResponse,
    Message,
    SyncResponse,
    Vote,
    encode_message,
)
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing


class EmptyFetchResponder(Behaviour):
    name = "empty-fetch-responder"

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        if isinstance(message, BlockResponse | SyncResponse):
            return [(to, encode_message(self._useless(node)))]
        if isinstance(message, CertificateResponse):
            return [(to, encode_message(CertificateResponse(certificates=[])))]
        out: Outgoing = [(to, encode_message(message))]
        if isinstance(message, Vote) and node.rng.random() < 0.5:
            out.append((None, encode_message(self._useless(node))))
        return out

    def _useless(self, node: ByzantineNode) -> BlockResponse:
        if node.rng.random() < 0.5 or node.core is None:
            return BlockResponse(blocks=[])
        # A well-formed but stale or made-up chain.
        tip = node.durable.chain[-1] if node.durable.chain else node.genesis
        made_up = Block(tip.view + 1, tip.height + 1, tip.digest(), node.index, b"ok-made-up")
        return BlockResponse(blocks=[made_up])
