"""View timeouts that back off while the network is too slow for them, and come
back down after progress (docs/consensus.md, "Timeouts").

Pure and deterministic: the core reports what it saw, the pacemaker answers
with the next view's timeout. Integer arithmetic only.

    timeout(level) = base, times 3 // 2 once per level      (x1.5 per level)

- The level rises by one on each sign that the network is slower than the
  current timeout: this validator's timer fired in a view in which it had
  already voted for (or made) the proposal, a valid proposal arrived for a view
  it had already timed out, or its timer fired in more consecutive views than
  there are validators (so not only faulty leaders are to blame).
- The level falls by one on each new finalization.

A crashed or silent leader alone does not raise the level (its view shows no
proposal), so f faulty validators cannot push every view's timeout up; a leader
that sends its proposal late on purpose raises it by one per view it leads,
and the finalizations of the honest views in between bring it back down.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Pacemaker:
    base_ms: int
    max_level: int
    level: int = 0
    failed_streak: int = 0
    """Views in a row that this validator timed out, since the last notarization
    or finalization it learned."""
    last_slow_view: int = 0

    def timeout_ms(self) -> int:
        timeout = self.base_ms
        for _ in range(self.level):
            timeout = timeout * 3 // 2
        return timeout

    def slow(self, view: int) -> None:
        """Evidence that `view` needed more time than it had; counted once per view."""
        if view <= self.last_slow_view:
            return
        self.last_slow_view = view
        self.level = min(self.max_level, self.level + 1)

    def timed_out(self, view: int, *, voted: bool, validators: int) -> None:
        self.failed_streak += 1
        if voted or self.failed_streak > validators:
            self.slow(view)

    def notarized(self) -> None:
        self.failed_streak = 0

    def finalized(self) -> None:
        self.failed_streak = 0
        self.level = max(0, self.level - 1)
