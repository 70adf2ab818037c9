"""A long-lived worker thread that runs blocking calls for the event loop.

    result = await worker.run(fn, *args)

runs `fn(*args)` on the worker's own thread, one call at a time in the order
they were made, and returns its result (or raises its exception) in the
calling task. The event loop keeps running meanwhile.

Why not `trio.to_thread.run_sync` for work every block has: each of its calls
takes a thread from trio's cache, names it (and names it back afterwards)
through the OS, copies the task's context and goes through a capacity limiter.
The naming calls release and take back the GIL, and on a busy machine each
taking back waits for the event loop to let go of it (up to the interpreter's
switch interval). Here a call is one queue put, one wake-up of a thread that
is already waiting, and one wake-up of the loop with the result.

A call that has started is waited for even if the calling task is cancelled
(the cancellation takes effect once it returns): its effects, a synced write
for instance, must be known to the caller.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

_T = TypeVar("_T")

_Job = tuple[Callable[[], Any], Callable[[outcome.Outcome[Any]], None]]


IDLE_EXIT_S = 10.0
"""A worker thread with no call for this long ends; the next call starts a new
one (so a component that is gone leaves no thread behind)."""


class WorkerThread:
    def __init__(self, name: str, *, idle_exit_s: float = IDLE_EXIT_S) -> None:
        """`name` names the thread (in py-spy and /proc); it starts on the first call."""
        self.name = name
        self.idle_exit_s = idle_exit_s
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.calls = 0
        self.threads_started = 0

    async def run(self, fn: Callable[..., _T], *args: object) -> _T:
        """`fn(*args)` on the worker thread; its result, or its exception raised here."""
        await trio.lowlevel.checkpoint_if_cancelled()
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()

        def deliver(result: outcome.Outcome[Any]) -> None:
            with contextlib.suppress(trio.RunFinishedError):  # the run is over: nobody waits
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        with self._lock:
            self.calls += 1
            self._jobs.put((lambda: fn(*args), deliver))
            if self._thread is None:
                self.threads_started += 1
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()

        def refuse_abort(raise_cancel: object) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.FAILED  # wait for the call to return

        result: _T = await trio.lowlevel.wait_task_rescheduled(refuse_abort)
        return result

    def _serve(self) -> None:
        while True:
            try:
                call, deliver = self._jobs.get(timeout=self.idle_exit_s)
            except queue.Empty:
                with self._lock:  # a call made meanwhile finds no thread and starts one
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            deliver(outcome.capture(call))
