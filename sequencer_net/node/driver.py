"""The I/O shell around the consensus core: events in, actions carried out in order.

One task owns the core. Everything that reaches it (peer messages, timer
firings, answers about payloads, fetched blocks) becomes an event on one
channel; the actions it returns are carried out in order, and a `Persist`
(with the block it protects) is on disk before any later action runs:
build -> persist (fsync) -> send.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

import trio

from consensus.core import ConsensusCore
from consensus.io import (
    Action,
    Broadcast,
    BuildPayload,
    Commit,
    CommittedTip,
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
    MalformedMessage,
    SyncRequest,
    VoteKind,
    decode_message,
    encode_message,
)
from consensus.sync import answer_sync_request
from consensus.types import Digest, Height, ValidatorIndex, View
from sequencer_net.metrics import Metrics
from sequencer_net.node.equivocation import Equivocator, Outgoing
from sequencer_net.node.requests import RequestKind
from sequencer_net.p2p.network import Channel, P2PNetwork
from sequencer_net.payload.service import PayloadService
from sequencer_net.storage.node_store import EvidenceRecord, NodeStore

log = logging.getLogger("seqnet.consensus")

EVENT_QUEUE = 10_000
"""Events waiting for the core. Peer messages beyond it are dropped (and counted):
a flood must not grow memory; consensus recovers lost messages by re-sending."""


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
    ) -> None:
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
        self._events_in, self._events_out = trio.open_memory_channel[tuple[Event, float]](
            EVENT_QUEUE
        )
        self._timer_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._peer_rotation = itertools.count()

    # ---- the loop ---------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            height, digest, view = self.store.tip()
            start = Start(
                self.store.load_safety(),
                CommittedTip(Height(height), Digest(digest), View(view)),
                tuple(self.store.load_certificates()),
                self.store.finalization_at(height) if height > 0 else None,
            )
            await self._carry_out(self.core.handle(start))
            log.info(
                "event=consensus_started validator=%d view=%d height=%d",
                self.core.me,
                self.core.view,
                height,
            )
            task_status.started()
            view = self.core.view
            async for event, posted_at in self._events_out:
                if isinstance(event, MessageReceived):
                    # Consensus first: how long a peer's message waited for the core.
                    self.metrics.consensus_event_delay.observe(trio.current_time() - posted_at)
                await self._carry_out(self.core.handle(event))
                self.metrics.view.set(self.core.view)
                if self.core.view != view:
                    view = self.core.view
                    self.on_view(view)

    def post(self, event: Event) -> bool:
        try:
            self._events_in.send_nowait((event, trio.current_time()))
        except trio.WouldBlock:
            self.metrics.dropped_events.inc()
            return False
        return True

    def on_peer_message(self, peer: int, data: bytes) -> None:
        """A consensus frame from validator `peer` (transport-authenticated)."""
        try:
            message = decode_message(data)
        except MalformedMessage as exc:
            self.metrics.malformed_messages.inc()
            log.warning("event=malformed_message peer=%d reason=%s", peer, exc)
            return
        if self.fault is not None:
            self._send_fault(self.fault.incoming(peer, message))
        if (
            isinstance(message, Certificate)
            and message.kind == VoteKind.FINALIZE
            and message.height <= self.core.committed.height
        ):
            # Consensus needs no finalization at or below its committed height, but a
            # block committed under a descendant's finalization is proven to block
            # subscribers only by its own: keep that one when it comes late.
            self._keep_late_finalization(message)
            return
        self.post(MessageReceived(ValidatorIndex(peer), message))

    def _keep_late_finalization(self, cert: Certificate) -> None:
        if self.store.has_own_finalization(cert.height):
            return  # one per height: a peer repeating it costs a lookup
        if not self.core.verifier.check_certificate(self.core.validators, cert):
            return
        self.store.save_late_finalization(cert)
        self.metrics.late_finalizations.inc()

    # ---- carrying out actions ---------------------------------------------------------

    async def _carry_out(self, actions: list[Action]) -> None:
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
                    self.store.save_vote(action.record, voted_blocks)
                    voted_blocks = []
                case StoreCertificate():
                    self.store.save_certificate(action.certificate)
                    if action.certificate.kind == VoteKind.NULLIFY:
                        self.metrics.views_nullified.inc()
                case Send():
                    if self.is_connected():
                        self.p2p.send(action.to, Channel.CONSENSUS, encode_message(action.message))
                case Broadcast():
                    routed = None if self.fault is None else self.fault.outgoing(action.message)
                    if routed is not None:
                        self._send_fault(routed)
                    elif self.is_connected():
                        self.p2p.broadcast(Channel.CONSENSUS, encode_message(action.message))
                case SetTimer():
                    self._set_timer(action.view, action.delay_ms)
                case BuildPayload():
                    self._spawn(self._build_payload, action)
                case VerifyPayload():
                    self._spawn(self._verify_payload, action)
                case Commit():
                    await self.commits.send(action)
                case ReportEvidence():
                    ev = action.evidence
                    record = EvidenceRecord(ev.offender, ev.first, ev.second, ev.reason)
                    if self.store.save_evidence(record):
                        self.metrics.evidence.inc()
                        log.warning(
                            "event=equivocation offender=%d view=%d reason=%s",
                            ev.offender,
                            ev.first.view,
                            ev.reason,
                        )
                case Fetch():
                    self._spawn(self._fetch, action.request, action.prefer)
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

    def _set_timer(self, view: View, delay_ms: int) -> None:
        self._timer_scope.cancel()
        self._timer_scope = scope = trio.CancelScope()

        async def fire() -> None:
            with scope:
                await trio.sleep(delay_ms / 1000)
                self.post(TimerFired(view))

        self._spawn(fire)

    async def _build_payload(self, action: BuildPayload) -> None:
        payload = await self.payloads.build(action.parent, action.height)
        self.post(PayloadBuilt(action.view, payload))

    async def _verify_payload(self, action: VerifyPayload) -> None:
        valid = await self.payloads.verify(action.block)
        self.post(PayloadVerified(action.view, action.block.digest(), valid))

    async def _fetch(
        self, request: BlockRequest | SyncRequest | CertificateRequest, prefer: int | None
    ) -> None:
        """Ask connected peers one at a time (the preferred one first) until one
        answers; feed the answer to the core, which asks again if it was useless."""
        peers = self.p2p.connected_peers()
        if not peers or not self.is_connected():
            return
        start = next(self._peer_rotation)
        order = [peers[(start + i) % len(peers)] for i in range(len(peers))]
        if prefer is not None and prefer in order:
            order.remove(prefer)
            order.insert(0, prefer)
        data = RequestKind.CONSENSUS.value + encode_message(request)
        for peer in order:
            try:
                answer = await self.p2p.request(peer, data)
            except Exception as exc:  # any transport failure: try the next peer
                log.debug("event=block_fetch_failed peer=%d reason=%s", peer, exc)
                continue
            if not answer:
                continue
            try:
                message = decode_message(answer)
            except MalformedMessage as exc:
                log.warning("event=bad_block_response peer=%d reason=%s", peer, exc)
                continue
            self.post(MessageReceived(ValidatorIndex(peer), message))
            return

    # ---- answering peers ----------------------------------------------------------------

    def answer_consensus_request(self, data: bytes) -> bytes:
        """Blocks by digest (from memory or the store), committed blocks by height,
        or the certificates of some views."""
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
