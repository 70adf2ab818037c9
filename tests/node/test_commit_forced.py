"""Forced L1 inbox transactions execute first in their block (docs/l1.md,
"Forced transactions execute first"): the payload's forced marks, in inbox
order, go before the content-blind order of the rest, through the commit
pipeline as every node runs it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.crypto import PrivateKey, keccak256
from consensus.io import Commit
from consensus.messages import Block, Certificate, VoteKind
from sequencer_net.batches.batch import Batch, batch_digest, encode_batch
from sequencer_net.batches.pool import BatchPool
from sequencer_net.client import dex_transaction
from sequencer_net.execution.engine import SequencedTransaction
from sequencer_net.execution.genesis import GenesisConfig, GenesisDeposit, genesis_state
from sequencer_net.execution.records import OracleReporter
from sequencer_net.execution.state import ExecutionState, subaccount_id
from sequencer_net.execution.transactions import Transfer
from sequencer_net.fairness.order import order_block, sender_rank
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.metrics import Metrics
from sequencer_net.node.commit import CommitPipeline, ResolvedTransaction, split_forced
from sequencer_net.node.status import ChainStatus
from sequencer_net.payload.format import BlockPayload, ForcedEntry, encode_payload
from sequencer_net.payload.namespaces import namespace_root
from sequencer_net.storage.group_commit import GroupCommit
from sequencer_net.storage.node_store import NodeStore
from tests.mempool.factories import carrying_batch
from tests.node.test_commit_execute import ALICE, BOB, DOMAIN, W

CAROL = PrivateKey(keccak256(b"commit-forced/carol"))

GENESIS_DIGEST = keccak256(b"commit-forced/genesis")
SEED = keccak256(b"commit-forced/seed")


def _resolved(sender: bytes, label: bytes) -> ResolvedTransaction:
    h = keccak256(label)
    return ResolvedTransaction(label, SequencedTransaction(h, sender, 0, 7, 1, label))


def test_marked_transactions_go_first_in_inbox_order_whatever_their_rank() -> None:
    senders = [bytes([i]) * 20 for i in range(1, 6)]
    block = [_resolved(s, b"tx %d" % i) for i, s in enumerate(senders)]
    # The forced ones are those the seed ranks last, marked in inbox order
    # (not block order): they still go first, in that order.
    by_rank = sorted(block, key=lambda r: sender_rank(SEED, r.sender))
    last, second_last = by_rank[-1], by_rank[-2]
    marks = [
        ForcedEntry(3, last.sequenced.tx_hash),
        ForcedEntry(8, second_last.sequenced.tx_hash),
        ForcedEntry(9, keccak256(b"committed in an earlier block")),
    ]
    forced, rest = split_forced(block, marks)
    assert forced == [last, second_last]
    assert rest == [r for r in block if r not in forced]  # block order kept
    ordered = order_block(SEED, forced, rest)
    assert ordered[:2] == [last, second_last]
    assert ordered[2:] == order_block(SEED, (), rest)
    # No marks: the content-blind order alone.
    assert split_forced(block, []) == ([], block)


class _NoFetch:
    async def fetch(self, request: object, prefer: int | None = None) -> int:
        raise AssertionError("every batch is held here")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = NodeStore(tmp_path / "chain", genesis_digest=GENESIS_DIGEST, sync=False)
    yield s
    s.close()


def held_batches_pipeline(
    store: NodeStore, state: ExecutionState, decryptor: object = None
) -> CommitPipeline:
    """A commit pipeline over `store` whose batches are all held (no fetch)."""
    pool = BatchPool(store, VerifierPool(DOMAIN, threads=1), GroupCommit(store.write_synced))
    return CommitPipeline(
        store=store,
        pool=pool,
        fetcher=_NoFetch(),  # type: ignore[arg-type]
        mempool=Mempool(DOMAIN),
        state=state,
        metrics=Metrics(),
        status=ChainStatus(),
        accepted_at={},
        state_root_at=lambda height: None,
        own_index=0,
        domain=DOMAIN,
        decryptor=decryptor,  # type: ignore[arg-type]
    )


async def _commit(store: NodeStore, batch: Batch, forced: list[ForcedEntry]) -> CommitPipeline:
    """Commit one block naming `batch` with `forced` marks; the pipeline after it."""
    pipeline = held_batches_pipeline(store, _genesis())
    encoded = encode_batch(batch)
    digest = batch_digest(encoded)
    await pipeline.pool.add_own(digest, encoded, batch)
    pairs = [(0, tx_hash(tx)) for tx in batch.transactions]
    payload = BlockPayload(1_000, 0, b"\x00" * 32, [digest], namespace_root(pairs), forced)
    block = Block(1, 1, GENESIS_DIGEST, 0, encode_payload(payload))
    finalization = Certificate(VoteKind.FINALIZE, 1, 1, block.digest(), [0], [b"\x00" * 65])
    await pipeline.apply(Commit(block, finalization))
    return pipeline


def _genesis() -> ExecutionState:
    """Alice holds 10, Bob 1 (his fees), Carol nothing."""
    return genesis_state(
        GenesisConfig(
            chain_id=DOMAIN.chain_id,
            admin=BOB.address,
            bridge=BOB.address,
            oracles=(OracleReporter(BOB.address, 1),),
            genesis_time=1_700_000_000,
            deposits=(
                GenesisDeposit(subaccount_id(ALICE.address, 0), 10 * W),
                GenesisDeposit(subaccount_id(BOB.address, 0), W),
            ),
        )
    )


def _transfer(key: PrivateKey, to: PrivateKey, amount: int) -> bytes:
    return dex_transaction(key, DOMAIN, 0, Transfer(0, subaccount_id(to.address, 0), amount))


def _carol(pipeline: CommitPipeline) -> int:
    account = pipeline.state.subaccounts.get(subaccount_id(CAROL.address, 0))
    return 0 if account is None else account.collateral


async def test_a_marked_forced_transaction_executes_first_in_its_block(store: NodeStore) -> None:
    """Bob pays Carol 3 out of what Alice's forced transfer (posted to the L1
    Inbox) brings him; Bob's transfer comes first in the batch. Marked forced,
    Alice's executes first and Bob's succeeds; the block lists Alice's first
    (GET /v1/blocks lists the stored, executed order)."""
    ordinary = _transfer(BOB, CAROL, 3 * W)
    forced = _transfer(ALICE, BOB, 5 * W)
    pipeline = await _commit(
        store, carrying_batch(DOMAIN, 0, 0, [ordinary, forced]), [ForcedEntry(12, tx_hash(forced))]
    )
    assert store.transactions_at(1) == [forced, ordinary]
    assert _carol(pipeline) == 3 * W


async def test_unmarked_the_same_transaction_executes_in_block_order(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "unmarked", genesis_digest=GENESIS_DIGEST, sync=False)
    try:
        ordinary = _transfer(BOB, CAROL, 3 * W)
        forced = _transfer(ALICE, BOB, 5 * W)
        pipeline = await _commit(store, carrying_batch(DOMAIN, 0, 0, [ordinary, forced]), [])
        assert store.transactions_at(1) == [ordinary, forced]
        assert _carol(pipeline) == 0  # Bob could not pay yet: his transfer failed
    finally:
        store.close()
