"""Proposes when it leads but never votes and never forwards certificates."""

from __future__ import annotations

from consensus.messages import Certificate, Message, Vote, encode_message
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing


class Withholder(Behaviour):
    name = "withholder"

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        if isinstance(message, Vote | Certificate):
            return []
        return [(to, encode_message(message))]
