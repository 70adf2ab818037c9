// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// Forced inclusion: anyone can put a signed seqnet transaction on L1, and the sequencer must
/// include it by `dueBlock`. The contract stores nothing but a counter: the transaction travels
/// in the event, which the sequencer reads. It checks only the size; validity (signature, nonce,
/// encoding) is for the chain to judge when it includes the transaction. Trust: censorship
/// resistance rests on the validators honouring the due block (the chain's rule), not on this
/// contract.
contract Inbox {
    /// The same bound as the HTTP intake's largest transaction.
    uint256 public constant MAX_TRANSACTION_BYTES = 16384;

    uint64 public immutable inclusionWindow;
    uint64 public count;

    event ForcedTransaction(uint64 indexed index, address indexed sender, uint64 dueBlock, bytes tx);

    error EmptyTransaction();
    error TransactionTooLarge(uint256 length, uint256 maxLength);

    constructor(uint64 inclusionWindow_) {
        inclusionWindow = inclusionWindow_;
    }

    function submit(bytes calldata tx_) external {
        if (tx_.length == 0) revert EmptyTransaction();
        if (tx_.length > MAX_TRANSACTION_BYTES) revert TransactionTooLarge(tx_.length, MAX_TRANSACTION_BYTES);
        uint64 index = count;
        count = index + 1;
        emit ForcedTransaction(index, msg.sender, uint64(block.number) + inclusionWindow, tx_);
    }
}
