"""GET /v1/blocks/by-hash/{hash} and GET /v1/health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest

from consensus.crypto import keccak256
from consensus.messages import Block, Certificate, VoteKind
from consensus.payload import BlockPayload, ForcedEntry, encode_payload
from sequencer_net.api.health import Health
from sequencer_net.api.options import ApiOptions
from sequencer_net.home.config import parse_config
from tests.api.conftest import ApiWorld, json_error


@pytest.fixture
async def client(world: ApiWorld) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=world.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


async def test_a_block_by_hash_is_the_block_by_height(
    world: ApiWorld, client: httpx.AsyncClient
) -> None:
    by_height = await client.get("/v1/blocks/1")
    digest = by_height.json()["hash"]
    for spelled in (digest, digest[2:], digest.upper().replace("0X", "0x")):
        by_hash = await client.get(f"/v1/blocks/by-hash/{spelled}")
        assert by_hash.status_code == 200, by_hash.text
        assert by_hash.json() == by_height.json()


async def test_a_block_only_voted_for_is_not_found(
    world: ApiWorld, client: httpx.AsyncClient
) -> None:
    """The store also indexes blocks this node voted for; those are not committed."""
    committed = world.store.block_at(1)
    assert committed is not None
    rival = Block(view=2, height=1, parent=committed.parent, proposer=1, payload=b"\x92\x01\x90")
    ahead = Block(view=3, height=2, parent=committed.digest(), proposer=2, payload=b"\x92\x02\x90")
    for block in (rival, ahead):
        world.store.store_block(block)
        assert world.store.block_by_digest(block.digest()) == block
        answer = await client.get(f"/v1/blocks/by-hash/0x{block.digest().hex()}")
        assert answer.status_code == 404, answer.text
        assert json_error(answer)["code"] == "not_found"


@pytest.mark.parametrize("text", ["0x12", "zz" * 32, "0x" + "00" * 33, "0x", "-1"])
async def test_a_malformed_block_hash_is_a_bad_request(
    client: httpx.AsyncClient, text: str
) -> None:
    answer = await client.get(f"/v1/blocks/by-hash/{text}")
    assert answer.status_code == 400, answer.text
    assert json_error(answer)["code"] == "bad_request"


async def test_an_unknown_block_hash_is_not_found(client: httpx.AsyncClient) -> None:
    answer = await client.get(f"/v1/blocks/by-hash/0x{keccak256(b'no such block').hex()}")
    assert answer.status_code == 404
    assert json_error(answer)["code"] == "not_found"


@dataclass
class FakeClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def test_health_follows_the_committed_height() -> None:
    clock = FakeClock()
    height = [0]
    health = Health(height=lambda: height[0], stall_s=3.0, clock=clock)

    status, body = health.check()  # at genesis, just started
    assert status == 200 and body["status"] == "ok" and body["height"] == 0
    clock.now += 3.0
    assert health.check()[0] == 200  # the bound itself still counts
    clock.now += 0.5
    status, body = health.check()
    assert status == 503 and body["code"] == "stalled"
    assert "since start" in body["error"] and body["height"] == 0

    height[0] = 1  # a block commits: healthy again at once
    status, body = health.check()
    assert status == 200 and body == {
        "status": "ok",
        "height": 1,
        "seconds_since_progress": 0.0,
        "stall_bound_s": 3.0,
    }
    clock.now += 2.0
    height[0] = 2
    clock.now += 2.0
    assert health.check()[0] == 200  # moved since the last look
    clock.now += 3.5
    status, body = health.check()
    assert status == 503 and body["status"] == "stalled"
    assert body["error"] == "no block committed in 3.5 s (bound 3 s)"


def test_a_restarted_node_gets_the_bound_from_its_start() -> None:
    clock = FakeClock()
    health = Health(height=lambda: 40, stall_s=3.0, clock=clock)
    clock.now += 2.9
    assert health.check()[0] == 200
    clock.now += 1.0
    assert health.check()[0] == 503


async def test_the_health_endpoint(world: ApiWorld) -> None:
    transport = httpx.ASGITransport(app=world.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = await client.get("/v1/health")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    assert answer.json()["status"] == "ok" and answer.json()["height"] == 1

    stalled = world.app(ApiOptions(health_stall_s=-1.0))  # a bound already passed
    transport = httpx.ASGITransport(app=stalled)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = await client.get("/v1/health")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "stalled" and body["code"] == "stalled" and body["error"]


def test_the_health_bound_is_three_view_timeouts() -> None:
    config = parse_config(Path("/srv/seqnet"), {"name": "n"}, "config.toml")
    options = ApiOptions.from_config(config, {}, genesis_view_timeout_ms=1000)
    assert options.health_stall_s == 3.0
    assert ApiOptions.from_config(config, {}).health_stall_s == 30.0
    own = {"name": "n", "consensus": {"view_timeout_ms": 2000}}
    config = parse_config(Path("/srv/seqnet"), own, "config.toml")
    options = ApiOptions.from_config(config, {}, genesis_view_timeout_ms=1000)
    assert options.health_stall_s == 6.0


async def test_a_block_shows_its_order_seed_or_null(
    world: ApiWorld, client: httpx.AsyncClient
) -> None:
    """Null for a block executed without a seed (no threshold key); the stored
    seed, in hex, for one that had it."""
    assert (await client.get("/v1/blocks/1")).json()["order_seed"] is None
    first = world.store.block_at(1)
    assert first is not None
    block = Block(view=2, height=2, parent=first.digest(), proposer=1, payload=b"\x92\x00\x90")
    finalization = Certificate(
        kind=VoteKind.FINALIZE, view=2, height=2, block=block.digest(), signers=[0, 1, 2],
        signatures=[bytes([i]) * 65 for i in range(3)],
    )  # fmt: skip
    seed = keccak256(b"seed 2")
    world.store.commit_block(block, finalization, [], keccak256(b"root 2"), order_seed=seed)
    answer = (await client.get("/v1/blocks/2")).json()
    assert answer["order_seed"] == "0x" + seed.hex()
    assert answer["forced"] == []
    assert world.store.order_seed_at(2) == seed and world.store.order_seed_at(3) is None
    third = Block(view=3, height=3, parent=block.digest(), proposer=2, payload=b"\x92\x00\x90")
    finalization3 = msgspec.structs.replace(finalization, view=3, height=3, block=third.digest())
    with pytest.raises(ValueError, match="order seed is 32 bytes"):
        world.store.commit_block(third, finalization3, [], keccak256(b"r"), order_seed=b"short")


async def test_a_block_lists_the_forced_entries_its_payload_marks(
    world: ApiWorld, client: httpx.AsyncClient
) -> None:
    first = world.store.block_at(1)
    assert first is not None
    marks = [ForcedEntry(3, keccak256(b"forced a")), ForcedEntry(7, keccak256(b"forced b"))]
    payload = encode_payload(
        BlockPayload(
            timestamp_ms=5, state_height=0, state_root=bytes(32), batches=[],
            namespace_root=bytes(32), forced=marks,
        )
    )  # fmt: skip
    block = Block(view=2, height=2, parent=first.digest(), proposer=1, payload=payload)
    finalization = Certificate(
        kind=VoteKind.FINALIZE, view=2, height=2, block=block.digest(), signers=[0, 1, 2],
        signatures=[bytes([i]) * 65 for i in range(3)],
    )  # fmt: skip
    world.store.commit_block(block, finalization, [], keccak256(b"root 2"))
    answer = (await client.get("/v1/blocks/2")).json()
    assert answer["forced"] == [
        {"index": 3, "tx_hash": "0x" + keccak256(b"forced a").hex()},
        {"index": 7, "tx_hash": "0x" + keccak256(b"forced b").hex()},
    ]
