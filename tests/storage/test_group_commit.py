"""Group commit: answers wait for the fsync that covers them, and many waiting
writes share one fsync."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import trio
import trio.testing
from rocksdict import WriteBatch

from sequencer_net.storage.group_commit import GroupCommit, GroupWriteFailed, _Waiter
from sequencer_net.storage.node_store import NodeStore


async def test_writes_in_one_window_share_one_fsync_and_are_durable(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "db", sync=True)
    synced: list[int] = []

    def write(batch: WriteBatch) -> None:
        synced.append(batch.len())
        store.write_synced(batch)

    group = GroupCommit(write, window_s=0.05)
    done: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)

        async def submit(i: int) -> None:
            encoded = b"tx-%d" % i
            await group.write(lambda b: store.stage_pending_transactions(b, [encoded]))
            # The answer leaves only now: the transaction is already on disk.
            assert encoded in store.load_pending_transactions()
            done.append(i)

        for i in range(50):
            nursery.start_soon(submit, i)
        with trio.fail_after(10):
            while len(done) < 50:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert group.writes == 50
    assert group.groups < 5  # 50 acknowledgements, a handful of fsyncs
    assert len(synced) == group.groups
    store.close()
    reopened = NodeStore(tmp_path / "db")
    assert sorted(reopened.load_pending_transactions()) == sorted(b"tx-%d" % i for i in range(50))
    reopened.close()


async def test_a_failed_fsync_fails_every_waiter_of_its_group() -> None:
    def broken(batch: WriteBatch) -> None:
        raise OSError("disk full")

    group = GroupCommit(broken, window_s=0.0)
    outcomes: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)

        async def submit() -> None:
            try:
                await group.write(lambda b: b.put(b"k", b"v"))
            except GroupWriteFailed:
                outcomes.append("failed")
            else:
                outcomes.append("acknowledged")

        for _ in range(3):
            nursery.start_soon(submit)
        with trio.fail_after(10):
            while len(outcomes) < 3:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert outcomes == ["failed"] * 3


async def test_a_stage_that_raises_fails_only_its_own_write(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "db", sync=False)
    group = GroupCommit(store.write_synced, window_s=0.01)

    def bad(batch: WriteBatch) -> None:
        raise ValueError("bad digest")

    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        results: list[object] = []

        async def run(stage: object) -> None:
            try:
                await group.write(stage)  # type: ignore[arg-type]
                results.append("ok")
            except GroupWriteFailed as exc:
                results.append(str(exc))

        nursery.start_soon(run, bad)
        nursery.start_soon(run, lambda b: store.stage_pending_transactions(b, [b"good"]))
        with trio.fail_after(10):
            while len(results) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert sorted(map(str, results)) == ["bad digest", "ok"]
    assert store.load_pending_transactions() == [b"good"]
    store.close()


@pytest.mark.parametrize("window", [0.0, 0.002])
async def test_a_lone_write_completes_on_its_own(window: float) -> None:
    writes: list[int] = []
    group = GroupCommit(lambda b: writes.append(b.len()), window_s=window)
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        with trio.fail_after(5):
            await group.write(lambda b: b.put(b"a", b"1"))
        nursery.cancel_scope.cancel()
    assert writes == [1]


async def test_a_group_is_written_on_the_group_commits_own_thread() -> None:
    threads: list[str] = []
    group = GroupCommit(lambda b: threads.append(threading.current_thread().name), window_s=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        with trio.fail_after(5):
            await group.write(lambda b: b.put(b"a", b"1"))
            await group.write(lambda b: b.put(b"b", b"2"))
        nursery.cancel_scope.cancel()
    assert threads == ["seqnet-group-commit"] * 2


async def test_a_group_commit_that_stops_fails_the_writes_still_queued() -> None:
    written: list[int] = []
    group = GroupCommit(lambda batch: written.append(batch.len()), window_s=60.0)
    outcomes: list[str] = []

    async def writer() -> None:
        # As the intake waits: shielded (bounded here, so a hang fails the test).
        with trio.CancelScope(shield=True, deadline=trio.current_time() + 10):
            try:
                await group.write(lambda b: b.put(b"k", b"v"))
                outcomes.append("written")
            except GroupWriteFailed as exc:
                outcomes.append(str(exc))

    async with trio.open_nursery() as outer:
        with trio.CancelScope() as runner:
            async with trio.open_nursery() as nursery:
                await nursery.start(group.run)
                outer.start_soon(writer)
                outer.start_soon(writer)
                await trio.testing.wait_all_tasks_blocked()
                runner.cancel()  # the node shuts down inside the 60 s window
    assert written == []  # nothing was written, and nobody waits for it
    assert len(outcomes) == 2 and all("stopped" in o for o in outcomes)


async def test_a_group_cancelled_as_its_write_would_begin_fails_its_writers() -> None:
    written: list[int] = []
    group = GroupCommit(lambda batch: written.append(batch.len()), window_s=0.0)
    queued = [_Waiter(lambda b: b.put(b"k", b"v")) for _ in range(3)]
    with trio.CancelScope() as scope:
        scope.cancel()  # cancelled before the worker thread takes the write
        await group._flush(queued)
    assert written == []
    assert all(w.done.is_set() and "stopped" in str(w.error) for w in queued)
