"""After commit: a committed block's encrypted transactions are opened and its
order seed is drawn.

On a chain with a threshold key (docs/fairness.md), when the commit pipeline
reaches a committed block that needs an order seed (it opens an envelope, or
its non-forced transactions come from two senders or more: fairness/order.py
`needs_order_seed`, node/commit.py `block_needs_order_seed`), each validator
makes ONE share message for it (a block that needs none has no share round:
no message is made, sent or asked for, and a request for one is answered
with nothing, as for an unknown height):

    block_shares          shares for the block's envelopes not yet expired at
                          its height, in block order, with one aggregated proof
                          (fairness/tdh2.py; it checks every ciphertext's
                          proof, except those the node's proof cache holds:
                          checked at intake or in a peer's batch); none when
                          the block holds no envelope
    coin_share            its share of the block's order coin, on
                          order_seed_tag(chain id, height, block digest)
                          (fairness/order.py), with its proof
    persist               store.save_own_shares (synced) ...
    broadcast             ... then send it to every validator (Channel.SHARES)
    keep                  its own shares and coin share as verified (it made
                          them from its own key share: no proof to check)
    collect               others' messages, each checked against the sender's
                          verification key (accept_block_shares and
                          accept_coin_share: one failing part refuses the
                          whole message); those that arrived before the
                          block reached this stage are verified while the
                          own message is made and persisted, one at a time
                          until t - 1 are in; a block of at most
                          INLINE_CIPHERTEXTS is verified on the event loop,
                          a larger one in a worker thread; asked for
                          (RequestKind.SHARES) from validators not heard from
    combine               once t verified messages are in: the plaintexts
                          (combine_verified) and the order seed
                          (combine_verified_coin), with the t coin shares
                          it came from as its proof (fairness/order_proof.py;
                          the commit pipeline stores both with the block)
    reveal                the inner transactions, or FailedReveal(reason)

Shares are released only for blocks this node committed itself: the only
code that makes them is `Decryptor.begin`/`open_block`, which the commit
pipeline calls for a committed block that needs an order seed (`begin` as
soon as the block's batches are fetched, so shares travel while earlier
blocks execute; `open_block` when execution reaches it), and requests are
answered from what it stored.
A restarted validator serves the shares it stored before it stopped. A full
node has no key share: it only asks validators (over the follow protocol)
and verifies what they answer the same way.

A message with a failing proof (its block shares' or its coin share's) came
from a faulty validator: it is dropped whole, and the block waits for the
others (with t = f + 1 of n = 3f + 1 there are enough honest ones).
Execution of the block waits until it opens; consensus keeps ordering
meanwhile (the commit queue and the leaders' execution lag bound how far).

A key per validator-set epoch (docs/fairness.md): a block at height h is
opened with the key of h's epoch (`KeyEpochs.at`): this validator's share of
that key (none if it is not one of the epoch's shareholders), shares checked
against that epoch's verification keys and t, asked from that epoch's
shareholders. The commit pipeline hands over only the envelopes of that key
epoch (node/commit.py `block_envelopes`); the others are refused undecrypted
and no share is ever made for them (`_new_job` refuses them too).

Wire forms (msgpack arrays, canonical only, size-checked before decoding):

    SharesMessage = [height, block digest, encoded BlockShares or empty
                     (the block opens no envelope), encoded CoinShare,
                     key epoch (only on a chain with several epochs)]
    SharesRequest = [height]      answered with a SharesMessage, or nothing

On a chain whose set never changes the key epoch is left out, so its share
messages are what they were before epochs existed; on a chain with epochs
every message names the key epoch of its height, and one naming another is
refused unread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, Final, TypeVar

import msgspec
import trio

from consensus.encoding import Domain
from sequencer_net.execution.block import FailedReveal, SequencedTransaction
from sequencer_net.fairness.envelope import Envelope, RevealFailed, label_of, reveal
from sequencer_net.fairness.group import Point
from sequencer_net.fairness.limits import MAX_BLOCK_SHARES_BYTES, MAX_SHARE_BYTES
from sequencer_net.fairness.order import order_seed_tag
from sequencer_net.fairness.tdh2 import (
    BlockShares,
    Ciphertext,
    CiphertextProofCache,
    CoinShare,
    DecryptionFailed,
    KeyShare,
    MalformedMessage,
    NotEnoughShares,
    PublicKeySet,
    VerifiedShare,
    accept_block_shares,
    accept_coin_share,
    block_shares,
    coin_share,
    combine_verified,
    combine_verified_coin,
    decode_block_shares,
    decode_coin_share,
    encode,
    own_block_shares,
    own_coin_share,
)
from sequencer_net.home.genesis import Genesis
from sequencer_net.node.requests import RequestKind
from sequencer_net.storage.node_store import NodeStore
from sequencer_net.worker_thread import WorkerThread

log = logging.getLogger("seqnet.decryption")

MAX_SHARES_MESSAGE_BYTES: Final = MAX_BLOCK_SHARES_BYTES + MAX_SHARE_BYTES + 64
"""A SharesMessage: the encoded block shares and coin share plus the height,
the block digest, the key epoch and the prefixes (about 60 bytes), rounded up."""

ASK_AFTER_S: Final = 0.3
"""How long a block waits for broadcast shares before it asks the validators it
has not heard from (a few round trips on a local network)."""

ASK_RETRY_MAX_S: Final = 2.0
"""The longest wait between two rounds of asking (the wait doubles from ASK_AFTER_S)."""

REQUEST_TIMEOUT_S: Final = 2.0

BEHIND_HEIGHTS: Final = 8
"""A block this many heights below the newest one a validator has sent a
share message for is being caught up on: its messages went out long ago, so
they are asked for at once instead of after ASK_AFTER_S (waiting would cost
a replaying node 0.3 s per block that has a share round). A faulty
validator naming a far height only makes this node ask sooner."""

EARLY_HEIGHTS: Final = 32
"""Share messages are kept for blocks up to this far above the block being
opened (they arrive before this node has executed up to them); beyond, they
are dropped and asked for again when needed."""

MAX_EARLY_BYTES: Final = 64 * 1024 * 1024
"""Bytes of early share messages held at once."""

INLINE_CIPHERTEXTS: Final = 8
"""A peer's share message for a block of at most this many ciphertexts is
verified (and the block opened) on the event loop: about 2.5 ms at 8 on the
development machine (its coin share alone 0.4 ms), where a worker thread
hop in a busy node took 10 to 15 ms at the median (docs/fairness.md, "Where
the added latency goes"). Larger blocks go to a worker thread."""

INBOX_MESSAGES: Final = 1024
"""Share messages waiting for verification; more are dropped (asked for later)."""


class SharesMessage(msgspec.Struct, frozen=True, array_like=True):
    height: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
    block: Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
    shares: Annotated[bytes, msgspec.Meta(max_length=MAX_BLOCK_SHARES_BYTES)]
    """Encoded BlockShares for the block's envelopes; empty when it opens none."""
    coin: Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_SHARE_BYTES)]
    """Encoded CoinShare on the block's order seed tag."""
    key_epoch: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    """The key epoch the shares are of: present exactly on a chain with several
    validator-set epochs (omitted otherwise, so the wire form is unchanged)."""


class SharesRequest(msgspec.Struct, frozen=True, array_like=True):
    height: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]


class MalformedSharesMessage(ValueError):
    pass


_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(SharesMessage)
_request_decoder = msgspec.msgpack.Decoder(SharesRequest)


def encode_shares_message(message: SharesMessage) -> bytes:
    """The canonical form: without a key epoch, the four-field array of a chain
    whose set never changes (msgspec writes a trailing None of an array-like
    struct, so it is left out here)."""
    if message.key_epoch is None:
        return _encoder.encode((message.height, message.block, message.shares, message.coin))
    return _encoder.encode(message)


def encode_shares_request(height: int) -> bytes:
    return bytes(RequestKind.SHARES.value) + _encoder.encode(SharesRequest(height))


def decode_shares_message(data: bytes) -> tuple[SharesMessage, BlockShares | None, CoinShare]:
    """Size (before parsing), structure, canonical form, and the inner shares':
    the message, its block shares (None: the block opens no envelope) and its
    coin share, both naming the same shareholder."""
    if len(data) > MAX_SHARES_MESSAGE_BYTES:
        raise MalformedSharesMessage(
            f"shares message of {len(data)} bytes exceeds the limit of {MAX_SHARES_MESSAGE_BYTES}"
        )
    try:
        message = _message_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedSharesMessage(f"undecodable shares message: {exc}") from exc
    if encode_shares_message(message) != data:
        raise MalformedSharesMessage("shares message is not canonically encoded")
    try:
        shares = decode_block_shares(message.shares) if message.shares else None
        coin = decode_coin_share(message.coin)
    except MalformedMessage as exc:
        raise MalformedSharesMessage(str(exc)) from exc
    if shares is not None and shares.index != coin.index:
        raise MalformedSharesMessage("block shares and coin share name different shareholders")
    return message, shares, coin


def decode_shares_request(body: bytes) -> SharesRequest | None:
    if len(body) > 16:
        return None
    try:
        return _request_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


# -- pure core ---------------------------------------------------------------------


def revealed_transaction(
    tx_hash: bytes, envelope: Envelope, decrypted: bytes | DecryptionFailed, domain: Domain
) -> SequencedTransaction | FailedReveal:
    """What the engine executes at an opened envelope's position: its inner
    transaction under the envelope's hash (receipts are found by the hash the
    client got back), or a FailedReveal charging the envelope's max fee."""
    result = reveal(envelope, decrypted, domain)
    if isinstance(result, RevealFailed):
        return FailedReveal(tx_hash, envelope.sender, envelope.max_fee, result.reason)
    return SequencedTransaction(
        tx_hash=tx_hash,
        sender=envelope.sender,
        nonce=result.nonce,
        namespace=result.namespace,
        fee=result.fee,
        payload=result.payload,
    )


def first_ask_after(height: int, newest_heard: int, validator: bool) -> float:
    """Seconds a block waits for broadcast share messages before asking: a
    validator at the head of the chain waits ASK_AFTER_S (the broadcasts are
    on their way); a full node (it receives no broadcasts) and a block
    BEHIND_HEIGHTS or more below the newest height heard of (caught up on:
    its broadcasts went out long ago) ask at once."""
    if not validator or height + BEHIND_HEIGHTS <= newest_heard:
        return 0.0
    return ASK_AFTER_S


class KeyEpochMismatch(ValueError):
    """Envelopes of another key epoch handed to the opening of a block: never
    shared (the commit pipeline refuses them undecrypted)."""


@dataclass(frozen=True, slots=True)
class KeyEpoch:
    """One validator-set epoch's threshold key as the decryption service uses it."""

    number: int
    """The key epoch (the genesis section's `key_epoch`), named in envelopes."""
    first_height: int
    keys: PublicKeySet
    """Y, each shareholder's Y_i and t of this epoch."""
    key_share: KeyShare | None
    """This node's share of this epoch's key; None when it holds none (a full
    node, or a validator that is not in this epoch's set)."""
    shareholders: tuple[int, ...]
    """The peer (network index) holding share index i + 1, for each i."""

    def share_index_of(self, peer: int) -> int | None:
        """The share index `peer` holds in this epoch, or None."""
        for position, holder in enumerate(self.shareholders):
            if holder == peer:
                return position + 1
        return None


class KeyEpochs:
    """The chain's threshold keys by height: one `KeyEpoch` per validator-set
    epoch, the first from height 1, first heights strictly increasing.

    `named`: share messages carry their key epoch, which they do exactly on a
    chain with more than one epoch."""

    def __init__(self, epochs: Sequence[KeyEpoch]) -> None:
        if not epochs or epochs[0].first_height != 1:
            raise ValueError("the first key epoch starts at height 1")
        for before, after in itertools.pairwise(epochs):
            if after.first_height <= before.first_height:
                raise ValueError("key epochs must start at increasing heights")
        for epoch in epochs:
            if len(epoch.shareholders) != epoch.keys.size:
                raise ValueError(f"key epoch {epoch.number}: one peer per shareholder")
        self.epochs: tuple[KeyEpoch, ...] = tuple(epochs)
        self.named = len(self.epochs) > 1

    @classmethod
    def single(
        cls, keys: PublicKeySet, key_share: KeyShare | None, key_epoch: int = 0
    ) -> KeyEpochs:
        """A chain whose set never changes: one key for every height, share index
        i + 1 held by validator (peer) i."""
        return cls([KeyEpoch(key_epoch, 1, keys, key_share, tuple(range(keys.size)))])

    def at(self, height: int) -> KeyEpoch:
        """The key epoch of the validator-set epoch holding `height`."""
        found = self.epochs[0]
        for epoch in self.epochs[1:]:
            if epoch.first_height > height:
                break
            found = epoch
        return found

    def named_epoch(self, height: int) -> int | None:
        """What a share message for `height` must name as its key epoch."""
        return self.at(height).number if self.named else None


def _member_peers(genesis: Genesis) -> dict[bytes, int]:
    return {v.address: peer for peer, v in enumerate(genesis.members())}


def member_peer(genesis: Genesis, address: bytes) -> int | None:
    """The peer index `key_epochs_of` gives the member with `address` (its
    validator index on a chain whose set never changes), or None."""
    return _member_peers(genesis).get(address)


def key_epochs_of(genesis: Genesis, shares: Mapping[int, KeyShare]) -> KeyEpochs | None:
    """The genesis's threshold keys by height (None: encryption off), with this
    node's share of each epoch (`shares`, epoch -> share; none for a full node).
    Peers are numbered as the network numbers them: every member of any epoch
    in `Genesis.members()` order, which on a chain whose set never changes is
    the validator index."""
    if genesis.threshold is None:
        return None
    peers = _member_peers(genesis)
    epochs = []
    for number, first_height in enumerate([1] + [e.first_height for e in genesis.epochs]):
        section = genesis.epoch_threshold(number)
        assert section is not None  # every epoch has a key when epoch 0 does
        epochs.append(
            KeyEpoch(
                number=section.key_epoch,
                first_height=first_height,
                keys=section.key_set(),
                key_share=shares.get(number),
                shareholders=tuple(peers[v.address] for v in genesis.epoch_validators(number)),
            )
        )
    return KeyEpochs(epochs)


@dataclass(frozen=True, slots=True)
class OpenedBlock:
    """What t verified share messages give for a committed block."""

    plaintexts: list[bytes | DecryptionFailed]
    """Each envelope's plaintext (or DecryptionFailed), in block order."""
    order_seed: bytes
    """The block's 32-byte order seed (fairness/order.py)."""
    order_proof: tuple[CoinShare, ...] = field(default=(), compare=False)
    """The t verified coin shares the seed was combined from, by index: its
    proof (fairness/order_proof.py `verify_order_seed`). Not compared: any t
    verified shares prove the same seed."""


class Judged(Enum):
    """What `BlockOpening.judge` did with a share message."""

    KEPT = "kept"
    REFUSED = "refused"
    NOTHING_NEW = "nothing_new"


@dataclass
class BlockOpening:
    """One committed block's ciphertexts (perhaps none) and order coin, and the
    verified share messages gathered for them."""

    height: int
    block: bytes
    coin_tag: bytes
    ciphertexts: list[Ciphertext]
    labels: list[bytes]
    keys: PublicKeySet
    verified: dict[int, list[VerifiedShare]] = field(default_factory=dict)
    coins: dict[int, Point] = field(default_factory=dict)
    coin_shares: dict[int, CoinShare] = field(default_factory=dict)
    """The verified coin shares themselves (with their proofs), by index: the
    seed's proof is the t of them it is combined from."""
    refused: set[int] = field(default_factory=set)
    """Share indices whose message failed verification (faulty: not asked again)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    """Held while a message is recorded and while `open` takes its t messages:
    the node verifies messages for one block in several worker threads at
    once (broadcast and asked-for answers), and `open` must never see a
    message half recorded. Verification itself runs outside it."""

    def offer(self, shares: BlockShares | None, coin: CoinShare) -> bool:
        """Verify a message (`accept`); keep it if it holds. False if it fails or
        adds nothing new. Safe to call from several threads at once."""
        return self.judge(shares, coin) is Judged.KEPT

    def judge(self, shares: BlockShares | None, coin: CoinShare) -> Judged:
        """As `offer`, saying what became of the message: a message of an index
        already heard (here or by another thread meanwhile) is NOTHING_NEW, never
        REFUSED a second time."""
        index = coin.index
        if self.has_heard(index):
            return Judged.NOTHING_NEW
        key = self.keys.verification_key(index)
        accepted = None if key is None else self.accept(key, shares, coin)
        with self._lock:
            if index in self.verified or index in self.refused:
                return Judged.NOTHING_NEW  # another thread judged this sender's message first
            if accepted is None:
                self.refused.add(index)
                return Judged.REFUSED
            self.verified[index], self.coins[index] = accepted
            self.coin_shares[index] = coin
            return Judged.KEPT

    def offer_own(self, key_share: KeyShare, shares: BlockShares | None, coin: CoinShare) -> None:
        """Keep this validator's own message without checking its proofs: it
        made the shares from its own key share (`own_block_shares`)."""
        if (shares is None) != (not self.ciphertexts):
            raise ValueError("own shares do not cover this block's ciphertexts")
        decrypted = [] if shares is None else own_block_shares(key_share, shares)
        if len(decrypted) != len(self.ciphertexts):
            raise ValueError("own shares do not cover this block's ciphertexts")
        index = key_share.index
        value = own_coin_share(key_share, coin)
        with self._lock:
            self.verified[index] = decrypted
            self.coins[index] = value
            self.coin_shares[index] = coin

    def accept(
        self, key: Point, shares: BlockShares | None, coin: CoinShare
    ) -> tuple[list[VerifiedShare], Point] | None:
        """Both parts of a message verified against the sender's key Y_i: its
        block shares for exactly this block's ciphertexts (none when it has
        none) and its coin share on this block's tag. None if either fails."""
        if shares is not None and shares.index != coin.index:
            return None
        if (shares is None) != (not self.ciphertexts):
            return None
        decrypted: list[VerifiedShare] = []
        if shares is not None:
            checked = accept_block_shares(key, self.ciphertexts, shares)
            if checked is None:
                return None
            decrypted = checked
        value = accept_coin_share(key, self.coin_tag, coin)
        return None if value is None else (decrypted, value)

    @property
    def ready(self) -> bool:
        return len(self.verified) >= self.keys.threshold

    def heard(self) -> set[int]:
        """Share indices whose message is recorded or refused, as of now (the
        loop asks the others while worker threads may be recording)."""
        with self._lock:
            return set(self.verified) | self.refused

    def verified_peers(self, own: int | None) -> int:
        """Verified messages other than share index `own`'s, as of now."""
        with self._lock:
            return len(self.verified) - (own in self.verified)

    def has_heard(self, index: int) -> bool:
        with self._lock:
            return index in self.verified or index in self.refused

    def open(self) -> OpenedBlock:
        """Each ciphertext's plaintext (or DecryptionFailed) and the order seed,
        from t verified messages; every t of them give the same result
        (docs/fairness.md)."""
        t = self.keys.threshold
        with self._lock:  # t whole messages, as recorded now
            chosen = sorted(self.verified)[:t]
            verified = {i: self.verified[i] for i in chosen}
            coins = {i: self.coins[i] for i in chosen}
            proof = tuple(self.coin_shares[i] for i in chosen)
        opened: list[bytes | DecryptionFailed] = []
        for position, (ct, label) in enumerate(zip(self.ciphertexts, self.labels, strict=True)):
            shares = [verified[i][position] for i in chosen]
            result = combine_verified(ct, label, shares, t)
            assert not isinstance(result, NotEnoughShares)  # `ready` was checked
            opened.append(result)
        seed = combine_verified_coin(self.coin_tag, coins, t)
        return OpenedBlock(opened, seed, proof)


def _is_own_message_for(
    job: BlockOpening, key_share: KeyShare, shares: BlockShares | None, coin: CoinShare
) -> bool:
    """Whether a stored message is this shareholder's for exactly this block's
    ciphertexts (a store that does not match is remade, never trusted)."""
    if coin.index != key_share.index:
        return False
    if shares is None:
        return not job.ciphertexts
    return shares.index == key_share.index and len(shares.values) == len(job.ciphertexts)


# -- shell -----------------------------------------------------------------------------


@dataclass
class _Job:
    decryption: BlockOpening
    epoch: KeyEpoch
    ready: trio.Event = field(default_factory=trio.Event)
    """Set once t messages verified."""
    done: trio.Event = field(default_factory=trio.Event)
    opened: OpenedBlock | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    completed_at: float | None = None
    """When the peer message that completed t reached this node (perf_counter;
    None: this validator's own message completed it)."""

    def matches(self, block: bytes, envelopes: Sequence[Envelope]) -> bool:
        return self.decryption.block == block and self.decryption.ciphertexts == [
            e.ciphertext for e in envelopes
        ]


Request = Callable[[int, bytes, float], Awaitable[bytes]]

_T = TypeVar("_T")


def _heavy(ciphertexts: Sequence[Ciphertext]) -> bool:
    """Whether verifying or opening a block's shares goes to a worker thread."""
    return len(ciphertexts) > INLINE_CIPHERTEXTS


async def _off_loop_if(heavy: bool, work: Callable[[], _T]) -> _T:
    """Run `work` in a worker thread when it is heavy (many ciphertexts: up to
    seconds of verification), else here: the coin alone is a few hundred
    microseconds and a few ciphertexts a few milliseconds, less than two
    thread hand-offs on a busy machine, and every block has a coin."""
    if heavy:
        return await trio.to_thread.run_sync(work)
    return work()


class Decryptor:
    """Releases this validator's shares for committed blocks and gathers others'.

    `chain_id` names the order coins; `epochs` are the chain's keys by height,
    with this node's share of each (none: a full node, which asks only);
    `me` is this node's peer index (None: a full node). `broadcast(data)`
    sends to every validator; `request(peer, data, timeout)` asks one; a
    block's shareholders other than `me` are asked; `executed()` the executed
    height; `proofs` the node's cache of checked ciphertext proofs (intake's),
    so making shares does not check them again."""

    def __init__(
        self,
        *,
        chain_id: int,
        epochs: KeyEpochs,
        store: NodeStore,
        broadcast: Callable[[bytes], None],
        request: Request,
        executed: Callable[[], int],
        me: int | None = None,
        proofs: CiphertextProofCache | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.epochs = epochs
        self.me = me
        self.store = store
        self.broadcast = broadcast
        self.request = request
        self.executed = executed
        self.proofs = proofs
        self._jobs: dict[int, _Job] = {}
        self._early: dict[int, dict[int, tuple[bytes, float]]] = {}
        self._early_bytes = 0
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[int, bytes, float]](
            INBOX_MESSAGES
        )
        self._first_heard: dict[int, float] = {}
        """Per height, when the first peer's message for it reached this node
        (perf_counter; for the `shares_round` log line)."""
        self._nursery: trio.Nursery | None = None
        self.released = 0
        self._worker = WorkerThread("seqnet-shares")  # makes and persists own shares
        self.refused = 0
        self._newest_heard = 0
        """The highest height a decodable, correctly addressed message named."""
        self.on_opened: Callable[[int, OpenedBlock], None] | None = None
        """Told each block opened (its height; it must not block): the commit
        pipeline passes the order seed on to subscribers before the block's
        turn to execute comes."""

    # ---- the commit pipeline's calls -----------------------------------------------

    def begin(self, height: int, block: bytes, envelopes: Sequence[Envelope]) -> None:
        """Start opening a committed block (its envelopes, perhaps none, and its
        order coin) without waiting: release this validator's shares and gather
        the others' while earlier blocks execute. `open_block` collects the
        result. Needs `run`; without it, does nothing."""
        if self._nursery is None or height in self._jobs:
            return
        job = self._new_job(height, block, envelopes)
        self._nursery.start_soon(self._work_in_scope, job)

    def discard(self, height: int) -> None:
        """Forget a block begun but not to be opened here (already executed
        before a restart): stop gathering its shares."""
        job = self._jobs.pop(height, None)
        if job is not None:
            job.scope.cancel()
        self._drop_early_below(height)

    async def _work_in_scope(self, job: _Job) -> None:
        with job.scope:
            await self._work(job)

    async def open_block(
        self, height: int, block: bytes, envelopes: Sequence[Envelope]
    ) -> OpenedBlock:
        """The plaintexts of a committed block's (unexpired) envelopes, in order,
        and its order seed. Waits, however long it takes, until t verified share
        messages are in."""
        job = self._jobs.get(height)
        try:
            if job is None or not job.matches(block, envelopes):
                if job is not None:
                    # Begun on other envelopes: its gathering would go on,
                    # asking peers for a block opening nobody awaits.
                    job.scope.cancel()
                job = self._new_job(height, block, envelopes)
                await self._work(job)
            else:
                await job.done.wait()
            assert job.opened is not None
            return job.opened
        finally:
            self._jobs.pop(height, None)
            self._drop_early_below(height)

    def key_epoch_at(self, height: int) -> int:
        """The key epoch an envelope opened at `height` must name."""
        return self.epochs.at(height).number

    def _new_job(self, height: int, block: bytes, envelopes: Sequence[Envelope]) -> _Job:
        epoch = self.epochs.at(height)
        for e in envelopes:
            if e.key_epoch != epoch.number:
                raise KeyEpochMismatch(
                    f"an envelope of key epoch {e.key_epoch} at height {height}, "
                    f"whose key epoch is {epoch.number}"
                )
        job = _Job(
            BlockOpening(
                height=height,
                block=block,
                coin_tag=order_seed_tag(self.chain_id, height, block),
                ciphertexts=[e.ciphertext for e in envelopes],
                labels=[label_of(e) for e in envelopes],
                keys=epoch.keys,
            ),
            epoch,
        )
        self._jobs[height] = job
        return job

    async def _work(self, job: _Job) -> None:
        """Release this validator's shares (persisted, then sent) while verifying
        the early messages, ask who is missing until t messages verify, then
        open. The block opens only once this validator's own message is out."""
        decryption = job.decryption
        key_share = job.epoch.key_share
        started = time.perf_counter()
        own_ms = 0
        early = sorted(self._early.pop(decryption.height, {}).items())
        self._early_bytes -= sum(len(data) for _, (data, _) in early)
        own_index = None if key_share is None else key_share.index
        peers_needed = decryption.keys.threshold - (own_index is not None)

        async def verify_early() -> None:
            # One at a time, and only until enough peers' messages verified
            # (t - 1 besides the own one): a validator that reaches the block
            # last holds all its peers' messages, and verifying them all
            # would spend the CPU of n - 1 verifications on what t - 1 give.
            for peer, (data, arrived) in early:
                if decryption.ready or decryption.verified_peers(own_index) >= peers_needed:
                    return
                await self._consider(peer, data, arrived)

        async with trio.open_nursery() as nursery:
            # Peers' messages that came before the block reached this stage are
            # verified while this validator makes and persists its own: the two
            # are independent, and a peer's usually arrives first.
            nursery.start_soon(verify_early)
            if key_share is not None:
                encoded, own_shares, own_coin = await self._own_message(decryption, key_share)
                own_ms = int((time.perf_counter() - started) * 1000)
                decryption.offer_own(key_share, own_shares, own_coin)
                if decryption.ready:
                    job.ready.set()
                self.broadcast(encoded)
        wait = first_ask_after(decryption.height, self._newest_heard, key_share is not None)
        while not job.ready.is_set():
            with trio.move_on_after(wait):
                await job.ready.wait()
            if not job.ready.is_set():
                await self._ask_missing_until_ready(decryption, job.ready)
                wait = min(max(2 * wait, ASK_AFTER_S), ASK_RETRY_MAX_S)
        ready_ms = int((time.perf_counter() - started) * 1000)
        if job.opened is None:  # else opened by the message that completed t
            job.opened = await _off_loop_if(_heavy(decryption.ciphertexts), decryption.open)
        if self.on_opened is not None:
            self.on_opened(decryption.height, job.opened)
        job.done.set()
        first_heard = self._first_heard.pop(decryption.height, None)
        # first_peer_ms: the first peer's message arrived (negative: before the
        # block reached this stage); completed_ms: the message that completed t
        # arrived (the own one's time when that was it). ready_ms less
        # completed_ms is the wait to verify it.
        log.info(
            "event=shares_round height=%d ciphertexts=%d own_ms=%d ready_ms=%d opened_ms=%d "
            "first_peer_ms=%s completed_ms=%d",
            decryption.height,
            len(decryption.ciphertexts),
            own_ms,
            ready_ms,
            (time.perf_counter() - started) * 1000,
            "none" if first_heard is None else int((first_heard - started) * 1000),
            own_ms if job.completed_at is None else (job.completed_at - started) * 1000,
        )

    async def _own_message(
        self, job: BlockOpening, key_share: KeyShare
    ) -> tuple[bytes, BlockShares | None, CoinShare]:
        """This validator's message (encoded, and its parts): the stored one (a
        restart), else made, persisted (synced), and only then returned to be
        sent. Shares are functions of their inputs, so one made again after a
        stored message proved unreadable is the same."""
        stored = self.store.own_shares(job.height)
        if stored is not None:
            try:
                message, shares, coin = decode_shares_message(stored)
            except MalformedSharesMessage:
                log.warning("event=own_shares_unreadable height=%d", job.height)
            else:
                if (
                    message.block == job.block
                    and message.key_epoch == self.epochs.named_epoch(job.height)
                    and _is_own_message_for(job, key_share, shares, coin)
                ):
                    return stored, shares, coin
                log.warning("event=own_shares_mismatch height=%d", job.height)

        def make_and_persist() -> tuple[bytes, BlockShares | None, CoinShare]:
            # One worker thread job: the synced write needs a thread anyway,
            # and each hop costs milliseconds on a busy machine.
            made = None
            if job.ciphertexts:
                made = block_shares(key_share, job.ciphertexts, job.labels, self.proofs)
            coin = coin_share(key_share, job.coin_tag)
            encoded = encode_shares_message(
                SharesMessage(
                    job.height,
                    job.block,
                    b"" if made is None else encode(made),
                    encode(coin),
                    self.epochs.named_epoch(job.height),
                )
            )
            self.store.save_own_shares(job.height, encoded)
            return encoded, made, coin

        encoded, shares, coin = await self._worker.run(make_and_persist)
        self.released += 1
        return encoded, shares, coin

    async def _ask_missing_until_ready(self, job: BlockOpening, ready: trio.Event) -> None:
        """One round of asking; returns once t messages are in (a broadcast
        that arrives meanwhile must not wait for a slow peer's answer, up to
        REQUEST_TIMEOUT_S) or the round has ended.

        The round's requests are not cancelled when t messages are in: they
        run on in the decryptor's nursery, each bounded by REQUEST_TIMEOUT_S,
        and their answers are then ignored. A request cut short mid-exchange
        cost the whole connection to that peer under load (py-libp2p 0.8.1:
        the peer closed it), and with it the frames queued on the validator
        link; under 100% encrypted load that happened tens of times a minute."""
        round_over = trio.Event()

        async def ask_round() -> None:
            try:
                await self._ask_missing(job, ready)
            finally:
                round_over.set()

        if self._nursery is None:
            await ask_round()
            return
        self._nursery.start_soon(ask_round)
        async with trio.open_nursery() as waiting:

            async def until(event: trio.Event) -> None:
                await event.wait()
                waiting.cancel_scope.cancel()

            waiting.start_soon(until, ready)
            waiting.start_soon(until, round_over)

    async def _ask_missing(self, job: BlockOpening, ready: trio.Event) -> None:
        """Ask every validator not yet heard from (nor refused) for its message."""
        heard = job.heard()
        epoch = self.epochs.at(job.height)
        missing = [
            peer
            for index, peer in enumerate(epoch.shareholders, start=1)
            if peer != self.me and index not in heard
        ]
        log.info("event=shares_asked height=%d peers=%s", job.height, missing)
        request = encode_shares_request(job.height)

        async def ask(peer: int) -> None:
            try:
                answer = await self.request(peer, request, REQUEST_TIMEOUT_S)
            except Exception as exc:  # a peer that fails is asked again next round
                log.debug("event=shares_request_failed peer=%d reason=%s", peer, exc)
                return
            if answer and not ready.is_set():
                await self._consider(peer, answer)

        async with trio.open_nursery() as nursery:
            for peer in missing:
                nursery.start_soon(ask, peer)

    # ---- messages from validators ----------------------------------------------------

    def on_message(self, peer: int, data: bytes) -> None:
        """A share message broadcast by validator `peer` (authenticated stream)."""
        try:
            self._inbox_send.send_nowait((peer, data, time.perf_counter()))
        except trio.WouldBlock:
            log.warning("event=shares_inbox_full peer=%d", peer)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Verify broadcast messages as they come; own the tasks `begin` starts."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            async for peer, data, arrived in self._inbox:
                await self._consider(peer, data, arrived)

    async def _consider(self, peer: int, data: bytes, arrived: float | None = None) -> None:
        """Check a message from validator `peer`: it must name the key epoch of
        its height (on a chain with several), and its index must be the one
        `peer` holds in that epoch (peer + 1 on a chain whose set never
        changes); for a block being opened it is verified now, for a later one
        kept until then."""
        try:
            message, shares, coin = decode_shares_message(data)
        except MalformedSharesMessage as exc:
            log.warning("event=shares_malformed peer=%d reason=%s", peer, exc)
            return
        expected_epoch = self.epochs.named_epoch(message.height)
        if message.key_epoch != expected_epoch:
            self.refused += 1
            log.warning(
                "event=shares_wrong_key_epoch peer=%d height=%d key_epoch=%s expected=%s",
                peer,
                message.height,
                message.key_epoch,
                expected_epoch,
            )
            return
        index = coin.index
        if index != self.epochs.at(message.height).share_index_of(peer):
            log.warning("event=shares_wrong_sender peer=%d index=%d", peer, index)
            return
        self._newest_heard = max(self._newest_heard, message.height)
        arrived = time.perf_counter() if arrived is None else arrived
        executed = self.executed()
        if executed < message.height <= executed + EARLY_HEIGHTS:
            first = self._first_heard.get(message.height)
            self._first_heard[message.height] = arrived if first is None else min(first, arrived)
        active = self._jobs.get(message.height)
        if active is None:
            self._keep_early(message.height, peer, data, arrived)
            return
        job, ready = active.decryption, active.ready
        if message.block != job.block:
            log.warning("event=shares_other_block peer=%d height=%d", peer, message.height)
            return
        if job.ready or job.has_heard(index):
            return  # nothing new, or t messages in already: no need to verify more

        def verify_then_open() -> tuple[Judged, OpenedBlock | None]:
            # The message that completes t opens the block in the same worker
            # thread job (one hop fewer on the way to execution).
            judged = job.judge(shares, coin)
            kept = judged is Judged.KEPT
            return judged, job.open() if kept and job.ready and job.ciphertexts else None

        judged, opened = await _off_loop_if(_heavy(job.ciphertexts), verify_then_open)
        if opened is not None and active.opened is None:
            active.opened = opened
        if judged is Judged.KEPT and job.ready and not ready.is_set():
            active.completed_at = arrived
        if job.ready:
            ready.set()
        if judged is Judged.REFUSED:
            self.refused += 1
            log.warning("event=shares_refused peer=%d height=%d", peer, message.height)

    def _keep_early(self, height: int, peer: int, data: bytes, arrived: float) -> None:
        executed = self.executed()
        if not executed < height <= executed + EARLY_HEIGHTS:
            return
        if self._early_bytes + len(data) > MAX_EARLY_BYTES:
            return
        kept = self._early.setdefault(height, {})
        if peer in kept:
            return
        kept[peer] = (data, arrived)
        self._early_bytes += len(data)

    def _drop_early_below(self, height: int) -> None:
        for old in [h for h in self._early if h <= height]:
            self._early_bytes -= sum(len(d) for d, _ in self._early.pop(old).values())
        for old in [h for h in self._first_heard if h <= height]:
            del self._first_heard[old]

    # ---- requests --------------------------------------------------------------------

    def answer_request(self, body: bytes) -> bytes:
        """A validator's or full node's SharesRequest: this node's stored message
        for that height (only committed blocks have one), or nothing."""
        request = decode_shares_request(body)
        if request is None:
            return b""
        return self.store.own_shares(request.height) or b""
