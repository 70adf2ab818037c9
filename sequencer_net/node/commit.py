"""After consensus commits a block: resolve its batches, execute, store, tell.

Committed blocks arrive in height order. For each one the pipeline gathers the
transactions its batches carry (in block order, each transaction once across
the whole chain), hands all of them, every namespace, with their senders
(recovered once, when their batch was verified) to the execution engine, which
checks nonces, charges fees and executes the DEX namespace, and writes block,
certificate, transactions and the new state root in one synced batch. Only
then does the node report the block (status, subscribers, the mempool
forgetting what committed).
"""

from __future__ import annotations

import logging
import time

import trio

from consensus.crypto import Address
from consensus.io import Commit
from sequencer_net.batches.batch import InvalidBatch, decode_batch
from sequencer_net.batches.fetch import BatchFetcher
from sequencer_net.batches.pool import BatchPool, BatchRequest
from sequencer_net.execution.engine import ExecutionBlock, SequencedTransaction, execute_block
from sequencer_net.execution.state import ExecutionState
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.transaction import InvalidTransaction, decode_transaction, tx_hash
from sequencer_net.metrics import Metrics
from sequencer_net.node.status import ChainStatus
from sequencer_net.payload import MalformedPayload, decode_payload
from sequencer_net.storage.node_store import NodeStore

log = logging.getLogger("seqnet.commit")

FETCH_RETRY_S = 0.5


class CommitPipeline:
    def __init__(
        self,
        *,
        store: NodeStore,
        pool: BatchPool,
        fetcher: BatchFetcher,
        mempool: Mempool,
        state: ExecutionState,
        metrics: Metrics,
        status: ChainStatus,
        accepted_at: dict[bytes, float],
    ) -> None:
        self.store = store
        self.pool = pool
        self.fetcher = fetcher
        self.mempool = mempool
        self.state = state
        self.metrics = metrics
        self.status = status
        self.accepted_at = accepted_at

    async def run(self, commits: trio.MemoryReceiveChannel[Commit]) -> None:
        async for commit in commits:
            await self.apply(commit)

    async def _batch(self, digest: bytes) -> bytes:
        """The batch's bytes, fetched from peers until someone has it: a committed
        block's batches were verified by a quorum, so an honest validator has them."""
        while True:
            encoded = self.pool.get(digest)
            if encoded is not None:
                return encoded
            if await self.fetcher.fetch(BatchRequest([digest])) == 0:
                continue
            log.warning("event=committed_batch_missing digest=%s", digest.hex()[:12])
            await trio.sleep(FETCH_RETRY_S)

    async def apply(self, commit: Commit) -> None:
        block = commit.block
        tip_height = self.store.tip()[0]
        if block.height <= tip_height:
            return  # already durable (a replay after restart)
        started = time.perf_counter()
        try:
            payload = decode_payload(block.payload)
            digests, timestamp_ms = payload.batches, payload.timestamp_ms
        except MalformedPayload:
            # A quorum verified it, so this means more than f Byzantine: commit it empty.
            log.error("event=committed_malformed_payload height=%d", block.height)
            digests, timestamp_ms = [], 0
        transactions: list[bytes] = []
        hashes: list[bytes] = []
        senders: list[Address] = []
        nonces: dict[Address, int] = {}
        seen: set[bytes] = set()
        for digest in digests:
            try:
                batch = decode_batch(await self._batch(digest))
            except InvalidBatch:
                continue
            for encoded in batch.transactions:
                h = tx_hash(encoded)
                if h in seen or self.store.find_transaction(h) is not None:
                    continue  # each transaction commits once, at its first inclusion
                try:
                    sender, nonce = self._sender_of(h, encoded)
                except InvalidTransaction:
                    continue  # only possible with more than f Byzantine validators
                seen.add(h)
                transactions.append(encoded)
                hashes.append(h)
                senders.append(sender)
                floor = nonces.get(sender, self.store.next_nonce(sender))
                nonces[sender] = max(floor, nonce + 1)
        self.state = self._execute(block.height, timestamp_ms, transactions, hashes, senders)
        self.store.commit_block(
            block,
            commit.finalization,
            transactions,
            self.state.state_root,
            batch_digests=digests,
            sender_nonces=nonces,
        )
        self.pool.mark_included(list(digests))
        self._after_commit(block.height, block.digest(), hashes, nonces)
        self.metrics.execute_seconds.observe(time.perf_counter() - started)

    def _sender_of(self, tx_hash_: bytes, encoded: bytes) -> tuple[Address, int]:
        """(sender, nonce): remembered from batch verification, else recovered again
        (raises InvalidTransaction; voters verified every batch, so it should not)."""
        known = self.pool.sender_of(tx_hash_)
        if known is not None:
            return known
        checked = self.mempool.check(encoded)
        return checked.sender, checked.nonce

    def _execute(
        self,
        height: int,
        timestamp_ms: int,
        transactions: list[bytes],
        hashes: list[bytes],
        senders: list[Address],
    ) -> ExecutionState:
        """Hand every committed transaction, each namespace, to the engine with its
        hash and recovered sender: the engine checks nonces, charges fees and
        executes the DEX namespace; it never raises on what the transactions hold."""
        engine_txs: list[SequencedTransaction] = []
        for encoded, h, sender in zip(transactions, hashes, senders, strict=True):
            try:
                tx = decode_transaction(encoded)
            except InvalidTransaction:
                continue  # recovered once already, so it decodes; only a bug lands here
            engine_txs.append(
                SequencedTransaction(
                    tx_hash=h,
                    sender=bytes(sender),
                    nonce=tx.nonce,
                    namespace=tx.namespace,
                    fee=tx.fee,
                    payload=tx.payload,
                )
            )
        # Block time never runs backwards for the engine: a leader's clock may.
        seconds = max(timestamp_ms // 1000, self.state.block.timestamp)
        result = execute_block(self.state, ExecutionBlock(height, seconds, tuple(engine_txs)))
        return result.state

    def _after_commit(
        self, height: int, digest: bytes, hashes: list[bytes], nonces: dict[Address, int]
    ) -> None:
        now = time.monotonic()
        for h in hashes:
            accepted = self.accepted_at.pop(h, None)
            if accepted is not None:
                latency = now - accepted
                self.status.latencies_ms.append(latency * 1000)
                self.metrics.commit_latency.observe(latency)
        removed = self.mempool.on_committed(hashes, nonces)
        if removed:
            self.store.remove_pending(removed)
        self.status.height = height
        self.status.last_hash = digest
        self.status.state_root = self.state.state_root
        self.status.committed_txs += len(hashes)
        self.metrics.height.set(height)
        self.metrics.committed_blocks.inc()
        self.metrics.committed_txs.inc(len(hashes))
        log.info(
            "event=committed height=%d hash=%s txs=%d state_root=%s",
            height,
            digest.hex()[:12],
            len(hashes),
            self.state.state_root.hex()[:12],
        )
