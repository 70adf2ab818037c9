"""The consensus state machine: a Simplex-style, rotating-leader BFT protocol.

`ConsensusCore.handle(event) -> list[Action]` is the whole interface. The core
owns no socket, clock, thread or random source; the driver turns network bytes
into `MessageReceived`, timers into `TimerFired`, and carries out the actions
in order. docs/consensus.md gives the protocol, its safety and liveness
argument, and what is persisted when; the `# [S..]` and `[L..]` tags below cite
its rules.

The protocol, in one paragraph: views 1, 2, 3, ... each have a leader. The
leader proposes a block extending the highest certified block it knows whose
later views were all nullified [S1]. A validator notarizes (votes for) the
first valid proposal of its current view whose skipped views it knows to be
nullified [S2]. 2f+1 notarize votes for one (view, height, block) form a
notarization; on seeing one a validator that has not nullified the view sends
a finalize vote and moves to the next view [S3]. A validator whose view timer
fires nullifies the view, and never finalizes in it afterwards [S4]. 2f+1
nullify votes form a nullification, which also moves everyone to the next
view. 2f+1 finalize votes form a finalization, which commits the block and
its ancestors [S5]. Every certificate a validator learns is forwarded once, so
honest validators enter each view within one message delay of each other [L1];
a stuck view re-sends its votes every retry period [L2]; view timeouts back
off while the network is slower than they are [L3]; missing blocks and
certificates are fetched, each answer cut to fit one message [L4].
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.crypto import PrivateKey
from consensus.epochs import Anchor, InvalidEpochEnd, verify_epoch_end
from consensus.io import (
    Action,
    Broadcast,
    BuildPayload,
    Commit,
    CommittedTip,
    EpochEnded,
    EpochEndReceived,
    Event,
    Evidence,
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
    StoreBlock,
    StoreCertificate,
    TimerFired,
    VerifyPayload,
)
from consensus.limits import (
    MAX_BLOCKS_PER_RESPONSE,
    MAX_CARRIED_NULLIFICATIONS,
    MAX_CERTIFICATES_PER_RESPONSE,
    MAX_EVIDENCE,
    MAX_FUTURE_VIEWS,
    MAX_HELD_CERTIFICATES,
    MAX_PAYLOAD_BYTES,
    MAX_PENDING_BLOCK_BYTES,
    MAX_PENDING_BLOCKS,
    MAX_VIEW,
    MAX_VIEW_JUMP,
    SYNC_GAP,
)
from consensus.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Certificate,
    CertificateRequest,
    CertificateResponse,
    EpochEndProof,
    Proposal,
    SyncRequest,
    SyncResponse,
    Vote,
    VoteKind,
)
from consensus.pacemaker import Pacemaker
from consensus.ranges import ViewRanges
from consensus.sync import answer_block_request, answer_certificate_request
from consensus.types import ZERO_DIGEST, Digest, Height, ValidatorIndex, ValidatorSet, View
from consensus.verifier import SignatureVerifier

FETCH_RETRY_VIEWS = 2
"""An unanswered fetch is repeated once the validator has moved this many views
on (besides on every retry tick of a stuck view)."""

SYNC_ATTEMPTS_BEFORE_WALKBACK = 2
"""Forward-sync requests left unanswered before a validator far behind also
fetches the missing blocks backwards by digest (nobody may have committed them
yet: a long run of notarized but unfinalized blocks)."""

TALLY_VIEWS_KEPT = 8
"""Views below the current one whose votes are still tallied: finalize votes for
view v arrive after the validator has moved to v+1."""


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    view_timeout_ms: int = 1000
    """Base time a validator waits in a view for a notarization before nullifying
    it; it backs off (x1.5 per step) while views keep failing for lack of time."""
    retry_ms: int = 1000
    """While a view is stuck: how often to re-send this view's votes, the
    certificates that justify it, and unanswered fetches."""
    max_backoff_steps: int = 4
    """Cap on the back-off: the longest view timeout is view_timeout_ms * 1.5**steps."""

    def __post_init__(self) -> None:
        if self.view_timeout_ms <= 0 or self.retry_ms <= 0:
            raise ValueError("timeouts must be positive")
        if not 0 <= self.max_backoff_steps <= 16:
            raise ValueError("max_backoff_steps must be between 0 and 16")


@dataclass(slots=True)
class _ViewVotes:
    notarize: dict[int, Vote] = field(default_factory=dict)
    nullify: dict[int, Vote] = field(default_factory=dict)
    finalize: dict[int, Vote] = field(default_factory=dict)


@dataclass(slots=True)
class _Outstanding:
    """A fetch the core is waiting on."""

    request: BlockRequest | SyncRequest | CertificateRequest
    prefer: ValidatorIndex | None
    asked_at_view: int
    attempts: int = 1


def genesis_block(payload: bytes) -> Block:
    """The block at height 0, view 0; every chain starts here. `payload` binds the
    genesis contents (validator set, chain id, initial state) into its digest."""
    return Block(view=0, height=0, parent=ZERO_DIGEST, proposer=0, payload=payload)


def _certifies(cert: Certificate, block: Block) -> bool:
    return cert.view == block.view and cert.height == block.height and cert.block == block.digest()


def _same_certified(a: Certificate, b: Certificate) -> bool:
    """Both certify the same (view, height, block); notarization and finalization alike."""
    return a.view == b.view and a.height == b.height and a.block == b.block


class ConsensusCore:
    """One validator's consensus state. Not thread-safe; feed events one at a time."""

    def __init__(
        self,
        *,
        validators: ValidatorSet,
        me: ValidatorIndex,
        key: PrivateKey,
        verifier: SignatureVerifier,
        genesis: Block | None = None,
        anchor: Anchor | None = None,
        last_height: int | None = None,
        epoch: int = 0,
        config: ConsensusConfig | None = None,
        stored_block: Callable[[Digest], Block | None] | None = None,
    ) -> None:
        """One epoch's instance. It builds on `anchor` (the last block of the
        previous epoch), or on `genesis` (height 0) for a chain's first epoch;
        give exactly one. `last_height` is the epoch's last height (None: the
        epoch never ends). `verifier` must sign and check in this epoch's domain
        (`consensus.epochs.epoch_domain_separator`); `epoch` labels the proof."""
        if not validators.contains(me) or validators.address(me) != key.address:
            raise ValueError("the signing key does not belong to validator `me`")
        if (genesis is None) == (anchor is None):
            raise ValueError("give exactly one of genesis and anchor")
        if genesis is not None:
            anchor = Anchor(genesis.digest(), Height(genesis.height))
        assert anchor is not None
        if last_height is not None and last_height <= anchor.height:
            raise ValueError("an epoch's last height must be above its anchor")
        self.validators = validators
        self.me = me
        self.key = key
        self.genesis = genesis
        self.anchor = anchor
        self.genesis_digest = anchor.digest  # the block this instance's chain starts on
        self.last_height = last_height
        self.epoch = epoch
        self.verifier = verifier
        self.config = config or ConsensusConfig()
        self._stored_block = stored_block
        self.view = View(0)
        self.record = SafetyRecord(view=0)
        self.committed = CommittedTip(anchor.height, anchor.digest, View(0))
        self.ended: EpochEnded | None = None  # set once the epoch's last block commits
        self.evidence: list[Evidence] = []
        self.pacemaker = Pacemaker(self.config.view_timeout_ms, self.config.max_backoff_steps)
        self._out: list[Action] = []
        self._votes: dict[int, _ViewVotes] = {}
        self._proposals: dict[int, Proposal] = {}
        self._blocks: dict[bytes, Block] = {}
        self._block_bytes = 0
        self._notarizations: dict[int, Certificate] = {}
        self._nullifications: dict[int, Certificate] = {}
        self._nullified = ViewRanges()  # every nullified view above the finalization
        self._finalization: Certificate | None = None  # highest known
        self._verifying: dict[int, bytes] = {}  # view -> digest sent to VerifyPayload
        self._building: View | None = None
        self._building_parent: Certificate | None = None
        self._fetches: dict[type, _Outstanding] = {}
        self._answered_stale: dict[int, int] = {}  # peer -> our view when we last helped it
        self._view_elapsed_ms = 0
        self._view_deadline_ms = 0
        self._timer_ms = 0
        self.started = False

    # ---- public interface --------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        self._out = []
        if self.ended is not None:
            # The epoch is over: no more votes or proposals; laggards may still
            # fetch this epoch's blocks and certificates from us.
            if isinstance(event, MessageReceived) and isinstance(
                event.message, BlockRequest | CertificateRequest
            ):
                self._on_message(event.sender, event.message)
            return self._out
        match event:
            case Start():
                self._on_start(event)
            case MessageReceived() if self.started:
                self._on_message(event.sender, event.message)
            case TimerFired() if self.started:
                self._on_timer(event.view)
            case PayloadBuilt() if self.started:
                self._on_payload_built(event.view, event.payload)
            case PayloadVerified() if self.started:
                self._on_payload_verified(event.view, event.block, event.valid)
            case EpochEndReceived() if self.started:
                self._on_epoch_end_received(event.proof)
            case _:
                pass  # events before Start are ignored: nothing is initialised yet
        return self._out

    def leader(self, view: int) -> ValidatorIndex:
        return self.validators.leader(View(view))

    def known_block(self, digest: bytes) -> Block | None:
        if self.genesis is not None and digest == self.genesis_digest:
            return self.genesis
        block = self._blocks.get(digest)
        if block is None and self._stored_block is not None:
            block = self._stored_block(Digest(digest))
        return block

    @property
    def highest_finalization(self) -> Certificate | None:
        return self._finalization

    @property
    def view_timeout_ms(self) -> int:
        """The current view's timeout (the base, backed off)."""
        return self._view_deadline_ms

    def answer_block_request(self, request: BlockRequest) -> BlockResponse | None:
        """The block named by `request` and its ancestors, from memory or the store."""
        return answer_block_request(request, self.known_block)

    def answer_certificate_request(
        self,
        request: CertificateRequest,
        stored: Callable[[int], list[Certificate]] | None = None,
    ) -> CertificateResponse | None:
        """Notarizations and nullifications held in memory (or, through `stored`,
        on disk) for the requested views."""

        def lookup(view: int) -> list[Certificate]:
            held = [
                c
                for c in (self._notarizations.get(view), self._nullifications.get(view))
                if c is not None
            ]
            if not held and stored is not None:
                held = stored(view)
            return held

        return answer_certificate_request(request, lookup)

    def memory_footprint(self) -> dict[str, int]:
        """Sizes of everything the core holds, for the simulator's memory checker."""
        return {
            "votes": sum(
                len(t.notarize) + len(t.nullify) + len(t.finalize) for t in self._votes.values()
            ),
            "proposals": len(self._proposals),
            "blocks": len(self._blocks),
            "block_bytes": self._block_bytes,
            "notarizations": len(self._notarizations),
            "nullifications": len(self._nullifications),
            "nullified_ranges": len(self._nullified),
            "evidence": len(self.evidence),
        }

    # ---- start and view changes ------------------------------------------------

    def _on_start(self, start: Start) -> None:
        self.started = True
        if start.committed.height > self.anchor.height:
            self.committed = start.committed
        # else: nothing of this epoch is committed yet; the anchor (view 0 of the
        # epoch) stays the tip, whatever view it had in the previous epoch.
        if start.safety is not None:
            self.record = start.safety
        tip = start.tip_finalization
        committed_height = self.committed.height
        if (
            tip is not None
            and tip.kind == VoteKind.FINALIZE
            and tip.height >= committed_height
            and committed_height > self.anchor.height  # the anchor's is another epoch's
        ):
            self._finalization = tip
        # Re-learn what we knew, without forwarding it all again: the retry timer
        # re-sends what justifies our view.
        for cert in sorted(start.certificates, key=lambda c: (c.view, c.kind)):
            self._on_certificate(cert, forward=False)
        start_view = max(self.record.view, self.committed.view + 1, 1)
        if self._finalization is not None:
            start_view = max(start_view, self._finalization.view + 1)
        self._enter_view(View(start_view))
        if self.record.view == self.view:
            # A crash may have struck between persisting a vote and sending it.
            self._resend_own_votes(self.view)
        self._try_commit()

    def _enter_view(self, view: View) -> None:
        if view <= self.view or self.ended is not None:
            return
        self.view = view
        self._prune()
        self._view_elapsed_ms = 0
        self._view_deadline_ms = self.pacemaker.timeout_ms()
        self._set_timer(min(self.config.retry_ms, self._view_deadline_ms))
        self._retry_pending()

    def _retry_pending(self) -> None:
        """Propose or vote in the current view if something that was missing is here."""
        if self.leader(self.view) == self.me:
            self._try_propose()
        if self.view in self._proposals:
            self._consider_voting(self.view)

    def _set_timer(self, delay_ms: int) -> None:
        self._timer_ms = delay_ms
        self._out.append(SetTimer(self.view, delay_ms))

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
            self._nullified.drop_below(fv)
        for store in (self._notarizations, self._nullifications):
            while len(store) > MAX_HELD_CERTIFICATES:
                del store[min(store)]
        while len(self._nullified) > MAX_HELD_CERTIFICATES:
            self._nullified.drop_lowest_range()

    # ---- proposing (leader) -------------------------------------------------------

    def _try_propose(self) -> None:
        view = self.view
        if self._building == view or self._voted_in(view):
            return
        found, parent_cert = self._select_parent(view)
        if not found:
            # Cannot justify a parent yet: ask peers for the certificates of the
            # views we lack; retried when a certificate arrives.
            self._fetch_certificates_below(view, prefer=None)
            return
        height = self._child_height(parent_cert)
        parent_digest = Digest(self.genesis_digest if parent_cert is None else parent_cert.block)
        self._building = view
        self._building_parent = parent_cert
        if self._in_tail(height):
            # Above the epoch's last height blocks carry nothing; the application
            # is not asked (docs/consensus.md, "Validator-set epochs").
            self._on_payload_built(view, b"")
            return
        self._out.append(BuildPayload(view, height, parent_digest))

    def _child_height(self, parent_cert: Certificate | None) -> Height:
        return Height(self.anchor.height + 1 if parent_cert is None else parent_cert.height + 1)

    def _in_tail(self, height: int) -> bool:
        """Whether a block at `height` is in the epoch's tail (above its last height)."""
        return self.last_height is not None and height > self.last_height

    def _select_parent(self, view: View) -> tuple[bool, Certificate | None]:
        """[S1] The certified block of the highest view below `view` such that every
        view in between is nullified: (True, its certificate), or (True, None) for
        genesis. (False, None) when some view in between has neither."""
        fin = self._finalization
        w = view - 1
        while w > 0:
            cert = self._notarizations.get(w)
            if cert is None and fin is not None and fin.view == w:
                cert = fin
            if cert is not None:
                return True, cert
            if w not in self._nullified:
                return False, None
            w = self._nullified.start_of(w) - 1
        if fin is not None:
            return False, None  # views down to the finalization must lead to it
        return True, None

    def _fetch_certificates_below(self, view: int, prefer: ValidatorIndex | None) -> None:
        """Ask for the views below `view` (down to the finalization) that we hold
        neither certified nor nullified."""
        fin = self._finalization
        floor = 1 if fin is None else fin.view + 1
        w = view - 1
        while w >= floor:
            if w in self._notarizations:
                return
            if w not in self._nullified:
                first = max(floor, w - MAX_CERTIFICATES_PER_RESPONSE + 1)
                self._fetch(CertificateRequest(first_view=first, last_view=w), prefer=prefer)
                return
            w = self._nullified.start_of(w) - 1

    def _carried_nullifications(self, parent_view: int, view: int) -> list[Certificate]:
        """The held nullifications of the views just below `view` (consecutive)."""
        carried: list[Certificate] = []
        w = view - 1
        while w > parent_view and len(carried) < MAX_CARRIED_NULLIFICATIONS:
            cert = self._nullifications.get(w)
            if cert is None:
                break
            carried.append(cert)
            w -= 1
        carried.reverse()
        return carried

    def _on_payload_built(self, view: View, payload: bytes) -> None:
        if view != self.view or self._building != view:
            return
        if self._voted_in(view) or len(payload) > MAX_PAYLOAD_BYTES:
            return
        parent_cert = self._building_parent
        height = self._child_height(parent_cert)
        if self._in_tail(height) and payload:
            return
        block = Block(
            view=view,
            height=height,
            parent=self.genesis_digest if parent_cert is None else parent_cert.block,
            proposer=self.me,
            payload=payload,
        )
        digest = block.digest()
        proposal = self._signed_proposal(block, digest, parent_cert)
        # Persist, then act: the proposal is our notarize vote for this view.
        self._out.append(StoreBlock(block))
        self._persist(SafetyRecord(view=view, notarized=digest))
        self._out.append(Broadcast(proposal))
        self._accept_proposal(proposal, digest)

    def _signed_proposal(
        self, block: Block, digest: Digest, parent_cert: Certificate | None
    ) -> Proposal:
        signature = self._sign(VoteKind.NOTARIZE, block.view, block.height, digest)
        parent_view = 0 if parent_cert is None else parent_cert.view
        return Proposal(
            block=block,
            signature=signature,
            parent=parent_cert,
            skipped=self._carried_nullifications(parent_view, block.view),
        )

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
                response = self.answer_block_request(message)
                if response is not None:
                    self._out.append(Send(sender, response))
            case CertificateRequest():
                answer = self.answer_certificate_request(message)
                if answer is not None:
                    self._out.append(Send(sender, answer))
            case BlockResponse():
                self._on_block_response(message)
            case SyncResponse():
                self._on_sync_response(message)
            case CertificateResponse():
                self._on_certificate_response(message)
            case _:
                pass

    def _on_proposal(self, proposal: Proposal) -> None:
        block = proposal.block
        view = block.view
        if view < self.view - TALLY_VIEWS_KEPT or view > self.view + MAX_FUTURE_VIEWS:
            return
        if block.height > MAX_VIEW:
            return
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
        if proposal.parent is None and (
            block.parent != self.genesis_digest or block.height != self.anchor.height + 1
        ):
            return
        # The attached certificates justify the view; learning them may move us to it.
        if proposal.parent is not None:
            self._on_certificate(proposal.parent)
        for cert in proposal.skipped:
            self._on_certificate(cert)
        gave_up = (self.record.view == view and self.record.nullified) or (
            view < self.view and view in self._nullified and view not in self._notarizations
        )
        if gave_up:
            self.pacemaker.slow(view)  # [L3] it came after the view had timed out
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
        extends a certified parent across views we hold nullified."""
        proposal = self._proposals.get(view)
        if proposal is None or view in self._verifying or self._voted_in(view):
            return
        block = proposal.block
        if block.proposer == self.me:
            return  # our own proposal is already our vote
        parent = proposal.parent
        parent_view = 0 if parent is None else parent.view
        fin = self._finalization
        if fin is not None and parent_view < fin.view:
            return  # it would skip a finalized view, which is never nullified
        if parent is not None and not self._is_certified(parent):
            return
        known_parent = self.known_block(block.parent)
        if known_parent is not None and known_parent.height + 1 != block.height:
            return  # the parent certificate names another height than the parent has
        missing = self._nullified.missing(parent_view + 1, view - 1, MAX_CERTIFICATES_PER_RESPONSE)
        if missing:
            self._fetch(
                CertificateRequest(first_view=missing[0], last_view=missing[-1]),
                prefer=ValidatorIndex(block.proposer),
            )
            return
        digest = block.digest()
        if self._in_tail(block.height):
            # A tail block is valid only empty; it needs no application check.
            if block.payload:
                return
            self._verifying[view] = digest
            self._on_payload_verified(view, digest, True)
            return
        self._verifying[view] = digest
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
        if not self.validators.contains(sender):
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
        """Tally a vote whose signature is valid; detect equivocation; form certificates.

        Votes are tallied per (view, height, block): a vote naming another height
        than its block has is a different signed statement and never counts
        towards the block's certificate.
        """
        tally = self._votes.setdefault(vote.view, _ViewVotes())
        signer = vote.signer
        if vote.kind == VoteKind.NOTARIZE:
            first = tally.notarize.get(signer)
            if first is not None:
                if (first.block, first.height) != (vote.block, vote.height):
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
                if (first.block, first.height) != (vote.block, vote.height):
                    self._report(first, vote, "finalized two blocks in one view")
                return
            if signer in tally.nullify:
                self._report(tally.nullify[signer], vote, "finalized a view it nullified")
            tally.finalize[signer] = vote
            self._maybe_certify(VoteKind.FINALIZE, vote, tally.finalize)

    def _maybe_certify(self, kind: VoteKind, vote: Vote, votes: dict[int, Vote]) -> None:
        if self._holds_certificate_of(kind, vote.view):
            return
        same = sorted(
            (v for v in votes.values() if v.block == vote.block and v.height == vote.height),
            key=lambda v: v.signer,
        )
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
        self._learn_certificate(cert, forward=True)

    def _holds_certificate_of(self, kind: int, view: int) -> bool:
        if kind == VoteKind.NOTARIZE:
            return view in self._notarizations
        if kind == VoteKind.NULLIFY:
            return view in self._nullified
        return self._finalization is not None and self._finalization.view >= view

    def _is_certified(self, cert: Certificate) -> bool:
        """Whether `cert` is a valid notarization or finalization of exactly its
        (view, height, block): the one we hold, or one that verifies."""
        held = self._notarizations.get(cert.view)
        if held is not None and _same_certified(held, cert):
            return True
        fin = self._finalization
        if fin is not None and _same_certified(fin, cert):
            return True
        return cert.kind != VoteKind.NULLIFY and self.verifier.check_certificate(
            self.validators, cert
        )

    def _on_certificate(self, cert: Certificate, *, forward: bool = True) -> None:
        if cert.view > MAX_VIEW or cert.height > MAX_VIEW:
            return
        fin = self._finalization
        if cert.kind == VoteKind.FINALIZE:
            if cert.height <= self.committed.height:
                return
            if fin is not None and cert.view <= fin.view:
                return
        else:
            if fin is not None and cert.view < fin.view:
                return  # below the highest finalization nothing is needed any more
            if self._holds_certificate_of(cert.kind, cert.view):
                # At most one notarization per view exists unless more than f lie;
                # a nullified view needs no second nullification.
                return
            floor = 0 if fin is None else fin.view
            if cert.view > floor + MAX_VIEW_JUMP:
                return
        if not self.verifier.check_certificate(self.validators, cert):
            return
        self._learn_certificate(cert, forward=forward)

    def _learn_certificate(self, cert: Certificate, *, forward: bool) -> None:
        """A new, verified certificate: store it, forward it [L1], act on it."""
        self._out.append(StoreCertificate(cert))
        if forward:
            self._out.append(Broadcast(cert))
        if cert.kind == VoteKind.NOTARIZE:
            self._notarizations[cert.view] = cert
            self.pacemaker.notarized()
            if cert.view >= self.view:
                self._finalize_vote(cert)
                self._enter_view(View(cert.view + 1))
            else:
                self._retry_pending()
        elif cert.kind == VoteKind.NULLIFY:
            self._nullifications[cert.view] = cert
            self._nullified.add(cert.view)
            if cert.view >= self.view:
                self._enter_view(View(cert.view + 1))
            else:
                self._retry_pending()
        else:
            self._finalization = cert
            self.pacemaker.finalized()
            if cert.view >= self.view:
                self._enter_view(View(cert.view + 1))
            else:
                self._prune()
                self._retry_pending()
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
        if view != self.view:
            return
        self._view_elapsed_ms += self._timer_ms
        record = self.record
        nullified_here = record.view == view and record.nullified
        finalized_here = record.view == view and record.finalized
        if self._view_elapsed_ms >= self._view_deadline_ms and not (
            nullified_here or finalized_here
        ):
            # [S4] Nullify: from now on we never finalize in this view.
            voted = record.view == view and record.notarized is not None
            self.pacemaker.timed_out(view, voted=voted, validators=len(self.validators))
            notarized = record.notarized if record.view == view else None
            self._persist(SafetyRecord(view=view, notarized=notarized, nullified=True))
            vote = self._make_vote(VoteKind.NULLIFY, view, 0, ZERO_DIGEST)
            self._out.append(Broadcast(vote))
            self._add_vote(vote)
        else:
            # [L2] Still stuck: re-send what we signed here and what justifies the view.
            self._resend_own_votes(view)
            for cert in self._justification():
                self._out.append(Broadcast(cert))
            self._refetch()
        if self.view != view:
            return  # our own nullify completed a certificate and moved us on
        remaining = self._view_deadline_ms - self._view_elapsed_ms
        record = self.record
        if remaining > 0 and not (record.view == view and (record.nullified or record.finalized)):
            self._set_timer(min(self.config.retry_ms, remaining))
        else:
            self._set_timer(self.config.retry_ms)

    def _resend_own_votes(self, view: View) -> None:
        """Re-send every vote (and our proposal) the safety record says we cast in
        `view`. Signing is deterministic (RFC 6979), so after a restart this
        re-creates the very same bytes: never a second, conflicting vote."""
        record = self.record
        if record.view != view:
            return
        if record.notarized is not None:
            self._resend_notarize(view, Digest(record.notarized))
        if record.finalized:
            notarization = self._notarizations.get(view)
            if notarization is not None:
                vote = self._make_vote(
                    VoteKind.FINALIZE, view, notarization.height, notarization.block
                )
                self._out.append(Broadcast(vote))
                self._add_vote(vote)
        if record.nullified:
            vote = self._make_vote(VoteKind.NULLIFY, view, 0, ZERO_DIGEST)
            self._out.append(Broadcast(vote))
            self._add_vote(vote)  # after a restart our tally starts empty

    def _resend_notarize(self, view: View, digest: Digest) -> None:
        proposal = self._proposals.get(view)
        if proposal is not None and proposal.block.proposer == self.me:
            self._out.append(Broadcast(proposal))
            return
        block = self.known_block(digest)
        if block is None or block.view != view:
            return
        if block.proposer == self.me:
            # Our own proposal, persisted before a crash: rebuild it if we still
            # hold the certificate of its parent.
            parent = self._certificate_of_block(block)
            if parent is None and block.height != self.anchor.height + 1:
                return
            proposal = self._signed_proposal(block, digest, parent)
            self._out.append(Broadcast(proposal))
            self._accept_proposal(proposal, digest)
            return
        vote = self._make_vote(VoteKind.NOTARIZE, view, block.height, digest)
        self._out.append(Broadcast(vote))
        self._add_vote(vote)

    def _certificate_of_block(self, block: Block) -> Certificate | None:
        """A held notarization or finalization of `block`'s parent."""
        fin = self._finalization
        if fin is not None and fin.block == block.parent and fin.height + 1 == block.height:
            return fin
        for cert in self._notarizations.values():
            if cert.block == block.parent and cert.height + 1 == block.height:
                return cert
        return None

    # ---- committing and fetching ----------------------------------------------------

    def _try_commit(self) -> None:
        """[S5] Commit the chain ending at the highest finalized block, oldest first.
        Walks back from it through the blocks we know; fetches the first missing one."""
        target = self._finalization
        at_last = self.last_height is not None and self.committed.height == self.last_height
        if (
            self.ended is not None
            or target is None
            or target.height < self.committed.height
            or (target.height == self.committed.height and not at_last)
        ):
            self._fetches.pop(BlockRequest, None)
            self._fetches.pop(SyncRequest, None)
            return
        chain: list[Block] = []
        digest: bytes = target.block
        height = target.height
        while height > self.committed.height:
            block = self.known_block(digest)
            if block is None:
                self._fetch_missing(digest, height)
                return
            if block.height != height:
                return  # a hash chain with wrong heights: more than f are Byzantine
            chain.append(block)
            digest = block.parent
            height -= 1
        if digest != self.committed.digest:
            # Two conflicting finalizations: more than f validators are Byzantine.
            # Refuse to commit; operators must intervene (docs/consensus.md).
            return
        chain.reverse()
        self._commit_chain(chain, target)

    def _fetch_missing(self, digest: bytes, height: int) -> None:
        """[L4] Missing blocks: by digest, newest first (any validator that voted for
        them can answer); when far behind, also forward by height from our tip
        (validators that committed them answer), falling back to the walk back
        if nobody answers that."""
        gap = height - self.committed.height
        sync = self._fetches.get(SyncRequest)
        if gap > SYNC_GAP:
            self._fetch(SyncRequest(self.committed.height + 1, MAX_BLOCKS_PER_RESPONSE))
            sync = self._fetches.get(SyncRequest)
            if sync is not None and sync.attempts <= SYNC_ATTEMPTS_BEFORE_WALKBACK:
                return
        self._fetch(BlockRequest(digest=digest, max_count=min(MAX_BLOCKS_PER_RESPONSE, gap)))

    def _commit_chain(self, chain: list[Block], finalization: Certificate) -> None:
        """Commit `chain` (ascending, from the block above our tip up to the one
        `finalization` certifies), but never above the epoch's last height: the
        blocks above it are the tail, and the epoch ends with them as its proof."""
        tail: list[Block] = []
        for block in chain:
            if self._in_tail(block.height):
                tail.append(block)
                continue
            self.committed = CommittedTip(Height(block.height), block.digest(), View(block.view))
            self._out.append(Commit(block, finalization))
        for d in [d for d, b in self._blocks.items() if b.height <= self.committed.height]:
            self._forget_block(d)
        self._fetches.pop(BlockRequest, None)
        self._fetches.pop(SyncRequest, None)
        self._prune()
        if self.last_height is not None and self.committed.height == self.last_height:
            self._end_epoch(finalization, tail)
            return
        self._try_commit()

    def _end_epoch(self, finalization: Certificate, tail: list[Block]) -> None:
        """The epoch's last block is committed: emit the proof and stop acting.

        The proof is checked as any receiver checks it; it cannot fail unless
        more than f validators signed a tail block with a payload, and then the
        epoch does not end (operators must intervene, as for conflicting
        finalizations)."""
        assert self.last_height is not None
        proof = EpochEndProof(
            epoch=self.epoch,
            last_height=self.last_height,
            finalization=finalization,
            tail=list(reversed(tail)),
        )
        last = self._verified_end(proof)
        if last != self.committed.digest:
            return
        self.ended = EpochEnded(last, Height(self.last_height), proof)
        self._fetches.clear()
        self._out.append(self.ended)

    def _verified_end(self, proof: EpochEndProof) -> Digest | None:
        """The last block's digest if `proof` ends this epoch; else None."""
        assert self.last_height is not None
        try:
            return verify_epoch_end(
                proof,
                epoch=self.epoch,
                last_height=self.last_height,
                validators=self.validators,
                verifier=self.verifier,
            )
        except InvalidEpochEnd:
            return None

    def _on_epoch_end_received(self, proof: EpochEndProof) -> None:
        """A peer's proof of this epoch's end: learn its finalization and keep its
        tail blocks (authenticated by the finalization's hash chain), then commit
        up to the last height, fetching the blocks we miss."""
        if self.last_height is None:
            return
        if self._verified_end(proof) is None:
            return
        for block in proof.tail:
            self._remember_fetched(block, block.digest())
        final = proof.finalization
        if self._finalization is None or final.view > self._finalization.view:
            self._learn_certificate(final, forward=False)
        else:
            self._try_commit()

    def _fetch(
        self,
        request: BlockRequest | SyncRequest | CertificateRequest,
        prefer: ValidatorIndex | None = None,
    ) -> None:
        """Ask for something once; ask again for the same thing only after two views
        of progress or on a retry tick, so a lost answer cannot stall us while the
        network moves on without ever timing out."""
        kind = type(request)
        current = self._fetches.get(kind)
        if current is not None and current.request == request:
            if self.view < current.asked_at_view + FETCH_RETRY_VIEWS:
                return
            current.asked_at_view = self.view
            current.attempts += 1
        else:
            self._fetches[kind] = _Outstanding(request, prefer, self.view)
        self._out.append(Fetch(request, prefer))

    def _refetch(self) -> None:
        for outstanding in self._fetches.values():
            outstanding.attempts += 1
            outstanding.asked_at_view = self.view
            self._out.append(Fetch(outstanding.request, outstanding.prefer))

    def _on_block_response(self, response: BlockResponse) -> None:
        """Keep only blocks on the chain we asked for: the hash chain from the wanted
        digest down authenticates each of them (a finalization certifies the top).
        A response with none of them changes nothing (and asks nothing again)."""
        wanted = self._fetches.get(BlockRequest)
        if wanted is None or not isinstance(wanted.request, BlockRequest):
            return
        digest: bytes | None = wanted.request.digest
        useful = False
        for block in response.blocks:
            if digest is None:
                break
            if block.digest() != digest:
                continue
            if block.height <= self.committed.height:
                break
            self._remember_fetched(block, Digest(digest))
            useful = True
            digest = block.parent
        if not useful:
            return
        del self._fetches[BlockRequest]
        self._try_commit()

    def _on_sync_response(self, response: SyncResponse) -> None:
        """A range of committed blocks ending in a finalization. If it starts right
        above our tip, commit it; if it is the top of a longer range, learn its
        finalization and keep the blocks, and fetch the ones below by digest."""
        final = response.finalization
        blocks = response.blocks
        last = blocks[-1]
        if last.height <= self.committed.height:
            return
        if final.kind != VoteKind.FINALIZE or not _certifies(final, last):
            return
        if any(
            child.parent != parent.digest() or child.height != parent.height + 1
            for parent, child in itertools.pairwise(blocks)
        ):
            return
        if not self.verifier.check_certificate(self.validators, final):
            return
        first = blocks[0]
        if first.height == self.committed.height + 1 and first.parent == self.committed.digest:
            if self._finalization is None or final.view > self._finalization.view:
                self._finalization = final
                self._out.append(StoreCertificate(final))
                self.pacemaker.finalized()
            self._fetches.pop(SyncRequest, None)
            self._commit_chain(list(response.blocks), final)
            if final.view >= self.view:
                self._enter_view(View(final.view + 1))
            return
        for block in response.blocks:
            self._remember_fetched(block, block.digest())
        self._fetches.pop(SyncRequest, None)
        if self._finalization is None or final.view > self._finalization.view:
            self._learn_certificate(final, forward=False)
        else:
            self._try_commit()

    def _on_certificate_response(self, response: CertificateResponse) -> None:
        """Certificates for views we asked about; anything else in it is ignored."""
        wanted = self._fetches.get(CertificateRequest)
        if wanted is None or not isinstance(wanted.request, CertificateRequest):
            return
        first, last = wanted.request.first_view, wanted.request.last_view
        learned = False
        for cert in response.certificates:
            if cert.kind == VoteKind.FINALIZE or not first <= cert.view <= last:
                continue
            if self._holds_certificate_of(cert.kind, cert.view):
                continue
            before = len(self._out)
            self._on_certificate(cert, forward=False)
            learned = learned or len(self._out) > before
        if learned:
            self._fetches.pop(CertificateRequest, None)
            self._retry_pending()

    def _remember_block(self, block: Block, digest: Digest) -> None:
        if block.height <= self.committed.height or digest in self._blocks:
            return
        self._blocks[digest] = block
        self._block_bytes += len(block.payload)
        while len(self._blocks) > MAX_PENDING_BLOCKS or (
            self._block_bytes > MAX_PENDING_BLOCK_BYTES and len(self._blocks) > 1
        ):
            lowest = min(self._blocks, key=lambda d: self._blocks[d].view)
            self._forget_block(lowest)

    def _remember_fetched(self, block: Block, digest: Digest) -> None:
        """A block authenticated by a finalization's hash chain: keep it on disk too,
        so walking back over a long gap does not depend on memory."""
        if block.height <= self.committed.height:
            return
        if self._stored_block is None or self._stored_block(digest) is None:
            self._out.append(StoreBlock(block, synced=False))
        self._remember_block(block, digest)

    def _forget_block(self, digest: bytes) -> None:
        block = self._blocks.pop(digest, None)
        if block is not None:
            self._block_bytes -= len(block.payload)

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
