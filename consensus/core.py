"""The consensus state machine: a Simplex-style, rotating-leader BFT protocol.

`ConsensusCore.handle(event) -> list[Action]` is the whole interface. The core
owns no socket, clock, thread or random source; the driver turns network bytes
into `MessageReceived`, timers into `TimerFired`, and carries out the actions
in order. docs/consensus.md gives the protocol, its safety and liveness
argument, and what is persisted when; the `# [S..]` tags below cite its rules.

The protocol, in one paragraph: views 1, 2, 3, ... each have a leader. The
leader proposes a block extending the highest notarized block it knows whose
later views were all nullified [S1]. A validator notarizes (votes for) the
first valid proposal of its current view [S2]. 2f+1 notarize votes form a
notarization; on seeing one a validator that has not nullified the view sends
a finalize vote and moves to the next view [S3]. A validator whose view timer
fires nullifies the view, and never finalizes in it afterwards [S4]. 2f+1
nullify votes form a nullification, which also moves everyone to the next
view. 2f+1 finalize votes form a finalization, which commits the block and
its ancestors [S5]. Every certificate a validator learns is forwarded once, so
honest validators enter each view within one message delay of each other [L1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.crypto import PrivateKey
from consensus.io import (
    Action,
    Broadcast,
    BuildPayload,
    Commit,
    CommittedTip,
    Event,
    Evidence,
    MessageReceived,
    PayloadBuilt,
    PayloadVerified,
    Persist,
    ReportEvidence,
    RequestBlocks,
    SafetyRecord,
    Send,
    SetTimer,
    Start,
    StoreBlock,
    StoreCertificate,
    TimerFired,
    VerifyPayload,
)
from consensus.limits import (
    MAX_BLOCKS_PER_RESPONSE,
    MAX_EVIDENCE,
    MAX_FUTURE_VIEWS,
    MAX_PAYLOAD_BYTES,
    MAX_PENDING_BLOCKS,
    MAX_SKIPPED_VIEWS,
    SYNC_GAP,
)
from consensus.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Certificate,
    Proposal,
    SyncRequest,
    SyncResponse,
    Vote,
    VoteKind,
)
from consensus.types import ZERO_DIGEST, Digest, Height, ValidatorIndex, ValidatorSet, View
from consensus.verifier import SignatureVerifier

FETCH_RETRY_VIEWS = 2
"""An unanswered block fetch is repeated once the validator has moved this many views on."""

TALLY_VIEWS_KEPT = 8
"""Views below the current one whose votes are still tallied: finalize votes for
view v arrive after the validator has moved to v+1."""


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    view_timeout_ms: int = 1000
    """How long a validator waits in a view for a notarization before nullifying it."""
    retry_ms: int = 1000
    """After a view timed out: how often to re-send this view's votes and the
    certificate that justifies it, so lost messages cannot stall the network."""

    def __post_init__(self) -> None:
        if self.view_timeout_ms <= 0 or self.retry_ms <= 0:
            raise ValueError("timeouts must be positive")


@dataclass(slots=True)
class _ViewVotes:
    notarize: dict[int, Vote] = field(default_factory=dict)
    nullify: dict[int, Vote] = field(default_factory=dict)
    finalize: dict[int, Vote] = field(default_factory=dict)


def genesis_block(payload: bytes) -> Block:
    """The block at height 0, view 0; every chain starts here. `payload` binds the
    genesis contents (validator set, chain id, initial state) into its digest."""
    return Block(view=0, height=0, parent=ZERO_DIGEST, proposer=0, payload=payload)


class ConsensusCore:
    """One validator's consensus state. Not thread-safe; feed events one at a time."""

    def __init__(
        self,
        *,
        validators: ValidatorSet,
        me: ValidatorIndex,
        key: PrivateKey,
        genesis: Block,
        verifier: SignatureVerifier,
        config: ConsensusConfig | None = None,
        stored_block: Callable[[Digest], Block | None] | None = None,
    ) -> None:
        if not validators.contains(me) or validators.address(me) != key.address:
            raise ValueError("the signing key does not belong to validator `me`")
        self.validators = validators
        self.me = me
        self.key = key
        self.genesis = genesis
        self.genesis_digest = genesis.digest()
        self.verifier = verifier
        self.config = config or ConsensusConfig()
        self._stored_block = stored_block
        self.view = View(0)
        self.record = SafetyRecord(view=0)
        self.committed = CommittedTip(Height(0), self.genesis_digest, View(0))
        self.evidence: list[Evidence] = []
        self._out: list[Action] = []
        self._votes: dict[int, _ViewVotes] = {}
        self._proposals: dict[int, Proposal] = {}
        self._blocks: dict[bytes, Block] = {}
        self._notarizations: dict[int, Certificate] = {}
        self._nullifications: dict[int, Certificate] = {}
        self._finalization: Certificate | None = None  # highest known
        self._verifying: dict[int, bytes] = {}  # view -> digest sent to VerifyPayload
        self._building: View | None = None
        self._building_parent: tuple[Certificate | None, list[Certificate]] | None = None
        self._wanted: BlockRequest | SyncRequest | None = None  # outstanding fetch
        self._wanted_at_view = 0
        self._answered_stale: dict[int, int] = {}  # peer -> our view when we last helped it
        self.started = False

    # ---- public interface --------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        self._out = []
        match event:
            case Start():
                self._on_start(event.safety, event.committed, event.certificates)
            case MessageReceived() if self.started:
                self._on_message(event.sender, event.message)
            case TimerFired() if self.started:
                self._on_timer(event.view)
            case PayloadBuilt() if self.started:
                self._on_payload_built(event.view, event.payload)
            case PayloadVerified() if self.started:
                self._on_payload_verified(event.view, event.block, event.valid)
            case _:
                pass  # events before Start are ignored: nothing is initialised yet
        return self._out

    def leader(self, view: int) -> ValidatorIndex:
        return self.validators.leader(View(view))

    def known_block(self, digest: bytes) -> Block | None:
        if digest == self.genesis_digest:
            return self.genesis
        block = self._blocks.get(digest)
        if block is None and self._stored_block is not None:
            block = self._stored_block(Digest(digest))
        return block

    @property
    def highest_finalization(self) -> Certificate | None:
        return self._finalization

    # ---- start and view changes ------------------------------------------------

    def _on_start(
        self,
        safety: SafetyRecord | None,
        committed: CommittedTip,
        certificates: tuple[Certificate, ...],
    ) -> None:
        self.started = True
        self.committed = committed
        if safety is not None:
            self.record = safety
        for cert in sorted(certificates, key=lambda c: (c.view, c.kind)):
            self._on_certificate(cert)
        start_view = max(self.record.view, committed.view + 1, 1)
        self._enter_view(View(start_view))

    def _enter_view(self, view: View) -> None:
        if view <= self.view:
            return
        self.view = view
        self._prune()
        self._out.append(SetTimer(view, self.config.view_timeout_ms))
        if self.leader(view) == self.me:
            self._try_propose()
        if view in self._proposals:
            self._consider_voting(view)

    def _prune(self) -> None:
        floor = self.view - TALLY_VIEWS_KEPT
        for v in [v for v in self._votes if v < floor]:
            del self._votes[v]
        for v in [v for v in self._proposals if v < floor]:
            del self._proposals[v]
        for v in [v for v in self._verifying if v < self.view]:
            del self._verifying[v]
        # Certificates below the highest finalization are never needed again: no
        # honest leader can extend a block finalized-over (docs/consensus.md, S5).
        if self._finalization is not None:
            fv = self._finalization.view
            for store in (self._notarizations, self._nullifications):
                for v in [v for v in store if v < fv]:
                    del store[v]

    # ---- proposing (leader) -------------------------------------------------------

    def _try_propose(self) -> None:
        view = self.view
        if self._building == view or self._voted_in(view):
            return
        chosen = self._select_parent(view)
        if chosen is None:
            return  # cannot justify a parent; the view will time out
        parent_cert, skipped = chosen
        height = Height(1 if parent_cert is None else parent_cert.height + 1)
        parent_digest = Digest(self.genesis_digest if parent_cert is None else parent_cert.block)
        self._building = view
        self._building_parent = (parent_cert, skipped)
        self._out.append(BuildPayload(view, height, parent_digest))

    def _select_parent(self, view: View) -> tuple[Certificate | None, list[Certificate]] | None:
        """[S1] The highest certified block below `view` such that every view in
        between has a nullification. None when a gap has no certificate."""
        skipped: list[Certificate] = []
        w = view - 1
        while True:
            if w == 0:
                return None, list(reversed(skipped))
            cert = self._notarizations.get(w)
            if cert is None and self._finalization is not None and self._finalization.view == w:
                cert = self._finalization
            if cert is not None:
                return cert, list(reversed(skipped))
            nullification = self._nullifications.get(w)
            if nullification is None or len(skipped) >= MAX_SKIPPED_VIEWS:
                return None
            skipped.append(nullification)
            w -= 1

    def _on_payload_built(self, view: View, payload: bytes) -> None:
        if view != self.view or self._building != view or self._building_parent is None:
            return
        if self._voted_in(view) or len(payload) > MAX_PAYLOAD_BYTES:
            return
        parent_cert, skipped = self._building_parent
        block = Block(
            view=view,
            height=1 if parent_cert is None else parent_cert.height + 1,
            parent=self.genesis_digest if parent_cert is None else parent_cert.block,
            proposer=self.me,
            payload=payload,
        )
        digest = block.digest()
        signature = self._sign(VoteKind.NOTARIZE, view, block.height, digest)
        proposal = Proposal(block=block, signature=signature, parent=parent_cert, skipped=skipped)
        # Persist, then act: the proposal is our notarize vote for this view.
        self._out.append(StoreBlock(block))
        self._persist(SafetyRecord(view=view, notarized=digest))
        self._out.append(Broadcast(proposal))
        self._accept_proposal(proposal, digest)

    # ---- messages -----------------------------------------------------------------

    def _on_message(self, sender: ValidatorIndex, message: object) -> None:
        match message:
            case Proposal():
                self._on_proposal(message)
            case Vote():
                self._on_vote(sender, message)
            case Certificate():
                self._on_certificate(message)
            case BlockRequest():
                self._on_block_request(sender, message)
            case BlockResponse():
                self._on_block_response(message)
            case SyncResponse():
                self._on_sync_response(message)
            case _:
                pass

    def _on_proposal(self, proposal: Proposal) -> None:
        block = proposal.block
        view = block.view
        if view < self.view - TALLY_VIEWS_KEPT or view > self.view + MAX_FUTURE_VIEWS:
            return
        # The attached certificates justify the view; learning them may move us to it.
        if proposal.parent is not None:
            self._on_certificate(proposal.parent)
        for cert in proposal.skipped:
            self._on_certificate(cert)
        if block.proposer != self.leader(view):
            return
        digest = block.digest()
        if not self.verifier.check_signature(
            self.validators,
            ValidatorIndex(block.proposer),
            VoteKind.NOTARIZE,
            view,
            block.height,
            digest,
            proposal.signature,
        ):
            return
        if proposal.parent is None and block.parent != self.genesis_digest:
            return
        self._accept_proposal(proposal, digest)

    def _accept_proposal(self, proposal: Proposal, digest: Digest) -> None:
        """Record a correctly signed proposal (ours or the leader's) and its vote."""
        block = proposal.block
        leader_vote = Vote(
            kind=VoteKind.NOTARIZE,
            view=block.view,
            height=block.height,
            block=digest,
            signer=block.proposer,
            signature=proposal.signature,
        )
        existing = self._proposals.get(block.view)
        if existing is not None:
            if existing.block != block:
                self._add_vote(leader_vote)  # records the leader's equivocation
            return
        self._proposals[block.view] = proposal
        self._remember_block(block, digest)
        self._add_vote(leader_vote)
        if block.view == self.view:
            self._consider_voting(self.view)

    def _consider_voting(self, view: View) -> None:
        """[S2] Ask the application to check the first proposal of our view if it
        extends a certified parent across nullified views only."""
        proposal = self._proposals.get(view)
        if proposal is None or view in self._verifying or self._voted_in(view):
            return
        block = proposal.block
        parent_view = 0 if proposal.parent is None else proposal.parent.view
        if proposal.parent is not None and not self._is_certified(proposal.parent):
            return
        if any(v not in self._nullifications for v in range(parent_view + 1, view)):
            return
        if block.proposer == self.me:
            return  # our own proposal is already our vote
        self._verifying[view] = block.digest()
        self._out.append(VerifyPayload(view, block))

    def _on_payload_verified(self, view: View, digest: Digest, valid: bool) -> None:
        if view != self.view or self._verifying.get(view) != digest or not valid:
            return
        if self._voted_in(view):
            return
        proposal = self._proposals[view]
        height = proposal.block.height
        self._out.append(StoreBlock(proposal.block))
        self._persist(SafetyRecord(view=view, notarized=digest))
        vote = self._make_vote(VoteKind.NOTARIZE, view, height, digest)
        self._out.append(Broadcast(vote))
        self._add_vote(vote)

    def _on_vote(self, sender: ValidatorIndex, vote: Vote) -> None:
        if vote.view < self.view - TALLY_VIEWS_KEPT:
            self._help_lagging_peer(sender, vote)
            return
        if vote.view > self.view + MAX_FUTURE_VIEWS:
            return
        if vote.view < self.view and vote.kind == VoteKind.NULLIFY:
            self._help_lagging_peer(sender, vote)
        if not self.verifier.check_vote(self.validators, vote):
            return
        self._add_vote(vote)

    def _help_lagging_peer(self, sender: ValidatorIndex, vote: Vote) -> None:
        """A nullify vote for a view we left means the sender is stuck there: send it
        the certificates that moved us on, once per peer per view of ours."""
        if vote.kind != VoteKind.NULLIFY or self._answered_stale.get(sender) == self.view:
            return
        self._answered_stale[sender] = self.view
        for cert in self._justification():
            self._out.append(Send(sender, cert))

    def _justification(self) -> list[Certificate]:
        """The highest finalization and the certificate of the view before ours."""
        certs: list[Certificate] = []
        if self._finalization is not None:
            certs.append(self._finalization)
        previous = self.view - 1
        cert = self._notarizations.get(previous) or self._nullifications.get(previous)
        if cert is not None and cert is not self._finalization:
            certs.append(cert)
        return certs

    # ---- vote tallies and certificates ------------------------------------------

    def _add_vote(self, vote: Vote) -> None:
        """Tally a vote whose signature is valid; detect equivocation; form certificates."""
        tally = self._votes.setdefault(vote.view, _ViewVotes())
        signer = vote.signer
        if vote.kind == VoteKind.NOTARIZE:
            first = tally.notarize.get(signer)
            if first is not None:
                if first.block != vote.block:
                    self._report(first, vote, "notarized two blocks in one view")
                return
            tally.notarize[signer] = vote
            self._maybe_certify(VoteKind.NOTARIZE, vote, tally.notarize)
        elif vote.kind == VoteKind.NULLIFY:
            if signer in tally.nullify:
                return
            if signer in tally.finalize:
                self._report(tally.finalize[signer], vote, "nullified a view it finalized")
            tally.nullify[signer] = vote
            self._maybe_certify(VoteKind.NULLIFY, vote, tally.nullify)
        else:
            first = tally.finalize.get(signer)
            if first is not None:
                if first.block != vote.block:
                    self._report(first, vote, "finalized two blocks in one view")
                return
            if signer in tally.nullify:
                self._report(tally.nullify[signer], vote, "finalized a view it nullified")
            tally.finalize[signer] = vote
            self._maybe_certify(VoteKind.FINALIZE, vote, tally.finalize)

    def _maybe_certify(self, kind: VoteKind, vote: Vote, votes: dict[int, Vote]) -> None:
        if self._has_certificate(kind, vote.view, vote.block):
            return
        same = sorted((v for v in votes.values() if v.block == vote.block), key=lambda v: v.signer)
        signers = [ValidatorIndex(v.signer) for v in same]
        if self.validators.weight_of(signers) < self.validators.quorum_weight:
            return
        cert = Certificate(
            kind=kind,
            view=vote.view,
            height=vote.height,
            block=vote.block,
            signers=list(signers),
            signatures=[v.signature for v in same],
        )
        self._learn_certificate(cert)

    def _has_certificate(self, kind: int, view: int, block: bytes) -> bool:
        if kind == VoteKind.NOTARIZE:
            return view in self._notarizations
        if kind == VoteKind.NULLIFY:
            return view in self._nullifications
        return self._finalization is not None and self._finalization.view >= view

    def _is_certified(self, cert: Certificate) -> bool:
        """Whether we hold (and so have verified) this notarization or finalization."""
        known = self._notarizations.get(cert.view)
        if known is not None and known.block == cert.block:
            return True
        fin = self._finalization
        return fin is not None and fin.view == cert.view and fin.block == cert.block

    def _on_certificate(self, cert: Certificate) -> None:
        if self._has_certificate(cert.kind, cert.view, cert.block):
            return
        if cert.kind == VoteKind.FINALIZE and cert.height <= self.committed.height:
            return
        fin = self._finalization
        if fin is not None and cert.view < fin.view:
            return  # below the highest finalization nothing is needed any more
        if not self.verifier.check_certificate(self.validators, cert):
            return
        self._learn_certificate(cert)

    def _learn_certificate(self, cert: Certificate) -> None:
        """A new, verified certificate: store it, forward it [L1], act on it."""
        self._out.append(StoreCertificate(cert))
        self._out.append(Broadcast(cert))
        if cert.kind == VoteKind.NOTARIZE:
            self._notarizations[cert.view] = cert
            if cert.view >= self.view:
                self._finalize_vote(cert)
                self._enter_view(View(cert.view + 1))
            elif self.view in self._proposals:
                self._consider_voting(self.view)
        elif cert.kind == VoteKind.NULLIFY:
            self._nullifications[cert.view] = cert
            if cert.view >= self.view:
                self._enter_view(View(cert.view + 1))
            elif self.view in self._proposals:
                self._consider_voting(self.view)
        else:
            if self._finalization is None or cert.height > self._finalization.height:
                self._finalization = cert
            if cert.view >= self.view:
                self._enter_view(View(cert.view + 1))
            self._try_commit()

    def _finalize_vote(self, notarization: Certificate) -> None:
        """[S3] Finalize a notarized block unless we nullified its view [S4]."""
        view = notarization.view
        record = self.record
        if record.view > view or (record.view == view and (record.nullified or record.finalized)):
            return
        notarized = record.notarized if record.view == view else None
        self._persist(SafetyRecord(view=view, notarized=notarized, finalized=True))
        vote = self._make_vote(VoteKind.FINALIZE, view, notarization.height, notarization.block)
        self._out.append(Broadcast(vote))
        self._add_vote(vote)

    # ---- timeouts -------------------------------------------------------------------

    def _on_timer(self, view: View) -> None:
        if view != self.view or self.record.view > view:
            return
        record = self.record
        if record.view < view or not (record.nullified or record.finalized):
            # [S4] Nullify: from now on we never finalize in this view.
            notarized = record.notarized if record.view == view else None
            self._persist(SafetyRecord(view=view, notarized=notarized, nullified=True))
            vote = self._make_vote(VoteKind.NULLIFY, view, 0, ZERO_DIGEST)
            self._out.append(Broadcast(vote))
            self._add_vote(vote)
        else:
            # Still stuck: re-send our votes of this view and what justifies it.
            tally = self._votes.get(view)
            if tally is not None:
                for votes in (tally.notarize, tally.finalize):
                    own = votes.get(self.me)
                    if own is not None:
                        self._out.append(Broadcast(own))
            if record.nullified:
                # Signing is deterministic: after a restart this re-creates the very
                # same vote, so re-sending it is never a second, conflicting one.
                vote = self._make_vote(VoteKind.NULLIFY, view, 0, ZERO_DIGEST)
                self._out.append(Broadcast(vote))
                self._add_vote(vote)  # after a restart our tally starts empty
            for cert in self._justification():
                self._out.append(Broadcast(cert))
        if self._wanted is not None:
            self._out.append(RequestBlocks(self._wanted))  # retry a fetch left unanswered
        if self.view == view:  # our own nullify may have completed a certificate
            self._out.append(SetTimer(view, self.config.retry_ms))

    # ---- committing and block sync ------------------------------------------------

    def _try_commit(self) -> None:
        """[S5] Commit the chain ending at the highest finalized block, oldest first."""
        target = self._finalization
        if target is None or target.height <= self.committed.height:
            self._wanted = None
            return
        if target.height - self.committed.height > SYNC_GAP:
            self._fetch(SyncRequest(self.committed.height + 1, MAX_BLOCKS_PER_RESPONSE))
            return
        chain: list[Block] = []
        digest = target.block
        height = target.height
        while height > self.committed.height:
            block = self.known_block(digest)
            if block is None or block.height != height:
                count = min(MAX_BLOCKS_PER_RESPONSE, height - self.committed.height)
                self._fetch(BlockRequest(digest=digest, max_count=count))
                return
            chain.append(block)
            digest = block.parent
            height -= 1
        if digest != self.committed.digest:
            # Two conflicting finalizations: more than f validators are Byzantine.
            # Refuse to commit; operators must intervene (docs/consensus.md).
            return
        self._commit_chain(list(reversed(chain)), target)

    def _commit_chain(self, chain: list[Block], finalization: Certificate) -> None:
        for block in chain:
            self.committed = CommittedTip(Height(block.height), block.digest(), View(block.view))
            self._out.append(Commit(block, finalization))
        for d in [d for d, b in self._blocks.items() if b.height <= self.committed.height]:
            del self._blocks[d]
        self._wanted = None
        self._prune()
        self._try_commit()

    def _fetch(self, request: BlockRequest | SyncRequest) -> None:
        """Ask for blocks; ask again for the same ones only after two views of
        progress (or on a timeout), so a lost answer cannot stall committing while
        the network moves on without ever timing out."""
        if request != self._wanted or self.view >= self._wanted_at_view + FETCH_RETRY_VIEWS:
            self._wanted = request
            self._wanted_at_view = self.view
            self._out.append(RequestBlocks(request))

    def answer_block_request(self, request: BlockRequest) -> BlockResponse | None:
        """The block named by `request` and its ancestors, from memory or the store."""
        blocks: list[Block] = []
        digest: bytes = request.digest
        while len(blocks) < request.max_count:
            block = self.known_block(digest)
            if block is None or block.height == 0:
                break
            blocks.append(block)
            digest = block.parent
        return BlockResponse(blocks=blocks) if blocks else None

    def _on_block_request(self, sender: ValidatorIndex, request: BlockRequest) -> None:
        response = self.answer_block_request(request)
        if response is not None:
            self._out.append(Send(sender, response))

    def _on_block_response(self, response: BlockResponse) -> None:
        """Keep only the blocks we asked for: the hash chain from the wanted digest
        down authenticates each of them (the finalization certifies the top)."""
        if not isinstance(self._wanted, BlockRequest):
            return
        wanted: bytes | None = self._wanted.digest
        for block in response.blocks:
            if wanted is None:
                break
            digest = block.digest()
            if digest != wanted:
                continue
            self._remember_block(block, digest)
            wanted = block.parent if block.height - 1 > self.committed.height else None
        self._wanted = None
        self._try_commit()

    def _on_sync_response(self, response: SyncResponse) -> None:
        """Commit a range that starts right above our tip and ends in a verified
        finalization; the hash chain (checked by the decoder) covers the rest."""
        first = response.blocks[0]
        if first.height != self.committed.height + 1 or first.parent != self.committed.digest:
            return
        final = response.finalization
        if not self.verifier.check_certificate(self.validators, final):
            return
        if self._finalization is None or final.height > self._finalization.height:
            self._finalization = final
            self._out.append(StoreCertificate(final))
        self._commit_chain(list(response.blocks), final)
        if final.view >= self.view:
            self._enter_view(View(final.view + 1))

    def _remember_block(self, block: Block, digest: Digest) -> None:
        if block.height <= self.committed.height:
            return
        if len(self._blocks) >= MAX_PENDING_BLOCKS:
            lowest = min(self._blocks, key=lambda d: self._blocks[d].view)
            del self._blocks[lowest]
        self._blocks[digest] = block

    # ---- signing and persistence --------------------------------------------------

    def _voted_in(self, view: int) -> bool:
        """Whether our record forbids a new notarize vote (or proposal) in `view`."""
        record = self.record
        if record.view > view:
            return True
        return record.view == view and (
            record.notarized is not None or record.nullified or record.finalized
        )

    def _persist(self, record: SafetyRecord) -> None:
        self.record = record
        self._out.append(Persist(record))

    def _sign(self, kind: int, view: int, height: int, block: bytes) -> bytes:
        return self.key.sign_digest(self.verifier.vote_digest(kind, view, height, block))

    def _make_vote(self, kind: VoteKind, view: int, height: int, block: bytes) -> Vote:
        return Vote(
            kind=kind,
            view=view,
            height=height,
            block=block,
            signer=self.me,
            signature=self._sign(kind, view, height, block),
        )

    def _report(self, first: Vote, second: Vote, reason: str) -> None:
        if first.signer == self.me:
            return
        evidence = Evidence(ValidatorIndex(first.signer), first, second, reason)
        if len(self.evidence) >= MAX_EVIDENCE:
            self.evidence.pop(0)
        self.evidence.append(evidence)
        self._out.append(ReportEvidence(evidence))
