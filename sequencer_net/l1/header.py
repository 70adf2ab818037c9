"""What Commitments.post takes: a finalized block's header, and its quorum's signatures.

The contract rebuilds the digest the validators signed off-chain
(consensus/encoding.py) from the header fields alone:

    payloadHash    = payload_struct_hash(timestamp, stateHeight, stateRoot, batches, namespaceRoot)
    blockHash      = keccak(BLOCK_TYPEHASH || view || height || parent || payloadHash || proposer)
    finalizeDigest = vote_digest(epochSeparator(e), FINALIZE, view, height, blockHash)

with e the epoch holding the height (consensus.epochs.epoch_domain_separator:
the chain's domain separator for epoch 0).

so the batch digests travel as one `batchesHash = keccak(concat(batches))`
(a block marking forced inbox entries appends the mark and the entries' hash
to the digests first: consensus.encoding.batches_hash; the contract takes the
hash as given, so it verifies both kinds alike).
Signatures go as one byte string, 65 bytes each, ordered by signer address
ascending: the contract checks membership, uniqueness and order in one pass.
An epoch's set is identified by the EIP-712 struct hash of
`ValidatorSet(uint64 epoch,address[] validators,uint256[] powers)`
(`validator_set_hash`, the contract's `setHashOf`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from consensus.crypto import PrivateKey, keccak256, recover_address
from consensus.encoding import (
    BLOCK_TYPEHASH,
    PAYLOAD_TYPEHASH,
    Domain,
    batches_hash,
    vote_digest,
    word,
)
from consensus.epochs import epoch_domain_separator
from consensus.messages import Block, VoteKind
from consensus.payload import decode_payload
from consensus.types import Digest, Height, View

VALIDATOR_SET_TYPEHASH: Final = keccak256(
    b"ValidatorSet(uint64 epoch,address[] validators,uint256[] powers)"
)
HeaderTuple = tuple[int, int, bytes, int, int, int, bytes, bytes, bytes]


@dataclass(frozen=True, slots=True)
class L1Header:
    """The fields of `Commitments.Header` (`view` is `viewNumber` there: a Solidity keyword)."""

    view: int
    height: int
    parent: bytes
    proposer: int
    timestamp_ms: int
    state_height: int
    state_root: bytes
    batches_hash: bytes
    namespace_root: bytes

    @classmethod
    def of_block(cls, block: Block) -> L1Header:
        """The header of a block whose payload is a `BlockPayload`: its
        `block_hash()` is `block.digest()` (raises MalformedPayload otherwise)."""
        payload = decode_payload(block.payload)
        return cls(
            view=block.view,
            height=block.height,
            parent=block.parent,
            proposer=block.proposer,
            timestamp_ms=payload.timestamp_ms,
            state_height=payload.state_height,
            state_root=payload.state_root,
            batches_hash=batches_hash(
                payload.batches, [(entry.index, entry.tx_hash) for entry in payload.forced]
            ),
            namespace_root=payload.namespace_root,
        )

    @staticmethod
    def hash_batches(batches: Iterable[bytes]) -> bytes:
        """`batchesHash` of a block without forced entries: the EIP-712
        encoding of a bytes32[] of batch digests."""
        return keccak256(b"".join(batches))

    def payload_hash(self) -> Digest:
        return Digest(
            keccak256(
                PAYLOAD_TYPEHASH
                + word(self.timestamp_ms)
                + word(self.state_height)
                + self.state_root
                + self.batches_hash
                + self.namespace_root
            )
        )

    def block_hash(self) -> Digest:
        return Digest(
            keccak256(
                BLOCK_TYPEHASH
                + word(self.view)
                + word(self.height)
                + self.parent
                + self.payload_hash()
                + word(self.proposer)
            )
        )

    def finalize_digest(self, domain: Domain, epoch: int = 0) -> bytes:
        """The FINALIZE vote digest of `epoch`'s set (the epoch holding the height)."""
        return vote_digest(
            epoch_domain_separator(domain.separator(), epoch),
            VoteKind.FINALIZE,
            View(self.view),
            Height(self.height),
            self.block_hash(),
        )

    def as_abi(self) -> HeaderTuple:
        """The struct as web3 passes it (field order of `Commitments.Header`)."""
        return (
            self.view,
            self.height,
            self.parent,
            self.proposer,
            self.timestamp_ms,
            self.state_height,
            self.state_root,
            self.batches_hash,
            self.namespace_root,
        )


def validator_set_hash(epoch: int, validators: Sequence[bytes], powers: Sequence[int]) -> bytes:
    """The EIP-712 struct hash of ValidatorSet(epoch, validators, powers)."""
    return keccak256(
        VALIDATOR_SET_TYPEHASH
        + word(epoch)
        + keccak256(b"".join(bytes(12) + address for address in validators))
        + keccak256(b"".join(word(power) for power in powers))
    )


def pack_signatures(signatures: Iterable[bytes], digest: bytes) -> bytes:
    """Concatenate 65-byte signatures of `digest`, ordered by recovered signer ascending."""
    by_signer = sorted((recover_address(digest, signature), signature) for signature in signatures)
    return b"".join(signature for _, signature in by_signer)


def sign_packed(keys: Iterable[PrivateKey], digest: bytes) -> bytes:
    """Every key's signature of `digest`, packed in signer order (see `pack_signatures`)."""
    ordered = sorted(keys, key=lambda key: key.address)
    return b"".join(key.sign_digest(digest) for key in ordered)
