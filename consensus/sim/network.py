"""The virtual network and clock of the simulator.

Time is an integer count of virtual milliseconds. All randomness comes from
one `random.Random(seed)`, so a seed replays exactly. Faults are drawn per
seed: delay, loss, duplication, reordering, partitions that heal.
"""

from __future__ import annotations

import functools
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Partition:
    """Between `start` and `end`, no message crosses between `side` and the rest."""

    start: int
    end: int
    side: frozenset[int]

    def cuts(self, now: int, a: int, b: int) -> bool:
        return self.start <= now < self.end and ((a in self.side) != (b in self.side))


@dataclass(slots=True)
class NetworkConditions:
    min_delay_ms: int = 5
    max_delay_ms: int = 40
    loss: float = 0.0  # probability a message is dropped
    duplicate: float = 0.0  # probability a message is delivered twice
    reorder: float = 0.0  # probability a message gets an extra delay of up to 10x max
    partitions: list[Partition] = field(default_factory=list)


class EventQueue:
    """A deterministic priority queue of (time, sequence) -> callback."""

    def __init__(self) -> None:
        self.now = 0
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0

    def at(self, time: int, callback: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, self._seq, callback))

    def run_until(self, end: int) -> None:
        while self._heap and self._heap[0][0] <= end:
            time, _, callback = heapq.heappop(self._heap)
            self.now = time
            callback()
        self.now = end


class VirtualNetwork:
    """Point-to-point links with per-message random delay and faults."""

    def __init__(
        self,
        queue: EventQueue,
        rng: random.Random,
        conditions: NetworkConditions,
        deliver: Callable[[int, int, bytes], None],
    ) -> None:
        self.queue = queue
        self.rng = rng
        self.conditions = conditions
        self._deliver = deliver
        self.sent = 0
        self.dropped = 0

    def send(self, src: int, dst: int, data: bytes) -> None:
        self.sent += 1
        c = self.conditions
        now = self.queue.now
        if any(p.cuts(now, src, dst) for p in c.partitions) or self.rng.random() < c.loss:
            self.dropped += 1
            return
        copies = 2 if self.rng.random() < c.duplicate else 1
        for _ in range(copies):
            delay = self.rng.randint(c.min_delay_ms, c.max_delay_ms)
            if self.rng.random() < c.reorder:
                delay += self.rng.randint(0, 10 * c.max_delay_ms)
            self.queue.at(now + delay, functools.partial(self._deliver, src, dst, data))
