"""Builds the libp2p host a validator runs: TCP + Noise only + yamux only, gated.

A default `libp2p.new_host()` also accepts /plaintext, TLS and secio peers
(measured with py-libp2p 0.8.1); restricting the security and muxer options to
one protocol each makes a plaintext dialer fail multistream negotiation. The
host identity is the validator's secp256k1 key, so a peer id names a validator.

What py-libp2p 0.8.1 does by default and this module turns off:
- `new_swarm` attaches a resource manager that allows 256 established inbound
  connections from anyone; the validator-set check only ran when a stream
  opened, so outsiders could hold every slot. `GatedSwarm` overrides the
  swarm's inbound path (`Swarm._handle_inbound_connection`, the handler every
  listener calls per accepted socket): Noise handshake in a bounded pending
  pool, then `InboundAdmission` (admission.py) on the authenticated peer id,
  before the muxer starts. Refused connections are closed there.
- The same libp2p handler then waits for the whole swarm to stop, holding its
  inbound-limiter token and task after the connection is gone; ours returns
  when the connection closes.
- `BasicHost` registers identify, identify-push and ping even when given an
  empty protocol dict (`default_protocols or get_default_protocols(...)`) and
  runs identify on every new connection; `ValidatorHost` removes the handlers
  and schedules no identify.
- `Swarm.dial_peer` waits a fixed 250 ms (happy eyeballs) and keeps a 60 s
  negative cache; network.py dials with `Swarm.dial_addr`, which does neither.
- The auto-connector dials peerstore entries up to the midpoint of the
  watermarks even with both at 0; `GatedSwarm` replaces it with a no-op.
- A yamux frame write cut short by a cancelled caller breaks the whole
  connection (`AtomicFrameYamux` says why); its frame writes run shielded.
- A yamux stream sends a WINDOW_UPDATE frame after nearly every read, so
  every message costs its receiver a second encrypted frame and a socket
  write, and its sender a wake-up to read it; `AtomicFrameYamux` holds
  a stream's returned credit until it reaches `WINDOW_CREDIT_BATCH_BYTES`.
- Noise and yamux read every frame through layers of awaits, locks and
  per-frame debug formatting; the host's Noise transport returns a
  `BufferedNoiseSession` (noise.py) and `AtomicFrameYamux` reads frames from
  its buffer (`LeanYamux`, muxer.py). Same bytes on the wire.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import coincurve
import trio
from libp2p import generate_peer_id_from
from libp2p.abc import IMuxedConn, IRawConnection, ISecureConn
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.secp256k1 import Secp256k1PublicKey, create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import StreamHandlerFn, TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.io.abc import ReadWriteCloser
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.stream_muxer.exceptions import MuxedConnUnavailable
from libp2p.stream_muxer.muxer_multistream import MuxerMultistream
from libp2p.stream_muxer.yamux.yamux import (
    DEFAULT_WINDOW_SIZE,
    HEADER_SIZE,
    TYPE_WINDOW_UPDATE,
    YAMUX_HEADER_FORMAT,
    Yamux,
)
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.transport.tcp.tcp import TCP
from libp2p.transport.upgrader import TransportUpgrader
from multiaddr import Multiaddr

from sequencer_net.p2p.admission import Admitted, InboundAdmission, PendingHandshakes
from sequencer_net.p2p.limits import CONNECTIONS_PER_PEER, P2PLimits
from sequencer_net.p2p.muxer import LeanYamux
from sequencer_net.p2p.noise import BufferedNoiseTransport
from sequencer_net.p2p.stats import RefusalReason

log = logging.getLogger("seqnet.p2p")

# Closing a socket we are done with never needs longer; shielded closes
# must not hang a cancelled task.
_CLOSE_TIMEOUT_S = 1.0

# The longest one yamux frame write (waiting for the connection's write lock
# included) may take once it can no longer be cancelled; beyond it the
# connection is closed. P2PLimits.write_timeout_s tears a stalled link down
# after the same time.
FRAME_WRITE_TIMEOUT_S = 5.0

WINDOW_CREDIT_BATCH_BYTES = DEFAULT_WINDOW_SIZE // 4
"""A stream's receive-window credit is sent to the peer once this much has
accumulated (64 KiB of the initial 256 KiB window). The peer's send window
then never falls below the initial window less this and less what it sent
and the reader has not read yet, so a peer whose data is being read never
waits for credit; a small message costs no WINDOW_UPDATE frame of its own."""

_YAMUX_HEADER = struct.Struct(YAMUX_HEADER_FORMAT)

# Streams with held credit beyond which the table is swept of closed streams
# (request streams live for one request and may close holding some).
_HELD_CREDIT_SWEEP = 64


def key_pair_from_secret(secret: bytes) -> KeyPair:
    """The libp2p identity of a validator: its 32-byte secp256k1 secret."""
    if len(secret) != 32:
        raise ValueError("a validator secret is 32 bytes (secp256k1)")
    return create_new_key_pair(secret)


def peer_id_from_public_key(public_key: bytes) -> ID:
    """The libp2p peer id a validator with this secp256k1 public key must present.

    Accepts the 65-byte uncompressed (0x04...) or 33-byte compressed encoding;
    libp2p hashes the compressed form, so both give the same id.
    """
    return ID.from_pubkey(Secp256k1PublicKey(coincurve.PublicKey(public_key)))


def _no_admitted_callback(peer: ID, validator: bool) -> None:
    return None


def _no_refused_callback(reason: RefusalReason, peer: ID | None) -> None:
    return None


def _no_protocol_error_callback() -> None:
    return None


@dataclass
class InboundGate:
    """What `GatedSwarm` consults and tells about each inbound connection."""

    admission: InboundAdmission[ID]
    pending: PendingHandshakes
    handshake_timeout_s: float
    # Called (synchronously, never raising) once an admitted connection is up,
    # with its peer id and whether it is a validator.
    on_admitted: Callable[[ID, bool], None] = _no_admitted_callback
    # Called when a connection is closed at the door: the reason and, once the
    # handshake named it, the remote peer id.
    on_refused: Callable[[RefusalReason, ID | None], None] = _no_refused_callback
    # Called when a connection, inbound or outbound, is closed for breaking the
    # yamux read rules (muxer.py `LeanYamux.protocol_errors`).
    on_protocol_error: Callable[[], None] = _no_protocol_error_callback


class _NoAutoConnector(AutoConnector):
    """libp2p's auto-connector dials peerstore entries up to the midpoint of the
    watermarks (so watermarks of 0 do not switch it off); a validator dials
    exactly its configured peers itself (network.py)."""

    async def maybe_connect(self) -> None:
        return None


class GatedSwarm(Swarm):
    """A swarm that closes inbound connections its gate refuses, right after Noise."""

    def __init__(self, *args: Any, gate: InboundGate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.auto_connector = _NoAutoConnector(
            swarm=self, auto_connect_interval=self.auto_connector.auto_connect_interval
        )

    async def _handle_inbound_connection(
        self, read_write_closer: ReadWriteCloser, maddr: Multiaddr
    ) -> None:
        """Replaces libp2p's handler: authenticate, admit or close, serve until closed.

        Runs in the listener's task for this socket, which closes the socket
        when this returns; it never raises (the listener logs and drops).
        """
        if isinstance(read_write_closer, IMuxedConn):
            # Only TCP is configured; a pre-multiplexed transport (QUIC) would
            # need its own gate.
            await _close_quietly(read_write_closer)
            return
        raw = RawConnection(read_write_closer, False)
        try:
            secured = await self._secure_inbound(raw)
            if secured is None:
                return
            ticket = self._admit(secured)
            if ticket is None:
                await _close_quietly(secured)
                return
            try:
                await self._serve_admitted(secured, ticket)
            finally:
                self.gate.admission.release(ticket)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT_S):
                await _close_quietly(raw)

    async def _secure_inbound(self, raw: IRawConnection) -> ISecureConn | None:
        """The Noise handshake, in a pending slot and under the handshake timeout."""
        gate = self.gate
        with gate.pending.slot() as slot, slot, trio.move_on_after(gate.handshake_timeout_s):
            try:
                return await self.upgrader.upgrade_security(raw, False)
            except Exception as exc:  # a hostile dialer can fail it any way it likes
                log.debug("inbound_handshake_failed reason=%s", type(exc).__name__)
                gate.on_refused(RefusalReason.HANDSHAKE_FAILED, None)
                return None
        evicted = slot.cancelled_caught
        gate.on_refused(
            RefusalReason.HANDSHAKE_EVICTED if evicted else RefusalReason.HANDSHAKE_FAILED, None
        )
        return None

    def _admit(self, secured: ISecureConn) -> Admitted[ID] | None:
        peer = secured.get_remote_peer()
        verdict = self.gate.admission.admit(peer)
        if isinstance(verdict, RefusalReason):
            self.gate.on_refused(verdict, peer)
            return None
        return verdict

    async def _serve_admitted(self, secured: ISecureConn, ticket: Admitted[ID]) -> None:
        """Start yamux, register the connection, and hold this task until it closes."""
        peer = ticket.peer
        muxed: IMuxedConn | None = None
        with trio.move_on_after(self.gate.handshake_timeout_s):
            try:
                muxed = await self.upgrader.upgrade_connection(secured, peer)
            except Exception as exc:
                log.debug("inbound_muxer_failed peer_id=%s reason=%s", peer, type(exc).__name__)
        if muxed is None:
            self.gate.on_refused(RefusalReason.HANDSHAKE_FAILED, peer)
            await _close_quietly(secured)
            return
        try:
            swarm_conn = await self.add_conn(muxed, direction="inbound")
        except Exception as exc:
            log.debug("inbound_add_failed peer_id=%s reason=%s", peer, type(exc).__name__)
            await _close_quietly(muxed)
            return
        self.gate.on_admitted(peer, ticket.validator)
        await swarm_conn.event_closed.wait()


class AtomicFrameYamux(LeanYamux):
    """Yamux whose frame writes a cancelled caller cannot cut short.

    Each frame goes out as one Noise transport message, and Noise numbers its
    messages: py-libp2p 0.8.1 encrypts a frame (spending the next nonce) and
    only then awaits the socket write. A caller cancelled at that await (a
    request abandoned once enough answers came, as the decryptor does, or a
    deadline) leaves a nonce the peer never receives; the peer then fails to
    decrypt every later message and drops the connection, with every stream
    on it: the validator link too, and the frames queued on it. Under 100%
    encrypted load that happened tens of times a minute. So a frame write runs
    shielded, bounded by FRAME_WRITE_TIMEOUT_S; a write that does not finish
    by then leaves the connection's byte stream unknown, and the connection
    is closed.

    py-libp2p 0.8.1's stream returns the bytes of nearly every read to the
    peer's send window at once, one WINDOW_UPDATE frame per read: a frame of
    its own for every message received (encrypted, written, and read and
    decrypted by the peer). A plain window update (no flags) is held here
    and added to the stream's next one until the stream's held credit
    reaches WINDOW_CREDIT_BATCH_BYTES; updates with flags (SYN, ACK, FIN,
    RST) go out at once, as every other frame. The peer learns of less
    window than this side has counted, never more, so it cannot overrun
    the window this side enforces."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held_credit: dict[int, int] = {}
        self.window_updates_held = 0  # plain window updates folded into a later one
        self.window_updates_sent = 0  # plain window updates written

    def _hold_credit(self, data: bytes) -> bytes | None:
        """The frame to write in place of `data`: None while a plain window
        update's credit is held, else `data` (with any held credit added)."""
        if len(data) != HEADER_SIZE:
            return data
        version, kind, flags, stream_id, increment = _YAMUX_HEADER.unpack(data)
        if kind != TYPE_WINDOW_UPDATE or flags:
            return data
        held = self._held_credit.pop(stream_id, 0) + increment
        if held < WINDOW_CREDIT_BATCH_BYTES:
            self.window_updates_held += 1
            self._held_credit[stream_id] = held
            if len(self._held_credit) > _HELD_CREDIT_SWEEP:
                for gone in [s for s in self._held_credit if s not in self.streams]:
                    del self._held_credit[gone]
            return None
        self.window_updates_sent += 1
        return _YAMUX_HEADER.pack(version, kind, 0, stream_id, held)

    async def _write_frame(self, data: bytes) -> None:
        frame = self._hold_credit(data)
        if frame is None:
            return
        await self._write_whole_frame(frame)

    async def _write_whole_frame(self, data: bytes) -> None:
        # One scope: the shield keeps the caller's cancellation out, the
        # scope's own deadline still ends a stalled write.
        deadline = trio.current_time() + FRAME_WRITE_TIMEOUT_S
        with trio.CancelScope(shield=True, deadline=deadline) as scope:
            # py-libp2p's _write_frame, without its per-frame debug formatting,
            # and an uncontended lock taken without a trip through the scheduler.
            lock = self._write_lock
            try:
                lock.acquire_nowait()
            except trio.WouldBlock:
                await lock.acquire()
            try:
                await self.secured_conn.write(data)
            finally:
                lock.release()
        if scope.cancelled_caught:
            with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT_S):
                await self._cleanup_on_error()
            raise MuxedConnUnavailable("a frame write timed out: connection closed")


class ConfiguredMuxerMultistream(MuxerMultistream):
    """Muxer negotiation that builds the configured muxer class.

    py-libp2p 0.8.1's `MuxerMultistream.new_conn` builds a plain `Yamux`
    whenever yamux is negotiated, whatever class the upgrader was given for
    it, so without this `AtomicFrameYamux` would never run. Each `LeanYamux`
    it builds reports its protocol errors to `on_protocol_error`."""

    on_protocol_error: Callable[[], None] | None = None

    async def new_conn(self, conn: ISecureConn, peer_id: ID) -> IMuxedConn:
        protocol, muxer_class = await self._selector.select(
            conn, conn.is_initiator, self.negotiate_timeout
        )
        if isinstance(muxer_class, type) and issubclass(muxer_class, Yamux):
            muxed: IMuxedConn = muxer_class(conn, peer_id, is_initiator=conn.is_initiator)
        else:
            muxed = muxer_class(conn, peer_id)
        if isinstance(muxed, LeanYamux):
            muxed.on_protocol_error = self.on_protocol_error
        return self._annotate_connection(muxed, conn, protocol)


class ValidatorHost(BasicHost):
    """A BasicHost that serves only the protocols it is given and runs no identify."""

    def __init__(self, network: Swarm, negotiate_timeout: int) -> None:
        super().__init__(network=network, negotiate_timeout=negotiate_timeout)
        # BasicHost registers identify, identify-push and ping whatever
        # default_protocols says (an empty dict is falsy); a validator serves
        # none of them to anyone.
        for protocol in list(self.multiselect.get_protocols()):
            if protocol is not None:
                self.remove_stream_handler(protocol)

    def _schedule_identify(self, peer_id: ID, *, reason: str) -> None:
        """No identify: peers are known from the validator set, not discovered."""

    async def _push_identify_to_all_peers(self) -> None:
        """No identify-push either."""


def build_validator_host(
    key_pair: KeyPair,
    limits: P2PLimits,
    *,
    validators: Collection[ID],
    handlers: Mapping[str, StreamHandlerFn] | None = None,
) -> tuple[ValidatorHost, GatedSwarm]:
    """A host with TCP, Noise XX and yamux only, serving exactly `handlers`.

    Inbound connections are admitted from `validators` (peer ids; this key is
    ignored if listed) and from at most `limits.max_non_validator_connections`
    other peers; the rest are closed right after their handshake. Set
    `swarm.gate.on_admitted` / `on_refused` to be told about each, and
    `on_protocol_error` about connections closed for breaking yamux's rules.
    """
    own_id = generate_peer_id_from(key_pair)
    gate = InboundGate(
        admission=InboundAdmission(
            me=own_id,
            validators=validators,
            non_validator_slots=limits.max_non_validator_connections,
        ),
        pending=PendingHandshakes(limits.max_pending_inbound),
        handshake_timeout_s=limits.connect_timeout_s,
    )
    noise = BufferedNoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    upgrader = TransportUpgrader(
        secure_transports_by_protocol={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_transports_by_protocol={TProtocol(YAMUX_PROTOCOL_ID): AtomicFrameYamux},
    )
    muxers = ConfiguredMuxerMultistream(
        {TProtocol(YAMUX_PROTOCOL_ID): AtomicFrameYamux},
        upgrader.muxer_multistream.negotiate_timeout,
    )
    muxers.on_protocol_error = lambda: gate.on_protocol_error()  # as set when it happens
    upgrader.muxer_multistream = muxers
    peerstore = PeerStore()
    peerstore.add_key_pair(own_id, key_pair)
    timeout = limits.connect_timeout_s
    # Validators (each up to CONNECTIONS_PER_PEER, twice that while the swarm's
    # grace period delays trimming) plus the non-validator slots: the gate
    # bounds these; libp2p's cap only has to stay out of the way.
    max_connections = (
        2 * CONNECTIONS_PER_PEER * len(validators) + limits.max_non_validator_connections + 16
    )
    swarm = GatedSwarm(
        own_id,
        peerstore,
        upgrader,
        transports=[TCP()],
        # Redials are paced by our own backoff (network.py); the swarm's
        # built-in retries would add 0.1 + 0.2 + 0.4 s of hidden waiting.
        retry_config=RetryConfig(max_retries=0),
        connection_config=ConnectionConfig(
            max_connections=max_connections,
            high_watermark=max_connections,
            max_connections_per_peer=CONNECTIONS_PER_PEER,
            # No minimum to maintain (the auto-connector is off, above), and the
            # pruner, which fires above high_watermark, never fires: add_conn
            # refuses anything above max_connections first.
            min_connections=0,
            low_watermark=0,
            dial_timeout=timeout,
            outbound_upgrade_timeout=timeout,
            inbound_upgrade_timeout=timeout,
            outbound_stream_protocol_negotiation_timeout=timeout,
            inbound_stream_protocol_negotiation_timeout=timeout,
        ),
        gate=gate,
    )
    host = ValidatorHost(swarm, negotiate_timeout=max(1, int(timeout)))
    for protocol, handler in (handlers or {}).items():
        host.set_stream_handler(TProtocol(protocol), handler)
    return host, swarm


async def _close_quietly(conn: Any) -> None:
    try:
        await conn.close()
    except Exception as exc:
        log.debug("close_failed reason=%s", type(exc).__name__)
