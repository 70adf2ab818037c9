"""The simulator's checkers: agreement, validity, no honest double-sign,
certificates that bind heights, liveness, bounded messages and memory.

They watch every message an honest validator signs (at the moment it leaves
the node, lost or not), every certificate it forms or accepts, and every block
it commits, and record a violation the instant a rule breaks. Liveness,
message and memory bounds are judged by the simulator at the end of a run
with the helpers below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.messages import Block, Certificate, Message, Proposal, Vote, VoteKind
from consensus.types import ValidatorSet, View
from consensus.verifier import SignatureVerifier


@dataclass(slots=True)
class _Signed:
    notarized: set[bytes] = field(default_factory=set)
    nullified: bool = False
    finalized: set[bytes] = field(default_factory=set)


class Checkers:
    def __init__(
        self,
        validators: ValidatorSet,
        honest: set[int],
        payload_is_valid: Callable[[bytes], bool],
        clock: Callable[[], int],
        verifier: SignatureVerifier | None = None,
    ) -> None:
        self.verifier = verifier
        self.validators = validators
        self.honest = honest
        self.payload_is_valid = payload_is_valid
        self.clock = clock
        self.violations: list[str] = []
        self._signed: dict[tuple[int, int], _Signed] = {}
        self._proposed: dict[bytes, int] = {}  # digest -> height of every proposed block
        self.proposal_time: dict[bytes, int] = {}
        self._committed_at: dict[int, bytes] = {}
        self.heights: dict[int, int] = {i: 0 for i in honest}
        self._tips: dict[int, bytes] = {}
        self.commit_times: dict[tuple[int, int], int] = {}  # (node, height) -> time

    # ---- observations -----------------------------------------------------------

    def on_send(self, src: int, message: Message) -> None:
        if isinstance(message, Proposal):
            digest = message.block.digest()
            self._proposed[digest] = message.block.height
            self.proposal_time.setdefault(digest, self.clock())
            if src in self.honest:
                self._signed_vote(src, VoteKind.NOTARIZE, message.block.view, digest)
        elif isinstance(message, Vote) and src in self.honest and message.signer == src:
            self._signed_vote(src, message.kind, message.view, message.block)

    def _signed_vote(self, signer: int, kind: int, view: int, block: bytes) -> None:
        record = self._signed.setdefault((signer, view), _Signed())
        who = f"double-sign: validator {signer}"
        if kind == VoteKind.NOTARIZE:
            record.notarized.add(block)
            if len(record.notarized) > 1:
                self._violate(f"{who} notarized two blocks in view {view}")
        elif kind == VoteKind.NULLIFY:
            record.nullified = True
        else:
            record.finalized.add(block)
            if len(record.finalized) > 1:
                self._violate(f"{who} finalized two blocks in view {view}")
        if record.nullified and record.finalized:
            self._violate(f"{who} nullified and finalized view {view}")

    def on_certificate(self, node: int, cert: Certificate) -> None:
        """Every certificate an honest validator forms or accepts verifies on its own
        and names the height of the block it certifies."""
        if node not in self.honest:
            return
        if self.verifier is not None and not self.verifier.check_certificate(self.validators, cert):
            self._violate(
                f"certificate: node {node} accepted an unverifiable certificate "
                f"(kind {cert.kind}, view {cert.view})"
            )
        if cert.kind == VoteKind.NULLIFY:
            return
        height = self._proposed.get(cert.block)
        if height is not None and height != cert.height:
            self._violate(
                f"certificate: node {node} accepted a certificate for view {cert.view} "
                f"naming height {cert.height}; its block has height {height}"
            )

    def on_commit(self, node: int, block: Block, genesis_digest: bytes) -> None:
        if node not in self.honest:
            return
        digest = block.digest()
        self.commit_times[(node, block.height)] = self.clock()
        first = self._committed_at.setdefault(block.height, digest)
        if first != digest:
            self._violate(
                f"agreement: node {node} committed {digest.hex()[:12]} at height "
                f"{block.height}, another honest node {first.hex()[:12]}"
            )
        # Validity: the chain links, the leader of the view proposed it, payload valid.
        if block.parent != self._tips.get(node, genesis_digest):
            self._violate(f"validity: node {node} committed a block not extending its chain")
        if block.proposer != self.validators.leader(View(block.view)):
            self._violate(f"validity: block at height {block.height} not from its view's leader")
        if digest not in self._proposed:
            self._violate(f"validity: block at height {block.height} was never proposed")
        if not self.payload_is_valid(block.payload):
            self._violate(f"validity: block at height {block.height} has an invalid payload")
        self._tips[node] = digest
        self.heights[node] = block.height

    def _violate(self, text: str) -> None:
        if text not in self.violations:
            self.violations.append(text)
