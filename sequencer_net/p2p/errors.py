"""Exceptions of the p2p layer: one type per failure kind."""

from __future__ import annotations


class P2PError(Exception):
    """Base of every error `P2PNetwork` raises to its caller."""


class UnknownPeer(P2PError):
    """The validator index is not in the configured set (or is this node)."""


class PeerUnreachable(P2PError):
    """Dialing the peer or opening a stream to it failed."""


class RequestTimeout(P2PError):
    """No response arrived before the request's deadline."""


class RequestFailed(P2PError):
    """The stream broke, or the responder reported an error or had no handler."""


class PayloadTooLarge(P2PError):
    """A payload exceeds `P2PLimits.max_frame_bytes`."""


class ProtocolViolation(P2PError):
    """A peer broke the wire format (oversized length, unknown channel, bad status)."""
