"""Checking a subscription's block messages: the sans-I/O verifier.

A node's subscription (`/v1/subscribe/blocks`, docs/rollups.md) sends one JSON
message per finalized block: the block header fields, the raw payload, the
finalization certificate, one namespace's transactions and a namespace proof.
`BlockVerifier.verify` trusts none of it. For each message, in order, it checks

    shape        every field present, of its type, within its bound; hex is
                 `0x` + an even number of hex digits, lengths checked before
                 decoding
    sequence     the height is the next one expected (no gap, no duplicate) and
                 the parent is the previous verified block's digest
    digest       block_hash(view, height, parent, payload, proposer) recomputed
                 here (a `hash` field, if sent, must match it)
    certificate  a FINALIZE certificate for that digest, height and view,
                 signed by a quorum of the validator set of the block's
                 epoch in that epoch's signing domain; or, for a block
                 finalized under a descendant's certificate, the
                 `finalized_by` proof: its chain of headers runs from the
                 block's child up, one height at a time, each header's parent
                 the digest of the one below (recomputed from the header,
                 `block_header_hash`), and its certificate is such a
                 certificate of the top header's digest, height and view.
                 A chain that climbs above the last height of the block's
                 epoch climbs through that epoch's tail: every header up
                 there has an empty payload, and the certificate is still
                 the block's epoch's (see "Epochs" below)
    payload      decodes (`sequencer_net.payload.decode_payload`); its
                 namespace_root, state root and timestamp are now certified
    namespace    each transaction decodes and is in the subscribed namespace;
                 `namespaces.verify_namespace(namespace_root, N, hashes, proof)`
                 shows they are all of the namespace's transactions, in order
    order        on a chain with a threshold key: the message's `order` holds
                 the block's order seed and exactly t coin shares;
                 `verify_order_seed` checks each share's proof against the
                 verification key of its index in the key of the block's
                 epoch, on order_seed_tag(chain id, height, digest), combines
                 them, and the result must be the seed sent. The namespace's
                 execution order follows from the seed, the payload's forced
                 marks and each transaction's sender (`execution_order`).
                 A block that drew no seed (fairness/order.py
                 `needs_order_seed`: no envelope, at most one non-forced
                 sender) comes with `order` null: accepted only if the
                 namespace's non-forced transactions come from one sender
                 at most, so its order is the same for every seed
                 (`seedless_execution_order`); otherwise refused

and returns a `VerifiedBlock`, or raises `SubscriptionVerificationError`
naming the height and the first check that failed. Pure: no I/O, no clock.

Epochs. What the verifier trusts is the genesis: its validator-set schedule
(`consensus.epochs.EpochSchedule`: which set finalizes which heights) and its
signing domain. They must come from outside the node being checked (a
genesis file the user holds, or one checked against a genesis digest the
user pins). A block at height h belongs to epoch e = `schedule.epoch_of(h)`;
its certificate must be a quorum of epoch e's set signed in epoch e's domain
(`epoch_domain_separator(chain separator, e)`; epoch 0's is the chain's own),
so a certificate of another epoch's set or domain is refused even where the
sets overlap.

The last blocks of an epoch may be committed only through the epoch's tail:
empty blocks above its last height L, certified by the epoch's own set and
never committed (docs/consensus.md, "Validator-set epochs"). Their
`finalized_by` chain then runs up past L, and the rule for it is: above L
every header has an empty payload, and the certificate is checked in the
delivered block's epoch. That refuses a chain that crosses the boundary the
other way, a later epoch's certificate over a later epoch's blocks vouching
for an earlier epoch's block: epoch e+1's first blocks are not epoch e's
tail, a non-empty one fails the payload rule, and an empty one is certified,
if at all, in epoch e+1's domain, which does not verify in epoch e's. Epoch
e's honest validators vote only for empty blocks above L, so a quorum of
them vouches for no other chain there.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from consensus.crypto import keccak256
from consensus.encoding import Domain, block_hash, block_header_hash, payload_hash
from consensus.epochs import Epoch, EpochSchedule, epoch_domain_separator
from consensus.limits import MAX_EPOCH_TAIL_BLOCKS, MAX_FINALITY_CHAIN
from consensus.messages import Certificate, VoteKind
from consensus.types import Digest, Height, ValidatorIndex, ValidatorSet, View
from consensus.verifier import SignatureVerifier
from sequencer_net.fairness.limits import MAX_SHAREHOLDERS
from sequencer_net.fairness.order import needs_order_seed, order_block, order_seed_tag
from sequencer_net.fairness.order_proof import OrderProofError, verify_order_seed
from sequencer_net.fairness.tdh2 import CoinShare, PublicKeySet
from sequencer_net.mempool.encrypted import decode_encrypted, is_encrypted, transaction_namespace
from sequencer_net.mempool.transaction import InvalidTransaction, decode_transaction, recover_sender
from sequencer_net.payload import MalformedPayload, decode_payload
from sequencer_net.payload import namespaces as ns

MAX_U64: Final = 2**63 - 1
MAX_NAMESPACE: Final = ns.MAX_NAMESPACE
MAX_SIGNERS: Final = 1024
"""At most one signature per validator (consensus.limits.MAX_VALIDATORS)."""
MAX_PAYLOAD_HEX_BYTES: Final = 1024 * 1024
"""The largest consensus payload (consensus.limits.MAX_PAYLOAD_BYTES)."""
MAX_TRANSACTIONS: Final = 1024 * 8192
"""Transactions of one namespace in one block: batches per block x
transactions per batch. The transport's message-size cap bounds it first."""
MAX_TX_HEX_BYTES: Final = 32 * 1024 + 128
"""One encoded signed transaction (sequencer_net.mempool.limits.MAX_TX_BYTES)."""
MAX_TABLE_SIZE: Final = 2**32
"""Entries of a namespace table: at most one per namespace."""
MAX_PENDING_ORDERS: Final = 256
"""Blocks verified but still waiting for their order message. A node sends a
block's order as soon as it knows it, a round of coin shares after commit, so
only a few are ever pending; more means the node withholds them."""
CACHED_EPOCH_VERIFIERS: Final = 2
"""Epochs whose signature memo is kept: a subscription moves forward through
epochs, so the current one and the one before suffice."""
EMPTY_PAYLOAD_HASH: Final = payload_hash(b"")
"""The payload hash of an epoch's tail block (an empty payload)."""

_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


class SubscriptionVerificationError(Exception):
    """A subscription message failed a check: `height` (None if the message
    did not get that far) and `reason` say which block and which check."""

    def __init__(self, height: int | None, reason: str) -> None:
        where = f"block {height}" if height is not None else "a subscription message"
        super().__init__(f"{where}: {reason}")
        self.height = height
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VerifiedBlock:
    """A finalized block's header and the subscribed namespace's transactions,
    every field checked against the validators' finalization certificate."""

    height: int
    view: int
    hash: bytes  # the block digest the certificate signs
    parent: bytes
    proposer: int
    timestamp_ms: int
    state_height: int  # the executed height whose root the block vouches for
    state_root: bytes
    namespace_root: bytes
    namespace: int
    transactions: tuple[bytes, ...]  # encoded signed transactions, block order
    tx_hashes: tuple[bytes, ...]  # keccak256 of each
    certificate: Certificate
    """The finalization checked: the block's own, or its descendant's."""
    finalized_by: int | None = None
    """The height of the descendant whose certificate (and the header chain
    down from it) finalizes this block; None when the certificate is its own.
    Above the last height of the block's epoch it is a tail block's."""
    epoch: int = 0
    """The validator-set epoch of the block: its set and domain signed `certificate`."""
    ordered_transactions: tuple[bytes, ...] | None = None
    """The namespace's transactions in the order the chain executes them: the
    block's forced ones first (in the payload's forced marks' order), then by
    sender, senders ranked by keccak(order_seed || sender), each sender's in
    block order (fairness/order.py `order_block`). On a chain without a
    threshold key, forced first and then block order. None when the message
    carries an order this verifier holds no key to check (built without the
    chain's threshold keys: use `from_genesis`)."""
    order_seed: bytes | None = None
    """The block's order seed, verified from its t coin shares; None on a chain
    without a threshold key, and for a block that drew none (its namespace's
    order is then the same for every seed)."""
    order_pending: bool = False
    """Inclusion verified, order not yet: the block message came before its
    order was known (a verifier with `order_later`); the order message that
    follows gives the same block with `ordered_transactions` and
    `order_seed`."""


# --- shape checks ---------------------------------------------------------------------


class _Shape(Exception):
    """A field missing or out of shape; `verify` adds the height."""


def _field(obj: Mapping[str, Any], key: str) -> Any:
    if key not in obj:
        raise _Shape(f"missing field {key!r}")
    return obj[key]


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Shape(f"{what} is not a JSON object")
    return value


def _int(obj: Mapping[str, Any], key: str, low: int = 0, high: int = MAX_U64) -> int:
    value = _field(obj, key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Shape(f"{key!r} is not an integer in {low}..{high}")
    return value


def _hex(value: Any, what: str, *, length: int | None = None, max_length: int = 32) -> bytes:
    """`0x` hex of exactly `length` bytes, or at most `max_length`; the string's
    length is checked before it is matched or decoded."""
    limit = length if length is not None else max_length
    if not isinstance(value, str) or len(value) > 2 + 2 * limit:
        raise _Shape(f"{what} is not 0x hex of at most {limit} bytes")
    if _HEX.fullmatch(value) is None:
        raise _Shape(f"{what} is not 0x followed by an even number of hex digits")
    data = bytes.fromhex(value[2:])
    if length is not None and len(data) != length:
        raise _Shape(f"{what} is not {length} bytes")
    return data


def _list(value: Any, what: str, max_length: int) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_length:
        raise _Shape(f"{what} is not a list of at most {max_length} items")
    return value


def parse_certificate(value: Any) -> Certificate:
    obj = _object(value, "certificate")
    signers = _list(_field(obj, "signers"), "certificate signers", MAX_SIGNERS)
    signatures = _list(_field(obj, "signatures"), "certificate signatures", MAX_SIGNERS)
    indices = []
    for signer in signers:
        if isinstance(signer, bool) or not isinstance(signer, int) or not 0 <= signer < MAX_SIGNERS:
            raise _Shape("a certificate signer is not a validator index")
        indices.append(signer)
    return Certificate(
        kind=_int(obj, "kind", 1, 3),
        view=_int(obj, "view"),
        height=_int(obj, "height"),
        block=_hex(_field(obj, "block"), "certificate block", length=32),
        signers=indices,
        signatures=[_hex(s, "a certificate signature", length=65) for s in signatures],
    )


@dataclass(frozen=True, slots=True)
class _Header:
    view: int
    height: int
    parent: bytes
    proposer: int
    payload_hash: bytes

    def digest(self) -> bytes:
        return block_header_hash(
            View(self.view),
            Height(self.height),
            Digest(self.parent),
            self.payload_hash,
            ValidatorIndex(self.proposer),
        )


def _parse_header(value: Any) -> _Header:
    obj = _object(value, "a finalized_by chain header")
    return _Header(
        view=_int(obj, "view", 1),
        height=_int(obj, "height", 1),
        parent=_hex(_field(obj, "parent"), "a chain header's parent", length=32),
        proposer=_int(obj, "proposer", 0, MAX_SIGNERS - 1),
        payload_hash=_hex(_field(obj, "payload_hash"), "a chain header's payload_hash", length=32),
    )


def parse_finalized_by(
    value: Any, max_chain: int = MAX_FINALITY_CHAIN
) -> tuple[Certificate, list[_Header]]:
    """A descendant proof's certificate and chain (descendant first), of at most
    `max_chain` headers (checked before any is parsed)."""
    obj = _object(value, "finalized_by")
    certificate = parse_certificate(_field(obj, "certificate"))
    chain = _list(_field(obj, "chain"), "the finalized_by chain", max_chain)
    return certificate, [_parse_header(h) for h in chain]


def _entry_proof(value: Any, what: str) -> ns.EntryProof | None:
    if value is None:
        return None
    obj = _object(value, what)
    entry = _object(_field(obj, "entry"), f"{what} entry")
    path = _list(_field(obj, "path"), f"{what} path", ns.MAX_PROOF_HASHES)
    return ns.EntryProof(
        index=_int(obj, "index", 0, MAX_TABLE_SIZE),
        entry=ns.TableEntry(
            namespace=_int(entry, "namespace", 0, MAX_NAMESPACE),
            count=_int(entry, "count", 1, MAX_TRANSACTIONS),
            root=_hex(_field(entry, "root"), f"{what} entry root", length=32),
        ),
        path=[_hex(h, f"a {what} path hash", length=32) for h in path],
    )


def parse_order(value: Any) -> tuple[bytes, list[CoinShare]]:
    """A message's `order`: the seed and its coin shares (at most one per
    shareholder; the count is `verify_order_seed`'s to check)."""
    obj = _object(value, "order")
    seed = _hex(_field(obj, "seed"), "the order seed", length=32)
    shares = []
    for item in _list(_field(obj, "shares"), "the order shares", MAX_SHAREHOLDERS):
        share = _object(item, "an order share")
        shares.append(
            CoinShare(
                index=_int(share, "index", 1, MAX_SHAREHOLDERS),
                value=_hex(_field(share, "value"), "an order share value", length=33),
                e=_hex(_field(share, "e"), "an order share e", length=32),
                f=_hex(_field(share, "f"), "an order share f", length=32),
            )
        )
    return seed, shares


@dataclass(frozen=True, slots=True)
class _Sent:
    """A namespace transaction as ordering sees it."""

    encoded: bytes
    tx_hash: bytes
    sender: bytes


def transaction_sender(encoded: bytes, domain: Domain) -> bytes | None:
    """Who sent a transaction, as ordering knows it: a plain transaction's
    signer (recovered over the chain's domain), an encrypted one's envelope
    `sender` (in the clear; the validators checked its signature before they
    voted). None if a plain transaction's signature does not recover (the
    engine skips such a transaction; a finalized block holds none unless more
    than f validators are faulty)."""
    try:
        if is_encrypted(encoded):
            return bytes(decode_encrypted(encoded).sender)
        return bytes(recover_sender(decode_transaction(encoded), domain))
    except InvalidTransaction:
        return None


def execution_order(
    seed: bytes | None,
    forced: Sequence[bytes],
    transactions: Sequence[bytes],
    tx_hashes: Sequence[bytes],
    domain: Domain,
) -> tuple[bytes, ...]:
    """A namespace's transactions (block order) in the order the chain executes
    them (node/commit.py `split_forced` then `order_block`, restricted to the
    namespace): those whose hash `forced` (the payload's forced marks) names
    first, in the marks' order, then the rest by `order_block(seed, ...)`.
    Restricting the block's order to one namespace keeps its relative order,
    because the order depends only on marks, senders and block positions.
    `seed` None: a chain without a threshold key (block order)."""
    first, rest = _split_forced(forced, transactions, tx_hashes, domain, seed is not None)
    return tuple(item.encoded for item in order_block(seed, first, rest))


def seedless_execution_order(
    forced: Sequence[bytes],
    transactions: Sequence[bytes],
    tx_hashes: Sequence[bytes],
    domain: Domain,
) -> tuple[bytes, ...] | None:
    """As `execution_order` for a block that drew no order seed on a chain with
    a threshold key: the namespace's execution order if it is the same for
    every seed (its non-forced transactions come from one sender at most,
    fairness/order.py `needs_order_seed`), else None: the namespace's order
    needs the seed, and a block sent without one is refused.

    A subscriber sees one namespace, not the whole block, so it cannot tell
    whether the whole block needed a seed; it needs not: its own namespace's
    order is what it derives, and that is proven the same for every seed."""
    first, rest = _split_forced(forced, transactions, tx_hashes, domain, True)
    if needs_order_seed(False, rest):
        return None
    return tuple(item.encoded for item in order_block(None, first, rest))


def _split_forced(
    forced: Sequence[bytes],
    transactions: Sequence[bytes],
    tx_hashes: Sequence[bytes],
    domain: Domain,
    with_senders: bool,
) -> tuple[list[_Sent], list[_Sent]]:
    """(forced, rest) of a namespace's transactions: those `forced` names, in
    its order, then the others in block order. `with_senders`: each with its
    sender, those whose sender does not recover left out (the engine skips
    them); else all, senders not looked at (a chain without a threshold key)."""
    if not with_senders:
        items = [_Sent(tx, h, b"") for tx, h in zip(transactions, tx_hashes, strict=True)]
    else:
        items = []
        for tx, h in zip(transactions, tx_hashes, strict=True):
            sender = transaction_sender(tx, domain)
            if sender is not None:
                items.append(_Sent(tx, h, sender))
    by_hash = {item.tx_hash: item for item in items}
    first: list[_Sent] = []
    taken: set[bytes] = set()
    for mark in forced:
        found = by_hash.get(mark)
        if found is None or mark in taken:
            continue
        taken.add(mark)
        first.append(found)
    rest = [item for item in items if item.tx_hash not in taken]
    return first, rest


def parse_namespace_proof(value: Any) -> ns.NamespaceProof:
    obj = _object(value, "proof")
    return ns.NamespaceProof(
        namespace=_int(obj, "namespace", 0, MAX_NAMESPACE),
        size=_int(obj, "size", 0, MAX_TABLE_SIZE),
        present=_entry_proof(obj.get("present"), "present"),
        below=_entry_proof(obj.get("below"), "below"),
        above=_entry_proof(obj.get("above"), "above"),
    )


# --- the verifier -------------------------------------------------------------------


class BlockVerifier:
    """Verifies one subscription's messages in order, from `from_height`.

    `validators` (one set for the whole chain, or the genesis's
    `EpochSchedule`) and `domain` are trusted inputs (`from_genesis`).
    `verify` advances `next_height` only when a block passes every check, so
    after a reconnect the subscription resumes from `next_height` with no gap
    and no duplicate.
    """

    def __init__(
        self,
        validators: ValidatorSet | EpochSchedule,
        domain: Domain,
        namespace: int,
        from_height: int = 1,
        *,
        order_keys: Mapping[int, PublicKeySet] | None = None,
        order_later: bool = False,
    ) -> None:
        """`order_keys`: the chain's threshold key of each epoch, by epoch
        number (a trusted input, like the validators); None on a chain without
        a threshold key. `order_later`: accept a block message without its
        order (then `order_pending`), the order coming in a later
        `{"type": "order"}` message; without it such a message is refused."""
        if not 0 <= namespace <= MAX_NAMESPACE:
            raise ValueError("a namespace is a uint32")
        if not 1 <= from_height <= MAX_U64:
            raise ValueError("from_height is at least 1")
        if isinstance(validators, EpochSchedule):
            self.schedule = validators
        else:
            self.schedule = EpochSchedule([Epoch(0, Height(1), validators)])
        self.validators = self.schedule.epoch(0).validators
        """Epoch 0's set (the only one of a chain that never rotates)."""
        self.domain = domain
        self.namespace = namespace
        self.next_height = from_height
        self.last_hash: bytes | None = None  # digest of block next_height - 1, once verified
        self._chain_separator = domain.separator()
        self._signatures: dict[int, SignatureVerifier] = {}
        self.order_later = order_later
        self.pending: deque[VerifiedBlock] = deque()
        """Blocks verified without their order, lowest first."""
        self._delivered: dict[int, bytes] = {}
        self._forced: dict[int, list[bytes]] = {}
        """The payload's forced marks of each pending block (they order it)."""
        """Digests of pending blocks a reconnect sends again (`rewind`)."""
        self.order_keys = dict(order_keys) if order_keys is not None else None
        if self.order_keys is not None:
            missing = [e for e in range(len(self.schedule)) if e not in self.order_keys]
            if missing:
                raise ValueError(f"no threshold key for epochs {missing}")

    @classmethod
    def from_genesis(cls, genesis: Any, namespace: int, from_height: int = 1) -> BlockVerifier:
        """Trust the validator-set schedule, domain and threshold keys of a
        `Genesis` (`sequencer_net.home.genesis.load_genesis(path)`)."""
        schedule = genesis.schedule()
        order_keys = None
        # Anything with `schedule()` and `domain()` will do; one without a
        # `threshold` is a chain without a threshold key.
        if getattr(genesis, "threshold", None) is not None:
            order_keys = {e: genesis.epoch_threshold(e).key_set() for e in range(len(schedule))}
        return cls(schedule, genesis.domain(), namespace, from_height, order_keys=order_keys)

    def order_key(self, epoch: int) -> PublicKeySet | None:
        """The threshold key that draws the order seeds of `epoch`'s blocks."""
        return None if self.order_keys is None else self.order_keys[epoch]

    def validators_for(self, height: int) -> ValidatorSet:
        """The set that finalizes `height`: its epoch's."""
        return self.schedule.validators_for(height)

    def epoch_separator(self, epoch: int) -> bytes:
        """The signing domain separator of `epoch`'s votes and certificates."""
        return epoch_domain_separator(self._chain_separator, epoch)

    def _signatures_of(self, epoch: int) -> SignatureVerifier:
        found = self._signatures.get(epoch)
        if found is None:
            while len(self._signatures) >= CACHED_EPOCH_VERIFIERS:
                del self._signatures[next(iter(self._signatures))]
            found = SignatureVerifier(self.epoch_separator(epoch), max_entries=4096)
            self._signatures[epoch] = found
        return found

    def resume_height(self) -> int:
        """The lowest height not verified whole (block and order)."""
        return self.pending[0].height if self.pending else self.next_height

    def rewind(self) -> None:
        """Before a reconnect: resume from `resume_height`, where the node sends
        the pending blocks again; each must be the block verified before (the
        same digest), its order still to come."""
        if not self.pending:
            return
        first = self.pending[0]
        self._delivered = {b.height: b.hash for b in self.pending}
        self.pending.clear()
        self._forced.clear()
        self.next_height = first.height
        self.last_hash = first.parent

    def verify(self, message: Any) -> VerifiedBlock:
        """Check one `{"type": "block", ...}` message (already JSON-decoded), or,
        with `order_later`, one `{"type": "order", ...}` message: the latter
        returns the pending block it completes."""
        height: int | None = None
        try:
            obj = _object(message, "the message")
            kind = obj.get("type")
            if kind == "order" and self.order_later:
                height = _int(obj, "height", 1)
                return self._verify_order(obj, height)
            if kind != "block":
                raise _Shape(f"type is {str(kind)[:32]!r}, not 'block'")
            height = _int(obj, "height", 1)
            return self._verify(obj, height)
        except _Shape as exc:
            raise SubscriptionVerificationError(height, f"malformed message: {exc}") from None

    def _verify_order(self, obj: Mapping[str, Any], height: int) -> VerifiedBlock:
        """An order message: for the lowest pending block, its seed proven by t
        coin shares under the key of the block's epoch on the block's own
        order_seed_tag; returns that block with its execution order."""
        if not self.pending or self.pending[0].height != height:
            expected = self.pending[0].height if self.pending else None
            raise SubscriptionVerificationError(
                height,
                "an order message for a height not awaiting one"
                + (f" (height {expected} is next)" if expected is not None else ""),
            )
        block = self.pending[0]
        order_key = self.order_key(block.epoch)
        assert order_key is not None  # pending only on a chain with a threshold key
        seed: bytes | None = None
        if _field(obj, "order") is None:
            ordered = self._seedless_order(
                height, self._forced[height], block.transactions, block.tx_hashes
            )
        else:
            seed = self._check_order(parse_order(obj["order"]), order_key, height, block.hash)
            ordered = execution_order(
                seed, self._forced[height], block.transactions, block.tx_hashes, self.domain
            )
        del self._forced[height]
        self.pending.popleft()
        return replace(block, ordered_transactions=ordered, order_seed=seed, order_pending=False)

    def _seedless_order(
        self,
        height: int,
        forced: Sequence[bytes],
        transactions: Sequence[bytes],
        tx_hashes: Sequence[bytes],
    ) -> tuple[bytes, ...]:
        """The execution order of a block sent as drawing no seed (`order`
        null); refused unless the namespace's order is the same for every seed."""
        ordered = seedless_execution_order(forced, transactions, tx_hashes, self.domain)
        if ordered is None:
            raise SubscriptionVerificationError(
                height,
                "the block comes without an order seed, but the namespace's transactions "
                "of two senders or more need one",
            )
        return ordered

    def _check_order(
        self,
        order: tuple[bytes, list[CoinShare]],
        order_key: PublicKeySet,
        height: int,
        digest: bytes,
    ) -> bytes:
        """The seed sent, once its t shares prove it for the block `digest`."""
        seed, shares = order
        tag = order_seed_tag(self.domain.chain_id, height, digest)
        try:
            proven = verify_order_seed(tag, shares, order_key)
        except OrderProofError as exc:
            raise SubscriptionVerificationError(height, f"order proof: {exc}") from None
        if proven != seed:
            raise SubscriptionVerificationError(
                height, "order proof: the seed sent is not the one its shares prove"
            )
        return seed

    def _verify(self, obj: Mapping[str, Any], height: int) -> VerifiedBlock:
        def fail(reason: str) -> SubscriptionVerificationError:
            return SubscriptionVerificationError(height, reason)

        if height != self.next_height:
            raise fail(f"expected height {self.next_height} next (a gap or a repeat)")
        block = _object(_field(obj, "block"), "block")
        view = _int(block, "view", 1)
        if _int(block, "height", 1) != height:
            raise fail("the block's height is not the message's")
        parent = _hex(_field(block, "parent"), "block parent", length=32)
        proposer = _int(block, "proposer", 0, MAX_SIGNERS - 1)
        payload_bytes = _hex(
            _field(block, "payload"), "block payload", max_length=MAX_PAYLOAD_HEX_BYTES
        )
        namespace = _int(obj, "namespace", 0, MAX_NAMESPACE)
        if namespace != self.namespace:
            raise fail(f"the message is for namespace {namespace}, not {self.namespace}")
        encoded_txs = [
            _hex(tx, "a transaction", max_length=MAX_TX_HEX_BYTES)
            for tx in _list(_field(obj, "transactions"), "transactions", MAX_TRANSACTIONS)
        ]
        epoch = self.schedule.epoch_of(height)
        last_height = self.schedule.last_height(epoch.number)
        own = _field(obj, "certificate")
        chain: list[_Header] | None = None
        if own is None:
            certificate, chain = parse_finalized_by(
                _field(obj, "finalized_by"), _chain_limit(height, last_height)
            )
        else:
            certificate = parse_certificate(own)
        proof = parse_namespace_proof(_field(obj, "proof"))
        order_key = self.order_key(epoch.number)
        order: tuple[bytes, list[CoinShare]] | None = None
        later = False
        seedless = False
        if order_key is not None:
            if obj.get("order") is not None:
                order = parse_order(obj["order"])
            elif "order" in obj:
                seedless = True  # `order` null: the block drew no seed
            elif not self.order_later:
                raise fail("the message carries no order proof (the chain has a threshold key)")
            elif len(self.pending) >= MAX_PENDING_ORDERS:
                raise fail(f"{MAX_PENDING_ORDERS} blocks already wait for their order")
            else:
                later = True

        digest = block_hash(
            View(view), Height(height), Digest(parent), payload_bytes, ValidatorIndex(proposer)
        )
        if "hash" in block and _hex(block["hash"], "block hash", length=32) != digest:
            raise fail("the block hash sent is not the digest of the block's fields")
        if self.last_hash is not None and parent != self.last_hash:
            raise fail("the parent is not the previous block's digest")
        delivered = self._delivered.pop(height, None)
        if delivered is not None and delivered != digest:
            raise fail("another block than the one verified at this height before")
        if chain is None:
            self._check_certificate(certificate, digest, height, view, epoch.number, fail)
        else:
            self._check_descendant_finality(
                certificate, chain, digest, height, epoch.number, last_height, fail
            )

        try:
            payload = decode_payload(payload_bytes)
        except MalformedPayload as exc:
            raise fail(f"the certified payload does not decode: {exc}") from None
        tx_hashes = [keccak256(tx) for tx in encoded_txs]
        for index, tx in enumerate(encoded_txs):
            try:
                tx_namespace = transaction_namespace(tx)
            except InvalidTransaction as exc:
                raise fail(f"transaction {index} does not decode: {exc}") from None
            if tx_namespace != self.namespace:
                raise fail(f"transaction {index} is in namespace {tx_namespace}")
        try:
            ns.verify_namespace(payload.namespace_root, self.namespace, tx_hashes, proof)
        except ns.InvalidNamespaceProof as exc:
            raise fail(f"namespace proof: {exc}") from None

        seed = None
        if order is not None:
            assert order_key is not None
            seed = self._check_order(order, order_key, height, digest)
        ordered: tuple[bytes, ...] | None = None
        if seedless:
            forced = [m.tx_hash for m in payload.forced]
            ordered = self._seedless_order(height, forced, encoded_txs, tx_hashes)
        elif order is not None or (obj.get("order") is None and not later):
            ordered = execution_order(
                seed, [m.tx_hash for m in payload.forced], encoded_txs, tx_hashes, self.domain
            )

        self.next_height = height + 1
        self.last_hash = digest
        verified = VerifiedBlock(
            height=height,
            view=view,
            hash=digest,
            parent=parent,
            proposer=proposer,
            timestamp_ms=payload.timestamp_ms,
            state_height=payload.state_height,
            state_root=payload.state_root,
            namespace_root=payload.namespace_root,
            namespace=self.namespace,
            transactions=tuple(encoded_txs),
            tx_hashes=tuple(tx_hashes),
            certificate=certificate,
            finalized_by=None if chain is None else certificate.height,
            epoch=epoch.number,
            ordered_transactions=ordered,
            order_seed=seed,
            order_pending=later,
        )
        if later:
            self.pending.append(verified)
            self._forced[height] = [m.tx_hash for m in payload.forced]
        return verified

    def _check_descendant_finality(
        self,
        cert: Certificate,
        chain: list[_Header],
        digest: bytes,
        height: int,
        epoch: int,
        last_height: int | None,
        fail: Any,
    ) -> None:
        """`chain` (descendant first) links the block of `digest` at `height` to
        the block `cert` finalizes: from the bottom, each header is one height up
        and names the digest below it as its parent. Headers above the last
        height of the block's epoch are the epoch's tail: empty payloads. `cert`
        is checked in the block's epoch, whatever height it names."""
        if not chain:
            raise fail("the finalized_by chain is empty")
        below, below_height = digest, height
        for header in reversed(chain):
            if header.height != below_height + 1:
                raise fail(
                    f"the finalized_by chain has height {header.height} above height {below_height}"
                )
            if header.parent != below:
                raise fail(
                    f"the finalized_by chain breaks at height {header.height}: its parent "
                    f"is not the digest of the block below"
                )
            if (
                last_height is not None
                and header.height > last_height
                and header.payload_hash != EMPTY_PAYLOAD_HASH
            ):
                raise fail(
                    f"the finalized_by chain crosses out of epoch {epoch}: height "
                    f"{header.height} is above its last height {last_height} and is not "
                    f"an empty tail block"
                )
            below, below_height = header.digest(), header.height
        top = chain[0]
        self._check_certificate(cert, below, top.height, top.view, epoch, fail)

    def _check_certificate(
        self, cert: Certificate, digest: bytes, height: int, view: int, epoch: int, fail: Any
    ) -> None:
        """`cert` finalizes the block of `digest`, `height` and `view`, signed by a
        quorum of `epoch`'s set in `epoch`'s domain."""
        if cert.kind != VoteKind.FINALIZE:
            raise fail(f"the certificate is of kind {cert.kind}, not a finalization")
        if cert.block != digest:
            raise fail("the certificate is for another block")
        if cert.height != height or cert.view != view:
            raise fail("the certificate's height or view is not the block's")
        validators = self.schedule.epoch(epoch).validators
        if not self._signatures_of(epoch).check_certificate(validators, cert):
            raise fail(
                "the finalization certificate is not a quorum of valid validator signatures"
                + (f" of epoch {epoch}" if len(self.schedule) > 1 else "")
            )


def _chain_limit(height: int, last_height: int | None) -> int:
    """The most headers a `finalized_by` chain of the block at `height` may hold:
    MAX_FINALITY_CHAIN within its epoch, plus MAX_EPOCH_TAIL_BLOCKS tail blocks
    when the chain can reach the epoch's last height."""
    if last_height is None or last_height - height > MAX_FINALITY_CHAIN:
        return MAX_FINALITY_CHAIN
    return last_height - height + MAX_EPOCH_TAIL_BLOCKS


class UncertifiedBlockReader(BlockVerifier):
    """A BlockVerifier that skips the finalization certificate: for debugging
    a node without its genesis at hand. Shape, digest, sequence, payload and
    namespace proof are still checked, but against a block nobody vouched
    for, so a lying node can feed it anything self-consistent."""

    def _check_certificate(
        self, cert: Certificate, digest: bytes, height: int, view: int, epoch: int, fail: Any
    ) -> None:
        return None
