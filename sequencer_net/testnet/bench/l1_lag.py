"""How long a finalized block waits to be on the L1: commit to posting landed.

Read from a testnet's node logs after a run: each node logs
`event=committed height=H` when it commits a block and, when it posted,
`event=posting_landed height=H ... l1_block=B` once its posting is mined. A
posting covers every height above the previous posting, so each height's lag
is the landing time of the first posting that covers it minus the earliest
time any node logged committing it. In L1 blocks: that lag divided by the L1
block time (the testnet's anvil mines one block per `block_time_s`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
_COMMITTED = re.compile(_STAMP + r" \S+ \S+ seqnet\.commit event=committed height=(\d+)")
_LANDED = re.compile(
    _STAMP + r" \S+ \S+ seqnet\.l1\.poster event=posting_landed height=(\d+) gas=(\d+) "
    r"l1_block=(\d+)"
)


@dataclass(frozen=True, slots=True)
class L1Lag:
    postings: int
    heights: int
    lags_s: tuple[float, ...]
    gas: tuple[int, ...]

    def percentile(self, q: float) -> float | None:
        if not self.lags_s:
            return None
        ordered = sorted(self.lags_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _seconds(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def measure_l1_lag(logs: list[Path]) -> L1Lag:
    """The lag of every posted height found in `logs` (node.log files)."""
    committed: dict[int, float] = {}
    landed: dict[int, tuple[float, int]] = {}
    for path in logs:
        with path.open(errors="replace") as lines:
            for line in lines:
                if match := _COMMITTED.match(line):
                    at, height = _seconds(match.group(1)), int(match.group(2))
                    committed[height] = min(at, committed.get(height, at))
                elif match := _LANDED.match(line):
                    at, height = _seconds(match.group(1)), int(match.group(2))
                    if height not in landed or at < landed[height][0]:
                        landed[height] = (at, int(match.group(3)))
    lags: list[float] = []
    previous = 0
    for height in sorted(landed):
        at = landed[height][0]
        lags += [at - committed[h] for h in range(previous + 1, height + 1) if h in committed]
        previous = height
    return L1Lag(
        postings=len(landed),
        heights=len(lags),
        lags_s=tuple(lags),
        gas=tuple(gas for _, gas in landed.values()),
    )
