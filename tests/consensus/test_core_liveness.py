"""Each way the chain could be halted, pinned: heights bound to blocks, gaps of
any length, skipped views without a cap, timeouts that back off, certificates
bound to one network, fetches that do not amplify, restarts that resume."""

from __future__ import annotations

import itertools

import pytest

from consensus.core import ConsensusConfig, ConsensusCore, genesis_block
from consensus.encoding import Domain
from consensus.io import (
    Action,
    Broadcast,
    BuildPayload,
    Commit,
    CommittedTip,
    Fetch,
    MessageReceived,
    PayloadBuilt,
    PayloadVerified,
    ReportEvidence,
    Start,
    StoreCertificate,
    TimerFired,
    VerifyPayload,
)
from consensus.limits import MAX_VIEW_JUMP
from consensus.messages import (
    BlockRequest,
    BlockResponse,
    Certificate,
    CertificateRequest,
    CertificateResponse,
    Proposal,
    Vote,
    VoteKind,
)
from consensus.pacemaker import Pacemaker
from consensus.types import ZERO_DIGEST, Digest, Height, ValidatorIndex, View, leader_schedule
from consensus.verifier import SignatureVerifier
from tests.consensus.conftest import Net


def _of(actions: list[Action], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def _votes(actions: list[Action]) -> list[Vote]:
    return [a.message for a in _of(actions, Broadcast) if isinstance(a.message, Vote)]


def _receive(core: ConsensusCore, sender: int, message: object) -> list[Action]:
    return core.handle(MessageReceived(ValidatorIndex(sender), message))  # type: ignore[arg-type]


def _time_out(core: ConsensusCore, view: int) -> list[Action]:
    for _ in range(20):
        actions = core.handle(TimerFired(View(view)))
        if any(v.kind == VoteKind.NULLIFY for v in _votes(actions)):
            return actions
    raise AssertionError("the view never timed out")


def _nullification(net: Net, view: int) -> Certificate:
    return net.certificate([0, 1, 2], VoteKind.NULLIFY, view, 0, ZERO_DIGEST)


def _notarized_chain(net: Net, length: int) -> tuple[list[Proposal], list[Certificate]]:
    """Proposals for views 1..length, each on the previous one, and their notarizations."""
    proposals: list[Proposal] = []
    notarizations: list[Certificate] = []
    parent: Certificate | None = None
    for view in range(1, length + 1):
        proposal = net.proposal(view=view, payload=f"ok-{view}".encode(), parent=parent)
        parent = net.certificate([0, 1, 2], VoteKind.NOTARIZE, view, view, proposal.block.digest())
        proposals.append(proposal)
        notarizations.append(parent)
    return proposals, notarizations


# ---- 1. heights are bound to blocks ------------------------------------------------


def test_a_parent_certificate_with_an_altered_height_gets_no_vote(net: Net) -> None:
    (p1,), (n1,) = _notarized_chain(net, 1)
    core, _ = net.started(3)
    _receive(core, 1, p1)
    _receive(core, 0, n1)  # we hold the real notarization of view 1 (height 1)
    assert core.view == 2
    forged_parent = Certificate(n1.kind, n1.view, 1000, n1.block, n1.signers, n1.signatures)
    forged = net.proposal(view=2, payload=b"ok-forged", parent=forged_parent)
    assert forged.block.height == 1001
    actions = _receive(core, 2, forged)
    assert _of(actions, VerifyPayload) == []
    assert core.record.notarized is None


def test_votes_naming_another_height_never_complete_a_certificate(net: Net) -> None:
    (p1,), _ = _notarized_chain(net, 1)
    digest = p1.block.digest()
    core, _ = net.started(3)
    _receive(core, 1, p1)  # the leader's own vote: height 1
    lie = net.vote(0, VoteKind.NOTARIZE, 1, 7, digest)  # right block, wrong height
    assert _of(_receive(core, 0, lie), StoreCertificate) == []
    actions = _receive(core, 2, net.vote(2, VoteKind.NOTARIZE, 1, 1, digest))
    assert _of(actions, StoreCertificate) == []  # 1 and 2 say height 1; 0 lied: no quorum
    truth = net.vote(0, VoteKind.NOTARIZE, 1, 1, digest)
    actions = _receive(core, 0, truth)
    (report,) = _of(actions, ReportEvidence)  # the lie and the truth are two votes
    assert report.evidence.offender == 0
    # Its first vote stands for the tally; the two honest votes and the leader's
    # are 2 of the 3 needed, so a third honest vote completes it at height 1.
    actions = _receive(core, 3, net.vote(3, VoteKind.NOTARIZE, 1, 1, digest))
    (cert,) = [a.certificate for a in _of(actions, StoreCertificate)]
    assert (cert.height, cert.block) == (1, digest)
    assert core.verifier.check_certificate(core.validators, cert)


# ---- 2. a long run of notarized but unfinalized heights ----------------------------


def test_a_finalization_far_above_the_tip_commits_from_blocks_already_held(net: Net) -> None:
    proposals, notarizations = _notarized_chain(net, 100)
    core, _ = net.started(3)
    for proposal, notarization in zip(proposals, notarizations, strict=True):
        _receive(core, proposal.block.proposer, proposal)
        _receive(core, 0, notarization)
    top = proposals[-1].block
    final = net.certificate([0, 1, 2], VoteKind.FINALIZE, 100, 100, top.digest())
    actions = _receive(core, 0, final)
    assert _of(actions, Fetch) == []  # nothing to fetch: every block is here
    assert [c.block.height for c in _of(actions, Commit)] == list(range(1, 101))


# ---- 3. no cap on skipped views -----------------------------------------------------


def test_a_proposal_may_skip_more_views_than_it_can_carry(net: Net) -> None:
    (p1,), (n1,) = _notarized_chain(net, 1)
    core, _ = net.started(3)
    _receive(core, 1, p1)
    _receive(core, 0, n1)
    for view in range(2, 302):
        _receive(core, 0, net.certificate([0, 1, 2], VoteKind.NULLIFY, view, 0, ZERO_DIGEST))
    assert core.view == 302
    skipped = [
        net.certificate([0, 1, 2], VoteKind.NULLIFY, v, 0, ZERO_DIGEST) for v in range(294, 302)
    ]
    proposal = net.proposal(view=302, payload=b"ok-302", parent=n1, skipped=skipped)
    actions = _receive(core, 2, proposal)
    assert _of(actions, VerifyPayload) == [VerifyPayload(View(302), proposal.block)]


def test_a_voter_fetches_the_nullifications_a_proposal_does_not_carry(net: Net) -> None:
    (p1,), (n1,) = _notarized_chain(net, 1)
    core, _ = net.started(3)
    _receive(core, 1, p1)
    _receive(core, 0, n1)
    nulls = {v: _nullification(net, v) for v in range(2, 30)}
    _receive(core, 0, nulls[29])  # we jumped: views 2..28 were never seen nullified here
    assert core.view == 30
    proposal = net.proposal(view=30, payload=b"ok-30", parent=n1, skipped=[nulls[29]])
    actions = _receive(core, 2, proposal)
    assert _of(actions, VerifyPayload) == []
    (fetch,) = _of(actions, Fetch)
    assert fetch.request == CertificateRequest(first_view=2, last_view=28) and fetch.prefer == 2
    answer = CertificateResponse([nulls[v] for v in range(2, 29)])
    actions = _receive(core, 2, answer)
    assert _of(actions, VerifyPayload) == [VerifyPayload(View(30), proposal.block)]
    assert _of(actions, Broadcast) == []  # fetched certificates are not forwarded again


def test_a_leader_proposes_after_any_number_of_nullified_views(net: Net) -> None:
    (p1,), (n1,) = _notarized_chain(net, 1)
    leader = net.validators.leader(View(401))
    core, _ = net.started(leader)
    _receive(core, 1, p1)
    _receive(core, 0, n1)
    actions: list[Action] = []
    for view in range(2, 401):
        actions = _receive(core, 0, _nullification(net, view))
    assert core.view == 401
    expected = BuildPayload(View(401), Height(2), Digest(p1.block.digest()))
    assert _of(actions, BuildPayload) == [expected]


# ---- 4. timeouts back off and come back down ----------------------------------------


def test_pacemaker_backs_off_on_slow_views_only_and_recovers_on_finalization() -> None:
    pace = Pacemaker(base_ms=400, max_level=4)
    pace.timed_out(1, voted=False, validators=4)  # a silent leader: not the network's fault
    assert pace.timeout_ms() == 400
    pace.timed_out(2, voted=True, validators=4)  # we voted, no notarization in time
    assert pace.timeout_ms() == 600
    pace.slow(2)  # counted once per view
    assert pace.timeout_ms() == 600
    for view in range(3, 20):
        pace.timed_out(view, voted=False, validators=4)  # every view fails: not only leaders
    assert pace.timeout_ms() == 400 * 3**4 // 2**4  # capped
    pace.finalized()
    assert pace.level == 3
    for _ in range(5):
        pace.finalized()
    assert pace.timeout_ms() == 400


def test_a_view_that_voted_but_timed_out_gives_the_next_view_more_time(net: Net) -> None:
    core, _ = net.started(2)
    proposal = net.proposal(view=1)
    _receive(core, 1, proposal)
    core.handle(PayloadVerified(View(1), Digest(proposal.block.digest()), True))
    _time_out(core, 1)
    nullification = net.certificate([0, 1, 3], VoteKind.NULLIFY, 1, 0, ZERO_DIGEST)
    _receive(core, 0, nullification)
    assert core.view == 2 and core.view_timeout_ms == 1500


# ---- 5. certificates are bound to one network ---------------------------------------


def test_a_certificate_from_another_network_with_the_same_keys_is_refused(net: Net) -> None:
    other = Domain(31337, bytes(20), genesis_block(b"another network").digest())
    assert other.separator() != Domain(31337, bytes(20), net.genesis.digest()).separator()
    foreign = SignatureVerifier(other.separator())
    digest = foreign.vote_digest(VoteKind.NULLIFY, 5000, 0, ZERO_DIGEST)
    cert = Certificate(
        VoteKind.NULLIFY,
        5000,
        0,
        ZERO_DIGEST,
        [0, 1, 2],
        [bytes(net.keys[i].sign_digest(digest)) for i in (0, 1, 2)],
    )
    core, _ = net.started(3)
    assert _receive(core, 0, cert) == []
    assert core.view == 1


def test_a_certificate_cannot_move_a_node_arbitrarily_far(net: Net) -> None:
    core, _ = net.started(3)
    far = net.certificate([0, 1, 2], VoteKind.NULLIFY, MAX_VIEW_JUMP + 5, 0, ZERO_DIGEST)
    assert _receive(core, 0, far) == [] and core.view == 1
    near = net.certificate([0, 1, 2], VoteKind.NULLIFY, 5000, 0, ZERO_DIGEST)
    _receive(core, 0, near)
    assert core.view == 5001


# ---- 6. useless fetch answers change nothing -----------------------------------------


def test_an_empty_or_unasked_block_response_starts_no_new_fetch(net: Net) -> None:
    (p1,), _ = _notarized_chain(net, 1)
    final = net.certificate([0, 1, 2], VoteKind.FINALIZE, 1, 1, p1.block.digest())
    core, _ = net.started(3)
    (fetch,) = _of(_receive(core, 0, final), Fetch)
    assert fetch.request == BlockRequest(p1.block.digest(), 1)
    stranger = net.proposal(view=7, payload=b"ok-x").block
    for junk in (BlockResponse([]), BlockResponse([stranger])) * 50:
        assert _receive(core, 2, junk) == []
    actions = _receive(core, 2, BlockResponse([p1.block]))
    assert [c.block for c in _of(actions, Commit)] == [p1.block]


# ---- 7. the verifier stands on its own ----------------------------------------------


def test_check_certificate_refuses_a_signer_counted_twice(net: Net) -> None:
    vote = net.vote(0, VoteKind.NULLIFY, 3, 0, ZERO_DIGEST)
    repeated = Certificate(VoteKind.NULLIFY, 3, 0, ZERO_DIGEST, [0, 0, 0], [vote.signature] * 3)
    assert not net.verifier.check_certificate(net.validators, repeated)
    unordered = net.certificate([0, 1, 2], VoteKind.NULLIFY, 3, 0, ZERO_DIGEST)
    shuffled = Certificate(
        unordered.kind,
        3,
        0,
        ZERO_DIGEST,
        [1, 0, 2],
        [unordered.signatures[1], unordered.signatures[0], unordered.signatures[2]],
    )
    assert not net.verifier.check_certificate(net.validators, shuffled)
    assert net.verifier.check_certificate(net.validators, unordered)


# ---- 8. restarts resume ---------------------------------------------------------------


def test_a_restarted_leader_proposes_on_the_finalization_of_its_tip(net: Net) -> None:
    proposals, _ = _notarized_chain(net, 3)
    tip = proposals[-1].block
    final = net.certificate([0, 1, 2], VoteKind.FINALIZE, 3, 3, tip.digest())
    leader = net.validators.leader(View(4))
    core = net.core(leader)
    actions = core.handle(
        Start(None, CommittedTip(Height(3), Digest(tip.digest()), View(3)), (), final)
    )
    assert _of(actions, BuildPayload) == [BuildPayload(View(4), Height(4), Digest(tip.digest()))]


def test_a_late_certificate_lets_a_stuck_leader_propose(net: Net) -> None:
    (p1,), (n1,) = _notarized_chain(net, 1)
    leader = net.validators.leader(View(4))
    core, _ = net.started(leader)
    # We reach view 4 through the nullification of view 3 alone: views 1 and 2 are unknown.
    actions = _receive(core, 0, net.certificate([0, 1, 2], VoteKind.NULLIFY, 3, 0, ZERO_DIGEST))
    assert core.view == 4 and _of(actions, BuildPayload) == []
    (fetch,) = _of(actions, Fetch)
    assert fetch.request == CertificateRequest(first_view=1, last_view=2)
    _receive(core, 1, p1)
    actions = _receive(core, 0, CertificateResponse([n1, _nullification(net, 2)]))
    expected = BuildPayload(View(4), Height(2), Digest(p1.block.digest()))
    assert _of(actions, BuildPayload) == [expected]


def test_a_vote_persisted_before_a_crash_is_sent_after_the_restart(net: Net) -> None:
    core, _ = net.started(2)
    proposal = net.proposal(view=1)
    digest = proposal.block.digest()
    _receive(core, 1, proposal)
    actions = core.handle(PayloadVerified(View(1), Digest(digest), True))
    (sent,) = _votes(actions)
    # kill -9 after the Persist, before the Broadcast: restart from the record.
    restarted = net.core(2, stored_block=lambda d: proposal.block if d == digest else None)
    actions = restarted.handle(
        Start(core.record, CommittedTip(Height(0), net.genesis.digest(), View(0)))
    )
    assert _votes(actions) == [sent]  # the very same bytes: deterministic signing


def test_a_proposal_persisted_before_a_crash_is_sent_after_the_restart(net: Net) -> None:
    core, _ = net.started(1)
    actions = core.handle(PayloadBuilt(View(1), b"ok-1"))
    (proposal,) = [a.message for a in _of(actions, Broadcast) if isinstance(a.message, Proposal)]
    block = proposal.block
    restarted = net.core(1, stored_block=lambda d: block if d == block.digest() else None)
    actions = restarted.handle(
        Start(core.record, CommittedTip(Height(0), net.genesis.digest(), View(0)))
    )
    assert [a.message for a in _of(actions, Broadcast)] == [proposal]


# ---- leaders by weight ---------------------------------------------------------------


def test_leaders_rotate_in_proportion_to_weight() -> None:
    schedule = leader_schedule([5, 1, 1, 1, 2])
    assert len(schedule) == 10
    assert [schedule.count(i) for i in range(5)] == [5, 1, 1, 1, 2]
    assert all(a != b or a == 0 for a, b in itertools.pairwise(schedule))
    assert leader_schedule([7, 7, 7, 7]) == (0, 1, 2, 3)  # equal weights: round robin
    assert leader_schedule([10**18, 3 * 10**18]) == (1, 0, 1, 1)


def test_config_rejects_a_bad_backoff() -> None:
    with pytest.raises(ValueError):
        ConsensusConfig(max_backoff_steps=-1)
    with pytest.raises(ValueError):
        ConsensusConfig(max_backoff_steps=40)
