"""A compact set of views: sorted, disjoint, inclusive ranges.

The core remembers every nullified view above its highest finalization here,
so the fact survives when the certificates themselves are evicted from memory
(a long bad period nullifies many consecutive views: one range).
"""

from __future__ import annotations

from bisect import bisect_right


class ViewRanges:
    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []  # inclusive

    def __len__(self) -> int:
        return len(self._starts)

    def _find(self, view: int) -> int:
        """Index of the range containing `view`, or -1."""
        i = bisect_right(self._starts, view) - 1
        if i >= 0 and self._ends[i] >= view:
            return i
        return -1

    def __contains__(self, view: int) -> bool:
        return self._find(view) >= 0

    def start_of(self, view: int) -> int:
        """The first view of the range containing `view` (which must be in the set)."""
        i = self._find(view)
        if i < 0:
            raise KeyError(view)
        return self._starts[i]

    def add(self, view: int) -> None:
        if view in self:
            return
        i = bisect_right(self._starts, view)
        joins_left = i > 0 and self._ends[i - 1] == view - 1
        joins_right = i < len(self._starts) and self._starts[i] == view + 1
        if joins_left and joins_right:
            self._ends[i - 1] = self._ends[i]
            del self._starts[i], self._ends[i]
        elif joins_left:
            self._ends[i - 1] = view
        elif joins_right:
            self._starts[i] = view
        else:
            self._starts.insert(i, view)
            self._ends.insert(i, view)

    def missing(self, first: int, last: int, limit: int) -> list[int]:
        """Up to `limit` views in [first, last] that are not in the set, ascending."""
        out: list[int] = []
        view = first
        while view <= last and len(out) < limit:
            i = self._find(view)
            if i >= 0:
                view = self._ends[i] + 1
                continue
            out.append(view)
            view += 1
        return out

    def drop_below(self, view: int) -> None:
        """Forget every view below `view`."""
        while self._starts and self._ends[0] < view:
            del self._starts[0], self._ends[0]
        if self._starts and self._starts[0] < view:
            self._starts[0] = view

    def drop_lowest_range(self) -> None:
        if self._starts:
            del self._starts[0], self._ends[0]
