"""The block payload's wire format (`BlockPayload`), its codec and bounds.

The format belongs to the consensus layer (`consensus.payload`), because a
block's digest commits to the payload's fields; this module is the name the
sequencer's code imports it by.
"""

from consensus.payload import (
    MAX_BATCHES_PER_BLOCK,
    MAX_CLOCK_DRIFT_MS,
    MAX_FORCED_PER_BLOCK,
    MAX_PAYLOAD_BYTES,
    BlockPayload,
    ForcedEntry,
    MalformedPayload,
    decode_payload,
    encode_payload,
)

__all__ = [
    "MAX_BATCHES_PER_BLOCK",
    "MAX_CLOCK_DRIFT_MS",
    "MAX_FORCED_PER_BLOCK",
    "MAX_PAYLOAD_BYTES",
    "BlockPayload",
    "ForcedEntry",
    "MalformedPayload",
    "decode_payload",
    "encode_payload",
]
