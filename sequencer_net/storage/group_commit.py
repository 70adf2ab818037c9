"""Group commit: one fsync covers every write waiting in a short window.

Whoever must not answer before its data is durable (the API acknowledging a
transaction, the batcher broadcasting its own batch) calls

    await group.write(stage)

`stage(batch)` adds its puts to the next shared `WriteBatch` (it runs on the
event loop, in call order, so counters it advances stay consistent); the
call returns only after a synced write that contains those puts has finished.
The synced write runs on the group commit's own worker thread
(sequencer_net/worker_thread.py, cheaper per call than `trio.to_thread`):
RocksDB releases the GIL while it waits for the disk, so the event loop
keeps serving consensus and intake meanwhile. A failed write fails every
waiter of that group (the API answers 503; nothing was acknowledged).

At 0.25 ms per fsync on this machine a window of a few milliseconds turns
thousands of acknowledgements per second into a few hundred fsyncs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from rocksdict import WriteBatch

from sequencer_net.worker_thread import WorkerThread

log = logging.getLogger("seqnet.storage")

Stage = Callable[[WriteBatch], None]

DEFAULT_WINDOW_S = 0.002
"""How long the first write of a group waits for others to join it."""

MAX_GROUP = 20_000
"""Writes in one group at most; more wait for the next one."""


class GroupWriteFailed(Exception):
    """The synced write that would have covered this data failed."""


class GroupStopped(Exception):
    """The group commit stopped before the write was made (the node shuts down)."""


@dataclass(slots=True)
class _Waiter:
    stage: Stage
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


class GroupCommit:
    def __init__(
        self,
        write_synced: Callable[[WriteBatch], None],
        *,
        window_s: float = DEFAULT_WINDOW_S,
        max_group: int = MAX_GROUP,
        on_flush: Callable[[int, float], None] | None = None,
    ) -> None:
        """`write_synced(batch)` performs one synced write (the store's); it is
        called from a worker thread. `on_flush(writes, seconds)` observes each group."""
        self._write_synced = write_synced
        self.window_s = window_s
        self.max_group = max_group
        self._on_flush = on_flush or (lambda writes, seconds: None)
        self._queue: list[_Waiter] = []
        self._wakeup = trio.Event()
        self._running = False
        self._worker = WorkerThread("seqnet-group-commit")
        self.groups = 0
        self.writes = 0

    async def write(self, stage: Stage) -> None:
        """Stage writes; return once an fsync covers them (raise GroupWriteFailed)."""
        waiter = _Waiter(stage)
        if not self._running:
            # No group task (a tool, a test): write this one alone, synced, right
            # here on the calling thread.
            batch = WriteBatch(raw_mode=True)
            try:
                stage(batch)
                self._write_synced(batch)
            except Exception as exc:
                raise GroupWriteFailed(str(exc)) from exc
            self.writes += 1
            self.groups += 1
            return
        self._queue.append(waiter)
        self._wakeup.set()
        await waiter.done.wait()
        if waiter.error is not None:
            raise GroupWriteFailed(str(waiter.error)) from waiter.error

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._running = True
        try:
            task_status.started()
            await self._serve()
        finally:
            self._running = False
            # Stopped (cancelled): writes still queued are not written; their
            # writers learn it rather than wait for a group that never comes.
            queued, self._queue = self._queue, []
            for waiter in queued:
                waiter.error = GroupStopped("the group commit stopped before this write")
                waiter.done.set()

    async def _serve(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            await trio.sleep(self.window_s)
            while self._queue:
                group, self._queue = self._queue[: self.max_group], self._queue[self.max_group :]
                await self._flush(group)

    async def _flush(self, group: list[_Waiter]) -> None:
        batch = WriteBatch(raw_mode=True)
        staged: list[_Waiter] = []
        for waiter in group:
            try:
                waiter.stage(batch)
            except Exception as exc:  # a bad stage fails its own writer only
                waiter.error = exc
                waiter.done.set()
                continue
            staged.append(waiter)
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            await self._worker.run(self._write_synced, batch)
        except Exception as exc:
            log.error("event=group_write_failed writes=%d reason=%s", len(staged), exc)
            error = exc
        except BaseException:  # cancelled before the write began: nothing was written
            for waiter in staged:
                waiter.error = GroupStopped("the group commit stopped before this write")
                waiter.done.set()
            raise
        self.groups += 1
        self.writes += len(staged)
        self._on_flush(len(staged), time.perf_counter() - started)
        for waiter in staged:
            waiter.error = error
            waiter.done.set()
