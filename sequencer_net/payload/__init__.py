"""A block's payload: what it orders and the state it vouches for.

- `format`: the wire format (`BlockPayload`), its codec and bounds;
- `checks`: the pure rules a voter applies before voting, raising named errors;
- `service`: the shell that builds a leader's payload and checks a proposed one
  (waiting for batches, fetching missing ones).
"""

from sequencer_net.payload.format import (
    MAX_BATCHES_PER_BLOCK,
    MAX_CLOCK_DRIFT_MS,
    BlockPayload,
    MalformedPayload,
    decode_payload,
    encode_payload,
)

__all__ = [
    "MAX_BATCHES_PER_BLOCK",
    "MAX_CLOCK_DRIFT_MS",
    "BlockPayload",
    "MalformedPayload",
    "decode_payload",
    "encode_payload",
]
