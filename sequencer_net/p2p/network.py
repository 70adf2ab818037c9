"""Validator-to-validator network over py-libp2p (docs/p2p.md).

One `P2PNetwork` per validator. For every other validator it keeps a link: a
bounded queue of frames, and a sender task that dials the peer, opens one
long-lived `/seqnet/validator/1.0.0` stream, writes queued frames with a write
timeout, and redials with exponential backoff when the stream dies. Inbound
streams are accepted only from peer ids derived from the configured validator
keys; their frames go, rate-limited and bounded, to `inbound`. Requests run on
`/seqnet/request/1.0.0`, one stream per request.

Full nodes: a validator serves `/seqnet/follow/1.0.0` to admitted
non-validators only (rate- and size-limited per full node and in total); a
full node's own network (`follower=True`) keeps no links, sends no frames and
makes its requests on that protocol.

Inbound connections are gated before any stream (host.py, admission.py): a
key outside the validator set is closed right after its Noise handshake and
counted in `stats.connections_refused`. An admitted validator connection also
wakes that validator's link if it is waiting to redial, so a link comes back
as soon as either side can dial. Every log line a peer can trigger goes
through a `LogLimiter` (sequencer_net/logging_limits.py).

Stream handlers run in libp2p's own (partly system) tasks: they never raise,
never start tasks in our nursery, and turn away streams once closing starts,
which is what crashed pubsub with "Nursery is closed to new arrivals".
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.network.stream.net_stream import NetStream
from libp2p.peer.id import ID
from libp2p.stream_muxer.exceptions import MuxedStreamEOF, MuxedStreamReset
from multiaddr import Multiaddr

from sequencer_net.logging_limits import LogLimiter, run_flusher
from sequencer_net.p2p.backoff import ReconnectBackoff, link_seed
from sequencer_net.p2p.errors import (
    P2PError,
    PayloadTooLarge,
    PeerUnreachable,
    ProtocolViolation,
    RequestFailed,
    RequestTimeout,
    UnknownPeer,
)
from sequencer_net.p2p.framing import (
    FOLLOW_PROTOCOL,
    PING,
    REQUEST_PROTOCOL,
    VALIDATOR_PROTOCOL,
    Channel,
    FrameReader,
    ResponseStatus,
    encode_frame,
    encode_request,
    encode_response,
)
from sequencer_net.p2p.host import (
    GatedSwarm,
    build_validator_host,
    key_pair_from_secret,
    peer_id_from_public_key,
)
from sequencer_net.p2p.limits import P2PLimits
from sequencer_net.p2p.stats import DropReason, P2PStats, RefusalReason
from sequencer_net.p2p.token_bucket import TokenBucket

log = logging.getLogger("seqnet.p2p")

RequestHandler = Callable[[int, bytes], Awaitable[bytes]]
FollowHandler = Callable[[str, bytes], Awaitable[bytes]]
"""`handler(full_node_peer_id, request) -> response` for the follow protocol."""
InboundFrame = tuple[int, Channel, bytes]


class InboundFrames:
    """`P2PNetwork.inbound`: the frames received, in order, one `receive` each.

    Frames wait in a bounded memory channel, counted in frames and in bytes;
    taking one releases its bytes. The node takes them straight from that
    channel: no task forwards them, so a frame costs no wake-up of its own.
    Once the network has stopped, `receive` ends (`trio.EndOfChannel`, and
    `async for` stops), even with frames still buffered."""

    def __init__(self, frames: trio.MemoryReceiveChannel[InboundFrame], network: P2PNetwork):
        self._frames = frames
        self._network = network
        self._ended = False

    async def receive(self) -> InboundFrame:
        if self._ended:
            await trio.lowlevel.checkpoint()
            raise trio.EndOfChannel
        item = await self._frames.receive()
        if self._ended:  # stopped while the frame was being handed over
            raise trio.EndOfChannel
        self._network._buffered_bytes -= len(item[2])
        return item

    def end(self) -> None:
        self._ended = True

    def __aiter__(self) -> InboundFrames:
        return self

    async def __anext__(self) -> InboundFrame:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


_PING_BYTES = 8
# Peerstore lifetime of a validator's address; re-added before every dial.
_ADDR_TTL_S = 3600


_WriteFn = Callable[[bytes], Awaitable[None]]


def _link_reader(stream: INetStream) -> Callable[[int], Awaitable[bytes]]:
    """`stream.read` for a validator link, without NetStream's lock per read.

    py-libp2p's NetStream takes its state lock (a trip through the scheduler)
    on every read and write, though a link's stream changes state only when a
    read fails. So the muxed stream is read directly, and a read that ends or
    is reset is repeated through the NetStream: the muxed stream's end and
    reset repeat, so NetStream sees the same, records it and raises its own.
    """
    muxed = getattr(stream, "muxed_stream", None)
    if not isinstance(stream, NetStream) or muxed is None:
        return stream.read

    async def read(n: int) -> bytes:
        try:
            data: bytes = await muxed.read(n)
        except (MuxedStreamEOF, MuxedStreamReset):
            return await stream.read(n)
        return data

    return read


def _link_writer(stream: INetStream) -> _WriteFn:
    """`stream.write` for a validator link, without NetStream's lock per write.

    The muxed stream refuses writes once closed or reset itself (NetStream's
    close and reset close and reset it); a failed write takes the link down,
    whatever the exception's name."""
    muxed = getattr(stream, "muxed_stream", None)
    if not isinstance(stream, NetStream) or muxed is None:
        return stream.write
    write: _WriteFn = muxed.write
    return write


@dataclass(frozen=True)
class PeerSpec:
    """A validator as the network layer sees it."""

    index: int  # validator index
    public_key: bytes  # secp256k1, 65-byte uncompressed (0x04...)
    host: str  # e.g. "127.0.0.1"
    port: int


class _Link:
    """Everything this node keeps about one other validator."""

    def __init__(self, spec: PeerSpec, me: int, limits: P2PLimits) -> None:
        self.spec = spec
        self.peer_id: ID = peer_id_from_public_key(spec.public_key)
        self.address = _multiaddr(spec.host, spec.port)
        self.queue_send, self.queue_recv = trio.open_memory_channel[bytes](limits.send_queue_frames)
        self.queued_bytes = 0
        self.connected = False
        self.ever_connected = False
        self.backoff = ReconnectBackoff(
            min_s=limits.reconnect_min_s,
            max_s=limits.reconnect_max_s,
            seed=link_seed(me, spec.index),
        )
        # Created lazily in trio context (TokenBucket needs the trio clock).
        self.bucket: TokenBucket | None = None
        self.request_slots = trio.Semaphore(limits.max_concurrent_requests_per_peer)
        self.inbound_requests = 0
        self.drops: Counter[DropReason] = Counter()
        # Set when this validator's connection into us is admitted: ends the
        # link's backoff wait so it opens its stream on that connection now.
        self.wake = trio.Event()


def _multiaddr(host: str, port: int) -> Multiaddr:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return Multiaddr(f"/dns/{host}/tcp/{port}")
    proto = "ip6" if ip.version == 6 else "ip4"
    return Multiaddr(f"/{proto}/{host}/tcp/{port}")


class _EchoClock:
    """When the last keepalive echo came, and how long this process stalled since.

    The pinger oversleeps exactly when this whole process did not run (SIGSTOP,
    a loop blocked by CPU work): then the echo reader could not run either, so
    that time is not the peer's silence.
    """

    __slots__ = ("last", "stalled")

    def __init__(self, now: float) -> None:
        self.last = now
        self.stalled = 0.0

    def echo(self, now: float) -> None:
        self.last = now
        self.stalled = 0.0

    def silence(self, now: float) -> float:
        return now - self.last - self.stalled


class _Follower:
    """What a validator keeps about one full node it serves."""

    __slots__ = ("bucket", "in_flight")

    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket
        self.in_flight = 0


class _LinkDown(Exception):
    """Internal: the outbound stream of a link ended; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class P2PNetwork:
    """Authenticated, bounded, reconnecting links to the other validators."""

    def __init__(
        self,
        *,
        secret: bytes,
        me: int,
        listen_host: str,
        listen_port: int,
        peers: Sequence[PeerSpec],
        limits: P2PLimits = P2PLimits(),  # noqa: B008 - frozen, so sharing is safe
        follower: bool = False,
    ) -> None:
        """`follower=True` makes a full node's network: `me` is not an index of
        `peers` (pass -1), no validator links are kept, nothing is sent or
        broadcast, and `request` goes over the follow protocol, dialing on demand."""
        self._key_pair = key_pair_from_secret(secret)
        self._me = me
        self._follower = follower
        self._listen = _multiaddr(listen_host, listen_port)
        self._limits = limits
        own_id = ID.from_pubkey(self._key_pair.public_key)
        self.peer_id: str = own_id.to_base58()
        self.stats = P2PStats()
        self._logs = LogLimiter(log, interval_s=limits.log_interval_s, max_keys=limits.log_max_keys)

        self._links: dict[int, _Link] = {}
        self._index_by_peer_id: dict[ID, int] = {}
        for spec in peers:
            pid = peer_id_from_public_key(spec.public_key)
            if spec.index in self._links or pid in self._index_by_peer_id:
                raise ValueError(f"validator {spec.index} is listed twice (index or key)")
            if spec.index == me:
                if pid != own_id:
                    raise ValueError(f"peers[{me}].public_key does not match this secret")
                continue
            if pid == own_id:
                raise ValueError(f"validator {spec.index} has this node's key")
            self._links[spec.index] = _Link(spec, me, limits)
            self._index_by_peer_id[pid] = spec.index

        # Frames flow handler -> a channel bounded in count (and, through
        # _buffered_bytes, in bytes) -> `inbound`, which releases a frame's
        # bytes when the node takes it.
        self._buffer_send, buffer_recv = trio.open_memory_channel[InboundFrame](
            limits.inbound_queue
        )
        self._buffered_bytes = 0
        self.inbound = InboundFrames(buffer_recv, self)

        self._request_handler: RequestHandler | None = None
        self._follow_handler: FollowHandler | None = None
        # Full nodes served (validator side), by peer id; bounded by the
        # gate's non-validator slots (entries of closed peers are dropped).
        self._followers: dict[ID, _Follower] = {}
        self._follow_total: TokenBucket | None = None
        self._host: BasicHost | None = None
        self._swarm: GatedSwarm | None = None
        self._started = False
        self._closing = False

    # ------------------------------------------------------------------ API

    def send(self, peer: int, channel: Channel, data: bytes) -> bool:
        """Queue a frame for `peer` without blocking; False if it was dropped."""
        link = None if self._follower else self._links.get(peer)
        if link is None:
            self._note_drop(peer, DropReason.UNKNOWN_PEER)
            return False
        return self._enqueue(link, encode_frame(channel, data), len(data))

    def broadcast(self, channel: Channel, data: bytes) -> None:
        """Queue a frame for every other validator (encoded once)."""
        if self._follower:
            return
        frame = encode_frame(channel, data)
        for link in self._links.values():
            self._enqueue(link, frame, len(data))

    def set_request_handler(self, handler: RequestHandler) -> None:
        """`handler(sender_index, request) -> response`, run for each inbound request."""
        self._request_handler = handler

    def set_follow_handler(self, handler: FollowHandler) -> None:
        """`handler(peer_id, request) -> response`, run for each request an admitted
        full node makes on the follow protocol (within the follow limits)."""
        self._follow_handler = handler

    def connected_peers(self) -> list[int]:
        """Validators whose outbound stream is up (a `send` to them goes out now).
        A follower keeps no streams: every validator, dialed on request."""
        if self._follower:
            return sorted(self._links)
        return sorted(i for i, link in self._links.items() if link.connected)

    @property
    def followers_served(self) -> int:
        """Full nodes with a follow request served or refused since their connection."""
        return len(self._followers)

    async def request(self, peer: int, data: bytes, timeout: float | None = None) -> bytes:
        """Send one request to `peer` and return its response.

        Raises UnknownPeer, PayloadTooLarge, RequestTimeout (deadline, default
        `request_timeout_s`, covers waiting for a slot, dialing and the
        exchange), PeerUnreachable or RequestFailed.
        """
        link = self._links.get(peer)
        if link is None:
            raise UnknownPeer(f"validator {peer} is not a peer of validator {self._me}")
        if len(data) > self._limits.max_frame_bytes:
            raise PayloadTooLarge(f"request of {len(data)} bytes")
        if self._host is None or self._closing:
            raise PeerUnreachable("the network is not running")
        deadline = self._limits.request_timeout_s if timeout is None else timeout
        self.stats.requests_sent += 1
        try:
            with trio.move_on_after(deadline) as scope:
                async with link.request_slots:
                    return await self._exchange(link, data)
        except P2PError:
            self.stats.requests_failed += 1
            raise
        assert scope.cancelled_caught
        self.stats.requests_failed += 1
        raise RequestTimeout(f"no response from validator {peer} within {deadline} s")

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, signal `started()`, keep the links up until cancelled, close the host."""
        if self._started:
            raise RuntimeError("P2PNetwork.run() may be called once")
        self._started = True
        host, swarm = build_validator_host(
            self._key_pair,
            self._limits,
            validators=list(self._index_by_peer_id),
            handlers=(
                {}
                if self._follower
                else {
                    VALIDATOR_PROTOCOL: self._handle_validator_stream,
                    REQUEST_PROTOCOL: self._handle_request_stream,
                    FOLLOW_PROTOCOL: self._handle_follow_stream,
                }
            ),
        )
        swarm.gate.on_admitted = self._on_connection_admitted
        swarm.gate.on_refused = self._on_connection_refused
        swarm.gate.on_protocol_error = self._on_protocol_error
        self._host, self._swarm = host, swarm
        now = trio.current_time()
        for link in self._links.values():
            rate = self._limits.max_inbound_frames_per_s
            link.bucket = TokenBucket(rate=rate, burst=rate, now=now)
        total = self._limits.follow_requests_per_s_total
        self._follow_total = TokenBucket(rate=total, burst=total, now=now)
        try:
            async with host.run(listen_addrs=[self._listen]):
                try:
                    if not swarm.listeners:
                        raise P2PError(f"could not listen on {self._listen}")
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(run_flusher, self._logs, self._limits.log_interval_s)
                        for link in self._links.values():
                            if not self._follower:
                                nursery.start_soon(self._maintain_link, link)
                        log.info(
                            "listening me=%d peer_id=%s addr=%s",
                            self._me,
                            self.peer_id,
                            self._listen,
                        )
                        task_status.started()
                        await trio.sleep_forever()
                finally:
                    # Turn new streams away first, then close connections and
                    # listeners while the swarm's service is still running.
                    self._closing = True
                    with trio.CancelScope(shield=True):
                        with trio.move_on_after(self._limits.close_timeout_s):
                            await host.close()
        finally:
            self._closing = True
            self._close_queues()
            for link in self._links.values():
                link.connected = False
            log.info("stopped me=%d", self._me)

    # ------------------------------------------------------------- sending

    def _enqueue(self, link: _Link, frame: bytes, payload_len: int) -> bool:
        peer = link.spec.index
        if payload_len > self._limits.max_frame_bytes:
            self._note_drop(peer, DropReason.PAYLOAD_TOO_LARGE, link)
            return False
        if link.queued_bytes + len(frame) > self._limits.send_queue_bytes:
            self._note_drop(peer, DropReason.SEND_QUEUE_FULL, link)
            return False
        try:
            link.queue_send.send_nowait(frame)
        except trio.WouldBlock:
            self._note_drop(peer, DropReason.SEND_QUEUE_FULL, link)
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._note_drop(peer, DropReason.CLOSED, link)
            return False
        link.queued_bytes += len(frame)
        return True

    async def _maintain_link(self, link: _Link) -> None:
        """Dial, stream, write; on failure back off and do it again, until cancelled."""
        peer = link.spec.index
        while True:
            try:
                stream = await self._open_stream(link, VALIDATOR_PROTOCOL)
            except PeerUnreachable as exc:
                self.stats.dial_failures += 1
                delay = link.backoff.next_delay()
                self._log(
                    logging.DEBUG,
                    "dial_failed",
                    peer,
                    "attempt=%d retry_in=%.2f reason=%s",
                    link.backoff.attempt,
                    delay,
                    exc,
                )
                await self._wait_to_redial(link, delay)
                continue
            link.backoff.reset()
            link.wake = trio.Event()  # only connections that arrive while down wake it
            self.stats.connects += 1
            if link.ever_connected:
                self.stats.reconnects += 1
            link.ever_connected = True
            link.connected = True
            self._log(logging.INFO, "connected", peer, "peer_id=%s", link.peer_id)
            reason = "cancelled"
            try:
                reason = await self._pump(link, stream)
            finally:
                link.connected = False
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(self._limits.close_timeout_s):
                        await _reset_quietly(stream)
                        if reason in ("write_timeout", "keepalive_timeout"):
                            # A write cut mid-way leaves the connection's byte
                            # stream in an unknown state, and a silent peer's
                            # connection would be reused by the next dial:
                            # drop the connection whole.
                            await self._disconnect(link)
                if reason != "cancelled":
                    self.stats.disconnects += 1
                    self._log(logging.WARNING, "disconnected", peer, "reason=%s", reason)
            await self._wait_to_redial(link, link.backoff.next_delay())

    @staticmethod
    async def _wait_to_redial(link: _Link, delay: float) -> None:
        """Sleep the backoff delay, or less if the peer's connection to us arrives."""
        with trio.move_on_after(delay):
            await link.wake.wait()
        link.wake = trio.Event()

    async def _pump(self, link: _Link, stream: INetStream) -> str:
        """Run writer, pinger and echo reader on one outbound stream; return why it ended."""
        reason = "cancelled"
        write_lock = trio.Lock()  # frames and pings interleave whole, never mid-write
        echoes = _EchoClock(trio.current_time())
        write = _link_writer(stream)

        async def echo_reader() -> None:
            # Only PING echoes travel back on our outbound stream.
            reader = FrameReader(_link_reader(stream), max_payload=_PING_BYTES)
            try:
                while True:
                    frame = await reader.read_frame()
                    if frame is None:
                        raise _LinkDown("remote_closed")
                    if frame[0] != PING:
                        raise _LinkDown("remote_wrote_on_outbound")
                    echoes.echo(trio.current_time())
            except ProtocolViolation:
                raise _LinkDown("remote_wrote_on_outbound") from None
            except _LinkDown:
                raise
            except Exception as exc:
                raise _LinkDown(f"remote_closed:{type(exc).__name__}") from None

        async def pinger() -> None:
            limits = self._limits
            nonce = 0
            while True:
                before = trio.current_time()
                await trio.sleep(limits.keepalive_interval_s)
                now = trio.current_time()
                echoes.stalled += max(0.0, now - before - limits.keepalive_interval_s)
                if echoes.silence(now) > limits.keepalive_timeout_s:
                    raise _LinkDown("keepalive_timeout")
                nonce += 1
                ping = encode_frame(PING, nonce.to_bytes(_PING_BYTES, "big"))
                await self._write(link, write, write_lock, ping, 0)

        async def writer() -> None:
            await self._write_frames(link, write, write_lock)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                nursery.start_soon(echo_reader)
                nursery.start_soon(pinger)
        except* _LinkDown as group:
            first = group.exceptions[0]
            assert isinstance(first, _LinkDown)
            reason = first.reason
        return reason

    async def _write_frames(self, link: _Link, write: _WriteFn, lock: trio.Lock) -> None:
        limits = self._limits
        while True:
            batch = [await link.queue_recv.receive()]
            size = len(batch[0])
            while size < limits.write_coalesce_bytes:
                try:
                    frame = link.queue_recv.receive_nowait()
                except trio.WouldBlock:
                    break
                batch.append(frame)
                size += len(frame)
            link.queued_bytes -= size
            data = batch[0] if len(batch) == 1 else b"".join(batch)
            await self._write(link, write, lock, data, len(batch))
            self.stats.frames_sent += len(batch)
            self.stats.writes += 1
            self.stats.bytes_sent += size

    async def _write(
        self, link: _Link, write: _WriteFn, lock: trio.Lock, data: bytes, frames: int
    ) -> None:
        """One write under the link's lock and write timeout; raise _LinkDown on failure."""
        failure: str | None = None
        # A bare scope: trio.move_on_after's generator wrapper costs as much again.
        deadline = trio.current_time() + self._limits.write_timeout_s
        with trio.CancelScope(deadline=deadline) as scope:
            # An uncontended lock is taken without `Lock.acquire`'s trip
            # through the scheduler; the writer still yields at its queue.
            try:
                lock.acquire_nowait()
            except trio.WouldBlock:
                await lock.acquire()
            try:
                await write(data)
            except Exception as exc:
                failure = f"write_failed:{type(exc).__name__}:{str(exc)[:80]!r}"
            finally:
                lock.release()
        if scope.cancelled_caught:
            self.stats.write_timeouts += 1
            failure = "write_timeout"
        if failure is not None:
            if frames:
                self._note_drop(link.spec.index, DropReason.LINK_FAILED, link, frames)
            raise _LinkDown(failure)

    async def _open_stream(self, link: _Link, protocol: str) -> INetStream:
        """Dial if needed and open a stream; the remote must be the expected validator."""
        assert self._host is not None and self._swarm is not None
        swarm = self._swarm
        try:
            with trio.fail_after(self._limits.connect_timeout_s):
                if not any(not c.is_closed for c in swarm.get_connections(link.peer_id)):
                    # dial_addr, not host.connect: Swarm.dial_peer waits a fixed
                    # 250 ms (happy eyeballs) and refuses a peer that failed in
                    # the last 60 s; our backoff paces redials.
                    swarm.peerstore.add_addrs(link.peer_id, [link.address], _ADDR_TTL_S)
                    await swarm.dial_addr(link.address, link.peer_id)
                stream = await self._host.new_stream(link.peer_id, [TProtocol(protocol)])
        except trio.TooSlowError:
            # The connection (if any) answers nothing: drop it, or the next
            # dial would reuse it and time out the same way.
            with trio.CancelScope(shield=True), trio.move_on_after(self._limits.close_timeout_s):
                await self._disconnect(link)
            raise PeerUnreachable("timed out dialing or opening a stream") from None
        except Exception as exc:
            raise PeerUnreachable(f"{type(exc).__name__}: {exc}") from None
        if stream.muxed_conn.peer_id != link.peer_id:  # Noise already checked; be sure
            await _reset_quietly(stream)
            raise PeerUnreachable("the stream's remote is not the expected validator")
        return stream

    async def _disconnect(self, link: _Link) -> None:
        assert self._host is not None
        try:
            await self._host.disconnect(link.peer_id)
        except Exception as exc:
            log.debug("disconnect_failed peer=%d reason=%s", link.spec.index, exc)

    # ------------------------------------------------------------ receiving

    def _authenticate(self, stream: INetStream, protocol: str) -> _Link | None:
        """The link of the validator behind `stream`, or None (counted and logged)."""
        remote = stream.muxed_conn.peer_id
        index = self._index_by_peer_id.get(remote)
        if index is None:
            self.stats.dropped[DropReason.UNAUTHENTICATED] += 1
            self._log(
                logging.WARNING,
                "rejected_stream",
                remote.to_base58(),
                "protocol=%s reason=not_a_validator",
                protocol,
            )
            return None
        return self._links[index]

    # ------------------------------------------------------- connection gate

    def _on_connection_admitted(self, peer_id: ID, validator: bool) -> None:
        """Called by the gate once an inbound connection is up. Never raises."""
        self.stats.inbound_connections += 1
        index = self._index_by_peer_id.get(peer_id)
        if index is None:
            self._log(logging.INFO, "inbound_connection", peer_id.to_base58(), "validator=no")
            return
        self._log(logging.DEBUG, "inbound_connection", index, "validator=yes")
        self._links[index].wake.set()

    def _on_connection_refused(self, reason: RefusalReason, peer_id: ID | None) -> None:
        """Called by the gate when it closes a connection at the door. Never raises."""
        self.stats.connections_refused[reason] += 1
        level = logging.WARNING if peer_id is not None else logging.INFO
        peer = "?" if peer_id is None else peer_id.to_base58()
        self._log(level, "refused_connection", peer, "reason=%s", reason, key=reason)

    def _on_protocol_error(self) -> None:
        """Called by a connection's muxer as it closes the connection for breaking
        yamux's read rules (muxer.py). Never raises."""
        self.stats.protocol_errors += 1

    async def _handle_validator_stream(self, stream: INetStream) -> None:
        """Read frames from one validator's long-lived stream. Never raises."""
        link: _Link | None = None
        try:
            if self._closing:
                await _reset_quietly(stream)
                return
            link = self._authenticate(stream, VALIDATOR_PROTOCOL)
            if link is None:
                await _reset_quietly(stream)
                return
            peer = link.spec.index
            self._log(logging.INFO, "inbound_stream_opened", peer)
            reader = FrameReader(
                _link_reader(stream),
                max_payload=self._limits.max_frame_bytes,
                chunk=self._limits.read_chunk_bytes,
            )
            while not self._closing:
                frame = await reader.read_frame()
                if frame is None:
                    self._log(logging.INFO, "inbound_stream_closed", peer, "reason=eof")
                    return
                raw_channel, payload = frame
                assert link.bucket is not None
                if not link.bucket.take(trio.current_time()):
                    self._note_drop(peer, DropReason.RATE_LIMITED, link)
                    continue
                if raw_channel == PING:
                    if len(payload) > _PING_BYTES:
                        raise ProtocolViolation(f"ping of {len(payload)} bytes")
                    with trio.move_on_after(self._limits.write_timeout_s) as scope:
                        await stream.write(encode_frame(PING, payload))
                    if scope.cancelled_caught:
                        self._log(
                            logging.INFO, "inbound_stream_closed", peer, "reason=echo_timeout"
                        )
                        await _reset_quietly(stream)
                        return
                    continue
                self._deliver(link, Channel(raw_channel), payload)
            await _reset_quietly(stream)
        except ProtocolViolation as exc:
            self.stats.dropped[DropReason.PROTOCOL_VIOLATION] += 1
            self._log(logging.WARNING, "protocol_violation", _peer_of(link), "reason=%s", exc)
            await _reset_quietly(stream)
        except Exception as exc:
            self._log(
                logging.INFO,
                "inbound_stream_closed",
                _peer_of(link),
                "reason=%s",
                type(exc).__name__,
            )
            await _reset_quietly(stream)

    def _deliver(self, link: _Link, channel: Channel, payload: bytes) -> None:
        peer = link.spec.index
        if self._buffered_bytes + len(payload) > self._limits.inbound_queue_bytes:
            self._note_drop(peer, DropReason.INBOUND_QUEUE_FULL, link)
            return
        try:
            self._buffer_send.send_nowait((peer, channel, payload))
        except trio.WouldBlock:
            self._note_drop(peer, DropReason.INBOUND_QUEUE_FULL, link)
            return
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._note_drop(peer, DropReason.CLOSED, link)
            return
        self._buffered_bytes += len(payload)
        self.stats.frames_received += 1
        self.stats.bytes_received += len(payload)

    # ------------------------------------------------------------- requests

    async def _exchange(self, link: _Link, data: bytes) -> bytes:
        protocol = FOLLOW_PROTOCOL if self._follower else REQUEST_PROTOCOL
        stream = await self._open_stream(link, protocol)
        ok = False
        try:
            try:
                await stream.write(encode_request(data))
                # Half-close: the responder reads to the end, we keep reading.
                await _close_write(stream)
                reader = FrameReader(
                    stream.read,
                    max_payload=self._limits.max_frame_bytes,
                    chunk=self._limits.read_chunk_bytes,
                )
                status, payload = await reader.read_response()
            except ProtocolViolation as exc:
                raise RequestFailed(
                    f"bad response from validator {link.spec.index}: {exc}"
                ) from None
            except Exception as exc:
                raise RequestFailed(
                    f"request to validator {link.spec.index} failed: {type(exc).__name__}"
                ) from None
            ok = True
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self._limits.close_timeout_s):
                if ok:
                    await _close_quietly(stream)
                else:
                    await _reset_quietly(stream)
        if status is ResponseStatus.OK:
            return payload
        raise RequestFailed(f"validator {link.spec.index} answered {status.name}")

    async def _handle_request_stream(self, stream: INetStream) -> None:
        """Serve one request from a validator. Never raises."""
        link: _Link | None = None
        counted = False
        try:
            if self._closing:
                await _reset_quietly(stream)
                return
            link = self._authenticate(stream, REQUEST_PROTOCOL)
            if link is None:
                await _reset_quietly(stream)
                return
            if link.inbound_requests >= self._limits.max_concurrent_requests_per_peer:
                self._note_drop(link.spec.index, DropReason.REQUEST_OVERLOAD, link)
                await _reset_quietly(stream)
                return
            link.inbound_requests += 1
            counted = True
            with trio.move_on_after(self._limits.request_timeout_s) as scope:
                reader = FrameReader(
                    stream.read,
                    max_payload=self._limits.max_frame_bytes,
                    chunk=self._limits.read_chunk_bytes,
                )
                request = await reader.read_request()
                status, response = await self._run_request_handler(link, request)
                await stream.write(encode_response(status, response))
                await stream.close()
                self.stats.requests_served += 1
            if scope.cancelled_caught:
                self._log(logging.WARNING, "request_timed_out", link.spec.index)
                await _reset_quietly(stream)
        except ProtocolViolation as exc:
            self.stats.dropped[DropReason.PROTOCOL_VIOLATION] += 1
            self._log(logging.WARNING, "protocol_violation", _peer_of(link), "reason=%s", exc)
            await _reset_quietly(stream)
        except Exception as exc:
            self._log(
                logging.INFO,
                "request_stream_failed",
                _peer_of(link),
                "reason=%s",
                type(exc).__name__,
            )
            await _reset_quietly(stream)
        finally:
            if counted and link is not None:
                link.inbound_requests -= 1

    async def _handle_follow_stream(self, stream: INetStream) -> None:
        """Serve one request from an admitted full node (not a validator: they use
        the request protocol). Rate and size are checked before anything is read
        beyond the length header. Never raises."""
        remote = stream.muxed_conn.peer_id
        peer = remote.to_base58()
        follower: _Follower | None = None
        try:
            if self._closing or self._follow_handler is None:
                await _reset_quietly(stream)
                return
            if remote in self._index_by_peer_id:
                self._note_follow_refusal(peer, "validator_on_follow_protocol")
                await _reset_quietly(stream)
                return
            follower = self._follower_state(remote)
            now = trio.current_time()
            assert self._follow_total is not None
            if not follower.bucket.take(now) or not self._follow_total.take(now):
                self.stats.dropped[DropReason.FOLLOW_RATE_LIMITED] += 1
                self._log(logging.INFO, "follow_rate_limited", peer)
                await _reset_quietly(stream)
                return
            if follower.in_flight >= self._limits.follow_max_concurrent_per_peer:
                self.stats.dropped[DropReason.REQUEST_OVERLOAD] += 1
                await _reset_quietly(stream)
                return
            follower.in_flight += 1
            try:
                with trio.move_on_after(self._limits.request_timeout_s) as scope:
                    reader = FrameReader(
                        stream.read,
                        max_payload=self._limits.follow_max_request_bytes,
                        chunk=self._limits.read_chunk_bytes,
                    )
                    request = await reader.read_request()
                    status, response = await self._run_follow_handler(peer, request)
                    await stream.write(encode_response(status, response))
                    await stream.close()
                    self.stats.requests_served += 1
            finally:
                follower.in_flight -= 1
            if scope.cancelled_caught:
                self._log(logging.WARNING, "request_timed_out", peer)
                await _reset_quietly(stream)
        except ProtocolViolation as exc:
            self._note_follow_refusal(peer, f"protocol_violation:{exc}")
            await _reset_quietly(stream)
        except Exception as exc:
            self._log(logging.INFO, "request_stream_failed", peer, "reason=%s", type(exc).__name__)
            await _reset_quietly(stream)

    def _follower_state(self, remote: ID) -> _Follower:
        follower = self._followers.get(remote)
        if follower is None:
            # Bounded: only admitted peers get here, and their number is the
            # gate's slot count; entries of peers gone are dropped first.
            if len(self._followers) >= max(1, self._limits.max_non_validator_connections):
                assert self._swarm is not None
                for pid in list(self._followers):
                    if not self._swarm.get_connections(pid):
                        del self._followers[pid]
            rate = self._limits.follow_requests_per_s_per_peer
            follower = self._followers[remote] = _Follower(
                TokenBucket(rate=rate, burst=rate, now=trio.current_time())
            )
        return follower

    def _note_follow_refusal(self, peer: str, reason: str) -> None:
        self.stats.dropped[DropReason.FOLLOW_REFUSED] += 1
        self._log(logging.WARNING, "follow_refused", peer, "reason=%s", reason)

    async def _run_follow_handler(self, peer: str, request: bytes) -> tuple[ResponseStatus, bytes]:
        handler = self._follow_handler
        if handler is None:
            return ResponseStatus.NO_HANDLER, b""
        try:
            response = await handler(peer, request)
        except Exception as exc:
            self._log(logging.WARNING, "follow_handler_failed", peer, "reason=%s", exc)
            return ResponseStatus.HANDLER_ERROR, b""
        if len(response) > self._limits.max_frame_bytes:
            return ResponseStatus.HANDLER_ERROR, b""
        return ResponseStatus.OK, response

    async def _run_request_handler(
        self, link: _Link, request: bytes
    ) -> tuple[ResponseStatus, bytes]:
        handler = self._request_handler
        if handler is None:
            return ResponseStatus.NO_HANDLER, b""
        try:
            response = await handler(link.spec.index, request)
        except Exception as exc:
            self._log(
                logging.WARNING,
                "request_handler_failed",
                link.spec.index,
                "reason=%s",
                type(exc).__name__,
            )
            return ResponseStatus.HANDLER_ERROR, b""
        if len(response) > self._limits.max_frame_bytes:
            self._log(
                logging.WARNING,
                "request_response_too_large",
                link.spec.index,
                "bytes=%d",
                len(response),
            )
            return ResponseStatus.HANDLER_ERROR, b""
        return ResponseStatus.OK, response

    # ------------------------------------------------------------ plumbing

    def _note_drop(
        self, peer: int, reason: DropReason, link: _Link | None = None, n: int = 1
    ) -> None:
        self.stats.dropped[reason] += n
        total = self.stats.dropped[reason]
        if link is not None:
            link.drops[reason] += n
            total = link.drops[reason]
        self._log(
            logging.WARNING, "frame_dropped", peer, "reason=%s total=%d", reason, total, key=reason
        )

    def _log(
        self,
        level: int,
        event: str,
        peer: Hashable,
        fmt: str = "",
        *args: Any,
        key: Hashable = None,
    ) -> None:
        """Log a peer-triggered event through the rate limiter, counting what it holds back."""
        before = self._logs.suppressed_total
        self._logs.log(level, event, peer, fmt, *args, key=key)
        self.stats.log_lines_suppressed += self._logs.suppressed_total - before

    def _close_queues(self) -> None:
        for link in self._links.values():
            link.queue_send.close()
        self._buffer_send.close()
        self.inbound.end()


def _peer_of(link: _Link | None) -> Hashable:
    return "?" if link is None else link.spec.index


async def _reset_quietly(stream: INetStream) -> None:
    try:
        await stream.reset()
    except Exception as exc:
        log.debug("stream_reset_failed reason=%s", type(exc).__name__)


async def _close_write(stream: INetStream) -> None:
    if isinstance(stream, NetStream):
        await stream.close_write()
    else:  # every libp2p muxer we use half-closes on close()
        await stream.close()


async def _close_quietly(stream: INetStream) -> None:
    try:
        await stream.close()
    except Exception as exc:
        log.debug("stream_close_failed reason=%s", type(exc).__name__)


__all__ = ["Channel", "P2PNetwork", "PeerSpec", "RequestHandler"]
