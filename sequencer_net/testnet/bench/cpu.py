"""CPU time of a process and its descendants, from /proc.

A node may run worker processes (a signature verifier pool), so a node's CPU
is its whole process tree: utime + stime of every live descendant, plus
cutime + cstime (children that exited and were reaped). A worker that exits
unreaped between two samples is lost; the nodes' workers live as long as the
node.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable

from sequencer_net.testnet.processes import pids, stat_fields

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parent_map() -> dict[int, int]:
    """pid -> parent pid of every process now."""
    parents = {}
    for pid in pids():
        fields = stat_fields(pid)
        if fields is not None:
            parents[pid] = int(fields[1])
    return parents


def descendants(root: int, parents: dict[int, int]) -> set[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def process_cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of one process (0 if gone)."""
    fields = stat_fields(pid)
    if fields is None:
        return 0
    # Fields after "pid (comm)": utime is field 14, stime 15, cutime 16, cstime 17.
    return sum(int(fields[i]) for i in (11, 12, 13, 14))


def tree_cpu_seconds(roots: Iterable[int]) -> dict[int, float]:
    """CPU seconds used so far by each root's process tree."""
    parents = parent_map()
    return {
        root: sum(process_cpu_ticks(pid) for pid in descendants(root, parents)) / CLOCK_TICKS
        for root in roots
    }


def own_cpu_seconds() -> float:
    """This process's CPU seconds (all threads), without its children."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
