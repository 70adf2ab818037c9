"""A small fixed network for unit tests of the consensus core."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from consensus.core import ConsensusConfig, ConsensusCore, genesis_block
from consensus.crypto import PrivateKey
from consensus.encoding import Domain
from consensus.io import Action, CommittedTip, Start
from consensus.messages import Block, Certificate, Proposal, Vote, VoteKind
from consensus.sim.simulator import validator_key
from consensus.types import Height, Validator, ValidatorIndex, ValidatorSet, View
from consensus.verifier import SignatureVerifier


@dataclass
class Net:
    keys: list[PrivateKey]
    validators: ValidatorSet
    verifier: SignatureVerifier
    genesis: Block

    def core(self, index: int, **kwargs: object) -> ConsensusCore:
        return ConsensusCore(
            validators=self.validators,
            me=ValidatorIndex(index),
            key=self.keys[index],
            genesis=self.genesis,
            verifier=self.verifier,
            config=ConsensusConfig(view_timeout_ms=1000, retry_ms=500),
            **kwargs,  # type: ignore[arg-type]
        )

    def started(self, index: int) -> tuple[ConsensusCore, list[Action]]:
        core = self.core(index)
        actions = core.handle(Start(None, CommittedTip(Height(0), self.genesis.digest(), View(0))))
        return core, actions

    def vote(self, signer: int, kind: VoteKind, view: int, height: int, block: bytes) -> Vote:
        digest = self.verifier.vote_digest(kind, view, height, block)
        return Vote(kind, view, height, block, signer, self.keys[signer].sign_digest(digest))

    def certificate(
        self, signers: list[int], kind: VoteKind, view: int, height: int, block: bytes
    ) -> Certificate:
        votes = [self.vote(i, kind, view, height, block) for i in sorted(signers)]
        return Certificate(kind, view, height, block, sorted(signers), [v.signature for v in votes])

    def proposal(
        self,
        view: int,
        payload: bytes = b"ok-payload",
        parent: Certificate | None = None,
        skipped: list[Certificate] | None = None,
        height: int | None = None,
    ) -> Proposal:
        leader = self.validators.leader(View(view))
        parent_digest = self.genesis.digest() if parent is None else parent.block
        h = height if height is not None else (1 if parent is None else parent.height + 1)
        block = Block(view, h, parent_digest, leader, payload)
        signature = self.vote(leader, VoteKind.NOTARIZE, view, h, block.digest()).signature
        return Proposal(block, signature, parent, skipped or [])


@pytest.fixture
def net() -> Net:
    keys = [validator_key(i) for i in range(4)]
    validators = ValidatorSet([Validator(k.address, 1) for k in keys])
    genesis = genesis_block(b"test")
    domain = Domain(chain_id=31337, verifying_contract=bytes(20), genesis_hash=genesis.digest())
    return Net(keys, validators, SignatureVerifier(domain.separator()), genesis)
