// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// Reads the few MessagePack items the bridge needs from seqnet's canonical encoding
/// (sequencer_net/execution/encoding.py): integers in any MessagePack int format, and integers
/// outside [-2**63, 2**64) as extension type 1 (BIG_INT_EXT) holding minimal big-endian two's
/// complement. The bytes read here were proven against a state root, so they are the canonical
/// encoding the chain wrote; the reader still checks every bound it relies on.
library Msgpack {
    uint8 internal constant BIG_INT_EXT = 1;

    error MsgpackTruncated();
    error MsgpackNotAnInteger(uint8 tag);
    error MsgpackIntegerTooWide(uint256 length);

    /// The integer at `pos` and the offset just past it.
    function readInt(bytes calldata data, uint256 pos) internal pure returns (int256 value, uint256 next) {
        if (pos >= data.length) revert MsgpackTruncated();
        uint8 tag = uint8(data[pos]);
        if (tag <= 0x7f) return (int256(uint256(tag)), pos + 1); // positive fixint
        if (tag >= 0xe0) return (int256(int8(tag)), pos + 1); // negative fixint
        if (tag >= 0xcc && tag <= 0xcf) {
            // uint8 / uint16 / uint32 / uint64
            uint256 n = 1 << (tag - 0xcc);
            return (int256(_readUnsigned(data, pos + 1, n)), pos + 1 + n);
        }
        if (tag >= 0xd0 && tag <= 0xd3) {
            // int8 / int16 / int32 / int64
            uint256 n = 1 << (tag - 0xd0);
            return (_signExtend(_readUnsigned(data, pos + 1, n), n), pos + 1 + n);
        }
        uint256 length;
        uint256 start;
        if (tag >= 0xd4 && tag <= 0xd8) {
            length = 1 << (tag - 0xd4); // fixext 1 / 2 / 4 / 8 / 16
            start = pos + 2;
        } else if (tag == 0xc7) {
            if (pos + 1 >= data.length) revert MsgpackTruncated();
            length = uint8(data[pos + 1]); // ext 8
            start = pos + 3;
        } else {
            revert MsgpackNotAnInteger(tag);
        }
        if (start > data.length) revert MsgpackTruncated();
        if (uint8(data[start - 1]) != BIG_INT_EXT) revert MsgpackNotAnInteger(tag);
        if (length == 0 || length > 32) revert MsgpackIntegerTooWide(length);
        return (_signExtend(_readUnsigned(data, start, length), length), start + length);
    }

    function _readUnsigned(bytes calldata data, uint256 start, uint256 n) private pure returns (uint256) {
        if (start + n > data.length) revert MsgpackTruncated();
        return uint256(bytes32(data[start:start + n])) >> (256 - 8 * n);
    }

    function _signExtend(uint256 raw, uint256 n) private pure returns (int256 value) {
        assembly ("memory-safe") {
            value := signextend(sub(n, 1), raw)
        }
    }
}
