"""Blocks that draw no order seed, as subscribers see them: a block whose
order is the same for every seed (no envelope, at most one non-forced
sender) is committed without a seed or a share round, its message carries
`"order": null`, and the SDK accepts it only if its namespace's order is the
same for every seed; a node that leaves out a seed its namespace needs is
caught. Blocks stored with a seed before this rule (one-sender blocks
included) are still served and verified with it.

The harness is the one of tests/api/test_subscription_order.py: the real
commit pipeline, its decryption step opening blocks from real shares."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensus.io import Commit
from consensus.messages import Block
from sequencer_net.api.subscriptions import NO_ORDER, BlockMessages
from sequencer_net.batches.batch import batch_digest, encode_batch
from sequencer_net.client.verify import (
    BlockVerifier,
    SubscriptionVerificationError,
    seedless_execution_order,
)
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.node import commit
from sequencer_net.node.status import CommitFeed
from sequencer_net.payload.format import BlockPayload, encode_payload
from sequencer_net.payload.namespaces import namespace_root
from sequencer_net.storage.node_store import NodeStore
from tests.api.test_openapi import validate
from tests.api.test_subscription_order import (
    GENESIS_DIGEST,
    KEYSET,
    NAMESPACE,
    VALIDATORS,
    ThresholdOpening,
    certificate,
    commit_block,
    executed,
    plain,
    verifier,
)
from tests.mempool.factories import carrying_batch
from tests.node.test_commit_execute import DOMAIN
from tests.node.test_commit_forced import held_batches_pipeline


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = NodeStore(tmp_path / "chain", genesis_digest=GENESIS_DIGEST, sync=False)
    yield s
    s.close()


async def message_of(
    store: NodeStore, feed: CommitFeed, namespace: int = NAMESPACE
) -> dict[str, Any]:
    text = await BlockMessages(store, feed=feed).message(1, namespace)
    assert text is not None
    decoded: dict[str, Any] = json.loads(text)
    return decoded


async def test_a_one_sender_block_has_no_seed_and_its_message_says_so(store: NodeStore) -> None:
    decryptor = ThresholdOpening()
    txs = [plain(0, 0), plain(0, 1, namespace=0), plain(0, 2)]
    p = await commit_block(store, decryptor, txs, [])
    assert decryptor.opened == {}  # no share round
    assert store.order_seed_at(1) is None and store.order_proof_at(1) is None
    assert len(store.transactions_at(1)) == 3
    document = await message_of(store, p.status.feed)
    assert "order" in document and document["order"] is None
    validate(document, {"$ref": "#/components/schemas/NamespaceBlock"})
    block = verifier().verify(document)
    assert block.order_seed is None and not block.order_pending
    assert block.ordered_transactions == executed(store, NAMESPACE) == (txs[0], txs[2])


async def test_a_block_of_two_senders_keeps_its_seed_even_where_a_namespace_has_one(
    store: NodeStore,
) -> None:
    decryptor = ThresholdOpening()
    txs = [plain(0, 0), plain(0, 1), plain(1, 0, namespace=0)]
    p = await commit_block(store, decryptor, txs, [])
    assert set(decryptor.opened) == {1}
    document = await message_of(store, p.status.feed)
    assert document["order"]["seed"] == "0x" + decryptor.opened[1].order_seed.hex()
    block = verifier().verify(document)  # the proof is checked, though not needed here
    assert block.order_seed == decryptor.opened[1].order_seed
    assert block.ordered_transactions == executed(store, NAMESPACE)


async def test_a_block_whose_other_sender_is_forced_needs_no_seed(store: NodeStore) -> None:
    decryptor = ThresholdOpening()
    txs = [plain(0, 0), plain(1, 0), plain(0, 1)]
    p = await commit_block(store, decryptor, txs, [txs[1]])
    assert decryptor.opened == {}
    block = verifier().verify(await message_of(store, p.status.feed))
    assert block.ordered_transactions == executed(store, NAMESPACE) == (txs[1], txs[0], txs[2])


async def test_a_node_leaving_out_a_needed_seed_is_caught(store: NodeStore) -> None:
    decryptor = ThresholdOpening()
    txs = [plain(0, 0), plain(1, 0), plain(2, 0)]
    p = await commit_block(store, decryptor, txs, [])
    honest = await message_of(store, p.status.feed)
    assert honest["order"] is not None
    honest["order"] = None
    with pytest.raises(SubscriptionVerificationError, match="need one"):
        verifier().verify(honest)
    # With `order=later`: an order message saying "no seed" is refused too.
    later = BlockVerifier(VALIDATORS, DOMAIN, NAMESPACE, order_keys={0: KEYSET}, order_later=True)
    del honest["order"]
    assert later.verify(honest).order_pending
    with pytest.raises(SubscriptionVerificationError, match="need one"):
        later.verify({"type": "order", "height": 1, "order": None})
    assert later.pending  # still waiting for the real one


async def test_an_early_block_message_is_completed_by_a_null_order(store: NodeStore) -> None:
    decryptor = ThresholdOpening()
    txs = [plain(0, 0), plain(0, 1)]
    p = await commit_block(store, decryptor, txs, [])
    document = await message_of(store, p.status.feed)
    del document["order"]  # as sent before the node knew the block draws no seed
    later = BlockVerifier(VALIDATORS, DOMAIN, NAMESPACE, order_keys={0: KEYSET}, order_later=True)
    assert later.verify(document).order_pending
    done = later.verify({"type": "order", "height": 1, "order": None})
    assert done.order_seed is None and not done.order_pending
    assert done.ordered_transactions == tuple(txs)
    assert not later.pending


def test_the_feed_and_the_store_say_no_order(store: NodeStore) -> None:
    feed = CommitFeed(0)
    feed.orders_expected = True
    messages = BlockMessages(store, feed=feed)
    assert messages.order(1) == (None, False)  # decided, not known yet
    feed.seedless(1)
    assert messages.order(1) == (NO_ORDER, True)
    assert messages.order_message(1) == '{"type":"order","height":1,"order":null}'
    unkeyed = CommitFeed(0)  # a chain without a threshold key: no `order` field
    assert BlockMessages(store, feed=unkeyed).order(1) == (None, True)


async def test_a_block_stored_with_a_seed_before_the_rule_still_verifies_after_a_restart(
    store: NodeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-sender block committed with a seed, as every block was before the
    rule: served with its seed and proof, which verify, and its order is the
    one any seed gives. A restarted pipeline leaves it as stored (a height at
    or below the tip is never executed again) and commits the next
    one-sender block without a seed."""
    decryptor = ThresholdOpening()
    txs = [plain(0, 0), plain(0, 1)]
    with monkeypatch.context() as m:
        m.setattr(commit, "block_needs_order_seed", lambda *args: True)  # the rule before
        p = await commit_block(store, decryptor, txs, [])
    seed = decryptor.opened[1].order_seed
    assert store.order_seed_at(1) == seed and store.order_proof_at(1) is not None
    document = await message_of(store, p.status.feed)
    assert document["order"]["seed"] == "0x" + seed.hex()
    verified = verifier().verify(document)
    assert verified.order_seed == seed and verified.ordered_transactions == tuple(txs)

    # Restarted: the state is the one at the stored tip (a node reloads it
    # from its state tree).
    restarted = held_batches_pipeline(store, p.state, ThresholdOpening())
    block, finalization = store.block_at(1), store.finalization_at(1)
    assert block is not None and finalization is not None
    root = store.state_root_at(1)
    await restarted.apply(Commit(block, finalization))  # a replay after the restart
    assert store.tip()[0] == 1 and store.order_seed_at(1) == seed
    assert store.state_root_at(1) == root

    later = [plain(0, 2)]
    batch = carrying_batch(DOMAIN, 0, 1, later)
    encoded = encode_batch(batch)
    digest = batch_digest(encoded)
    await restarted.pool.add_own(digest, encoded, batch)
    pairs = [(NAMESPACE, tx_hash(tx)) for tx in later]
    payload = BlockPayload(2_000, 0, b"\x00" * 32, [digest], namespace_root(pairs), [])
    second = Block(2, 2, block.digest(), 0, encode_payload(payload))
    await restarted.apply(Commit(second, certificate(second)))
    assert store.tip()[0] == 2 and store.order_seed_at(2) is None
    assert store.transactions_at(2) == later


def test_the_seedless_order_is_refused_for_two_senders_of_the_namespace() -> None:
    a, b = plain(0, 0), plain(1, 0)
    assert seedless_execution_order([], [a], [tx_hash(a)], DOMAIN) == (a,)
    assert seedless_execution_order([], [a, b], [tx_hash(a), tx_hash(b)], DOMAIN) is None
    assert seedless_execution_order([tx_hash(b)], [a, b], [tx_hash(a), tx_hash(b)], DOMAIN) == (
        b,
        a,
    )
