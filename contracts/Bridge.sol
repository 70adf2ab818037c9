// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {Msgpack} from "./Msgpack.sol";
import {StateProof} from "./StateProof.sol";

interface ICommitments {
    /// Commitments.PostRef: a post's index and what it recorded.
    struct PostRef {
        uint64 index;
        bytes32 stateRoot;
        uint64 stateHeight;
        uint64 height;
    }

    function checkPost(PostRef calldata ref) external view returns (uint64 era, bool disputed, bool latest);
    function lastPostBlock() external view returns (uint64);
    function frozen() external view returns (bool);
    function era() external view returns (uint64);
    function isDisputed(uint64 era, uint64 height) external view returns (bool);
    function frozenAtBlock() external view returns (uint64);
}

/// Moves assets between L1 and seqnet.
///
/// Deposits lock ETH or the collateral token here and emit `Deposited`; the chain credits the
/// subaccount when it includes the event (nonces count up from 0, so none is skipped unseen).
/// Withdrawals pay a `wd/` entry of a posted state root, once per id, in two steps:
/// `proveWithdrawal` records it against one of the last HISTORY posts that Commitments keeps
/// (named by a PostRef), payable `challengeWindow` L1 blocks later, and
/// `finalizeWithdrawal` pays it then, unless the post it was proven on became disputed
/// (Commitments.submitEvidence) in the meantime. The window is the time anyone holding
/// equivocation evidence has to freeze a fork before its money leaves. Trust: both directions
/// trust the state roots that Commitments accepted and no one disputed.
///
/// Escape hatch: when no header was posted for more than `escapeDelay` L1 blocks (the silence
/// escape), owners take their collateral (a `sub/` entry with no open markets) or L1 balances
/// (`l1bal/`) straight from the latest posted state; once Commitments is frozen by evidence,
/// straight from the last undisputed posted state (never an older one: a withdrawal proven on a
/// later undisputed post may have been paid). The first escape claim freezes the bridge on
/// that state for good: later posts are ignored here, deposits are refused, and withdrawals must
/// prove against the frozen root, so no asset is paid both by the escape and by a later state.
contract Bridge {
    /// A Subaccount record is [collateral, markets, open_orders] (subaccount 0: an Account,
    /// [collateral, markets, open_orders, nonce_highest, nonce_used]); a flat one is a few dozen
    /// bytes.
    uint256 public constant MAX_SUBACCOUNT_BYTES = 1024;
    /// The largest amount the chain credits (sequencer_net/execution/limits.py MAX_AMOUNT).
    uint256 public constant MAX_DEPOSIT = 1e40;
    /// The longest challenge window: Commitments.HISTORY - 2. Evidence that lands within the
    /// window after the first disputed post leaves at most challengeWindow + 1 disputed posts (at
    /// most one per L1 block, the evidence's own block included), so the last undisputed post is
    /// among the last challengeWindow + 2 posts: still in the history for escapes to name it.
    uint64 public constant MAX_CHALLENGE_WINDOW = 1022;

    /// A proven withdrawal waiting out the challenge window (three slots).
    struct PendingWithdrawal {
        address recipient;
        uint64 payableAt; // L1 block from which it may be paid; 0: not proven
        uint32 era; // the Commitments era of the post it was proven on
        address asset;
        uint64 postHeight; // that post's height
        uint64 stateHeight;
        uint256 amount;
    }

    ICommitments public immutable commitments;
    address public immutable token;
    /// Silence (L1 blocks without a post) that opens the escape hatch; never below the
    /// challenge window, so a root escaped from has had its window.
    uint64 public immutable escapeDelay;
    /// L1 blocks between proving a withdrawal and paying it.
    uint64 public immutable challengeWindow;

    uint64 public depositCount;
    uint64 public frozenStateHeight;
    bytes32 public frozenStateRoot; // non-zero once the escape hatch was used
    uint64 private _frozenEra; // the era, height and index of the post frozenStateRoot came from
    uint64 private _frozenPostHeight;
    uint64 private _frozenPostIndex;
    mapping(uint64 => bool) public withdrawn;
    mapping(uint64 => PendingWithdrawal) public pendingWithdrawals;
    mapping(bytes21 => bool) public escapedSubaccount;
    mapping(address => mapping(address => bool)) public escapedBalance;

    event Deposited(uint64 indexed nonce, address indexed from, bytes21 subaccount, address token, uint256 amount);
    event WithdrawalProven(
        uint64 indexed id, address indexed recipient, address token, uint256 amount, uint64 stateHeight, uint64 payableAt
    );
    event Withdrawn(uint64 indexed id, address indexed recipient, address token, uint256 amount);
    event Escaped(address indexed owner, address token, uint256 amount);
    event Frozen(uint64 stateHeight, bytes32 stateRoot);

    error ZeroAmount();
    error DepositTooLarge(uint256 amount);
    error BridgeFrozen();
    error NotFrozenPost(uint64 index);
    error AlreadyWithdrawn(uint64 id);
    error AlreadyProven(uint64 id);
    error NotProven(uint64 id);
    error ChallengeWindowOpen(uint64 payableAt);
    error WithdrawalDisputed(uint64 id);
    error ChallengeWindowTooLong(uint64 challengeWindow, uint64 maximum);
    error PostDisputed(uint64 index);
    error NotLatestPost(uint64 index);
    error NotNextPost(uint64 index, uint64 nextIndex);
    error NotLastUndisputedPost(uint64 index);
    error EscapeNotOpen(uint256 openAfterBlock);
    error AlreadyEscaped();
    error SubaccountTooLarge(uint256 length);
    error MalformedSubaccount();
    error OpenMarkets();
    error NothingToEscape();
    error PaymentFailed();
    error TokenTransferFailed();

    constructor(address commitments_, address token_, uint64 escapeDelay_, uint64 challengeWindow_) {
        if (challengeWindow_ > MAX_CHALLENGE_WINDOW) {
            revert ChallengeWindowTooLong(challengeWindow_, MAX_CHALLENGE_WINDOW);
        }
        commitments = ICommitments(commitments_);
        token = token_;
        escapeDelay = escapeDelay_ > challengeWindow_ ? escapeDelay_ : challengeWindow_;
        challengeWindow = challengeWindow_;
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
        // The chain refuses (and never credits) amounts above its MAX_AMOUNT: refuse them
        // here, where the funds would otherwise stay locked.
        if (amount > MAX_DEPOSIT) revert DepositTooLarge(amount);
        uint64 nonce = depositCount;
        depositCount = nonce + 1;
        emit Deposited(nonce, msg.sender, subaccount, asset, amount);
    }

    // --- withdrawals -------------------------------------------------------------------------

    /// Records the withdrawal `id` that the state of post `post` holds as
    /// `wd/ || id` -> abi.encode(id, recipient, token, amount), payable from
    /// block.number + challengeWindow. `post` is any of the last HISTORY posts of Commitments'
    /// current era, undisputed (Commitments.checkPost names what is wrong with it); once the
    /// escape hatch froze the bridge, the post it froze on. Anyone may submit it. A withdrawal
    /// recorded on a post that became disputed may be proven again on another.
    function proveWithdrawal(
        ICommitments.PostRef calldata post,
        uint64 id,
        address recipient,
        address asset,
        uint256 amount,
        bytes calldata proof
    ) external {
        if (withdrawn[id]) revert AlreadyWithdrawn(id);
        PendingWithdrawal storage pending = pendingWithdrawals[id];
        if (pending.payableAt != 0 && !commitments.isDisputed(pending.era, pending.postHeight)) {
            revert AlreadyProven(id);
        }
        (uint64 era_, bool disputed) = _provablePost(post);
        if (disputed) revert WithdrawalDisputed(id);
        StateProof.verify(
            post.stateRoot,
            keccak256(abi.encodePacked("wd/", id)),
            keccak256(abi.encode(id, recipient, asset, amount)),
            proof
        );
        pending.recipient = recipient;
        pending.payableAt = uint64(block.number) + challengeWindow;
        pending.era = uint32(era_);
        pending.asset = asset;
        pending.postHeight = post.height;
        pending.stateHeight = post.stateHeight;
        pending.amount = amount;
        emit WithdrawalProven(id, recipient, asset, amount, post.stateHeight, pending.payableAt);
    }

    /// The era of `post` and whether it is disputed, once it is checked to be one a withdrawal
    /// may prove against: the post the bridge froze on once the escape hatch was used, else
    /// one of Commitments' history.
    function _provablePost(ICommitments.PostRef calldata post) private view returns (uint64 era_, bool disputed) {
        if (frozenStateRoot == bytes32(0)) {
            (era_, disputed,) = commitments.checkPost(post);
            return (era_, disputed);
        }
        if (
            post.index != _frozenPostIndex || post.stateRoot != frozenStateRoot
                || post.stateHeight != frozenStateHeight || post.height != _frozenPostHeight
        ) revert NotFrozenPost(post.index);
        era_ = _frozenEra;
        disputed = commitments.isDisputed(era_, post.height);
    }

    /// Pays the proven withdrawal `id` once its challenge window has passed
    /// (block.number >= payableAt), unless the post it was proven on is disputed.
    function finalizeWithdrawal(uint64 id) external {
        if (withdrawn[id]) revert AlreadyWithdrawn(id);
        PendingWithdrawal memory pending = pendingWithdrawals[id];
        if (pending.payableAt == 0) revert NotProven(id);
        if (block.number < pending.payableAt) revert ChallengeWindowOpen(pending.payableAt);
        if (commitments.isDisputed(pending.era, pending.postHeight)) revert WithdrawalDisputed(id);
        withdrawn[id] = true;
        delete pendingWithdrawals[id];
        emit Withdrawn(id, pending.recipient, pending.asset, pending.amount);
        _pay(pending.recipient, pending.asset, pending.amount);
    }

    // --- escape hatch ------------------------------------------------------------------------

    /// Open once frozen here; `challengeWindow` L1 blocks after Commitments froze on evidence
    /// (time for lower evidence to move the disputed height before anyone is paid); or after
    /// escapeDelay L1 blocks without a post.
    function escapeOpen() public view returns (bool) {
        if (frozenStateRoot != bytes32(0)) return true;
        if (commitments.frozen()) return block.number >= _evidenceEscapeFrom();
        return block.number > commitments.lastPostBlock() + escapeDelay;
    }

    /// The post the escape hatch froze the bridge on (zeros before; withdrawals prove against
    /// it from then on), its era, and whether later evidence disputed it (escapes then move to
    /// the last post still undisputed).
    function frozenPost() external view returns (ICommitments.PostRef memory post, uint64 era_, bool disputed) {
        post = ICommitments.PostRef(_frozenPostIndex, frozenStateRoot, frozenStateHeight, _frozenPostHeight);
        era_ = _frozenEra;
        disputed = frozenStateRoot != bytes32(0) && commitments.isDisputed(era_, _frozenPostHeight);
    }

    function _evidenceEscapeFrom() private view returns (uint256) {
        return uint256(commitments.frozenAtBlock()) + challengeWindow;
    }

    /// Pays the collateral of the caller's subaccount `number` from the escape root (see
    /// `_escapeRoot` for `post` and `next`), where `value` is its `sub/` record; only a subaccount
    /// with no markets and collateral > 0.
    function escapeCollateral(
        uint8 number,
        bytes calldata value,
        bytes calldata proof,
        ICommitments.PostRef calldata post,
        ICommitments.PostRef calldata next
    ) external {
        bytes21 subaccount = bytes21(abi.encodePacked(msg.sender, number));
        if (escapedSubaccount[subaccount]) revert AlreadyEscaped();
        if (value.length > MAX_SUBACCOUNT_BYTES) revert SubaccountTooLarge(value.length);
        bytes32 root = _escapeRoot(post, next);
        StateProof.verify(root, keccak256(abi.encodePacked("sub/", subaccount)), keccak256(value), proof);
        uint256 amount = _flatCollateral(value, number == 0 ? 0x95 : 0x93);
        escapedSubaccount[subaccount] = true;
        emit Escaped(msg.sender, token, amount);
        _pay(msg.sender, token, amount);
    }

    /// Pays the caller's L1 asset balance `l1bal/ || caller || asset` -> abi.encode(amount)
    /// from the escape root (see `_escapeRoot` for `post` and `next`).
    function escapeBalance(
        address asset,
        uint256 amount,
        bytes calldata proof,
        ICommitments.PostRef calldata post,
        ICommitments.PostRef calldata next
    ) external {
        if (escapedBalance[msg.sender][asset]) revert AlreadyEscaped();
        if (amount == 0) revert NothingToEscape();
        bytes32 root = _escapeRoot(post, next);
        StateProof.verify(
            root, keccak256(abi.encodePacked("l1bal/", msg.sender, asset)), keccak256(abi.encode(amount)), proof
        );
        escapedBalance[msg.sender][asset] = true;
        emit Escaped(msg.sender, asset, amount);
        _pay(msg.sender, asset, amount);
    }

    /// The root escapes prove against; the first escape freezes it (see the contract's doc).
    /// While the bridge is frozen on a root still undisputed, that root (`post` and `next` are
    /// not read). Otherwise the caller names the post to freeze on: while Commitments is frozen
    /// by evidence (from `challengeWindow` blocks after that freeze), the last undisputed post,
    /// shown by `post` undisputed and, unless it is the latest post, `next` (the post after it)
    /// disputed; else (after the silence) the latest post. If later evidence disputes the root
    /// escapes froze on, they move the same way to the last post still undisputed: nothing is
    /// paid from a disputed state (a subaccount or balance that already escaped stays escaped).
    function _escapeRoot(ICommitments.PostRef calldata post, ICommitments.PostRef calldata next)
        private
        returns (bytes32 root)
    {
        root = frozenStateRoot;
        bool evidence = commitments.frozen();
        if (root != bytes32(0)) {
            if (!commitments.isDisputed(_frozenEra, _frozenPostHeight)) return root;
        } else if (evidence) {
            uint256 openFrom = _evidenceEscapeFrom();
            if (block.number < openFrom) revert EscapeNotOpen(openFrom);
        } else {
            uint256 openAfter = uint256(commitments.lastPostBlock()) + escapeDelay;
            if (block.number <= openAfter) revert EscapeNotOpen(openAfter);
        }
        (uint64 era_, bool disputed, bool latest) = commitments.checkPost(post);
        if (disputed) revert PostDisputed(post.index);
        if (!latest) {
            if (!evidence) revert NotLatestPost(post.index);
            if (next.index != post.index + 1) revert NotNextPost(post.index, next.index);
            (, bool nextDisputed,) = commitments.checkPost(next);
            if (!nextDisputed) revert NotLastUndisputedPost(post.index);
        }
        root = post.stateRoot;
        frozenStateRoot = root;
        frozenStateHeight = post.stateHeight;
        _frozenEra = era_;
        _frozenPostHeight = post.height;
        _frozenPostIndex = post.index;
        emit Frozen(post.stateHeight, root);
    }

    /// The collateral of a Subaccount record [collateral, markets, open_orders] (`header` 0x93,
    /// fixarray 3) or of an Account record, which appends the nonce window (`header` 0x95,
    /// fixarray 5), whose markets list is empty.
    function _flatCollateral(bytes calldata value, uint8 header) private pure returns (uint256) {
        if (value.length == 0 || uint8(value[0]) != header) revert MalformedSubaccount();
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
