"""Batches: a validator's bundle of transactions, broadcast before ordering.

Data availability before ordering: each validator cuts the transactions it
received into batches, numbered per author from 0, and broadcasts them;
proposals then carry batch digests.

Wire format: a msgpack array [author, sequence, [tx, ...], [sender, ...]]
where each tx is an encoded signed transaction (sequencer_net.mempool.transaction)
and each sender the 20-byte address that signed the tx at the same position
(an encrypted transaction's envelope signer), as its author checked it at
intake. Only the canonical encoding is accepted, so a batch has one digest,
and it covers the senders:

    batch_digest = keccak256(BATCH_DIGEST_TAG || encoded batch)

The carried senders are a claim of the author. A validator that verifies the
batch (`verify_batch`, the pool) recovers every signature and refuses the
batch unless each recovered sender equals the carried one; a validator that
did not verify it relies on the senders only once the batch is certified by
acknowledgements of which more than f of the power say "verified"
(sequencer_net/batches/certificate.py), so at least one honest validator
checked them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Final

import msgspec
import sha3

from consensus.crypto import ADDRESS_LENGTH, keccak256
from consensus.encoding import Domain
from consensus.limits import U64_MAX
from sequencer_net.canonical import decode_strict
from sequencer_net.mempool.encrypted import ENCRYPTED_TX_PREFIX, transaction_namespace
from sequencer_net.mempool.limits import (
    MAX_BATCH_AUTHOR,
    MAX_BATCH_BYTES,
    MAX_BATCH_TX_BYTES,
    MAX_BATCH_TXS,
    MAX_TX_BYTES,
    BatchLimits,
)
from sequencer_net.mempool.mempool import CheckedTx, Mempool, check_transaction
from sequencer_net.mempool.transaction import InvalidTransaction, Transaction, tx_hash
from sequencer_net.payload.namespaces import native_keccak256_many

BATCH_DIGEST_TAG: Final = b"seqnet/batch/v1\x00"
"""Keeps a batch digest from ever equalling any other keccak the system signs."""


class InvalidBatch(ValueError):
    """Bytes that are not an acceptable batch; subclasses name why."""


class OversizedBatch(InvalidBatch):
    """Longer than MAX_BATCH_BYTES, or its transactions exceed a batch bound."""


class MalformedBatch(InvalidBatch):
    """Not a canonical msgpack batch, or a field out of bounds."""


class EmptyBatch(InvalidBatch):
    """A batch with no transactions: nothing to make available."""


class DuplicateTransaction(InvalidBatch):
    """The same transaction bytes appear twice in one batch."""


class SenderMismatch(InvalidBatch):
    """The senders do not match the transactions: a different count, or a
    carried sender that is not the one its transaction's signature recovers."""


class InvalidBatchTransaction(InvalidBatch):
    """A transaction inside the batch fails decoding, chain or signature checks."""

    def __init__(self, position: int, cause: InvalidTransaction) -> None:
        super().__init__(f"transaction {position}: {type(cause).__name__}: {cause}")
        self.position = position
        self.cause = cause


class Batch(msgspec.Struct, frozen=True, array_like=True):
    author: Annotated[int, msgspec.Meta(ge=0, le=MAX_BATCH_AUTHOR)]  # validator index
    sequence: Annotated[int, msgspec.Meta(ge=0, le=U64_MAX)]  # per author, from 0
    transactions: Annotated[
        list[Annotated[bytes, msgspec.Meta(max_length=MAX_TX_BYTES)]],
        msgspec.Meta(max_length=MAX_BATCH_TXS),
    ]
    senders: Annotated[
        list[Annotated[bytes, msgspec.Meta(min_length=ADDRESS_LENGTH, max_length=ADDRESS_LENGTH)]],
        msgspec.Meta(max_length=MAX_BATCH_TXS),
    ]
    """One per transaction, in order: who signed it, as the author checked."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Batch)
_tx_decoder = msgspec.msgpack.Decoder(Transaction)


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode(batch)


def decode_batch(data: bytes) -> Batch:
    """Decode one batch and check its structure (not its signatures: see verify_batch).

    Checks, in order: raw size, msgpack structure and field bounds, canonical
    encoding, at least one transaction, one sender per transaction, total
    transaction bytes, no duplicates.
    """
    batch = decode_strict(
        data,
        _decoder,
        limit=MAX_BATCH_BYTES,
        what="batch",
        malformed=MalformedBatch,
        oversized=OversizedBatch,
    )
    check_batch_shape(batch)
    return batch


def check_batch_shape(batch: Batch) -> None:
    if not batch.transactions:
        raise EmptyBatch("a batch carries at least one transaction")
    if len(batch.transactions) > MAX_BATCH_TXS:
        raise OversizedBatch(f"batch of {len(batch.transactions)} txs exceeds {MAX_BATCH_TXS}")
    if len(batch.senders) != len(batch.transactions):
        raise SenderMismatch(
            f"{len(batch.senders)} senders for {len(batch.transactions)} transactions"
        )
    total = sum(map(len, batch.transactions))
    if total > MAX_BATCH_TX_BYTES:
        raise OversizedBatch(f"batch transactions total {total} bytes, over {MAX_BATCH_TX_BYTES}")
    if len(set(batch.transactions)) != len(batch.transactions):
        raise DuplicateTransaction("a transaction appears twice in the batch")


def batch_digest(encoded: bytes) -> bytes:
    return keccak256(BATCH_DIGEST_TAG + encoded)


def verify_batch(batch: Batch, domain: Domain) -> list[CheckedTx]:
    """Check every transaction's encoding, chain id and signature, in order, and
    that it recovers the carried sender; raise InvalidBatchTransaction or
    SenderMismatch at the first bad one. Cost: one recovery per tx."""
    check_batch_shape(batch)
    checked: list[CheckedTx] = []
    for position, encoded in enumerate(batch.transactions):
        try:
            checked.append(check_transaction(encoded, domain))
        except InvalidTransaction as exc:
            raise InvalidBatchTransaction(position, exc) from exc
    check_senders(batch, checked)
    return checked


def check_senders(batch: Batch, checked: Sequence[CheckedTx]) -> None:
    """Raise SenderMismatch unless `checked` (the batch's transactions as
    verified, in order) recovered exactly the senders the batch carries."""
    if len(checked) != len(batch.senders):
        raise SenderMismatch(f"{len(checked)} checked for {len(batch.senders)} senders")
    for position, (c, sender) in enumerate(zip(checked, batch.senders, strict=True)):
        if c.sender != sender:
            raise SenderMismatch(f"transaction {position}: carried sender is not its signer")


class BatchBuilder:
    """Decides when this validator cuts its next batch. Pure: time is passed in.

    A batch is cut when the untaken transactions reach `max_txs` or `max_bytes`,
    or when the oldest of them has waited `max_delay_ms`, or sooner, once
    `max_delay_ms` has passed since the previous cut: a transaction that comes
    after a quiet spell is cut at once instead of waiting out the delay alone,
    while a busy validator still cuts at most one batch that is not full per
    `max_delay_ms`. While `max_uncertified` or more of this validator's batches
    are still gathering acknowledgements (`uncertified`, told by the shell),
    the oldest waits `hold_ms` instead: under load one larger batch replaces
    several small ones. Sequences count from `next_sequence` (persisted by the
    node, so a restart never reuses one).
    """

    def __init__(self, author: int, limits: BatchLimits | None = None, next_sequence: int = 0):
        if not 0 <= author <= MAX_BATCH_AUTHOR:
            raise ValueError("batch author out of range")
        self.author = author
        self.limits = limits or BatchLimits()
        self.next_sequence = next_sequence
        self.last_cut_ms: int | None = None
        """When the previous batch was cut (None: none since start)."""

    def due(self, mempool: Mempool, now_ms: int, uncertified: int = 0) -> bool:
        if mempool.untaken_count() == 0:
            return False
        if mempool.untaken_count() >= self.limits.max_txs:
            return True
        if mempool.untaken_bytes() >= self.limits.max_bytes:
            return True
        deadline = self.deadline_ms(mempool, uncertified)
        return deadline is not None and now_ms >= deadline

    def deadline_ms(self, mempool: Mempool, uncertified: int = 0) -> int | None:
        """When the next batch is due (for the shell's timer): `hold_ms` after
        the oldest untaken transaction while `uncertified` own batches are at
        `max_uncertified`; otherwise `max_delay_ms` after it, or `max_delay_ms`
        after the previous cut if that comes first (never before the oldest
        arrived)."""
        oldest = mempool.oldest_untaken_ms()
        if oldest is None:
            return None
        limits = self.limits
        if 0 < limits.max_uncertified <= uncertified:
            return oldest + max(limits.hold_ms, limits.max_delay_ms)
        if self.last_cut_ms is None:
            return oldest
        paced = max(oldest, self.last_cut_ms + limits.max_delay_ms)
        return min(oldest + limits.max_delay_ms, paced)

    def poll(self, mempool: Mempool, now_ms: int, uncertified: int = 0) -> Batch | None:
        """Cut the next batch if one is due: take its transactions from the mempool,
        mark them batched and advance the sequence. None if nothing is due.
        `uncertified`: own batches broadcast and not yet certified."""
        cut = self.cut(mempool, now_ms, uncertified)
        return None if cut is None else cut[0]

    def cut(
        self, mempool: Mempool, now_ms: int, uncertified: int = 0
    ) -> tuple[Batch, list[CheckedTx]] | None:
        """As `poll`, with the checked transactions the batch carries, in its
        order (their hashes and senders, known since intake)."""
        if not self.due(mempool, now_ms, uncertified):
            return None
        taken = mempool.take_batch(self.limits.max_txs, self.limits.max_bytes)
        if not taken:
            return None
        mempool.mark_batched(c.hash for c in taken)
        self.last_cut_ms = now_ms
        batch = Batch(
            author=self.author,
            sequence=self.next_sequence,
            transactions=[c.encoded for c in taken],
            senders=[bytes(c.sender) for c in taken],
        )
        self.next_sequence += 1
        return batch, taken


def batch_tx_hashes(batch: Batch) -> list[bytes]:
    return [tx_hash(tx) for tx in batch.transactions]


def checked_namespace_pairs(checked: Sequence[CheckedTx]) -> list[tuple[int, bytes]]:
    """(namespace, tx hash) of checked transactions, in order: for a batch whose
    every transaction was checked (`checked` one per transaction, in the
    batch's order), what `batch_namespace_pairs` gives, without decoding or
    hashing them again."""
    pairs: list[tuple[int, bytes]] = []
    for c in checked:
        if c.tx is not None:
            pairs.append((c.tx.namespace, c.hash))
        elif c.envelope is not None:
            pairs.append((c.envelope.namespace, c.hash))
        else:  # never made by check_transaction: as batch_namespace_pairs does
            try:
                pairs.append((transaction_namespace(c.encoded), c.hash))
            except InvalidTransaction:
                continue
    return pairs


def batch_namespace_pairs(batch: Batch) -> list[tuple[int, bytes]]:
    """(namespace, tx hash) of the batch's transactions, in order. A transaction
    that does not decode is left out (a verified batch has none, so every voter
    gets the same pairs).

    A plain transaction is decoded here as `decode_transaction` decodes it (the
    size bound, the typed decode, the canonical re-encoding), without its calls
    per transaction; an encrypted one through `transaction_namespace`. The
    hashes (tx_hash) are taken all at once by the C keccak-256 when it is built
    (the same digests, eight at a time where the CPU has AVX-512)."""
    namespaces: list[int] = []
    kept: list[bytes] = []
    add_namespace = namespaces.append
    keep = kept.append
    decode = _tx_decoder.decode
    encode = _encoder.encode
    undecodable = (msgspec.DecodeError, msgspec.ValidationError)
    for encoded in batch.transactions:
        if encoded[:1] != ENCRYPTED_TX_PREFIX:
            if len(encoded) > MAX_TX_BYTES:
                continue
            try:
                tx = decode(encoded)
            except undecodable:
                continue
            if encode(tx) != encoded:
                continue
            add_namespace(tx.namespace)
        else:
            try:
                add_namespace(transaction_namespace(encoded))
            except InvalidTransaction:
                continue
        keep(encoded)
    many = native_keccak256_many()
    hashes = None if many is None else many(kept)
    if hashes is None:  # not built, or a transaction not exactly bytes
        keccak = sha3.keccak_256  # consensus.crypto.keccak256's, without its call
        hashes = [keccak(encoded).digest() for encoded in kept]
    return list(zip(namespaces, hashes, strict=True))
