// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Msgpack} from "./Msgpack.sol";
import {StateProof} from "./StateProof.sol";

interface ICommitments {
    function stateRootAt(uint64 stateHeight) external view returns (bytes32);
    function latestStateRoot() external view returns (bytes32);
    function latestStateHeight() external view returns (uint64);
    function lastPostBlock() external view returns (uint64);
}

/// Moves assets between L1 and seqnet.
///
/// Deposits lock ETH or the collateral token here and emit `Deposited`; the chain credits the
/// subaccount when it includes the event (nonces count up from 0, so none is skipped unseen).
/// Withdrawals pay a `wd/` entry of a posted state root, once per id. Trust: both directions
/// trust the state roots that Commitments accepted, i.e. a quorum of the validator set.
///
/// Escape hatch: when no header was posted for more than `escapeDelay` L1 blocks, owners take
/// their collateral (a `sub/` entry with no open markets) or L1 balances (`l1bal/`) straight
/// from the latest posted state. The first escape claim freezes the bridge on that state for
/// good: later posts are ignored here, deposits are refused, and withdrawals must prove against
/// the frozen root, so no asset is paid both by the escape and by a later state.
contract Bridge {
    /// A Subaccount record is [collateral, markets, open_orders]; a flat one is a few dozen bytes.
    uint256 public constant MAX_SUBACCOUNT_BYTES = 1024;

    ICommitments public immutable commitments;
    address public immutable token;
    uint64 public immutable escapeDelay;

    uint64 public depositCount;
    uint64 public frozenStateHeight;
    bytes32 public frozenStateRoot; // non-zero once the escape hatch was used
    mapping(uint64 => bool) public withdrawn;
    mapping(bytes21 => bool) public escapedSubaccount;
    mapping(address => mapping(address => bool)) public escapedBalance;

    event Deposited(uint64 indexed nonce, address indexed from, bytes21 subaccount, address token, uint256 amount);
    event Withdrawn(uint64 indexed id, address indexed recipient, address token, uint256 amount);
    event Escaped(address indexed owner, address token, uint256 amount);
    event Frozen(uint64 stateHeight, bytes32 stateRoot);

    error ZeroAmount();
    error BridgeFrozen();
    error UnknownStateRoot(uint64 stateHeight);
    error AlreadyWithdrawn(uint64 id);
    error EscapeNotOpen(uint256 openAfterBlock);
    error NoPostedState();
    error AlreadyEscaped();
    error SubaccountTooLarge(uint256 length);
    error MalformedSubaccount();
    error OpenMarkets();
    error NothingToEscape();
    error PaymentFailed();
    error TokenTransferFailed();

    constructor(address commitments_, address token_, uint64 escapeDelay_) {
        commitments = ICommitments(commitments_);
        token = token_;
        escapeDelay = escapeDelay_;
    }

    // --- deposits ----------------------------------------------------------------------------

    function depositEth(bytes21 subaccount) external payable {
        if (msg.value == 0) revert ZeroAmount();
        _recordDeposit(subaccount, address(0), msg.value);
    }

    /// Pulls `amount` of the collateral token (approve the bridge first).
    function depositToken(bytes21 subaccount, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        _recordDeposit(subaccount, token, amount);
        _callToken(abi.encodeCall(IERC20.transferFrom, (msg.sender, address(this), amount)));
    }

    function _recordDeposit(bytes21 subaccount, address asset, uint256 amount) private {
        if (frozenStateRoot != bytes32(0)) revert BridgeFrozen();
        uint64 nonce = depositCount;
        depositCount = nonce + 1;
        emit Deposited(nonce, msg.sender, subaccount, asset, amount);
    }

    // --- withdrawals -------------------------------------------------------------------------

    /// Pays the withdrawal `id` that the state at `stateHeight` holds as
    /// `wd/ || id` -> abi.encode(id, recipient, token, amount). Anyone may submit it.
    function withdraw(
        uint64 stateHeight,
        uint64 id,
        address recipient,
        address asset,
        uint256 amount,
        bytes calldata proof
    ) external {
        if (withdrawn[id]) revert AlreadyWithdrawn(id);
        bytes32 root;
        if (frozenStateRoot != bytes32(0)) {
            if (stateHeight == frozenStateHeight) root = frozenStateRoot;
        } else {
            root = commitments.stateRootAt(stateHeight);
        }
        if (root == bytes32(0)) revert UnknownStateRoot(stateHeight);
        StateProof.verify(
            root,
            keccak256(abi.encodePacked("wd/", id)),
            keccak256(abi.encode(id, recipient, asset, amount)),
            proof
        );
        withdrawn[id] = true;
        emit Withdrawn(id, recipient, asset, amount);
        _pay(recipient, asset, amount);
    }

    // --- escape hatch ------------------------------------------------------------------------

    function escapeOpen() public view returns (bool) {
        return frozenStateRoot != bytes32(0) || block.number > commitments.lastPostBlock() + escapeDelay;
    }

    /// Pays the collateral of the caller's subaccount `number` from the latest posted state,
    /// where `value` is its `sub/` record; only a subaccount with no markets and collateral > 0.
    function escapeCollateral(uint8 number, bytes calldata value, bytes calldata proof) external {
        bytes21 subaccount = bytes21(abi.encodePacked(msg.sender, number));
        if (escapedSubaccount[subaccount]) revert AlreadyEscaped();
        if (value.length > MAX_SUBACCOUNT_BYTES) revert SubaccountTooLarge(value.length);
        bytes32 root = _escapeRoot();
        StateProof.verify(root, keccak256(abi.encodePacked("sub/", subaccount)), keccak256(value), proof);
        uint256 amount = _flatCollateral(value);
        escapedSubaccount[subaccount] = true;
        emit Escaped(msg.sender, token, amount);
        _pay(msg.sender, token, amount);
    }

    /// Pays the caller's L1 asset balance `l1bal/ || caller || asset` -> abi.encode(amount).
    function escapeBalance(address asset, uint256 amount, bytes calldata proof) external {
        if (escapedBalance[msg.sender][asset]) revert AlreadyEscaped();
        if (amount == 0) revert NothingToEscape();
        bytes32 root = _escapeRoot();
        StateProof.verify(
            root, keccak256(abi.encodePacked("l1bal/", msg.sender, asset)), keccak256(abi.encode(amount)), proof
        );
        escapedBalance[msg.sender][asset] = true;
        emit Escaped(msg.sender, asset, amount);
        _pay(msg.sender, asset, amount);
    }

    /// The root escapes prove against; the first escape freezes it (see the contract's doc).
    function _escapeRoot() private returns (bytes32 root) {
        root = frozenStateRoot;
        if (root != bytes32(0)) return root;
        uint256 openAfter = uint256(commitments.lastPostBlock()) + escapeDelay;
        if (block.number <= openAfter) revert EscapeNotOpen(openAfter);
        root = commitments.latestStateRoot();
        if (root == bytes32(0)) revert NoPostedState();
        uint64 stateHeight = commitments.latestStateHeight();
        frozenStateRoot = root;
        frozenStateHeight = stateHeight;
        emit Frozen(stateHeight, root);
    }

    /// The collateral of a Subaccount record [collateral, markets, open_orders] whose markets
    /// list is empty.
    function _flatCollateral(bytes calldata value) private pure returns (uint256) {
        if (value.length == 0 || uint8(value[0]) != 0x93) revert MalformedSubaccount(); // fixarray 3
        (int256 collateral, uint256 next) = Msgpack.readInt(value, 1);
        if (next >= value.length) revert MalformedSubaccount();
        uint8 markets = uint8(value[next]);
        if (markets != 0x90) {
            // a fixarray, array 16 or array 32 with elements
            if ((markets > 0x90 && markets <= 0x9f) || markets == 0xdc || markets == 0xdd) revert OpenMarkets();
            revert MalformedSubaccount();
        }
        if (collateral <= 0) revert NothingToEscape();
        return uint256(collateral);
    }

    // --- payments ----------------------------------------------------------------------------

    function _pay(address to, address asset, uint256 amount) private {
        if (asset == address(0)) {
            (bool ok,) = to.call{value: amount}("");
            if (!ok) revert PaymentFailed();
        } else if (asset == token) {
            _callToken(abi.encodeCall(IERC20.transfer, (to, amount)));
        } else {
            revert PaymentFailed(); // the bridge holds only ETH and its collateral token
        }
    }

    /// Calls the collateral token; accepts a token that returns true or nothing.
    function _callToken(bytes memory data) private {
        (bool ok, bytes memory returned) = token.call(data);
        if (!ok || (returned.length != 0 && !abi.decode(returned, (bool)))) revert TokenTransferFailed();
        if (returned.length == 0 && token.code.length == 0) revert TokenTransferFailed();
    }
}

interface IERC20 {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}
