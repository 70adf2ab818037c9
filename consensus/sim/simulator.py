"""The deterministic simulator: n validators running the real consensus core.

One seed fixes everything: network conditions, partitions, crashes and
restarts, which validators are Byzantine and how. A run has a faulty phase and
a calm phase (the network heals, crashed validators restart, no message is
lost). The faulty phase is either *chaos* (random delays, loss, duplication,
reordering, partitions) or a *bad period* (every message delayed by a fixed
amount, optionally with heavy loss: a network slower than the view timeout).
Safety is checked throughout; liveness, messages per block and memory after
the run. `run_seed(params, seed)` replays a seed exactly.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.core import ConsensusConfig, ConsensusCore, genesis_block
from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from consensus.limits import (
    MAX_EVIDENCE,
    MAX_FUTURE_VIEWS,
    MAX_HELD_CERTIFICATES,
    MAX_PENDING_BLOCK_BYTES,
    MAX_PENDING_BLOCKS,
)
from consensus.messages import Block
from consensus.sim.byzantine import BEHAVIOURS, ByzantineNode
from consensus.sim.checkers import Checkers
from consensus.sim.network import EventQueue, NetworkConditions, Partition, VirtualNetwork
from consensus.sim.node import Hooks, SimNode, payload_is_valid
from consensus.types import Validator, ValidatorIndex, ValidatorSet
from consensus.verifier import SignatureVerifier

SIM_CHAIN_ID = 31_337
SIM_GENESIS = genesis_block(b"seqnet-sim-genesis")


def sim_domain(genesis: Block = SIM_GENESIS) -> Domain:
    return Domain(SIM_CHAIN_ID, bytes(20), genesis.digest())


MESSAGES_PER_BLOCK_BOUND = 40
"""Messages sent by honest validators in the calm phase, per validator squared,
per block committed in it (plus slack for the views that end the run). A
healthy network needs about 5 n^2 per block; a message storm is many times that."""


@dataclass(frozen=True)
class SimParams:
    validators: int = 4
    byzantine: int = 1
    view_timeout_ms: int = 400
    retry_ms: int = 400
    max_backoff_steps: int = 4
    chaos_ms: int = 3_000
    calm_ms: int = 4_000
    crashes: bool = True
    behaviours: tuple[str, ...] = ()  # empty: drawn per seed from all behaviours
    liveness_bound_timeouts: int = 0  # 0: derived, see `liveness_bound`
    persist_safety: bool = True  # False only in mutation tests
    late_joiner: bool = False  # one honest validator starts only when the network heals
    network_faults: bool = True  # False: no loss, partitions or reordering, even in chaos
    bad_period_ms: int = 0
    """> 0: instead of chaos, every message is delayed by `bad_delay_ms` (and lost
    with probability `bad_loss`) for this long; then the network heals."""
    bad_delay_ms: int = 0
    bad_loss: float = 0.0
    validator_set: Callable[[list[Validator]], ValidatorSet] = ValidatorSet
    core_class: type[ConsensusCore] = ConsensusCore  # mutation tests put a bug back

    @property
    def faulty_ms(self) -> int:
        return self.bad_period_ms or self.chaos_ms

    def config(self) -> ConsensusConfig:
        return ConsensusConfig(
            view_timeout_ms=self.view_timeout_ms,
            retry_ms=self.retry_ms,
            max_backoff_steps=self.max_backoff_steps,
        )

    def timeout_factor(self, level: int) -> float:
        """A view timeout at backoff `level`, in base view timeouts (the pacemaker's
        integer steps, on a large base so rounding does not show)."""
        probe = ConsensusConfig(view_timeout_ms=1_000_000, max_backoff_steps=self.max_backoff_steps)
        timeout = probe.view_timeout_ms
        for _ in range(min(level, probe.max_backoff_steps)):
            timeout = timeout * 3 // 2
        return timeout / probe.view_timeout_ms

    def max_timeout_factor(self) -> float:
        """The longest view timeout, in base view timeouts."""
        return self.timeout_factor(self.max_backoff_steps)

    def liveness_bound(self, level_at_heal: int = 0) -> float:
        """Base view timeouts within which every honest validator commits after healing.

        Each Byzantine or still-syncing leader can waste one view timeout; one more
        covers views in progress at the heal and one the certificate exchange by
        which lagging validators catch up (docs/consensus.md, "Liveness"): f + 3
        when no timeout has backed off. Those f + 1 views cost the timeout in force:
        after chaos, the one at the highest backoff level an honest validator had at
        the heal (`level_at_heal`; levels fall by one per finalization); after a bad
        period, which may have backed them off to their cap, the capped timeout.
        """
        if self.liveness_bound_timeouts:
            return self.liveness_bound_timeouts
        if self.bad_period_ms:
            return (self.byzantine + 1) * self.max_timeout_factor() + 2
        return (self.byzantine + 1) * self.timeout_factor(level_at_heal) + 2

    def slow_but_live(self) -> bool:
        """A bad period without loss whose delay the capped timeout can still carry
        (a commit needs about three message delays): partial synchrony with an
        unknown delay. Honest validators must keep committing during it."""
        cap_ms = self.max_timeout_factor() * self.view_timeout_ms
        return self.bad_period_ms > 0 and self.bad_loss == 0 and 3.3 * self.bad_delay_ms < cap_ms

    def sustain_window_ms(self, level_at_heal: int = 0) -> int:
        """After recovery, every honest validator commits at least once per window."""
        return int(self.liveness_bound(level_at_heal) * self.view_timeout_ms) + self.view_timeout_ms


@dataclass
class SeedResult:
    seed: int
    violations: list[str]
    committed_height: int  # lowest committed height among honest validators at the end
    recovery_timeouts: float | None  # calm start -> every honest validator committed anew
    evidence: int
    malformed: int
    messages: int
    behaviours: list[str] = field(default_factory=list)
    messages_per_block: float = 0.0  # calm phase, per n^2
    level_at_heal: int = 0  # the highest honest backoff level when the network healed


def validator_key(index: int) -> PrivateKey:
    return PrivateKey(keccak256(b"seqnet-sim-validator-" + index.to_bytes(4, "big")))


def _draw_conditions(rng: random.Random, n: int, chaos_ms: int) -> NetworkConditions:
    conditions = NetworkConditions(
        min_delay_ms=rng.randint(1, 10),
        max_delay_ms=rng.randint(15, 80),
        loss=rng.choice([0.0, 0.01, 0.05, 0.15]),
        duplicate=rng.choice([0.0, 0.02, 0.1]),
        reorder=rng.choice([0.0, 0.02, 0.1]),
    )
    for _ in range(rng.randint(0, 2)):
        start = rng.randint(0, chaos_ms - 1)
        end = min(chaos_ms, start + rng.randint(100, chaos_ms))
        side = frozenset(rng.sample(range(n), rng.randint(1, n - 1)))
        conditions.partitions.append(Partition(start, end, side))
    return conditions


@dataclass(frozen=True)
class _SimChain:
    """What every simulated validator shares: keys, set, genesis, timers, verifier."""

    keys: list[PrivateKey]
    validators: ValidatorSet
    genesis: Block
    config: ConsensusConfig
    verifier: SignatureVerifier

    @classmethod
    def build(cls, params: SimParams, verifier: SignatureVerifier | None) -> _SimChain:
        keys = [validator_key(i) for i in range(params.validators)]
        return cls(
            keys=keys,
            validators=params.validator_set([Validator(k.address, 1) for k in keys]),
            genesis=SIM_GENESIS,
            config=params.config(),
            verifier=verifier or SignatureVerifier(sim_domain().separator()),
        )

    def node(
        self,
        node_class: type[SimNode],
        index: int,
        *,
        rng: random.Random,
        hooks: Hooks,
        queue: EventQueue,
        network: VirtualNetwork,
        persist_safety: bool = True,
        core_class: type[ConsensusCore] = ConsensusCore,
    ) -> SimNode:
        def schedule(delay: int, callback: Callable[[], None]) -> None:
            queue.at(queue.now + delay, callback)

        node = node_class(
            index=ValidatorIndex(index),
            key=self.keys[index],
            validators=self.validators,
            genesis=self.genesis,
            verifier=self.verifier,
            config=self.config,
            rng=rng,
            hooks=hooks,
            schedule=schedule,
            send_bytes=network.send,
            persist_safety=persist_safety,
        )
        node.core_class = core_class
        return node


def run_seed(params: SimParams, seed: int, verifier: SignatureVerifier | None = None) -> SeedResult:
    rng = random.Random(seed)
    n = params.validators
    chain = _SimChain.build(params, verifier)
    validators, genesis = chain.validators, chain.genesis
    calm_at = params.faulty_ms
    end = calm_at + params.calm_ms

    byzantine = set(rng.sample(range(n), params.byzantine))
    honest = set(range(n)) - byzantine
    conditions = _draw_conditions(rng, n, params.chaos_ms)
    calm_conditions = NetworkConditions(conditions.min_delay_ms, conditions.max_delay_ms)
    if params.bad_period_ms:
        conditions = NetworkConditions(
            min_delay_ms=params.bad_delay_ms,
            max_delay_ms=params.bad_delay_ms + max(1, params.bad_delay_ms // 10),
            loss=params.bad_loss,
        )
    elif not params.network_faults:
        conditions = NetworkConditions(conditions.min_delay_ms, conditions.max_delay_ms)
    queue = EventQueue()
    checkers = Checkers(validators, honest, payload_is_valid, lambda: queue.now, chain.verifier)
    hooks = Hooks()
    counters = {"evidence": 0, "malformed": 0}
    _observe(hooks, checkers, genesis)

    def count(name: str) -> Callable[[int], None]:
        def bump(node: int) -> None:
            if node in honest:
                counters[name] += 1

        return bump

    hooks.on_evidence = count("evidence")
    hooks.on_malformed = count("malformed")

    nodes: list[SimNode] = []
    honest_sent = {"calm": 0}

    def deliver(src: int, dst: int, data: bytes) -> None:
        nodes[dst].receive(src, data)

    network = VirtualNetwork(queue, rng, conditions, deliver)
    plain_send = network.send

    def counting_send(src: int, dst: int, data: bytes) -> None:
        if src in honest and queue.now >= calm_at:
            honest_sent["calm"] += 1
        plain_send(src, dst, data)

    network.send = counting_send  # type: ignore[method-assign]

    behaviours: list[str] = []
    for i in range(n):
        node = chain.node(
            ByzantineNode if i in byzantine else SimNode,
            i,
            rng=random.Random(rng.getrandbits(64)),
            hooks=hooks,
            queue=queue,
            network=network,
            persist_safety=params.persist_safety,
            core_class=params.core_class,
        )
        if isinstance(node, ByzantineNode):
            names = params.behaviours or tuple(sorted(BEHAVIOURS))
            name = rng.choice(names)
            node.setup(BEHAVIOURS[name]())
            behaviours.append(f"{i}:{name}")
        nodes.append(node)

    # Crashes of honest validators during the faulty phase; any number may be down
    # at once, which liveness does not survive but safety must.
    late = rng.choice(sorted(honest)) if params.late_joiner else None
    if params.crashes:
        for _ in range(rng.randint(0, 4)):
            victim = rng.choice(sorted(honest - {late}))
            at = rng.randint(1, calm_at - 1)
            downtime = rng.randint(10, 1_000)
            queue.at(at, functools.partial(_schedule_crash, nodes[victim]))
            queue.at(min(calm_at, at + downtime), functools.partial(_restart, nodes[victim]))

    for node in nodes:
        if node.index != late:
            queue.at(rng.randint(0, 20), node.start)

    heights_at_calm: dict[int, int] = {}
    levels_at_calm: list[int] = []

    def heal() -> None:
        network.conditions = calm_conditions
        for i in honest:
            _restart(nodes[i])  # the late joiner, if any, starts now from genesis
        heights_at_calm.update(checkers.heights)
        levels_at_calm.extend(
            core.pacemaker.level for i in honest if (core := nodes[i].core) is not None
        )

    queue.at(calm_at, heal)
    queue.run_until(end)

    violations = list(checkers.violations)
    recovery = _recovery_timeouts(checkers, honest, heights_at_calm, calm_at, params)
    level = max(levels_at_calm, default=0)
    bound = params.liveness_bound(level)
    if recovery is None:
        violations.append(
            f"liveness: an honest validator committed nothing in the {params.calm_ms} ms "
            "after the network healed"
        )
    elif recovery > bound:
        violations.append(
            f"liveness: commits resumed only after {recovery:.2f} timeouts "
            f"(bound {bound:g}, timeouts backed off {level} level(s) at the heal)"
        )
    else:
        violations.extend(_sustained(checkers, honest, calm_at, recovery, end, params, level))
    if params.slow_but_live():
        violations.extend(_progress_while_slow(checkers, honest, calm_at, params))
    calm_blocks = max(checkers.heights[i] for i in honest) - max(heights_at_calm.values())
    per_block = honest_sent["calm"] / (n * n) / max(1, calm_blocks)
    if honest_sent["calm"] > MESSAGES_PER_BLOCK_BOUND * n * n * (calm_blocks + 10):
        violations.append(
            f"messages: honest validators sent {honest_sent['calm']} messages for "
            f"{calm_blocks} blocks after healing ({per_block:.1f} n^2 per block; "
            f"bound {MESSAGES_PER_BLOCK_BOUND})"
        )
    for i in honest:
        nodes[i].sample_memory()
        violations.extend(_memory_violations(i, nodes[i].peak_memory, n))
    return SeedResult(
        seed=seed,
        violations=violations,
        committed_height=min(checkers.heights[i] for i in honest),
        recovery_timeouts=recovery,
        level_at_heal=level,
        evidence=counters["evidence"],
        malformed=counters["malformed"],
        messages=network.sent,
        behaviours=behaviours,
        messages_per_block=round(per_block, 2),
    )


def _observe(hooks: Hooks, checkers: Checkers, genesis: Block) -> None:
    genesis_digest = genesis.digest()

    def on_commit(node: int, block: Block) -> None:
        checkers.on_commit(node, block, genesis_digest)

    hooks.on_send = checkers.on_send
    hooks.on_commit = on_commit
    hooks.on_certificate = checkers.on_certificate


def _schedule_crash(node: SimNode) -> None:
    if node.up:
        node.crash_pending = True  # strikes inside the next action list it produces


def _restart(node: SimNode) -> None:
    if node.up and not node.crash_pending:
        return
    if node.up:
        node.crash()
    node.restart()


def _recovery_timeouts(
    checkers: Checkers,
    honest: set[int],
    heights_at_calm: dict[int, int],
    calm_at: int,
    params: SimParams,
) -> float | None:
    """Virtual time from healing until every honest validator committed a block
    above the highest height any honest validator had at the heal, in timeouts."""
    target = max(heights_at_calm.values(), default=0) + 1
    worst = 0
    for node in honest:
        at = checkers.commit_times.get((node, target))
        if at is None:
            return None
        worst = max(worst, at - calm_at)
    return max(0, worst) / params.view_timeout_ms


def _sustained(
    checkers: Checkers,
    honest: set[int],
    calm_at: int,
    recovery: float,
    end: int,
    params: SimParams,
    level_at_heal: int,
) -> list[str]:
    """Liveness is sustained progress, not one commit: after recovering, every
    honest validator keeps committing, at least once per window."""
    window = params.sustain_window_ms(level_at_heal)
    start = calm_at + int(recovery * params.view_timeout_ms)
    out: list[str] = []
    for node in sorted(honest):
        times = sorted(t for (i, _), t in checkers.commit_times.items() if i == node and t >= start)
        last = start
        for t in [*times, end]:
            if t - last > window:
                out.append(
                    f"liveness: node {node} committed nothing for {t - last} ms after "
                    f"recovering (window {window} ms)"
                )
                break
            last = t
    return out


def _progress_while_slow(
    checkers: Checkers, honest: set[int], calm_at: int, params: SimParams
) -> list[str]:
    """In the second half of a slow but lossless bad period (the timeouts have had
    time to back off), every honest validator commits at least once per window
    of a few capped timeouts."""
    cap_ms = params.max_timeout_factor() * params.view_timeout_ms
    window = int((params.byzantine + 2) * cap_ms + 6 * params.bad_delay_ms)
    start = calm_at // 2
    out: list[str] = []
    for node in sorted(honest):
        times = sorted(
            t for (i, _), t in checkers.commit_times.items() if i == node and start <= t < calm_at
        )
        last = start
        for t in [*times, calm_at]:
            if t - last > window:
                out.append(
                    f"liveness: node {node} committed nothing for {t - last} ms while every "
                    f"message took {params.bad_delay_ms} ms (window {window} ms)"
                )
                break
            last = t
    return out


def _memory_violations(node: int, peak: dict[str, int], n: int) -> list[str]:
    """What a core holds stays within its stated bounds however long the run."""
    from consensus.core import TALLY_VIEWS_KEPT  # the core's own window

    bounds = {
        "votes": 3 * n * (TALLY_VIEWS_KEPT + MAX_FUTURE_VIEWS + 1),
        "proposals": TALLY_VIEWS_KEPT + MAX_FUTURE_VIEWS + 1,
        "blocks": MAX_PENDING_BLOCKS,
        "block_bytes": MAX_PENDING_BLOCK_BYTES,
        "notarizations": MAX_HELD_CERTIFICATES,
        "nullifications": MAX_HELD_CERTIFICATES,
        "nullified_ranges": MAX_HELD_CERTIFICATES,
        "evidence": MAX_EVIDENCE,
    }
    return [
        f"memory: node {node} held {peak[name]} {name} (bound {bound})"
        for name, bound in bounds.items()
        if peak.get(name, 0) > bound
    ]


@dataclass
class GoodCase:
    commit_delays: float  # worst proposal -> commit latency at any validator, in message delays
    blocks: int


def measure_good_case(validators: int, delay_ms: int = 10, duration_ms: int = 1_000) -> GoodCase:
    """No faults, every message takes exactly `delay_ms`: how many message delays
    from a proposal leaving its leader to the block committing at each validator."""
    params = SimParams(validators=validators, byzantine=0, crashes=False)
    chain = _SimChain.build(params, None)
    queue = EventQueue()
    checkers = Checkers(
        chain.validators, set(range(validators)), payload_is_valid, lambda: queue.now
    )
    hooks = Hooks()
    _observe(hooks, checkers, chain.genesis)
    conditions = NetworkConditions(min_delay_ms=delay_ms, max_delay_ms=delay_ms)
    nodes: list[SimNode] = []
    network = VirtualNetwork(
        queue, random.Random(0), conditions, lambda s, d, b: nodes[d].receive(s, b)
    )
    for i in range(validators):
        nodes.append(
            chain.node(SimNode, i, rng=random.Random(i), hooks=hooks, queue=queue, network=network)
        )
        queue.at(0, nodes[i].start)
    queue.run_until(duration_ms)
    if checkers.violations:
        raise AssertionError(f"good-case run violated safety: {checkers.violations}")
    worst = 0
    blocks = 0
    for node in range(validators):
        for height in range(1, checkers.heights[node] + 1):
            block = nodes[node].durable.chain[height - 1]
            proposed = checkers.proposal_time[block.digest()]
            worst = max(worst, checkers.commit_times[(node, height)] - proposed)
        blocks = max(blocks, checkers.heights[node])
    return GoodCase(commit_delays=worst / delay_ms, blocks=blocks)
