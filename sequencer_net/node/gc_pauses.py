"""Python's garbage collector in a node process: what its collections cost,
and the settings that keep them out of consensus's way.

`GC_PAUSES` times every collection (a `gc.callbacks` hook: four clock reads
and a few integer updates per collection); the node's metrics export it as
`seqnet_gc_pause_seconds{generation}` and `seqnet_gc_cpu_seconds_total{generation}`.
`tune_gc` runs once per process, after the node has loaded its genesis, state
and stores and before it serves.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

GENERATIONS = 3

PAUSE_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
"""Upper bounds of the pause histogram (seconds); anything longer is counted
under +Inf."""

GC_GEN0_THRESHOLD = 10_000
"""Container objects allocated (net of those freed) between two young
collections; Python's default is 700. With the default, a validator at
680 tx/s ran about four young collections a second (seven in the DEX mix at
300 tx/s), 0.6-0.8 ms of CPU each, and each one promoted whatever happened to
be alive at that instant, which fed the older generations and the full
collections (67-72 ms of CPU each). At 10,000 they are 15-40 times rarer,
3-7 ms of CPU each, and the collector's CPU falls to a third (DEX mix) or a
fifteenth (680 tx/s, counting the full collections no longer fed); see
docs/performance.md, "Garbage collection in the nodes". What waits for a
collection stays bounded: at most this many objects."""


def tune_gc() -> None:
    """Collect the startup garbage, freeze every object alive (the modules,
    genesis, the loaded state and stores: the collector never scans them again,
    so a full collection only walks what was allocated since), and raise the
    young generation's threshold to `GC_GEN0_THRESHOLD`.

    Call once per process, just before serving: frozen objects are never
    collected, so freezing again later would keep garbage forever. Objects
    frozen here that die later are still freed by reference counting."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


class GcPauses:
    """Counts and times the collector's collections, per generation: the
    wall-clock time from the collection's start to its end (what the thread
    that triggered it, holding the GIL, waited; on a loaded machine it includes
    time the process was not scheduled) and that thread's CPU time.

    Collections never overlap (the interpreter runs one at a time), so one
    start time is enough whatever thread triggered them."""

    def __init__(self) -> None:
        self.counts = [[0] * (len(PAUSE_BUCKETS_S) + 1) for _ in range(GENERATIONS)]
        """Per generation, per bucket (the last is +Inf): collections, not cumulative."""
        self.seconds = [0.0] * GENERATIONS
        self.cpu_seconds = [0.0] * GENERATIONS
        self._started = 0.0
        self._cpu_started = 0.0
        self._installed = False

    def install(self) -> None:
        """Start timing collections (idempotent)."""
        if not self._installed:
            gc.callbacks.append(self._on_collection)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._on_collection)
            self._installed = False

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._cpu_started = time.thread_time()
            self._started = time.perf_counter()
            return
        elapsed = time.perf_counter() - self._started
        cpu = time.thread_time() - self._cpu_started
        generation = info["generation"]
        self.seconds[generation] += elapsed
        self.cpu_seconds[generation] += cpu
        self.counts[generation][bisect_left(PAUSE_BUCKETS_S, elapsed)] += 1

    def collections(self, generation: int) -> int:
        return sum(self.counts[generation])


GC_PAUSES = GcPauses()
"""The process's collector timing (gc.callbacks is process-wide)."""


class GcPauseCollector(Collector):
    """Exports a `GcPauses` to Prometheus, read at scrape time."""

    def __init__(self, pauses: GcPauses) -> None:
        self.pauses = pauses

    def collect(self) -> Iterator[Metric]:
        pauses = HistogramMetricFamily(
            "seqnet_gc_pause_seconds",
            "Wall-clock time of one garbage collection, by generation (2: full)",
            labels=["generation"],
        )
        cpu = CounterMetricFamily(
            "seqnet_gc_cpu_seconds",
            "CPU time the garbage collector's collections took, by generation",
            labels=["generation"],
        )
        bounds = [*(str(b) for b in PAUSE_BUCKETS_S), "+Inf"]
        for generation in range(GENERATIONS):
            label = [str(generation)]
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, list(self.pauses.counts[generation]), strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            pauses.add_metric(label, buckets, self.pauses.seconds[generation])
            cpu.add_metric(label, self.pauses.cpu_seconds[generation])
        yield pauses
        yield cpu
