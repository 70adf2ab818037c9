"""The commit pipeline executes and stores a block in one call on its own
worker thread (one hand-off per block, none through trio's thread cache); an
error in that call reaches the pipeline, and nothing of the failed block is
adopted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from consensus.io import Commit
from consensus.messages import Block, Certificate, VoteKind
from sequencer_net.batches.batch import batch_digest, encode_batch
from sequencer_net.client import dex_transaction
from sequencer_net.execution.state import subaccount_id
from sequencer_net.execution.transactions import Transfer
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.node.commit import CommitPipeline
from sequencer_net.payload.format import BlockPayload, encode_payload
from sequencer_net.payload.namespaces import namespace_root
from sequencer_net.storage.node_store import NodeStore
from tests.mempool.factories import carrying_batch
from tests.node.test_commit_execute import ALICE, BOB, DOMAIN, W
from tests.node.test_commit_forced import GENESIS_DIGEST, _genesis, held_batches_pipeline


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = NodeStore(tmp_path / "chain", genesis_digest=GENESIS_DIGEST, sync=False)
    yield s
    s.close()


@pytest.fixture
def to_thread_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The functions handed to trio's thread cache, in order."""
    calls: list[str] = []
    real = trio.to_thread.run_sync

    async def counting(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(trio.to_thread, "run_sync", counting)
    return calls


def _transfers(count: int) -> list[bytes]:
    """Alice pays Bob 1 wei `count` times, nonces 0, 1, ..."""
    to = subaccount_id(BOB.address, 0)
    return [dex_transaction(ALICE, DOMAIN, n, Transfer(0, to, 1)) for n in range(count)]


async def _block_of(pipeline: CommitPipeline, txs: list[bytes]) -> Commit:
    batch = carrying_batch(DOMAIN, 0, 0, txs)
    encoded = encode_batch(batch)
    digest = batch_digest(encoded)
    await pipeline.pool.add_own(digest, encoded, batch)
    pairs = [(0, tx_hash(tx)) for tx in txs]
    payload = BlockPayload(1_000, 0, b"\x00" * 32, [digest], namespace_root(pairs), [])
    block = Block(1, 1, GENESIS_DIGEST, 0, encode_payload(payload))
    finalization = Certificate(VoteKind.FINALIZE, 1, 1, block.digest(), [0], [b"\x00" * 65])
    return Commit(block, finalization)


def _alice(pipeline: CommitPipeline) -> int:
    return pipeline.state.subaccounts[subaccount_id(ALICE.address, 0)].collateral


@pytest.mark.parametrize("count", [1, 20])
async def test_a_block_is_executed_and_stored_in_one_call_on_the_pipeline_thread(
    store: NodeStore, to_thread_calls: list[str], monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    pipeline = held_batches_pipeline(store, _genesis())
    txs = _transfers(count)
    commit = await _block_of(pipeline, txs)
    to_thread_calls.clear()  # what adding the batch cost is not the pipeline's
    threads: dict[str, str] = {}
    real_commit = store.commit_block

    def commit_block(*args: Any, **kwargs: Any) -> None:
        threads["store"] = threading.current_thread().name
        real_commit(*args, **kwargs)

    monkeypatch.setattr(store, "commit_block", commit_block)
    await pipeline.apply(commit)
    assert to_thread_calls == []
    assert threads == {"store": "seqnet-commit"}
    assert pipeline._worker.calls == 1  # execution and storage together
    assert store.tip()[0] == 1
    assert store.transactions_at(1) == txs
    assert pipeline.state.height == 1
    assert _alice(pipeline) < 10 * W  # the transfers and their fees went out
    assert pipeline.status.height == 1


async def test_a_failed_synced_write_surfaces_and_the_block_is_not_adopted(
    store: NodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = held_batches_pipeline(store, _genesis())
    commit = await _block_of(pipeline, _transfers(2))
    before = pipeline.state

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(store, "commit_block", broken)
    with pytest.raises(OSError, match="disk gone"):
        await pipeline.apply(commit)
    assert pipeline.state is before
    assert pipeline.status.height == 0
    assert store.tip()[0] == 0
