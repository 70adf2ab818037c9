// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// Membership proofs for seqnet's state tree (sequencer_net/execution/state_tree.py):
/// a binary sparse Merkle tree over keccak256(key) paths, most significant bit first.
///
///     leaf     = keccak256(0x00 || keccak256(key) || keccak256(value))
///     internal = keccak256(0x01 || left || right)
///     empty    = 32 zero bytes
///
/// Proof bytes (`Proof.encode`): tag 0x01 (ends at a leaf) || key hash (32) || value hash (32)
/// || depth (u16 big-endian) || bitmap (ceil(depth / 8) bytes, bit i set = sibling i is not
/// empty) || the non-empty siblings, root first. Only membership proofs are accepted here, and
/// only in their canonical form (the Python decoder's rules), so one fact has one proof.
library StateProof {
    /// Longest valid proof: tag, leaf, depth, a full bitmap and 256 siblings.
    uint256 internal constant MAX_PROOF_BYTES = 1 + 64 + 2 + 32 + 256 * 32;

    error ProofTooLarge(uint256 length);
    error MalformedProof();
    error ProofMismatch();

    uint256 private constant HEADER = 67; // tag, key hash, value hash, depth

    /// Reverts unless `proof` shows that under `root` the key hashing to `keyHash` holds the
    /// value hashing to `valueHash`.
    function verify(bytes32 root, bytes32 keyHash, bytes32 valueHash, bytes calldata proof)
        internal
        pure
    {
        if (proof.length > MAX_PROOF_BYTES) revert ProofTooLarge(proof.length);
        if (proof.length < HEADER || proof[0] != 0x01) revert MalformedProof();
        if (bytes32(proof[1:33]) != keyHash || bytes32(proof[33:65]) != valueHash) {
            revert ProofMismatch();
        }
        uint256 depth = uint16(bytes2(proof[65:67]));
        if (depth > 256) revert MalformedProof();
        uint256 siblingsStart = HEADER + (depth + 7) / 8;
        if (proof.length < siblingsStart) revert MalformedProof();
        if (depth & 7 != 0 && uint8(proof[siblingsStart - 1]) & ((1 << (8 - (depth & 7))) - 1) != 0) {
            revert MalformedProof(); // bits set past the depth
        }
        bytes32 node = keccak256(abi.encodePacked(bytes1(0x00), keyHash, valueHash));
        uint256 path = uint256(keyHash);
        uint256 end = proof.length; // siblings are read from the last one (deepest) up
        for (uint256 i = depth; i > 0;) {
            unchecked {
                --i;
            }
            bytes32 sibling;
            if ((uint8(proof[HEADER + (i >> 3)]) >> (7 - (i & 7))) & 1 == 1) {
                if (end < siblingsStart + 32) revert MalformedProof();
                unchecked {
                    end -= 32;
                }
                sibling = bytes32(proof[end:end + 32]);
                if (sibling == bytes32(0)) revert MalformedProof(); // must be marked absent
            }
            if ((path >> (255 - i)) & 1 == 1) {
                node = keccak256(abi.encodePacked(bytes1(0x01), sibling, node));
            } else {
                node = keccak256(abi.encodePacked(bytes1(0x01), node, sibling));
            }
        }
        if (end != siblingsStart) revert MalformedProof(); // siblings left over
        if (node != root) revert ProofMismatch();
    }
}
