"""A validator's durable state on disk (rocksdict, raw bytes): consensus safety,
committed blocks and their transactions, batches, and acknowledged client
transactions.

Layout (one RocksDB, default column family, raw mode; integers are big-endian,
u64 = 8 bytes, u32 = 4 bytes; msgpack is the consensus wire encoding):

    key                                        value
    m/safety                                   SafetyRecord (msgpack)
    m/tip                                      height u64 || digest(32) || view u64
    m/batch-seq                                next own batch sequence u64
    m/pending-seq                              next pending-tx arrival number u64
    vb/ + digest(32)                           voted (stored, uncommitted) Block (msgpack)
    vh/ + height u64 + digest(32)              b"" (voted blocks by height, for pruning)
    c/  + view u64 + kind u8                   Certificate (msgpack)
    ev/ + offender u32 + view u64 + kind u8    EvidenceRecord (msgpack): two conflicting votes
    bh/ + height u64                           committed Block (msgpack)
    bd/ + digest(32)                           height u64 of a committed block
    f/  + height u64                           finalization Certificate of that height
    r/  + height u64                           state root(32) after executing that height
    e/  + height u64                           execution output (receipts), if any
    t/  + height u64 + position u32            encoded transaction committed there
    i/  + tx hash(32)                          height u64 || position u32
    p/  + tx hash(32)                          arrival u64 || encoded tx (acknowledged, pending)
    b/  + batch digest(32)                     encoded batch
    br/ + height u64 + batch digest(32)        b"" (a block at height referenced the batch)
    bl/ + batch digest(32)                     height u64 of the last block referencing it
    ba/ + height u64 + batch digest(32)        author u32 (the tip height when the batch arrived)
    ak/ + author u32 + round u64               batch digest(32) acknowledged for that round
    bc/ + batch digest(32)                     BatchCertificate (CERT encoding), held, unincluded
    ds/ + height u64                           own share message (decryption and order coin)
    os/ + height u64                           order seed(32) of that height (threshold key only)
    op/ + height u64                           its proof: the t coin shares it was combined from
                                               (fairness/order_proof.py encoding)
    es/ + epoch u64                            SafetyRecord of epoch >= 1 (epoch 0's is m/safety)
    ec/ + epoch u64 + view u64 + kind u8       Certificate of epoch >= 1 (epoch 0's are c/)
    ep/ + epoch u64                            EpochEndProof of that epoch (msgpack)
    ee/ + epoch u64 + offender u32 + view u64 + kind u8
                                               EvidenceRecord of epoch >= 1 (epoch 0's are ev/;
                                               the offender is an index in that epoch's set)

Views restart at 1 in every validator-set epoch, so what consensus keeps by
view is kept per epoch; epoch 0 (the only epoch of a chain that never rotates)
keeps the single-epoch keys.

What is synced (WriteOptions.sync, i.e. fsync of the WAL) and why:
- `save_epoch_end`: an epoch-end proof is durable before the next epoch's
  instance starts or the proof is sent.
- `save_vote` / `store_block`: the safety record and the voted block, in one
  batch, before the vote leaves the node (never double-sign after a crash; a
  notarized block stays servable, consensus/io.py `StoreBlock`).
- `commit_block`: everything a commit writes, in one batch (the tip is never
  ahead of its block, transactions, finalization and state root).
- `save_batch`: a batch is durable before this node acknowledges it (an ack
  promises availability) or broadcasts its own (a sequence is never reused).
- `save_pending_transactions`: before the API acknowledges the client.
- `stage_batch_ack` (through group commit): before a batch acknowledgement
  leaves the node, so a restart never acknowledges a second batch for the
  same (author, round); the same fsync makes the acknowledged batch durable.
Not synced: batch certificates (`bc/`, re-verified when loaded),
certificates (a restart can learn them again from peers) and deletions of
pending transactions (a lost delete re-adds a committed
transaction, which `load_pending_transactions` filters out).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import Final, TypeVar, cast

import msgspec
from rocksdict import BlockBasedOptions, Options, Rdict, WriteBatch, WriteOptions

from consensus.io import SafetyRecord
from consensus.messages import Block, Certificate, EpochEndProof, Vote, VoteKind
from consensus.types import ZERO_DIGEST
from sequencer_net.mempool.transaction import tx_hash

# ---- key layout (see the module docstring) -------------------------------------------

SAFETY_KEY: Final = b"m/safety"
TIP_KEY: Final = b"m/tip"
BATCH_SEQUENCE_KEY: Final = b"m/batch-seq"
PENDING_SEQUENCE_KEY: Final = b"m/pending-seq"
VOTED_BLOCK_PREFIX: Final = b"vb/"
VOTED_HEIGHT_PREFIX: Final = b"vh/"
CERTIFICATE_PREFIX: Final = b"c/"
BLOCK_PREFIX: Final = b"bh/"
BLOCK_HEIGHT_PREFIX: Final = b"bd/"
FINALIZATION_PREFIX: Final = b"f/"
STATE_ROOT_PREFIX: Final = b"r/"
EXECUTED_PREFIX: Final = b"e/"
TX_PREFIX: Final = b"t/"
TX_INDEX_PREFIX: Final = b"i/"
PENDING_PREFIX: Final = b"p/"
BATCH_PREFIX: Final = b"b/"
BATCH_REF_PREFIX: Final = b"br/"
BATCH_LAST_REF_PREFIX: Final = b"bl/"
BATCH_ARRIVAL_PREFIX: Final = b"ba/"
EVIDENCE_PREFIX: Final = b"ev/"
OWN_FINALIZATION_PREFIX: Final = b"of/"
BATCH_ACK_PREFIX: Final = b"ak/"
BATCH_CERTIFICATE_PREFIX: Final = b"bc/"
OWN_SHARES_PREFIX: Final = b"ds/"
ORDER_SEED_PREFIX: Final = b"os/"
ORDER_PROOF_PREFIX: Final = b"op/"
EPOCH_SAFETY_PREFIX: Final = b"es/"
EPOCH_CERTIFICATE_PREFIX: Final = b"ec/"
EPOCH_END_PREFIX: Final = b"ep/"
EPOCH_EVIDENCE_PREFIX: Final = b"ee/"

KEY_LAYOUT: Final[dict[str, bytes]] = {
    "safety record": SAFETY_KEY,
    "committed tip": TIP_KEY,
    "own next batch sequence": BATCH_SEQUENCE_KEY,
    "next pending arrival": PENDING_SEQUENCE_KEY,
    "voted block by digest": VOTED_BLOCK_PREFIX,
    "voted block by height": VOTED_HEIGHT_PREFIX,
    "certificate by view, kind": CERTIFICATE_PREFIX,
    "committed block by height": BLOCK_PREFIX,
    "committed height by digest": BLOCK_HEIGHT_PREFIX,
    "finalization by height": FINALIZATION_PREFIX,
    "state root by height": STATE_ROOT_PREFIX,
    "execution output by height": EXECUTED_PREFIX,
    "transaction by height, position": TX_PREFIX,
    "transaction location by hash": TX_INDEX_PREFIX,
    "pending transaction by hash": PENDING_PREFIX,
    "batch by digest": BATCH_PREFIX,
    "batch reference by height": BATCH_REF_PREFIX,
    "batch last reference": BATCH_LAST_REF_PREFIX,
    "batch by arrival height (for pruning unreferenced ones)": BATCH_ARRIVAL_PREFIX,
    "equivocation evidence by offender, view, kind": EVIDENCE_PREFIX,
    "a block's own finalization by height, digest": OWN_FINALIZATION_PREFIX,
    "batch acknowledged by author, round": BATCH_ACK_PREFIX,
    "held batch certificate by digest": BATCH_CERTIFICATE_PREFIX,
    "own decryption shares by height": OWN_SHARES_PREFIX,
    "order seed by height": ORDER_SEED_PREFIX,
    "order seed proof by height": ORDER_PROOF_PREFIX,
    "safety record of a later epoch": EPOCH_SAFETY_PREFIX,
    "certificate of a later epoch by epoch, view, kind": EPOCH_CERTIFICATE_PREFIX,
    "epoch-end proof by epoch": EPOCH_END_PREFIX,
    "equivocation evidence of a later epoch by epoch, offender, view, kind": (
        EPOCH_EVIDENCE_PREFIX
    ),
}
"""Every key family; no prefix is a prefix of another (tests check it)."""

_U64 = 8
_U32 = 4
_DIGEST = 32
_TIP_LENGTH = _U64 + _DIGEST + _U64
_LOCATION_LENGTH = _U64 + _U32


MAX_STORED_EVIDENCE: Final = 10_000
"""Evidence records kept on disk. One per (offender, view, vote kind): a validator
that equivocates in every view fills this bound, and new evidence is then not
written (what is kept already proves the offence)."""


class EvidenceRecord(msgspec.Struct, frozen=True, array_like=True):
    """Two signed votes by one validator that no honest validator casts together."""

    offender: int
    first: Vote
    second: Vote
    reason: str


class CorruptStore(Exception):
    """Stored bytes that this code never writes: wrong length or undecodable."""


class CommitOutOfOrder(ValueError):
    """`commit_block` was given a block that does not extend the committed tip."""


def _u64(value: int) -> bytes:
    return value.to_bytes(_U64, "big")


def _voted_height_key_parts(key: bytes) -> tuple[int, bytes]:
    """(height, block digest) of a voted-height record's key."""
    if len(key) != len(VOTED_HEIGHT_PREFIX) + _U64 + _DIGEST:
        raise CorruptStore("voted-height record has the wrong shape")
    start = len(VOTED_HEIGHT_PREFIX)
    return int.from_bytes(key[start : start + _U64], "big"), bytes(key[start + _U64 :])


def _safety_key(epoch: int) -> bytes:
    return SAFETY_KEY if epoch == 0 else EPOCH_SAFETY_PREFIX + _u64(epoch)


def _certificate_prefix(epoch: int) -> bytes:
    return CERTIFICATE_PREFIX if epoch == 0 else EPOCH_CERTIFICATE_PREFIX + _u64(epoch)


def _read_u64(data: bytes, what: str) -> int:
    if len(data) != _U64:
        raise CorruptStore(f"{what} is {len(data)} bytes, expected {_U64}")
    return int.from_bytes(data, "big")


_T = TypeVar("_T")
_encoder = msgspec.msgpack.Encoder()
_safety_decoder = msgspec.msgpack.Decoder(SafetyRecord)
_block_decoder = msgspec.msgpack.Decoder(Block)
_certificate_decoder = msgspec.msgpack.Decoder(Certificate)
_evidence_decoder = msgspec.msgpack.Decoder(EvidenceRecord)
_proof_decoder = msgspec.msgpack.Decoder(EpochEndProof)


def _decode(decoder: msgspec.msgpack.Decoder[_T], data: bytes, what: str) -> _T:
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CorruptStore(f"stored {what} does not decode: {exc}") from exc


BLOOM_BITS_PER_KEY: Final = 10
"""Bloom filter bits per key in every table file (about a 1% false-positive
rate). Most point reads here look for keys that are absent: a commit asks for
each of its transactions whether an earlier block committed it (the
transaction index), and nearly none did. Without filters each such read
searched every table file's index: 15-18 us per key after 2,000 blocks of
1,200 transactions, growing with the chain, against 0.3-0.5 us with these
filters and the memtable's."""

MEMTABLE_BLOOM_RATIO: Final = 0.1
"""The memtable's own bloom filter over whole keys, as a fraction of its size:
a read of an absent key skips the memtable's skip list too."""


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    table = BlockBasedOptions()
    table.set_bloom_filter(BLOOM_BITS_PER_KEY, False)  # full filters, not block-based
    options.set_block_based_table_factory(table)
    options.set_memtable_whole_key_filtering(True)
    options.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO)
    return options


class NodeStore:
    """A validator's store in one RocksDB directory. Holds RocksDB's lock until `close()`.

    `sync=False` skips fsync everywhere (tests and benchmarks only).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        genesis_digest: bytes = ZERO_DIGEST,
        sync: bool = True,
    ) -> None:
        if len(genesis_digest) != _DIGEST:
            raise ValueError("genesis digest must be 32 bytes")
        self._db = Rdict(os.fspath(path), _options())
        self._closed = False
        self._synced = WriteOptions()
        self._synced.sync = sync
        self._unsynced = WriteOptions()
        self._genesis_digest = bytes(genesis_digest)
        # The voted-height records on disk, by height (uncommitted blocks: a few).
        # A commit deletes those at or below its height from this index instead of
        # scanning the key range: every commit's deletes leave tombstones there,
        # and a scan steps over all of them (O(blocks committed) per commit,
        # about 1.4 ms after 20,000 blocks). The lock: blocks are stored from the
        # event loop and committed from the commit pipeline's worker thread.
        self._voted_lock = threading.Lock()
        self._voted: dict[int, set[bytes]] = {}
        # The certificate records on disk: epoch -> view -> kinds. A finalization
        # deletes those of lower views by key. (A range delete per finalization
        # left one range tombstone per block in the memtable, and every read of
        # this database then paid for all of them: at a few thousand, a
        # millisecond and more per read, growing until a flush.)
        self._cert_views: dict[int, dict[int, set[int]]] = {}
        # Batch arrival records below this height are all deleted (this process
        # pruned them): the next prune starts here, not at the range's tombstones.
        self._arrivals_pruned_below = 0
        # The hashes of the pending-transaction records on disk (or staged in a
        # write not yet done): a commit deletes the records of its transactions
        # that are here, not one per transaction. Most of a block's transactions
        # were acknowledged by other validators and never pending here, and a
        # delete of an absent key still costs a call and leaves a tombstone.
        # The lock: the intake stages from the group commit, the pipeline
        # commits from its own thread.
        self._pending_lock = threading.Lock()
        self._pending: set[bytes] = set()
        try:
            self._tip = self._read_tip()
            for key, _ in self._scan(VOTED_HEIGHT_PREFIX):
                height, digest = _voted_height_key_parts(key)
                self._voted.setdefault(height, set()).add(digest)
            self._index_certificates()
            self._pending = {key[len(PENDING_PREFIX) :] for key, _ in self._scan(PENDING_PREFIX)}
            stored = self._db.get(PENDING_SEQUENCE_KEY)
            self._next_arrival = 0 if stored is None else _read_u64(stored, "pending sequence")
            self._evidence_count = sum(1 for _ in self._scan(EVIDENCE_PREFIX)) + sum(
                1 for _ in self._scan(EPOCH_EVIDENCE_PREFIX)
            )
        except CorruptStore:
            self.close()  # release RocksDB's lock: the caller never gets this object
            raise

    # ---- consensus safety ------------------------------------------------------------

    def save_vote(
        self, record: SafetyRecord, blocks: Sequence[Block] = (), *, epoch: int = 0
    ) -> None:
        """Durably write `epoch`'s safety record (and the blocks voted for) in one
        synced batch. Call before the vote, or the proposal, leaves the node."""
        batch = WriteBatch(raw_mode=True)
        for block in blocks:
            self._put_voted_block(batch, block)
        batch.put(_safety_key(epoch), _encoder.encode(record))
        self._db.write(batch, self._synced)

    def store_block(self, block: Block, *, synced: bool = True) -> None:
        """Keep an uncommitted block (consensus `StoreBlock`): synced for a block this
        node is about to vote for, unsynced for one fetched for a finalization."""
        batch = WriteBatch(raw_mode=True)
        self._put_voted_block(batch, block)
        self._db.write(batch, self._synced if synced else self._unsynced)

    def _put_voted_block(self, batch: WriteBatch, block: Block) -> None:
        digest = block.digest()
        batch.put(VOTED_BLOCK_PREFIX + digest, _encoder.encode(block))
        batch.put(VOTED_HEIGHT_PREFIX + _u64(block.height) + digest, b"")
        # Indexed before the write: if it fails, a commit deletes a key that is
        # not there, which is harmless; the other order could leave one behind.
        with self._voted_lock:
            self._voted.setdefault(block.height, set()).add(digest)

    def load_safety(self, *, epoch: int = 0) -> SafetyRecord | None:
        data = self._db.get(_safety_key(epoch))
        return None if data is None else _decode(_safety_decoder, data, "safety record")

    def get_voted_block(self, digest: bytes) -> Block | None:
        data = self._db.get(VOTED_BLOCK_PREFIX + digest)
        return None if data is None else self._decode_block(data, digest, "voted block")

    def voted_blocks(self) -> list[Block]:
        """Every stored, uncommitted block, by height."""
        blocks = []
        for key, _ in self._scan(VOTED_HEIGHT_PREFIX):
            _, digest = _voted_height_key_parts(key)
            block = self.get_voted_block(digest)
            if block is None:
                raise CorruptStore(f"voted-height index names missing block {digest.hex()}")
            blocks.append(block)
        return blocks

    def _index_certificates(self) -> None:
        """Fill `_cert_views` from the certificate records on disk (at open)."""
        for prefix, with_epoch in ((CERTIFICATE_PREFIX, False), (EPOCH_CERTIFICATE_PREFIX, True)):
            head = len(prefix) + (_U64 if with_epoch else 0)
            for key, _ in self._scan(prefix):
                if len(key) != head + _U64 + 1:
                    raise CorruptStore(f"certificate key of {len(key)} bytes")
                epoch = int.from_bytes(key[len(prefix) : head], "big") if with_epoch else 0
                view = int.from_bytes(key[head : head + _U64], "big")
                self._cert_views.setdefault(epoch, {}).setdefault(view, set()).add(key[-1])

    def save_certificate(self, cert: Certificate, *, epoch: int = 0) -> None:
        """Keep a certificate of `epoch` (unsynced). A finalization drops every
        certificate of a lower view of that epoch, as consensus/io.py
        `StoreCertificate` allows."""
        batch = WriteBatch(raw_mode=True)
        prefix = _certificate_prefix(epoch)
        views = self._cert_views.setdefault(epoch, {})
        dropped = []
        if cert.kind == VoteKind.FINALIZE:
            dropped = [view for view in views if view < cert.view]
            for view in dropped:
                for kind in views[view]:
                    batch.delete(prefix + _u64(view) + bytes([kind]))
        encoded = _encoder.encode(cert)
        batch.put(prefix + _u64(cert.view) + bytes([cert.kind]), encoded)
        if cert.kind == VoteKind.FINALIZE:
            batch.put(OWN_FINALIZATION_PREFIX + _u64(cert.height) + cert.block, encoded)
        self._db.write(batch, self._unsynced)
        for view in dropped:
            del views[view]
        views.setdefault(cert.view, set()).add(cert.kind)

    def save_late_finalization(self, cert: Certificate) -> None:
        """Keep the finalization certificate of a block that was committed under a
        descendant's (unsynced: it is not needed for safety). The caller verified it."""
        if cert.kind != VoteKind.FINALIZE:
            raise ValueError("only finalizations are kept by height")
        key = OWN_FINALIZATION_PREFIX + _u64(cert.height) + cert.block
        self._db.put(key, _encoder.encode(cert), self._unsynced)

    def own_finalization(self, height: int, digest: bytes) -> Certificate | None:
        """The finalization certificate of the block `digest` at `height` itself:
        the commit record if it certifies that block, else one kept by
        `save_certificate` or `save_late_finalization` (a block committed under a
        descendant's finalization may get its own later, or never)."""
        stored = self.finalization_at(height)
        if stored is not None and stored.block == digest and stored.height == height:
            return stored
        data = self._db.get(OWN_FINALIZATION_PREFIX + _u64(height) + digest)
        return None if data is None else _decode(_certificate_decoder, data, "finalization")

    def has_own_finalization(self, height: int) -> bool:
        """Whether a certificate of the block at `height` itself is kept (any digest)."""
        stored = self.finalization_at(height)
        if stored is not None and stored.height == height:
            return True
        return any(True for _ in self._scan(OWN_FINALIZATION_PREFIX + _u64(height)))

    def certificates_at(self, view: int, *, epoch: int = 0) -> list[Certificate]:
        """The stored notarization and nullification of `view` of `epoch`, if any."""
        out = []
        prefix = _certificate_prefix(epoch)
        for kind in (VoteKind.NOTARIZE, VoteKind.NULLIFY):
            data = self._db.get(prefix + _u64(view) + bytes([kind]))
            if data is not None:
                out.append(_decode(_certificate_decoder, data, "certificate"))
        return out

    # ---- validator-set epochs ---------------------------------------------------------

    def save_epoch_end(self, proof: EpochEndProof) -> None:
        """Durably keep the proof that `proof.epoch` ended (synced): the node is in
        the next epoch from this write on, so it precedes the next instance and
        every copy of the proof sent. The caller verified it."""
        key = EPOCH_END_PREFIX + _u64(proof.epoch)
        self._db.put(key, _encoder.encode(proof), self._synced)

    def epoch_end(self, epoch: int) -> EpochEndProof | None:
        data = self._db.get(EPOCH_END_PREFIX + _u64(epoch))
        return None if data is None else _decode(_proof_decoder, data, "epoch-end proof")

    def save_evidence(self, record: EvidenceRecord, *, epoch: int = 0) -> bool:
        """Keep evidence of equivocation in `epoch` (unsynced: peers report it
        again). False when the same offence is already stored or the store holds
        its bound (across all epochs)."""
        key = (
            (EVIDENCE_PREFIX if epoch == 0 else EPOCH_EVIDENCE_PREFIX + _u64(epoch))
            + record.offender.to_bytes(_U32, "big")
            + _u64(record.first.view)
            + bytes([record.second.kind])
        )
        if self._db.get(key) is not None or self._evidence_count >= MAX_STORED_EVIDENCE:
            return False
        self._db.put(key, _encoder.encode(record), self._unsynced)
        self._evidence_count += 1
        return True

    def load_evidence(self, limit: int = 1000, *, epoch: int = 0) -> list[EvidenceRecord]:
        """Stored evidence of `epoch`, by offender then view, at most `limit` records."""
        out: list[EvidenceRecord] = []
        prefix = EVIDENCE_PREFIX if epoch == 0 else EPOCH_EVIDENCE_PREFIX + _u64(epoch)
        for _, data in self._scan(prefix):
            if len(out) >= limit:
                break
            out.append(_decode(_evidence_decoder, data, "evidence"))
        return out

    def load_every_epoch_evidence(self, limit: int = 1000) -> list[tuple[int, EvidenceRecord]]:
        """Stored evidence of every epoch with its epoch, at most `limit` records:
        epoch 0's first, then each later epoch's in turn, by offender then view."""
        out = [(0, record) for record in self.load_evidence(limit)]
        for key, data in self._scan(EPOCH_EVIDENCE_PREFIX):
            if len(out) >= limit:
                break
            if len(key) != len(EPOCH_EVIDENCE_PREFIX) + _U64 + _U32 + _U64 + 1:
                raise CorruptStore(f"evidence key of {len(key)} bytes")
            epoch = _read_u64(key[len(EPOCH_EVIDENCE_PREFIX) :][:_U64], "evidence epoch")
            out.append((epoch, _decode(_evidence_decoder, data, "evidence")))
        return out

    def load_certificates(self, *, epoch: int = 0, first_height: int = 1) -> list[Certificate]:
        """Stored certificates of `epoch` at or above its highest finalization's
        view, by view. `first_height` is the epoch's first height: the tip's
        finalization sets the floor only when the tip is in the epoch."""
        certs = []
        prefix = _certificate_prefix(epoch)
        for key, data in self._scan(prefix):
            if len(key) != len(prefix) + _U64 + 1:
                raise CorruptStore(f"certificate key of {len(key)} bytes")
            certs.append(_decode(_certificate_decoder, data, "certificate"))
        floor = max((c.view for c in certs if c.kind == VoteKind.FINALIZE), default=0)
        height, _, _ = self._tip
        if height >= max(first_height, 1):
            finalization = self.finalization_at(height)
            if finalization is not None:
                floor = max(floor, finalization.view)
        return [c for c in certs if c.view >= floor]

    # ---- commits ---------------------------------------------------------------------

    def commit_block(
        self,
        block: Block,
        finalization: Certificate,
        transactions: Sequence[bytes],
        state_root: bytes,
        executed: bytes = b"",
        *,
        batch_digests: Sequence[bytes] = (),
        order_seed: bytes | None = None,
        order_proof: bytes | None = None,
        tx_hashes: Sequence[bytes] | None = None,
    ) -> None:
        """Write one committed block and everything that goes with it in one synced
        batch: the block (by height and digest), its finalization, its transactions
        (by position and by hash), the state root, execution output (receipts), the
        batches it references, its order seed and the seed's proof (an encoded
        order proof; none without a threshold key), and the new tip. Removes its
        transactions from the pending table and prunes voted blocks at or below its
        height.

        `tx_hashes`: the transactions' hashes (keccak of each encoded one), in
        order, when the caller has them already; else they are computed here.

        Raises CommitOutOfOrder unless `block` is the child of the current tip.
        """
        tip_height, tip_digest, _ = self._tip
        if block.height != tip_height + 1 or block.parent != tip_digest:
            raise CommitOutOfOrder(
                f"block at height {block.height} does not extend the tip at {tip_height}"
            )
        if finalization.kind != VoteKind.FINALIZE or finalization.height < block.height:
            raise ValueError("a commit needs a finalization of the block or a descendant")
        if len(state_root) != _DIGEST:
            raise ValueError("state root must be 32 bytes")
        if order_seed is not None and len(order_seed) != _DIGEST:
            raise ValueError("an order seed is 32 bytes")
        if tx_hashes is None:
            tx_hashes = [tx_hash(encoded) for encoded in transactions]
        elif len(tx_hashes) != len(transactions):
            raise ValueError("one hash per transaction")
        digest = block.digest()
        height = _u64(block.height)
        batch = WriteBatch(raw_mode=True)
        batch.put(BLOCK_PREFIX + height, _encoder.encode(block))
        batch.put(BLOCK_HEIGHT_PREFIX + digest, height)
        batch.put(FINALIZATION_PREFIX + height, _encoder.encode(finalization))
        batch.put(STATE_ROOT_PREFIX + height, state_root)
        if executed:
            batch.put(EXECUTED_PREFIX + height, executed)
        if order_seed is not None:
            batch.put(ORDER_SEED_PREFIX + height, order_seed)
        if order_proof is not None:
            batch.put(ORDER_PROOF_PREFIX + height, order_proof)
        for position, (encoded, hash_) in enumerate(zip(transactions, tx_hashes, strict=True)):
            location = height + position.to_bytes(_U32, "big")
            batch.put(TX_PREFIX + location, encoded)
            batch.put(TX_INDEX_PREFIX + hash_, location)
        with self._pending_lock:
            pending = self._pending
            was_pending = [hash_ for hash_ in tx_hashes if hash_ in pending] if pending else []
        for hash_ in was_pending:
            batch.delete(PENDING_PREFIX + hash_)
        for batch_digest in batch_digests:
            if len(batch_digest) != _DIGEST:
                raise ValueError("batch digests are 32 bytes")
            batch.put(BATCH_REF_PREFIX + height + batch_digest, b"")
            batch.put(BATCH_LAST_REF_PREFIX + batch_digest, height)
        with self._voted_lock:
            voted = [(h, d) for h, ds in self._voted.items() if h <= block.height for d in ds]
        for voted_height, voted_digest in voted:
            batch.delete(VOTED_HEIGHT_PREFIX + _u64(voted_height) + voted_digest)
            batch.delete(VOTED_BLOCK_PREFIX + voted_digest)
        batch.put(TIP_KEY, height + digest + _u64(block.view))
        self._db.write(batch, self._synced)
        self._tip = (block.height, digest, block.view)
        if was_pending:
            with self._pending_lock:
                self._pending.difference_update(was_pending)
        with self._voted_lock:
            for voted_height, voted_digest in voted:
                digests = self._voted.get(voted_height)
                if digests is not None:
                    digests.discard(voted_digest)
                    if not digests:
                        del self._voted[voted_height]

    def tip(self) -> tuple[int, bytes, int]:
        """(height, digest, view) of the last committed block; (0, genesis, 0) if none."""
        return self._tip

    def _read_tip(self) -> tuple[int, bytes, int]:
        data = self._db.get(TIP_KEY)
        if data is None:
            return (0, self._genesis_digest, 0)
        if len(data) != _TIP_LENGTH:
            raise CorruptStore(f"tip record is {len(data)} bytes, expected {_TIP_LENGTH}")
        height = int.from_bytes(data[:_U64], "big")
        view = int.from_bytes(data[_U64 + _DIGEST :], "big")
        return (height, bytes(data[_U64 : _U64 + _DIGEST]), view)

    def block_at(self, height: int) -> Block | None:
        data = self._db.get(BLOCK_PREFIX + _u64(height))
        if data is None:
            return None
        block = _decode(_block_decoder, data, "block")
        if block.height != height:
            raise CorruptStore(f"block stored at height {height} says height {block.height}")
        return block

    def committed_in_view(self, view: int) -> Block | None:
        """The committed block proposed in `view`, if any: views grow strictly along
        the chain, so a binary search over heights finds it in O(log height) reads."""
        low, high = 1, self._tip[0]
        while low <= high:
            mid = (low + high) // 2
            block = self.block_at(mid)
            if block is None:  # a height this store lacks: search above it
                low = mid + 1
            elif block.view == view:
                return block
            elif block.view < view:
                low = mid + 1
            else:
                high = mid - 1
        return None

    def view_certificates(self, view: int) -> list[Certificate]:
        """Every certificate of `view` kept here: its notarization and nullification
        (until a later finalization prunes them) and the finalization of the
        committed block proposed in it, when the node holds that block's own."""
        out = self.certificates_at(view)
        block = self.committed_in_view(view)
        if block is not None:
            own = self.own_finalization(block.height, block.digest())
            if own is not None:
                out.append(own)
        return out

    def block_by_digest(self, digest: bytes) -> Block | None:
        """A committed or voted block with this digest."""
        data = self._db.get(BLOCK_HEIGHT_PREFIX + digest)
        if data is None:
            return self.get_voted_block(digest)
        block = self.block_at(_read_u64(data, "block height"))
        if block is None or block.digest() != digest:
            raise CorruptStore(f"digest index for {digest.hex()} names the wrong block")
        return block

    def finalization_at(self, height: int) -> Certificate | None:
        data = self._db.get(FINALIZATION_PREFIX + _u64(height))
        return None if data is None else _decode(_certificate_decoder, data, "finalization")

    def state_root_at(self, height: int) -> bytes | None:
        data = self._db.get(STATE_ROOT_PREFIX + _u64(height))
        if data is not None and len(data) != _DIGEST:
            raise CorruptStore(f"state root at {height} is {len(data)} bytes")
        return None if data is None else bytes(data)

    def executed_at(self, height: int) -> bytes:
        data = self._db.get(EXECUTED_PREFIX + _u64(height))
        return b"" if data is None else bytes(data)

    def transactions_at(self, height: int) -> list[bytes]:
        txs: list[bytes] = []
        for key, data in self._scan(TX_PREFIX + _u64(height)):
            position = int.from_bytes(key[len(TX_PREFIX) + _U64 :], "big")
            if len(key) != len(TX_PREFIX) + _LOCATION_LENGTH or position != len(txs):
                raise CorruptStore(f"transactions at height {height} are not contiguous")
            txs.append(bytes(data))
        return txs

    def find_transaction(self, hash_: bytes) -> tuple[int, int] | None:
        """(height, position) of a committed transaction."""
        data = self._db.get(TX_INDEX_PREFIX + hash_)
        if data is None:
            return None
        if len(data) != _LOCATION_LENGTH:
            raise CorruptStore(f"transaction location is {len(data)} bytes")
        return int.from_bytes(data[:_U64], "big"), int.from_bytes(data[_U64:], "big")

    def committed_among(self, hashes: Sequence[bytes]) -> set[bytes]:
        """The hashes among `hashes` of committed transactions: one multi-key
        read for a whole block, where `find_transaction` per hash costs a read
        (and a Python round trip) each."""
        if not hashes:
            return set()
        found = cast(list[bytes | None], self._db.get([TX_INDEX_PREFIX + h for h in hashes]))
        committed: set[bytes] = set()
        for hash_, data in zip(hashes, found, strict=True):
            if data is None:
                continue
            if len(data) != _LOCATION_LENGTH:
                raise CorruptStore(f"transaction location is {len(data)} bytes")
            committed.add(hash_)
        return committed

    # ---- batches ---------------------------------------------------------------------

    def save_batch(
        self,
        digest: bytes,
        encoded: bytes,
        *,
        own_sequence: int | None = None,
        author: int | None = None,
        synced: bool = True,
    ) -> None:
        """Keep a batch: synced before acknowledging it or, if it is this node's
        own (`own_sequence` given), before broadcasting it; unsynced when a later
        synced write (the vote that relies on it) makes it durable."""
        batch = WriteBatch(raw_mode=True)
        self.stage_batch(batch, digest, encoded, own_sequence=own_sequence, author=author)
        self._db.write(batch, self._synced if synced else self._unsynced)

    def stage_batch(
        self,
        batch: WriteBatch,
        digest: bytes,
        encoded: bytes,
        *,
        own_sequence: int | None = None,
        author: int | None = None,
    ) -> None:
        """Add a batch (and, for an own batch, the next sequence) to `batch`. With
        `author`, the batch is also indexed by the height it arrived at, so it can
        be pruned if no block ever includes it (`prune_unreferenced_batches`)."""
        if len(digest) != _DIGEST:
            raise ValueError("batch digest must be 32 bytes")
        batch.put(BATCH_PREFIX + digest, encoded)
        if author is not None:
            arrival = BATCH_ARRIVAL_PREFIX + _u64(self._tip[0]) + digest
            batch.put(arrival, author.to_bytes(_U32, "big"))
        if own_sequence is not None:
            batch.put(BATCH_SEQUENCE_KEY, _u64(own_sequence + 1))

    # ---- batch acknowledgements and certificates ---------------------------------------

    def acked_batch(self, author: int, round_: int) -> bytes | None:
        """The digest this node acknowledged for `author`'s batch `round_`, if any."""
        data = self._db.get(BATCH_ACK_PREFIX + author.to_bytes(_U32, "big") + _u64(round_))
        if data is None:
            return None
        if len(data) != _DIGEST:
            raise CorruptStore(f"acknowledged digest is {len(data)} bytes")
        return bytes(data)

    def stage_batch_ack(self, batch: WriteBatch, author: int, round_: int, digest: bytes) -> None:
        """Record that this node acknowledges `digest` as `author`'s batch `round_`
        (written synced, through group commit, before the acknowledgement leaves)."""
        if len(digest) != _DIGEST:
            raise ValueError("batch digest must be 32 bytes")
        batch.put(BATCH_ACK_PREFIX + author.to_bytes(_U32, "big") + _u64(round_), digest)

    def save_batch_certificate(self, digest: bytes, encoded: bytes) -> None:
        """Keep a held certificate across restarts (unsynced: it is re-verified
        when loaded, and peers send it again if it is lost)."""
        self._db.put(BATCH_CERTIFICATE_PREFIX + digest, encoded, self._unsynced)

    def delete_batch_certificates(self, digests: Iterable[bytes]) -> None:
        batch = WriteBatch(raw_mode=True)
        for digest in digests:
            batch.delete(BATCH_CERTIFICATE_PREFIX + digest)
        self._db.write(batch, self._unsynced)

    def load_batch_certificates(self) -> list[bytes]:
        """Encoded held certificates, by digest (decoded and verified by the caller)."""
        return [bytes(value) for _, value in self._scan(BATCH_CERTIFICATE_PREFIX)]

    def batch_referenced(self, digest: bytes) -> bool:
        """Whether a committed block names the batch."""
        return self._db.get(BATCH_LAST_REF_PREFIX + digest) is not None

    def save_own_shares(self, height: int, message: bytes) -> None:
        """This validator's decryption shares for the committed block at `height`
        (an encoded share message), synced: they are persisted before they are sent,
        and served again after a restart."""
        self._db.put(OWN_SHARES_PREFIX + _u64(height), message, self._synced)

    def order_seed_at(self, height: int) -> bytes | None:
        """The committed block's order seed (docs/fairness.md, "Content-blind
        order"); None without a threshold key, or no block there."""
        data = self._db.get(ORDER_SEED_PREFIX + _u64(height))
        if data is None:
            return None
        if len(data) != _DIGEST:
            raise CorruptStore(f"order seed at height {height} is {len(data)} bytes")
        return bytes(data)

    def order_proof_at(self, height: int) -> bytes | None:
        """The committed block's encoded order seed proof (the t coin shares the
        seed was combined from); None without a threshold key, no block there,
        or a block committed by a node that did not keep proofs yet."""
        data = self._db.get(ORDER_PROOF_PREFIX + _u64(height))
        return None if data is None else bytes(data)

    def own_shares(self, height: int) -> bytes | None:
        data = self._db.get(OWN_SHARES_PREFIX + _u64(height))
        return None if data is None else bytes(data)

    def write_synced(self, batch: WriteBatch) -> None:
        """One synced write of staged puts (group commit calls it from a thread)."""
        self._db.write(batch, self._synced)

    def get_batch(self, digest: bytes) -> bytes | None:
        data = self._db.get(BATCH_PREFIX + digest)
        return None if data is None else bytes(data)

    def next_batch_sequence(self) -> int:
        """The sequence number of this node's next own batch (0 if it made none)."""
        data = self._db.get(BATCH_SEQUENCE_KEY)
        return 0 if data is None else _read_u64(data, "batch sequence")

    def prune_unreferenced_batches(self, below_height: int, keep_author: int) -> list[bytes]:
        """Delete batches that arrived before `below_height` and that no committed
        block references, except `keep_author`'s (this node's own: its
        transactions may still be pending here). Referenced batches are chain
        data and stay. Returns the deleted digests. Unsynced: a lost delete is
        redone by the next call."""
        batch = WriteBatch(raw_mode=True)
        pruned: list[bytes] = []
        start = _u64(min(self._arrivals_pruned_below, below_height))
        for key, value in self._scan(BATCH_ARRIVAL_PREFIX, stop=_u64(below_height), start=start):
            if len(key) != len(BATCH_ARRIVAL_PREFIX) + _U64 + _DIGEST or len(value) != _U32:
                raise CorruptStore("batch arrival record has the wrong shape")
            digest = key[len(BATCH_ARRIVAL_PREFIX) + _U64 :]
            batch.delete(key)
            referenced = self._db.get(BATCH_LAST_REF_PREFIX + digest) is not None
            if referenced or int.from_bytes(value, "big") == keep_author:
                continue
            batch.delete(BATCH_PREFIX + digest)
            pruned.append(digest)
        if not batch.is_empty():
            self._db.write(batch, self._unsynced)
        # A batch saved from now on arrives at the tip or above (the tip only grows).
        bound = min(below_height, self._tip[0])
        self._arrivals_pruned_below = max(self._arrivals_pruned_below, bound)
        return pruned

    # ---- acknowledged client transactions --------------------------------------------

    def save_pending_transactions(self, encoded_txs: Iterable[bytes]) -> None:
        """Durably keep transactions the API is about to acknowledge (synced)."""
        batch = WriteBatch(raw_mode=True)
        self.stage_pending_transactions(batch, list(encoded_txs))
        self._db.write(batch, self._synced)

    def stage_pending_transactions(
        self,
        batch: WriteBatch,
        encoded_txs: Sequence[bytes],
        hashes: Sequence[bytes] | None = None,
    ) -> None:
        """Add acknowledged transactions, numbered in arrival order, to `batch`.
        `hashes`: their hashes, in order, when the caller has them already."""
        if hashes is None:
            hashes = [tx_hash(encoded) for encoded in encoded_txs]
        elif len(hashes) != len(encoded_txs):
            raise ValueError("one hash per transaction")
        for encoded, hash_ in zip(encoded_txs, hashes, strict=True):
            batch.put(PENDING_PREFIX + hash_, _u64(self._next_arrival) + encoded)
            self._next_arrival += 1
        batch.put(PENDING_SEQUENCE_KEY, _u64(self._next_arrival))
        # Known before the write is done: a commit racing it deletes the record
        # (harmless if it never lands), and one that fails leaves a hash whose
        # delete is a no-op.
        with self._pending_lock:
            self._pending.update(hashes)

    def load_pending_transactions(self) -> list[bytes]:
        """Acknowledged, uncommitted transactions in the order they were saved.
        Entries already committed (a lost unsynced delete) are dropped here."""
        entries: list[tuple[int, bytes]] = []
        stale = WriteBatch(raw_mode=True)
        for key, data in self._scan(PENDING_PREFIX):
            if len(key) != len(PENDING_PREFIX) + _DIGEST or len(data) < _U64:
                raise CorruptStore("pending transaction record has the wrong shape")
            hash_ = key[len(PENDING_PREFIX) :]
            encoded = bytes(data[_U64:])
            if tx_hash(encoded) != hash_:
                raise CorruptStore(f"pending transaction {hash_.hex()} does not match its hash")
            if self._db.get(TX_INDEX_PREFIX + hash_) is not None:
                stale.delete(key)
                with self._pending_lock:
                    self._pending.discard(hash_)
                continue
            entries.append((int.from_bytes(data[:_U64], "big"), encoded))
        if not stale.is_empty():
            self._db.write(stale, self._unsynced)
        entries.sort(key=lambda entry: entry[0])
        return [encoded for _, encoded in entries]

    def remove_pending(self, hashes: Iterable[bytes]) -> None:
        """Forget pending transactions (unsynced: a lost delete is filtered on load)."""
        hashes = list(hashes)
        batch = WriteBatch(raw_mode=True)
        for hash_ in hashes:
            batch.delete(PENDING_PREFIX + hash_)
        self._db.write(batch, self._unsynced)
        with self._pending_lock:
            self._pending.difference_update(hashes)

    # ---- internals -------------------------------------------------------------------

    def _decode_block(self, data: bytes, digest: bytes, what: str) -> Block:
        block = _decode(_block_decoder, data, what)
        if block.digest() != digest:
            raise CorruptStore(f"{what} stored under {digest.hex()} has another digest")
        return block

    def _scan(
        self, prefix: bytes, stop: bytes | None = None, *, start: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with `prefix`, in key order; with `stop`,
        only keys below `prefix + stop`; with `start`, only keys from `prefix + start`."""
        end = None if stop is None else prefix + stop
        for key, value in self._db.items(from_key=prefix if start is None else prefix + start):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                return
            if end is not None and key >= end:
                return
            yield key, value

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()

    def __enter__(self) -> NodeStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
