"""Replays certificates: old ones it saw earlier, and ones from another network
that shares the chain id, the validators' keys and the L1 contract address but
not the genesis (so not the signing domain): far-future nullifications and
finalizations, each signed by a full quorum of the very same keys."""

from __future__ import annotations

from consensus.core import genesis_block
from consensus.encoding import Domain, vote_digest
from consensus.messages import Certificate, Message, VoteKind, decode_message, encode_message
from consensus.sim.byzantine.base import Behaviour, ByzantineNode, Outgoing
from consensus.types import ZERO_DIGEST, Digest, Height, View

OTHER_GENESIS = genesis_block(b"another network, same keys")


class CertificateReplayer(Behaviour):
    name = "certificate-replayer"

    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def incoming(self, node: ByzantineNode, message: Message) -> Outgoing:
        if isinstance(message, Certificate) and len(self.seen) < 256:
            self.seen.append(encode_message(message))
        return []

    def outgoing(self, node: ByzantineNode, to: int | None, message: Message) -> Outgoing:
        out: Outgoing = [(to, encode_message(message))]
        if node.core is None or node.rng.random() < 0.7:
            return out
        if self.seen and node.rng.random() < 0.5:
            out.append((None, self.seen[node.rng.randrange(len(self.seen))]))
        else:
            out.append((None, encode_message(self._foreign(node))))
        return out

    def _foreign(self, node: ByzantineNode) -> Certificate:
        """A certificate signed by every validator key, for the other network."""
        from consensus.sim.simulator import SIM_CHAIN_ID, validator_key

        assert node.core is not None
        domain = Domain(SIM_CHAIN_ID, bytes(20), OTHER_GENESIS.digest())
        separator = domain.separator()
        view = node.core.view + node.rng.choice([1, 5, 5000])
        kind, height, block = VoteKind.NULLIFY, 0, ZERO_DIGEST
        if node.rng.random() < 0.5:
            kind = VoteKind.FINALIZE
            height = node.core.committed.height + 3
            block = Digest(node.rng.randbytes(32))
        signers = list(range(len(node.validators)))
        digest = vote_digest(separator, kind, View(view), Height(height), block)
        signatures = [bytes(validator_key(i).sign_digest(digest)) for i in signers]
        cert = Certificate(kind, view, height, block, signers, signatures)
        decode_message(encode_message(cert))  # well-formed: only the domain is wrong
        return cert
