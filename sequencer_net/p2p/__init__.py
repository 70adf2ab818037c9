"""Validator-to-validator network over py-libp2p: authenticated direct streams.

See docs/p2p.md. Importing this package imports libp2p (~0.6 s); CLI commands
that do not run a node should not import it.
"""

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
    REQUEST_PROTOCOL,
    VALIDATOR_PROTOCOL,
    Channel,
)
from sequencer_net.p2p.limits import P2PLimits
from sequencer_net.p2p.network import P2PNetwork, PeerSpec, RequestHandler
from sequencer_net.p2p.stats import DropReason, P2PStats, RefusalReason

__all__ = [
    "FOLLOW_PROTOCOL",
    "REQUEST_PROTOCOL",
    "VALIDATOR_PROTOCOL",
    "Channel",
    "DropReason",
    "P2PError",
    "P2PLimits",
    "P2PNetwork",
    "P2PStats",
    "PayloadTooLarge",
    "PeerSpec",
    "PeerUnreachable",
    "ProtocolViolation",
    "RefusalReason",
    "RequestFailed",
    "RequestHandler",
    "RequestTimeout",
    "UnknownPeer",
]
