"""Byzantine validators: the real core, with a behaviour that rewrites what it sends.

A Byzantine node runs an unmodified `ConsensusCore` so that it follows the
views and knows what honest messages look like; its behaviour then decides
what actually leaves it: dropped, altered, duplicated with a conflicting
twin, replayed later, or replaced with garbage. It keeps no safety record.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

from consensus.messages import (
    MalformedMessage,
    Message,
    Vote,
    VoteKind,
    decode_message,
    encode_message,
)
from consensus.sim.node import SimNode

Outgoing = list[tuple[int | None, bytes]]  # (peer, or None for every peer; bytes)


class Behaviour:
    """The identity behaviour: sends what the core says. Subclasses misbehave."""

    name: ClassVar[str] = "honest"

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        return [(to, encode_message(message))]

    def incoming(self, node: ByzantineNode, message: Message) -> Outgoing:
        """Extra messages to send on receiving `message` (none by default)."""
        return []


class ByzantineNode(SimNode):
    behaviour: Behaviour
    received: list[bytes]

    def setup(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.received = []
        self.persist_safety = False

    def peers(self) -> list[int]:
        return [i for i in range(len(self.validators)) if i != self.index]

    def sign_vote(self, kind: VoteKind, view: int, height: int, block: bytes) -> Vote:
        digest = self.verifier.vote_digest(kind, view, height, block)
        return Vote(
            kind=kind,
            view=view,
            height=height,
            block=block,
            signer=self.index,
            signature=self.key.sign_digest(digest),
        )

    def receive(self, src: int, data: bytes) -> None:
        if not self.up:
            return
        if len(self.received) < 512:
            self.received.append(data)
        with contextlib.suppress(MalformedMessage):
            for dst, extra in self.behaviour.incoming(
                self, decode_message(data, anchored=self.anchored)
            ):
                self._send_raw(dst, extra)
        super().receive(src, data)

    def _send_raw(self, dst: int | None, data: bytes) -> None:
        # The checkers see what really left, e.g. an equivocator's twin proposal.
        with contextlib.suppress(MalformedMessage):
            self.hooks.on_send(self.index, decode_message(data, anchored=self.anchored))
        for peer in self.peers() if dst is None else [dst]:
            if peer != self.index:
                self._send_bytes(self.index, peer, data)

    def _emit(self, to: int | None, message: Message) -> None:
        for dst, data in self.behaviour.outgoing(self, to, message):
            self._send_raw(dst, data)

    def send(self, to: int, message: Message) -> None:
        self._emit(to, message)

    def broadcast(self, message: Message) -> None:
        self._emit(None, message)
