"""Validator-to-validator network over py-libp2p (docs/p2p.md).

One `P2PNetwork` per validator. For every other validator it keeps a link: a
bounded queue of frames, and a sender task that dials the peer, opens one
long-lived `/seqnet/validator/1.0.0` stream, writes queued frames with a write
timeout, and redials with exponential backoff when the stream dies. Inbound
streams are accepted only from peer ids derived from the configured validator
keys; their frames go, rate-limited and bounded, to `inbound`. Requests run on
`/seqnet/request/1.0.0`, one stream per request.

Stream handlers run in libp2p's own (partly system) tasks: they never raise,
never start tasks in our nursery, and turn away streams once closing starts,
which is what crashed pubsub with "Nursery is closed to new arrivals".
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import INetStream
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.network.stream.net_stream import NetStream
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from multiaddr import Multiaddr

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
    build_validator_host,
    key_pair_from_secret,
    peer_id_from_public_key,
)
from sequencer_net.p2p.limits import P2PLimits
from sequencer_net.p2p.stats import DropReason, P2PStats
from sequencer_net.p2p.token_bucket import TokenBucket

log = logging.getLogger("seqnet.p2p")

RequestHandler = Callable[[int, bytes], Awaitable[bytes]]
InboundFrame = tuple[int, Channel, bytes]

# A drop reason is logged on its 1st occurrence per peer, then every Nth, so a
# flood is visible in the log without the log becoming the flood.
_DROP_LOG_EVERY = 1000
_PING_BYTES = 8


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


def _multiaddr(host: str, port: int) -> Multiaddr:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return Multiaddr(f"/dns/{host}/tcp/{port}")
    proto = "ip6" if ip.version == 6 else "ip4"
    return Multiaddr(f"/{proto}/{host}/tcp/{port}")


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
    ) -> None:
        self._key_pair = key_pair_from_secret(secret)
        self._me = me
        self._listen = _multiaddr(listen_host, listen_port)
        self._limits = limits
        own_id = ID.from_pubkey(self._key_pair.public_key)
        self.peer_id: str = own_id.to_base58()
        self.stats = P2PStats()

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

        # Frames flow handler -> _inbound_buffer (bounded in count and bytes)
        # -> forwarder task -> `inbound` (unbuffered), so the byte count can
        # be released exactly when the node takes a frame.
        self._buffer_send, self._buffer_recv = trio.open_memory_channel[InboundFrame](
            limits.inbound_queue
        )
        self._buffered_bytes = 0
        self._inbound_send, self.inbound = trio.open_memory_channel[InboundFrame](0)

        self._request_handler: RequestHandler | None = None
        self._host: BasicHost | None = None
        self._swarm: Swarm | None = None
        self._started = False
        self._closing = False

    # ------------------------------------------------------------------ API

    def send(self, peer: int, channel: Channel, data: bytes) -> bool:
        """Queue a frame for `peer` without blocking; False if it was dropped."""
        link = self._links.get(peer)
        if link is None:
            self._note_drop(peer, DropReason.UNKNOWN_PEER)
            return False
        return self._enqueue(link, encode_frame(channel, data), len(data))

    def broadcast(self, channel: Channel, data: bytes) -> None:
        """Queue a frame for every other validator (encoded once)."""
        frame = encode_frame(channel, data)
        for link in self._links.values():
            self._enqueue(link, frame, len(data))

    def set_request_handler(self, handler: RequestHandler) -> None:
        """`handler(sender_index, request) -> response`, run for each inbound request."""
        self._request_handler = handler

    def connected_peers(self) -> list[int]:
        """Validators whose outbound stream is up (a `send` to them goes out now)."""
        return sorted(i for i, link in self._links.items() if link.connected)

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
        host, swarm = build_validator_host(self._key_pair, self._limits)
        self._host, self._swarm = host, swarm
        host.set_stream_handler(TProtocol(VALIDATOR_PROTOCOL), self._handle_validator_stream)
        host.set_stream_handler(TProtocol(REQUEST_PROTOCOL), self._handle_request_stream)
        now = trio.current_time()
        for link in self._links.values():
            rate = self._limits.max_inbound_frames_per_s
            link.bucket = TokenBucket(rate=rate, burst=rate, now=now)
        try:
            async with host.run(listen_addrs=[self._listen]):
                try:
                    if not swarm.listeners:
                        raise P2PError(f"could not listen on {self._listen}")
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._forward_inbound)
                        for link in self._links.values():
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
                log.debug(
                    "dial_failed peer=%d attempt=%d retry_in=%.2f reason=%s",
                    peer,
                    link.backoff.attempt,
                    delay,
                    exc,
                )
                await trio.sleep(delay)
                continue
            link.backoff.reset()
            self.stats.connects += 1
            if link.ever_connected:
                self.stats.reconnects += 1
            link.ever_connected = True
            link.connected = True
            log.info("connected peer=%d peer_id=%s", peer, link.peer_id)
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
                    log.warning("disconnected peer=%d reason=%s", peer, reason)
            await trio.sleep(link.backoff.next_delay())

    async def _pump(self, link: _Link, stream: INetStream) -> str:
        """Run writer, pinger and echo reader on one outbound stream; return why it ended."""
        reason = "cancelled"
        write_lock = trio.Lock()  # frames and pings interleave whole, never mid-write
        last_echo = [trio.current_time()]

        async def echo_reader() -> None:
            # Only PING echoes travel back on our outbound stream.
            reader = FrameReader(stream.read, max_payload=_PING_BYTES)
            try:
                while True:
                    frame = await reader.read_frame()
                    if frame is None:
                        raise _LinkDown("remote_closed")
                    if frame[0] != PING:
                        raise _LinkDown("remote_wrote_on_outbound")
                    last_echo[0] = trio.current_time()
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
                await trio.sleep(limits.keepalive_interval_s)
                if trio.current_time() - last_echo[0] > limits.keepalive_timeout_s:
                    raise _LinkDown("keepalive_timeout")
                nonce += 1
                ping = encode_frame(PING, nonce.to_bytes(_PING_BYTES, "big"))
                await self._write(link, stream, write_lock, ping, 0)

        async def writer() -> None:
            await self._write_frames(link, stream, write_lock)

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

    async def _write_frames(self, link: _Link, stream: INetStream, lock: trio.Lock) -> None:
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
            await self._write(link, stream, lock, data, len(batch))
            self.stats.frames_sent += len(batch)
            self.stats.bytes_sent += size

    async def _write(
        self, link: _Link, stream: INetStream, lock: trio.Lock, data: bytes, frames: int
    ) -> None:
        """One write under the link's lock and write timeout; raise _LinkDown on failure."""
        failure: str | None = None
        with trio.move_on_after(self._limits.write_timeout_s) as scope:
            async with lock:
                try:
                    await stream.write(data)
                except Exception as exc:
                    failure = f"write_failed:{type(exc).__name__}"
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
        try:
            with trio.fail_after(self._limits.connect_timeout_s):
                # A failed dial puts the peer in the swarm's negative cache for
                # 60 s; our own backoff decides when to try again.
                self._swarm.unblock_peer(link.peer_id)
                await self._host.connect(PeerInfo(link.peer_id, [link.address]))
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
            log.warning(
                "rejected_stream peer=? peer_id=%s protocol=%s reason=not_a_validator",
                remote,
                protocol,
            )
            return None
        return self._links[index]

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
            log.info("inbound_stream_opened peer=%d", peer)
            reader = FrameReader(
                stream.read,
                max_payload=self._limits.max_frame_bytes,
                chunk=self._limits.read_chunk_bytes,
            )
            while not self._closing:
                frame = await reader.read_frame()
                if frame is None:
                    log.info("inbound_stream_closed peer=%d reason=eof", peer)
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
                        log.info("inbound_stream_closed peer=%d reason=echo_timeout", peer)
                        await _reset_quietly(stream)
                        return
                    continue
                self._deliver(link, Channel(raw_channel), payload)
            await _reset_quietly(stream)
        except ProtocolViolation as exc:
            peer_txt = "?" if link is None else str(link.spec.index)
            self.stats.dropped[DropReason.PROTOCOL_VIOLATION] += 1
            log.warning("protocol_violation peer=%s reason=%s", peer_txt, exc)
            await _reset_quietly(stream)
        except Exception as exc:
            peer_txt = "?" if link is None else str(link.spec.index)
            log.info("inbound_stream_closed peer=%s reason=%s", peer_txt, type(exc).__name__)
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

    async def _forward_inbound(self) -> None:
        """Hand buffered frames to the node one at a time, releasing their bytes."""
        try:
            async for item in self._buffer_recv:
                try:
                    await self._inbound_send.send(item)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return  # the node closed `inbound`: nobody will read again
                finally:
                    self._buffered_bytes -= len(item[2])
        finally:
            self._inbound_send.close()

    # ------------------------------------------------------------- requests

    async def _exchange(self, link: _Link, data: bytes) -> bytes:
        stream = await self._open_stream(link, REQUEST_PROTOCOL)
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
                log.warning("request_timed_out peer=%d", link.spec.index)
                await _reset_quietly(stream)
        except ProtocolViolation as exc:
            peer_txt = "?" if link is None else str(link.spec.index)
            self.stats.dropped[DropReason.PROTOCOL_VIOLATION] += 1
            log.warning("protocol_violation peer=%s reason=%s", peer_txt, exc)
            await _reset_quietly(stream)
        except Exception as exc:
            peer_txt = "?" if link is None else str(link.spec.index)
            log.info("request_stream_failed peer=%s reason=%s", peer_txt, type(exc).__name__)
            await _reset_quietly(stream)
        finally:
            if counted and link is not None:
                link.inbound_requests -= 1

    async def _run_request_handler(
        self, link: _Link, request: bytes
    ) -> tuple[ResponseStatus, bytes]:
        handler = self._request_handler
        if handler is None:
            return ResponseStatus.NO_HANDLER, b""
        try:
            response = await handler(link.spec.index, request)
        except Exception as exc:
            log.warning(
                "request_handler_failed peer=%d reason=%s", link.spec.index, type(exc).__name__
            )
            return ResponseStatus.HANDLER_ERROR, b""
        if len(response) > self._limits.max_frame_bytes:
            log.warning(
                "request_response_too_large peer=%d bytes=%d", link.spec.index, len(response)
            )
            return ResponseStatus.HANDLER_ERROR, b""
        return ResponseStatus.OK, response

    # ------------------------------------------------------------ plumbing

    def _note_drop(
        self, peer: int, reason: DropReason, link: _Link | None = None, n: int = 1
    ) -> None:
        self.stats.dropped[reason] += n
        if link is None:
            log.warning("frame_dropped peer=%d reason=%s", peer, reason)
            return
        before = link.drops[reason]
        link.drops[reason] += n
        if before == 0 or before // _DROP_LOG_EVERY != link.drops[reason] // _DROP_LOG_EVERY:
            log.warning(
                "frame_dropped peer=%d reason=%s total=%d", peer, reason, link.drops[reason]
            )

    def _close_queues(self) -> None:
        for link in self._links.values():
            link.queue_send.close()
        self._buffer_send.close()
        self._inbound_send.close()


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
