"""The kinds of p2p request a validator answers: one registry, one byte each.

A request's first byte names its kind; the rest is the kind's own encoding.
Adding a kind means adding it here, so two modules can never pick the same byte.
"""

from __future__ import annotations

from enum import Enum


class RequestKind(bytes, Enum):
    CONSENSUS = b"\x01"
    """A consensus BlockRequest, SyncRequest or CertificateRequest (msgpack)."""
    BATCHES = b"\x02"
    """A BatchRequest: batches by digest (sequencer_net.batches.fetch)."""
    FOLLOW_BLOCKS = b"\x03"
    """Full nodes only: committed blocks by height, each with its own
    finalization (sequencer_net.node.follow)."""
    SUBMIT = b"\x04"
    """Full nodes only: a transaction relayed to the validator's intake."""
    BATCH_CERTIFICATES = b"\x05"
    """A BatchRequest: the availability certificates of batches by digest
    (sequencer_net.node.certifying)."""
    SHARES = b"\x06"
    """A SharesRequest: the validator's decryption shares of a committed block
    (sequencer_net.node.decryption); validators and full nodes."""
    EPOCH_END = b"\x07"
    """Full nodes only: the EpochEndProof of a validator-set epoch (msgpack
    epoch number; sequencer_net.node.follow)."""


def split_request(data: bytes) -> tuple[RequestKind, bytes] | None:
    """(kind, body) of a request, or None for an empty or unknown one."""
    if not data:
        return None
    try:
        return RequestKind(data[:1]), data[1:]
    except ValueError:
        return None
