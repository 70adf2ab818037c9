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

Votes name no epoch: an offence belongs to the epoch whose heights hold its
disputed height (`Commitments.epochOf`; docs/l1.md, "The epoch of an offence"),
and its votes verify only in that epoch's separator. `submit_evidence` sends
it to `submitEvidence`, which finds the epoch and judges it against that
epoch's stored set; `submit_evidence_of_epoch` names the epoch and its set
(read from its `ValidatorSetInstalled` event), which also takes an epoch's
tail votes (above its last height):

    evidence_args(first, second)   -> the two SignedVote tuples, in order
    check_evidence(a, b, domain)   -> Equivocation(validator, height), or NotEquivocation
    evidence_epoch(commitments, height)
                                   -> the epoch the offence belongs to, or None
    installed_set(commitments, epoch)
                                   -> (validators, powers) of that epoch, checked
    submit_evidence(w3, account, commitments, record)
                                   -> ProvenEquivocation, or EvidenceRejected(reason)
    submit_evidence_of_epoch(w3, account, commitments, epoch, record)
                                   -> the same, through submitEvidenceOfEpoch
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from consensus.crypto import Address, InvalidSignature, recover_address
from consensus.encoding import Domain, vote_digest
from consensus.epochs import epoch_domain_separator
from consensus.messages import Vote, VoteKind
from consensus.types import Digest, Height, View
from sequencer_net.l1.artifacts import UnknownCustomError, custom_error_name
from sequencer_net.l1.header import validator_set_hash
from sequencer_net.l1.link import L1AnswerInvalid, checked_bytes, checked_uint
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
    "UnknownValidatorSet",
    "EvidenceOutsideEpoch",
)
"""The custom errors `submitEvidence` and `submitEvidenceOfEpoch` refuse with, one per
kind of unusable evidence."""

MAX_INSTALL_EVENTS: Final = 4
"""ValidatorSetInstalled events accepted for one epoch's query (the contract emits one)."""


class NotEquivocation(ValueError):
    """Two votes the contract would not accept as evidence (checked before sending)."""


class EvidenceRejected(RuntimeError):
    """The contract refused the evidence; `reason` names its custom error."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"evidence refused: {reason}")
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
    epoch: int
    """The epoch whose set the offence was judged against."""
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


def signer_of(vote: Vote, domain: Domain, epoch: int = 0) -> Address:
    """The address that signed `vote` in `epoch`'s separator of `domain` (raises
    NotEquivocation if none does)."""
    digest = vote_digest(
        epoch_domain_separator(domain.separator(), epoch),
        vote.kind,
        View(vote.view),
        Height(vote.height),
        Digest(vote.block),
    )
    try:
        return recover_address(digest, vote.signature)
    except InvalidSignature as exc:
        raise NotEquivocation(f"a vote's signature does not recover: {exc}") from exc


def check_evidence(first: Vote, second: Vote, domain: Domain, epoch: int = 0) -> Equivocation:
    """What the contract will conclude from the pair of `epoch`, checked locally: same
    signer, conflicting votes. Membership in the epoch's set is the contract's to judge."""
    height = disputed_height(first, second)
    signer = signer_of(first, domain, epoch)
    if signer_of(second, domain, epoch) != signer:
        raise NotEquivocation("the votes are signed by different keys")
    return Equivocation(validator=signer, height=height)


def signed_vote(vote: Vote) -> SignedVoteTuple:
    return (vote.kind, vote.view, vote.height, vote.block, vote.signature)


def evidence_args(first: Vote, second: Vote) -> tuple[SignedVoteTuple, SignedVoteTuple]:
    """The arguments of `submitEvidence(first, second)`."""
    return signed_vote(first), signed_vote(second)


def evidence_epoch(commitments: Contract, height: int) -> int | None:
    """Blocking: the epoch of the current era whose set signs for `height`
    (`epochOf`), or None when the height is below the era's first epoch."""
    answer = commitments.functions.epochOf(height).call()
    if not isinstance(answer, list | tuple) or len(answer) != 2 or not isinstance(answer[0], bool):
        raise L1AnswerInvalid(f"epochOf: expected (bool, uint64), got {answer!r:.60}")
    found, epoch = answer
    return checked_uint(epoch, "epochOf epoch") if found else None


def installed_set(commitments: Contract, epoch: int) -> tuple[list[bytes], list[int]]:
    """Blocking: the validators and powers of `epoch`'s set, from the
    ValidatorSetInstalled event in the L1 block `epochStart(epoch)` names, and
    checked against `setHashOf(epoch)`. Raises L1AnswerInvalid when the L1's
    answers do not give that set (the caller retries)."""
    start = commitments.functions.epochStart(epoch).call()
    if not isinstance(start, list | tuple) or len(start) != 2:
        raise L1AnswerInvalid(f"epochStart: expected (uint64, uint64), got {start!r:.60}")
    block = checked_uint(start[1], "epochStart l1Block")
    expected = checked_bytes(commitments.functions.setHashOf(epoch).call(), "setHashOf", 32)
    installed = commitments.events.ValidatorSetInstalled()
    entries = installed.get_logs(
        from_block=block, to_block=block, argument_filters={"epoch": epoch}
    )
    if len(entries) > MAX_INSTALL_EVENTS:
        raise L1AnswerInvalid(f"{len(entries)} ValidatorSetInstalled events for epoch {epoch}")
    for entry in entries:
        args = entry["args"]
        if args["epoch"] != epoch:
            continue
        validators = [bytes.fromhex(str(address)[2:]) for address in args["validators"]]
        powers = [checked_uint(power, "power") for power in args["powers"]]
        if validator_set_hash(epoch, validators, powers) == expected:
            return validators, powers
    raise L1AnswerInvalid(f"no ValidatorSetInstalled event of epoch {epoch} matches its set hash")


def submit_evidence(
    w3: Web3, account: LocalAccount, commitments: Contract, record: EvidenceRecord
) -> ProvenEquivocation:
    """Send `record` to `submitEvidence`, which judges it against the set of the
    epoch holding its disputed height, in that epoch's separator.

    Raises NotEquivocation (nothing sent) for a pair the contract would refuse
    as not conflicting, and EvidenceRejected with the revert's name otherwise
    (refused at estimation, nothing sent: e.g. "EvidenceOutsideEpoch" for a
    height below the current era, "EquivocationAlreadyProven" when someone was
    first).
    """
    disputed_height(record.first, record.second)
    votes = evidence_args(record.first, record.second)
    return _send(w3, account, commitments, commitments.functions.submitEvidence(*votes))


def submit_evidence_of_epoch(
    w3: Web3, account: LocalAccount, commitments: Contract, epoch: int, record: EvidenceRecord
) -> ProvenEquivocation:
    """Send `record` as an offence of `epoch` (`submitEvidenceOfEpoch`, with the
    epoch's set as installed): the way to prove votes of an epoch's tail, which
    lie above its last height. Raises as `submit_evidence`."""
    disputed_height(record.first, record.second)
    votes = evidence_args(record.first, record.second)
    validators, powers = installed_set(commitments, epoch)
    call = commitments.functions.submitEvidenceOfEpoch(
        epoch, [Web3.to_checksum_address(v) for v in validators], powers, *votes
    )
    return _send(w3, account, commitments, call)


def _send(w3: Web3, account: LocalAccount, commitments: Contract, call: Any) -> ProvenEquivocation:
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
        epoch=int(proven["args"]["epoch"]),
        l1_block=int(receipt["blockNumber"]),
        froze=froze,
    )
