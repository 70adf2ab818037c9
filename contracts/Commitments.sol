// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// seqnet's light client on L1: the validator-set epochs, and the finalized block headers
/// that a quorum of the right epoch's set signed.
///
/// Epochs: the contract's epochs are the chain's (docs/consensus.md, "Validator-set epochs").
/// The constructor takes the genesis schedule: epoch 0's set, and each later epoch's first
/// height and set hash; anyone then installs a later epoch's set (`installEpoch`), which must
/// hash to the committed one (a schedule of large sets does not fit one deployment). Epoch
/// e's set signs in `epochSeparator(e)` (the chain's EIP-712 domain separator for epoch 0),
/// and a header at height h is verified with the set and separator of the epoch holding h
/// (EpochNotInstalled until its set is), so a set never signs a height outside its epoch (a
/// later epoch's heights in particular), and no signature of one epoch counts in another.
/// The last epoch has no end, like the chain's.
///
/// Trust: a header is accepted when validators holding a quorum (floor(2 * total / 3) + 1) of
/// its epoch's power signed its FINALIZE vote, exactly the digest they sign off-chain
/// (consensus/encoding.py). The contract does not re-execute anything: it trusts a quorum of
/// the epoch's set about the block, its state root, its batches and (like every finalization)
/// its ancestors. Safety therefore holds while no quorum of an epoch's set is malicious;
/// liveness (posting) needs one honest relayer with the signatures, and the Bridge's escape
/// hatch covers its absence.
///
/// Accountable safety: two conflicting finalized blocks need more than a third of an epoch's
/// power to sign two votes that no honest validator casts together. Anyone may submit such a
/// pair (`submitEvidence`, judged against the set of the epoch holding the disputed height,
/// or `submitEvidenceOfEpoch` naming the epoch and its set); once the proven validators of one
/// epoch hold more than a third of that epoch's power, the contract freezes at the disputed
/// height H: `post` is refused, and every post covering a height >= H is disputed (the Bridge
/// pays nothing proven on it). Only `resume`, by a timelocked admin, lifts a freeze; users who
/// do not trust it escape from the last undisputed root through the Bridge.
contract Commitments {
    /// One signed consensus vote (consensus/messages.py Vote without the signer index, which
    /// the signature names). NULLIFY votes carry height 0 and a zero block.
    struct SignedVote {
        uint8 kind;
        uint64 viewNumber;
        uint64 height;
        bytes32 blockHash;
        bytes signature; // 65 bytes: r || s || v
    }

    /// A post as a caller names it: its index and what it recorded (Committed's postIndex,
    /// stateRoot, stateHeight and toHeight; for a resume, Resumed's postIndex, stateRoot,
    /// stateHeight and fromHeight).
    struct PostRef {
        uint64 index;
        bytes32 stateRoot;
        uint64 stateHeight;
        uint64 height;
    }

    struct Header {
        uint64 viewNumber; // the consensus view (`view` is a Solidity keyword)
        uint64 height;
        bytes32 parent;
        uint32 proposer;
        uint64 timestamp;
        uint64 stateHeight;
        bytes32 stateRoot;
        bytes32 batchesHash; // keccak256 of the concatenated batch digests
        bytes32 namespaceRoot;
    }

    bytes32 private constant DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)"
    );
    bytes32 private constant PAYLOAD_TYPEHASH = keccak256(
        "Payload(uint64 timestamp,uint64 stateHeight,bytes32 stateRoot,bytes32[] batches,bytes32 namespaceRoot)"
    );
    bytes32 private constant BLOCK_TYPEHASH =
        keccak256("Block(uint64 view,uint64 height,bytes32 parent,bytes32 payloadHash,uint32 proposer)");
    bytes32 private constant VOTE_TYPEHASH = keccak256("Vote(uint8 kind,uint64 view,uint64 height,bytes32 block)");
    bytes32 private constant VALIDATOR_SET_TYPEHASH =
        keccak256("ValidatorSet(uint64 epoch,address[] validators,uint256[] powers)");
    /// consensus/epochs.py EPOCH_DOMAIN_TAG: prefixed to (domainSeparator, epoch) to derive a
    /// later epoch's separator; no EIP-712 domain hash input starts with it.
    bytes32 private constant EPOCH_DOMAIN_TAG = keccak256("seqnet epoch signing domain");
    bytes32 private constant VOTE_KIND_NULLIFY = bytes32(uint256(2));
    uint256 private constant VOTE_KIND_FINALIZE = 3;

    /// secp256k1 n / 2: a signature with a larger s is the malleable twin of another.
    uint256 private constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;
    uint256 private constant SIGNATURE_BYTES = 65;
    /// Same bound as consensus/limits.py MAX_VALIDATORS.
    uint256 public constant MAX_VALIDATORS = 1024;
    /// Later epochs a schedule may hold: home/genesis.py MAX_EPOCHS.
    uint256 public constant MAX_SCHEDULED_EPOCHS = 1024;
    /// Total power fits 64 bits, so sums over a set never overflow what is stored.
    uint256 private constant MAX_TOTAL_POWER = type(uint64).max;

    /// Posts kept for PostRefs: the post of index p is in slot p % HISTORY until post
    /// p + HISTORY overwrites it. At most one post lands per L1 block, so the history spans at
    /// least HISTORY L1 blocks (the Bridge's challenge window must fit in it).
    uint256 public constant HISTORY = 1024;
    uint256 private constant HISTORY_MASK = 1023; // HISTORY - 1

    // _tip packs what every post reads and writes, so a post touches one slot for all of it:
    //   bits   0..47  latestHeight          bits  48..95  latestStateHeight
    //   bits  96..135 lastPostBlock         bits 136..167 epoch of the current set
    //   bits 168..207 postCount (posts and resumes so far; the latest has index postCount - 1)
    //   bits 208..247 eraFirstPost (the index of the current era's first post: its resume)
    //   bit  254      the epoch above is the era's last: every later height is its, so a post
    //                 needs no look-up (always so for a schedule of one epoch)
    //   bit  255      frozen: equivocation was proven (submitEvidence); cleared by resume
    // "The epoch of the current set" is the epoch of the latest post's height (before the
    // first post of an era: the era's first epoch).
    // Heights are uint64 in the header; the contract takes them below 2**48 (HeightOutOfRange),
    // which at one block per millisecond lasts 8,900 years. Block numbers and post counts
    // (at most one post per L1 block) keep 40 bits: 35,000 years of 1-second blocks.
    uint256 private constant HEIGHT_BITS = 48;
    // Masks are written out: a constant expression is re-evaluated (with overflow checks) at
    // every use.
    uint256 private constant HEIGHT_MASK = 0xffffffffffff; // 2**48 - 1
    uint256 private constant WORD40_MASK = 0xffffffffff; // 2**40 - 1
    uint256 private constant POST_BLOCK_SHIFT = 96;
    uint256 private constant EPOCH_SHIFT = 136;
    uint256 private constant COUNT_SHIFT = 168;
    uint256 private constant ERA_FIRST_SHIFT = 208;
    uint256 private constant LAST_EPOCH_SHIFT = 254;
    uint256 private constant FROZEN_SHIFT = 255;
    uint256 private constant MAX_EPOCH = 0xffffffff;
    uint256 private _tip;
    // The latest post's state root (the history keeps only each post's record hash).
    bytes32 private _latestRoot;
    // Slot p % HISTORY: postRecord(stateRoot, stateHeight, height) of post p.
    bytes32[HISTORY] private _posts;

    // The first epoch of the current era (bits 0..31) and its last installed epoch (32..63):
    // the era's epochs are the numbers between them.
    uint256 private _set;
    uint256 private constant SET_LAST_EPOCH_SHIFT = 32;
    uint256 private constant WORD64_MASK = 0xffffffffffffffff;
    // Per epoch: the first height its set signs for (bits 0..63), the set's total power
    // (64..127) and the L1 block that installed it (128..191), where its ValidatorSetInstalled
    // event is. An epoch's heights end where the next epoch of the same era starts.
    mapping(uint64 => uint256) private _epochs;
    // Per epoch: validatorSetHash(epoch, validators, powers) of its set.
    mapping(uint64 => bytes32) private _setHashes;
    // Per epoch and validator: its power in the epoch's set (bits 0..63) and the set's quorum
    // (64..127); zero for a validator outside the set. A post reads one entry per signer.
    mapping(uint64 => mapping(address => uint256)) private _members;

    /// Count of resumes; posts of an era that ended are judged by that era's dispute.
    uint64 public era;
    /// The L1 block of the first evidence of the current freeze (0: not frozen).
    uint64 public frozenAtBlock;
    // era => disputed height + 1 (0: no evidence in that era). Posts of that era covering a
    // height >= the disputed height are disputed.
    mapping(uint64 => uint256) private _disputedFrom;
    // era => epoch => validator => the lowest height its proven equivocation disputes, + 1.
    mapping(uint64 => mapping(uint64 => mapping(address => uint256))) private _offences;
    // era => epoch => the validators of that epoch's set proven in the era (each once) and
    // the sum of their power in that set.
    mapping(uint64 => mapping(uint64 => address[])) private _offenders;
    mapping(uint64 => mapping(uint64 => uint256)) private _offendingPower;

    bytes32 public immutable domainSeparator;
    uint256 public immutable seqChainId;
    bytes32 public immutable genesisHash;
    /// May `resume` after a freeze (address(0): nobody; a freeze is then final).
    address public immutable admin;
    /// L1 blocks between the first evidence of a freeze and the earliest `resume`.
    uint64 public immutable resumeDelay;

    /// A post of index `postIndex` (a PostRef names it by that index, stateRoot, stateHeight and
    /// toHeight).
    event Committed(
        uint64 indexed fromHeight,
        uint64 indexed toHeight,
        bytes32 blockHash,
        uint64 stateHeight,
        bytes32 stateRoot,
        uint64 postIndex
    );
    /// The set of `epoch`, signing for heights from `fromHeight` (emitted by the constructor for
    /// epoch 0, `installEpoch` and `resume`), so its full set can be read back from one block.
    event ValidatorSetInstalled(uint64 indexed epoch, uint64 fromHeight, address[] validators, uint256[] powers);
    event EquivocationProven(
        address indexed validator, uint64 height, uint64 viewNumber, uint8 firstKind, uint8 secondKind, uint64 epoch
    );
    event FrozenAt(uint64 indexed era, uint64 disputedHeight);
    /// The era's first post, of index `postIndex` (its PostRef's height is `fromHeight`).
    event Resumed(
        uint64 indexed era, uint64 fromHeight, bytes32 blockHash, uint64 stateHeight, bytes32 stateRoot, uint64 postIndex
    );

    error StaleHeight(uint64 height, uint64 latestHeight);
    error StateHeightRegressed(uint64 stateHeight, uint64 latestStateHeight);
    error MalformedSignatures(uint256 length);
    error MalleableSignature(uint256 index);
    error InvalidSignature(uint256 index);
    error SignerNotInSet(address signer, uint64 epoch);
    error DuplicateSigner(address signer);
    error SignersNotAscending(uint256 index);
    error InsufficientQuorum(uint256 signedPower, uint256 quorum);
    error EmptyValidatorSet();
    error TooManyValidators(uint256 count);
    error LengthMismatch(uint256 validators, uint256 powers);
    error ValidatorsNotAscending(uint256 index);
    error ZeroPower(uint256 index);
    error TotalPowerTooLarge();
    error HeightOutOfRange();
    error EpochOutOfRange();
    error TooManyEpochs(uint256 count);
    error EpochsNotAscending(uint256 index);
    error EpochNotInstalled(uint64 epoch);
    error EpochAlreadyInstalled(uint64 epoch);
    error Frozen();
    error NotFrozen();
    error BadEvidenceSignature(uint256 index);
    error EvidenceSignersDiffer(address first, address second);
    error EvidenceSignerNotInSet(address signer);
    error UnknownValidatorSet(uint64 epoch);
    error EvidenceOutsideEpoch(uint64 epoch, uint64 height);
    error VotesDoNotConflict();
    error EquivocationAlreadyProven(address validator);
    error NotAdmin();
    error ResumeTooEarly(uint256 fromBlock);
    error AlreadyPostedThisBlock();
    error PostNotMade(uint64 index, uint64 postCount);
    error PostEvicted(uint64 index, uint64 postCount);
    error PostOfEndedEra(uint64 index, uint64 eraFirstPost);
    error PostMismatch(uint64 index);

    constructor(
        uint256 seqChainId_,
        bytes32 genesisHash_,
        address[] memory validators,
        uint256[] memory powers,
        address admin_,
        uint64 resumeDelay_,
        uint64[] memory firstHeights,
        bytes32[] memory setHashes
    ) {
        seqChainId = seqChainId_;
        genesisHash = genesisHash_;
        admin = admin_;
        resumeDelay = resumeDelay_;
        domainSeparator = keccak256(
            abi.encode(
                DOMAIN_TYPEHASH, keccak256("seqnet"), keccak256("1"), seqChainId_, address(this), genesisHash_
            )
        );
        // Epoch 0 from height 0 (the genesis block's; its first signed height is 1), then the
        // schedule's epochs at strictly ascending first heights above 1, each with the hash of
        // the set `installEpoch` will take (its total power stays 0 until then).
        uint256 later = firstHeights.length;
        if (later > MAX_SCHEDULED_EPOCHS) revert TooManyEpochs(later);
        if (setHashes.length != later) revert LengthMismatch(later, setHashes.length);
        _install(0, 0, validators, powers);
        uint256 previous = 1;
        for (uint256 i = 0; i < later; ++i) {
            uint256 firstHeight = firstHeights[i];
            if (firstHeight <= previous) revert EpochsNotAscending(i);
            if (firstHeight > HEIGHT_MASK) revert HeightOutOfRange();
            if (setHashes[i] == bytes32(0)) revert UnknownValidatorSet(uint64(i + 1));
            _epochs[uint64(i + 1)] = firstHeight;
            _setHashes[uint64(i + 1)] = setHashes[i];
            previous = firstHeight;
        }
        _set = later << SET_LAST_EPOCH_SHIFT;
        // Until the first post the escape delay counts from deployment (and no post lands in
        // the deployment's block). The history's slots and the latest root's are written once
        // here so that posts always overwrite a non-zero slot (the price a post pays is then
        // the same from the first one): about 22,000 gas per slot, 23 million in all.
        _tip = (uint256(uint40(block.number)) << POST_BLOCK_SHIFT)
            | ((later == 0 ? uint256(1) : uint256(0)) << LAST_EPOCH_SHIFT);
        _latestRoot = bytes32(uint256(1));
        for (uint256 i = 0; i < HISTORY; ++i) {
            _posts[i] = bytes32(uint256(1));
        }
    }

    // --- posting -----------------------------------------------------------------------

    /// Accepts `h` iff a quorum of the set of the epoch holding h.height signed FINALIZE for it
    /// in that epoch's separator, h.height is above latestHeight, h.stateHeight is not below
    /// latestStateHeight and nothing was posted in this L1 block yet. `signatures` is k 65-byte
    /// r || s || v signatures whose signers are strictly ascending. The post gets the next index
    /// (Committed's postIndex). It may cover heights of earlier epochs (latestHeight + 1 up):
    /// the posted block's epoch vouches for its ancestors, as it does within an epoch.
    function post(Header calldata h, bytes calldata signatures) external {
        uint256 tip = _tip;
        if (tip >> FROZEN_SHIFT != 0) revert Frozen();
        if ((tip >> POST_BLOCK_SHIFT) & WORD40_MASK == uint40(block.number)) revert AlreadyPostedThisBlock();
        uint256 latestHeight_ = tip & HEIGHT_MASK;
        uint256 latestStateHeight_ = (tip >> HEIGHT_BITS) & HEIGHT_MASK;
        uint256 height;
        uint256 stateHeight;
        assembly ("memory-safe") {
            // Raw words: the range check below also refuses dirty upper bits.
            height := calldataload(add(h, 0x20))
            stateHeight := calldataload(add(h, 0xa0))
        }
        if (height > HEIGHT_MASK || stateHeight > HEIGHT_MASK) revert HeightOutOfRange();
        if (height <= latestHeight_) revert StaleHeight(uint64(height), uint64(latestHeight_));
        if (stateHeight < latestStateHeight_) {
            revert StateHeightRegressed(uint64(stateHeight), uint64(latestStateHeight_));
        }

        // The epoch of h: the latest post's, unless a later epoch of the era starts at or below
        // h (heights only rise, so never an earlier one). The tip's flag spares the look-up
        // once the latest post is in the era's last epoch; otherwise the next epoch's first
        // height is read, and the others only when h is at or above it.
        uint256 epochBits = tip & ((MAX_EPOCH << EPOCH_SHIFT) | (uint256(1) << LAST_EPOCH_SHIFT));
        uint256 epoch_ = (tip >> EPOCH_SHIFT) & MAX_EPOCH;
        if (tip & (uint256(1) << LAST_EPOCH_SHIFT) == 0 && _epochs[uint64(epoch_ + 1)] & WORD64_MASK <= height) {
            uint256 last = (_set >> SET_LAST_EPOCH_SHIFT) & MAX_EPOCH;
            epoch_ = _lastEpochFrom(epoch_ + 1, last, height);
            _requireInstalled(epoch_);
            epochBits = (epoch_ << EPOCH_SHIFT) | ((epoch_ == last ? uint256(1) : uint256(0)) << LAST_EPOCH_SHIFT);
        }

        (bytes32 blockHash, bytes32 digest) = _finalizeDigest(h, _separatorOf(epoch_));
        _requireQuorum(digest, signatures, epoch_);

        uint256 index = (tip >> COUNT_SHIFT) & WORD40_MASK;
        bytes32 stateRoot = h.stateRoot;
        _record(index, stateRoot, stateHeight, height);
        // The era's first post stays; the epoch is h's, the count goes up by one and the
        // frozen bit is clear (checked above).
        _tip = height | (stateHeight << HEIGHT_BITS) | (uint256(uint40(block.number)) << POST_BLOCK_SHIFT)
            | epochBits | (tip & (WORD40_MASK << ERA_FIRST_SHIFT)) | ((index + 1) << COUNT_SHIFT);
        _emitCommitted(latestHeight_ + 1, height, blockHash, stateHeight, stateRoot, index);
    }

    /// keccak256(abi.encode(stateRoot, stateHeight, height)): what the history keeps of a post.
    function postRecord(bytes32 stateRoot, uint64 stateHeight, uint64 height) external pure returns (bytes32) {
        return keccak256(abi.encode(stateRoot, stateHeight, height));
    }

    /// Writes post `index`'s record into its history slot and its root as the latest root.
    function _record(uint256 index, bytes32 stateRoot, uint256 stateHeight, uint256 height) private {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, stateRoot)
            mstore(add(m, 0x20), stateHeight)
            mstore(add(m, 0x40), height)
            sstore(add(_posts.slot, and(index, HISTORY_MASK)), keccak256(m, 0x60))
            sstore(_latestRoot.slot, stateRoot)
        }
    }

    /// emit Committed(fromHeight, toHeight, blockHash, stateHeight, stateRoot, postIndex), built
    /// in scratch memory (a post's cost is mostly fixed; this keeps the rest small).
    function _emitCommitted(
        uint256 fromHeight,
        uint256 toHeight,
        bytes32 blockHash,
        uint256 stateHeight,
        bytes32 stateRoot,
        uint256 postIndex
    ) private {
        bytes32 topic = Committed.selector;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, blockHash)
            mstore(add(m, 0x20), stateHeight)
            mstore(add(m, 0x40), stateRoot)
            mstore(add(m, 0x60), postIndex)
            log3(m, 0x80, topic, fromHeight, toHeight)
        }
    }

    /// The last epoch in `from`..`last` whose first height is at most `height` (`from`'s own
    /// first height is: the caller knows `height` is in `from` or later).
    function _lastEpochFrom(uint256 from, uint256 last, uint256 height) private view returns (uint256) {
        uint256 low = from;
        uint256 high = last;
        while (low < high) {
            uint256 middle = (low + high + 1) / 2;
            if (_epochs[uint64(middle)] & WORD64_MASK <= height) low = middle;
            else high = middle - 1;
        }
        return low;
    }

    /// Reverts EpochNotInstalled unless `epoch_`'s set is installed (its total power is set).
    function _requireInstalled(uint256 epoch_) private view {
        if ((_epochs[uint64(epoch_)] >> 64) & WORD64_MASK == 0) revert EpochNotInstalled(uint64(epoch_));
    }

    /// The separator epoch `epoch_`'s set signs in (consensus/epochs.py epoch_domain_separator):
    /// domainSeparator for epoch 0 (a chain that never changes its set signs as it always did),
    /// keccak256(EPOCH_DOMAIN_TAG || domainSeparator || uint256 epoch) for a later one.
    function epochSeparator(uint64 epoch_) external view returns (bytes32) {
        return _separatorOf(epoch_);
    }

    function _separatorOf(uint256 epoch_) private view returns (bytes32 separator) {
        separator = domainSeparator;
        if (epoch_ != 0) {
            bytes32 tag = EPOCH_DOMAIN_TAG;
            assembly ("memory-safe") {
                let m := mload(0x40)
                mstore(m, tag)
                mstore(add(m, 0x20), separator)
                mstore(add(m, 0x40), epoch_)
                separator := keccak256(m, 0x60)
            }
        }
    }

    /// The digest the validators signed to finalize `h` (consensus/encoding.py vote_digest of
    /// FINALIZE over the block hash) in `separator`, and that block hash. Every field is
    /// hashed as its 32-byte calldata word, as EIP-712 encodes it.
    function _finalizeDigest(Header calldata h, bytes32 separator)
        private
        pure
        returns (bytes32 blockHash, bytes32 digest)
    {
        bytes32 payloadTypehash = PAYLOAD_TYPEHASH;
        bytes32 blockTypehash = BLOCK_TYPEHASH;
        bytes32 voteTypehash = VOTE_TYPEHASH;
        assembly ("memory-safe") {
            let m := mload(0x40)
            // Payload(timestamp, stateHeight, stateRoot, batches, namespaceRoot): header words 4..8
            mstore(m, payloadTypehash)
            calldatacopy(add(m, 0x20), add(h, 0x80), 0xa0)
            let payloadHash := keccak256(m, 0xc0)
            // Block(view, height, parent, payloadHash, proposer): header words 0..2, hash, word 3
            mstore(m, blockTypehash)
            calldatacopy(add(m, 0x20), h, 0x60)
            mstore(add(m, 0x80), payloadHash)
            mstore(add(m, 0xa0), calldataload(add(h, 0x60)))
            blockHash := keccak256(m, 0xc0)
            // Vote(kind = FINALIZE, view, height, block)
            mstore(m, voteTypehash)
            mstore(add(m, 0x20), VOTE_KIND_FINALIZE)
            calldatacopy(add(m, 0x40), h, 0x40)
            mstore(add(m, 0x80), blockHash)
            let vote := keccak256(m, 0xa0)
            // 0x19 0x01 || separator || vote
            mstore(m, shl(240, 0x1901))
            mstore(add(m, 0x02), separator)
            mstore(add(m, 0x22), vote)
            digest := keccak256(m, 0x42)
        }
    }

    /// The EIP-712 Block hash of `h` (consensus/encoding.py block_hash over payload_struct_hash).
    function blockHashOf(Header calldata h) external pure returns (bytes32) {
        return _blockHash(h);
    }

    function _blockHash(Header calldata h) private pure returns (bytes32) {
        bytes32 payloadHash = keccak256(
            abi.encode(PAYLOAD_TYPEHASH, h.timestamp, h.stateHeight, h.stateRoot, h.batchesHash, h.namespaceRoot)
        );
        return keccak256(abi.encode(BLOCK_TYPEHASH, h.viewNumber, h.height, h.parent, payloadHash, h.proposer));
    }

    // --- the validator set -----------------------------------------------------------------

    /// Installs the set of `epoch_`, a scheduled epoch of the current era not installed yet
    /// (UnknownValidatorSet otherwise, EpochAlreadyInstalled for a second time): (validators,
    /// powers) must hash to the set hash the constructor took (UnknownValidatorSet), with the
    /// constructor's checks on a set. Anyone may send it (the hash decides); posts and evidence
    /// at the epoch's heights wait for it (EpochNotInstalled).
    function installEpoch(uint64 epoch_, address[] calldata validators, uint256[] calldata powers) external {
        uint256 set = _set;
        if (epoch_ < set & MAX_EPOCH || epoch_ > (set >> SET_LAST_EPOCH_SHIFT) & MAX_EPOCH) {
            revert UnknownValidatorSet(epoch_);
        }
        uint256 record = _epochs[epoch_];
        if ((record >> 64) & WORD64_MASK != 0) revert EpochAlreadyInstalled(epoch_);
        if (_setHashes[epoch_] != validatorSetHash(epoch_, validators, powers)) revert UnknownValidatorSet(epoch_);
        _install(epoch_, record & WORD64_MASK, validators, powers);
    }

    /// The EIP-712 struct hash of ValidatorSet(epoch, validators, powers).
    function validatorSetHash(uint64 epoch_, address[] calldata validators, uint256[] calldata powers)
        public
        pure
        returns (bytes32)
    {
        return keccak256(
            abi.encode(
                VALIDATOR_SET_TYPEHASH,
                epoch_,
                keccak256(abi.encodePacked(validators)),
                keccak256(abi.encodePacked(powers))
            )
        );
    }

    /// Installs (validators, powers) as `epoch_`'s set, signing for heights from `fromHeight`
    /// (the caller makes it part of the era: `_set`).
    function _install(uint64 epoch_, uint256 fromHeight, address[] memory validators, uint256[] memory powers)
        private
    {
        uint256 count = validators.length;
        if (count == 0) revert EmptyValidatorSet();
        if (count > MAX_VALIDATORS) revert TooManyValidators(count);
        if (powers.length != count) revert LengthMismatch(count, powers.length);
        uint256 total;
        address previous = address(0);
        for (uint256 i = 0; i < count; ++i) {
            address validator = validators[i];
            if (validator <= previous) revert ValidatorsNotAscending(i); // also refuses address(0)
            uint256 power = powers[i];
            if (power == 0) revert ZeroPower(i);
            if (power > MAX_TOTAL_POWER) revert TotalPowerTooLarge();
            total += power; // at most 1024 * 2**64: cannot overflow
            previous = validator;
        }
        if (total > MAX_TOTAL_POWER) revert TotalPowerTooLarge();
        uint256 quorum = total * 2 / 3 + 1;
        mapping(address => uint256) storage members = _members[epoch_];
        for (uint256 i = 0; i < count; ++i) {
            members[validators[i]] = powers[i] | (quorum << 64);
        }
        _epochs[epoch_] = fromHeight | (total << 64) | (block.number << 128);
        // validatorSetHash over the memory copy (the constructor has no calldata arrays).
        _setHashes[epoch_] = keccak256(
            abi.encode(
                VALIDATOR_SET_TYPEHASH,
                epoch_,
                keccak256(abi.encodePacked(validators)),
                keccak256(abi.encodePacked(powers))
            )
        );
        emit ValidatorSetInstalled(epoch_, uint64(fromHeight), validators, powers);
    }

    // --- accountable safety -------------------------------------------------------------------

    /// Proves that one validator signed two votes no honest validator casts together
    /// (consensus/core.py `_add_vote`):
    ///   - two FINALIZE votes in one view for different (height, block): disputes the lower height;
    ///   - a FINALIZE and a NULLIFY vote in one view (either order): disputes the FINALIZE's height.
    /// Votes do not name an epoch: an offence belongs to the epoch of the current era whose
    /// heights hold its disputed height (`epochOf`; EvidenceOutsideEpoch for a height below the
    /// era). Signatures are checked over the exact EIP-712 vote digests (consensus/encoding.py
    /// vote_digest) in that epoch's separator, and the signer must be in its set. A validator's
    /// offence is recorded once per era and epoch; another pair of the same validator in that
    /// epoch is accepted only if it disputes a lower height.
    ///
    /// The contracts freeze only once the proven validators of one epoch hold more than a third
    /// of that epoch's power (more than the f the consensus tolerates): fewer cannot finalize two
    /// conflicting blocks, so one faulty validator proving its own offence freezes nothing. The
    /// disputed height is then the lowest any proven offence of that epoch disputes, and later
    /// evidence of any epoch of the era can still lower it.
    function submitEvidence(SignedVote calldata first, SignedVote calldata second) external {
        uint256 height = _conflictHeight(first, second);
        (bool found, uint64 epoch_) = epochOf(uint64(height));
        if (!found) revert EvidenceOutsideEpoch(uint64(_set & MAX_EPOCH), uint64(height));
        _requireInstalled(epoch_);
        bytes32 separator = _separatorOf(epoch_);
        address signer = _recoverEvidence(first, 0, separator);
        uint256 member = _members[epoch_][signer];
        if (member == 0) revert EvidenceSignerNotInSet(signer);
        _prove(epoch_, signer, uint64(member), height, first, second, separator);
    }

    /// `submitEvidence` for an offence of `epoch_`, an epoch of the current era, judged against
    /// its set (validators, powers) as installed (ValidatorSetInstalled): the set must hash to
    /// the recorded one (UnknownValidatorSet), the disputed height must not be below the epoch's
    /// first height (EvidenceOutsideEpoch) and the signer must be in the set
    /// (EvidenceSignerNotInSet). Votes above the epoch's last height are its tail's (the empty
    /// blocks that finalize its last block, signed in its separator): such an offence disputes
    /// the epoch's last height, the block the tail commits.
    function submitEvidenceOfEpoch(
        uint64 epoch_,
        address[] calldata validators,
        uint256[] calldata powers,
        SignedVote calldata first,
        SignedVote calldata second
    ) external {
        uint256 height = _conflictHeight(first, second);
        uint256 last = (_set >> SET_LAST_EPOCH_SHIFT) & MAX_EPOCH;
        if (epoch_ > last || _setHashes[epoch_] != validatorSetHash(epoch_, validators, powers)) {
            revert UnknownValidatorSet(epoch_);
        }
        uint256 disputed = _disputedIn(epoch_, last, height);
        _requireInstalled(epoch_);
        bytes32 separator = _separatorOf(epoch_);
        address signer = _recoverEvidence(first, 0, separator);
        _prove(epoch_, signer, _powerIn(validators, powers, signer), disputed, first, second, separator);
    }

    /// The height an offence of `epoch_` (of the current era, whose last epoch is `last`) at
    /// `height` disputes: `height` within the epoch's heights, its last height for a tail vote
    /// above them. EvidenceOutsideEpoch for a height below its first, or an epoch of an era that
    /// `resume` ended.
    function _disputedIn(uint64 epoch_, uint256 last, uint256 height) private view returns (uint256) {
        if (epoch_ < _set & MAX_EPOCH || height < _epochs[epoch_] & WORD64_MASK) {
            revert EvidenceOutsideEpoch(epoch_, uint64(height));
        }
        if (epoch_ == last) return height;
        uint256 end = _epochs[epoch_ + 1] & WORD64_MASK;
        return height < end ? height : end - 1;
    }

    /// The power of `signer` in the set (validators, powers), found by binary search in the
    /// strictly ascending `validators`; EvidenceSignerNotInSet if it is not there.
    function _powerIn(address[] calldata validators, uint256[] calldata powers, address signer)
        private
        pure
        returns (uint256)
    {
        uint256 low = 0;
        uint256 high = validators.length;
        while (low < high) {
            uint256 middle = (low + high) / 2;
            address candidate = validators[middle];
            if (candidate == signer) return powers[middle];
            if (candidate < signer) low = middle + 1;
            else high = middle;
        }
        revert EvidenceSignerNotInSet(signer);
    }

    /// Records `signer`'s offence at `height` in `epoch_` (where it holds `power`) once the
    /// second vote is by the same signer, and freezes when that epoch's proven power crosses a
    /// third of the epoch's total power.
    function _prove(
        uint64 epoch_,
        address signer,
        uint256 power,
        uint256 height,
        SignedVote calldata first,
        SignedVote calldata second,
        bytes32 separator
    ) private {
        uint64 era_ = era;
        mapping(address => uint256) storage offences = _offences[era_][epoch_];
        uint256 offence = offences[signer];
        // A repeat is refused before the second ecrecover and any write.
        if (offence != 0 && offence <= height + 1) revert EquivocationAlreadyProven(signer);
        _requireSigner(second, signer, separator);

        offences[signer] = height + 1;
        emit EquivocationProven(signer, uint64(height), first.viewNumber, first.kind, second.kind, epoch_);
        if (offence == 0) {
            _offenders[era_][epoch_].push(signer);
            _offendingPower[era_][epoch_] += power;
        }
        _dispute(era_, epoch_, height);
    }

    /// Reverts EvidenceSignersDiffer unless `signer` signed `second` in `separator`.
    function _requireSigner(SignedVote calldata second, address signer, bytes32 separator) private pure {
        address other = _recoverEvidence(second, 1, separator);
        if (other != signer) revert EvidenceSignersDiffer(signer, other);
    }

    /// After an offence at `height` of `epoch_`: freezes at the lowest offence of that epoch
    /// once its proven power is more than a third of the epoch's total power, or lowers the
    /// disputed height of an era frozen already.
    function _dispute(uint64 era_, uint64 epoch_, uint256 height) private {
        uint256 disputedFrom = _disputedFrom[era_];
        if (disputedFrom != 0) {
            // Frozen in this era already: a lower offence lowers the disputed height.
            if (height + 1 < disputedFrom) {
                _disputedFrom[era_] = height + 1;
                emit FrozenAt(era_, uint64(height));
            }
            return;
        }
        uint256 total = uint64(_epochs[epoch_] >> 64);
        if (_offendingPower[era_][epoch_] <= (total - 1) / 3) return; // at most f: no fork possible
        address[] storage offenders = _offenders[era_][epoch_];
        mapping(address => uint256) storage offences = _offences[era_][epoch_];
        uint256 lowest = height + 1;
        for (uint256 i = 0; i < offenders.length; ++i) {
            uint256 proven = offences[offenders[i]];
            if (proven < lowest) lowest = proven;
        }
        _disputedFrom[era_] = lowest;
        emit FrozenAt(era_, uint64(lowest - 1));
        uint256 tip = _tip;
        if (tip >> FROZEN_SHIFT == 0) {
            _tip = tip | (uint256(1) << FROZEN_SHIFT);
            frozenAtBlock = uint64(block.number);
        }
    }

    /// The power of the validators of the current set (the latest post's epoch) proven in the
    /// current era, and whether it is enough to freeze (more than a third of that set's power).
    function offendingPower() external view returns (uint256 power, bool enough) {
        return offendingPowerInEpoch(epoch());
    }

    /// The power of the validators of `epoch_`'s set proven in the current era, and whether it
    /// is enough to freeze (more than a third of that set's power; false for an unknown epoch).
    function offendingPowerInEpoch(uint64 epoch_) public view returns (uint256 power, bool enough) {
        power = _offendingPower[era][epoch_];
        uint256 total = uint64(_epochs[epoch_] >> 64);
        enough = total != 0 && power > (total - 1) / 3;
    }

    /// The height a conflicting pair disputes; reverts VotesDoNotConflict for any other pair.
    function _conflictHeight(SignedVote calldata a, SignedVote calldata b) private pure returns (uint256) {
        if (a.viewNumber != b.viewNumber) revert VotesDoNotConflict();
        uint256 kinds = (uint256(a.kind) << 8) | b.kind;
        if (kinds == (VOTE_KIND_FINALIZE << 8) | VOTE_KIND_FINALIZE) {
            if (a.height == b.height && a.blockHash == b.blockHash) revert VotesDoNotConflict();
            return a.height < b.height ? a.height : b.height;
        }
        uint256 nullify = uint256(VOTE_KIND_NULLIFY);
        if (kinds == (VOTE_KIND_FINALIZE << 8) | nullify) return a.height;
        if (kinds == (nullify << 8) | VOTE_KIND_FINALIZE) return b.height;
        revert VotesDoNotConflict();
    }

    /// The signer of `vote` in `separator` (BadEvidenceSignature(index) unless it is 65 bytes,
    /// low s, v 27 or 28 and recovers a key). A signature over another chain id, contract,
    /// genesis or epoch recovers to an unrelated address: submitEvidence refuses it as
    /// EvidenceSignerNotInSet when it is the first vote's, and as EvidenceSignersDiffer when
    /// only the second vote's.
    function _recoverEvidence(SignedVote calldata vote, uint256 index, bytes32 separator)
        private
        pure
        returns (address signer)
    {
        bytes calldata signature = vote.signature;
        if (signature.length != SIGNATURE_BYTES) revert BadEvidenceSignature(index);
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > HALF_N || (v != 27 && v != 28)) revert BadEvidenceSignature(index);
        bytes32 digest = keccak256(
            abi.encodePacked(
                hex"1901",
                separator,
                keccak256(abi.encode(VOTE_TYPEHASH, vote.kind, vote.viewNumber, vote.height, vote.blockHash))
            )
        );
        signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert BadEvidenceSignature(index);
    }

    /// Lifts a freeze: the chain continues from block `fromHeight` (hash `blockHash`, state
    /// `stateRoot` at `stateHeight`) under the new set (validators, powers) as the epoch after
    /// the last installed one, signing in its own separator.
    /// Only the admin, and only `resumeDelay` L1 blocks after the freeze's first evidence. Posts
    /// of the frozen era stay disputed from its disputed height; the new era starts undisputed.
    function resume(
        uint64 fromHeight,
        bytes32 blockHash,
        uint64 stateHeight,
        bytes32 stateRoot,
        address[] calldata validators,
        uint256[] calldata powers
    ) external {
        if (admin == address(0) || msg.sender != admin) revert NotAdmin();
        uint256 tip = _tip;
        if (tip >> FROZEN_SHIFT == 0) revert NotFrozen();
        uint256 openFrom = uint256(frozenAtBlock) + resumeDelay;
        if (block.number < openFrom) revert ResumeTooEarly(openFrom);
        if ((tip >> POST_BLOCK_SHIFT) & WORD40_MASK == uint40(block.number)) revert AlreadyPostedThisBlock();
        if (fromHeight > HEIGHT_MASK || stateHeight > HEIGHT_MASK) revert HeightOutOfRange();
        uint256 last = (_set >> SET_LAST_EPOCH_SHIFT) & MAX_EPOCH;
        if (last == MAX_EPOCH) revert EpochOutOfRange();
        uint64 next = uint64(last + 1);
        // The new era's only epoch follows every installed one (the frozen era's scheduled
        // epochs end with it) and signs for the heights above the block it resumes from.
        _install(next, uint256(fromHeight) + 1, validators, powers);
        _set = uint256(next) | (uint256(next) << SET_LAST_EPOCH_SHIFT);

        uint64 nextEra = era + 1;
        era = nextEra;
        frozenAtBlock = 0;
        uint64 index = _recordResume(tip, fromHeight, stateHeight, stateRoot, next);
        emit Resumed(nextEra, fromHeight, blockHash, stateHeight, stateRoot, index);
    }

    /// Records a resume as the new era's first post (so PostRefs of the frozen era's posts are
    /// refused from now on: PostOfEndedEra) and returns its index. The tip's frozen flag clears.
    function _recordResume(uint256 tip, uint256 fromHeight, uint256 stateHeight, bytes32 stateRoot, uint256 epoch_)
        private
        returns (uint64)
    {
        uint256 index = (tip >> COUNT_SHIFT) & WORD40_MASK;
        _record(index, stateRoot, stateHeight, fromHeight);
        _tip = fromHeight | (stateHeight << HEIGHT_BITS) | (uint256(uint40(block.number)) << POST_BLOCK_SHIFT)
            | (epoch_ << EPOCH_SHIFT) | (uint256(1) << LAST_EPOCH_SHIFT) | ((index + 1) << COUNT_SHIFT)
            | (index << ERA_FIRST_SHIFT);
        return uint64(index);
    }

    // Why `_checkSignatures` stopped (0: it did not).
    uint256 private constant FAIL_MALLEABLE = 1;
    uint256 private constant FAIL_INVALID = 2;
    uint256 private constant FAIL_NOT_IN_SET = 3;
    uint256 private constant FAIL_DUPLICATE = 5;
    uint256 private constant FAIL_NOT_ASCENDING = 6;

    /// Reverts unless `signatures` are by distinct members of `epoch_`'s set, in ascending
    /// address order, holding at least the quorum of its power.
    function _requireQuorum(bytes32 digest, bytes calldata signatures, uint256 epoch_) private view {
        uint256 count;
        unchecked {
            count = signatures.length / SIGNATURE_BYTES;
        }
        if (count == 0 || signatures.length % SIGNATURE_BYTES != 0 || count > MAX_VALIDATORS) {
            revert MalformedSignatures(signatures.length);
        }
        (uint256 signed, uint256 quorum, uint256 failure, uint256 index, address signer) =
            _checkSignatures(digest, signatures, count, epoch_);
        if (failure != 0) {
            if (failure == FAIL_MALLEABLE) revert MalleableSignature(index);
            if (failure == FAIL_INVALID) revert InvalidSignature(index);
            if (failure == FAIL_NOT_IN_SET) revert SignerNotInSet(signer, uint64(epoch_));
            if (failure == FAIL_DUPLICATE) revert DuplicateSigner(signer);
            revert SignersNotAscending(index);
        }
        if (signed < quorum) revert InsufficientQuorum(signed, quorum);
    }

    /// One pass over the first `count` packed signatures: recover each signer, look
    /// it up once in `epoch_`'s set, check the order, add up the power (and read the set's
    /// quorum, which every member's entry carries). Stops at the first failure, naming it.
    /// Assembly keeps a post near the cost of its ecrecovers and storage reads.
    function _checkSignatures(bytes32 digest, bytes calldata signatures, uint256 count, uint256 epoch_)
        private
        view
        returns (uint256 signed, uint256 quorum, uint256 failure, uint256 index, address signer)
    {
        assembly ("memory-safe") {
            let input := mload(0x40) // ecrecover input: digest, v, r, s (memory past the free pointer)
            mstore(input, digest)
            // _members[epoch_] is the mapping at keccak256(epoch_ . slot); its entries at
            // keccak256(signer . that).
            mstore(0x00, epoch_)
            mstore(0x20, _members.slot)
            let entries := keccak256(0x00, 0x40)
            let previous := 0
            for { let i := 0 } lt(i, count) { i := add(i, 1) } {
                let sig := add(signatures.offset, mul(i, SIGNATURE_BYTES))
                let s := calldataload(add(sig, 32))
                if gt(s, HALF_N) {
                    failure := FAIL_MALLEABLE
                    index := i
                    break
                }
                let v := byte(0, calldataload(add(sig, 64)))
                mstore(add(input, 0x20), v)
                mstore(add(input, 0x40), calldataload(sig))
                mstore(add(input, 0x60), s)
                mstore(0x00, 0)
                // ecrecover returns nothing (0x00 stays zero) for v outside {27, 28} or no key.
                pop(staticcall(gas(), 0x01, input, 0x80, 0x00, 0x20))
                signer := mload(0x00)
                if iszero(signer) {
                    failure := FAIL_INVALID
                    index := i
                    break
                }
                mstore(0x00, signer)
                mstore(0x20, entries)
                let member := sload(keccak256(0x00, 0x40))
                if iszero(member) {
                    failure := FAIL_NOT_IN_SET
                    index := i
                    break
                }
                if iszero(gt(signer, previous)) {
                    failure := FAIL_NOT_ASCENDING
                    if eq(signer, previous) { failure := FAIL_DUPLICATE }
                    index := i
                    break
                }
                previous := signer
                signed := add(signed, and(member, 0xffffffffffffffff))
                quorum := shr(64, member)
            }
        }
    }

    // --- views -------------------------------------------------------------------------------

    function latestHeight() external view returns (uint64) {
        return uint64(_tip & HEIGHT_MASK);
    }

    function latestStateHeight() external view returns (uint64) {
        return uint64((_tip >> HEIGHT_BITS) & HEIGHT_MASK);
    }

    function lastPostBlock() external view returns (uint64) {
        return uint64(uint40(_tip >> POST_BLOCK_SHIFT));
    }

    /// The epoch of the latest post's height (before an era's first post: the era's first
    /// epoch). Heights above it may belong to later epochs (`epochOf`).
    function epoch() public view returns (uint64) {
        return uint64((_tip >> EPOCH_SHIFT) & MAX_EPOCH);
    }

    function latestStateRoot() external view returns (bytes32) {
        if ((_tip >> COUNT_SHIFT) & WORD40_MASK == 0) return bytes32(0);
        return _latestRoot;
    }

    /// Posts (and resumes) so far; the latest has index postCount() - 1.
    function postCount() public view returns (uint64) {
        return uint64((_tip >> COUNT_SHIFT) & WORD40_MASK);
    }

    /// The index of the current era's first post (0 before any resume).
    function eraFirstPost() external view returns (uint64) {
        return uint64((_tip >> ERA_FIRST_SHIFT) & WORD40_MASK);
    }

    /// The latest post and the state around it, from one read of the contract: one call is
    /// answered from one state, so every field belongs to the same latest post (separate view
    /// calls may each see a different one when a post lands between them). `ref` is the latest
    /// post's PostRef (all zeros while `count` is 0), `count` is postCount(), and the rest are
    /// lastPostBlock(), epoch(), eraFirstPost(), era(), frozen() and disputedHeight(era()).
    function latestPost()
        external
        view
        returns (
            PostRef memory ref,
            uint64 count,
            uint64 postBlock,
            uint64 epoch_,
            uint64 firstPost,
            uint64 era_,
            bool frozen_,
            bool disputed,
            uint64 disputedAt
        )
    {
        uint256 tip = _tip;
        count = uint64((tip >> COUNT_SHIFT) & WORD40_MASK);
        if (count != 0) {
            ref = PostRef(
                count - 1, _latestRoot, uint64((tip >> HEIGHT_BITS) & HEIGHT_MASK), uint64(tip & HEIGHT_MASK)
            );
        }
        postBlock = uint64(uint40(tip >> POST_BLOCK_SHIFT));
        epoch_ = uint64((tip >> EPOCH_SHIFT) & MAX_EPOCH);
        firstPost = uint64((tip >> ERA_FIRST_SHIFT) & WORD40_MASK);
        era_ = era;
        frozen_ = tip >> FROZEN_SHIFT != 0;
        uint256 from = _disputedFrom[era_];
        disputed = from != 0;
        if (disputed) disputedAt = uint64(from - 1);
    }

    /// Checks that `ref` is one of the last HISTORY posts, of the current era, exactly as it
    /// was recorded, and returns the current era, whether the post covers its disputed height
    /// and whether it is the latest post. Reverts PostNotMade (no post of that index yet),
    /// PostEvicted (HISTORY or more posts came after it), PostOfEndedEra (posted before the
    /// last resume) or PostMismatch (the root or a height differs from the record).
    function checkPost(PostRef calldata ref) external view returns (uint64 era_, bool disputed, bool latest) {
        uint256 tip = _tip;
        uint256 count = (tip >> COUNT_SHIFT) & WORD40_MASK;
        uint256 index = ref.index;
        if (index >= count) revert PostNotMade(uint64(index), uint64(count));
        if (count - index > HISTORY) revert PostEvicted(uint64(index), uint64(count));
        uint256 first = (tip >> ERA_FIRST_SHIFT) & WORD40_MASK;
        if (index < first) revert PostOfEndedEra(uint64(index), uint64(first));
        if (_posts[index & HISTORY_MASK] != keccak256(abi.encode(ref.stateRoot, ref.stateHeight, ref.height))) {
            revert PostMismatch(uint64(index));
        }
        era_ = era;
        uint256 from = _disputedFrom[era_];
        disputed = from != 0 && uint256(ref.height) + 1 >= from;
        latest = index + 1 == count;
    }

    /// Whether equivocation was proven and no resume has lifted the freeze yet.
    function frozen() external view returns (bool) {
        return _tip >> FROZEN_SHIFT != 0;
    }

    /// The disputed height of `era_` (posts of that era covering a height >= it are disputed).
    function disputedHeight(uint64 era_) external view returns (bool disputed, uint64 height) {
        uint256 from = _disputedFrom[era_];
        if (from == 0) return (false, 0);
        return (true, uint64(from - 1));
    }

    /// Whether a post of `era_` at `height` covers a disputed height.
    function isDisputed(uint64 era_, uint64 height) external view returns (bool) {
        uint256 from = _disputedFrom[era_];
        return from != 0 && uint256(height) + 1 >= from;
    }

    /// Whether `validator`'s equivocation as a member of the current set was proven in the
    /// current era, and the lowest height its evidence disputes.
    function offenceOf(address validator) external view returns (bool proven, uint64 height) {
        return offenceOfInEpoch(validator, epoch());
    }

    /// Whether `validator`'s equivocation as a member of `epoch_`'s set was proven in the
    /// current era, and the lowest height its evidence disputes.
    function offenceOfInEpoch(address validator, uint64 epoch_) public view returns (bool proven, uint64 height) {
        uint256 offence = _offences[era][epoch_][validator];
        if (offence == 0) return (false, 0);
        return (true, uint64(offence - 1));
    }

    /// The last epoch scheduled (the constructor's schedule, or a resume's).
    function lastEpoch() public view returns (uint64) {
        return uint64((_set >> SET_LAST_EPOCH_SHIFT) & MAX_EPOCH);
    }

    /// The first height `epoch_`'s set signs for, and the L1 block that installed it (its
    /// ValidatorSetInstalled event is there; 0 while a scheduled epoch waits for
    /// `installEpoch`). UnknownValidatorSet for an epoch not scheduled.
    function epochStart(uint64 epoch_) external view returns (uint64 fromHeight, uint64 l1Block) {
        if (epoch_ > lastEpoch()) revert UnknownValidatorSet(epoch_);
        uint256 record = _epochs[epoch_];
        return (uint64(record), uint64(record >> 128));
    }

    /// validatorSetHash of `epoch_`'s set (zero for an epoch not installed yet).
    function setHashOf(uint64 epoch_) external view returns (bytes32) {
        return _setHashes[epoch_];
    }

    /// The epoch of the current era whose set signs for `height`: the last one whose first
    /// height is at most `height` (first heights rise within an era). None for a height below
    /// the era's first epoch's first height.
    function epochOf(uint64 height) public view returns (bool found, uint64 epoch_) {
        uint256 set = _set;
        uint256 first = set & MAX_EPOCH;
        if (height < _epochs[uint64(first)] & WORD64_MASK) return (false, 0);
        return (true, uint64(_lastEpochFrom(first, (set >> SET_LAST_EPOCH_SHIFT) & MAX_EPOCH, height)));
    }

    /// The total power of the current set (the latest post's epoch).
    function totalPower() external view returns (uint256) {
        return uint64(_epochs[epoch()] >> 64);
    }

    /// The quorum of the current set (the latest post's epoch): floor(2 * total / 3) + 1.
    function quorumPower() external view returns (uint256) {
        return uint64(_epochs[epoch()] >> 64) * 2 / 3 + 1;
    }

    /// The power of `validator` in the current set (zero if it is not in it).
    function powerOf(address validator) external view returns (uint256) {
        return powerOfInEpoch(validator, epoch());
    }

    /// The power of `validator` in `epoch_`'s set (zero if it is not in it, or no such epoch).
    function powerOfInEpoch(address validator, uint64 epoch_) public view returns (uint256) {
        return uint64(_members[epoch_][validator]);
    }
}
