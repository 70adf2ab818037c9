"""The canonical, domain-separated digests that validators sign.

Everything signed is an EIP-712 typed structure, so the L1 contract can rebuild
the same digest and check signatures with `ecrecover`:

    domainSeparator = keccak(EIP712Domain_TYPEHASH || keccak(name) || keccak(version)
                             || uint256(chainId) || address(verifyingContract)
                             || bytes32(salt = genesis hash))
    Block_hash      = keccak(Block_TYPEHASH || uint64 view || uint64 height
                             || bytes32 parent || bytes32 payloadHash || uint32 proposer)
    payloadHash     = keccak(Payload_TYPEHASH || uint64 timestamp || uint64 stateHeight
                             || bytes32 stateRoot || bytes32 batchesHash
                             || bytes32 namespaceRoot)     (a BlockPayload)
    batchesHash     = keccak(batch digests)                (no forced entries)
                    = keccak(batch digests || FORCED_ENTRIES_MARK
                             || keccak(uint64 index || bytes32 txHash, ...))
                                                           (forced entries marked)
                    = keccak(OPAQUE_PAYLOAD_TAG || payload)  (any other bytes)
    Vote_digest     = keccak(0x19 0x01 || domainSeparator ||
                             keccak(Vote_TYPEHASH || uint8 kind || uint64 view
                                    || uint64 height || bytes32 block))
    BatchAck_digest = keccak(0x19 0x01 || domainSeparator ||
                             keccak(BatchAck_TYPEHASH || bytes32 batch
                                    || uint32 author || uint64 round))

Each field is ABI-encoded as one 32-byte big-endian word. The chain id and the
L1 contract address are fixed in genesis, and the domain's salt is the genesis
block's digest, so a vote (or a transaction) for one network is never valid on
another, even one that shares the chain id, the keys and the contract address.
Wire bytes (msgpack) are never hashed: a block's payload enters its digest as
the struct hash of its decoded fields. Bytes that do not decode as a
`BlockPayload` (the genesis block's, the simulator's) hash under their own tag,
so the two kinds of payload hash can never collide; honest voters only vote for
payloads that decode.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.crypto import ADDRESS_LENGTH, keccak256
from consensus.limits import U64_MAX
from consensus.payload import FORCED_ENTRIES_MARK, MalformedPayload, decode_payload
from consensus.types import Digest, Height, ValidatorIndex, View

DOMAIN_TYPEHASH = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,"
    b"bytes32 salt)"
)
BLOCK_TYPEHASH = keccak256(
    b"Block(uint64 view,uint64 height,bytes32 parent,bytes32 payloadHash,uint32 proposer)"
)
VOTE_TYPEHASH = keccak256(b"Vote(uint8 kind,uint64 view,uint64 height,bytes32 block)")
BATCH_ACK_TYPEHASH = keccak256(b"BatchAck(bytes32 batch,uint32 author,uint64 round,bool verified)")
PAYLOAD_TYPEHASH = keccak256(
    b"Payload(uint64 timestamp,uint64 stateHeight,bytes32 stateRoot,bytes32[] batches,"
    b"bytes32 namespaceRoot)"
)

PAYLOAD_HASH_CACHE = 256
"""Payload hashes remembered (at most ~9 MiB of payload bytes kept alive)."""

OPAQUE_PAYLOAD_TAG = keccak256(b"seqnet opaque payload")
"""Prefixed to payload bytes that are not a BlockPayload before hashing: no
struct hash input starts with it, so the two hash domains are disjoint."""

DOMAIN_NAME = b"seqnet"
DOMAIN_VERSION = b"1"


def word(value: int) -> bytes:
    """One ABI word: an unsigned integer as 32 big-endian bytes."""
    if value < 0 or value >= 2**256:
        raise ValueError("ABI word out of range")
    return value.to_bytes(32, "big")


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain: which network, and which L1 contract verifies it.

    `genesis_hash` (the EIP-712 `salt`) is the digest of the network's genesis
    block: two networks that share a chain id, keys and contract address still
    accept none of each other's signatures.
    """

    chain_id: int
    verifying_contract: bytes  # 20-byte L1 address; zero before the L1 is deployed
    genesis_hash: bytes  # 32-byte digest of the genesis block

    def __post_init__(self) -> None:
        if not 0 <= self.chain_id < 2**256:
            raise ValueError("chain id out of range")
        if len(self.verifying_contract) != ADDRESS_LENGTH:
            raise ValueError("verifying contract must be a 20-byte address")
        if len(self.genesis_hash) != 32:
            raise ValueError("genesis hash must be 32 bytes")

    def separator(self) -> bytes:
        return keccak256(
            DOMAIN_TYPEHASH
            + keccak256(DOMAIN_NAME)
            + keccak256(DOMAIN_VERSION)
            + word(self.chain_id)
            + bytes(12)
            + self.verifying_contract
            + self.genesis_hash
        )


def block_hash(
    view: View,
    height: Height,
    parent: Digest,
    payload: bytes,
    proposer: ValidatorIndex,
) -> Digest:
    return block_header_hash(view, height, parent, payload_hash(payload), proposer)


def block_header_hash(
    view: View,
    height: Height,
    parent: Digest,
    payload_digest: bytes,
    proposer: ValidatorIndex,
) -> Digest:
    """A block's digest from its header: the payload enters only as its
    `payload_hash`, so a chain of ancestors is checked (parent by parent) from
    headers of a few hundred bytes, without the payloads."""
    if not (0 <= view <= U64_MAX and 0 <= height <= U64_MAX):
        raise ValueError("view or height out of range")
    if len(payload_digest) != 32:
        raise ValueError("a payload hash is 32 bytes")
    return Digest(
        keccak256(
            BLOCK_TYPEHASH + word(view) + word(height) + parent + payload_digest + word(proposer)
        )
    )


def payload_struct_hash(
    timestamp_ms: int,
    state_height: int,
    state_root: bytes,
    batches: list[bytes] | tuple[bytes, ...],
    namespace_root: bytes,
    forced: Sequence[tuple[int, bytes]] = (),
) -> Digest:
    """The EIP-712 struct hash of a block payload's header: what `payloadHash`
    in a block's hash is, so an L1 contract rebuilds a block's digest from the
    header fields with three keccaks (the batch digests enter as
    `batches_hash(batches, forced)`, the EIP-712 encoding of a `bytes32[]`)."""
    if not (0 <= timestamp_ms <= U64_MAX and 0 <= state_height <= U64_MAX):
        raise ValueError("timestamp or state height out of range")
    if len(state_root) != 32 or len(namespace_root) != 32:
        raise ValueError("roots must be 32 bytes")
    return Digest(
        keccak256(
            PAYLOAD_TYPEHASH
            + word(timestamp_ms)
            + word(state_height)
            + state_root
            + batches_hash(batches, forced)
            + namespace_root
        )
    )


def forced_entries_hash(forced: Sequence[tuple[int, bytes]]) -> bytes:
    """keccak(uint64 index (8 bytes big-endian) || tx hash, ...) of a block's
    marked forced entries, in their order."""
    parts: list[bytes] = []
    for index, tx_hash in forced:
        if not 0 <= index <= U64_MAX or len(tx_hash) != 32:
            raise ValueError("a forced entry is a uint64 index and a 32-byte hash")
        parts.append(index.to_bytes(8, "big") + tx_hash)
    return keccak256(b"".join(parts))


def batches_hash(batches: Sequence[bytes], forced: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """`batchesHash`: keccak of the batch digests, then, when the block marks
    forced entries, FORCED_ENTRIES_MARK and `forced_entries_hash(forced)`."""
    if any(len(digest) != 32 for digest in batches):
        raise ValueError("batch digests must be 32 bytes")
    if not forced:
        return keccak256(b"".join(batches))
    return keccak256(b"".join(batches) + FORCED_ENTRIES_MARK + forced_entries_hash(forced))


@functools.lru_cache(maxsize=PAYLOAD_HASH_CACHE)
def payload_hash(payload: bytes) -> Digest:
    """What a block's digest commits to for `payload` (see the module docstring).

    Cached: consensus hashes each block several times (propose, vote, certify,
    store), and a full payload costs a decode and two keccaks (~0.2 ms)."""
    try:
        decoded = decode_payload(payload)
    except MalformedPayload:
        return Digest(keccak256(OPAQUE_PAYLOAD_TAG + payload))
    return payload_struct_hash(
        decoded.timestamp_ms,
        decoded.state_height,
        decoded.state_root,
        decoded.batches,
        decoded.namespace_root,
        [(entry.index, entry.tx_hash) for entry in decoded.forced],
    )


def vote_digest(
    domain_separator: bytes, kind: int, view: View, height: Height, block: Digest
) -> bytes:
    struct_hash = keccak256(VOTE_TYPEHASH + word(kind) + word(view) + word(height) + block)
    return keccak256(b"\x19\x01" + domain_separator + struct_hash)


def batch_ack_digest(
    domain_separator: bytes, batch: bytes, author: int, round_: int, verified: bool
) -> bytes:
    """What a validator signs to acknowledge that it holds `author`'s batch of
    `round_` (the author's own batch sequence number) with digest `batch`, and
    whether it checked every transaction's signature and carried sender in it
    (`verified`)."""
    if len(batch) != 32:
        raise ValueError("batch digest must be 32 bytes")
    if not (0 <= author < 2**32 and 0 <= round_ <= U64_MAX):
        raise ValueError("author or round out of range")
    struct_hash = keccak256(
        BATCH_ACK_TYPEHASH + batch + word(author) + word(round_) + word(1 if verified else 0)
    )
    return keccak256(b"\x19\x01" + domain_separator + struct_hash)
