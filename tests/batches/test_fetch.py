"""Fetching batches by digest: a batch queued for verification here is waited
for, not asked of a peer (which would verify its signatures a second time)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from sequencer_net.batches.batch import batch_digest
from sequencer_net.batches.fetch import IN_FLIGHT_WAIT_S, BatchFetcher, encode_batch_answer
from sequencer_net.batches.pool import BatchRequest
from sequencer_net.p2p.network import P2PNetwork
from sequencer_net.storage.node_store import NodeStore
from tests.batches.test_pool import batch_of, make_pool
from tests.mempool.factories import signed


class FakePeers:
    """One connected peer that answers every batch request with `batches`."""

    def __init__(self, batches: list[bytes]) -> None:
        self.batches = batches
        self.requests = 0

    def connected_peers(self) -> list[int]:
        return [1]

    async def request(self, peer: int, data: bytes, timeout: float | None = None) -> bytes:
        self.requests += 1
        return encode_batch_answer(self.batches)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = NodeStore(tmp_path / "db", sync=False)
    yield s
    s.close()


def fetcher_of(pool: Any, peers: FakePeers) -> BatchFetcher:
    return BatchFetcher(pool, cast(P2PNetwork, peers))


async def test_a_batch_being_verified_here_is_waited_for_not_fetched(store: NodeStore) -> None:
    pool, _ = make_pool(store)
    encoded = batch_of(1, 0, [signed(sender=1, nonce=0)])
    digest = batch_digest(encoded)
    peers = FakePeers([encoded])
    pool.expect(digest)  # its broadcast arrived and is queued for verification
    missing: list[int] = []

    async def fetch() -> None:
        missing.append(await fetcher_of(pool, peers).fetch(_request(digest)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch)
        await trio.testing.wait_all_tasks_blocked()
        assert missing == []  # waiting for the verification, no request made
        await pool.receive(1, encoded)
    assert missing == [0]
    assert peers.requests == 0
    assert digest in pool


async def test_a_batch_not_queued_here_is_fetched_at_once(store: NodeStore) -> None:
    pool, _ = make_pool(store)
    encoded = batch_of(1, 0, [signed(sender=1, nonce=0)])
    peers = FakePeers([encoded])
    assert await fetcher_of(pool, peers).fetch(_request(batch_digest(encoded))) == 0
    assert peers.requests == 1


async def test_a_queued_batch_that_is_never_decided_is_fetched_after_the_wait(
    store: NodeStore, autojump_clock: MockClock
) -> None:
    pool, _ = make_pool(store)
    encoded = batch_of(1, 0, [signed(sender=1, nonce=0)])
    digest = batch_digest(encoded)
    peers = FakePeers([encoded])
    pool.expect(digest)  # queued, but its verifier never answers
    start = trio.current_time()
    assert await fetcher_of(pool, peers).fetch(_request(digest)) == 0
    assert trio.current_time() - start == pytest.approx(IN_FLIGHT_WAIT_S)
    assert peers.requests == 1
    assert digest in pool


def _request(digest: bytes) -> BatchRequest:
    return BatchRequest([digest])
