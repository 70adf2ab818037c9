"""Validator-set epochs: the schedule, per-epoch signing domains, an instance
built on an anchor, the empty tail above an epoch's last height, the end-of-epoch
proof, and the epoch-routed wire layer."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from consensus.core import ConsensusConfig, ConsensusCore, genesis_block
from consensus.encoding import Domain
from consensus.epochs import (
    Anchor,
    Epoch,
    EpochSchedule,
    InvalidEpochEnd,
    InvalidSchedule,
    epoch_domain_separator,
    verify_epoch_end,
)
from consensus.io import (
    Action,
    Broadcast,
    BuildPayload,
    Commit,
    CommittedTip,
    EpochEnded,
    EpochEndReceived,
    Fetch,
    MessageReceived,
    PayloadVerified,
    Send,
    Start,
    StoreCertificate,
    TimerFired,
    VerifyPayload,
)
from consensus.limits import MAX_EPOCH_TAIL_BLOCKS, MAX_MESSAGE_BYTES
from consensus.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Certificate,
    EpochEndProof,
    EpochEndRequest,
    EpochEnvelope,
    MalformedMessage,
    Proposal,
    Vote,
    VoteKind,
    decode_epoch_wire,
    decode_message,
    encode_epoch_wire,
    encode_message,
)
from consensus.sim.simulator import validator_key
from consensus.types import (
    ZERO_DIGEST,
    Digest,
    Height,
    Validator,
    ValidatorIndex,
    ValidatorSet,
    View,
)
from consensus.verifier import SignatureVerifier

GENESIS = genesis_block(b"epochs-test")
CHAIN_SEPARATOR = Domain(31337, bytes(20), GENESIS.digest()).separator()
KEYS = [validator_key(i) for i in range(5)]
ANCHOR = Anchor(Digest(b"\x0a" * 32), Height(10))
LAST = 11  # epoch 1 holds heights 11..11: one block, then the tail


def _set(machines: list[int]) -> ValidatorSet:
    return ValidatorSet([Validator(KEYS[m].address, 1) for m in machines])


@dataclass
class EpochNet:
    """Epoch `number` of four validators (machines 0..3), built on ANCHOR."""

    number: int
    validators: ValidatorSet
    verifier: SignatureVerifier
    last_height: int | None = LAST

    def core(self, index: int) -> ConsensusCore:
        return ConsensusCore(
            validators=self.validators,
            me=ValidatorIndex(index),
            key=KEYS[index],
            verifier=self.verifier,
            anchor=ANCHOR,
            last_height=self.last_height,
            epoch=self.number,
            config=ConsensusConfig(view_timeout_ms=1000, retry_ms=500),
        )

    def started(self, index: int) -> tuple[ConsensusCore, list[Action]]:
        core = self.core(index)
        tip = CommittedTip(ANCHOR.height, ANCHOR.digest, View(57))  # the anchor's old view
        return core, core.handle(Start(None, tip))

    def vote(self, signer: int, kind: VoteKind, view: int, height: int, block: bytes) -> Vote:
        digest = self.verifier.vote_digest(kind, view, height, block)
        return Vote(kind, view, height, block, signer, KEYS[signer].sign_digest(digest))

    def certificate(
        self, signers: list[int], kind: VoteKind, view: int, height: int, block: bytes
    ) -> Certificate:
        votes = [self.vote(i, kind, view, height, block) for i in sorted(signers)]
        return Certificate(kind, view, height, block, sorted(signers), [v.signature for v in votes])

    def proposal(
        self, view: int, payload: bytes, parent: Certificate | None = None, height: int = 0
    ) -> Proposal:
        leader = self.validators.leader(View(view))
        parent_digest = ANCHOR.digest if parent is None else parent.block
        h = height or (ANCHOR.height + 1 if parent is None else parent.height + 1)
        block = Block(view, h, parent_digest, leader, payload)
        signature = self.vote(leader, VoteKind.NOTARIZE, view, h, block.digest()).signature
        return Proposal(block, signature, parent, [])


def _epoch(number: int) -> EpochNet:
    verifier = SignatureVerifier(epoch_domain_separator(CHAIN_SEPARATOR, number))
    return EpochNet(number, _set([0, 1, 2, 3]), verifier)


def _of(actions: list[Action], kind: type) -> list:  # type: ignore[type-arg]
    return [a for a in actions if isinstance(a, kind)]


def _receive(core: ConsensusCore, sender: int, message: object) -> list[Action]:
    return core.handle(MessageReceived(ValidatorIndex(sender), message))  # type: ignore[arg-type]


def _last_and_tail(net: EpochNet) -> tuple[Block, Certificate, Block, Certificate]:
    """Block 11 (view 1, the epoch's last) notarized; tail block 12 (view 2) finalized."""
    last = net.proposal(1, b"ok-last").block
    notarized = net.certificate([0, 1, 2], VoteKind.NOTARIZE, 1, 11, last.digest())
    tail = net.proposal(2, b"", parent=notarized).block
    finalized = net.certificate([0, 1, 2], VoteKind.FINALIZE, 2, 12, tail.digest())
    return last, notarized, tail, finalized


# ---- the schedule ---------------------------------------------------------------------


def _schedule() -> EpochSchedule:
    return EpochSchedule(
        [
            Epoch(0, Height(1), _set([0, 1, 2, 3])),
            Epoch(1, Height(11), _set([0, 1, 2, 3, 4])),
            Epoch(2, Height(21), _set([1, 2, 3, 4])),
        ]
    )


def test_schedule_maps_heights_to_epochs_and_epochs_to_their_last_height() -> None:
    schedule = _schedule()
    assert [schedule.epoch_of(h).number for h in (1, 10, 11, 20, 21, 10**9)] == [0, 0, 1, 1, 2, 2]
    assert len(schedule.validators_for(15)) == 5
    assert [schedule.last_height(e) for e in range(3)] == [10, 20, None]
    with pytest.raises(ValueError):
        schedule.epoch_of(0)
    with pytest.raises(KeyError):
        schedule.last_height(3)


@pytest.mark.parametrize(
    ("epochs", "reason"),
    [
        ([], "at least one epoch"),
        ([Epoch(0, Height(2), _set([0]))], "start at height 1"),
        ([Epoch(0, Height(1), _set([0])), Epoch(1, Height(1), _set([1]))], "not above"),
        ([Epoch(0, Height(1), _set([0])), Epoch(1, Height(0), _set([1]))], "not above"),
        ([Epoch(0, Height(1), _set([0])), Epoch(2, Height(5), _set([1]))], "numbered"),
    ],
)
def test_schedule_refuses_a_broken_order(epochs: list[Epoch], reason: str) -> None:
    with pytest.raises(InvalidSchedule, match=reason):
        EpochSchedule(epochs)


def test_each_epoch_signs_in_its_own_domain_and_epoch_zero_in_the_chains() -> None:
    separators = [epoch_domain_separator(CHAIN_SEPARATOR, e) for e in range(4)]
    assert separators[0] == CHAIN_SEPARATOR
    assert len(set(separators)) == 4
    other_chain = Domain(1, bytes(20), GENESIS.digest()).separator()
    assert epoch_domain_separator(other_chain, 1) != separators[1]


# ---- an instance built on an anchor -----------------------------------------------------


def test_the_first_block_of_an_epoch_extends_the_anchor_at_its_height() -> None:
    net = _epoch(1)
    core, actions = net.started(1)  # leader of view 1; the anchor's old view is ignored
    assert core.view == 1 and core.committed == CommittedTip(ANCHOR.height, ANCHOR.digest, View(0))
    assert _of(actions, BuildPayload) == [BuildPayload(View(1), Height(11), ANCHOR.digest)]


def test_a_parentless_proposal_at_another_height_than_above_the_anchor_gets_no_vote() -> None:
    net = _epoch(1)
    core, _ = net.started(2)
    assert _of(_receive(core, 1, net.proposal(1, b"ok", height=1)), VerifyPayload) == []
    assert _of(_receive(core, 1, net.proposal(1, b"ok")), VerifyPayload) != []


def test_the_core_refuses_an_anchor_above_the_last_height_and_two_starts() -> None:
    net = _epoch(1)
    with pytest.raises(ValueError, match="above its anchor"):
        ConsensusCore(
            validators=net.validators,
            me=ValidatorIndex(0),
            key=KEYS[0],
            verifier=net.verifier,
            anchor=ANCHOR,
            last_height=10,
        )
    with pytest.raises(ValueError, match="exactly one"):
        ConsensusCore(
            validators=net.validators,
            me=ValidatorIndex(0),
            key=KEYS[0],
            verifier=net.verifier,
            anchor=ANCHOR,
            genesis=GENESIS,
        )


# ---- the tail ---------------------------------------------------------------------------


def test_a_leader_above_the_last_height_proposes_an_empty_block_without_the_builder() -> None:
    net = _epoch(1)
    core, _ = net.started(2)  # validator 2 leads view 2
    last, notarized, _, _ = _last_and_tail(net)
    _receive(core, 1, net.proposal(1, b"ok-last"))
    actions = _receive(core, 0, notarized)
    assert _of(actions, BuildPayload) == []
    proposals = [a.message for a in _of(actions, Broadcast) if isinstance(a.message, Proposal)]
    assert len(proposals) == 1
    block = proposals[0].block
    assert (block.view, block.height, block.parent, block.payload) == (2, 12, last.digest(), b"")


def test_voters_take_only_empty_tail_blocks_and_do_not_ask_the_application() -> None:
    net = _epoch(1)
    _, notarized, _, _ = _last_and_tail(net)
    with_payload = net.proposal(2, b"ok-more", parent=notarized)
    empty = net.proposal(2, b"", parent=notarized)
    core, _ = net.started(3)
    _receive(core, 0, notarized)
    actions = _receive(core, 2, with_payload)
    assert _of(actions, VerifyPayload) == [] and _of(actions, Broadcast) == []
    core, _ = net.started(3)
    _receive(core, 0, notarized)
    actions = _receive(core, 2, empty)
    assert _of(actions, VerifyPayload) == []
    votes = [a.message for a in _of(actions, Broadcast) if isinstance(a.message, Vote)]
    assert [(v.kind, v.height, v.block) for v in votes] == [
        (VoteKind.NOTARIZE, 12, empty.block.digest())
    ]


def test_the_epoch_ends_at_its_last_block_and_never_commits_the_tail() -> None:
    net = _epoch(1)
    core, _ = net.started(3)
    last, notarized, tail, finalized = _last_and_tail(net)
    _receive(core, 1, net.proposal(1, b"ok-last"))
    core.handle(PayloadVerified(View(1), last.digest(), True))
    _receive(core, 0, notarized)
    _receive(core, 2, net.proposal(2, b"", parent=notarized))
    actions = _receive(core, 0, finalized)
    assert [a.block for a in _of(actions, Commit)] == [last]
    (ended,) = _of(actions, EpochEnded)
    assert isinstance(ended, EpochEnded) and isinstance(actions[-1], EpochEnded)
    assert (ended.last_block, ended.height) == (last.digest(), LAST)
    proof = ended.proof
    assert proof.finalization == finalized and proof.tail == [tail]
    assert (
        verify_epoch_end(
            proof, epoch=1, last_height=LAST, validators=net.validators, verifier=net.verifier
        )
        == last.digest()
    )
    # It stops acting: votes and timers do nothing; laggards' fetches are answered.
    assert _receive(core, 1, net.vote(1, VoteKind.NULLIFY, 3, 0, ZERO_DIGEST)) == []
    assert core.handle(TimerFired(View(3))) == []
    answer = _receive(core, 1, BlockRequest(digest=tail.digest(), max_count=2))
    # (the committed block itself is served from the store, which this core lacks)
    assert answer == [Send(ValidatorIndex(1), BlockResponse(blocks=[tail]))]


def test_a_finalization_of_the_last_block_itself_ends_the_epoch_with_an_empty_tail() -> None:
    net = _epoch(1)
    core, _ = net.started(3)
    last = net.proposal(1, b"ok-last")
    _receive(core, 1, last)
    final = net.certificate([0, 1, 2], VoteKind.FINALIZE, 1, 11, last.block.digest())
    actions = _receive(core, 0, final)
    assert [a.block for a in _of(actions, Commit)] == [last.block]
    (ended,) = _of(actions, EpochEnded)
    assert ended.proof.tail == [] and ended.last_block == last.block.digest()


def test_a_restart_on_the_last_block_ends_the_epoch_without_committing_again() -> None:
    net = _epoch(1)
    last, _, tail, finalized = _last_and_tail(net)
    core = net.core(0)
    tip = CommittedTip(Height(11), last.digest(), View(1))
    core._remember_block(tail, tail.digest())  # held, as in the store
    actions = core.handle(Start(None, tip, (), finalized))
    assert _of(actions, Commit) == []
    (ended,) = _of(actions, EpochEnded)
    assert ended.proof.tail == [tail] and ended.last_block == last.digest()


def test_a_laggard_catches_up_to_the_epochs_end_from_a_peers_proof() -> None:
    net = _epoch(1)
    last, _, tail, finalized = _last_and_tail(net)
    proof = EpochEndProof(epoch=1, last_height=LAST, finalization=finalized, tail=[tail])
    core, _ = net.started(3)
    actions = core.handle(EpochEndReceived(proof))
    assert [a.request for a in _of(actions, Fetch)] == [BlockRequest(last.digest(), 1)]
    actions = _receive(core, 0, BlockResponse(blocks=[last]))
    assert [a.block for a in _of(actions, Commit)] == [last]
    assert len(_of(actions, EpochEnded)) == 1


# ---- the proof ----------------------------------------------------------------------------


def _proof(net: EpochNet) -> tuple[EpochEndProof, Block, Block]:
    last, _, tail, finalized = _last_and_tail(net)
    return EpochEndProof(epoch=1, last_height=LAST, finalization=finalized, tail=[tail]), last, tail


def _verify(net: EpochNet, proof: EpochEndProof) -> Digest:
    return verify_epoch_end(
        proof, epoch=1, last_height=LAST, validators=net.validators, verifier=net.verifier
    )


def test_verify_epoch_end_refuses_every_broken_proof() -> None:
    net = _epoch(1)
    proof, last, tail = _proof(net)
    assert _verify(net, proof) == last.digest()
    final = proof.finalization
    stuffed = Block(tail.view, tail.height, tail.parent, tail.proposer, b"ok-stuffed")
    stuffed_final = net.certificate([0, 1, 2], VoteKind.FINALIZE, 2, 12, stuffed.digest())
    other_epoch = _epoch(0).certificate([0, 1, 2], VoteKind.FINALIZE, 2, 12, tail.digest())
    nullify = net.certificate([0, 1, 2], VoteKind.NULLIFY, 2, 0, ZERO_DIGEST)
    minority = net.certificate([0, 1], VoteKind.FINALIZE, 2, 12, tail.digest())
    forged = Block(tail.view, tail.height, bytes(32), tail.proposer, b"")  # another parent
    broken = {
        "names epoch": EpochEndProof(2, LAST, final, [tail]),
        "last height": EpochEndProof(1, LAST + 1, final, [tail]),
        "tail has 0": EpochEndProof(1, LAST, final, []),
        "carries a payload": EpochEndProof(1, LAST, stuffed_final, [stuffed]),
        "does not verify": EpochEndProof(1, LAST, other_epoch, [tail]),
        "not a finalization": EpochEndProof(1, LAST, nullify, []),
        "does not verify ": EpochEndProof(1, LAST, minority, [tail]),
        "not on the certified chain": EpochEndProof(1, LAST, final, [forged]),
    }
    for reason, bad in broken.items():
        with pytest.raises(InvalidEpochEnd, match=reason.strip()):
            _verify(net, bad)


# ---- replay across epochs -------------------------------------------------------------------


def test_votes_and_certificates_of_one_epoch_count_for_nothing_in_the_next() -> None:
    old, new = _epoch(0), _epoch(1)
    replayed = [old.vote(i, VoteKind.NULLIFY, 1, 0, ZERO_DIGEST) for i in (0, 1, 2)]
    core, _ = new.started(3)
    actions = [a for v in replayed for a in _receive(core, v.signer, v)]
    assert _of(actions, StoreCertificate) == [] and core.view == 1
    old_cert = old.certificate([0, 1, 2], VoteKind.NULLIFY, 1, 0, ZERO_DIGEST)
    assert _of(_receive(core, 0, old_cert), StoreCertificate) == [] and core.view == 1
    # The same votes cast in this epoch do form a nullification: the check can fail.
    fresh = [new.vote(i, VoteKind.NULLIFY, 1, 0, ZERO_DIGEST) for i in (0, 1, 2)]
    actions = [a for v in fresh for a in _receive(core, v.signer, v)]
    assert len(_of(actions, StoreCertificate)) == 1 and core.view == 2


# ---- the epoch wire layer -------------------------------------------------------------------


def test_epoch_wire_messages_round_trip_and_are_bounded_before_decoding() -> None:
    net = _epoch(1)
    proof, _, _ = _proof(net)
    inner = encode_message(net.vote(0, VoteKind.NULLIFY, 1, 0, ZERO_DIGEST))
    for item in (EpochEnvelope(epoch=1, message=inner), proof, EpochEndRequest(epoch=3)):
        assert decode_epoch_wire(encode_epoch_wire(item)) == item
    with pytest.raises(MalformedMessage, match="exceeds"):
        decode_epoch_wire(b"\x00" * (MAX_MESSAGE_BYTES + 65))
    with pytest.raises(MalformedMessage):
        decode_epoch_wire(encode_message(net.vote(0, VoteKind.NULLIFY, 1, 0, ZERO_DIGEST)))
    too_long = EpochEndProof(1, LAST, proof.finalization, proof.tail * (MAX_EPOCH_TAIL_BLOCKS + 1))
    with pytest.raises(MalformedMessage):
        decode_epoch_wire(encode_epoch_wire(too_long))


def test_only_an_anchored_epoch_accepts_a_parentless_proposal_above_height_one() -> None:
    data = encode_message(_epoch(1).proposal(1, b"ok"))  # height 11, no parent certificate
    with pytest.raises(MalformedMessage, match="omit its parent"):
        decode_message(data)
    assert isinstance(decode_message(data, anchored=True), Proposal)
