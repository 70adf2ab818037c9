"""Building a leader's payload and checking a proposed one.

Build: wait (briefly) for a batch when there is none, then take the current
time, the latest executed state root, and every batch no committed block and
no uncommitted ancestor of the new block names yet.

Verify: well-formed; a timestamp no earlier than the parent's and not too far
in the future; a state root equal to this validator's own at that height
(waiting a little for its own execution to get there); every named batch
present and verified here (fetched from the proposer, then from other peers,
when missing).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import trio

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

POLL_S = 0.01


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
        executed: Callable[[], tuple[int, bytes]],
        state_root_at: Callable[[int], bytes | None],
        empty_block_wait_ms: int,
        state_wait_ms: int,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.core = core
        self.pool = pool
        self.fetcher = fetcher
        self.genesis_time_ms = genesis_time_ms
        self.executed = executed
        self.state_root_at = state_root_at
        self.empty_block_wait_ms = empty_block_wait_ms
        self.state_wait_ms = state_wait_ms
        self.clock_ms = clock_ms

    def _payload_of(self, block: Block | None) -> BlockPayload | None:
        if block is None or block.height == 0:
            return None
        try:
            return decode_payload(block.payload)
        except MalformedPayload:
            return None

    def _timestamp_of(self, block: Block | None) -> int | None:
        if block is not None and block.height == 0:
            return self.genesis_time_ms
        payload = self._payload_of(block)
        return None if payload is None else payload.timestamp_ms

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

    async def build(self, parent_digest: bytes) -> bytes:
        """The payload of a new block on `parent_digest`; waits up to the empty-block
        interval for a first batch so an idle network does not spin empty blocks."""
        exclude = self._ancestor_batches(parent_digest)
        with trio.move_on_after(self.empty_block_wait_ms / 1000):
            while not self.pool.unincluded(exclude, 1):
                await trio.sleep(POLL_S)
        parent = self.core.known_block(parent_digest)
        parent_time = self._timestamp_of(parent) or 0
        digests = self.pool.unincluded(exclude, MAX_BATCHES_PER_BLOCK)
        state_height, state_root = self.executed()
        parent_payload = self._payload_of(parent)
        if parent_payload is not None and parent_payload.state_height > state_height:
            # Our execution lags the state the parent vouched for: vouch for that.
            state_height, state_root = parent_payload.state_height, parent_payload.state_root
        return encode_payload(
            BlockPayload(
                timestamp_ms=max(self.clock_ms(), parent_time),
                state_height=state_height,
                state_root=state_root,
                batches=digests,
            )
        )

    async def verify(self, block: Block) -> bool:
        try:
            payload = decode_payload(block.payload)
        except MalformedPayload as exc:
            return self._reject(block, f"malformed: {exc}")
        if payload.timestamp_ms > self.clock_ms() + MAX_CLOCK_DRIFT_MS:
            return self._reject(block, "timestamp in the future")
        parent = self.core.known_block(block.parent)
        parent_time = self._timestamp_of(parent)
        if parent_time is not None and payload.timestamp_ms < parent_time:
            return self._reject(block, "timestamp before the parent's")
        parent_payload = self._payload_of(parent)
        if parent_payload is not None and payload.state_height < parent_payload.state_height:
            return self._reject(block, "state height below the parent's")
        if payload.state_height >= block.height:
            return self._reject(block, "state height not below the block's")
        if not await self._state_matches(payload.state_height, payload.state_root):
            return self._reject(block, f"state root at height {payload.state_height} differs")
        missing = [d for d in payload.batches if d not in self.pool]
        for i in range(0, len(missing), MAX_BATCHES_PER_REQUEST):
            chunk = missing[i : i + MAX_BATCHES_PER_REQUEST]
            await self.fetcher.fetch(BatchRequest(chunk), prefer=block.proposer)
        still = [d for d in payload.batches if d not in self.pool]
        if still:
            return self._reject(block, f"{len(still)} batches unavailable")
        return True

    async def _state_matches(self, height: int, root: bytes) -> bool:
        """Compare with our own state root at `height`, waiting a bounded time for
        our execution to reach it (it trails consensus by a block or two)."""
        with trio.move_on_after(self.state_wait_ms / 1000):
            while self.executed()[0] < height:
                await trio.sleep(POLL_S)
        ours = self.state_root_at(height)
        if ours is None:
            return False  # still behind: do not vouch for a root we cannot check
        return ours == root

    def _reject(self, block: Block, reason: str) -> bool:
        log.warning("event=payload_rejected view=%d reason=%s", block.view, reason)
        return False
