"""Intake through the API: the msgpack and WebSocket submission paths, limits per
client address, what an eviction and a failed fsync leave behind."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import msgspec
import pytest
import trio
import trio.testing
from rocksdict import WriteBatch
from starlette.testclient import TestClient

from consensus.crypto import keccak256
from sequencer_net.api import intake as intake_module
from sequencer_net.api.errors import ApiError
from sequencer_net.api.intake import Accepted, Refused
from sequencer_net.api.server import build_app
from sequencer_net.mempool import mempool as mempool_module
from sequencer_net.mempool.limits import MempoolLimits
from sequencer_net.mempool.mempool import Mempool
from tests.api.conftest import ApiWorld
from tests.mempool.factories import DOMAIN, signed

MSGPACK = {"content-type": "application/msgpack"}


def client_for(world: ApiWorld) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=world.app()), base_url="http://api")


async def test_a_msgpack_batch_is_answered_in_msgpack_item_by_item(world: ApiWorld) -> None:
    good = [signed(sender=1, nonce=n) for n in range(3)]
    body = msgspec.msgpack.encode([good[0], b"\x00junk", good[1], good[0], good[2]])
    async with client_for(world) as client:
        response = await client.post("/v1/transactions/batch", content=body, headers=MSGPACK)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/msgpack")
    answer = msgspec.msgpack.decode(response.content)
    assert answer[0] == keccak256(good[0])
    assert answer[1][0] == "invalid_transaction"
    assert answer[2] == keccak256(good[1])
    assert answer[3][0] == "duplicate"
    assert answer[4] == keccak256(good[2])
    # Acknowledged means durable: every accepted one is in the store's pending table.
    assert set(world.store.load_pending_transactions()) == set(good)


async def test_a_malformed_msgpack_body_is_a_bad_request(world: ApiWorld) -> None:
    async with client_for(world) as client:
        for body in (b"\xc1", msgspec.msgpack.encode([1, 2]), b"\x91" * 5000 + b"\x90"):
            response = await client.post("/v1/transactions/batch", content=body, headers=MSGPACK)
            assert response.status_code == 400, body[:10]
            assert response.json()["code"] == "bad_request"


def test_a_websocket_stream_answers_each_batch_in_order(world: ApiWorld) -> None:
    app = world.app()
    with (
        TestClient(app, backend="trio") as client,
        client.websocket_connect("/v1/transactions/stream") as socket,
    ):
        for round_ in range(3):
            txs = [signed(sender=round_, nonce=n) for n in range(4)]
            socket.send_bytes(msgspec.msgpack.encode(txs))
            answer = msgspec.msgpack.decode(socket.receive_bytes())
            assert answer == [keccak256(tx) for tx in txs]
        socket.send_bytes(b"\xc1")  # not msgpack: an error answer, the stream goes on
        assert msgspec.msgpack.decode(socket.receive_bytes())["code"] == "bad_request"
        socket.send_bytes(msgspec.msgpack.encode([signed(sender=7, nonce=0)]))
        assert msgspec.msgpack.decode(socket.receive_bytes()) == [keccak256(signed(7, 0))]
    assert len(world.mempool) == 13


def test_a_websocket_stream_answers_pipelined_batches_in_order(world: ApiWorld) -> None:
    app = world.app()
    batches = [[signed(sender=i, nonce=10 + n) for n in range(3)] for i in range(6)]
    with (
        TestClient(app, backend="trio") as client,
        client.websocket_connect("/v1/transactions/stream") as socket,
    ):
        for txs in batches:  # all sent before any answer is read
            socket.send_bytes(msgspec.msgpack.encode(txs))
        answers = [msgspec.msgpack.decode(socket.receive_bytes()) for _ in batches]
    assert answers == [[keccak256(tx) for tx in txs] for txs in batches]
    assert len(world.mempool) == 18


async def test_each_client_address_has_its_own_budget(world: ApiWorld) -> None:
    intake = world.intake(client_rate=1.0, client_burst=3.0, clock=lambda: 0.0)
    first = await intake.submit([signed(sender=2, nonce=n) for n in range(5)], "10.0.0.1")
    assert [type(o).__name__ for o in first] == ["Accepted"] * 3 + ["Refused"] * 2
    assert {o.code for o in first[3:]} == {"rate_limited"}  # type: ignore[union-attr]
    other = await intake.submit([signed(sender=3, nonce=0)], "10.0.0.2")
    assert type(other[0]).__name__ == "Accepted"


async def test_a_failed_fsync_acknowledges_nothing_and_keeps_nothing(world: ApiWorld) -> None:
    def broken(batch: WriteBatch) -> None:
        raise OSError("disk gone")

    intake = world.intake(write=broken)
    from sequencer_net.api.errors import ApiError

    with pytest.raises(ApiError) as raised:
        await intake.submit([signed(sender=4, nonce=0)], "client")
    assert raised.value.status == 503 and raised.value.code == "storage_failed"
    assert len(world.mempool) == 0  # nothing the client was not told about stays


async def test_an_evicted_transaction_is_dropped_from_the_store_and_says_so(
    world: ApiWorld,
) -> None:
    world.mempool = Mempool(DOMAIN, MempoolLimits(max_txs=2))
    cheap = [signed(sender=i, nonce=0, fee=1) for i in range(2)]
    rich = signed(sender=5, nonce=0, fee=10**9)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(world.context())), base_url="http://api"
    ) as client:
        for tx in cheap:
            assert (await client.post("/v1/transactions", content=tx)).status_code == 200
        assert (await client.post("/v1/transactions", content=rich)).status_code == 200
        pending = set(world.store.load_pending_transactions())
        assert rich in pending and len(pending) == 2
        dropped = [tx for tx in cheap if tx not in pending]
        assert len(dropped) == 1
        status = await client.get("/v1/transactions/0x" + keccak256(dropped[0]).hex())
    assert status.json()["status"] == "dropped"
    assert "higher fee" in status.json()["reason"]


async def submit_twice_during_a_held_write(
    world: ApiWorld, tx: bytes, *, fails: bool
) -> list[tuple[str, bool]]:
    """Submit `tx`, then the same again while the first copy's synced write is
    held in its worker thread; then let the write end (`fails`: with an error).
    Each answer's code, and whether `tx` was durable when it was given."""
    release = threading.Event()

    def held_write(batch: WriteBatch) -> None:
        assert release.wait(timeout=30)
        if fails:
            raise OSError("disk gone")
        world.store.write_synced(batch)

    intake = world.intake(write=held_write)
    answers: list[tuple[str, bool]] = []

    async def submit() -> None:
        try:
            (outcome,) = await intake.submit([tx], "client")
            code = "accepted" if isinstance(outcome, Accepted) else outcome.code
        except ApiError as exc:
            code = exc.code
        answers.append((code, tx in world.store.load_pending_transactions()))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(intake.group.run)
            try:
                async with trio.open_nursery() as clients:
                    clients.start_soon(submit)
                    await trio.testing.wait_all_tasks_blocked()
                    clients.start_soon(submit)
                    await trio.testing.wait_all_tasks_blocked()
                    assert answers == []  # neither answer before the write ends
                    release.set()
            finally:
                release.set()  # never leave the writing thread waiting
            nursery.cancel_scope.cancel()
    return answers


async def test_a_resubmission_during_the_first_copys_fsync_is_answered_after_it(
    world: ApiWorld,
) -> None:
    """A client that retries a slow answer sends the same transaction while the
    first copy's synced write (group commit, a worker thread) is still running:
    the retry's 409 `duplicate` says the node holds it, so it leaves only once
    that write is durable, and is a 503 if the write fails."""
    answers = await submit_twice_during_a_held_write(world, signed(sender=6, nonce=0), fails=False)
    assert answers == [("accepted", True), ("duplicate", True)]
    answers = await submit_twice_during_a_held_write(world, signed(sender=7, nonce=0), fails=True)
    assert answers == [("storage_failed", False)] * 2
    assert len(world.mempool) == 1


async def test_intake_hashes_each_transaction_once(world: ApiWorld, monkeypatch: Any) -> None:
    """The duplicate check's hash is the one the admitted transaction carries: no
    transaction is hashed a second time by the signature check (inline, in a
    worker thread, or as a re-submission)."""
    hashed: list[bytes] = []
    lock = threading.Lock()

    def counting(encoded: bytes) -> bytes:
        with lock:
            hashed.append(encoded)
        return keccak256(encoded)

    monkeypatch.setattr(intake_module, "tx_hash", counting)
    monkeypatch.setattr(mempool_module, "tx_hash", counting)
    intake = world.intake()
    one = [signed(sender=4, nonce=0)]  # checked on the event loop
    many = [signed(sender=5, nonce=n) for n in range(10)]  # checked in a worker thread
    bad = b"\x00junk"
    outcomes = await intake.submit([*one, *many, bad], "10.0.0.9")
    assert outcomes[:11] == [Accepted(keccak256(tx)) for tx in one + many]
    assert isinstance(outcomes[11], Refused) and outcomes[11].code == "invalid_transaction"
    again = await intake.submit([one[0], many[3]], "10.0.0.9")  # re-submissions
    assert all(isinstance(o, Refused) and o.code == "duplicate" for o in again)
    assert sorted(hashed) == sorted([*one, *many, bad, one[0], many[3]])
    assert set(world.store.load_pending_transactions()) == set(one + many)


@pytest.mark.parametrize("disk", ["writes", "fails"])
async def test_a_request_cancelled_during_its_fsync_leaves_the_mempool_as_the_disk(
    world: ApiWorld, disk: str
) -> None:
    """A client that goes away mid-request cancels it; the transactions it put
    in the mempool stay only if the write that covers them succeeds."""
    release = threading.Event()

    def write(batch: WriteBatch) -> None:
        release.wait(10)
        if disk == "fails":
            raise OSError("disk gone")
        world.store.write_synced(batch)

    intake = world.intake(write=write)
    tx = signed(sender=6, nonce=0)
    request = trio.CancelScope()
    answers: list[str] = []

    async def submit() -> None:
        with request:
            try:
                await intake.submit([tx], "client")
                answers.append("answered")
            except ApiError as exc:
                answers.append(exc.code)

    async with trio.open_nursery() as nursery:
        await nursery.start(intake.group.run)
        nursery.start_soon(submit)
        await trio.testing.wait_all_tasks_blocked()
        assert len(world.mempool) == 1  # admitted, its write under way
        request.cancel()  # the client is gone
        await trio.testing.wait_all_tasks_blocked()
        release.set()
        with trio.fail_after(10):
            while intake._persisting:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    pending = world.store.load_pending_transactions()
    if disk == "writes":
        assert len(world.mempool) == 1 and pending == [tx]
        assert keccak256(tx) in intake.accepted_at
    else:
        assert len(world.mempool) == 0 and pending == []
        assert answers == ["storage_failed"]
