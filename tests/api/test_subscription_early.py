"""A block reaches its subscribers as soon as its inclusion is provable, before
it executes: the block message goes out when consensus commits it here with
its own certificate and batches (`CommitFeed.decided`), without its order when
the order seed is not known yet; the order message follows once the t coin
shares are in (`CommitFeed.ordered`), or the order rides in the block message
when already known. The SDK verifies both: a block is handed on with
`order=False` as soon as its inclusion verifies, and again, ordered, when its
order verifies; with `order=True` (the default) only ordered, in height order.
Lies in either message are caught; a reconnect resumes from the lowest height
whose order is missing, with no gap and no duplicate."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from consensus.crypto import keccak256
from consensus.messages import Block
from sequencer_net.api.subscriptions import (
    SubscriptionLimits,
    Subscriptions,
    certificate_json,
    order_json,
)
from sequencer_net.batches.batch import batch_digest, encode_batch
from sequencer_net.client import verify as verify_module
from sequencer_net.client.subscribe import SubscriptionSession
from sequencer_net.client.verify import (
    BlockVerifier,
    SubscriptionVerificationError,
    VerifiedBlock,
)
from sequencer_net.fairness.order import order_seed_tag
from sequencer_net.fairness.order_proof import encode_order_proof, verify_order_seed
from sequencer_net.fairness.tdh2 import coin_share
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.node.status import CommitFeed, DecidedBlock
from sequencer_net.payload.format import BlockPayload, encode_payload
from sequencer_net.payload.namespaces import namespace_root
from sequencer_net.storage.node_store import NodeStore
from tests.api.test_openapi import validate
from tests.api.test_subscription_order import (
    GENESIS_DIGEST,
    KEYSET,
    NAMESPACE,
    SHARES,
    VALIDATORS,
    certificate,
    plain,
)
from tests.api.test_subscriptions import FakeSocket, until
from tests.mempool.factories import carrying_batch
from tests.node.test_commit_execute import DOMAIN


class EarlyChain:
    """What the commit pipeline tells the feed, step by step: decided (block,
    own certificate, batches), ordered (seed and proof), stored."""

    def __init__(self, store: NodeStore) -> None:
        self.store = store
        self.feed = CommitFeed()
        self.feed.orders_expected = True
        self.blocks: list[Block] = []
        self.batches: list[bytes] = []
        self.txs: list[list[bytes]] = []
        self.nonce = 0

    def decide(self) -> Block:
        """The next block, decided under its own certificate."""
        block = self.next_block()
        self.tell(block.height)
        return block

    def tell(self, height: int, certified_by: Block | None = None) -> None:
        """Block `height` decided, under its own certificate or `certified_by`'s."""
        block = self.blocks[height - 1]
        proof = certificate(certified_by or block)
        self.feed.decided(DecidedBlock(block, proof, (self.batches[height - 1],)))

    def next_block(self) -> Block:
        """The next block, holding three namespace-NAMESPACE transactions from
        three senders and one of namespace 0 (not decided yet)."""
        height = len(self.blocks) + 1
        parent = self.blocks[-1].digest() if self.blocks else GENESIS_DIGEST
        txs = [plain(sender, self.nonce) for sender in (0, 1, 2)] + [
            plain(3, self.nonce, namespace=0)
        ]
        self.nonce += 1
        encoded = encode_batch(carrying_batch(DOMAIN, 0, height - 1, txs))
        digest = batch_digest(encoded)
        pairs = [(NAMESPACE, tx_hash(t)) for t in txs[:3]] + [(0, tx_hash(txs[3]))]
        payload = BlockPayload(1_000 * height, 0, b"\x00" * 32, [digest], namespace_root(pairs))
        block = Block(height, height, parent, 0, encode_payload(payload))
        self.blocks.append(block)
        self.batches.append(encoded)
        self.txs.append(txs)
        return block

    def order_of(self, height: int, holders: Sequence[int] = (0, 1)) -> tuple[bytes, bytes]:
        tag = order_seed_tag(DOMAIN.chain_id, height, self.blocks[height - 1].digest())
        shares = [coin_share(SHARES[i], tag) for i in holders]
        return verify_order_seed(tag, shares, KEYSET), encode_order_proof(shares)

    def order(self, height: int) -> None:
        self.feed.ordered(height, *self.order_of(height))

    def store_block(self, height: int) -> None:
        block = self.blocks[height - 1]
        seed, proof = self.order_of(height)
        self.store.save_batch(
            batch_digest(self.batches[height - 1]), self.batches[height - 1], author=0
        )
        self.store.commit_block(
            block,
            certificate(block),
            self.txs[height - 1],
            keccak256(b"root"),
            batch_digests=[batch_digest(self.batches[height - 1])],
            order_seed=seed,
            order_proof=proof,
        )
        self.feed.announce(height)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[EarlyChain]:
    store = NodeStore(tmp_path / "chain", genesis_digest=GENESIS_DIGEST, sync=False)
    try:
        yield EarlyChain(store)
    finally:
        store.close()


def serving(chain: EarlyChain) -> Subscriptions:
    return Subscriptions(
        store=chain.store,
        mempool=Mempool(DOMAIN),
        feed=chain.feed,
        limits=SubscriptionLimits(),
        receipt=lambda height, index: None,
    )


def session(order: bool, from_height: int = 1) -> SubscriptionSession:
    verifier = BlockVerifier(VALIDATORS, DOMAIN, NAMESPACE, from_height, order_keys={0: KEYSET})
    return SubscriptionSession(["http://127.0.0.1:1"], verifier, order=order)


def handed(s: SubscriptionSession, messages: list[dict[str, Any]]) -> list[VerifiedBlock]:
    out: list[VerifiedBlock] = []
    for m in messages:
        out.extend(s.on_text(json.dumps(m)))
    return out


def kinds(messages: list[dict[str, Any]]) -> list[tuple[str, int, bool]]:
    """(type, height, carries the order) of each message."""
    return [(m["type"], m["height"], "order" in m) for m in messages]


async def test_the_block_goes_out_before_its_order_and_the_order_follows(
    chain: EarlyChain,
) -> None:
    subs = serving(chain)
    socket = FakeSocket({"namespace": str(NAMESPACE), "from": "1", "order": "later"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, socket)
        await until(lambda: socket.accepted)
        chain.decide()
        await until(lambda: len(socket.messages) == 1)
        chain.decide()  # the next block does not wait for the first one's order
        await until(lambda: len(socket.messages) == 2)
        chain.order(1)
        await until(lambda: len(socket.messages) == 3)
        chain.order(2)
        chain.store_block(1)
        chain.store_block(2)
        await until(lambda: len(socket.messages) == 4)
        chain.decide()
        chain.order(3)  # known before this subscriber looks: inlined
        await until(lambda: len(socket.messages) == 5)
        nursery.cancel_scope.cancel()
    assert kinds(socket.messages) == [
        ("block", 1, False),
        ("block", 2, False),
        ("order", 1, True),
        ("order", 2, True),
        ("block", 3, True),
    ]

    for m in socket.messages:
        kind = "NamespaceBlock" if m["type"] == "block" else "OrderMessage"
        validate(m, {"$ref": f"#/components/schemas/{kind}"})
    early = handed(session(order=False), socket.messages)
    assert [(b.height, b.order_pending) for b in early] == [
        (1, True),
        (2, True),
        (1, False),
        (2, False),
        (3, False),
    ]
    assert early[0].ordered_transactions is None and early[0].order_seed is None
    assert early[0].transactions == tuple(chain.txs[0][:3])
    waiting = handed(session(order=True), socket.messages)
    assert [b.height for b in waiting] == [1, 2, 3]
    assert all(not b.order_pending and b.ordered_transactions is not None for b in waiting)
    # The order given later is the one the stored message carries inline.
    for height in (1, 2):
        text = await subs.messages.message(height, NAMESPACE)
        assert text is not None
        stored = session(order=True, from_height=height).on_text(text)
        assert stored[0].ordered_transactions == waiting[height - 1].ordered_transactions
        assert stored[0].order_seed == waiting[height - 1].order_seed


class AtOnceSender:
    """A sender whose socket always takes a message at once: what a parked
    subscriber is owed goes out from the feed's change (`Subscriptions._push`)."""

    def __init__(self, websocket: FakeSocket) -> None:
        self.websocket = websocket
        self.task_sends = 0

    async def send(self, message: Any) -> None:
        self.task_sends += 1
        await self.websocket.send_text(message.text)

    def send_at_once(self, message: Any) -> bool:
        self.websocket.messages.append(msgspec.json.decode(message.text))
        return True

    def has_pending(self) -> bool:
        return False

    async def flush(self) -> None:
        return None


async def test_pushed_messages_follow_the_tasks_rule_orders_first_in_height_order(
    chain: EarlyChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each change is pushed to the parked `order=later` subscriber, by the rule
    its task follows: a block without its order at once, an owed order only
    after every lower one (2's waits for 1's), orders before the next block,
    an order known before its block inlined."""
    from sequencer_net.api import subscriptions as subscriptions_module

    senders: list[AtOnceSender] = []

    def at_once(websocket: Any) -> AtOnceSender:
        senders.append(AtOnceSender(websocket))
        return senders[-1]

    monkeypatch.setattr(subscriptions_module, "sender_for", at_once)
    subs = serving(chain)
    socket = FakeSocket({"namespace": str(NAMESPACE), "from": "1", "order": "later"})

    def parked() -> bool:
        return bool(subs._block_subscribers) and all(s.parked for s in subs._block_subscribers)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, socket)
        await until(parked)
        chain.decide()
        chain.decide()
        chain.order(2)
        assert kinds(socket.messages) == [("block", 1, False), ("block", 2, False)]
        chain.order(1)
        chain.next_block()
        chain.order(3)
        chain.tell(3)
        chain.decide()
        await until(parked)
        nursery.cancel_scope.cancel()
    assert kinds(socket.messages) == [
        ("block", 1, False),
        ("block", 2, False),
        ("order", 1, True),
        ("order", 2, True),
        ("block", 3, True),
        ("block", 4, False),
    ]
    assert senders[0].task_sends == 0 and subs.pushed == 6
    early = handed(session(order=False), socket.messages)
    assert [(b.height, b.order_pending) for b in early] == [
        (1, True),
        (2, True),
        (1, False),
        (2, False),
        (3, False),
        (4, True),
    ]


async def test_by_default_a_block_waits_for_its_order_not_for_its_execution(
    chain: EarlyChain,
) -> None:
    subs = serving(chain)
    socket = FakeSocket({"namespace": str(NAMESPACE), "from": "1"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, socket)
        await until(lambda: socket.accepted)
        chain.decide()
        chain.decide()
        for _ in range(50):
            await trio.sleep(0)
        assert socket.messages == []  # no order known yet
        chain.order(1)
        await until(lambda: len(socket.messages) == 1)
        chain.order(2)
        await until(lambda: len(socket.messages) == 2)
        nursery.cancel_scope.cancel()
    assert chain.store.tip()[0] == 0  # neither block executed nor stored
    assert kinds(socket.messages) == [("block", 1, True), ("block", 2, True)]
    assert [b.height for b in handed(session(order=True), socket.messages)] == [1, 2]


async def test_history_then_early_blocks_without_gap_or_duplicate(chain: EarlyChain) -> None:
    for height in (1, 2, 3):
        chain.decide()
        chain.order(height)
        chain.store_block(height)
    chain.decide()  # decided, order unknown, not stored
    subs = serving(chain)
    socket = FakeSocket({"namespace": str(NAMESPACE), "from": "2", "order": "later"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, socket)
        await until(lambda: len(socket.messages) == 3)
        chain.order(4)
        chain.decide()
        await until(lambda: len(socket.messages) == 5)
        nursery.cancel_scope.cancel()
    assert kinds(socket.messages) == [
        ("block", 2, True),
        ("block", 3, True),
        ("block", 4, False),
        ("order", 4, True),
        ("block", 5, False),
    ]
    blocks = handed(session(order=True, from_height=2), socket.messages)
    assert [b.height for b in blocks] == [2, 3, 4]


async def reconnect_from_2(chain: EarlyChain) -> list[dict[str, Any]]:
    """A new connection from height 2 (block 2's order known, 3's on the way)."""
    again = FakeSocket({"namespace": str(NAMESPACE), "from": "2", "order": "later"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serving(chain).blocks, again)
        await until(lambda: len(again.messages) == 2)
        chain.order(3)
        await until(lambda: len(again.messages) == 3)
        nursery.cancel_scope.cancel()
    return again.messages


async def test_a_reconnect_resumes_from_the_lowest_height_missing_its_order(
    chain: EarlyChain,
) -> None:
    for _ in range(3):
        chain.decide()
    chain.order(1)
    subs = serving(chain)
    first = FakeSocket({"namespace": str(NAMESPACE), "from": "1", "order": "later"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, first)
        await until(lambda: len(first.messages) == 3)
        nursery.cancel_scope.cancel()
    assert kinds(first.messages) == [("block", 1, True), ("block", 2, False), ("block", 3, False)]
    for order in (True, False):
        s = session(order)
        got = handed(s, first.messages)
        assert [(b.height, b.order_pending) for b in got] == (
            [(1, False)] if order else [(1, False), (2, True), (3, True)]
        )
        # The connection drops; the next one starts from height 2.
        assert "from=2" in s.url() and ("order=later" in s.url()) is not order
        chain.order(2)
        again = await reconnect_from_2(chain)
        assert kinds(again) == [("block", 2, True), ("block", 3, False), ("order", 3, True)]
        resumed = handed(s, again)
        # Blocks 2 and 3 again, each handed on once more only with its order.
        assert [(b.height, b.order_pending) for b in resumed] == [(2, False), (3, False)]
        assert s.next_height == 4
        del chain.feed.orders[2], chain.feed.orders[3]  # the same again for the other mode


def lie(message: dict[str, Any], change: Any) -> str:
    forged: dict[str, Any] = json.loads(json.dumps(message))
    change(forged)
    return json.dumps(forged)


async def early_messages(chain: EarlyChain) -> tuple[dict[str, Any], dict[str, Any]]:
    """Block 1's message without its order, then its order message."""
    chain.decide()
    subs = serving(chain)
    found = await subs.messages.early_message(1, NAMESPACE)
    assert found is not None
    message, complete = found
    text = message.text
    assert not complete
    chain.order(1)
    order = subs.messages.order_message(1)
    assert order is not None
    return msgspec.json.decode(text), msgspec.json.decode(order)


async def test_a_lying_order_message_is_caught(chain: EarlyChain) -> None:
    block, order = await early_messages(chain)
    shares = order["order"]["shares"]
    chain.decide()
    other_seed, other_proof = chain.order_of(2)  # block 2's coin, honest in itself

    def seed(m: dict[str, Any]) -> None:
        m["order"]["seed"] = "0x" + keccak256(b"a seed the node likes").hex()

    def one_share(m: dict[str, Any]) -> None:
        m["order"]["shares"] = shares[:1]

    def forged_value(m: dict[str, Any]) -> None:
        m["order"]["shares"][0]["value"] = shares[1]["value"]

    def another_blocks_coin(m: dict[str, Any]) -> None:
        m["order"] = order_json(other_seed, other_proof)

    def other_height(m: dict[str, Any]) -> None:
        m["height"] = 2

    cases = [
        (seed, "the seed sent is not the one its shares prove"),
        (one_share, "exactly 2 coin shares, not 1"),
        (forged_value, "does not verify"),
        (another_blocks_coin, "does not verify"),
        (other_height, "not awaiting one"),
    ]
    for change, reason in cases:
        s = session(order=False)
        assert [b.order_pending for b in s.on_text(json.dumps(block))] == [True]
        with pytest.raises(SubscriptionVerificationError, match=reason):
            s.on_text(lie(order, change))
    # An order message with no block awaiting it.
    with pytest.raises(SubscriptionVerificationError, match="not awaiting one"):
        session(order=False).on_text(json.dumps(order))
    s = session(order=True)
    assert s.on_text(json.dumps(block)) == []
    assert [b.height for b in s.on_text(json.dumps(order))] == [1]


async def test_a_lying_early_block_is_caught(chain: EarlyChain) -> None:
    block, _ = await early_messages(chain)

    def dropped(m: dict[str, Any]) -> None:
        m["transactions"].pop()

    def signature(m: dict[str, Any]) -> None:
        m["certificate"]["signatures"][0] = m["certificate"]["signatures"][1]

    def payload(m: dict[str, Any]) -> None:
        m["block"]["payload"] = m["block"]["payload"][:-2] + "ff"

    cases = [
        (dropped, "namespace proof"),
        (signature, "not a quorum of valid validator signatures"),
        (payload, "the block hash sent is not the digest"),
    ]
    for change, reason in cases:
        with pytest.raises(SubscriptionVerificationError, match=reason):
            session(order=False).on_text(lie(block, change))
    # A verifier not told that orders may come later still wants the order inline.
    plain_verifier = BlockVerifier(VALIDATORS, DOMAIN, NAMESPACE, order_keys={0: KEYSET})
    with pytest.raises(SubscriptionVerificationError, match="carries no order proof"):
        plain_verifier.verify(block)


async def test_a_resent_block_must_be_the_one_verified_before(chain: EarlyChain) -> None:
    block, _ = await early_messages(chain)
    s = session(order=False)
    assert [b.height for b in s.on_text(json.dumps(block))] == [1]
    s.url()  # reconnects from height 1
    other = Block(1, 1, GENESIS_DIGEST, 1, chain.blocks[0].payload)  # another proposer
    forged = json.loads(json.dumps(block))
    forged["block"]["proposer"] = 1
    forged["block"]["hash"] = "0x" + other.digest().hex()
    forged["certificate"] = certificate_json(certificate(other))
    with pytest.raises(SubscriptionVerificationError, match="another block than the one verified"):
        s.on_text(json.dumps(forged))


async def test_withheld_orders_are_bounded(
    chain: EarlyChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = session(order=True)
    subs = serving(chain)
    for height in range(1, 4):
        chain.decide()
        found = await subs.messages.early_message(height, NAMESPACE)
        assert found is not None
        assert s.on_text(found[0].text) == []
    assert len(s.verifier.pending) == 3
    monkeypatch.setattr(verify_module, "MAX_PENDING_ORDERS", 3)
    chain.decide()
    found = await subs.messages.early_message(4, NAMESPACE)
    assert found is not None
    with pytest.raises(SubscriptionVerificationError, match="already wait for their order"):
        s.on_text(found[0].text)


async def test_a_block_committed_under_a_descendants_certificate_goes_out_with_its_proof(
    chain: EarlyChain,
) -> None:
    first, second = chain.next_block(), chain.next_block()
    subs = serving(chain)
    socket = FakeSocket({"namespace": str(NAMESPACE), "from": "1", "order": "later"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, socket)
        await until(lambda: socket.accepted)
        chain.tell(1, certified_by=second)  # the descendant's block is not decided yet
        for _ in range(50):
            await trio.sleep(0)
        assert socket.messages == []
        chain.tell(2)
        await until(lambda: len(socket.messages) == 2)
        nursery.cancel_scope.cancel()
    assert kinds(socket.messages) == [("block", 1, False), ("block", 2, False)]
    assert socket.messages[0]["certificate"] is None
    assert socket.messages[0]["finalized_by"]["certificate"]["height"] == 2
    s = session(order=False)
    verified = handed(s, socket.messages)
    assert [(b.height, b.finalized_by) for b in verified] == [(1, 2), (2, None)]
    assert first.digest() == verified[0].hash
    # A descendant proof whose chain does not link is not built: the block waits.
    assert subs.messages._decided_finality(first, first.digest(), certificate(first)) is not None
    other = Block(9, 9, GENESIS_DIGEST, 0, first.payload)
    assert subs.messages._decided_finality(first, first.digest(), certificate(other)) is None


async def test_the_executed_height_follows_execution_not_the_decision(chain: EarlyChain) -> None:
    subs = serving(chain)
    socket = FakeSocket({})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.executed, socket)
        await until(lambda: len(socket.messages) == 1)
        assert socket.messages == [{"type": "executed", "height": 0}]
        chain.decide()
        chain.decide()
        chain.order(1)
        chain.order(2)
        for _ in range(50):
            await trio.sleep(0)
        assert len(socket.messages) == 1  # decided and ordered, not executed
        chain.store_block(1)
        await until(lambda: len(socket.messages) == 2)
        chain.store_block(2)
        await until(lambda: len(socket.messages) == 3)
        for _ in range(50):
            await trio.sleep(0)
        nursery.cancel_scope.cancel()
    assert socket.messages[1:] == [
        {"type": "executed", "height": 1},
        {"type": "executed", "height": 2},
    ]
    assert subs.open == 0
