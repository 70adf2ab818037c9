"""The commit pipeline fetches a committed block's missing batches as soon as
the block arrives: all of them in one fetch, the proposer asked first, several
blocks ahead of execution (bounded), and blocks still apply in order, each
only after its own fetch ended. A validator back from an outage therefore
catches up in a few round trips, not one round trip per batch."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from consensus.io import Commit
from consensus.messages import Block, Certificate, VoteKind
from sequencer_net.batches.pool import BatchRequest
from sequencer_net.node.commit import PREFETCH_AHEAD, CommitPipeline
from sequencer_net.node.status import ChainStatus
from sequencer_net.payload.format import BlockPayload, decode_payload, encode_payload
from sequencer_net.payload.namespaces import EMPTY_ROOT


def _digest(height: int, i: int) -> bytes:
    return bytes([height % 256, i]) + bytes(30)


def _commit(height: int, digests: list[bytes], proposer: int) -> Commit:
    payload = encode_payload(BlockPayload(0, 0, bytes(32), digests, EMPTY_ROOT))
    block = Block(view=height, height=height, parent=bytes(32), proposer=proposer, payload=payload)
    cert = Certificate(VoteKind.FINALIZE, height, height, block.digest(), [], [])
    return Commit(block, cert)


class HeldBatches(set[bytes]):
    """The pool as the prefetch sees it: what is held, and the bytes of batches
    queued for verification here (`queued`), not held until verified."""

    def __init__(self, held: object = (), queued: dict[bytes, bytes] | None = None) -> None:
        super().__init__(held)  # type: ignore[arg-type]
        self.queued = queued or {}

    def any_in_flight(self, digests: object) -> bool:
        return False

    def bytes_of(self, digest: bytes) -> bytes | None:
        return b"batch " + digest if digest in self else self.queued.get(digest)


class FakeFetcher:
    def __init__(self, pool: set[bytes]) -> None:
        self.pool = pool
        self.calls: list[tuple[list[bytes], int | None]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = trio.Event()

    async def fetch(self, request: BatchRequest, prefer: int | None = None) -> int:
        self.calls.append((list(request.digests), prefer))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        self.pool.update(request.digests)
        return 0


class Recorder(CommitPipeline):
    """The pipeline's ordering and prefetch, with `apply` recording instead of executing."""

    def __init__(self, pool: set[bytes], fetcher: FakeFetcher) -> None:
        self.pool = pool  # type: ignore[assignment]
        self.fetcher = fetcher  # type: ignore[assignment]
        self.status = ChainStatus()
        self.decryptor = None
        self.applied: list[tuple[int, bool]] = []

    async def apply(self, commit: Commit) -> None:
        names = decode_payload(commit.block.payload).batches
        self.applied.append((commit.block.height, all(d in self.pool for d in names)))


async def test_missing_batches_are_fetched_ahead_in_one_request_per_block() -> None:
    held = _digest(1, 0)
    pool = HeldBatches({held})
    fetcher = FakeFetcher(pool)
    pipeline = Recorder(pool, fetcher)
    blocks = 3 * PREFETCH_AHEAD
    send, receive = trio.open_memory_channel[Commit](blocks)
    for height in range(1, blocks + 1):
        digests = [_digest(height, i) for i in range(5)]
        send.send_nowait(_commit(height, digests, proposer=height % 4))
    send.close()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pipeline.run, receive)
        await trio.testing.wait_all_tasks_blocked()
        # Nothing applied while the first block's fetch is open, but the next
        # blocks' fetches already started, as many as the bound allows.
        assert pipeline.applied == []
        assert len(fetcher.calls) == PREFETCH_AHEAD
        assert fetcher.in_flight == PREFETCH_AHEAD
        fetcher.release.set()
    assert [h for h, _ in pipeline.applied] == list(range(1, blocks + 1))
    assert all(ready for _, ready in pipeline.applied)
    assert len(fetcher.calls) == blocks  # one fetch per block, not one per batch
    assert fetcher.most_in_flight == PREFETCH_AHEAD
    first_digests, first_prefer = fetcher.calls[0]
    assert first_digests == [_digest(1, i) for i in range(1, 5)]  # what was held is not asked
    assert first_prefer == 1  # the proposer, who certainly holds its block's batches
    assert [prefer for _, prefer in fetcher.calls] == [h % 4 for h in range(1, blocks + 1)]


async def test_a_block_whose_batches_are_held_fetches_nothing() -> None:
    digests = [_digest(7, i) for i in range(3)]
    pool = HeldBatches(digests)
    fetcher = FakeFetcher(pool)
    pipeline = Recorder(pool, fetcher)
    send, receive = trio.open_memory_channel[Commit](1)
    send.send_nowait(_commit(7, digests, proposer=2))
    send.close()
    await pipeline.run(receive)
    assert fetcher.calls == []
    assert pipeline.applied == [(7, True)]


async def test_a_block_goes_to_the_subscribers_when_its_batches_bytes_are_here() -> None:
    # Held, or queued for verification here: the subscribers get the block at
    # once, without waiting for the verification; execution waits for it.
    held, queued, absent = _digest(5, 0), _digest(5, 1), _digest(6, 0)
    pool = HeldBatches({held}, queued={queued: b"unverified"})
    fetcher = FakeFetcher(pool)
    pipeline = Recorder(pool, fetcher)
    send, receive = trio.open_memory_channel[Commit](2)
    send.send_nowait(_commit(5, [held, queued], proposer=1))
    send.send_nowait(_commit(6, [absent], proposer=2))
    send.close()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pipeline.run, receive)
        await trio.testing.wait_all_tasks_blocked()
        feed = pipeline.status.feed
        assert sorted(feed.decided_blocks) == [5]  # 6's batch is nowhere here
        assert feed.decided_blocks[5].batches == (b"batch " + held, b"unverified")
        assert pipeline.applied == []  # execution waits for the fetch
        fetcher.release.set()
    assert sorted(pipeline.status.feed.decided_blocks) == [5, 6]
    assert [h for h, _ in pipeline.applied] == [5, 6]


async def test_a_failing_prefetch_still_lets_the_block_apply() -> None:
    class Broken(FakeFetcher):
        async def fetch(self, request: BatchRequest, prefer: int | None = None) -> int:
            raise RuntimeError("transport exploded")

    pool = HeldBatches()
    pipeline = Recorder(pool, Broken(pool))
    send, receive = trio.open_memory_channel[Commit](2)
    send.send_nowait(_commit(1, [_digest(1, 0)], proposer=0))
    send.send_nowait(_commit(2, [], proposer=1))
    send.close()
    await pipeline.run(receive)
    # apply (which fetches again until a peer has the batch) still runs, in order
    assert pipeline.applied == [(1, False), (2, True)]


async def test_a_fetch_after_commit_is_logged_with_its_height_and_duration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A fetched block reaches the subscribers only once the fetch ends: the
    # log names the height and how long it held the block.
    held = _digest(3, 0)
    pool = HeldBatches({held})
    fetcher = FakeFetcher(pool)
    fetcher.release.set()
    pipeline = Recorder(pool, fetcher)
    send, receive = trio.open_memory_channel[Commit](2)
    send.send_nowait(_commit(3, [held, _digest(3, 1), _digest(3, 2)], proposer=1))
    send.send_nowait(_commit(4, [held], proposer=2))
    send.close()
    with caplog.at_level(logging.INFO, logger="seqnet.commit"):
        await pipeline.run(receive)
    fetched = [r.getMessage() for r in caplog.records if "event=batches_fetched" in r.getMessage()]
    assert len(fetched) == 1
    assert fetched[0].startswith("event=batches_fetched height=3 missing=2 queued_here=0 fetch_ms=")
