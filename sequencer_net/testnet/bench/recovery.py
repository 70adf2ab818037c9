"""`seqnet bench recovery`: how a 4-validator network recovers from one faulted validator.

    run_recovery
      recovery_network              a fresh testnet in a temporary directory, always stopped
      RecoveryRun.main (trio)       status pollers (every node, every 20 ms), the load, and:
        warm-up; per round, per fault kind:
          apply (kill -9 | SIGSTOP | disconnect) -> hold --fault-s -> heal (restart |
          SIGCONT | reconnect) -> wait (bounded) until caught up -> calm
      analyze_fault (pure)          per fault: commit gap, API back, caught up, links
      final_agreement               every node's block hash at their common height
      recovery_report               each number next to its target, met or not

Everything measured comes from status samples (`Sample`): when a poll was sent,
when its answer (or its failure) arrived, and the height and connected peers
the node reported. The analysis is a set of pure functions of a timeline of
samples and a fault's window (`FaultWindow`), tested on synthetic timelines.
Times are trio clock seconds; the report gives milliseconds.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import trio

from sequencer_net.client import AsyncSeqnetClient, FeeSchedule, SeqnetApiError, SeqnetClient
from sequencer_net.testnet.bench.cluster import (
    CleanupIncomplete,
    first_leaf,
    free_base_port,
    held_signals,
)
from sequencer_net.testnet.bench.limits import (
    CATCH_UP_TARGET_MS,
    COMMIT_GAP_TARGET_VIEW_TIMEOUTS,
    READY_TIMEOUT_S,
    RECOVERY_CALM_S,
    RECOVERY_CATCH_UP_TIMEOUT_S,
    RECOVERY_POLL_S,
    RECOVERY_POLL_TIMEOUT_S,
    RECOVERY_REFERENCE_NODE,
    RECOVERY_STATUS_TIMEOUT_S,
    RECOVERY_VALIDATORS,
    RECOVERY_VIEW_TIMEOUT_MS,
    RECOVERY_WARMUP_S,
    STOP_GRACE_S,
)
from sequencer_net.testnet.bench.report import git_commit, machine
from sequencer_net.testnet.load import LoadConfig, LoadGenerator, transaction_signer
from sequencer_net.testnet.manifest import (
    NO_L1,
    LoadSpec,
    Manifest,
    NetworkSpec,
    Perturbation,
    PerturbationAction,
)
from sequencer_net.testnet.network import GENESIS_FILE, Testnet, start_testnet
from sequencer_net.testnet.processes import is_our_process, log_tail

Echo = Callable[[str], None]


class RecoveryBenchError(RuntimeError):
    """A fault could not be applied or healed, so nothing after it can be measured."""


class FaultKind(StrEnum):
    KILL = "kill"  # kill -9, then start the node again
    PAUSE = "pause"  # SIGSTOP, then SIGCONT
    DISCONNECT = "disconnect"  # cut the validator links (admin API), then restore them


FAULT_ACTIONS: dict[FaultKind, tuple[PerturbationAction, PerturbationAction]] = {
    FaultKind.KILL: (PerturbationAction.KILL, PerturbationAction.RESTART),
    FaultKind.PAUSE: (PerturbationAction.PAUSE, PerturbationAction.RESUME),
    FaultKind.DISCONNECT: (PerturbationAction.DISCONNECT, PerturbationAction.RECONNECT),
}
"""Each fault kind: how it is applied, how it is healed."""


def parse_faults(text: str) -> tuple[FaultKind, ...]:
    """Parse `--faults`: "kill,pause" -> (KILL, PAUSE); ValueError naming an unknown kind."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("no fault kind given")
    kinds = []
    for name in names:
        try:
            kinds.append(FaultKind(name))
        except ValueError:
            known = ", ".join(kind.value for kind in FaultKind)
            raise ValueError(f"unknown fault {name!r} (known: {known})") from None
    return tuple(kinds)


@dataclass(frozen=True, slots=True)
class RecoveryOptions:
    faults: tuple[FaultKind, ...] = tuple(FaultKind)
    fault_s: float = 5.0
    rounds: int = 2
    rate: float = 100.0
    keep: bool = False
    warmup_s: float = RECOVERY_WARMUP_S
    calm_s: float = RECOVERY_CALM_S
    catch_up_timeout_s: float = RECOVERY_CATCH_UP_TIMEOUT_S
    poll_s: float = RECOVERY_POLL_S


@dataclass(frozen=True, slots=True)
class Sample:
    """One status poll of one node."""

    node: int
    sent: float
    at: float
    """When the answer, or the failure, arrived."""
    height: int | None
    """None: the node did not answer (refused, timed out, or answered an error)."""
    peers: tuple[int, ...] | None = None
    """The validators it reported linked (`peers` in /v1/status)."""
    consensus_height: int | None = None
    """The height its consensus had committed (`consensus_height`), which its
    executed `height` trails."""


Timeline = Mapping[int, Sequence[Sample]]
"""Each node's samples, in the order their polls completed (so by `Sample.at`)."""
Points = Sequence[tuple[float, int]]
"""(time, height): when the highest height among a set of nodes rose (`progress_points`)."""


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """One fault: which node, and when it was applied, healed and the wait ended."""

    round: int
    kind: FaultKind
    node: int
    applied_at: float
    healed_at: float
    ended_at: float
    """When the node had caught up, or the catch-up wait gave up."""
    applied: str = ""
    healed: str = ""


def faulted_node(round_index: int, kind_index: int, validators: int) -> int:
    """The validator a fault hits: the non-reference ones in turn, shifted each
    round so that every kind meets different nodes."""
    others = [i for i in range(validators) if i != RECOVERY_REFERENCE_NODE]
    return others[(round_index + kind_index) % len(others)]


# --- the analysis (pure) ------------------------------------------------------------


def _answered(samples: Sequence[Sample]) -> Iterator[Sample]:
    return (s for s in samples if s.height is not None)


def progress_points(timeline: Timeline, nodes: Collection[int]) -> list[tuple[float, int]]:
    """When the highest height among `nodes` rose: (time it was first seen, new
    height). The first entry is the first observation."""
    merged = sorted(
        (s for node in nodes for s in _answered(timeline.get(node, ()))),
        key=lambda s: (s.at, -(s.height or 0)),  # at one instant, the highest counts
    )
    points: list[tuple[float, int]] = []
    for sample in merged:
        assert sample.height is not None
        if not points or sample.height > points[-1][1]:
            points.append((sample.at, sample.height))
    return points


def height_at(points: Points, at: float) -> int | None:
    """The highest height seen at or before `at` (None before the first observation)."""
    index = bisect_right(points, at, key=lambda point: point[0])
    return points[index - 1][1] if index else None


def longest_gap(points: Points, start: float, end: float) -> float:
    """The longest interval without a rise that overlaps [start, end].

    An interval that began before `start` counts whole (clients saw no commit
    for all of it); the last one is cut at `end`. With no observation before
    `start`, the first interval begins at `start`.
    """
    index = bisect_right(points, start, key=lambda point: point[0])
    previous = points[index - 1][0] if index else start
    longest = 0.0
    for at, _ in points[index:]:
        if at > end:
            break
        longest = max(longest, at - previous)
        previous = at
    return max(longest, end - previous)


def last_answer_before(samples: Sequence[Sample], at: float) -> Sample | None:
    found = None
    for sample in samples:
        if sample.at > at:
            break
        if sample.height is not None:
            found = sample
    return found


def first_answer_between(samples: Sequence[Sample], start: float, end: float) -> Sample | None:
    for sample in _answered(samples):
        if start <= sample.at <= end:
            return sample
    return None


def api_back_s(samples: Sequence[Sample], window: FaultWindow) -> float | None:
    """Seconds from heal to the node's first answer after it; 0 if the node kept
    answering through the fault (its last poll completed before the heal was
    sent after the fault began and answered). None: no answer before the end."""
    completed = [s for s in samples if s.at <= window.healed_at]
    if completed and completed[-1].height is not None and completed[-1].sent >= window.applied_at:
        return 0.0
    first = first_answer_between(samples, window.healed_at, window.ended_at)
    return None if first is None else first.at - window.healed_at


def _reached_s(
    samples: Sequence[Sample], window: FaultWindow, target: int, consensus: bool
) -> float | None:
    """Seconds from heal until the node first reported, inside the window, an
    executed height (or, with `consensus`, a consensus height) >= `target`."""
    for sample in _answered(samples):
        height = sample.consensus_height if consensus else sample.height
        inside = window.healed_at <= sample.at <= window.ended_at
        if inside and height is not None and height >= target:
            return sample.at - window.healed_at
    return None


def caught_up_s(samples: Sequence[Sample], window: FaultWindow, target: int) -> float | None:
    """Seconds from heal until the node first reported a height >= `target`."""
    return _reached_s(samples, window, target, consensus=False)


def in_consensus_s(samples: Sequence[Sample], window: FaultWindow, target: int) -> float | None:
    """Seconds from heal until the node's consensus first reported a committed
    height >= `target`: from then on it votes on the live chain, whatever its
    execution still has to replay."""
    return _reached_s(samples, window, target, consensus=True)


def caught_up_to_live_s(
    samples: Sequence[Sample], window: FaultWindow, healthy_points: Points
) -> float | None:
    """Seconds from heal until the node first reported a height >= the healthy
    nodes' highest height at that moment, minus one."""
    for sample in _answered(samples):
        assert sample.height is not None
        if not window.healed_at <= sample.at <= window.ended_at:
            continue
        live = height_at(healthy_points, sample.at)
        if live is not None and sample.height >= live - 1:
            return sample.at - window.healed_at
    return None


def link_report(
    timeline: Timeline, window: FaultWindow, healthy: Collection[int]
) -> dict[str, Any]:
    """The faulted node's links: the peers it reported before the fault and
    first after the heal; whether any of those was missing from a later answer
    up to the end of the window; when all were back; and which healthy nodes
    reported it unlinked at some point in the window."""
    samples = timeline.get(window.node, ())
    before = last_answer_before(samples, window.applied_at)
    after = first_answer_between(samples, window.healed_at, window.ended_at)
    wanted = set(before.peers) if before is not None and before.peers is not None else None
    restored_ms = None
    lost_after_heal = False
    if wanted is not None:
        for sample in _answered(samples):
            if not window.healed_at <= sample.at <= window.ended_at:
                continue
            complete = sample.peers is not None and wanted <= set(sample.peers)
            if complete and restored_ms is None:
                restored_ms = _ms(sample.at - window.healed_at)
            if not complete and restored_ms is not None:
                lost_after_heal = True
    dropped_by = sorted(
        node
        for node in healthy
        if any(
            window.applied_at <= s.at <= window.ended_at
            and s.peers is not None
            and window.node not in s.peers
            for s in _answered(timeline.get(node, ()))
        )
    )
    after_complete = (
        wanted is not None
        and after is not None
        and after.peers is not None
        and wanted <= set(after.peers)
    )
    return {
        "peers_before": None if before is None else _list(before.peers),
        "peers_after_heal": None if after is None else _list(after.peers),
        "restored_ms": restored_ms,
        "lost_after_heal": lost_after_heal,
        "dropped_by": dropped_by,
        "kept": after_complete and not lost_after_heal and not dropped_by,
    }


def analyze_fault(timeline: Timeline, window: FaultWindow, view_timeout_ms: int) -> dict[str, Any]:
    """One fault's numbers, each next to its target."""
    healthy = [node for node in timeline if node != window.node]
    points = progress_points(timeline, healthy)
    samples = timeline.get(window.node, ())
    gap_ms = _ms(longest_gap(points, window.applied_at, window.ended_at))
    gap_target_ms = COMMIT_GAP_TARGET_VIEW_TIMEOUTS * view_timeout_ms
    height_at_heal = height_at(points, window.healed_at)
    own = last_answer_before(samples, window.healed_at)
    behind = None
    if height_at_heal is not None and own is not None and own.height is not None:
        behind = max(0, height_at_heal - own.height)
    api_back = api_back_s(samples, window)
    caught = None if height_at_heal is None else caught_up_s(samples, window, height_at_heal)
    consensus = None if height_at_heal is None else in_consensus_s(samples, window, height_at_heal)
    live = caught_up_to_live_s(samples, window, points)
    links = link_report(timeline, window, healthy)
    if window.kind is FaultKind.PAUSE:
        links.update(target="kept through the pause", met=links["kept"])
    return {
        "round": window.round,
        "fault": str(window.kind),
        "node": window.node,
        "applied": window.applied,
        "healed": window.healed,
        "fault_ms": _ms(window.healed_at - window.applied_at),
        "window_ms": _ms(window.ended_at - window.applied_at),
        "height_at_heal": height_at_heal,
        "blocks_behind_at_heal": behind,
        "max_commit_gap_ms": {
            "measured": gap_ms,
            "view_timeouts": round(gap_ms / view_timeout_ms, 2),
            "target_ms": gap_target_ms,
            "met": gap_ms <= gap_target_ms,
        },
        "api_back_ms": None if api_back is None else _ms(api_back),
        "caught_up_ms": _catch_up_check(caught, api_back),
        "in_consensus_ms": _catch_up_check(consensus, api_back),
        "caught_up_to_live_ms": _catch_up_check(live, api_back),
        "links": links,
    }


def _catch_up_check(seconds: float | None, api_back: float | None) -> dict[str, Any]:
    measured = None if seconds is None else _ms(seconds)
    after_api = None
    if seconds is not None and api_back is not None:
        after_api = _ms(max(0.0, seconds - api_back))
    return {
        "measured": measured,
        "after_api_back": after_api,
        "target_ms": CATCH_UP_TARGET_MS,
        "met": measured is not None and measured <= CATCH_UP_TARGET_MS,
        "met_after_api_back": after_api is not None and after_api <= CATCH_UP_TARGET_MS,
    }


def hashes_agree(hashes: Mapping[str, str | None]) -> bool | None:
    """False if two nodes hold different blocks; True if every node answered
    with the same one; None if some did not answer (and the rest agree)."""
    known = {h for h in hashes.values() if h is not None}
    if len(known) > 1:
        return False
    if not known or None in hashes.values():
        return None
    return True


def commits_between(samples: Sequence[Sample], start: float, end: float) -> dict[str, Any]:
    """Blocks a node committed between its first and last answers in [start, end]."""
    inside = [s for s in _answered(samples) if start <= s.at <= end]
    if not inside:
        return {"commits": None, "from_height": None, "to_height": None}
    first, last = inside[0].height, inside[-1].height
    assert first is not None and last is not None
    return {"commits": last - first, "from_height": first, "to_height": last}


def targets_summary(faults: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Each target over all faults: the worst measured value and whether all met it."""

    def worst(key: str) -> Any:
        values = [f[key]["measured"] for f in faults]
        return None if None in values or not values else max(values)

    summary: dict[str, Any] = {}
    for key in ("max_commit_gap_ms", "in_consensus_ms", "caught_up_ms", "caught_up_to_live_ms"):
        checks = [f[key] for f in faults]
        summary[key] = {
            "worst": worst(key),
            "target_ms": checks[0]["target_ms"] if checks else None,
            "met": all(c["met"] for c in checks) if checks else None,
        }
        if key != "max_commit_gap_ms":
            summary[key]["met_after_api_back"] = (
                all(c["met_after_api_back"] for c in checks) if checks else None
            )
    pauses = [f["links"]["met"] for f in faults if f["fault"] == FaultKind.PAUSE]
    summary["pause_keeps_links"] = {"met": all(pauses) if pauses else None}
    return summary


def _ms(seconds: float) -> int:
    return round(seconds * 1_000)


def _list(peers: tuple[int, ...] | None) -> list[int] | None:
    return None if peers is None else list(peers)


# --- the run ------------------------------------------------------------------------


def recovery_manifest(options: RecoveryOptions) -> Manifest:
    return Manifest(
        network=NetworkSpec(
            validators=RECOVERY_VALIDATORS, view_timeout_ms=RECOVERY_VIEW_TIMEOUT_MS
        ),
        load=LoadSpec(rate=options.rate),
        l1=NO_L1,  # recovery of the sequencer alone
        source="<seqnet bench recovery>",
    )


@contextmanager
def recovery_network(options: RecoveryOptions, echo: Echo) -> Iterator[Testnet]:
    """A fresh committing testnet in a temporary directory; on the way out
    (also on errors and Ctrl-C) every node is stopped and the directory
    removed unless `options.keep`."""
    directory = Path(tempfile.mkdtemp(prefix="seqnet-bench-recovery-"))
    net: Testnet | None = None
    try:
        echo(f"starting {RECOVERY_VALIDATORS} validators; directory {directory}")
        net = start_testnet(
            directory,
            manifest=recovery_manifest(options),
            base_port=free_base_port(RECOVERY_VALIDATORS),
            stop_grace_s=STOP_GRACE_S,
            fresh=True,
            wait=False,
            die_with_starter=True,  # killed, the benchmark takes its nodes with it
        )
        net.wait_until_committing(READY_TIMEOUT_S)
        yield net
    finally:
        with held_signals():
            leftovers = _stop_and_remove(net, directory, options.keep)
        if leftovers:
            raise CleanupIncomplete("could not stop: " + ", ".join(leftovers))


def _stop_and_remove(net: Testnet | None, directory: Path, keep: bool) -> list[str]:
    leftovers = []
    if net is not None:
        net.stop(grace_s=STOP_GRACE_S)
        leftovers = [
            f"{node.name} (pid {node.pid})"
            for node in net.nodes
            if node.identity is not None and is_our_process(node.identity)
        ]
    if not keep and not leftovers:
        shutil.rmtree(directory, ignore_errors=True)
    return leftovers


def sample_of(node: int, sent: float, at: float, status: dict[str, Any] | None) -> Sample:
    """A status answer (None: no answer) as a sample."""
    height = status.get("height") if status is not None else None
    if not isinstance(height, int) or isinstance(height, bool):
        return Sample(node, sent, at, None)
    peers = status.get("peers") if status is not None else None
    linked = None
    if isinstance(peers, list) and all(isinstance(p, int) for p in peers):
        linked = tuple(peers)
    consensus = status.get("consensus_height") if status is not None else None
    if not isinstance(consensus, int) or isinstance(consensus, bool):
        consensus = None
    return Sample(node, sent, at, height, linked, consensus)


@dataclass
class SampleLog:
    """The timeline as it is recorded; wakes the catch-up wait on every sample."""

    samples: dict[int, list[Sample]]
    highest: dict[int, int] = field(default_factory=dict)
    _changed: trio.Event = field(default_factory=trio.Event)

    def add(self, sample: Sample) -> None:
        self.samples[sample.node].append(sample)
        if sample.height is not None:
            self.highest[sample.node] = max(self.highest.get(sample.node, 0), sample.height)
        self._changed.set()
        self._changed = trio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    def latest(self, node: int) -> Sample | None:
        samples = self.samples[node]
        return samples[-1] if samples else None

    def highest_of(self, nodes: Collection[int]) -> int:
        return max((self.highest.get(node, 0) for node in nodes), default=0)


def check_took_effect(net: Testnet, index: int, action: PerturbationAction, outcome: str) -> None:
    """Raise RecoveryBenchError unless the node is in the state `action` leaves it in."""
    node = net.nodes[index]
    running = node.is_running()
    expected = {
        PerturbationAction.KILL: not running,
        PerturbationAction.RESTART: running,
        PerturbationAction.PAUSE: running and node.paused,
        PerturbationAction.RESUME: running and not node.paused,
        PerturbationAction.DISCONNECT: running and not node.connected,
        PerturbationAction.RECONNECT: running and node.connected,
    }[action]
    if not expected:
        raise RecoveryBenchError(f"{action} node{index} did not take effect: {outcome}")


class RecoveryRun:
    """The trio part of a run: pollers, load and the fault schedule."""

    def __init__(
        self, net: Testnet, options: RecoveryOptions, load: LoadGenerator | None, echo: Echo
    ) -> None:
        self.net = net
        self.options = options
        self.load = load
        self.echo = echo
        self.log = SampleLog({index: [] for index in range(len(net.nodes))})
        self.results: list[dict[str, Any]] = []
        self.started_at = 0.0
        self.warmed_at = 0.0
        self.ended_at = 0.0

    @property
    def view_timeout_ms(self) -> int:
        return self.net.manifest.network.view_timeout_ms

    async def main(self) -> None:
        async with trio.open_nursery() as nursery:
            for index in range(len(self.net.nodes)):
                nursery.start_soon(self._poll, index)
            if self.load is not None:
                nursery.start_soon(self.load.run)
            await self._faults()
            nursery.cancel_scope.cancel()

    async def _poll(self, index: int) -> None:
        url = self.net.nodes[index].api_url
        async with AsyncSeqnetClient(
            url, timeout=RECOVERY_POLL_TIMEOUT_S, max_connections=2
        ) as client:
            while True:
                sent = trio.current_time()
                try:
                    status: dict[str, Any] | None = await client.status()
                except SeqnetApiError:
                    status = None
                self.log.add(sample_of(index, sent, trio.current_time(), status))
                await trio.sleep_until(sent + self.options.poll_s)

    async def _faults(self) -> None:
        options = self.options
        self.started_at = trio.current_time()
        self.echo(f"warm-up: {options.warmup_s:g} s at {options.rate:g} tx/s")
        await trio.sleep(options.warmup_s)
        self.warmed_at = trio.current_time()
        for round_index in range(options.rounds):
            for kind_index, kind in enumerate(options.faults):
                node = faulted_node(round_index, kind_index, len(self.net.nodes))
                window = await self._one_fault(round_index + 1, kind, node)
                result = analyze_fault(self.log.samples, window, self.view_timeout_ms)
                self.results.append(result)
                self.echo(fault_line(result))
                await trio.sleep(options.calm_s)
        self.ended_at = trio.current_time()

    async def _apply(self, action: PerturbationAction, node: int) -> str:
        outcome = await trio.to_thread.run_sync(self.net.apply, Perturbation(0.0, action, node))
        check_took_effect(self.net, node, action, outcome)
        return outcome

    async def _one_fault(self, round_number: int, kind: FaultKind, node: int) -> FaultWindow:
        fault, heal = FAULT_ACTIONS[kind]
        applied_at = trio.current_time()
        applied = await self._apply(fault, node)
        await trio.sleep_until(applied_at + self.options.fault_s)
        healthy = [index for index in self.log.samples if index != node]
        target = self.log.highest_of(healthy)
        healed_at = trio.current_time()
        healed = await self._apply(heal, node)
        caught = await self._wait_caught_up(node, healthy, healed_at, target)
        faulted = self.net.nodes[node]
        if not faulted.is_running():
            raise RecoveryBenchError(
                f"{faulted.name} exited after {heal}; last lines of {faulted.log_path}:\n"
                + log_tail(faulted.log_path)
            )
        if not caught:
            self.echo(
                f"  node{node} not caught up {self.options.catch_up_timeout_s:g} s after "
                f"{heal}: moving on"
            )
        return FaultWindow(
            round_number, kind, node, applied_at, healed_at, trio.current_time(), applied, healed
        )

    async def _wait_caught_up(
        self, node: int, healthy: list[int], healed_at: float, target: int
    ) -> bool:
        """Until the node has answered, after the heal, with a height >= `target`
        and one >= the healthy nodes' highest minus one; False at the timeout."""
        reached_target = reached_live = False
        with trio.move_on_after(self.options.catch_up_timeout_s):
            while not (reached_target and reached_live):
                await self.log.changed()
                latest = self.log.latest(node)
                if latest is None or latest.height is None or latest.at < healed_at:
                    continue
                reached_target = reached_target or latest.height >= target
                live = self.log.highest_of(healthy)
                reached_live = reached_live or latest.height >= live - 1
            return True
        return False


def block_hash(api_url: str, height: int) -> str | None:
    try:
        with SeqnetClient(api_url, timeout=RECOVERY_STATUS_TIMEOUT_S) as client:
            found = client.block(height).get("hash")
    except SeqnetApiError:
        return None
    return found if isinstance(found, str) else None


def final_agreement(net: Testnet) -> dict[str, Any]:
    """Every node's block hash at the lowest height they all report."""
    statuses = net.statuses(timeout_s=RECOVERY_STATUS_TIMEOUT_S)
    heights = {
        node.name: status.get("height") if status is not None else None
        for node, status in zip(net.nodes, statuses, strict=True)
    }
    known = [h for h in heights.values() if isinstance(h, int)]
    if not known or min(known) <= 0:
        return {"height": None, "agree": None, "heights": heights, "hashes": {}}
    common = min(known)
    hashes = {node.name: block_hash(node.api_url, common) for node in net.nodes}
    return {"height": common, "agree": hashes_agree(hashes), "heights": heights, "hashes": hashes}


def recovery_load(net: Testnet, rate: float) -> LoadGenerator | None:
    """The testnet's load (mix, accounts and seed of its manifest) at `rate` tx/s."""
    if rate <= 0:
        return None
    from sequencer_net.home.genesis import load_genesis

    genesis = load_genesis(net.directory / GENESIS_FILE)
    config = LoadConfig.of_spec(
        net.manifest.load, rate=rate, genesis_time_s=genesis.execution.genesis_time
    )
    signer = transaction_signer(genesis.domain(), fees=FeeSchedule.of_genesis(genesis))
    return LoadGenerator([node.api_url for node in net.nodes], config, signer)


def run_recovery(options: RecoveryOptions, echo: Echo) -> dict[str, Any]:
    """Everything `seqnet bench recovery` does; the JSON report."""
    started = time.monotonic()
    host = machine()
    with recovery_network(options, echo) as net:
        run = RecoveryRun(net, options, recovery_load(net, options.rate), echo)
        try:
            trio.run(run.main)
        except BaseExceptionGroup as group:
            raise first_leaf(group) from group
        echo("comparing block hashes")
        agreement = final_agreement(net)
        directory = net.directory
    return recovery_report(
        run,
        agreement,
        host=host,
        wall_s=time.monotonic() - started,
        directory=str(directory) if options.keep else None,
    )


def recovery_report(
    run: RecoveryRun,
    agreement: dict[str, Any],
    *,
    host: dict[str, Any],
    wall_s: float,
    directory: str | None,
) -> dict[str, Any]:
    options, net = run.options, run.net
    reference = commits_between(
        run.log.samples[RECOVERY_REFERENCE_NODE], run.started_at, run.ended_at
    )
    all_points = progress_points(run.log.samples, range(len(net.nodes)))
    baseline_gap = longest_gap(all_points, run.started_at, run.warmed_at)
    return {
        "benchmark": "recovery",
        "config": {
            "validators": len(net.nodes),
            "view_timeout_ms": run.view_timeout_ms,
            "rate": options.rate,
            "mix": net.manifest.load.mix,
            "faults": [str(kind) for kind in options.faults],
            "fault_s": options.fault_s,
            "rounds": options.rounds,
            "warmup_s": options.warmup_s,
            "calm_s": options.calm_s,
            "catch_up_timeout_s": options.catch_up_timeout_s,
            "poll_ms": _ms(options.poll_s),
            "reference_node": RECOVERY_REFERENCE_NODE,
        },
        "faults": run.results,
        "targets": targets_summary(run.results),
        "reference": {
            "node": RECOVERY_REFERENCE_NODE,
            "run_s": round(run.ended_at - run.started_at, 1),
            **reference,
        },
        "baseline_max_commit_gap_ms": _ms(baseline_gap),
        "agreement": agreement,
        "load": run.load.stats.summary() if run.load is not None else None,
        "samples": sum(len(samples) for samples in run.log.samples.values()),
        "wall_s": round(wall_s, 1),
        "directory": directory,
        "machine": host,
        "git_commit": git_commit(),
    }


# --- text ---------------------------------------------------------------------------


def _value(value: Any) -> str:
    return "-" if value is None else str(value)


def _verdict(met: bool | None) -> str:
    return {True: "ok", False: "MISS", None: "-"}[met]


def fault_line(result: dict[str, Any]) -> str:
    gap, caught, live = (
        result["max_commit_gap_ms"],
        result["caught_up_ms"],
        result["caught_up_to_live_ms"],
    )
    text = (
        f"  round {result['round']} {result['fault']:<10} node{result['node']}: "
        f"{_value(result['blocks_behind_at_heal'])} behind at heal, "
        f"gap {gap['measured']} ms ({_verdict(gap['met'])}), "
        f"API back {_value(result['api_back_ms'])} ms, "
        f"in consensus {_value(result['in_consensus_ms']['measured'])} ms, "
        f"caught up {_value(caught['measured'])} ms ({_verdict(caught['met'])}), "
        f"to live {_value(live['measured'])} ms"
    )
    links = result["links"]
    if "met" in links:
        text += f", links kept: {_verdict(links['met'])}"
    return text


FAULT_COLUMNS = (
    "round",
    "fault",
    "node",
    "behind",
    "gap ms (views)",
    "API back ms",
    "in consensus ms",
    "caught up ms",
    "to live ms",
    "links",
)


def _fault_row(f: dict[str, Any]) -> list[str]:
    gap, caught, live = f["max_commit_gap_ms"], f["caught_up_ms"], f["caught_up_to_live_ms"]
    links = f["links"]
    if "met" in links:
        linked = "kept" if links["met"] else "NOT kept"
    else:
        linked = f"back in {_value(links['restored_ms'])} ms"
    return [
        str(f["round"]),
        f["fault"],
        f"node{f['node']}",
        _value(f["blocks_behind_at_heal"]),
        f"{gap['measured']} ({gap['view_timeouts']}) {_verdict(gap['met'])}",
        _value(f["api_back_ms"]),
        f"{_value(f['in_consensus_ms']['measured'])} {_verdict(f['in_consensus_ms']['met'])}",
        f"{_value(caught['measured'])} {_verdict(caught['met'])}",
        f"{_value(live['measured'])} {_verdict(live['met'])}",
        linked,
    ]


def _fault_table(faults: Sequence[dict[str, Any]]) -> list[str]:
    rows = [list(FAULT_COLUMNS), *(_fault_row(f) for f in faults)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(FAULT_COLUMNS))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def report_text(report: dict[str, Any]) -> str:
    config = report["config"]
    lines = [
        f"seqnet bench recovery: {config['validators']} validators, view timeout "
        f"{config['view_timeout_ms']} ms, {config['rate']:g} tx/s {config['mix']}, "
        f"faults of {config['fault_s']:g} s, {config['rounds']} round(s)",
        "",
        *_fault_table(report["faults"]),
    ]
    targets = report["targets"]
    gap, consensus, caught, live = (
        targets["max_commit_gap_ms"],
        targets["in_consensus_ms"],
        targets["caught_up_ms"],
        targets["caught_up_to_live_ms"],
    )
    agreement = report["agreement"]
    agree = {True: "agree", False: "DISAGREE", None: "unknown"}[agreement["agree"]]
    reference = report["reference"]
    lines += [
        "",
        "targets:",
        f"  commit gap <= {gap['target_ms']} ms: {_verdict(gap['met'])} "
        f"(worst {_value(gap['worst'])} ms)",
        f"  in consensus <= {consensus['target_ms']} ms after heal: "
        f"{_verdict(consensus['met'])} (worst {_value(consensus['worst'])} ms); after the "
        f"API is back: {_verdict(consensus['met_after_api_back'])}",
        f"  caught up <= {caught['target_ms']} ms after heal: {_verdict(caught['met'])} "
        f"(worst {_value(caught['worst'])} ms); after the API is back: "
        f"{_verdict(caught['met_after_api_back'])}",
        f"  caught up to live <= {live['target_ms']} ms: {_verdict(live['met'])} "
        f"(worst {_value(live['worst'])} ms)",
        f"  pause keeps links: {_verdict(targets['pause_keeps_links']['met'])}",
        "",
        f"reference node{reference['node']}: {_value(reference['commits'])} commits in "
        f"{reference['run_s']} s; longest commit gap with no fault "
        f"{report['baseline_max_commit_gap_ms']} ms",
        f"blocks at height {_value(agreement['height'])}: nodes {agree}",
        f"wall time {report['wall_s']} s",
    ]
    return "\n".join(lines)
