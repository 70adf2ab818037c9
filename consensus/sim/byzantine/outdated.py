"""Replays old messages it received earlier, to everyone, alongside its own."""

from __future__ import annotations

from consensus.messages import Message, encode_message
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing


class Outdated(Behaviour):
    name = "outdated"

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        out: Outgoing = [(to, encode_message(message))]
        if node.received and node.rng.random() < 0.5:
            old = node.received[node.rng.randrange(len(node.received))]
            out.append((None, old))
        return out
