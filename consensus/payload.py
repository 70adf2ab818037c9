"""The payload a leader puts in a consensus block: a timestamp, the execution
state it vouches for, batch digests and the namespace root of the transactions
they carry.

Its hash inside a block's digest is the EIP-712 struct hash of these fields
(`consensus.encoding.payload_hash`), not a hash of these wire bytes, so an L1
contract rebuilds a block's digest from the fields alone.

Proposals carry digests of transaction batches, not transactions: batches are
broadcast by the validators that cut them, and a voter fetches any it lacks
before voting, so the leader is never a bandwidth bottleneck.

`forced` names the block's transactions that are forced L1 inbox entries, with
their inbox indexes: execution runs them first, in inbox order (docs/l1.md,
"Forced transactions execute first"). It is encoded only when not empty, so a
block without forced entries has the payload (and the digest) it always had.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from consensus.limits import U64_MAX

FORCED_ENTRIES_MARK = b"seqnet/forced-entries/v1".ljust(32, b"\0")
"""Appended, as one more element of the `bytes32[] batches` array, after a
block's batch digests when it marks forced inbox entries, followed by the hash
of the entries (consensus.encoding.batches_hash). Not a keccak output (a batch
digest equal to it needs a preimage, and decode refuses one), so the batch list
ends at the mark: the L1 contract, which takes `batchesHash` as given, verifies
blocks with and without forced entries alike, and a block without them hashes
exactly as before."""

MAX_BATCHES_PER_BLOCK = 1024
"""Batch digests in one block: 32 KiB of digests, up to ~2M transactions."""

MAX_FORCED_PER_BLOCK = 256
"""Forced inbox entries one block may mark (each an L1 transaction its sender
paid for); a block carrying more marks the first ones, the rest go in later
blocks' marks or execute in seed order."""

MAX_CLOCK_DRIFT_MS = 5_000
"""A proposal's timestamp may run at most this far ahead of the voter's clock."""


class MalformedPayload(ValueError):
    """Block payload bytes that are not a well-formed BlockPayload."""


class ForcedEntry(msgspec.Struct, frozen=True, array_like=True):
    """A forced L1 inbox entry a block marks: its index in the Inbox contract
    (`ForcedTransaction.index`) and the hash of its transaction."""

    index: Annotated[int, msgspec.Meta(ge=0, le=U64_MAX)]
    tx_hash: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]


class BlockPayload(msgspec.Struct, frozen=True, array_like=True):
    """What a block orders, and the execution state it vouches for.

    `state_height`/`state_root`: the leader's latest executed height and the
    state root after it. Voters check it against their own execution, so a
    finalized block certifies that root (rollups and the L1 read it from here).

    `namespace_root`: the namespace table root (`payload.namespaces`) of the
    transactions the batches carry (`checks.block_namespace_pairs`). Every voter
    recomputes it from the batches before voting, so a finalization certificate
    covers it and a rollup can check its namespace's transactions against it.

    `forced`: the forced inbox entries among the batches' transactions, in
    strictly increasing inbox index (voters check each against the L1,
    `payload.checks.check_forced_marks`). Omitted from the encoding when empty.
    """

    timestamp_ms: Annotated[int, msgspec.Meta(ge=0, le=U64_MAX)]
    state_height: Annotated[int, msgspec.Meta(ge=0, le=U64_MAX)]
    state_root: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    batches: Annotated[
        list[Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]],
        msgspec.Meta(max_length=MAX_BATCHES_PER_BLOCK),
    ]
    namespace_root: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    forced: Annotated[list[ForcedEntry], msgspec.Meta(max_length=MAX_FORCED_PER_BLOCK)] = []


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(BlockPayload)
FORCED_ENTRY_BYTES = 1 + 9 + 34
"""One ForcedEntry as msgpack: a 2-array header, a uint64, a 32-byte bin."""
MAX_PAYLOAD_BYTES = (
    128 + 34 + 35 * MAX_BATCHES_PER_BLOCK + 3 + FORCED_ENTRY_BYTES * MAX_FORCED_PER_BLOCK
)
"""Header fields, the namespace root (34 bytes as msgpack bin), the digests and
the forced entries (a 3-byte array header, then each entry)."""


def encode_payload(payload: BlockPayload) -> bytes:
    """The canonical bytes: a 5-element array without forced entries (the
    format blocks had before `forced` existed), a 6-element one with them."""
    if payload.forced:
        return _encoder.encode(payload)
    return _encoder.encode(
        (
            payload.timestamp_ms,
            payload.state_height,
            payload.state_root,
            payload.batches,
            payload.namespace_root,
        )
    )


def decode_payload(data: bytes) -> BlockPayload:
    if len(data) > MAX_PAYLOAD_BYTES:
        raise MalformedPayload(f"payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        payload = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedPayload(f"undecodable payload: {exc}") from exc
    if len(set(payload.batches)) != len(payload.batches):
        raise MalformedPayload("a batch digest appears twice in one block")
    if FORCED_ENTRIES_MARK in payload.batches:
        raise MalformedPayload("a batch digest equal to the forced-entries mark")
    # A block's digest hashes the decoded fields, not these bytes: accept only the one
    # encoding of those fields, so a certified block has exactly one payload.
    if encode_payload(payload) != data:
        raise MalformedPayload("payload bytes are not the canonical encoding")
    return payload
