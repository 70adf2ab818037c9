"""WebSocket subscriptions: every finalized height once, in order, across the
history/live boundary; a stalled subscriber is dropped with the height to
resume from while commits go on; the cap; bad queries; transaction status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
from starlette.datastructures import Address
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from trio.testing import MockClock

from consensus.crypto import keccak256
from consensus.encoding import Domain
from consensus.messages import Block, Certificate, VoteKind
from consensus.types import Validator, ValidatorSet
from consensus.verifier import SignatureVerifier
from sequencer_net.api import subscriptions as subscriptions_module
from sequencer_net.api.framed_send import text_frame
from sequencer_net.api.server import ApiOptions, build_app
from sequencer_net.api.subscriptions import (
    CERTIFICATE_POLL_S,
    CLOSE_BAD_QUERY,
    CLOSE_FULL,
    CLOSE_NO_CERTIFICATE,
    CLOSE_TOO_SLOW,
    LATE_CERTIFICATE_WAIT_S,
    CommitFeed,
    SubscriptionLimits,
    Subscriptions,
    header_json,
)
from sequencer_net.batches.batch import batch_digest, encode_batch
from sequencer_net.client.verify import BlockVerifier
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.receipts import Receipt
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.transaction import decode_transaction, tx_hash
from sequencer_net.payload import decode_payload
from sequencer_net.payload.format import BlockPayload, encode_payload
from sequencer_net.payload.namespaces import (
    EntryProof,
    NamespaceProof,
    TableEntry,
    namespace_proof,
    namespace_root,
    verify_namespace,
)
from sequencer_net.storage.node_store import NodeStore
from tests.api.conftest import GENESIS, ApiWorld
from tests.client.chain import validator_keys
from tests.mempool.factories import DOMAIN, carrying_batch, signed

NS = 7


class Chain:
    """A store the test commits blocks to, as the commit pipeline would."""

    def __init__(self, store: NodeStore) -> None:
        self.store = store
        self.feed = CommitFeed()
        self.nonce = 0
        self.last_txs: list[bytes] = []

    def commit(self, namespaces: tuple[int, ...] = (NS, 3, NS)) -> list[bytes]:
        height = self.store.tip()[0] + 1
        txs = []
        for ns in namespaces:
            txs.append(signed(sender=1, nonce=self.nonce, namespace=ns, payload=b"h%d" % height))
            self.nonce += 1
        return self.commit_txs(txs)

    def commit_txs(self, txs: list[bytes], receipts: bytes = b"") -> list[bytes]:
        height, parent, _ = self.store.tip()
        block = self.block(txs, height + 1, parent)
        cert = Certificate(
            kind=VoteKind.FINALIZE, view=block.view, height=block.height, block=block.digest(),
            signers=[0, 1, 2], signatures=[bytes([i]) * 65 for i in range(3)],
        )  # fmt: skip
        self.store.commit_block(
            block, cert, txs, keccak256(b"root"), receipts, batch_digests=_batches(block)
        )
        self.feed.announce(block.height)
        return txs

    def block(self, txs: list[bytes], height: int, parent: bytes) -> Block:
        """A block at `height` over `parent` holding `txs` in one batch, the batch
        stored (a validator holds the batches of what it commits)."""
        encoded = encode_batch(
            carrying_batch(DOMAIN, author=0, sequence=height - 1, transactions=txs)
        )
        digest = batch_digest(encoded)
        self.store.save_batch(digest, encoded, author=0)
        pairs = [(decode_transaction(t).namespace, tx_hash(t)) for t in txs]
        payload = BlockPayload(height - 1, 0, bytes(32), [digest], namespace_root(pairs))
        return Block(
            view=height, height=height, parent=parent, proposer=0, payload=encode_payload(payload)
        )


def _batches(block: Block) -> list[bytes]:
    return list(decode_payload(block.payload).batches)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    store = NodeStore(tmp_path / "chain", genesis_digest=GENESIS, sync=False)
    try:
        yield Chain(store)
    finally:
        store.close()


def subscriptions(chain: Chain, queue: int = 256, cap: int = 256) -> Subscriptions:
    return Subscriptions(
        store=chain.store,
        mempool=Mempool(DOMAIN),
        feed=chain.feed,
        limits=SubscriptionLimits(queue, cap),
        receipt=lambda height, index: None,
    )


class FakeSocket:
    """A WebSocket whose reader takes `reads` messages, then stalls (None: never)."""

    def __init__(
        self, query: dict[str, str], reads: int | None = None, client: str = "127.0.0.1"
    ) -> None:
        self.query_params = query
        self.client = Address(client, 40000)
        self.reads = reads
        self.messages: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.accepted = False
        self.arrived = trio.Event()

    async def accept(self) -> None:
        self.accepted = True

    async def send_text(self, text: str) -> None:
        if self.reads is not None and len(self.messages) >= self.reads:
            await trio.sleep_forever()  # the client stopped reading
        self.messages.append(msgspec.json.decode(text))
        self.arrived.set()
        self.arrived = trio.Event()

    async def send_json(self, document: dict[str, Any]) -> None:
        await self.send_text(msgspec.json.encode(document).decode())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


def verify(message: dict[str, Any]) -> None:
    """What a subscriber checks (apart from the certificate's signatures)."""
    block = message["block"]
    digest = Block(
        view=block["view"],
        height=block["height"],
        parent=bytes.fromhex(block["parent"][2:]),
        proposer=block["proposer"],
        payload=bytes.fromhex(block["payload"][2:]),
    ).digest()
    assert block["hash"] == "0x" + digest.hex()
    assert message["certificate"]["block"] == block["hash"]
    assert message["certificate"]["kind"] == int(VoteKind.FINALIZE)
    root = decode_payload(bytes.fromhex(block["payload"][2:])).namespace_root

    def entry(raw: dict[str, Any] | None) -> EntryProof | None:
        if raw is None:
            return None
        e = raw["entry"]
        return EntryProof(
            raw["index"],
            TableEntry(e["namespace"], e["count"], bytes.fromhex(e["root"][2:])),
            [bytes.fromhex(h[2:]) for h in raw["path"]],
        )

    p = message["proof"]
    proof = NamespaceProof(
        p["namespace"], p["size"], entry(p["present"]), entry(p["below"]), entry(p["above"])
    )
    hashes = [keccak256(bytes.fromhex(t[2:])) for t in message["transactions"]]
    verify_namespace(root, message["namespace"], hashes, proof)


async def until(predicate: Any) -> None:
    with trio.fail_after(10):
        while not predicate():
            await trio.sleep(0.001)


async def test_from_a_past_height_during_live_commits_every_height_once_in_order(
    chain: Chain,
) -> None:
    for _ in range(5):
        chain.commit()
    subs = subscriptions(chain)
    socket = FakeSocket({"namespace": str(NS), "from": "1"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, socket)
        for i in range(10):  # commits keep coming while history is sent
            chain.commit((NS,) if i % 2 else (3,))
            await trio.sleep(0)
        await until(lambda: len(socket.messages) == 15)
        chain.commit()
        await until(lambda: len(socket.messages) == 16)
        nursery.cancel_scope.cancel()
    assert [m["height"] for m in socket.messages] == list(range(1, 17))
    for message in socket.messages:
        verify(message)
    counts = [len(m["transactions"]) for m in socket.messages]
    assert counts[:5] == [2] * 5 and counts[5:15] == [0, 1] * 5  # absent ones proven too


async def test_a_stalled_subscriber_is_dropped_with_its_resume_height(chain: Chain) -> None:
    chain.commit()
    subs = subscriptions(chain, queue=3)
    stalled = FakeSocket({"namespace": str(NS)}, reads=2)
    reader = FakeSocket({"namespace": str(NS)})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, stalled)
        nursery.start_soon(subs.blocks, reader)
        await until(lambda: stalled.accepted and reader.accepted)
        for _ in range(8):
            chain.commit()
            await trio.sleep(0.01)
        await until(lambda: stalled.closed is not None and len(reader.messages) == 8)
        nursery.cancel_scope.cancel()
    # It got heights 2 and 3, stalled on 4; the others went on undisturbed.
    assert [m["height"] for m in stalled.messages] == [2, 3]
    assert stalled.closed == (CLOSE_TOO_SLOW, "too slow; resume from height 4")
    assert [m["height"] for m in reader.messages] == list(range(2, 10))
    assert subs.dropped_slow == 1 and subs.open == 0
    resumed = FakeSocket({"namespace": str(NS), "from": "4"})  # no gap on reconnect
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, resumed)
        await until(lambda: len(resumed.messages) == 6)
        nursery.cancel_scope.cancel()
    assert [m["height"] for m in resumed.messages] == list(range(4, 10))


KEYS = validator_keys(4)
VALIDATORS = ValidatorSet([Validator(k.address, 1) for k in KEYS])
SIGNING = Domain(31337, bytes(20), GENESIS)


def _finalization(block: Block) -> Certificate:
    """A quorum of KEYS' FINALIZE votes on `block`: what BlockVerifier accepts."""
    vote = SignatureVerifier(SIGNING.separator()).vote_digest(
        VoteKind.FINALIZE, block.view, block.height, block.digest()
    )
    signers = [0, 1, 2]
    return Certificate(
        VoteKind.FINALIZE,
        block.view,
        block.height,
        block.digest(),
        signers,
        [KEYS[i].sign_digest(vote) for i in signers],
    )


def run_under_last(chain: Chain, blocks: int) -> list[Block]:
    """`blocks` heights above the tip, each holding a namespace-NS transaction,
    all committed under the last one's certificate (implicit finalization).
    Only the lower ones are committed here: the caller commits the last."""
    height, parent, _ = chain.store.tip()
    run: list[Block] = []
    txs: list[list[bytes]] = []
    for h in range(height + 1, height + blocks + 1):
        txs.append([signed(sender=1, nonce=chain.nonce, namespace=NS, payload=b"r%d" % h)])
        chain.nonce += 1
        run.append(chain.block(txs[-1], h, parent))
        parent = run[-1].digest()
    certificate = _finalization(run[-1])
    for block, block_txs in zip(run[:-1], txs[:-1], strict=True):
        chain.store.commit_block(
            block, certificate, block_txs, keccak256(b"root"), batch_digests=_batches(block)
        )
        chain.feed.announce(block.height)
    chain.last_txs = txs[-1]
    return run


def commit_certified(chain: Chain, block: Block) -> None:
    chain.store.commit_block(
        block, _finalization(block), chain.last_txs, keccak256(b"root"),
        batch_digests=_batches(block),
    )  # fmt: skip
    chain.feed.announce(block.height)


async def test_heights_finalized_under_a_descendant_are_sent_with_its_proof_and_verify(
    chain: Chain,
) -> None:
    chain.commit()
    run = run_under_last(chain, 4)  # heights 2..5, under 5's certificate
    subs = subscriptions(chain)
    socket = FakeSocket({"namespace": str(NS), "from": "2"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, socket)
        await until(lambda: socket.accepted)
        await trio.sleep(0.05)
        assert socket.messages == []  # 2..4 committed, their descendant not yet
        commit_certified(chain, run[-1])
        await until(lambda: len(socket.messages) == 4)  # at once: no wait for own ones
        nursery.cancel_scope.cancel()
    assert socket.closed is None
    assert [m["height"] for m in socket.messages] == [2, 3, 4, 5]
    assert [m["certificate"] for m in socket.messages[:3]] == [None] * 3
    assert [len(m["finalized_by"]["chain"]) for m in socket.messages[:3]] == [3, 2, 1]
    assert socket.messages[0]["finalized_by"]["chain"][0] == header_json(run[-1])
    assert "finalized_by" not in socket.messages[3]  # the certified height: unchanged form
    verifier = BlockVerifier(VALIDATORS, SIGNING, NS, from_height=2)
    verified = [verifier.verify(m) for m in socket.messages]
    assert [b.finalized_by for b in verified] == [5, 5, 5, None]
    assert [len(b.transactions) for b in verified] == [1, 1, 1, 1]
    assert subs.messages.heights_built == 4


async def test_the_nearest_own_certificate_proves_a_height(chain: Chain) -> None:
    chain.commit()
    run = run_under_last(chain, 4)
    commit_certified(chain, run[-1])
    chain.store.save_late_finalization(_finalization(run[1]))  # height 3's own, late
    subs = subscriptions(chain)
    first = await subs.block_document(2, NS)
    assert first is not None
    assert first["finalized_by"]["certificate"]["height"] == 3  # not 5: the nearest
    assert [h["height"] for h in first["finalized_by"]["chain"]] == [3]
    third = await subs.block_document(3, NS)
    assert third is not None and third["certificate"]["height"] == 3  # its own, preferred
    assert "finalized_by" not in third
    verifier = BlockVerifier(VALIDATORS, SIGNING, NS, from_height=2)
    assert [verifier.verify(d).finalized_by for d in (first, third)] == [3, None]


async def test_a_block_gets_its_own_certificate_when_it_is_held_before_the_descendant(
    chain: Chain, autojump_clock: MockClock
) -> None:
    chain.commit()
    run = run_under_last(chain, 2)  # height 2 under 3's certificate; 3 not committed
    subs = subscriptions(chain)
    socket = FakeSocket({"namespace": str(NS), "from": "1"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, socket)
        await trio.sleep(LATE_CERTIFICATE_WAIT_S * 2)
        assert [m["height"] for m in socket.messages] == [1]  # height 2 waits, not closed
        chain.store.save_late_finalization(_finalization(run[0]))  # a peer forwarded it
        await trio.sleep(CERTIFICATE_POLL_S * 1.5)
        assert [m["height"] for m in socket.messages] == [1, 2]
        nursery.cancel_scope.cancel()
    assert socket.messages[1]["certificate"]["view"] == run[0].view
    assert socket.messages[1]["certificate"]["block"] == "0x" + run[0].digest().hex()
    assert "finalized_by" not in socket.messages[1]
    assert socket.closed is None


async def test_without_a_certificate_close_enough_the_subscriber_is_told_where_to_resume(
    chain: Chain, autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriptions_module, "MAX_FINALITY_CHAIN", 2)
    chain.commit()
    run = run_under_last(chain, 4)  # 2..4 under 5's: height 2 is 3 below it
    commit_certified(chain, run[-1])
    subs = subscriptions(chain)
    socket = FakeSocket({"namespace": str(NS), "from": "1"})
    with trio.fail_after(LATE_CERTIFICATE_WAIT_S + 5):
        await subs.blocks(socket)  # type: ignore[arg-type]
    assert [m["height"] for m in socket.messages] == [1]
    assert socket.closed == (
        CLOSE_NO_CERTIFICATE,
        "no finalization certificate of height 2 here; resume elsewhere from height 2",
    )
    assert subs.open == 0
    third = await subs.block_document(3, NS)  # 2 below the certificate: provable
    assert third is not None and len(third["finalized_by"]["chain"]) == 2


def test_the_polling_endpoint_serves_the_descendant_proof(chain: Chain) -> None:
    chain.commit()
    run = run_under_last(chain, 3)
    commit_certified(chain, run[-1])
    with TestClient(_app(chain), backend="trio") as client:
        answer = client.get(f"/v1/blocks/2/namespaces/{NS}")
    assert answer.status_code == 200
    document = answer.json()
    assert document["certificate"] is None
    assert document["finalized_by"]["certificate"]["height"] == 4
    assert BlockVerifier(VALIDATORS, SIGNING, NS, 2).verify(document).finalized_by == 4


async def test_transaction_status_goes_pending_then_committed_with_its_receipt(
    chain: Chain,
) -> None:
    tx = signed(sender=2, nonce=0, namespace=NS)
    h = tx_hash(tx)
    subs = subscriptions(chain)
    subs.receipt = lambda height, index: {"height": height, "index": index}
    socket = FakeSocket({})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.transaction, socket, h)
        await until(lambda: len(socket.messages) == 1)
        subs.mempool.add(subs.mempool.check(tx), now_ms=0)
        await until(lambda: len(socket.messages) == 2)  # seen within a poll interval
        chain.commit_txs([tx], encode((Receipt(h, b"\x01" * 20, True, "", ""),)))
        await until(lambda: socket.closed is not None)
    assert [m["status"] for m in socket.messages] == ["unknown", "pending", "committed"]
    assert socket.messages[2]["height"] == 1
    assert socket.messages[2]["receipt"] == {"height": 1, "index": 0}
    assert socket.closed == (1000, "")


def _app(chain: Chain, **options: Any) -> Any:
    world = ApiWorld(store=chain.store, mempool=Mempool(DOMAIN))
    context = world.context()
    context.commit_feed = chain.feed
    return build_app(context, ApiOptions(**options))


@pytest.mark.parametrize(
    "query",
    ["", "?namespace=", "?namespace=x7", "?namespace=4294967296", "?namespace=7&from=0",
     "?namespace=7&from=-1", "?namespace=%EF%BC%97"],
)  # fmt: skip
def test_bad_queries_are_closed_with_4400(chain: Chain, query: str) -> None:
    with (
        TestClient(_app(chain), backend="trio") as client,
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/v1/subscribe/blocks" + query) as ws,
    ):
        ws.receive_text()
    assert closed.value.code == CLOSE_BAD_QUERY and closed.value.reason


def test_the_subscriber_cap_closes_the_next_one_with_4429(chain: Chain) -> None:
    for _ in range(2):
        chain.commit()
    with (
        TestClient(_app(chain, max_subscribers=1), backend="trio") as client,
        client.websocket_connect(f"/v1/subscribe/blocks?namespace={NS}&from=1") as first,
    ):
        assert first.receive_json()["height"] == 1
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect(f"/v1/subscribe/blocks?namespace={NS}") as second,
        ):
            second.receive_text()
        assert closed.value.code == CLOSE_FULL
        assert first.receive_json()["height"] == 2


def test_one_block_over_http_is_the_subscription_message(chain: Chain) -> None:
    chain.commit()
    with TestClient(_app(chain), backend="trio") as client:
        with client.websocket_connect(f"/v1/subscribe/blocks?namespace={NS}&from=1") as ws:
            pushed = ws.receive_json()
        polled = client.get(f"/v1/blocks/1/namespaces/{NS}")
        missing = client.get(f"/v1/blocks/2/namespaces/{NS}")
        bad = client.get("/v1/blocks/1/namespaces/4294967296")
        block = client.get("/v1/blocks/1").json()
        validators = client.get("/v1/validators")
    assert polled.status_code == 200 and polled.json() == pushed
    verify(pushed)
    assert missing.status_code == 404 and bad.status_code == 400
    payload = decode_payload(bytes.fromhex(block["payload"][2:]))
    assert block["namespace_root"] == "0x" + payload.namespace_root.hex()
    assert validators.status_code == 503  # no validator set behind this test API


def test_a_bad_transaction_hash_is_closed_with_4400(chain: Chain) -> None:
    with (
        TestClient(_app(chain), backend="trio") as client,
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/v1/subscribe/transactions/0x1234") as ws,
    ):
        ws.receive_text()
    assert closed.value.code == CLOSE_BAD_QUERY and closed.value.reason


async def test_refusals_complete_the_handshake_so_the_close_code_reaches_the_client(
    chain: Chain,
) -> None:
    """Closing before accepting would reach a real client as a bare HTTP 403."""
    subs = subscriptions(chain, cap=1)
    bad = FakeSocket({"namespace": "seven"})
    await subs.blocks(bad)  # type: ignore[arg-type]
    assert bad.accepted and bad.closed is not None and bad.closed[0] == CLOSE_BAD_QUERY
    holder = FakeSocket({"namespace": str(NS)})
    refused = FakeSocket({"namespace": str(NS)})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, holder)
        await until(lambda: holder.accepted)
        await subs.blocks(refused)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()
    assert refused.accepted and refused.closed == (CLOSE_FULL, "too many subscribers; retry later")


async def test_the_message_caches_are_bounded_in_bytes(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(6):
        chain.commit()
    monkeypatch.setattr(subscriptions_module, "CACHED_MESSAGE_BYTES", 1)
    monkeypatch.setattr(subscriptions_module, "CACHED_BLOCK_TX_BYTES", 1)
    messages = subscriptions_module.BlockMessages(chain.store)
    first = [await messages.message(h, NS) for h in range(1, 7)]
    assert len(messages._messages) == 1 and len(messages._heights) == 1  # the latest only
    assert messages._message_bytes == len(text_frame((first[-1] or "").encode()))  # as sent
    assert [await messages.message(h, NS) for h in range(1, 7)] == first  # rebuilt the same


async def test_a_hundred_subscribers_each_get_every_height_once_in_order(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Half start from stored history, half live, over four namespaces and four
    client addresses, while blocks keep committing; each height's shared part
    is built once for all of them (in a worker thread: every block counts as
    large here)."""
    monkeypatch.setattr(subscriptions_module, "BUILD_IN_THREAD_MIN_BYTES", 1)
    for _ in range(5):
        chain.commit()
    subs = subscriptions(chain, cap=100)
    namespaces = (NS, 3, 11, 12)  # 11 and 12 hold no transaction: absence proofs
    sockets = [
        FakeSocket(
            {"namespace": str(namespaces[i % 4]), **({"from": "1"} if i % 2 else {})},
            client=f"127.0.0.{1 + i // 25}",
        )
        for i in range(100)
    ]
    last = 25
    async with trio.open_nursery() as nursery:
        for socket in sockets:
            nursery.start_soon(subs.blocks, socket)
        await until(lambda: all(s.accepted for s in sockets))
        live_from = chain.store.tip()[0] + 1
        while chain.store.tip()[0] < last:
            chain.commit((NS, 3, NS, 3))
            await trio.sleep(0)
        await until(lambda: all(s.messages and s.messages[-1]["height"] == last for s in sockets))
        nursery.cancel_scope.cancel()
    for i, socket in enumerate(sockets):
        first = 1 if i % 2 else live_from
        assert [m["height"] for m in socket.messages] == list(range(first, last + 1)), i
        assert {m["namespace"] for m in socket.messages} == {namespaces[i % 4]}
        assert socket.closed is None
    for message in sockets[0].messages[-3:] + sockets[3].messages[-3:]:
        verify(message)
    assert subs.messages.heights_built == last  # once per height, shared
    assert subs.open == 0 and not subs.open_by_client


async def test_the_per_address_cap_refuses_with_4429_and_frees_on_close(chain: Chain) -> None:
    subs = Subscriptions(
        store=chain.store,
        mempool=Mempool(DOMAIN),
        feed=chain.feed,
        limits=SubscriptionLimits(queue=256, max_subscribers=10, max_per_client=2),
        receipt=lambda height, index: None,
    )
    held = [FakeSocket({"namespace": str(NS)}, client="10.0.0.1") for _ in range(2)]
    over = FakeSocket({"namespace": str(NS)}, client="10.0.0.1")
    other = FakeSocket({"namespace": str(NS)}, client="10.0.0.2")
    async with trio.open_nursery() as nursery:
        for socket in held:
            nursery.start_soon(subs.blocks, socket)
        await until(lambda: all(s.accepted for s in held))
        await subs.transaction(over, b"\x01" * 32)  # type: ignore[arg-type]  # both kinds count
        nursery.start_soon(subs.blocks, other)
        await until(lambda: other.accepted)
        assert over.closed == (
            CLOSE_FULL,
            "too many subscriptions from this address (at most 2); retry later",
        )
        assert other.closed is None and subs.open_by_client == {"10.0.0.1": 2, "10.0.0.2": 1}
        nursery.cancel_scope.cancel()
    assert subs.open == 0 and subs.open_by_client == {}


async def test_a_message_is_the_json_of_its_document(chain: Chain) -> None:
    """The message spliced from the height's shared head is, byte for byte, the
    document a client reads (the format did not change)."""
    chain.commit((NS, 3, NS, 9))
    block = chain.store.block_at(1)
    assert block is not None
    txs = subscriptions_module.block_transactions(chain.store, block)
    assert txs is not None
    cert = chain.store.own_finalization(1, block.digest())
    assert cert is not None
    messages = subscriptions_module.BlockMessages(chain.store)
    for namespace in (3, NS, 8, 9, 10, 0):
        proof = namespace_proof([(ns, keccak256(tx)) for ns, tx in txs], namespace)

        def entry(p: EntryProof | None) -> dict[str, Any] | None:
            if p is None:
                return None
            e = {"namespace": p.entry.namespace, "count": p.entry.count, "root": hx(p.entry.root)}
            return {"index": p.index, "entry": e, "path": [hx(x) for x in p.path]}

        document = {
            "type": "block",
            "height": 1,
            "block": {
                "view": block.view,
                "height": 1,
                "parent": hx(block.parent),
                "proposer": block.proposer,
                "payload": hx(block.payload),
                "hash": hx(block.digest()),
            },
            "certificate": subscriptions_module.certificate_json(cert),
            "namespace": namespace,
            "transactions": [hx(tx) for ns, tx in txs if ns == namespace],
            "proof": {
                "namespace": namespace,
                "size": proof.size,
                "present": entry(proof.present),
                "below": entry(proof.below),
                "above": entry(proof.above),
            },
        }
        text = await messages.message(1, namespace)
        assert text == msgspec.json.encode(document).decode()


def hx(data: bytes) -> str:
    return "0x" + data.hex()
