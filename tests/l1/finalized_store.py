"""A node store holding committed blocks with real finalization certificates,
signed by the validator keys an `L1Chain` deployed Commitments with, in its
signing domain: what a validator's poster reads. With `later` epochs, a
certificate at a height of epoch e is signed by e's keys in e's separator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain, vote_digest
from consensus.epochs import Epoch, EpochSchedule, epoch_domain_separator
from consensus.messages import Block, Certificate, VoteKind
from consensus.payload import BlockPayload, encode_payload
from consensus.types import Digest, Height, Validator, ValidatorSet, View
from sequencer_net.storage.node_store import NodeStore

GENESIS_DIGEST = keccak256(b"finalized store genesis block")


@dataclass
class FinalizedStore:
    store: NodeStore
    keys: list[PrivateKey]
    domain: Domain
    later: Sequence[tuple[int, list[PrivateKey], list[int]]] = ()
    """Epochs 1, 2, ...: (first height, keys in set order, weights)."""
    validators: ValidatorSet = field(init=False)

    def __post_init__(self) -> None:
        self.validators = ValidatorSet([Validator(k.address, 1) for k in self.keys])

    @classmethod
    def open(
        cls,
        path: Path,
        keys: list[PrivateKey],
        domain: Domain,
        later: Sequence[tuple[int, list[PrivateKey], list[int]]] = (),
    ) -> FinalizedStore:
        store = NodeStore(path, genesis_digest=GENESIS_DIGEST, sync=False)
        return cls(store, keys, domain, later)

    def schedule(self) -> EpochSchedule:
        epochs = [Epoch(0, Height(1), self.validators)]
        for number, (first, keys, weights) in enumerate(self.later, start=1):
            validators = [Validator(k.address, w) for k, w in zip(keys, weights, strict=True)]
            epochs.append(Epoch(number, Height(first), ValidatorSet(validators)))
        return EpochSchedule(epochs)

    def _epoch_keys(self, height: int) -> tuple[int, list[PrivateKey]]:
        number, keys = 0, self.keys
        for later_number, (first, later_keys, _) in enumerate(self.later, start=1):
            if height >= first:
                number, keys = later_number, later_keys
        return number, keys

    def state_root(self, height: int) -> bytes:
        return keccak256(b"state root %d" % height)

    def commit(self, count: int = 1, *, own_certificate: bool = True) -> list[Block]:
        """Commit `count` blocks on the tip. Without `own_certificate` a block is
        committed under a certificate of a (pretend) descendant, as consensus
        does when it finalizes a later block first."""
        blocks = []
        for _ in range(count):
            height, parent, _ = self.store.tip()
            height += 1
            payload = BlockPayload(
                timestamp_ms=1_760_000_000_000 + 200 * height,
                state_height=height - 1,
                state_root=self.state_root(height - 1),
                batches=[keccak256(b"batch %d" % height)],
                namespace_root=keccak256(b"namespaces %d" % height),
            )
            block = Block(
                view=height + 1,
                height=height,
                parent=parent,
                proposer=height % len(self.keys),
                payload=encode_payload(payload),
            )
            digest = block.digest() if own_certificate else keccak256(b"descendant %d" % height)
            cert_height = height if own_certificate else height + 1
            cert = self.certificate(block.view, cert_height, digest)
            self.store.commit_block(block, cert, [], self.state_root(height))
            blocks.append(block)
        return blocks

    def certificate(
        self, view: int, height: int, digest: bytes, signers: list[int] | None = None
    ) -> Certificate:
        epoch, keys = self._epoch_keys(height)
        signers = sorted(signers if signers is not None else range(len(keys)))
        separator = epoch_domain_separator(self.domain.separator(), epoch)
        message = vote_digest(
            separator, VoteKind.FINALIZE, View(view), Height(height), Digest(digest)
        )
        return Certificate(
            kind=VoteKind.FINALIZE,
            view=view,
            height=height,
            block=digest,
            signers=signers,
            signatures=[keys[i].sign_digest(message) for i in signers],
        )

    def close(self) -> None:
        self.store.close()
