"""Unit tests of the consensus state machine, one rule at a time."""

from __future__ import annotations

from consensus.core import ConsensusCore
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
    Persist,
    ReportEvidence,
    SafetyRecord,
    Send,
    SetTimer,
    Start,
    StoreCertificate,
    TimerFired,
    VerifyPayload,
)
from consensus.messages import BlockResponse, Proposal, Vote, VoteKind
from consensus.types import ZERO_DIGEST, Digest, Height, ValidatorIndex, View
from tests.consensus.conftest import Net


def _of(actions: list[Action], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def _votes(actions: list[Action]) -> list[Vote]:
    return [a.message for a in _of(actions, Broadcast) if isinstance(a.message, Vote)]


def _receive(core: ConsensusCore, sender: int, message: object) -> list[Action]:
    return core.handle(MessageReceived(ValidatorIndex(sender), message))  # type: ignore[arg-type]


def test_leader_of_view_one_builds_then_persists_before_proposing(net: Net) -> None:
    core, actions = net.started(1)  # view 1's leader is validator 1 (round robin)
    assert SetTimer(View(1), 500) in actions  # the first retry tick of a 1000 ms view
    build = _of(actions, BuildPayload)
    assert build == [BuildPayload(View(1), Height(1), Digest(net.genesis.digest()))]
    actions = core.handle(PayloadBuilt(View(1), b"ok-1"))
    kinds = [type(a) for a in actions]
    assert kinds.index(Persist) < kinds.index(Broadcast)
    proposal = _of(actions, Broadcast)[0].message
    assert isinstance(proposal, Proposal) and proposal.block.payload == b"ok-1"
    assert core.record == SafetyRecord(view=1, notarized=proposal.block.digest())
    # A second payload for the same view is never proposed.
    assert core.handle(PayloadBuilt(View(1), b"ok-2")) == []


def test_voter_checks_payload_then_persists_before_voting(net: Net) -> None:
    core, _ = net.started(2)
    proposal = net.proposal(view=1)
    actions = _receive(core, 1, proposal)
    assert _of(actions, VerifyPayload) == [VerifyPayload(View(1), proposal.block)]
    assert _votes(actions) == []  # nothing is signed before the payload is checked
    digest = proposal.block.digest()
    actions = core.handle(PayloadVerified(View(1), Digest(digest), True))
    kinds = [type(a) for a in actions]
    assert kinds.index(Persist) < kinds.index(Broadcast)
    (vote,) = _votes(actions)
    assert (vote.kind, vote.view, vote.block, vote.signer) == (VoteKind.NOTARIZE, 1, digest, 2)
    # The same proposal again, or a verification answer again: no second vote.
    assert _votes(_receive(core, 1, proposal)) == []
    assert _votes(core.handle(PayloadVerified(View(1), Digest(digest), True))) == []


def test_invalid_payload_gets_no_vote(net: Net) -> None:
    core, _ = net.started(2)
    proposal = net.proposal(view=1)
    _receive(core, 1, proposal)
    actions = core.handle(PayloadVerified(View(1), Digest(proposal.block.digest()), False))
    assert actions == []
    assert core.record.view == 0


def test_proposal_from_a_non_leader_or_with_a_bad_signature_is_ignored(net: Net) -> None:
    core, _ = net.started(2)
    good = net.proposal(view=1)
    forged = Proposal(
        good.block, net.vote(3, VoteKind.NOTARIZE, 1, 1, b"\x00" * 32).signature, None, []
    )
    assert _receive(core, 3, forged) == []
    wrong_height = net.proposal(view=1, height=1)
    not_leader_block = wrong_height.block.__class__(1, 1, net.genesis.digest(), 3, b"ok")
    sig = net.vote(3, VoteKind.NOTARIZE, 1, 1, not_leader_block.digest()).signature
    assert _receive(core, 3, Proposal(not_leader_block, sig, None, [])) == []


def test_quorum_of_notarize_votes_finalizes_and_moves_on(net: Net) -> None:
    core, _ = net.started(2)
    proposal = net.proposal(view=1)
    digest = proposal.block.digest()
    _receive(core, 1, proposal)
    core.handle(PayloadVerified(View(1), Digest(digest), True))
    actions = _receive(core, 0, net.vote(0, VoteKind.NOTARIZE, 1, 1, digest))
    # leader (1) + us (2) + 0 = 3 = 2f+1: a notarization forms, is stored and forwarded,
    # our finalize vote is persisted before it is sent, and we enter view 2.
    certs = [a.certificate for a in _of(actions, StoreCertificate)]
    assert [(c.kind, c.view, c.signers) for c in certs] == [(VoteKind.NOTARIZE, 1, [0, 1, 2])]
    (finalize,) = [v for v in _votes(actions) if v.kind == VoteKind.FINALIZE]
    assert finalize.block == digest
    sent_at = actions.index(Broadcast(finalize))
    persisted_at = actions.index(Persist(SafetyRecord(view=1, notarized=digest, finalized=True)))
    assert persisted_at < sent_at
    assert core.view == 2 and SetTimer(View(2), 500) in actions
    # Two more finalize votes make a finalization: the block commits.
    _receive(core, 0, net.vote(0, VoteKind.FINALIZE, 1, 1, digest))
    actions = _receive(core, 1, net.vote(1, VoteKind.FINALIZE, 1, 1, digest))
    commits = _of(actions, Commit)
    assert [c.block for c in commits] == [proposal.block]
    assert core.committed.height == 1


def _time_out(core: ConsensusCore, view: int) -> list[Action]:
    """Fire the view's timer until its deadline passes (retry ticks come first)."""
    for _ in range(10):
        actions = core.handle(TimerFired(View(view)))
        if any(v.kind == VoteKind.NULLIFY for v in _votes(actions)):
            return actions
    raise AssertionError("the view never timed out")


def test_timeout_nullifies_and_then_never_finalizes(net: Net) -> None:
    core, _ = net.started(2)
    assert _votes(core.handle(TimerFired(View(1)))) == []  # a retry tick, before the deadline
    actions = _time_out(core, 1)
    (nullify,) = _votes(actions)
    assert nullify.kind == VoteKind.NULLIFY and core.record.nullified
    assert [type(a) for a in actions].index(Persist) < [type(a) for a in actions].index(Broadcast)
    # A notarization for view 1 arrives late: we move on but must not finalize.
    proposal = net.proposal(view=1)
    cert = net.certificate([0, 1, 3], VoteKind.NOTARIZE, 1, 1, proposal.block.digest())
    actions = _receive(core, 0, cert)
    assert [v for v in _votes(actions) if v.kind == VoteKind.FINALIZE] == []
    assert core.view == 2


def test_finalized_view_is_never_nullified_even_after_restart(net: Net) -> None:
    core, _ = net.started(2)
    proposal = net.proposal(view=1)
    cert = net.certificate([0, 1, 3], VoteKind.NOTARIZE, 1, 1, proposal.block.digest())
    _receive(core, 0, cert)
    assert core.record.finalized and core.record.view == 1
    # Crash before anything else was written; restart from the record in view 1.
    restarted = net.core(2)
    restarted.handle(Start(core.record, CommittedTip(Height(0), net.genesis.digest(), View(0))))
    actions = restarted.handle(TimerFired(View(1)))
    assert [v for v in _votes(actions) if v.kind == VoteKind.NULLIFY] == []


def test_restart_never_votes_twice_in_a_view(net: Net) -> None:
    core, _ = net.started(2)
    first = net.proposal(view=1, payload=b"ok-a")
    _receive(core, 1, first)
    core.handle(PayloadVerified(View(1), Digest(first.block.digest()), True))
    record = core.record
    restarted = net.core(2)
    restarted.handle(Start(record, CommittedTip(Height(0), net.genesis.digest(), View(0))))
    second = net.proposal(view=1, payload=b"ok-b")  # the leader equivocates
    actions = _receive(restarted, 1, second)
    assert _of(actions, VerifyPayload) == []
    actions = restarted.handle(PayloadVerified(View(1), Digest(second.block.digest()), True))
    assert _votes(actions) == []


def test_restarted_leader_does_not_propose_again(net: Net) -> None:
    core, _ = net.started(1)
    core.handle(PayloadBuilt(View(1), b"ok-1"))
    restarted = net.core(1)
    actions = restarted.handle(
        Start(core.record, CommittedTip(Height(0), net.genesis.digest(), View(0)))
    )
    assert _of(actions, BuildPayload) == []


def test_double_vote_is_kept_as_evidence(net: Net) -> None:
    core, _ = net.started(2)
    a = net.vote(3, VoteKind.NOTARIZE, 1, 1, b"\x0a" * 32)
    b = net.vote(3, VoteKind.NOTARIZE, 1, 1, b"\x0b" * 32)
    _receive(core, 3, a)
    actions = _receive(core, 3, b)
    (report,) = _of(actions, ReportEvidence)
    assert report.evidence.offender == 3
    assert {report.evidence.first, report.evidence.second} == {a, b}
    nullify = net.vote(0, VoteKind.NULLIFY, 1, 0, ZERO_DIGEST)
    finalize = net.vote(0, VoteKind.FINALIZE, 1, 1, b"\x0a" * 32)
    _receive(core, 0, nullify)
    (report,) = _of(_receive(core, 0, finalize), ReportEvidence)
    assert report.evidence.reason == "finalized a view it nullified"
    assert len(core.evidence) == 2


def test_bad_signatures_and_impersonation_change_nothing(net: Net) -> None:
    core, _ = net.started(2)
    real = net.vote(3, VoteKind.NULLIFY, 1, 0, ZERO_DIGEST)
    impersonated = Vote(real.kind, real.view, real.height, real.block, 0, real.signature)
    broken = Vote(real.kind, real.view, real.height, real.block, 3, b"\x01" * 65)
    for message in (impersonated, broken):
        assert _receive(core, 3, message) == []
    assert 1 not in core._votes or core._votes[1].nullify == {}


def test_certificate_without_quorum_or_with_a_bad_signature_is_ignored(net: Net) -> None:
    core, _ = net.started(2)
    small = net.certificate([0, 1], VoteKind.NULLIFY, 1, 0, ZERO_DIGEST)
    assert _receive(core, 0, small) == [] and core.view == 1
    good = net.certificate([0, 1, 3], VoteKind.NULLIFY, 1, 0, ZERO_DIGEST)
    forged = good.__class__(
        good.kind,
        good.view,
        good.height,
        good.block,
        good.signers,
        [*good.signatures[:2], good.signatures[0]],
    )
    assert _receive(core, 0, forged) == [] and core.view == 1
    actions = _receive(core, 0, good)
    assert core.view == 2 and _of(actions, StoreCertificate)


def test_far_future_votes_are_dropped(net: Net) -> None:
    core, _ = net.started(2)
    assert _receive(core, 3, net.vote(3, VoteKind.NULLIFY, 10_000, 0, ZERO_DIGEST)) == []
    assert 10_000 not in core._votes


def test_stuck_peer_gets_the_certificates_that_moved_us_on(net: Net) -> None:
    core, _ = net.started(2)
    cert = net.certificate([0, 1, 3], VoteKind.NULLIFY, 1, 0, ZERO_DIGEST)
    _receive(core, 0, cert)
    assert core.view == 2
    actions = _receive(core, 3, net.vote(3, VoteKind.NULLIFY, 1, 0, ZERO_DIGEST))
    assert [a for a in actions if isinstance(a, Send)] == [Send(ValidatorIndex(3), cert)]
    # Only once per view of ours: a flood of stale votes is not amplified.
    assert _of(_receive(core, 3, net.vote(3, VoteKind.NULLIFY, 1, 0, ZERO_DIGEST)), Send) == []


def test_missing_ancestors_are_fetched_and_committed_in_order(net: Net) -> None:
    # Blocks 1 and 2 were finalized while we were away; we hear only the finalization.
    p1 = net.proposal(view=1, payload=b"ok-1")
    n1 = net.certificate([0, 1, 2], VoteKind.NOTARIZE, 1, 1, p1.block.digest())
    p2 = net.proposal(view=2, payload=b"ok-2", parent=n1)
    fin = net.certificate([0, 1, 2], VoteKind.FINALIZE, 2, 2, p2.block.digest())
    core, _ = net.started(3)
    actions = _receive(core, 0, fin)
    (request,) = _of(actions, Fetch)
    assert request.request.digest == p2.block.digest() and request.request.max_count == 2
    # An unrelated block is ignored; the asked-for chain commits oldest first.
    stranger = net.proposal(view=5, payload=b"ok-x").block
    assert _of(_receive(core, 0, BlockResponse([stranger])), Commit) == []
    actions = _receive(core, 0, BlockResponse([p2.block, p1.block]))
    assert [c.block.height for c in _of(actions, Commit)] == [1, 2]


def test_block_request_is_answered_from_known_blocks(net: Net) -> None:
    core, _ = net.started(2)
    proposal = net.proposal(view=1)
    _receive(core, 1, proposal)
    from consensus.messages import BlockRequest

    actions = _receive(core, 3, BlockRequest(proposal.block.digest(), 5))
    assert actions == [Send(ValidatorIndex(3), BlockResponse([proposal.block]))]


def test_key_must_match_validator(net: Net) -> None:
    import pytest

    with pytest.raises(ValueError, match="does not belong"):
        ConsensusCore(
            validators=net.validators,
            me=ValidatorIndex(0),
            key=net.keys[1],
            genesis=net.genesis,
            verifier=net.verifier,
        )


def _committed_chain(net: Net, length: int) -> tuple[list, list]:  # type: ignore[type-arg]
    blocks, certs = [], []
    parent = None
    for view in range(1, length + 1):
        proposal = net.proposal(view=view, payload=f"ok-{view}".encode(), parent=parent)
        digest = proposal.block.digest()
        parent = net.certificate([0, 1, 2], VoteKind.NOTARIZE, view, view, digest)
        blocks.append(proposal.block)
        certs.append(net.certificate([0, 1, 2], VoteKind.FINALIZE, view, view, digest))
    return blocks, certs


def test_far_behind_validator_syncs_forward_by_height(net: Net) -> None:
    from consensus.limits import SYNC_GAP
    from consensus.messages import SyncRequest, SyncResponse
    from consensus.sync import answer_sync_request

    blocks, finals = _committed_chain(net, SYNC_GAP + 6)
    core, _ = net.started(3)
    actions = _receive(core, 0, finals[-1])
    (request,) = _of(actions, Fetch)
    assert request.request == SyncRequest(1, 64)
    response = answer_sync_request(
        request.request,
        lambda h: blocks[h - 1] if h <= len(blocks) else None,
        lambda h: finals[h - 1],
    )
    assert isinstance(response, SyncResponse) and len(response.blocks) == 64
    # A forged finalization is refused: nothing commits.
    forged = finals[63].__class__(
        finals[63].kind,
        finals[63].view,
        finals[63].height,
        finals[63].block,
        [0, 1, 2],
        [finals[0].signatures[0]] * 3,
    )
    assert _of(_receive(core, 0, SyncResponse(response.blocks, forged)), Commit) == []
    actions = _receive(core, 0, response)
    assert [c.block.height for c in _of(actions, Commit)][:3] == [1, 2, 3]
    # The remaining 6 blocks are close enough to fetch backwards from the finalization.
    assert core.committed.height == 64
    (follow_up,) = _of(actions, Fetch)
    assert follow_up.request.digest == blocks[-1].digest()


def test_sync_response_must_start_at_our_tip(net: Net) -> None:
    from consensus.messages import SyncResponse

    blocks, finals = _committed_chain(net, 3)
    core, _ = net.started(3)
    assert _of(_receive(core, 0, SyncResponse(blocks[1:], finals[-1])), Commit) == []
    assert core.committed.height == 0


def test_an_unanswered_fetch_is_asked_again_after_two_views_of_progress(net: Net) -> None:
    # Block 1 was finalized while we were away; the answer to our fetch is lost,
    # and the network keeps going without any timeout: we must ask again.
    p1 = net.proposal(view=1, payload=b"ok-1")
    n1 = net.certificate([0, 1, 2], VoteKind.NOTARIZE, 1, 1, p1.block.digest())
    fin1 = net.certificate([0, 1, 2], VoteKind.FINALIZE, 1, 1, p1.block.digest())
    core, _ = net.started(3)
    (first,) = _of(_receive(core, 0, fin1), Fetch)
    assert first.request.digest == p1.block.digest() and core.view == 2
    p2 = net.proposal(view=2, payload=b"ok-2", parent=n1)
    n2 = net.certificate([0, 1, 2], VoteKind.NOTARIZE, 2, 2, p2.block.digest())
    p3 = net.proposal(view=3, payload=b"ok-3", parent=n2)
    fin2 = net.certificate([0, 1, 2], VoteKind.FINALIZE, 2, 2, p2.block.digest())
    _receive(core, 2, p2)
    # Finalizing block 2 one view on needs block 1 again: the same request, not yet repeated.
    assert _of(_receive(core, 0, fin2), Fetch) == [] and core.view == 3
    n3 = net.certificate([0, 1, 2], VoteKind.NOTARIZE, 3, 3, p3.block.digest())
    fin3 = net.certificate([0, 1, 2], VoteKind.FINALIZE, 3, 3, p3.block.digest())
    _receive(core, 3, p3)
    _receive(core, 0, n3)
    again = _of(_receive(core, 0, fin3), Fetch)
    assert core.view == 4
    assert [a.request for a in again] == [first.request], "the lost fetch was not repeated"
