"""Every bound of the validator-to-validator network, in one place, with its reason.

Defaults suit a loopback testnet of a few validators; an operator may raise the
byte bounds for larger batches. Nothing here is read from the clock or the
network: these are plain numbers the shell (`network.py`) enforces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Upper bound an operator may set for non-validator connections: each one
# costs a socket, a yamux session and its tasks; past a thousand, a node on
# these 2-core machines spends its loop on them.
MAX_NON_VALIDATOR_CONNECTIONS: Final = 1024

# libp2p's per-peer connection cap (ConnectionConfig.max_connections_per_peer):
# a validator pair needs one connection, a second one transiently while a
# redial overlaps a dying connection; the swarm trims extras after 20 s.
CONNECTIONS_PER_PEER: Final = 3


@dataclass(frozen=True)
class P2PLimits:
    """Bounds on frames, queues, rates and timeouts of one `P2PNetwork`."""

    # Largest payload of one frame or one request/response. A batch of
    # transactions is the biggest thing we send (20-100 KB measured); 8 MiB
    # leaves room for catch-up responses while still bounding what one length
    # header can make a reader allocate.
    max_frame_bytes: int = 8 * 1024 * 1024

    # Frames waiting per peer for its sender task. When full, the new frame is
    # dropped and counted: a dead or stalled peer must never make `send()`
    # block or grow memory; consensus retransmits what matters.
    send_queue_frames: int = 4096
    # The same queue bounded in bytes, so 4096 queued 8 MiB frames cannot
    # pin 32 GiB behind one stalled peer.
    send_queue_bytes: int = 64 * 1024 * 1024

    # A write that does not finish in this time means the peer (or its reader)
    # is stalled: a SIGSTOPped peer blocks yamux writes for seconds. The link
    # is torn down and redialed with backoff.
    write_timeout_s: float = 5.0

    # Per-peer token bucket on inbound frames (burst = one second's worth).
    # A validator sends a few hundred votes and tens of batches per second;
    # 5000/s is an order of magnitude above that and caps a flooding peer.
    max_inbound_frames_per_s: int = 5000

    # Frames received and not yet taken by the node from `P2PNetwork.inbound`.
    # Beyond either bound, new frames are dropped and counted, so a node that
    # stops reading cannot make the network layer grow without bound.
    inbound_queue: int = 10000
    inbound_queue_bytes: int = 256 * 1024 * 1024

    # Reconnect backoff: the first redial waits ~reconnect_min_s, each failure
    # doubles the wait up to reconnect_max_s, with up to +50% jitter from a
    # per-link seeded RNG so restarted nodes do not redial in lockstep.
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 5.0

    # The sender pings every keepalive_interval_s on its outbound stream and
    # declares the link dead when no echo came back for keepalive_timeout_s:
    # a peer that stopped (crash without FIN, SIGSTOP, a half-torn-down
    # connection) is otherwise only noticed when a write finally times out,
    # and an idle link would never notice.
    keepalive_interval_s: float = 1.0
    keepalive_timeout_s: float = 5.0

    # Bound on dialing one peer (TCP connect + Noise + yamux negotiation), on
    # opening a stream on an existing connection, and on an inbound handshake.
    # A SIGSTOPped peer accepts TCP in the kernel but never answers the handshake.
    connect_timeout_s: float = 5.0

    # Default deadline of `request()`, and the time a responder may spend
    # reading a request, running the handler and writing the response.
    request_timeout_s: float = 5.0
    # Requests in flight per peer, each direction: beyond it the requester
    # waits (within its deadline) and the responder resets the extra stream.
    max_concurrent_requests_per_peer: int = 16

    # The sender task joins queued frames up to this many bytes into one
    # write: a yamux write costs about the same for 300 B and 64 KB
    # (~4,000 writes/s measured), so coalescing is what lifts small-frame
    # throughput. Equals the yamux data frame size.
    write_coalesce_bytes: int = 64 * 1024

    # Bytes asked of the stream per read by the frame reader.
    read_chunk_bytes: int = 64 * 1024

    # Time allowed to reset streams and close the host on shutdown.
    close_timeout_s: float = 5.0

    # Inbound connections whose Noise handshake is still running (the remote
    # is not known yet, so nothing else can tell a validator from anyone).
    # When all are taken, the oldest pending handshake is dropped to make room:
    # a dialer that opens sockets and stays silent cannot hold the door shut,
    # and a validator's handshake (~12 ms of CPU) is only lost if this many
    # newer connections arrive while it runs. Each pending handshake ends
    # within connect_timeout_s anyway.
    max_pending_inbound: int = 64

    # Established connections allowed from peers outside the validator set
    # (in total, at most one per such peer). 0: every connection from an
    # unknown key is closed as soon as its handshake names it. Full nodes will
    # get slots here, on their own protocols; validators never compete for them.
    max_non_validator_connections: int = 0

    # The follow protocol (full nodes, admitted on the slots above): requests
    # per second each full node may make (burst = one second's worth), all
    # full nodes together, and the largest request accepted (checked before
    # the request is read; the largest legitimate one is a submitted
    # transaction). A full node so costs a validator no more than an API
    # client: an answer is at most max_frame_bytes and served within
    # request_timeout_s.
    follow_requests_per_s_per_peer: float = 50.0
    follow_requests_per_s_total: float = 400.0
    follow_max_request_bytes: int = 256 * 1024
    follow_max_concurrent_per_peer: int = 4

    # Peer-triggered log events (rejected streams, drops, violations, link
    # changes) are logged on their first occurrence per (event, peer) and then
    # as one count per interval; at most log_max_keys peers are tracked per
    # event, later ones are counted together. See sequencer_net/logging_limits.py.
    log_interval_s: float = 10.0
    log_max_keys: int = 256

    def __post_init__(self) -> None:
        for name in (
            "max_frame_bytes",
            "send_queue_frames",
            "send_queue_bytes",
            "max_inbound_frames_per_s",
            "inbound_queue",
            "inbound_queue_bytes",
            "max_concurrent_requests_per_peer",
            "write_coalesce_bytes",
            "read_chunk_bytes",
            "max_pending_inbound",
            "log_max_keys",
            "follow_requests_per_s_per_peer",
            "follow_requests_per_s_total",
            "follow_max_request_bytes",
            "follow_max_concurrent_per_peer",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"P2PLimits.{name} must be positive")
        for name in (
            "write_timeout_s",
            "reconnect_min_s",
            "reconnect_max_s",
            "keepalive_interval_s",
            "keepalive_timeout_s",
            "connect_timeout_s",
            "request_timeout_s",
            "close_timeout_s",
            "log_interval_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"P2PLimits.{name} must be positive")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("P2PLimits.reconnect_max_s must be >= reconnect_min_s")
        if not 0 <= self.max_non_validator_connections <= MAX_NON_VALIDATOR_CONNECTIONS:
            raise ValueError(
                "P2PLimits.max_non_validator_connections must be in "
                f"0..{MAX_NON_VALIDATOR_CONNECTIONS}"
            )
        if self.max_frame_bytes >= 2**32:
            raise ValueError("P2PLimits.max_frame_bytes must fit the 4-byte length")
