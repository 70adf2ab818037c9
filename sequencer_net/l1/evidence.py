"""Equivocation evidence on L1: what `Commitments.submitEvidence` takes, and sending it.

A node keeps, as an `EvidenceRecord`, two signed votes of one validator that
no honest validator casts together (consensus/core.py `_add_vote`). The
contract records the pairs that can break finality, and freezes at the
lowest height they dispute once the proven validators hold more than a third
of the power:

    FINALIZE + FINALIZE, one view, different (height, block) -> the lower height
    FINALIZE + NULLIFY,  one view (either order)              -> the FINALIZE's height

Two NOTARIZE votes in one view are evidence to a node but not to the contract:
alone they finalize nothing, and freezing on them would let a single faulty
validator stop the bridge for a fault consensus already tolerates.

    evidence_args(first, second)   -> the two SignedVote tuples, in order
    check_evidence(a, b, domain)   -> Equivocation(validator, height), or NotEquivocation
    submit_evidence(w3, account, commitments, record)
                                   -> ProvenEquivocation, or EvidenceRejected(reason)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from consensus.crypto import Address, InvalidSignature, recover_address
from consensus.encoding import Domain, vote_digest
from consensus.messages import Vote, VoteKind
from consensus.types import Digest, Height, View
from sequencer_net.l1.artifacts import UnknownCustomError, custom_error_name
from sequencer_net.l1.transact import transact

if TYPE_CHECKING:
    from sequencer_net.storage.node_store import EvidenceRecord

SignedVoteTuple = tuple[int, int, int, bytes, bytes]
"""`Commitments.SignedVote` as web3 passes it: (kind, viewNumber, height, blockHash, signature)."""

EVIDENCE_ERRORS: Final = (
    "BadEvidenceSignature",
    "EvidenceSignersDiffer",
    "EvidenceSignerNotInSet",
    "VotesDoNotConflict",
    "EquivocationAlreadyProven",
)
"""The custom errors `submitEvidence` refuses with, one per kind of unusable evidence."""


class NotEquivocation(ValueError):
    """Two votes the contract would not accept as evidence (checked before sending)."""


class EvidenceRejected(RuntimeError):
    """The contract refused the evidence; `reason` names its custom error."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"submitEvidence reverted: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Equivocation:
    validator: Address
    height: int
    """The disputed height: posts covering it or anything above are disputed."""


@dataclass(frozen=True, slots=True)
class ProvenEquivocation:
    validator: Address
    height: int
    l1_block: int
    froze: bool
    """True when this evidence froze the contract or lowered its disputed height."""


def disputed_height(first: Vote, second: Vote) -> int:
    """The height a conflicting pair disputes (the contract's `_conflictHeight`).

    Raises NotEquivocation for any pair the contract refuses as VotesDoNotConflict.
    """
    if first.view != second.view:
        raise NotEquivocation("the votes are in different views")
    kinds = (first.kind, second.kind)
    if kinds == (VoteKind.FINALIZE, VoteKind.FINALIZE):
        if (first.height, first.block) == (second.height, second.block):
            raise NotEquivocation("the same FINALIZE vote twice")
        return min(first.height, second.height)
    if kinds == (VoteKind.FINALIZE, VoteKind.NULLIFY):
        return first.height
    if kinds == (VoteKind.NULLIFY, VoteKind.FINALIZE):
        return second.height
    raise NotEquivocation(f"vote kinds {kinds} are not L1 evidence")


def signer_of(vote: Vote, domain: Domain) -> Address:
    """The address that signed `vote` in `domain` (raises NotEquivocation if none does)."""
    digest = vote_digest(
        domain.separator(), vote.kind, View(vote.view), Height(vote.height), Digest(vote.block)
    )
    try:
        return recover_address(digest, vote.signature)
    except InvalidSignature as exc:
        raise NotEquivocation(f"a vote's signature does not recover: {exc}") from exc


def check_evidence(first: Vote, second: Vote, domain: Domain) -> Equivocation:
    """What the contract will conclude from the pair, checked locally: same signer,
    conflicting votes. Membership in the current set is the contract's to judge."""
    height = disputed_height(first, second)
    signer = signer_of(first, domain)
    if signer_of(second, domain) != signer:
        raise NotEquivocation("the votes are signed by different keys")
    return Equivocation(validator=signer, height=height)


def signed_vote(vote: Vote) -> SignedVoteTuple:
    return (vote.kind, vote.view, vote.height, vote.block, vote.signature)


def evidence_args(first: Vote, second: Vote) -> tuple[SignedVoteTuple, SignedVoteTuple]:
    """The arguments of `submitEvidence(first, second)`."""
    return signed_vote(first), signed_vote(second)


def submit_evidence(
    w3: Web3, account: LocalAccount, commitments: Contract, record: EvidenceRecord
) -> ProvenEquivocation:
    """Send `record` to `submitEvidence`.

    Raises NotEquivocation (nothing sent) for a pair the contract would refuse
    as not conflicting, and EvidenceRejected with the revert's name otherwise
    (e.g. "EquivocationAlreadyProven" when someone was first).
    """
    disputed_height(record.first, record.second)
    call = commitments.functions.submitEvidence(*evidence_args(record.first, record.second))
    try:
        receipt = transact(w3, account, call)
    except ContractCustomError as exc:
        try:
            reason = custom_error_name(exc)
        except UnknownCustomError:
            raise exc from None
        raise EvidenceRejected(reason) from exc
    (proven,) = commitments.events.EquivocationProven().process_receipt(receipt, errors=DISCARD)
    froze = bool(commitments.events.FrozenAt().process_receipt(receipt, errors=DISCARD))
    return ProvenEquivocation(
        validator=Address(bytes.fromhex(proven["args"]["validator"][2:])),
        height=int(proven["args"]["height"]),
        l1_block=int(receipt["blockNumber"]),
        froze=froze,
    )
