"""censor: Byzantine leaders leave out a victim's certified batches.

Two victims, each in its own run: one honest validator (all its batches) and
one user (the batches that carry its transactions). Every honest validator
authors a batch per view; acknowledgements, certificates and the book of held
certificates are the real ones (`sign_ack`, `verify_ack`, `AckCollector`,
`verify_certificate`, `CertificateBook`), and every honest voter decides with
the real `check_batches_certified` and `check_certificate_inclusion`.

The adversary also controls the network for the first BAD_VIEWS views: an
honest leader's proposal then misses its view with probability
HONEST_LEADER_MISS, while Byzantine leaders' proposals always arrive. Two
Byzantine leader strategies run: "always" leaves the victim out of every
block; "until-overdue" leaves it out only while no honest voter would refuse.

The rule's bound: the author holds its certificate at the view c it forms,
every validator by c + 1, and a voter counts time up to its entry into the
proposal's view, so it is overdue at every honest voter from view
c + 1 + max(K, ceil(D / ROUND_MS)). The attack succeeds if a block commits at
or after that view without the victim's batch. Delays are measured from c to
the view of the block that includes it, against a run in which the Byzantine
leaders behave honestly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.crypto import keccak256
from consensus.types import ValidatorIndex, View
from sequencer_net.batches.certificate import (
    BatchCertificate,
    CertificateBook,
    verify_certificate,
)
from sequencer_net.payload.checks import (
    BatchSize,
    HeldBatch,
    PayloadRejected,
    check_batches_certified,
    check_certificate_inclusion,
)
from sequencer_net.payload.format import MAX_BATCHES_PER_BLOCK

from .committee import Committee, certify, recover
from .report import SeedOutcome

VIEWS = 40
AUTHORING_VIEWS = 12
"""Honest validators author one batch in each of the first views."""
BAD_VIEWS = 24
HONEST_LEADER_MISS_PERCENT = 70
ROUND_MS = 250
"""One view, in the simulated clock."""
DELAY_VIEWS = 2
"""K, `[consensus] inclusion_delay_views` (default)."""
DELAY_MS = 500
"""D, `[consensus] inclusion_delay_ms` (default)."""
USER_TRANSACTIONS = 3
BATCH_SIZE = BatchSize(transactions=10, tx_bytes=3_000)

STRATEGIES = ("always", "until-overdue")


def bound_views() -> int:
    """Views after certification by which the victim's batch is overdue at
    every honest voter (one view for the certificate to reach everyone)."""
    return 1 + max(DELAY_VIEWS, -(-DELAY_MS // ROUND_MS))


@dataclass
class _Validator:
    index: int
    book: CertificateBook = field(default_factory=CertificateBook)


@dataclass
class _Run:
    committee: Committee
    victim: Callable[[bytes], bool]
    """Whether a batch digest is the victim's."""
    strategy: str | None
    """None: Byzantine leaders behave honestly (the baseline)."""
    certified_at: dict[bytes, int] = field(default_factory=dict)
    certificates: dict[bytes, BatchCertificate] = field(default_factory=dict)
    included_at: dict[bytes, int] = field(default_factory=dict)
    refusals: int = 0
    overdue_skips: dict[bytes, str] = field(default_factory=dict)
    """Victim batches a block committed without after the bound (the first such block)."""


def _digest(committee: Committee, author: int, round_: int) -> bytes:
    return keccak256(b"censor-batch/%d/%d/%d/%d" % (committee.seed, committee.n, author, round_))


def _held(validator: _Validator, digest: bytes) -> HeldBatch:
    held = validator.book.get(digest)
    assert held is not None
    return HeldBatch(digest, held.first_view, BATCH_SIZE, held.first_ms)


def _vote(run: _Run, voter: _Validator, view: int, block: list[bytes]) -> bool:
    """An honest voter's decision on a proposal naming `block`'s batches (their
    certificates come with the proposal)."""
    committee = run.committee
    for digest in block:
        if digest not in voter.book:
            verify_certificate(
                committee.validators, committee.separator, run.certificates[digest], recover
            )
            voter.book.add(run.certificates[digest], view, view * ROUND_MS)
    try:
        check_batches_certified(block, lambda d: d in voter.book)
        in_block = set(block)
        left_out = [
            _held(voter, h.certificate.batch)
            for h in voter.book.oldest_first()
            if h.certificate.batch not in in_block
        ]
        check_certificate_inclusion(
            left_out,
            [_held(voter, d) for d in block],
            view=view,
            delay_views=DELAY_VIEWS,
            now_ms=view * ROUND_MS,  # the voter's entry into the view
            delay_ms=DELAY_MS,
        )
    except PayloadRejected:
        return False
    return True


def _overdue_somewhere(run: _Run, validators: list[_Validator], digest: bytes, view: int) -> bool:
    for v in validators:
        if v.index in run.committee.byzantine:
            continue
        held = v.book.get(digest)
        if held is None:
            continue
        if view - held.first_view >= DELAY_VIEWS and view * ROUND_MS - held.first_ms >= DELAY_MS:
            return True
    return False


def _propose(run: _Run, leader: _Validator, validators: list[_Validator], view: int) -> list[bytes]:
    """The leader's block: held certificates, oldest first, as many as fit;
    a censoring Byzantine leader drops the victim's."""
    candidates = [h.certificate.batch for h in leader.book.oldest_first()]
    if leader.index in run.committee.byzantine and run.strategy is not None:
        candidates = [
            d
            for d in candidates
            if not run.victim(d)
            or (run.strategy == "until-overdue" and _overdue_somewhere(run, validators, d, view))
        ]
    return candidates[:MAX_BATCHES_PER_BLOCK]


def _simulate(run: _Run) -> None:
    committee = run.committee
    rng = committee.rng("censor/network")
    validators = [_Validator(i) for i in range(committee.n)]
    pending: list[tuple[int, int, bytes]] = []  # (view it arrives, validator, digest)
    bound = bound_views()
    for view in range(VIEWS):
        if view < AUTHORING_VIEWS:
            for author in committee.honest:
                cert = certify(committee, _digest(committee, author, view), author, view)
                run.certificates[cert.batch] = cert
                run.certified_at[cert.batch] = view
                for v in validators:
                    delay = 0 if v.index == author else rng.randint(0, 1)
                    pending.append((view + delay, v.index, cert.batch))
        arriving = [p for p in pending if p[0] == view]
        pending = [p for p in pending if p[0] > view]
        for _, index, digest in arriving:
            if digest in run.included_at:
                continue
            cert = run.certificates[digest]
            verify_certificate(committee.validators, committee.separator, cert, recover)
            validators[index].book.add(cert, view, view * ROUND_MS)
        leader = validators[committee.validators.leader(View(view))]
        honest_leader = leader.index not in committee.byzantine
        if view < BAD_VIEWS and honest_leader and rng.randrange(100) < HONEST_LEADER_MISS_PERCENT:
            continue  # its proposal misses the view: nullified
        block = _propose(run, leader, validators, view)
        votes = 0
        for voter in validators:
            if voter.index in committee.byzantine:
                accept = True
            else:
                accept = _vote(run, voter, view, block)
                run.refusals += not accept
            if accept:
                votes += committee.validators.weight_of([ValidatorIndex(voter.index)])
        if votes < committee.quorum:
            continue
        for digest in block:
            run.included_at[digest] = view
        for v in validators:
            v.book.drop(block)
        in_block = set(block)
        for digest, certified in run.certified_at.items():
            left_out = digest not in run.included_at and digest not in in_block
            if run.victim(digest) and left_out and view >= certified + bound:
                run.overdue_skips.setdefault(
                    digest,
                    f"victim batch certified at view {certified} left out of the "
                    f"block of view {view} (bound {bound} views)",
                )


def _victims(committee: Committee) -> dict[str, Callable[[bytes], bool]]:
    rng = committee.rng("censor/victims")
    validator = rng.choice(committee.honest)
    validator_batches = {_digest(committee, validator, r) for r in range(AUTHORING_VIEWS)}
    # The user's transactions each reach one honest validator's next batch.
    user_batches = {
        _digest(committee, rng.choice(committee.honest), rng.randrange(AUTHORING_VIEWS))
        for _ in range(USER_TRANSACTIONS)
    }
    return {
        "validator": validator_batches.__contains__,
        "user": user_batches.__contains__,
    }


def run(committee: Committee) -> SeedOutcome:
    outcome = SeedOutcome()
    victims = _victims(committee)
    baseline = _Run(committee, lambda _: False, None)
    _simulate(baseline)
    for victim in victims.values():
        for digest, certified in baseline.certified_at.items():
            if victim(digest):
                outcome.baseline_delays.append(baseline.included_at.get(digest, VIEWS) - certified)
    outcome.note("honest_refusals", baseline.refusals)
    for name, victim in victims.items():
        for strategy in STRATEGIES:
            attack = _Run(committee, victim, strategy)
            _simulate(attack)
            outcome.note("refused_proposals", attack.refusals)
            for digest, certified in attack.certified_at.items():
                if not victim(digest):
                    continue
                outcome.attempts += 1
                outcome.delays.append(attack.included_at.get(digest, VIEWS) - certified)
            for what in attack.overdue_skips.values():
                outcome.succeed(f"{name}/{strategy}: {what}")
    return outcome
