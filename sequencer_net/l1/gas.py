"""What a steady `Commitments.post` and an evidence submission cost on L1, by
validator count.

`measure(n)` starts a fresh anvil, deploys the contracts with n validators of
equal power, posts two headers signed by a bare quorum (floor(2n/3) + 1
signers) and reports the second post's gasUsed: the first post of a
contract's life pays for nothing the later ones do not (the contract writes
every slot a post touches at deployment), so the second is the steady price.
It then submits one validator's two FINALIZE votes for different blocks of
one view (a first proven validator: at n >= 4 it alone does not freeze the
contract, which takes more than a third of the power) and reports that gasUsed
too, through `submitEvidence`. A second deployment on the same anvil
schedules epoch 1 (the same n validators, from height 3): its second post in
epoch 0 is the steady price of a post while a later epoch is scheduled
(`scheduled_post_gas`: the post looks up whether the height left the epoch),
and `submitEvidenceOfEpoch` of the same offence in epoch 0, judged against
epoch 0's set of n, is `epoch_evidence_gas`. Gas is deterministic: the same n
gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from eth_account import Account
from web3 import Web3
from web3.contract import Contract

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain, vote_digest
from consensus.messages import Vote, VoteKind
from consensus.types import Digest, Height, View
from sequencer_net.l1.anvil import DEV_PRIVATE_KEYS, Anvil
from sequencer_net.l1.artifacts import load_artifact
from sequencer_net.l1.deploy import DeployEpoch, deploy
from sequencer_net.l1.evidence import evidence_args
from sequencer_net.l1.header import L1Header, sign_packed
from sequencer_net.l1.transact import transact

BENCH_SEQ_CHAIN_ID: Final = 7777
BENCH_GENESIS_HASH: Final = keccak256(b"seqnet l1 gas benchmark genesis")
BENCH_VALIDATOR_COUNTS: Final = (4, 7, 10, 16)
# Targets for a steady post (docs/l1.md): n=4 (3 signers) and n=16 (11 signers).
POST_GAS_TARGETS: Final = {4: 65_000, 16: 120_000}


@dataclass(frozen=True, slots=True)
class PostGas:
    validators: int
    signers: int
    gas: int
    evidence_gas: int
    epoch_evidence_gas: int
    scheduled_post_gas: int


def bench_keys(n: int) -> list[PrivateKey]:
    """n fixed validator keys (the same on every run)."""
    return [PrivateKey(keccak256(b"seqnet l1 gas key %d" % i)) for i in range(n)]


def quorum_size(n: int) -> int:
    """Signers of equal power that make a bare quorum: floor(2n/3) + 1."""
    return 2 * n // 3 + 1


def bench_header(height: int) -> L1Header:
    """A header with every hash field non-zero, as real ones are."""
    return L1Header(
        view=height,
        height=height,
        parent=keccak256(b"parent %d" % height),
        proposer=height % 4,
        timestamp_ms=1_700_000_000_000 + height * 200,
        state_height=height,
        state_root=keccak256(b"state %d" % height),
        batches_hash=L1Header.hash_batches([keccak256(b"batch %d" % height)]),
        namespace_root=keccak256(b"namespaces %d" % height),
    )


def measure_post_gas(n: int) -> int:
    """gasUsed of a steady post with n validators and a bare quorum of signers."""
    return measure(n).gas


def measure(n: int) -> PostGas:
    if n < 1:
        raise ValueError("at least one validator")
    keys = bench_keys(n)
    signers = keys[: quorum_size(n)]
    with Anvil.start() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        deployer = Account.from_key(DEV_PRIVATE_KEYS[0])

        def deployed(epochs: list[DeployEpoch]) -> tuple[Contract, Domain]:
            addresses = deploy(
                w3,
                DEV_PRIVATE_KEYS[0],
                BENCH_SEQ_CHAIN_ID,
                BENCH_GENESIS_HASH,
                [key.address for key in keys],
                [1] * n,
                inclusion_window=10,
                escape_delay=100,
                epochs=epochs,
            )
            commitments = w3.eth.contract(
                address=addresses.checksum("commitments"),
                abi=load_artifact("Commitments").abi_list,
            )
            return commitments, Domain(
                BENCH_SEQ_CHAIN_ID, addresses.commitments, BENCH_GENESIS_HASH
            )

        def post_twice(commitments: Contract, domain: Domain) -> int:
            gas = 0
            for height in (1, 2):
                header = bench_header(height)
                signatures = sign_packed(signers, header.finalize_digest(domain))
                call = commitments.functions.post(header.as_abi(), signatures)
                gas = int(transact(w3, deployer, call, estimate_on="pending")["gasUsed"])
            return gas

        commitments, domain = deployed([])
        gas = post_twice(commitments, domain)
        first, second = equivocation(keys[0], domain, height=3)
        receipt = transact(
            w3, deployer, commitments.functions.submitEvidence(*evidence_args(first, second))
        )
        evidence_gas = int(receipt["gasUsed"])

        # The same set again as epoch 1, from height 3: height 2 stays epoch 0's.
        validators = [key.address for key in keys]
        commitments, domain = deployed([DeployEpoch(3, validators, [1] * n)])
        scheduled_post_gas = post_twice(commitments, domain)
        first, second = equivocation(keys[0], domain, height=2)
        ordered = sorted(validators)
        call = commitments.functions.submitEvidenceOfEpoch(
            0,
            [Web3.to_checksum_address(v) for v in ordered],
            [1] * n,
            *evidence_args(first, second),
        )
        epoch_evidence_gas = int(transact(w3, deployer, call)["gasUsed"])
    return PostGas(
        validators=n,
        signers=len(signers),
        gas=gas,
        evidence_gas=evidence_gas,
        epoch_evidence_gas=epoch_evidence_gas,
        scheduled_post_gas=scheduled_post_gas,
    )


def equivocation(key: PrivateKey, domain: Domain, height: int) -> tuple[Vote, Vote]:
    """Two FINALIZE votes by `key` for different blocks at `height` in one view."""
    votes = []
    for block in (bench_header(height).block_hash(), keccak256(b"fork %d" % height)):
        digest = vote_digest(
            domain.separator(), VoteKind.FINALIZE, View(height), Height(height), Digest(block)
        )
        votes.append(
            Vote(
                kind=VoteKind.FINALIZE,
                view=height,
                height=height,
                block=block,
                signer=0,
                signature=key.sign_digest(digest),
            )
        )
    return votes[0], votes[1]
