"""Building a leader's payload and checking a proposed one.

Build: the current time and every batch no committed block and no
uncommitted ancestor of the new block names yet. Verify: well-formed, a
timestamp no earlier than the parent's and not too far in the future, and every
named batch present and verified here (fetched from the proposer, then from
other peers, when missing).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from consensus.core import ConsensusCore
from consensus.messages import Block
from sequencer_net.batch_pool import MAX_BATCHES_PER_REQUEST, BatchPool, BatchRequest
from sequencer_net.fetch import BatchFetcher
from sequencer_net.payload import (
    MAX_BATCHES_PER_BLOCK,
    MAX_CLOCK_DRIFT_MS,
    BlockPayload,
    MalformedPayload,
    decode_payload,
    encode_payload,
)

log = logging.getLogger("seqnet.payload")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class PayloadService:
    def __init__(
        self,
        *,
        core: ConsensusCore,
        pool: BatchPool,
        fetcher: BatchFetcher,
        genesis_time_ms: int,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.core = core
        self.pool = pool
        self.fetcher = fetcher
        self.genesis_time_ms = genesis_time_ms
        self.clock_ms = clock_ms

    def _timestamp_of(self, block: Block | None) -> int | None:
        if block is None:
            return None
        if block.height == 0:
            return self.genesis_time_ms
        try:
            return decode_payload(block.payload).timestamp_ms
        except MalformedPayload:
            return None

    def _ancestor_batches(self, parent_digest: bytes) -> set[bytes]:
        """Batches named by the uncommitted ancestors of a new block (parent included)."""
        names: set[bytes] = set()
        digest = parent_digest
        committed = self.core.committed.height
        while True:
            block = self.core.known_block(digest)
            if block is None or block.height <= committed:
                return names
            with contextlib.suppress(MalformedPayload):
                names.update(decode_payload(block.payload).batches)
            digest = block.parent

    def build(self, parent_digest: bytes) -> bytes:
        parent_time = self._timestamp_of(self.core.known_block(parent_digest)) or 0
        digests = self.pool.unincluded(
            self._ancestor_batches(parent_digest), MAX_BATCHES_PER_BLOCK
        )
        timestamp = max(self.clock_ms(), parent_time)
        return encode_payload(BlockPayload(timestamp_ms=timestamp, batches=digests))

    async def verify(self, block: Block) -> bool:
        try:
            payload = decode_payload(block.payload)
        except MalformedPayload as exc:
            log.warning("event=payload_rejected view=%d reason=%s", block.view, exc)
            return False
        if payload.timestamp_ms > self.clock_ms() + MAX_CLOCK_DRIFT_MS:
            log.warning("event=payload_rejected view=%d reason=timestamp_in_future", block.view)
            return False
        parent_time = self._timestamp_of(self.core.known_block(block.parent))
        if parent_time is not None and payload.timestamp_ms < parent_time:
            log.warning("event=payload_rejected view=%d reason=timestamp_before_parent", block.view)
            return False
        missing = [d for d in payload.batches if d not in self.pool]
        for i in range(0, len(missing), MAX_BATCHES_PER_REQUEST):
            chunk = missing[i : i + MAX_BATCHES_PER_REQUEST]
            await self.fetcher.fetch(BatchRequest(chunk), prefer=block.proposer)
        still = [d for d in payload.batches if d not in self.pool]
        if still:
            log.info(
                "event=payload_unavailable view=%d missing_batches=%d", block.view, len(still)
            )
            return False
        return True
