"""Batch acknowledgements and availability certificates: the node's shell around
sequencer_net/batches/certificate.py (docs/storage-and-mempool.md, "Batch
certificates").

Follow one batch:
  author cuts and stores it, broadcasts it (BATCH channel), and acknowledges
  it itself, verified (`own_batch`: intake checked every signature) -> each
  receiver stores it (the pool), verifying it first if it is one of the
  batch's designated verifiers (`must_verify`), then `acknowledge`: record
  (author, round) -> digest, fsync, and only then send the signed ack, with
  its verified flag, to the author (CERT channel) -> the author counts acks
  (`_on_ack`, a signer's verified ack replacing its unverified one); at a
  quorum of power whose verified part exceeds f it holds the certificate and
  broadcasts it (CERT channel) -> every validator verifies it
  (`_on_certificate`), holds it from the current view on, and fetches the
  batch if it lacks it.

Liveness fallback: a receiver that acknowledged a batch unverified verifies it
once it has held it `verify_after_ms` without holding its certificate, and
sends a second, verified ack for the same digest (the one-batch-per-round rule
is about digests, so it is intact). A designated verifier that is down or
silent, or an author that sent its batch only to the others, then delays the
certificate by that bound, never stops it; a batch whose carried senders or
signatures are wrong never gathers more than f of verified power.

Leaders fill blocks from held certificates, oldest first (`candidates`);
voters wait briefly for the certificates of named batches they lack
(`wait_for_certificates`: usually on their way or queued here), then fetch
the rest (`fetch_certificates`, a request of kind BATCH_CERTIFICATES) and apply the inclusion rule
(payload/checks.py `check_certificate_inclusion`). So that an overdue
certificate reaches the leaders who must include it, each validator, as it
enters a view, sends the certificates that will be overdue in the next view
to that view's leader (`view_changed`), and after refusing a proposal for the
rule it sends the overdue ones to the next leader at once. An own batch that
gathers no quorum within the inclusion delay is broadcast again, so a batch
whose first broadcast was lost still gets certified.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Final

import msgspec
import trio

from consensus.crypto import PrivateKey
from consensus.types import ValidatorSet, View
from sequencer_net.batches.batch import Batch
from sequencer_net.batches.certificate import (
    AckCollector,
    BatchAck,
    BatchCertificate,
    CertificateBook,
    InvalidCertMessage,
    Recover,
    decode_cert_message,
    decode_certificate,
    designated_verifiers,
    encode_cert_message,
    sign_ack,
    verify_ack,
    verify_certificate,
)
from sequencer_net.batches.fetch import BatchFetcher
from sequencer_net.batches.pool import MAX_BATCHES_PER_REQUEST, BatchPool, BatchRequest
from sequencer_net.logging_limits import LogLimiter
from sequencer_net.metrics import Metrics
from sequencer_net.node.requests import RequestKind
from sequencer_net.p2p.network import Channel, P2PNetwork
from sequencer_net.payload.checks import HeldBatch
from sequencer_net.storage.group_commit import GroupCommit, GroupWriteFailed
from sequencer_net.storage.node_store import NodeStore

log = logging.getLogger("seqnet.certs")

INBOUND_CERT_QUEUE: Final = 4_096
"""Acks and certificates waiting to be verified; beyond it new ones are dropped
(an author re-broadcasts an uncertified batch, and certificates are re-sent to
leaders and fetchable by digest)."""
MAX_PENDING_OWN: Final = 1_024
"""Own batches still gathering acknowledgements; the oldest are given up (their
transactions stay pending and are batched again after a restart)."""
MAX_REMEMBERED_ACKS: Final = 100_000
"""(author, round) acknowledgements remembered in memory (the store has all)."""
MAX_RESENT_PER_VIEW: Final = 64
"""Certificates sent to a leader at one view change, oldest first."""
MAX_REBROADCAST_PER_VIEW: Final = 4
"""Uncertified own batches broadcast again at one view change."""
MAX_REMEMBERED_VIEW_ENTRIES: Final = 64
"""Views whose entry time is remembered (`overdue_as_of_ms`): a proposal is
judged by the entry into its own view, so a few suffice."""
MAX_CERTIFICATE_ANSWER: Final = 64
"""Certificates in one answer (each at most MAX_CERTIFICATE_BYTES, ~72 KiB)."""
BATCH_FETCH_WAIT_S: Final = 0.5
"""How long a leader spends fetching the batches of held certificates it lacks."""
DEFAULT_VERIFY_AFTER_MS: Final = 500
"""The liveness fallback's bound when none is given (`verify_after_ms`)."""
MAX_VERIFYING_LATER: Final = 4_096
"""Fallback checks waiting at once (each a sleeping task). At the highest
rates a node holds a few dozen; past this bound (a flood of batches no one
certifies) new ones are not scheduled, and such a batch is verified only if a
block names it and it must be fetched, or never."""

_request_decoder = msgspec.msgpack.Decoder(BatchRequest)
_list_decoder = msgspec.msgpack.Decoder(list[bytes])
_encoder = msgspec.msgpack.Encoder()


class _OwnPending:
    __slots__ = ("collector", "encoded", "sent_at_ms", "sent_view")

    def __init__(
        self, collector: AckCollector, encoded: bytes, sent_view: int, sent_at_ms: int
    ) -> None:
        self.collector = collector
        self.encoded = encoded
        self.sent_view = sent_view
        self.sent_at_ms = sent_at_ms


class BatchCertifier:
    def __init__(
        self,
        *,
        me: int,
        key: PrivateKey,
        validators: ValidatorSet,
        separator: bytes,
        recover: Recover,
        store: NodeStore,
        group: GroupCommit,
        pool: BatchPool,
        fetcher: BatchFetcher,
        p2p: P2PNetwork,
        metrics: Metrics,
        view: Callable[[], int],
        delay_views: int,
        delay_ms: int = 0,
        is_connected: Callable[[], bool] = lambda: True,
        clock_ms: Callable[[], int] = lambda: time.monotonic_ns() // 1_000_000,
        leader: Callable[[int], int] | None = None,
        on_own_certified: Callable[[], None] = lambda: None,
        verify_after_ms: int = DEFAULT_VERIFY_AFTER_MS,
    ) -> None:
        """`validators` is numbered as the p2p peers are (batch authors and ack
        signers); `leader(view)` is the peer that leads consensus `view` (by
        default `validators`' leader of it). `verify_after_ms`: how long a batch
        acknowledged unverified waits for its certificate before this node
        verifies it itself (the node passes the inclusion rule's time bound)."""
        self.me = me
        self.key = key
        self.validators = validators
        self.previous: ValidatorSet | None = None
        """The previous epoch's power, on a chain of several epochs: a certificate
        formed in it still counts in the next one."""
        self.leader = leader or (lambda view: self.validators.leader(View(view)))
        self.separator = separator
        self.recover = recover
        self.store = store
        self.group = group
        self.pool = pool
        self.fetcher = fetcher
        self.p2p = p2p
        self.metrics = metrics
        self.view = view
        self.delay_views = delay_views
        """K of the inclusion rule (`[consensus] inclusion_delay_views`)."""
        self.delay_ms = delay_ms
        """Its time bound (`[consensus] inclusion_delay_ms`)."""
        self.is_connected = is_connected
        self.on_own_certified = on_own_certified
        """Told each time an own batch gathers its certificate (the batcher)."""
        self.clock_ms = clock_ms
        self.verify_after_ms = verify_after_ms
        self._designated = self._designated_for(validators)
        self._verifying_later: set[bytes] = set()
        """Digests acknowledged unverified whose fallback check is scheduled."""
        self.book = CertificateBook()
        self.log_limiter = LogLimiter(log)
        self._own: OrderedDict[bytes, _OwnPending] = OrderedDict()
        self._acked: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._ack_writes: dict[tuple[int, int], trio.Event] = {}
        """(author, round) whose ack record is recorded here but its synced write
        (group commit, a worker thread) not finished: set when it ends."""
        self._resent: dict[bytes, int] = {}
        """Batch digest -> the last view whose leader it was sent to."""
        self._entered: OrderedDict[int, int] = OrderedDict()
        """View -> this validator's monotonic clock (ms) when it entered it."""
        self._arrived = trio.Event()
        self._send, self._receive = trio.open_memory_channel[tuple[int, bytes]](INBOUND_CERT_QUEUE)
        self._nursery: trio.Nursery | None = None

    def _designated_for(self, validators: ValidatorSet) -> frozenset[int]:
        """The authors whose batches this node verifies on arrival."""
        return frozenset(
            a for a in range(len(validators)) if self.me in designated_verifiers(validators, a)
        )

    def must_verify(self, author: int) -> bool:
        """Whether this node is a designated verifier of `author`'s batches
        (batches/certificate.py `designated_verifiers`) in the current epoch; a
        non-member author's batches are verified (they are not acknowledged)."""
        return author in self._designated or not self.validators.contains(author)

    # ---- startup ----------------------------------------------------------------------

    def load(self) -> int:
        """Hold again the certificates stored before a restart (verified again;
        those whose batch is gone or included are deleted). Returns how many."""
        stale: list[bytes] = []
        for encoded in self.store.load_batch_certificates():
            try:
                cert = decode_certificate(encoded)
                self._verify_certificate(cert)
            except InvalidCertMessage:
                continue
            if cert.batch not in self.pool or self.pool.is_included(cert.batch):
                stale.append(cert.batch)
                continue
            self.book.add(cert, self.view(), self.now_ms())
        if stale:
            self.store.delete_batch_certificates(stale)
        return len(self.book)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            async for peer, data in self._receive:
                await self._handle(peer, data)

    # ---- the receiver's side: acknowledge ------------------------------------------------

    async def acknowledge(self, sender: int, digest: bytes) -> None:
        """A batch `sender` broadcast, now verified and in the pool: acknowledge it,
        unless this node acknowledged another batch for that (author, round).
        Order: record (author, round) -> fsync (which also makes the batch,
        written unsynced before, durable) -> send; a copy of the batch that
        arrives during that fsync is acknowledged after it too."""
        identity = self.pool.identity(digest)
        if identity is None:
            return
        author, round_ = identity
        if author != sender or author == self.me:
            return
        if not self.validators.contains(author):
            # Not a member of the current epoch: its batch could gather no
            # certificate in it, so it is not acknowledged (it cuts none then).
            return
        key = (author, round_)
        prior = self._acked.get(key)
        if prior is None:
            prior = self.store.acked_batch(author, round_)
        if prior is not None and prior != digest:
            self.log_limiter.warning(
                "second_batch_for_round",
                sender,
                "round=%d acked=%s refused=%s",
                round_,
                prior.hex()[:12],
                digest.hex()[:12],
            )
            return
        if prior is None:
            self._remember_ack(key, digest)
            written = self._ack_writes[key] = trio.Event()
            try:
                await self.group.write(
                    lambda write: self.store.stage_batch_ack(write, author, round_, digest)
                )
            except GroupWriteFailed:
                self._acked.pop(key, None)
                log.error("event=batch_ack_not_persisted author=%d round=%d", author, round_)
                return
            finally:
                del self._ack_writes[key]
                written.set()
        elif (pending := self._ack_writes.get(key)) is not None:
            # The same batch again while the first copy's record is still being
            # written: its ack, too, leaves only once that record is durable.
            await pending.wait()
            if self._acked.get(key) != digest:
                return  # that write failed: nothing was acknowledged
        verified = self.pool.is_verified(digest)
        self._send_ack(author, round_, digest, verified)
        if (
            not verified
            and digest not in self._verifying_later
            and len(self._verifying_later) < MAX_VERIFYING_LATER
            and self._nursery is not None
        ):
            self._verifying_later.add(digest)
            self._nursery.start_soon(self._verify_later, author, round_, digest)

    def _send_ack(self, author: int, round_: int, digest: bytes, verified: bool) -> None:
        ack = sign_ack(self.key, self.separator, self.me, digest, author, round_, verified)
        if self.is_connected():
            self.p2p.send(author, Channel.CERT, encode_cert_message(ack))
        self.metrics.batch_acks_sent.inc()

    async def _verify_later(self, author: int, round_: int, digest: bytes) -> None:
        """The liveness fallback: after `verify_after_ms` without its certificate,
        verify a batch acknowledged unverified and send a verified ack for it."""
        try:
            await trio.sleep(self.verify_after_ms / 1000)
            if self.certified(digest) or self._acked.get((author, round_)) != digest:
                return
            if await self.pool.verify_held(digest) and not self.certified(digest):
                log.info("event=batch_verified_late digest=%s round=%d", digest.hex()[:12], round_)
                self._send_ack(author, round_, digest, True)
        finally:
            self._verifying_later.discard(digest)

    def _remember_ack(self, key: tuple[int, int], digest: bytes) -> None:
        self._acked[key] = digest
        while len(self._acked) > MAX_REMEMBERED_ACKS:
            self._acked.popitem(last=False)

    # ---- the author's side: gather acks, form the certificate ----------------------------

    def own_batch(self, digest: bytes, encoded: bytes, batch: Batch) -> None:
        """This validator's batch, stored and broadcast: its own ack is the first."""
        collector = AckCollector(self.validators, digest, batch.author, batch.sequence)
        self._own[digest] = _OwnPending(collector, encoded, self.view(), self.clock_ms())
        while len(self._own) > MAX_PENDING_OWN:
            self._own.popitem(last=False)
        own = sign_ack(
            self.key, self.separator, self.me, digest, batch.author, batch.sequence, True
        )
        self._count(own)

    def uncertified_own(self) -> int:
        """Own batches broadcast and still gathering acknowledgements."""
        return len(self._own)

    def _count(self, ack: BatchAck) -> None:
        pending = self._own.get(ack.batch)
        if pending is None:
            return
        cert = pending.collector.add(ack)
        if cert is None:
            return
        del self._own[ack.batch]
        self.on_own_certified()
        self.metrics.batch_certificates_formed.inc()
        log.info(
            "event=batch_certified digest=%s round=%d certify_ms=%d",
            ack.batch.hex()[:12],
            ack.round,
            self.clock_ms() - pending.sent_at_ms,
        )
        self._hold(cert)
        if self.is_connected():
            self.p2p.broadcast(Channel.CERT, encode_cert_message(cert))

    # ---- inbound ------------------------------------------------------------------------

    def offer(self, peer: int, data: bytes) -> None:
        """A CERT-channel frame from validator `peer` (never blocks the inbound loop)."""
        try:
            self._send.send_nowait((peer, data))
        except trio.WouldBlock:
            self.log_limiter.warning("cert_queue_full", peer)

    async def _handle(self, peer: int, data: bytes) -> None:
        try:
            message = decode_cert_message(data)
            if isinstance(message, BatchAck):
                self._on_ack(peer, message)
            else:
                self._on_certificate(peer, message)
        except InvalidCertMessage as exc:
            self.log_limiter.warning(
                "cert_message_rejected", peer, "reason=%s: %s", type(exc).__name__, exc
            )

    def _on_ack(self, peer: int, ack: BatchAck) -> None:
        if ack.signer != peer or ack.author != self.me:
            raise InvalidCertMessage(f"ack signed by {ack.signer} for author {ack.author}")
        pending = self._own.get(ack.batch)
        if pending is None or pending.collector.round != ack.round:
            return  # already certified (a late ack), or given up
        if not self.validators.contains(self.me):
            return  # a late ack: this node left the set, its batch waits to rejoin
        verify_ack(self.validators, self.separator, ack, self.recover)
        self._count(ack)

    def _on_certificate(self, peer: int, cert: BatchCertificate) -> None:
        if cert.batch in self.book:
            return
        self._verify_certificate(cert)
        if self.pool.is_included(cert.batch):
            return
        self._hold(cert)
        if cert.batch not in self.pool and self._nursery is not None:
            self._nursery.start_soon(self._fetch_batches, [cert.batch], cert.author)

    def _verify_certificate(self, cert: BatchCertificate) -> None:
        """Raise InvalidCertMessage unless a quorum of this epoch's power (or of the
        previous epoch's, for a certificate formed before the boundary) signed it."""
        try:
            verify_certificate(self.validators, self.separator, cert, self.recover)
        except InvalidCertMessage:
            if self.previous is None:
                raise
            verify_certificate(self.previous, self.separator, cert, self.recover)

    def epoch_changed(self, validators: ValidatorSet, previous: ValidatorSet | None) -> None:
        """A new validator-set epoch with this power (numbered as the peers are),
        after `previous`: views restart at 1, so held certificates and own batches
        count their delays from the epoch's start."""
        self.validators, self.previous = validators, previous
        self._designated = self._designated_for(validators)
        self.book.restart_views()
        self._entered.clear()
        for digest, pending in self._own.items():
            # Acks count with the new epoch's power: gather them again (the
            # members re-acknowledge a batch they acknowledged when it is
            # broadcast again).
            old = pending.collector
            pending.collector = AckCollector(validators, digest, old.author, old.round)
            pending.sent_view = 0
        if validators.contains(self.me):
            for digest, pending in list(self._own.items()):
                c = pending.collector
                self._count(
                    sign_ack(self.key, self.separator, self.me, digest, c.author, c.round, True)
                )
        self._resent.clear()

    def _hold(self, cert: BatchCertificate) -> None:
        if self.book.add(cert, self.view(), self.now_ms()):
            self.store.save_batch_certificate(cert.batch, encode_cert_message(cert))
            self.metrics.batch_certificates_held.inc()
            self._arrived.set()
            self._arrived = trio.Event()

    async def _fetch_batches(self, digests: list[bytes], prefer: int | None) -> None:
        await self.fetcher.fetch(BatchRequest(digests[:MAX_BATCHES_PER_REQUEST]), prefer=prefer)

    # ---- what leaders and voters ask ----------------------------------------------------

    def now_ms(self) -> int:
        return self.clock_ms()

    def overdue_as_of_ms(self, view: int) -> int | None:
        """The time at which certificates count as overdue for a proposal of
        `view` (docs/consensus.md, "Inclusion rule"): when this validator
        entered `view`, or the latest view before it that it entered (None: it
        entered none since it started or since the epoch began, and no
        certificate binds its vote by time yet).

        Not the time of the check: the leader built the proposal as it entered
        `view`, and the check may wait for batches and certificates (under
        load, certificate requests took seconds); a certificate that crossed
        the time bound meanwhile was not overdue when the leader built."""
        entered = [v for v in self._entered if v <= view]
        return self._entered[max(entered)] if entered else None

    def certified(self, digest: bytes) -> bool:
        """Held here, or named by a committed block this node executed (its
        certificate was checked by the quorum that voted for that block, and it
        is dropped from the book once included). A slow voter checking the very
        proposal that committed meanwhile would otherwise refuse it."""
        return digest in self.book or self.pool.is_included(digest)

    def held(self, digest: bytes) -> HeldBatch | None:
        """A certified batch held here (certificate and batch), with its size."""
        entry = self.book.get(digest)
        size = None if entry is None else self.pool.size_of(digest)
        if entry is None or size is None:
            return None
        return HeldBatch(digest, entry.first_view, size, entry.first_ms)

    def author_of(self, digest: bytes) -> int | None:
        entry = self.book.get(digest)
        return None if entry is None else entry.certificate.author

    def candidates(self, exclude: set[bytes]) -> list[HeldBatch]:
        """Certified batches held here that no committed block includes, minus
        `exclude` (uncommitted ancestors' batches), oldest certificate first.
        Certificates of included batches are dropped as they are found."""
        included: list[bytes] = []
        out: list[HeldBatch] = []
        for entry in self.book.oldest_first():
            digest = entry.certificate.batch
            if digest in exclude:
                continue
            if self.pool.is_included(digest):
                included.append(digest)
                continue
            held = self.held(digest)
            if held is not None:
                out.append(held)
        if included:
            self.book.drop(included)
            self.store.delete_batch_certificates(included)
        return out

    async def wait_for_certificate(self) -> None:
        """Return when a certificate is newly held after this call."""
        await self._arrived.wait()

    async def wait_for_certificates(self, digests: Iterable[bytes], timeout_s: float) -> None:
        """Wait (at most `timeout_s`) until the certificates of `digests` are
        held here. A proposal naming a batch whose certificate was just formed
        travels as fast as that certificate's broadcast, and the certificate
        may sit in this node's inbound queue: waiting for it is far cheaper
        than a request to a peer, and verifies it once."""
        wanted = list(dict.fromkeys(digests))
        with trio.move_on_after(timeout_s):
            while any(not self.certified(d) for d in wanted):
                await self._arrived.wait()

    async def fetch_missing_batches(self) -> None:
        """Fetch (for a bounded time) the batches of held certificates missing here."""
        missing = [e.certificate.batch for e in self.book.oldest_first()]
        missing = [d for d in missing if d not in self.pool][:MAX_BATCHES_PER_REQUEST]
        if missing:
            with trio.move_on_after(BATCH_FETCH_WAIT_S):
                await self._fetch_batches(missing, None)

    async def fetch_certificates(self, digests: Iterable[bytes], prefer: int | None) -> None:
        """Ask peers (the preferred one first) for the certificates of `digests`
        not held here; hold those that verify."""
        wanted = [d for d in dict.fromkeys(digests) if d not in self.book]
        if not wanted:
            return
        peers = self.p2p.connected_peers()
        if prefer is not None and prefer in peers:
            peers.remove(prefer)
            peers.insert(0, prefer)
        for peer in peers:
            if not wanted:
                return
            asked = wanted[:MAX_CERTIFICATE_ANSWER]
            request = RequestKind.BATCH_CERTIFICATES.value + _encoder.encode(BatchRequest(asked))
            try:
                answer = await self.p2p.request(peer, request)
                encoded = _list_decoder.decode(answer) if answer else []
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("event=bad_certificate_answer peer=%d reason=%s", peer, exc)
                continue
            except Exception as exc:  # transport failure: try the next peer
                log.debug("event=certificate_fetch_failed peer=%d reason=%s", peer, exc)
                continue
            for data in encoded[: len(asked)]:
                try:
                    cert = decode_certificate(data)
                    if cert.batch not in asked:
                        raise InvalidCertMessage("a certificate that was not asked for")
                    self._verify_certificate(cert)
                except InvalidCertMessage as exc:
                    self.log_limiter.warning("fetched_certificate_rejected", peer, "reason=%s", exc)
                    continue
                self._hold(cert)
            wanted = [d for d in wanted if d not in self.book]

    def answer(self, body: bytes) -> bytes:
        """A peer's request for certificates by digest: those held here."""
        try:
            request = _request_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return b""
        out: list[bytes] = []
        for digest in request.digests[:MAX_CERTIFICATE_ANSWER]:
            entry = self.book.get(digest)
            if entry is not None:
                out.append(encode_cert_message(entry.certificate))
        return _encoder.encode(out)

    # ---- getting overdue certificates to leaders -----------------------------------------

    def view_changed(self, view: int) -> None:
        """Entering `view`: send this view's leader the certificates overdue now,
        and the next view's leader those overdue by then (it builds as soon as it
        enters its view, so it must hold them before); broadcast again own
        batches that gathered no quorum within the inclusion delay."""
        self._entered[view] = self.now_ms()
        self._entered.move_to_end(view)
        while len(self._entered) > MAX_REMEMBERED_VIEW_ENTRIES:
            self._entered.popitem(last=False)
        self._send_overdue(view, self.leader(view), due_by=view)
        self._send_overdue(view + 1, self.leader(view + 1), due_by=view + 1)
        again = 0
        for pending in self._own.values():
            if again >= MAX_REBROADCAST_PER_VIEW:
                break
            if view - pending.sent_view >= self.delay_views:
                pending.sent_view = view
                again += 1
                if self.is_connected():
                    self.p2p.broadcast(Channel.BATCH, pending.encoded)

    def refused(self, view: int) -> None:
        """A proposal of `view` was refused for the inclusion rule: hand the
        overdue certificates to the next view's leader now."""
        self.metrics.inclusion_refusals.inc()
        self._send_overdue(view + 1, self.leader(view + 1), due_by=view)

    def _send_overdue(self, leader_view: int, leader: int, *, due_by: int) -> None:
        if leader == self.me or not self.is_connected():
            return
        sent = 0
        # A leader of a coming view gets what will be overdue by then in views,
        # and already in time: it may build before any more time passes here.
        for entry in self.book.overdue(due_by, self.delay_views, self.now_ms(), self.delay_ms):
            if sent >= MAX_RESENT_PER_VIEW:
                break
            digest = entry.certificate.batch
            if self._resent.get(digest, -1) >= leader_view or digest not in self.pool:
                continue
            self._resent[digest] = leader_view
            self.p2p.send(leader, Channel.CERT, encode_cert_message(entry.certificate))
            sent += 1
        if len(self._resent) > 4 * MAX_RESENT_PER_VIEW:
            self._resent = {d: v for d, v in self._resent.items() if d in self.book}
