"""The load generator: signed transactions at a steady rate, spread over nodes.

Open-loop pacing with a ceiling: every tick (20 ms, or 1/rate when slower) the
generator computes how many transactions are due since the start
(floor(rate x elapsed)), signs them, groups them per node and submits each group
as one request (the batch endpoint when there are several). Requests in flight
are bounded per node; when every node is saturated the generator waits, so it
falls behind rather than queueing without bound, and the report shows the rate
it achieved. A run of `duration_s` therefore sends exactly floor(rate x
duration_s) transactions (retries included).

What it sends is the traffic stream of `market.py` for the config's `mix`:
"dex" (traders placing, amending and cancelling orders on the testnet's
markets, the operator posting bridge deposits), "mixed" (the same
with one item in five a rollup blob) or "rollup" (random bytes of
`payload_bytes` length in `namespace`; in namespace 0 a 1-wei DEX transfer).
The stream is computed from the config alone; this module only signs and
sends it. Every transaction offers the chain's required fee (`FeeSchedule`:
fee_base + fee_per_byte * payload bytes), paid from the account's subaccount
0, which `testnet up` funds in genesis.

Accounts are derived from the seed (`accounts.py`) and each is pinned to one
node so its nonces reach one mempool in order; a node that stops answering is
avoided for a growing back-off, its accounts fail over to the next node. A
transaction rejected for a reason that may pass later (mempool full, node
unreachable, nonce beyond the window) is sent again, the same bytes, before
any new one, so a rejection does not leave a nonce gap that would strand
every later transaction of the account.

Latency is measured on a sample (about `latency_samples_per_s` per second):
from just before the submit request to the first poll of
GET /v1/transactions/{hash} that reports it committed, so it includes up to one
poll interval (50 ms) of observation delay.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import trio

from consensus.crypto import PrivateKey
from consensus.encoding import Domain
from sequencer_net.client import (
    DEFAULT_FEES,
    AsyncSeqnetClient,
    FeeSchedule,
    SeqnetApiError,
    SubmitResult,
    signed_transaction,
)
from sequencer_net.client.encrypted import NetworkKeys, seal_transaction
from sequencer_net.testnet.manifest import MIXES, LoadSpec, Mix
from sequencer_net.testnet.market import (
    MarketTraffic,
    TrafficConfig,
    TrafficSigner,
    TxSigner,
    dex_load_payload,
    traffic_keys,
)

__all__ = [
    "MIXES",
    "ChainHeight",
    "LoadConfig",
    "LoadGenerator",
    "Mix",
    "TxSigner",
    "dex_load_payload",
    "encrypting_signer",
    "transaction_signer",
]


def transaction_signer(
    domain: Domain, fee: int | None = None, fees: FeeSchedule = DEFAULT_FEES
) -> TxSigner:
    """Sign with the node's transaction format (sequencer_net.mempool.transaction),
    offering `fee`, or the fee `fees` requires for the payload when None."""

    def sign(key: PrivateKey, nonce: int, namespace: int, payload: bytes) -> bytes:
        return signed_transaction(key, domain, nonce, namespace, payload, fees=fees, fee=fee)

    return sign


@dataclass(slots=True)
class ChainHeight:
    """The chain's committed height as the load last read it (`LoadGenerator`
    refreshes it from node 0's status while it runs)."""

    value: int


HEIGHT_POLL_S = 0.5
"""How often a load that seals envelopes re-reads the chain's height."""


def encrypting_signer(
    sign: TxSigner,
    domain: Domain,
    keys: NetworkKeys,
    height: ChainHeight,
    expiry_blocks: int,
) -> TxSigner:
    """`sign`, then seal what it signed to the threshold key of the epoch the next
    block is in (docs/fairness.md), expiring `expiry_blocks` later or at that
    epoch's end, whichever is first: the load then sends encrypted transactions
    only, and follows the chain's validator-set epochs as `height` moves."""

    def seal_signed(key: PrivateKey, nonce: int, namespace: int, payload: bytes) -> bytes:
        inner = sign(key, nonce, namespace, payload)
        next_height = height.value + 1
        expiry = keys.clamp_expiry(next_height, next_height + expiry_blocks)
        return seal_transaction(key, domain, inner, keys.at(next_height), expiry_height=expiry)

    return seal_signed


@dataclass(frozen=True, slots=True)
class LoadConfig:
    rate: float
    duration_s: float | None = None  # None: until cancelled
    accounts: int = 100
    seed: int = 0
    namespace: int = 1
    payload_bytes: tuple[int, int] = (100, 300)
    mix: Mix = "mixed"
    """What the load sends (market.py): "dex", "mixed" (4 in 5 DEX) or "rollup"."""
    genesis_time_s: int | None = None
    """The chain's genesis time (unix s), which fixes its options' expiries; None: now."""
    max_in_flight_per_node: int = 16
    """Concurrent requests to one node: enough to hide loopback round trips,
    few enough that a paused node ties up little."""
    max_batch: int = 256
    """Transactions per batch request: ~50 KB at 200 bytes each."""
    min_tick_s: float = 0.02
    request_timeout_s: float = 5.0
    latency_samples_per_s: float = 20.0
    max_latency_pollers: int = 64
    poll_interval_s: float = 0.05
    commit_timeout_s: float = 30.0
    drain_timeout_s: float = 10.0
    """After the last submit, how long to wait for sampled transactions to commit."""

    @classmethod
    def of_spec(cls, spec: LoadSpec, *, rate: float, genesis_time_s: int | None) -> LoadConfig:
        """A testnet manifest's load (accounts, seed, namespace, sizes, mix) at `rate`."""
        return cls(
            rate=rate,
            accounts=spec.accounts,
            seed=spec.seed,
            namespace=spec.namespace,
            payload_bytes=spec.payload_bytes,
            mix=spec.mix,
            genesis_time_s=genesis_time_s,
        )

    def __post_init__(self) -> None:
        if self.rate < 0 or math.isnan(self.rate):
            raise ValueError("rate must be >= 0")
        if self.duration_s is not None and self.duration_s < 0:
            raise ValueError("duration must be >= 0")
        if self.accounts <= 0:
            raise ValueError("accounts must be positive")
        low, high = self.payload_bytes
        if not 0 <= low <= high:
            raise ValueError("payload_bytes must be (min, max) with 0 <= min <= max")
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {', '.join(MIXES)}")

    def traffic(
        self,
        start_time_s: int,
        first_nonces: Sequence[int] = (),
        operator_nonce: int = 0,
    ) -> TrafficConfig:
        """The traffic stream this load sends, if its first item goes out at `start_time_s`."""
        return TrafficConfig(
            seed=self.seed,
            accounts=self.accounts,
            mix=self.mix,
            rate=self.rate if self.rate > 0 else 1.0,
            start_time_s=start_time_s,
            genesis_time_s=self.genesis_time_s,
            namespace=self.namespace,
            payload_bytes=self.payload_bytes,
            first_nonces=tuple(first_nonces),
            operator_nonce=operator_nonce,
        )

    @property
    def total(self) -> int | None:
        if self.duration_s is None:
            return None
        return math.floor(self.rate * self.duration_s + 1e-9)

    @property
    def tick_s(self) -> float:
        if self.rate <= 0:
            return 1.0
        return max(self.min_tick_s, 1.0 / self.rate)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (fraction in [0, 1]); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(slots=True)
class LoadStats:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    sent_per_node: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    unconfirmed_samples: int = 0
    started_at: float | None = None  # trio clock
    finished_at: float | None = None

    def elapsed_s(self, now: float | None = None) -> float:
        if self.started_at is None:
            return 0.0
        end = self.finished_at if self.finished_at is not None else now
        return max(0.0, (end if end is not None else self.started_at) - self.started_at)

    def summary(self, now: float | None = None) -> dict[str, Any]:
        elapsed = self.elapsed_s(now)
        p50, p99 = percentile(self.latencies_ms, 0.50), percentile(self.latencies_ms, 0.99)
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected,
            # Submitted but cut off by cancellation (Ctrl-C, end of `up`) before an answer.
            "unanswered": self.sent - self.accepted - self.rejected,
            "requests": self.requests,
            "errors": dict(self.errors.most_common()),
            "sent_per_node": dict(self.sent_per_node),
            "elapsed_s": round(elapsed, 3),
            "achieved_tps": round(self.accepted / elapsed, 1) if elapsed > 0 else 0.0,
            "latency_ms": {
                "p50": None if p50 is None else round(p50, 1),
                "p99": None if p99 is None else round(p99, 1),
                "samples": len(self.latencies_ms),
                "unconfirmed": self.unconfirmed_samples,
            },
        }


class LoadAccount:
    """One sender: its key, its node, and which of its nonces are not yet settled
    (the next one the stream will use, and ones waiting to be sent again)."""

    __slots__ = ("home_node", "key", "next_nonce", "retry")

    def __init__(self, key: PrivateKey, next_nonce: int, home_node: int) -> None:
        self.key = key
        self.next_nonce = next_nonce
        self.retry: set[int] = set()
        self.home_node = home_node

    def generated(self, nonce: int) -> None:
        """The stream gave this account `nonce`."""
        self.next_nonce = max(self.next_nonce, nonce + 1)

    def give_back(self, nonce: int) -> None:
        """`nonce` was refused for a reason that may pass: it will be sent again."""
        self.retry.add(nonce)

    def resent(self, nonce: int) -> None:
        self.retry.discard(nonce)

    def resume_nonce(self) -> int:
        """Where a later run must continue: the lowest nonce not known to be taken."""
        return min([self.next_nonce, *self.retry])


_RETRYABLE_HINTS = ("mempool full", "mempool_full", "too high", "too_high", "unreachable")


def is_retryable_rejection(status: int, code: str, message: str) -> bool:
    """Rejections that may pass later; the nonce is given back to the account."""
    if status == 0 or status == 429 or status >= 500:
        return True
    text = f"{code} {message}".lower()
    return any(hint in text for hint in _RETRYABLE_HINTS)


@dataclass(slots=True)
class _Node:
    url: str
    client: AsyncSeqnetClient
    slots: trio.Semaphore
    avoid_until: float = 0.0
    backoff_s: float = 0.5


@dataclass(frozen=True, slots=True)
class _Pending:
    account: LoadAccount
    nonce: int
    encoded: bytes


class LoadGenerator:
    """Submit signed transactions to `urls` as `config` says; results in `stats`."""

    def __init__(
        self,
        urls: Sequence[str],
        config: LoadConfig,
        signer: TxSigner,
        *,
        first_nonces: Sequence[int] | None = None,
        operator_nonce: int = 0,
        chain_height: ChainHeight | None = None,
    ) -> None:
        """`chain_height`, when given, is kept current from node 0's status while
        the load runs (an `encrypting_signer` reads it)."""
        if not urls:
            raise ValueError("the load generator needs at least one node URL")
        self.urls = list(urls)
        self.config = config
        self.signer = signer
        self.chain_height = chain_height
        self.stats = LoadStats()
        nonces = list(first_nonces or [])[: config.accounts]
        nonces += [0] * (config.accounts - len(nonces))
        keys = traffic_keys(config.seed, config.accounts)
        starts = [*nonces, operator_nonce]
        # Account i (the operator is the last) is pinned to node i mod n.
        self._senders = [
            LoadAccount(key, starts[i], i % len(self.urls)) for i, key in enumerate(keys)
        ]
        self.accounts = self._senders[: config.accounts]
        self.operator = self._senders[-1]
        self._signing = TrafficSigner(keys, signer)
        self._traffic: MarketTraffic | None = None
        self._resend: deque[_Pending] = deque()
        self._nodes: list[_Node] = []
        self._sample_every = max(1, round(config.rate / max(config.latency_samples_per_s, 1e-9)))
        self._pollers = 0
        self._pollers_idle = trio.Event()

    def next_nonces(self) -> list[int]:
        """Per account, the nonce the next run should start from."""
        return [account.resume_nonce() for account in self.accounts]

    def next_operator_nonce(self) -> int:
        """The market operator's nonce the next run should start from."""
        return self.operator.resume_nonce()

    def _stream(self) -> MarketTraffic:
        """The traffic, planned from the first send (the oracle stamps wall time)."""
        if self._traffic is None:
            traffic = self.config.traffic(
                int(time.time()),
                [a.next_nonce for a in self.accounts],
                self.operator.next_nonce,
            )
            self._traffic = MarketTraffic(traffic, self._signing.order_id)
        return self._traffic

    def _next_pending(self) -> _Pending:
        """A refused transaction to send again, else the stream's next one."""
        if self._resend:
            pending = self._resend.popleft()
            pending.account.resent(pending.nonce)
            return pending
        item = next(self._stream())
        account = self._senders[item.account]
        account.generated(item.nonce)
        return _Pending(account, item.nonce, self._signing.encoded(item))

    async def run(self) -> LoadStats:
        """Run for `duration_s` (or until cancelled), then wait (bounded) for samples."""
        config = self.config
        async with AsyncExitStack() as stack:
            for url in self.urls:
                client = AsyncSeqnetClient(
                    url,
                    timeout=config.request_timeout_s,
                    max_connections=config.max_in_flight_per_node + 8,
                )
                await stack.enter_async_context(client)
                self._nodes.append(
                    _Node(url, client, trio.Semaphore(config.max_in_flight_per_node))
                )
            self.stats.started_at = trio.current_time()
            try:
                async with trio.open_nursery() as pollers:
                    if self.chain_height is not None:
                        pollers.start_soon(self._follow_height, self.chain_height)
                    async with trio.open_nursery() as senders:
                        await self._pace(senders, pollers)
                    self.stats.finished_at = trio.current_time()
                    with trio.move_on_after(config.drain_timeout_s):
                        if self._pollers:
                            await self._pollers_idle.wait()
                    pollers.cancel_scope.cancel()
            finally:
                if self.stats.finished_at is None:
                    self.stats.finished_at = trio.current_time()
        return self.stats

    async def _pace(self, senders: trio.Nursery, pollers: trio.Nursery) -> None:
        config = self.config
        if config.rate <= 0:
            if config.duration_s is None:
                await trio.sleep_forever()
            await trio.sleep(config.duration_s or 0.0)
            return
        total, tick = config.total, config.tick_s
        start = self.stats.started_at or trio.current_time()
        generated = 0
        for k in range(1, 2**62):
            at = k * tick
            if config.duration_s is not None:
                at = min(at, config.duration_s)
            await trio.sleep_until(start + at)
            due = math.floor(config.rate * at + 1e-9)
            if total is not None:
                due = min(due, total)
            if due > generated:
                await self._send(due - generated, senders, pollers)
                generated = due
            if total is not None and generated >= total:
                return

    def _choose_node(self, home: int, now: float) -> int:
        """The account's node unless it is avoided or saturated; then the next usable one."""
        count = len(self._nodes)
        for step in range(count):
            index = (home + step) % count
            node = self._nodes[index]
            if node.avoid_until <= now and node.slots.value > 0:
                return index
        for step in range(count):  # all saturated: wait on the first one not avoided
            index = (home + step) % count
            if self._nodes[index].avoid_until <= now:
                return index
        return home

    async def _send(self, count: int, senders: trio.Nursery, pollers: trio.Nursery) -> None:
        config = self.config
        now = trio.current_time()
        groups: dict[int, list[_Pending]] = {}
        for _ in range(count):
            pending = self._next_pending()
            node_index = self._choose_node(pending.account.home_node, now)
            groups.setdefault(node_index, []).append(pending)
        for node_index, group in groups.items():
            target = self._nodes[node_index]
            for first in range(0, len(group), config.max_batch):
                chunk = group[first : first + config.max_batch]
                await target.slots.acquire()
                self.stats.sent += len(chunk)
                self.stats.requests += 1
                self.stats.sent_per_node[target.url] += len(chunk)
                senders.start_soon(self._submit, target, chunk, pollers)

    async def _submit(self, node: _Node, chunk: list[_Pending], pollers: trio.Nursery) -> None:
        submitted_at = trio.current_time()
        status = 200
        try:
            if len(chunk) == 1:
                results: list[SubmitResult] = [{"hash": await node.client.submit(chunk[0].encoded)}]
            else:
                results = await node.client.submit_many([p.encoded for p in chunk])
            node.backoff_s = 0.5
        except SeqnetApiError as exc:
            status = exc.status
            results = [{"error": exc.message, "code": exc.code or str(exc.status)}] * len(chunk)
            if exc.status == 0:  # unreachable or timed out: avoid it for a while
                node.avoid_until = trio.current_time() + node.backoff_s
                node.backoff_s = min(node.backoff_s * 2, 8.0)
        finally:
            node.slots.release()
        for pending, result in zip(chunk, results, strict=True):
            tx_hash = result.get("hash")
            if tx_hash is not None:
                self.stats.accepted += 1
                if (
                    self.stats.accepted % self._sample_every == 0
                    and self._pollers < self.config.max_latency_pollers
                ):
                    self._pollers += 1
                    pollers.start_soon(self._track_commit, node, tx_hash, submitted_at)
                continue
            self.stats.rejected += 1
            code, message = result.get("code", ""), result.get("error", "")
            self.stats.errors[code or message or "error"] += 1
            if is_retryable_rejection(status, code, message):
                pending.account.give_back(pending.nonce)
                self._resend.append(pending)

    async def _follow_height(self, height: ChainHeight) -> None:
        """Re-read node 0's height until cancelled (the end of the run)."""
        while True:
            await trio.sleep(HEIGHT_POLL_S)
            try:
                status = await self._nodes[0].client.status()
                height.value = max(height.value, int(status["height"]))
            except (SeqnetApiError, KeyError, TypeError, ValueError):
                continue  # node 0 busy or down: seal to the last height seen

    async def _track_commit(self, node: _Node, tx_hash: str, submitted_at: float) -> None:
        config = self.config
        recorded = False
        try:
            deadline = submitted_at + config.commit_timeout_s
            while trio.current_time() < deadline:
                try:
                    info = await node.client.transaction(tx_hash)
                except SeqnetApiError:
                    info = {}
                if info.get("status") == "committed":
                    self.stats.latencies_ms.append((trio.current_time() - submitted_at) * 1000)
                    recorded = True
                    return
                await trio.sleep(config.poll_interval_s)
        finally:
            if not recorded:
                self.stats.unconfirmed_samples += 1
            self._pollers -= 1
            if self._pollers == 0:
                self._pollers_idle.set()
                self._pollers_idle = trio.Event()
