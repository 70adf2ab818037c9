"""Counters of the p2p layer, read by the node's metrics exporter."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field


class DropReason(enum.StrEnum):
    """Why a frame (or an inbound stream) was discarded."""

    UNKNOWN_PEER = "unknown_peer"  # send() to an index not in the set, or to self
    PAYLOAD_TOO_LARGE = "payload_too_large"  # send() of more than max_frame_bytes
    SEND_QUEUE_FULL = "send_queue_full"  # the peer's sender queue is at its bound
    LINK_FAILED = "link_failed"  # dequeued, then the write failed or timed out
    CLOSED = "closed"  # the network has stopped
    RATE_LIMITED = "rate_limited"  # inbound over max_inbound_frames_per_s
    INBOUND_QUEUE_FULL = "inbound_queue_full"  # the node is not reading `inbound`
    UNAUTHENTICATED = "unauthenticated"  # a stream from a peer id outside the set
    PROTOCOL_VIOLATION = "protocol_violation"  # bad length or channel; stream reset
    REQUEST_OVERLOAD = "request_overload"  # too many concurrent inbound requests
    FOLLOW_RATE_LIMITED = "follow_rate_limited"  # a full node over its (or the total) rate
    FOLLOW_REFUSED = "follow_refused"  # follow stream from a validator, or oversized request


class RefusalReason(enum.StrEnum):
    """Why an inbound connection was closed before it could carry a stream."""

    NOT_A_VALIDATOR = "not_a_validator"  # a key outside the set, no non-validator slots
    NON_VALIDATOR_SLOTS_FULL = "non_validator_slots_full"  # all max_non_validator_connections taken
    DUPLICATE_NON_VALIDATOR = "duplicate_non_validator"  # a second connection from one such peer
    SELF = "self"  # a connection presenting this node's own key
    HANDSHAKE_EVICTED = "handshake_evicted"  # pending handshakes full; the oldest was dropped
    HANDSHAKE_FAILED = "handshake_failed"  # Noise or yamux failed or timed out


@dataclass
class P2PStats:
    frames_sent: int = 0  # frames written to a peer's stream
    writes: int = 0  # stream writes carrying them (several frames coalesce into one)
    bytes_sent: int = 0
    frames_received: int = 0  # frames from validators accepted into the inbound queue
    bytes_received: int = 0
    connects: int = 0  # outbound links established (first time or again)
    reconnects: int = 0  # outbound links re-established after a failure
    disconnects: int = 0  # outbound links lost
    dial_failures: int = 0
    write_timeouts: int = 0
    requests_sent: int = 0
    requests_failed: int = 0  # timed out or failed, as seen by the requester
    requests_served: int = 0
    dropped: Counter[DropReason] = field(default_factory=Counter)
    inbound_connections: int = 0  # inbound connections admitted (validators and allowed others)
    # Inbound connections closed at the door, by reason (refused outside connections).
    connections_refused: Counter[RefusalReason] = field(default_factory=Counter)
    log_lines_suppressed: int = 0  # peer-triggered log events counted instead of written
    # Connections (either direction) closed for breaking yamux's read rules: DATA
    # beyond a stream's window, a frame stalled mid-way (muxer.py).
    protocol_errors: int = 0
