"""One load step against running nodes: send a pre-built plan, watch it commit.

Three tasks under one nursery:

- the sender submits tick k's requests at k x tick_s (open loop: late ticks
  go out at once), at most MAX_IN_FLIGHT_PER_NODE requests per node; the time
  it waits for a free slot is node backpressure and is reported. With the
  `stream` wire each node's requests are messages pipelined on one WebSocket
  (ws_sender.py); with `json` and `msgpack`, batch POSTs over keep-alive
  connections;
- the observer subscribes to node 0's executed height (`WS
  /v1/subscribe/executed`, pushed when node 0 has committed and executed a
  block) and fetches each newly executed block: a transaction's commit time is
  when the first message naming the height of the block that holds it (or a
  later one) arrived. A dropped subscription is reopened and the blocks in
  between fetched by height, so none is missed;
- the sampler snapshots CPU, height, view and metrics (node 0's `/v1/status`
  and `/metrics`) at the start and end of the measurement window and the
  backlog (accepted minus committed) every OBSERVE_POLL_S during it.

After the last request the step drains: it waits until every accepted
transaction has committed, nothing committed for DRAIN_IDLE_S, or
DRAIN_MAX_S passed. `summarize_step` turns the raw record into the numbers
and the `StepMeasurement` the sustained-rate decision reads.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import trio

from consensus.crypto import SIGNATURE_LENGTH
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.testnet.bench.cluster import first_leaf
from sequencer_net.testnet.bench.cpu import own_cpu_seconds, tree_cpu_seconds
from sequencer_net.testnet.bench.histogram import LatencyHistogram
from sequencer_net.testnet.bench.limits import (
    BACKLOG_SAMPLE_S,
    DRAIN_IDLE_S,
    DRAIN_MAX_S,
    EXECUTED_QUIET_S,
    EXECUTED_SILENCE_S,
    MAX_IN_FLIGHT_PER_NODE,
    MIN_WARMUP_S,
    NODE0_STALE_S,
    OBSERVE_POLL_S,
    REQUEST_TIMEOUT_S,
    STATUS_PROBE_TIMEOUT_S,
    STREAMS_PER_NODE,
    WARMUP_FRACTION,
)
from sequencer_net.testnet.bench.sustain import StepMeasurement, least_squares_slope
from sequencer_net.testnet.bench.traffic import Request, StepPlan, WireFormat
from sequencer_net.testnet.bench.ws_receiver import Closed, LightReceiver
from sequencer_net.testnet.bench.ws_sender import Codes, NodeStream

NULLIFIED_METRIC = "seqnet_views_nullified_total"
JSON_HEADERS = {"content-type": "application/json"}
MSGPACK_HEADERS = {"content-type": "application/msgpack"}

PENDING, ACCEPTED, REFUSED = 0, 1, 2
HASH_HEX_LENGTH = 66  # "0x" + 32 bytes
EXECUTED_PATH = "/v1/subscribe/executed"
MAX_EXECUTED_MESSAGE = 4096


class ObserverError(RuntimeError):
    """Node 0 stopped answering the observer, so commits cannot be measured."""


GcPauseTotals = dict[str, tuple[dict[float, float], float, float]]
"""A node's garbage collections so far, per generation ("0", "1", "2"):
cumulative count per upper bound (s), wall-clock seconds summed, CPU seconds."""


@dataclass(slots=True)
class Snapshot:
    """The state of things at one edge of the measurement window."""

    at: float
    height: int
    view: int
    nullified: float | None
    node_cpu_s: dict[int, float]
    client_cpu_s: float
    event_delay: dict[float, float] | None = None
    """Node 0's consensus event delay histogram: cumulative count per upper bound (s)."""
    gc_pauses: list[GcPauseTotals | None] = field(default_factory=list)
    """Per node, its garbage collections so far (None: not exported or not answered)."""


@dataclass(slots=True)
class StepRecord:
    """What happened during one step (trio clock times)."""

    plan: StepPlan
    started_at: float = 0.0
    load_ended_at: float = 0.0
    window: tuple[float, float] = (0.0, 0.0)
    sent_at: list[float] = field(default_factory=list)  # per request, -1: never sent
    outcome: bytearray = field(default_factory=bytearray)  # per transaction
    committed_at: list[float] = field(default_factory=list)  # per transaction, -1: not seen
    refused_codes: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    committed: int = 0
    committed_refused: int = 0
    """Transactions seen committed although their answer refused them (a
    stream or request that failed after the node had stored them)."""
    backlog: list[tuple[float, float]] = field(default_factory=list)
    waited_for_nodes_s: float = 0.0
    max_behind_s: float = 0.0
    start: Snapshot | None = None
    end: Snapshot | None = None
    drained: bool = False


def executed_height(status: dict[str, Any]) -> int:
    """The highest block the node has committed and executed."""
    height = int(status.get("height") or 0)
    executed = status.get("executed_height")
    return min(height, int(executed)) if isinstance(executed, int) else height


def _executed_message_height(payload: bytes) -> int | None:
    """The height of a `/v1/subscribe/executed` message, None for anything else
    (a ping)."""
    try:
        document = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None
    if not isinstance(document, dict) or document.get("type") != "executed":
        return None
    height = document.get("height")
    return height if isinstance(height, int) and height >= 0 else None


SIGNATURE_HEX_LENGTH = 2 * SIGNATURE_LENGTH


def block_tx_hash(item: str) -> str:
    """A block's transaction as GET /v1/blocks lists it (the encoded transaction,
    0x-hex; or its hash) -> its hash, 0x-hex."""
    if len(item) == HASH_HEX_LENGTH:
        return item.lower()
    return "0x" + tx_hash(bytes.fromhex(item.removeprefix("0x"))).hex()


def parse_counter(metrics_text: str, name: str) -> float | None:
    """An unlabelled sample's value from Prometheus text, None if absent."""
    for line in metrics_text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{}"):
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


EVENT_DELAY_METRIC = "seqnet_consensus_event_delay_seconds"


def parse_histogram(metrics_text: str, name: str) -> dict[float, float] | None:
    """An unlabelled histogram's cumulative bucket counts by upper bound (+Inf
    as math.inf) from Prometheus text, None if absent."""
    buckets: dict[float, float] = {}
    prefix = name + '_bucket{le="'
    for line in metrics_text.splitlines():
        if not line.startswith(prefix):
            continue
        bound, _, rest = line[len(prefix) :].partition('"}')
        try:
            buckets[math.inf if bound == "+Inf" else float(bound)] = float(rest.strip())
        except ValueError:
            return None
    return buckets or None


GC_PAUSE_METRIC = "seqnet_gc_pause_seconds"
GC_CPU_METRIC = "seqnet_gc_cpu_seconds_total"


def parse_gc_pauses(metrics_text: str) -> GcPauseTotals | None:
    """The `seqnet_gc_pause_seconds{generation}` histogram and the
    `seqnet_gc_cpu_seconds_total{generation}` counter from Prometheus text,
    None if absent or malformed."""
    buckets: dict[str, dict[float, float]] = {}
    sums: dict[str, float] = {}
    cpu: dict[str, float] = {}
    prefixes = {
        "bucket": GC_PAUSE_METRIC + '_bucket{generation="',
        "sum": GC_PAUSE_METRIC + '_sum{generation="',
        "cpu": GC_CPU_METRIC + '{generation="',
    }
    try:
        for line in metrics_text.splitlines():
            if line.startswith(prefixes["bucket"]):
                generation, _, rest = line[len(prefixes["bucket"]) :].partition('",le="')
                bound, _, value = rest.partition('"}')
                upper = math.inf if bound == "+Inf" else float(bound)
                buckets.setdefault(generation, {})[upper] = float(value.strip())
            elif line.startswith(prefixes["sum"]):
                generation, _, value = line[len(prefixes["sum"]) :].partition('"}')
                sums[generation] = float(value.strip())
            elif line.startswith(prefixes["cpu"]):
                generation, _, value = line[len(prefixes["cpu"]) :].partition('"}')
                cpu[generation] = float(value.strip())
    except ValueError:
        return None
    if not buckets or not set(buckets) == set(sums) == set(cpu):
        return None
    return {g: (buckets[g], sums[g], cpu[g]) for g in sorted(buckets)}


def gc_pause_delta(
    start: Sequence[GcPauseTotals | None], end: Sequence[GcPauseTotals | None]
) -> dict[str, Any] | None:
    """What each node's collector did between two scrapes, per generation:
    collections, their wall-clock and CPU time per node (in the nodes' order),
    and the largest bucket any node's collection fell into (null: none, or
    above the last bound). None unless every node exported the metrics both
    times."""
    if not start or len(start) != len(end):
        return None
    pairs = []
    for s, e in zip(start, end, strict=True):
        if s is None or e is None or set(s) != set(e):
            return None
        pairs.append((s, e))
    result: dict[str, Any] = {}
    for generation in sorted(pairs[0][0]):
        counts, total_ms, cpu_ms, largest = [], [], [], 0.0
        for s, e in pairs:
            (s_buckets, s_sum, s_cpu), (e_buckets, e_sum, e_cpu) = s[generation], e[generation]
            delta = histogram_delta(s_buckets, e_buckets)
            if delta is None:
                return None
            counts.append(delta["count"])
            total_ms.append(round((e_sum - s_sum) * 1000, 1))
            cpu_ms.append(round((e_cpu - s_cpu) * 1000, 1))
            if delta["count"]:
                bound = delta["max_le_ms"]
                largest = max(largest, math.inf if bound is None else bound)
        result[f"gen{generation}"] = {
            "count": counts,
            "total_ms": total_ms,
            "cpu_ms": cpu_ms,
            "max_le_ms": None if math.isinf(largest) or not any(counts) else largest,
        }
    return result


def histogram_delta(
    start: dict[float, float] | None, end: dict[float, float] | None
) -> dict[str, Any] | None:
    """What a cumulative histogram recorded between two scrapes: the count, the
    upper bounds (ms) under which 50% and 99% fell, and the largest bucket
    anything fell into (null when nothing was recorded)."""
    if start is None or end is None or set(start) != set(end):
        return None
    bounds = sorted(end)
    counts = [end[b] - start[b] for b in bounds]  # cumulative
    total = counts[-1]

    def bound_ms(b: float) -> float | None:
        return None if math.isinf(b) else round(b * 1000, 3)

    def quantile(q: float) -> float | None:
        for b, c in zip(bounds, counts, strict=True):
            if c >= q * total:
                return bound_ms(b)
        return None

    if total <= 0:
        return {"count": 0, "p50_le_ms": None, "p99_le_ms": None, "max_le_ms": None}
    previous = 0.0
    largest = bounds[0]
    for b, c in zip(bounds, counts, strict=True):
        if c > previous:
            largest = b
        previous = c
    return {
        "count": round(total),
        "p50_le_ms": quantile(0.50),
        "p99_le_ms": quantile(0.99),
        "max_le_ms": bound_ms(largest),
    }


def count_outcomes(body: bytes, wire: WireFormat, count: int) -> list[str | None]:
    """Per transaction: None if accepted, else the refusal's code."""
    if wire is WireFormat.MSGPACK:
        answers = msgspec.msgpack.decode(body)
        if not isinstance(answers, list) or len(answers) != count:
            raise ValueError("malformed msgpack answer")
        return [None if isinstance(a, bytes) else str(a[0]) for a in answers]
    document = msgspec.json.decode(body)
    results = document.get("results") if isinstance(document, dict) else None
    if not isinstance(results, list) or len(results) != count:
        raise ValueError("malformed JSON answer")
    return [None if "hash" in r else str(r.get("code", "error")) for r in results]


class StepDriver:
    def __init__(
        self,
        plan: StepPlan,
        node_urls: Sequence[str],
        node_pids: Sequence[int],
        *,
        drain_max_s: float = DRAIN_MAX_S,
        drain_idle_s: float = DRAIN_IDLE_S,
        poll_s: float = OBSERVE_POLL_S,
    ) -> None:
        self.plan = plan
        self.urls = list(node_urls)
        self.pids = list(node_pids)
        self.drain_max_s = drain_max_s
        self.drain_idle_s = drain_idle_s
        self.poll_s = poll_s
        self.record = StepRecord(
            plan=plan,
            sent_at=[-1.0] * sum(len(t) for t in plan.ticks),
            outcome=bytearray(plan.total),
            committed_at=[-1.0] * plan.total,
        )
        self._index = {h: i for i, h in enumerate(plan.hashes)}
        self._by_signature: dict[str, int] | None = {
            signature: i for i, signature in enumerate(plan.signatures)
        }
        """A block lists each transaction encoded (0x-hex) and an encoded
        transaction ends with its signature: a block's item is matched to the
        plan by its last SIGNATURE_HEX_LENGTH characters, with no decoding or
        hashing. None (items hashed instead) unless every transaction of the
        plan has a signature of its own."""
        if len(self._by_signature) != plan.total:
            self._by_signature = None
        self._height = 0
        self._view = 0
        self._last_commit_at = 0.0
        self._heard_at = 0.0
        """When node 0 last gave a sign of life to the observer (trio clock): a
        subscription opened, a message on it, a status answer."""
        self._pushed = 0
        """The highest executed height the subscription has brought."""
        self._subscription: trio.CancelScope | None = None
        """The open subscription's scope (cancelled: it is reopened)."""
        self.streams: list[NodeStream] = []
        """With the `stream` wire, each node's sender (once the step runs)."""

    # --- the step -------------------------------------------------------------

    async def run(self) -> StepRecord:
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT_PER_NODE + 1)
        clients = [
            httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits)
            for url in (self.urls if self.plan.wire is not WireFormat.STREAM else ())
        ]
        observer = httpx.AsyncClient(base_url=self.urls[0], timeout=REQUEST_TIMEOUT_S)
        try:
            await self._poll_height(observer)
            async with trio.open_nursery() as watchers:
                watchers.start_soon(self._observe, observer)
                watchers.start_soon(self._sample_backlog)
                await self._load_and_drain(clients, observer)
                watchers.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for client in [*clients, observer]:
                    await client.aclose()
        return self.record

    async def _load_and_drain(
        self, clients: list[httpx.AsyncClient], observer: httpx.AsyncClient
    ) -> None:
        record, plan = self.record, self.plan
        warmup = max(MIN_WARMUP_S, WARMUP_FRACTION * plan.duration_s)
        record.started_at = trio.current_time()
        record.window = (record.started_at + warmup, record.started_at + plan.duration_s)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sample_window, observer)
            async with trio.open_nursery() as senders:
                await self._send_all(clients, senders)
            record.load_ended_at = trio.current_time()
        await self._drain()

    async def _send_all(self, clients: list[httpx.AsyncClient], senders: trio.Nursery) -> None:
        if self.plan.wire is WireFormat.STREAM:
            await self._stream_all(senders)
            return
        slots = [trio.Semaphore(MAX_IN_FLIGHT_PER_NODE) for _ in clients]
        async for request_id, request, now in self._paced(slots):
            self.record.sent_at[request_id] = now
            senders.start_soon(self._submit, clients[request.node], slots[request.node], request)

    async def _paced(
        self, slots: list[trio.Semaphore]
    ) -> AsyncIterator[tuple[int, Request, float]]:
        """The plan's requests in order, each once it is due and its node's
        in-flight slot is taken: (request id, request, now). The time spent
        waiting for a slot counts in `waited_for_nodes_s`."""
        record, plan = self.record, self.plan
        request_id = 0
        for k, requests in enumerate(plan.ticks, start=1):
            due = record.started_at + min(k * plan.tick_s, plan.duration_s)
            await trio.sleep_until(due)
            for request in requests:
                slot, before = slots[request.node], trio.current_time()
                blocked = slot.value == 0
                await slot.acquire()
                now = trio.current_time()
                if blocked:
                    record.waited_for_nodes_s += now - before
                record.max_behind_s = max(record.max_behind_s, now - due)
                yield request_id, request, now
                request_id += 1

    async def _stream_all(self, senders: trio.Nursery) -> None:
        """The same schedule, in-flight bound and waiting accounting as the
        POSTs, each node's requests sent as messages on its stream: a request's
        submit time is when its slot is taken, as for a POST."""
        slots = [trio.Semaphore(MAX_IN_FLIGHT_PER_NODE) for _ in self.urls]
        channels = []
        for url, slot in zip(self.urls, slots, strict=True):
            send, receive = trio.open_memory_channel[tuple[int, Request]](math.inf)
            stream = NodeStream(
                url,
                slot,
                self._settle,
                timeout_s=REQUEST_TIMEOUT_S,
                lanes=STREAMS_PER_NODE,
            )
            senders.start_soon(stream.run, receive)
            channels.append(send)
            self.streams.append(stream)
        try:
            async for request_id, request, now in self._paced(slots):
                self.record.sent_at[request_id] = now
                channels[request.node].send_nowait((request_id, request))
        finally:
            for channel in channels:
                channel.close()

    async def _submit(
        self, client: httpx.AsyncClient, slot: trio.Semaphore, request: Request
    ) -> None:
        wire = self.plan.wire
        headers = MSGPACK_HEADERS if wire is WireFormat.MSGPACK else JSON_HEADERS
        try:
            response = await client.post(
                "/v1/transactions/batch", content=request.body, headers=headers
            )
            if response.status_code == 200:
                codes = count_outcomes(response.content, wire, request.count)
            else:
                codes = [_error_code(response)] * request.count
        except (httpx.HTTPError, ValueError, msgspec.DecodeError) as exc:
            codes = [f"unreachable: {type(exc).__name__}"] * request.count
        finally:
            slot.release()
        self._settle(request, codes)

    def _settle(self, request: Request, codes: Codes) -> None:
        record = self.record
        for offset, code in enumerate(codes):
            if code is None:
                record.outcome[request.first + offset] = ACCEPTED
                record.accepted += 1
            else:
                record.outcome[request.first + offset] = REFUSED
                record.refused_codes[code] += 1
                if record.committed_at[request.first + offset] >= 0:
                    record.committed_refused += 1

    async def _drain(self) -> None:
        record = self.record
        deadline = trio.current_time() + self.drain_max_s
        while trio.current_time() < deadline:
            if record.committed - record.committed_refused >= record.accepted:
                record.drained = True
                return
            if trio.current_time() - max(self._last_commit_at, record.load_ended_at) > (
                self.drain_idle_s
            ):
                return
            await trio.sleep(self.poll_s)

    # --- observation ----------------------------------------------------------

    async def _poll_height(self, observer: httpx.AsyncClient) -> int:
        """Node 0's executed height from its status; ObserverError when it does not answer."""
        try:
            response = await observer.get("/v1/status")
            response.raise_for_status()
            status = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ObserverError(f"node 0 does not answer the observer: {exc!r}") from exc
        self._view = int(status.get("view") or 0)
        height = executed_height(status)
        if not self._height:
            self._height = height
        return height

    async def _observe(self, observer: httpx.AsyncClient) -> None:
        """Follow node 0's executed height by push and fetch each block it
        passes: a block's transactions are stamped with the arrival of the
        first message at or above its height, whenever the fetch completes."""
        send, receive = trio.open_memory_channel[tuple[int, float]](math.inf)
        self._heard_at = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._follow_executed, send)
                nursery.start_soon(self._watch_node0, observer)
                await self._fetch_executed(observer, receive)
        except* ObserverError as group:
            raise first_leaf(group) from None

    async def _follow_executed(self, send: trio.MemorySendChannel[tuple[int, float]]) -> None:
        """Keep a subscription to node 0's executed height open and pass on each
        advance with its arrival time (trio clock, taken when the read that
        completed the message returned). A dropped or silent subscription is
        reopened after OBSERVE_POLL_S (`_watch_node0` also cancels one its status
        check finds stale); the first message of the new one is the current
        height, so the blocks in between are fetched with it. If none can be
        opened for REQUEST_TIMEOUT_S, ObserverError."""
        url = urlsplit(self.urls[0])
        host, port = url.hostname or "127.0.0.1", url.port or 80
        failing_since: float | None = None
        while True:
            problem: str
            try:
                with trio.fail_after(REQUEST_TIMEOUT_S):
                    stream = await trio.open_tcp_stream(host, port)
                async with stream:
                    receiver = LightReceiver(stream, MAX_EXECUTED_MESSAGE)
                    with trio.fail_after(REQUEST_TIMEOUT_S):
                        await receiver.open(f"{host}:{port}", EXECUTED_PATH)
                    self._heard_at = trio.current_time()
                    with trio.CancelScope() as silence:
                        self._subscription = silence
                        silence.deadline = trio.current_time() + EXECUTED_SILENCE_S
                        async with aclosing(receiver.messages()) as messages:
                            async for payload, _ in messages:
                                arrived = trio.current_time()
                                self._heard_at = arrived
                                silence.deadline = arrived + EXECUTED_SILENCE_S
                                failing_since = None
                                height = _executed_message_height(payload)
                                if height is not None and height > self._pushed:
                                    self._pushed = height
                                    send.send_nowait((height, arrived))
                    self._subscription = None
                    problem = f"no message for {EXECUTED_SILENCE_S:g} s, or behind node 0's status"
            except Closed as exc:
                problem = f"subscription closed: {exc.code} {exc.reason}"
            except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            now = trio.current_time()
            if failing_since is None:
                failing_since = now
            elif now - failing_since > REQUEST_TIMEOUT_S:
                raise ObserverError(f"node 0 does not answer the observer: {problem}")
            await trio.sleep(self.poll_s)

    async def _watch_node0(self, observer: httpx.AsyncClient) -> None:
        """Tell a stuck node 0 from a quiet chain within seconds: while the
        subscription has been quiet EXECUTED_QUIET_S, ask node 0's status
        (at most STATUS_PROBE_TIMEOUT_S each). An answer is a sign of life;
        one ahead of what the subscription brought means the subscription is
        stale, and it is reopened. No sign of life for NODE0_STALE_S:
        ObserverError. (The subscription's own silence bound, 25 s, needs
        15 s of ping interval under it, and a reopen that hangs takes
        REQUEST_TIMEOUT_S more; status is asked only when the push is quiet,
        so node 0 serves no polls while it executes.)"""
        while True:
            quiet_until = self._heard_at + EXECUTED_QUIET_S
            if trio.current_time() < quiet_until:
                await trio.sleep_until(quiet_until)
                continue
            problem = ""
            try:
                with trio.fail_after(STATUS_PROBE_TIMEOUT_S):
                    response = await observer.get("/v1/status")
                response.raise_for_status()
                height = executed_height(response.json())
            except (httpx.HTTPError, ValueError, trio.TooSlowError) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if not problem:
                self._heard_at = trio.current_time()
                if height > self._pushed and self._subscription is not None:
                    self._subscription.cancel()
                continue
            if trio.current_time() - self._heard_at >= NODE0_STALE_S:
                raise ObserverError(
                    f"node 0 does not answer the observer: no executed height pushed and "
                    f"no status for {NODE0_STALE_S:g} s ({problem})"
                )
            await trio.sleep(self.poll_s)

    async def _fetch_executed(
        self, observer: httpx.AsyncClient, receive: trio.MemoryReceiveChannel[tuple[int, float]]
    ) -> None:
        failing_since: float | None = None
        async for height, arrived in receive:
            while self._height < height:
                try:
                    response = await observer.get(f"/v1/blocks/{self._height + 1}")
                    response.raise_for_status()
                    self._note_block(msgspec.json.decode(response.content), arrived)
                    self._height += 1
                    failing_since = None
                except (httpx.HTTPError, ValueError) as exc:
                    now = trio.current_time()
                    if failing_since is None:
                        failing_since = now
                    elif now - failing_since > REQUEST_TIMEOUT_S:
                        raise ObserverError(f"node 0 does not answer the observer: {exc}") from exc
                    await trio.sleep(self.poll_s)

    async def _sample_backlog(self) -> None:
        record = self.record
        while True:
            if record.start is not None and record.end is None:
                record.backlog.append(
                    (
                        trio.current_time(),
                        float(record.accepted - (record.committed - record.committed_refused)),
                    )
                )
            await trio.sleep(self.poll_s)

    def _note_block(self, block: dict[str, Any], seen_at: float) -> None:
        record = self.record
        by_signature = self._by_signature
        if not isinstance(block, dict):
            raise ValueError("a block answer that is not an object")
        for tx in block.get("transactions") or ():
            if len(tx) == HASH_HEX_LENGTH:
                i = self._index.get(tx.lower())
            elif by_signature is not None:
                i = by_signature.get(tx[-SIGNATURE_HEX_LENGTH:])
            else:
                i = self._index.get(block_tx_hash(tx))
            if i is not None and record.committed_at[i] < 0:
                record.committed_at[i] = seen_at
                record.committed += 1
                if record.outcome[i] == REFUSED:
                    record.committed_refused += 1
                self._last_commit_at = seen_at

    async def _sample_window(self, observer: httpx.AsyncClient) -> None:
        record = self.record
        await trio.sleep_until(record.window[0])
        record.start = await self._snapshot(observer)
        await trio.sleep_until(record.window[1])
        record.end = await self._snapshot(observer)
        # Keep only the backlog samples inside the window, at most one per period.
        kept: list[tuple[float, float]] = []
        for at, backlog in record.backlog:
            if not kept or at - kept[-1][0] >= BACKLOG_SAMPLE_S:
                kept.append((at, backlog))
        record.backlog = kept

    async def _snapshot(self, observer: httpx.AsyncClient) -> Snapshot:
        at = trio.current_time()
        cpu = tree_cpu_seconds(self.pids)
        client_cpu = own_cpu_seconds()
        height = await self._poll_height(observer)
        view = self._view
        nullified = event_delay = node0_gc = None
        try:
            response = await observer.get("/metrics")
            if response.status_code == 200:
                nullified = parse_counter(response.text, NULLIFIED_METRIC)
                event_delay = parse_histogram(response.text, EVENT_DELAY_METRIC)
                node0_gc = parse_gc_pauses(response.text)
        except httpx.HTTPError:
            pass
        # Node 0's metrics were just read through the observer (node 0 is urls[0]).
        gc_pauses = [node0_gc] + [await self._gc_pauses(url) for url in self.urls[1:]]
        return Snapshot(at, height, view, nullified, cpu, client_cpu, event_delay, gc_pauses)

    async def _gc_pauses(self, url: str) -> GcPauseTotals | None:
        try:
            async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as client:
                response = await client.get("/metrics")
        except httpx.HTTPError:
            return None
        return parse_gc_pauses(response.text) if response.status_code == 200 else None


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    code = body.get("code") if isinstance(body, dict) else None
    return f"{response.status_code} {code or response.reason_phrase}"


# --- the numbers ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepSummary:
    measurement: StepMeasurement
    numbers: dict[str, Any]
    histogram: LatencyHistogram


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def summarize_step(record: StepRecord) -> StepSummary:
    """The step's numbers over its measurement window."""
    plan = record.plan
    start, end = record.window
    length = end - start
    if record.start is None or record.end is None or length <= 0:
        raise ValueError("the step ended before its measurement window closed")
    histogram = LatencyHistogram()
    offered = 0
    request_id = 0
    for requests in plan.ticks:
        for request in requests:
            sent = record.sent_at[request_id]
            request_id += 1
            if not start <= sent <= end:
                continue
            offered += request.count
            for i in range(request.first, request.first + request.count):
                if record.outcome[i] == REFUSED:
                    continue
                committed = record.committed_at[i]
                if committed < 0:
                    histogram.record_missing()
                else:
                    histogram.record(max(0, round((committed - sent) * 1_000_000)))
    committed_in_window = sum(1 for at in record.committed_at if start <= at <= end)
    tps = committed_in_window / length
    p50, p90, p99 = (histogram.percentile(q) for q in (0.50, 0.90, 0.99))
    to_ms = 1 / 1000
    measurement = StepMeasurement(
        target_rate=plan.rate,
        offered_rate=offered / length,
        committed_rate=tps,
        submitted=plan.total,
        refused=sum(record.refused_codes.values()),
        p99_ms=None if p99 is None else p99 * to_ms,
        backlog_slope=least_squares_slope(record.backlog),
        waited_for_nodes_s=record.waited_for_nodes_s,
    )
    s, e = record.start, record.end
    blocks = e.height - s.height
    if s.nullified is not None and e.nullified is not None:
        view_changes = round(e.nullified - s.nullified)
        view_changes_source = NULLIFIED_METRIC
    else:
        view_changes = max(0, (e.view - s.view) - blocks)
        view_changes_source = "derived: view delta - block delta at node 0"
    node_cpu = [
        round((e.node_cpu_s.get(pid, 0.0) - s.node_cpu_s.get(pid, 0.0)) / length, 3)
        for pid in s.node_cpu_s  # node 0, node 1, ... (the order the pids were given)
    ]
    numbers: dict[str, Any] = {
        "offered_rate": plan.rate,
        "offered_tps": round(offered / length, 1),
        "tps": round(tps, 1),
        "p50_ms": _round(None if p50 is None else p50 * to_ms),
        "p90_ms": _round(None if p90 is None else p90 * to_ms),
        "p99_ms": _round(measurement.p99_ms),
        "latency_samples": histogram.recorded,
        "latency_never_committed": histogram.missing,
        "blocks_per_s": round(blocks / length, 2),
        "view_changes": view_changes,
        "view_changes_source": view_changes_source,
        "consensus_event_delay": histogram_delta(s.event_delay, e.event_delay),
        "gc_pauses": gc_pause_delta(s.gc_pauses, e.gc_pauses),
        "cpu_per_node": node_cpu,
        "client_cpu": round((e.client_cpu_s - s.client_cpu_s) / length, 3),
        "window_s": round(length, 2),
        "submitted": plan.total,
        "accepted": record.accepted,
        "refused": dict(record.refused_codes.most_common()),
        "committed": record.committed,
        "backlog_slope_tps": round(measurement.backlog_slope, 1),
        "waited_for_nodes_s": round(record.waited_for_nodes_s, 2),
        "client_max_behind_s": round(record.max_behind_s, 3),
        "drained": record.drained,
    }
    return StepSummary(measurement, numbers, histogram)
