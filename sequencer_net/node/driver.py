"""The I/O shell around the consensus core: events in, actions carried out in order.

One task owns the core. Everything that reaches it (peer messages, timer
firings, answers about payloads, fetched blocks) becomes an event on one
channel; the actions it returns are carried out in order, and a `Persist`
(with the block it protects) is on disk before any later action runs:
build -> persist (fsync) -> send.

A chain with several validator-set epochs (`EpochPlan`) runs one core per
epoch, each in its own signing domain, and every consensus message travels in
an `EpochEnvelope` routed by its epoch: the current epoch's go to the running
core; the next epoch's wait in a bounded buffer; an earlier epoch's are
answered by the ended core (fetches) and with that epoch's end proof; a later
epoch's make the driver ask the sender for its own epoch's proof. When the core
emits `EpochEnded` the driver stores the proof (fsync) before anything else
acts on it, sends it to the validators, and starts the next epoch's core on the
proof's anchor. A single-epoch chain keeps the plain wire (no envelope) and
the single-epoch store keys.

An epoch whose set does not include this node is followed instead
(`follow_epoch`: committed blocks fetched from the epoch's members, each
checked against the epoch's set and domain, the last one by the end proof, and
committed to the same pipeline); once its last block is committed the driver
enters the next epoch on it, running that epoch's core if the node is a member
again. While following, the node's messages in that epoch are never sent,
and what the members send in it has no core to go to: fetches are answered
from the store.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import trio

from consensus.core import ConsensusCore
from consensus.epochs import Anchor
from consensus.io import (
    Action,
    Broadcast,
    BuildPayload,
    Commit,
    CommittedTip,
    EpochEnded,
    EpochEndReceived,
    Event,
    Fetch,
    MessageReceived,
    PayloadBuilt,
    PayloadVerified,
    Persist,
    ReportEvidence,
    Send,
    SetTimer,
    Start,
    StoreBlock,
    StoreCertificate,
    TimerFired,
    VerifyPayload,
)
from consensus.messages import (
    Block,
    BlockRequest,
    Certificate,
    CertificateRequest,
    EpochEndProof,
    EpochEndRequest,
    EpochEnvelope,
    MalformedMessage,
    Message,
    SyncRequest,
    VoteKind,
    decode_epoch_wire,
    decode_message,
    encode_epoch_wire,
    encode_message,
)
from consensus.sync import answer_block_request, answer_certificate_request, answer_sync_request
from consensus.types import Digest, Height, ValidatorIndex, View
from sequencer_net.metrics import Metrics
from sequencer_net.node.epochs import EpochPlan, resume_epoch
from sequencer_net.node.equivocation import Equivocator, Outgoing
from sequencer_net.node.requests import RequestKind
from sequencer_net.p2p.network import Channel, P2PNetwork
from sequencer_net.payload.service import PayloadService
from sequencer_net.storage.node_store import EvidenceRecord, NodeStore

log = logging.getLogger("seqnet.consensus")

EVENT_QUEUE = 10_000
"""Events waiting for the core. Peer messages beyond it are dropped (and counted):
a flood must not grow memory; consensus recovers lost messages by re-sending."""
BUFFERED_NEXT_EPOCH: Final = 512
"""Messages of the next epoch kept until its core starts; beyond it they are
dropped (their senders re-send)."""
BUFFERED_NEXT_EPOCH_BYTES: Final = 32 * 1024 * 1024
"""The same buffer bounded in bytes (a message may be up to MAX_MESSAGE_BYTES)."""
RETAINED_EPOCHS: Final = 2
"""Ended cores kept to answer laggards' fetches of their epoch's blocks."""
EPOCH_PROOF_RETRY_S: Final = 0.5
"""At most one end proof per (peer, epoch), and one request for our epoch's
proof, per this long."""
MAX_PROOF_OFFERS: Final = 4_096
"""(peer, epoch) pairs remembered for that rate limit."""


@dataclass(frozen=True)
class EpochFollowed:
    """The followed epoch's last block is committed: `anchor` starts the next."""

    anchor: Anchor


FollowEpoch = Callable[[int, Anchor], Awaitable[Anchor]]
"""`follow(epoch, anchor)`: commit `epoch`'s blocks from the members (from
`anchor`, or from the store's tip if it is past it) up to its last; returns
the next epoch's anchor (the last block). Never returns for a last epoch."""


class ConsensusDriver:
    def __init__(
        self,
        *,
        core: ConsensusCore,
        store: NodeStore,
        p2p: P2PNetwork,
        payloads: PayloadService,
        commits: trio.MemorySendChannel[Commit],
        metrics: Metrics,
        is_connected: Callable[[], bool] = lambda: True,
        fault: Equivocator | None = None,
        on_view: Callable[[int], None] = lambda view: None,
        epochs: EpochPlan | None = None,
        start_core: Callable[[int, Anchor], ConsensusCore] | None = None,
        on_epoch: Callable[[int, ConsensusCore | None], None] = lambda epoch, core: None,
        follow_epoch: FollowEpoch | None = None,
    ) -> None:
        """`core` runs the chain's first epoch. With `epochs` (a chain of several
        epochs), `start_core(epoch, anchor)` builds each epoch's core (epoch 0's
        may be `core` itself) and `on_epoch` is told each epoch as it starts,
        with its core (None: an epoch this node follows, `follow_epoch`; needed
        when `epochs.me` is outside some epoch's set)."""
        if (epochs is None) != (start_core is None):
            raise ValueError("give both or neither of epochs and start_core")
        if epochs is not None and fault is not None:
            raise ValueError("test faults run on single-epoch chains only")
        self.core = core
        self.store = store
        self.p2p = p2p
        self.payloads = payloads
        self.commits = commits
        self.metrics = metrics
        self.is_connected = is_connected
        self.fault = fault
        """A test-only fault (sequencer_net/node/equivocation.py); None on real networks."""
        self.on_view = on_view
        """Told each view the core enters (the certifier sends leaders overdue certificates)."""
        self.plan = epochs
        self._start_core = start_core
        self.on_epoch = on_epoch
        self._follow_epoch = follow_epoch
        self.epoch = 0
        """The current epoch (always 0 on a single-epoch chain); `core`'s, unless
        `following`."""
        self.following = False
        """This node is not a member of the current epoch: it follows it, and
        `core` is an earlier (or not yet started) epoch's."""
        self._retained: dict[int, ConsensusCore] = {}
        self._buffer: list[tuple[int, EpochEnvelope]] = []
        self._buffer_bytes = 0
        self._next: tuple[int, Anchor] | None = None
        self._proofs: dict[int, EpochEndProof] = {}
        self._offered: dict[tuple[int, int], float] = {}
        self._proof_from: dict[int, float] = {}  # peer -> when its last proof went in
        self._asked_ahead_at = -math.inf
        self._events_in, self._events_out = trio.open_memory_channel[
            tuple[int, Event | EpochFollowed, float]
        ](EVENT_QUEUE)
        self._timer_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._peer_rotation = itertools.count()
        self._handled = trio.Event()
        """Set (and replaced) each time the core has handled an event: what
        `_wait_for_parent` waits on."""

    # ---- the loop ---------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.plan is None:
                await self._start(0, self.core)
            else:
                epoch, anchor = resume_epoch(self.store, self.plan)
                await self._enter_epoch(epoch, anchor, resumed=True)
                await self._advance()
            log.info(
                "event=consensus_started validator=%d epoch=%d view=%d height=%d",
                self.core.me,
                self.epoch,
                self.core.view,
                self.core.committed.height,
            )
            task_status.started()
            view = self.core.view
            async for epoch, event, posted_at in self._events_out:
                if epoch != self.epoch:
                    continue  # an ended epoch's timer or payload answer
                if isinstance(event, EpochFollowed):
                    self._next = (epoch + 1, event.anchor)
                elif self.following:
                    continue  # no core of this epoch here
                else:
                    if isinstance(event, MessageReceived):
                        # Consensus first: how long a peer's message waited for the core.
                        self.metrics.consensus_event_delay.observe(trio.current_time() - posted_at)
                    await self._carry_out(self.core.handle(event), epoch)
                    self._handled.set()
                    self._handled = trio.Event()
                await self._advance()
                self.metrics.view.set(self.core.view)
                if self.core.view != view:
                    view = self.core.view
                    self.on_view(view)

    async def _start(self, epoch: int, core: ConsensusCore) -> None:
        """Feed `core` (epoch `epoch`) what the store kept: its safety record, the
        committed tip, its certificates, and its end proof if it has ended."""
        height, digest, view = self.store.tip()
        first = 1 if self.plan is None else self.plan.schedule.epoch(epoch).first_height
        start = Start(
            self.store.load_safety(epoch=epoch),
            CommittedTip(Height(height), Digest(digest), View(view)),
            tuple(self.store.load_certificates(epoch=epoch, first_height=first)),
            self.store.finalization_at(height) if height > 0 else None,
        )
        actions = core.handle(start)
        proof = None if self.plan is None else self.store.epoch_end(epoch)
        if proof is not None:
            # Ended before a crash that lost some of its commits: commit them again.
            actions += core.handle(EpochEndReceived(proof))
        await self._carry_out(actions, epoch)

    async def _enter_epoch(self, epoch: int, anchor: Anchor, *, resumed: bool = False) -> None:
        """Start `epoch`'s core on `anchor`; the ended one keeps answering fetches.
        `resumed`: the node starts in this epoch (a restart)."""
        assert self.plan is not None and self._start_core is not None
        self._timer_scope.cancel()
        if self.core.ended is not None:
            self._retained[self.core.epoch] = self.core
            for old in [e for e in self._retained if e <= epoch - 1 - RETAINED_EPOCHS]:
                del self._retained[old]
        if not self.plan.is_member(epoch):
            self._enter_following(epoch, anchor)
            return
        self.following = False
        if epoch == 0 and self.core.epoch == 0 and not self.core.started:
            core = self.core  # the first epoch's, built with the node
        else:
            core = self._start_core(epoch, anchor)
        self.core, self.epoch = core, epoch
        self.on_epoch(epoch, core)
        log.info(
            "event=epoch_started epoch=%d anchor_height=%d validator=%d",
            epoch,
            anchor.height,
            core.me,
        )
        await self._start(epoch, core)
        last = self.plan.schedule.last_height(epoch)
        if resumed and last is not None and core.ended is None:
            # The others may have moved on while this node was down (or it
            # committed the last block but lost the proof): whoever has the
            # proof sends it, without waiting to hear a later epoch's message.
            self._broadcast_wire(encode_epoch_wire(EpochEndRequest(epoch=epoch)))
        buffered, self._buffer, self._buffer_bytes = self._buffer, [], 0
        for peer, envelope in buffered:
            self._on_envelope(peer, envelope)

    def _enter_following(self, epoch: int, anchor: Anchor) -> None:
        """Follow `epoch`, of whose set this node is not a member: the follow task
        posts `EpochFollowed` once the epoch's last block is committed."""
        assert self._follow_epoch is not None, "follow_epoch is needed outside a set"
        self.epoch, self.following = epoch, True
        self._buffer, self._buffer_bytes = [], 0
        self.on_epoch(epoch, None)
        log.info("event=epoch_following epoch=%d anchor_height=%d", epoch, anchor.height)
        self._spawn(self._follow, epoch, anchor)

    async def _follow(self, epoch: int, anchor: Anchor) -> None:
        assert self._follow_epoch is not None
        following = await self._follow_epoch(epoch, anchor)
        while not self._post(EpochFollowed(following), epoch):
            await trio.sleep(EPOCH_PROOF_RETRY_S)  # the queue is full: not lost

    async def _advance(self) -> None:
        """Move on to the next epoch once the core has ended its own."""
        while self._next is not None:
            epoch, anchor = self._next
            self._next = None
            await self._enter_epoch(epoch, anchor)

    def post(self, event: Event) -> bool:
        """An event for the current epoch's core."""
        return self._post(event, self.epoch)

    def _post(self, event: Event | EpochFollowed, epoch: int) -> bool:
        try:
            self._events_in.send_nowait((epoch, event, trio.current_time()))
        except trio.WouldBlock:
            self.metrics.dropped_events.inc()
            return False
        return True

    def on_peer_message(self, peer: int, data: bytes) -> None:
        """A consensus frame from validator `peer` (transport-authenticated)."""
        if self.plan is not None:
            self._on_epoch_wire(peer, data)
            return
        try:
            message = decode_message(data)
        except MalformedMessage as exc:
            self._malformed(peer, exc)
            return
        if self.fault is not None:
            self._send_fault(self.fault.incoming(peer, message))
        self._to_core(ValidatorIndex(peer), message)

    def _malformed(self, peer: int, exc: MalformedMessage) -> None:
        self.metrics.malformed_messages.inc()
        log.warning("event=malformed_message peer=%d reason=%s", peer, exc)

    def _to_core(self, sender: ValidatorIndex, message: Message) -> None:
        if (
            isinstance(message, Certificate)
            and message.kind == VoteKind.FINALIZE
            and message.height <= self.core.committed.height
        ):
            # Consensus needs no finalization at or below its committed height, but a
            # block committed under a descendant's finalization is proven to block
            # subscribers only by its own: keep that one when it comes late.
            self._keep_late_finalization(message, self.core)
            return
        self.post(MessageReceived(sender, message))

    def _keep_late_finalization(self, cert: Certificate, core: ConsensusCore) -> None:
        """Keep `cert` if it verifies in `core`'s epoch (its set and domain)."""
        if self.store.has_own_finalization(cert.height):
            return  # one per height: a peer repeating it costs a lookup
        if not core.verifier.check_certificate(core.validators, cert):
            return
        self.store.save_late_finalization(cert)
        self.metrics.late_finalizations.inc()

    # ---- epoch routing ----------------------------------------------------------------

    def _on_epoch_wire(self, peer: int, data: bytes) -> None:
        try:
            wire = decode_epoch_wire(data)  # checks the size before decoding
        except MalformedMessage as exc:
            self._malformed(peer, exc)
            return
        match wire:
            case EpochEnvelope():
                self._on_envelope(peer, wire)
            case EpochEndProof():
                if wire.epoch == self.epoch and not self.following and self._proof_allowed(peer):
                    self.post(EpochEndReceived(wire))  # the core checks it
            case EpochEndRequest():
                self._offer_proof(peer, wire.epoch)

    def _on_envelope(self, peer: int, envelope: EpochEnvelope) -> None:
        assert self.plan is not None
        epoch = envelope.epoch
        if epoch >= len(self.plan.schedule):
            return
        index = self.plan.members.index_of(epoch, peer)
        if index is None:
            return  # not a member of that epoch: nothing it says there counts
        if epoch > self.epoch:
            size = len(envelope.message)
            if (
                epoch == self.epoch + 1
                and len(self._buffer) < BUFFERED_NEXT_EPOCH
                and self._buffer_bytes + size <= BUFFERED_NEXT_EPOCH_BYTES
            ):
                self._buffer.append((peer, envelope))
                self._buffer_bytes += size
            if not self.following:  # a follower learns the end from the members
                self._ask_ahead(peer)
            return
        try:
            message = decode_message(envelope.message, anchored=epoch > 0)
        except MalformedMessage as exc:
            self._malformed(peer, exc)
            return
        if epoch == self.epoch and self.following:
            self._answer_old_epoch(epoch, index, message)
            return
        if epoch == self.epoch:
            self._to_core(index, message)
            return
        old = self._retained.get(epoch)
        if (
            isinstance(message, Certificate)
            and message.kind == VoteKind.FINALIZE
            and old is not None
            and message.height <= old.committed.height
        ):
            self._keep_late_finalization(message, old)  # a committed block's own
        self._answer_old_epoch(epoch, index, message)
        self._offer_proof(peer, epoch)

    def _answer_old_epoch(self, epoch: int, index: ValidatorIndex, message: Message) -> None:
        """A laggard's fetch in an epoch this node has left: the ended core answers
        it, or, once that is gone, the committed blocks in the store."""
        if not isinstance(message, BlockRequest | CertificateRequest):
            return
        old = self._retained.get(epoch)
        if old is not None:
            for action in old.handle(MessageReceived(index, message)):
                if isinstance(action, Send):
                    self._send(epoch, action.to, action.message)
            return
        if isinstance(message, BlockRequest):
            response = answer_block_request(message, self.store.block_by_digest)
            if response is not None:
                self._send(epoch, index, response)

    def _proof_allowed(self, peer: int) -> bool:
        """At most one proof per peer per EPOCH_PROOF_RETRY_S reaches the core: each
        costs a quorum of signature checks on the event loop."""
        now = trio.current_time()
        last = self._proof_from.get(peer)
        if last is not None and now - last < EPOCH_PROOF_RETRY_S:
            return False
        self._proof_from[peer] = now
        return True

    def _offer_proof(self, peer: int, epoch: int) -> None:
        """Send `peer` the end proof of `epoch` if this node has it (rate-limited)."""
        proof = self._proofs.get(epoch)
        if proof is None and epoch < self.epoch:
            proof = self.store.epoch_end(epoch)
            if proof is not None:
                self._proofs[epoch] = proof
        now = trio.current_time()
        last = self._offered.get((peer, epoch))
        if proof is None or (last is not None and now - last < EPOCH_PROOF_RETRY_S):
            return
        if len(self._offered) >= MAX_PROOF_OFFERS:
            self._offered.clear()
        self._offered[(peer, epoch)] = now
        if self.is_connected():
            self.p2p.send(peer, Channel.CONSENSUS, encode_epoch_wire(proof))

    def _ask_ahead(self, peer: int) -> None:
        """`peer` is in a later epoch, so ours has ended: ask it for the proof (at
        most once per EPOCH_PROOF_RETRY_S). A node that missed the end and whose
        messages nobody answers would otherwise never learn it."""
        now = trio.current_time()
        if now - self._asked_ahead_at < EPOCH_PROOF_RETRY_S or not self.is_connected():
            return
        self._asked_ahead_at = now
        self.p2p.send(peer, Channel.CONSENSUS, encode_epoch_wire(EpochEndRequest(self.epoch)))

    def _epoch_ended(self, epoch: int, ended: EpochEnded) -> None:
        """Keep the proof (fsync) before anything acts on it, hand it to every
        validator, and start the next epoch once this action list is done."""
        self.store.save_epoch_end(ended.proof)
        self._proofs[epoch] = ended.proof
        log.info("event=epoch_ended epoch=%d last_height=%d", epoch, ended.height)
        self._send_to_members(epoch, encode_epoch_wire(ended.proof), also_next=True)
        self._next = (epoch + 1, Anchor(ended.last_block, ended.height))

    # ---- carrying out actions ---------------------------------------------------------

    def _wire(self, epoch: int, message: Message) -> bytes:
        """A message as it travels: plain on a single-epoch chain, else enveloped."""
        inner = encode_message(message)
        if self.plan is None:
            return inner
        return encode_epoch_wire(EpochEnvelope(epoch=epoch, message=inner))

    def _send(self, epoch: int, to: int, message: Message) -> None:
        peer = to if self.plan is None else self.plan.members.peer_of(epoch, to)
        if peer is not None and self.is_connected():
            self.p2p.send(peer, Channel.CONSENSUS, self._wire(epoch, message))

    def _broadcast_wire(self, data: bytes) -> None:
        if self.is_connected():
            self.p2p.broadcast(Channel.CONSENSUS, data)

    def _send_to_members(self, epoch: int, data: bytes, *, also_next: bool = False) -> None:
        """`epoch`'s messages go to its members only (and the end proof to the
        next epoch's too); every peer when the plan does not say who this is."""
        plan = self.plan
        if plan is None or plan.me is None:
            self._broadcast_wire(data)
            return
        peers = set(plan.members.peers(epoch))
        if also_next and epoch + 1 < len(plan.schedule):
            peers |= set(plan.members.peers(epoch + 1))
        peers.discard(plan.me)
        if self.is_connected():
            for peer in sorted(peers):
                self.p2p.send(peer, Channel.CONSENSUS, data)

    async def _carry_out(self, actions: list[Action], epoch: int = 0) -> None:
        voted_blocks: list[Block] = []  # written with the Persist that follows
        for action in actions:
            match action:
                case StoreBlock() if action.synced:
                    voted_blocks.append(action.block)
                case StoreBlock():
                    self.store.store_block(action.block, synced=False)
                case Persist():
                    # On the loop, deliberately: one small fsync (well under a
                    # millisecond) is cheaper than a round trip to a worker thread,
                    # which waits for the GIL behind execution and verification.
                    # Nothing after it in this list runs before it is durable.
                    self.store.save_vote(action.record, voted_blocks, epoch=epoch)
                    voted_blocks = []
                case StoreCertificate():
                    self.store.save_certificate(action.certificate, epoch=epoch)
                    if action.certificate.kind == VoteKind.NULLIFY:
                        self.metrics.views_nullified.inc()
                case Send():
                    self._send(epoch, action.to, action.message)
                case Broadcast():
                    routed = None if self.fault is None else self.fault.outgoing(action.message)
                    if routed is not None:
                        self._send_fault(routed)
                    else:
                        self._send_to_members(epoch, self._wire(epoch, action.message))
                case SetTimer():
                    self._set_timer(action.view, action.delay_ms, epoch)
                case BuildPayload():
                    self._spawn(self._build_payload, action, epoch)
                case VerifyPayload():
                    self._spawn(self._verify_payload, action, epoch)
                case Commit():
                    log.info("event=decided height=%d", action.block.height)
                    await self.commits.send(action)
                case EpochEnded():
                    self._epoch_ended(epoch, action)
                case ReportEvidence():
                    ev = action.evidence
                    record = EvidenceRecord(ev.offender, ev.first, ev.second, ev.reason)
                    if self.store.save_evidence(record, epoch=epoch):
                        self.metrics.evidence.inc()
                        log.warning(
                            "event=equivocation epoch=%d offender=%d view=%d reason=%s",
                            epoch,
                            ev.offender,
                            ev.first.view,
                            ev.reason,
                        )
                case Fetch():
                    self._spawn(self._fetch, action.request, action.prefer, epoch)
        for block in voted_blocks:
            self.store.store_block(block)

    def _send_fault(self, outgoing: Outgoing) -> None:
        """Send what the test fault decided, each message to one peer, some later."""
        for peer, message, delay_s in outgoing:
            if delay_s <= 0:
                if self.is_connected():
                    self.p2p.send(peer, Channel.CONSENSUS, encode_message(message))
            else:
                self._spawn(self._send_later, peer, encode_message(message), delay_s)

    async def _send_later(self, peer: int, data: bytes, delay_s: float) -> None:
        await trio.sleep(delay_s)
        if self.is_connected():
            self.p2p.send(peer, Channel.CONSENSUS, data)

    def _spawn(self, fn: Callable[..., object], *args: object) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)  # type: ignore[arg-type]

    def _set_timer(self, view: View, delay_ms: int, epoch: int) -> None:
        self._timer_scope.cancel()
        self._timer_scope = scope = trio.CancelScope()

        async def fire() -> None:
            with scope:
                await trio.sleep(delay_ms / 1000)
                self._post(TimerFired(view), epoch)

        self._spawn(fire)

    async def _build_payload(self, action: BuildPayload, epoch: int) -> None:
        if self.core.known_block(action.parent) is None:
            await self._wait_for_parent(action)
        payload = await self.payloads.build(action.parent, action.height)
        self._post(PayloadBuilt(action.view, payload), epoch)

    async def _wait_for_parent(self, action: BuildPayload) -> None:
        """Until the core holds the block a proposal builds on, at most half a
        view timeout (the payload service's `lag_wait_ms`). The core may choose
        a parent it knows only by its notarization (a proposal that reached
        this node late, or not yet); the payload repeats the parent's vouched
        state when this node's execution is behind it, and voters refuse a
        vouched height below the parent's (`StateHeightRegressed`), so a
        payload built without the parent could cost the view. The core fetches
        a finalized block it lacks; a notarized one usually arrives as its
        proposal."""
        started = trio.current_time()
        with trio.move_on_after(self.payloads.lag_wait_ms / 1000):
            while self.core.known_block(action.parent) is None:
                await self._handled.wait()
        log.info(
            "event=build_waited_for_parent height=%d found=%s wait_ms=%d",
            action.height,
            self.core.known_block(action.parent) is not None,
            int((trio.current_time() - started) * 1000),
        )

    async def _verify_payload(self, action: VerifyPayload, epoch: int) -> None:
        valid = await self.payloads.verify(action.block)
        self._post(PayloadVerified(action.view, action.block.digest(), valid), epoch)

    async def _fetch(
        self,
        request: BlockRequest | SyncRequest | CertificateRequest,
        prefer: int | None,
        epoch: int,
    ) -> None:
        """Ask connected peers one at a time (the preferred one first) until one
        answers; feed the answer to the core, which asks again if it was useless."""
        peers = self.p2p.connected_peers()
        if not peers or not self.is_connected():
            return
        if self.plan is not None:
            members = self.plan.members
            peers = [p for p in peers if members.index_of(epoch, p) is not None]
            prefer = None if prefer is None else members.peer_of(epoch, prefer)
            if not peers:
                return
        start = next(self._peer_rotation)
        order = [peers[(start + i) % len(peers)] for i in range(len(peers))]
        if prefer is not None and prefer in order:
            order.remove(prefer)
            order.insert(0, prefer)
        data = RequestKind.CONSENSUS.value + self._wire(epoch, request)
        for peer in order:
            try:
                answer = await self.p2p.request(peer, data)
            except Exception as exc:  # any transport failure: try the next peer
                log.debug("event=block_fetch_failed peer=%d reason=%s", peer, exc)
                continue
            if not answer:
                continue
            try:
                message = decode_message(answer, anchored=epoch > 0)
            except MalformedMessage as exc:
                log.warning("event=bad_block_response peer=%d reason=%s", peer, exc)
                continue
            sender = (
                ValidatorIndex(peer)
                if self.plan is None
                else self.plan.members.index_of(epoch, peer)
            )
            if sender is not None:
                self._post(MessageReceived(sender, message), epoch)
            return

    # ---- answering peers ----------------------------------------------------------------

    def answer_consensus_request(self, data: bytes) -> bytes:
        """Blocks by digest (from memory or the store), committed blocks by height,
        or the certificates of some views; on a chain of several epochs, of the
        epoch the request's envelope names."""
        if self.plan is not None:
            return self._answer_epoch_request(data)
        try:
            request = decode_message(data)
        except MalformedMessage:
            return b""
        if isinstance(request, BlockRequest):
            response = self.core.answer_block_request(request)
            return encode_message(response) if response is not None else b""
        if isinstance(request, SyncRequest):
            sync = answer_sync_request(request, self.store.block_at, self.store.finalization_at)
            return encode_message(sync) if sync is not None else b""
        if isinstance(request, CertificateRequest):
            certs = self.core.answer_certificate_request(request, self.store.certificates_at)
            return encode_message(certs) if certs is not None else b""
        return b""

    def _answer_epoch_request(self, data: bytes) -> bytes:
        assert self.plan is not None
        try:
            envelope = decode_epoch_wire(data)
            if not isinstance(envelope, EpochEnvelope):
                return b""
            epoch = envelope.epoch
            if epoch > self.epoch:
                return b""
            request = decode_message(envelope.message, anchored=epoch > 0)
        except MalformedMessage:
            return b""
        if epoch == self.epoch and not self.following:
            core: ConsensusCore | None = self.core
        else:
            core = self._retained.get(epoch)
        if isinstance(request, BlockRequest):
            if core is not None:
                response = core.answer_block_request(request)
            else:
                response = answer_block_request(request, self.store.block_by_digest)
            return encode_message(response) if response is not None else b""
        if isinstance(request, SyncRequest):
            # Committed blocks of this epoch only, each with the finalization it
            # was committed under (signed in this epoch's domain).
            schedule = self.plan.schedule
            low = schedule.epoch(epoch).first_height
            high = schedule.last_height(epoch)

            def in_epoch(height: int) -> bool:
                return low <= height and (high is None or height <= high)

            sync = answer_sync_request(
                request,
                lambda h: self.store.block_at(h) if in_epoch(h) else None,
                lambda h: self.store.finalization_at(h) if in_epoch(h) else None,
            )
            return encode_message(sync) if sync is not None else b""
        if isinstance(request, CertificateRequest):

            def stored(view: int) -> list[Certificate]:
                return self.store.certificates_at(view, epoch=epoch)

            if core is not None:
                certs = core.answer_certificate_request(request, stored)
            else:
                certs = answer_certificate_request(request, stored)
            return encode_message(certs) if certs is not None else b""
        return b""
