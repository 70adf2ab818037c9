"""Batches this validator knows: its own and those other validators broadcast.

A batch enters the pool only after every transaction in it was checked
(decoding, chain id, signature): a validator never votes for a block whose
batches it has not seen and verified. The pool answers peers' batch requests
and tells the leader which batches no block has included yet.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

import msgspec

from consensus.crypto import Address
from consensus.encoding import Domain
from sequencer_net.batches.batch import (
    Batch,
    InvalidBatch,
    batch_digest,
    decode_batch,
    verify_batch,
)
from sequencer_net.mempool.mempool import CheckedTx
from sequencer_net.payload.checks import BatchSize
from sequencer_net.storage.node_store import NodeStore

log = logging.getLogger("seqnet.batches")

MAX_BATCHES_PER_REQUEST = 64
MAX_KNOWN_BATCHES = 100_000
"""Batch digests remembered in memory (the bodies live in the store)."""
MAX_KNOWN_SENDERS = 2_000_000
"""Verified (sender, nonce) of recent transactions, so committing a block does
not recover each signature a second time."""


class BatchRequest(msgspec.Struct, frozen=True, array_like=True):
    digests: Annotated[
        list[Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]],
        msgspec.Meta(min_length=1, max_length=MAX_BATCHES_PER_REQUEST),
    ]


@dataclass(slots=True)
class _Known:
    author: int
    sequence: int
    size: BatchSize
    included: bool  # named by a committed block


def _size_of(batch: Batch) -> BatchSize:
    return BatchSize(len(batch.transactions), sum(len(tx) for tx in batch.transactions))


class BatchPool:
    def __init__(self, domain: Domain, store: NodeStore) -> None:
        self.domain = domain
        self.store = store
        self._known: OrderedDict[bytes, _Known] = OrderedDict()
        self._senders: OrderedDict[bytes, tuple[Address, int]] = OrderedDict()

    def __contains__(self, digest: object) -> bool:
        return digest in self._known or (
            isinstance(digest, bytes) and self.store.get_batch(digest) is not None
        )

    def remember_senders(self, checked: Iterable[CheckedTx]) -> None:
        for c in checked:
            self._senders[c.hash] = (c.sender, c.nonce)
        while len(self._senders) > MAX_KNOWN_SENDERS:
            self._senders.popitem(last=False)

    def sender_of(self, tx_hash: bytes) -> tuple[Address, int] | None:
        """(sender, nonce) of a transaction verified here, if still remembered."""
        return self._senders.get(tx_hash)

    def add_verified(self, digest: bytes, encoded: bytes, batch: Batch) -> None:
        if digest in self._known:
            return
        self.store.save_batch(digest, encoded)
        self._known[digest] = _Known(batch.author, batch.sequence, _size_of(batch), included=False)
        while len(self._known) > MAX_KNOWN_BATCHES:
            self._known.popitem(last=False)

    def receive(self, sender: int, encoded: bytes) -> bytes | None:
        """A batch broadcast by validator `sender`: check it fully, then keep it.
        Returns its digest, or None (logged) when it is refused."""
        try:
            batch = decode_batch(encoded)
            if batch.author != sender:
                raise InvalidBatch(f"batch names author {batch.author}, sent by {sender}")
            digest = batch_digest(encoded)
            if digest not in self._known:
                self.remember_senders(verify_batch(batch, self.domain))
                self.add_verified(digest, encoded, batch)
            return digest
        except InvalidBatch as exc:
            log.warning("event=batch_rejected peer=%d reason=%s", sender, exc)
            return None

    def accept_fetched(self, digest: bytes, encoded: bytes) -> bool:
        """A batch fetched by digest: the digest authenticates it; still verify txs."""
        if batch_digest(encoded) != digest:
            return False
        try:
            batch = decode_batch(encoded)
            self.remember_senders(verify_batch(batch, self.domain))
        except InvalidBatch as exc:
            log.warning("event=fetched_batch_rejected digest=%s reason=%s", digest.hex()[:12], exc)
            return False
        self.add_verified(digest, encoded, batch)
        return True

    def get(self, digest: bytes) -> bytes | None:
        return self.store.get_batch(digest)

    def size_of(self, digest: bytes) -> BatchSize | None:
        """Transactions and bytes of a batch held here (None if not held)."""
        known = self._known.get(digest)
        if known is not None:
            return known.size
        encoded = self.store.get_batch(digest)
        if encoded is None:
            return None
        try:
            return _size_of(decode_batch(encoded))
        except InvalidBatch:
            return None

    def mark_included(self, digests: list[bytes]) -> None:
        for digest in digests:
            known = self._known.get(digest)
            if known is not None:
                known.included = True

    def unincluded(self, exclude: set[bytes], limit: int) -> list[tuple[bytes, BatchSize]]:
        """Batches no committed block names, minus `exclude` (those in uncommitted
        ancestors of the block being built), ordered by (author, sequence), with
        their sizes."""
        candidates = [
            (k.author, k.sequence, d, k.size)
            for d, k in self._known.items()
            if not k.included and d not in exclude
        ]
        candidates.sort(key=lambda c: (c[0], c[1], c[2]))
        return [(d, size) for _, _, d, size in candidates[:limit]]

    def answer(self, request: BatchRequest) -> list[bytes]:
        out = []
        for digest in request.digests:
            encoded = self.store.get_batch(digest)
            if encoded is not None:
                out.append(encoded)
        return out
