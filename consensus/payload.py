"""The payload a leader puts in a consensus block: a timestamp, the execution
state it vouches for, batch digests and the namespace root of the transactions
they carry.

Its hash inside a block's digest is the EIP-712 struct hash of these fields
(`consensus.encoding.payload_hash`), not a hash of these wire bytes, so an L1
contract rebuilds a block's digest from the fields alone.

Proposals carry digests of transaction batches, not transactions: batches are
broadcast by the validators that cut them, and a voter fetches any it lacks
before voting, so the leader is never a bandwidth bottleneck.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from consensus.limits import U64_MAX

MAX_BATCHES_PER_BLOCK = 1024
"""Batch digests in one block: 32 KiB of digests, up to ~2M transactions."""

MAX_CLOCK_DRIFT_MS = 5_000
"""A proposal's timestamp may run at most this far ahead of the voter's clock."""


class MalformedPayload(ValueError):
    """Block payload bytes that are not a well-formed BlockPayload."""


class BlockPayload(msgspec.Struct, frozen=True, array_like=True):
    """What a block orders, and the execution state it vouches for.

    `state_height`/`state_root`: the leader's latest executed height and the
    state root after it. Voters check it against their own execution, so a
    finalized block certifies that root (rollups and the L1 read it from here).

    `namespace_root`: the namespace table root (`payload.namespaces`) of the
    transactions the batches carry (`checks.block_namespace_pairs`). Every voter
    recomputes it from the batches before voting, so a finalization certificate
    covers it and a rollup can check its namespace's transactions against it.
    """

    timestamp_ms: Annotated[int, msgspec.Meta(ge=0, le=U64_MAX)]
    state_height: Annotated[int, msgspec.Meta(ge=0, le=U64_MAX)]
    state_root: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    batches: Annotated[
        list[Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]],
        msgspec.Meta(max_length=MAX_BATCHES_PER_BLOCK),
    ]
    namespace_root: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(BlockPayload)
MAX_PAYLOAD_BYTES = 128 + 34 + 35 * MAX_BATCHES_PER_BLOCK
"""Header fields, the namespace root (34 bytes as msgpack bin) and the digests."""


def encode_payload(payload: BlockPayload) -> bytes:
    return _encoder.encode(payload)


def decode_payload(data: bytes) -> BlockPayload:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise MalformedPayload(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        payload = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedPayload(f"undecodable payload: {exc}") from exc
    if len(set(payload.batches)) != len(payload.batches):
        raise MalformedPayload("a batch digest appears twice in one block")
    # A block's digest hashes the decoded fields, not these bytes: accept only the one
    # encoding of those fields, so a certified block has exactly one payload.
    if _encoder.encode(payload) != data:
        raise MalformedPayload("payload bytes are not the canonical encoding")
    return payload
