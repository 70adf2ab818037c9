"""A correct validator on a slow link: every message it sends leaves late (up to
twice the base view timeout). It must never stall the others, and its own
late proposals must not push everyone's timeouts up for good."""

from __future__ import annotations

from consensus.messages import Message, encode_message
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing


class Slow(Behaviour):
    name = "slow"

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        data = encode_message(message)
        delay = node.rng.randint(node.config.view_timeout_ms // 2, 2 * node.config.view_timeout_ms)
        node.schedule(delay, lambda: node._send_raw(to, data))
        return []
