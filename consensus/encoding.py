"""The canonical, domain-separated digests that validators sign.

Everything signed is an EIP-712 typed structure, so the L1 contract can rebuild
the same digest and check signatures with `ecrecover`:

    domainSeparator = keccak(EIP712Domain_TYPEHASH || keccak(name) || keccak(version)
                             || uint256(chainId) || address(verifyingContract))
    Block_hash      = keccak(Block_TYPEHASH || uint64 view || uint64 height
                             || bytes32 parent || bytes32 keccak(payload) || uint32 proposer)
    Vote_digest     = keccak(0x19 0x01 || domainSeparator ||
                             keccak(Vote_TYPEHASH || uint8 kind || uint64 view
                                    || uint64 height || bytes32 block))

Each field is ABI-encoded as one 32-byte big-endian word. The chain id and the
L1 contract address are fixed in genesis, so a vote for one network is never
valid on another. Wire bytes (msgpack) are never hashed.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.crypto import ADDRESS_LENGTH, keccak256
from consensus.limits import U64_MAX
from consensus.types import Digest, Height, ValidatorIndex, View

DOMAIN_TYPEHASH = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
BLOCK_TYPEHASH = keccak256(
    b"Block(uint64 view,uint64 height,bytes32 parent,bytes32 payloadHash,uint32 proposer)"
)
VOTE_TYPEHASH = keccak256(b"Vote(uint8 kind,uint64 view,uint64 height,bytes32 block)")

DOMAIN_NAME = b"seqnet"
DOMAIN_VERSION = b"1"


def word(value: int) -> bytes:
    """One ABI word: an unsigned integer as 32 big-endian bytes."""
    if value < 0 or value >= 2**256:
        raise ValueError("ABI word out of range")
    return value.to_bytes(32, "big")


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain: which network, and which L1 contract verifies it."""

    chain_id: int
    verifying_contract: bytes  # 20-byte L1 address; zero before the L1 is deployed

    def __post_init__(self) -> None:
        if not 0 <= self.chain_id < 2**256:
            raise ValueError("chain id out of range")
        if len(self.verifying_contract) != ADDRESS_LENGTH:
            raise ValueError("verifying contract must be a 20-byte address")

    def separator(self) -> bytes:
        return keccak256(
            DOMAIN_TYPEHASH
            + keccak256(DOMAIN_NAME)
            + keccak256(DOMAIN_VERSION)
            + word(self.chain_id)
            + bytes(12)
            + self.verifying_contract
        )


def block_hash(
    view: View,
    height: Height,
    parent: Digest,
    payload: bytes,
    proposer: ValidatorIndex,
) -> Digest:
    if not (0 <= view <= U64_MAX and 0 <= height <= U64_MAX):
        raise ValueError("view or height out of range")
    return Digest(
        keccak256(
            BLOCK_TYPEHASH
            + word(view)
            + word(height)
            + parent
            + keccak256(payload)
            + word(proposer)
        )
    )


def vote_digest(
    domain_separator: bytes, kind: int, view: View, height: Height, block: Digest
) -> bytes:
    struct_hash = keccak256(VOTE_TYPEHASH + word(kind) + word(view) + word(height) + block)
    return keccak256(b"\x19\x01" + domain_separator + struct_hash)
