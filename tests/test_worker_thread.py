"""The worker thread runs calls in order on its own thread, hands back results
and exceptions, waits for a started call even when its caller is cancelled,
and ends when idle (the next call starts it again)."""

from __future__ import annotations

import threading

import pytest
import trio

from sequencer_net.worker_thread import WorkerThread


async def test_calls_run_in_order_on_one_named_thread_and_return_their_results() -> None:
    worker = WorkerThread("seqnet-test")
    seen: list[tuple[int, str]] = []

    def job(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        return i * i

    results: dict[int, int] = {}

    async def call(i: int) -> None:
        results[i] = await worker.run(job, i)

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(call, i)
            await trio.sleep(0)  # start each task in turn: calls made in this order
    assert results == {i: i * i for i in range(20)}
    assert [i for i, _ in seen] == list(range(20))
    assert {name for _, name in seen} == {"seqnet-test"}
    assert threading.current_thread().name != "seqnet-test"
    assert worker.calls == 20


async def test_an_exception_in_the_call_is_raised_in_the_caller() -> None:
    worker = WorkerThread("seqnet-test")

    def broken() -> None:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        await worker.run(broken)
    assert await worker.run(lambda: 7) == 7  # the thread survives it


async def test_a_started_call_is_waited_for_when_the_caller_is_cancelled() -> None:
    worker = WorkerThread("seqnet-test")
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []
    scope = trio.CancelScope()

    def slow_write() -> None:
        started.set()
        assert release.wait(timeout=10)
        finished.append("write")

    async def caller() -> None:
        with scope:
            await worker.run(slow_write)
            finished.append("result")  # the caller learns the call's outcome
            await trio.sleep(0)  # and the cancellation takes effect here
            finished.append("never")
        finished.append("caller")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            await trio.to_thread.run_sync(started.wait)
            scope.cancel()
            await trio.sleep(0.05)
            assert finished == []  # cancelled, but still waiting inside the call
            release.set()
    assert finished == ["write", "result", "caller"]
    assert scope.cancelled_caught


async def test_an_idle_thread_ends_and_the_next_call_starts_another() -> None:
    worker = WorkerThread("seqnet-test", idle_exit_s=0.01)
    names_before = {t.ident for t in threading.enumerate()}
    assert await worker.run(lambda: 1) == 1
    with trio.fail_after(5):
        while worker._thread is not None:
            await trio.sleep(0.01)
    assert {t.ident for t in threading.enumerate()} <= names_before | {None}
    assert await worker.run(lambda: 2) == 2
    assert worker.threads_started == 2
