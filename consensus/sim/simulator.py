"""The deterministic simulator: n validators running the real consensus core.

One seed fixes everything: network conditions, partitions, crashes and
restarts, which validators are Byzantine and how. A run has a chaos phase
(faults on) and a calm phase (the network heals, crashed validators restart,
no message is lost). Safety is checked throughout, liveness in the calm phase.
`run_seed(params, seed)` replays a seed exactly.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from consensus.core import ConsensusConfig, genesis_block
from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from consensus.messages import Block
from consensus.sim.byzantine import BEHAVIOURS, ByzantineNode
from consensus.sim.checkers import Checkers
from consensus.sim.network import EventQueue, NetworkConditions, Partition, VirtualNetwork
from consensus.sim.node import Hooks, SimNode, payload_is_valid
from consensus.types import Validator, ValidatorIndex, ValidatorSet
from consensus.verifier import SignatureVerifier

SIM_CHAIN_ID = 31_337


@dataclass(frozen=True)
class SimParams:
    validators: int = 4
    byzantine: int = 1
    view_timeout_ms: int = 400
    retry_ms: int = 400
    chaos_ms: int = 3_000
    calm_ms: int = 4_000
    crashes: bool = True
    behaviours: tuple[str, ...] = ()  # empty: drawn per seed from all behaviours
    liveness_bound_timeouts: int = 0  # 0: derived, see `liveness_bound`
    persist_safety: bool = True  # False only in mutation tests
    late_joiner: bool = False  # one honest validator starts only when the network heals
    network_faults: bool = True  # False: no loss, partitions or reordering, even in chaos
    validator_set: Callable[[list[Validator]], ValidatorSet] = ValidatorSet

    def liveness_bound(self) -> int:
        """Timeouts within which every honest validator commits after healing.

        Each Byzantine or still-syncing leader can waste one view timeout; one more
        covers views in progress at the heal and one the certificate exchange by
        which lagging validators catch up (docs/consensus.md, "Liveness").
        """
        return self.liveness_bound_timeouts or self.byzantine + 3


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
        domain = Domain(SIM_CHAIN_ID, bytes(20))
        return cls(
            keys=keys,
            validators=params.validator_set([Validator(k.address, 1) for k in keys]),
            genesis=genesis_block(b"seqnet-sim-genesis"),
            config=ConsensusConfig(
                view_timeout_ms=params.view_timeout_ms, retry_ms=params.retry_ms
            ),
            verifier=verifier or SignatureVerifier(domain.separator()),
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
    ) -> SimNode:
        def schedule(delay: int, callback: Callable[[], None]) -> None:
            queue.at(queue.now + delay, callback)

        return node_class(
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


def run_seed(params: SimParams, seed: int, verifier: SignatureVerifier | None = None) -> SeedResult:
    rng = random.Random(seed)
    n = params.validators
    chain = _SimChain.build(params, verifier)
    validators, genesis = chain.validators, chain.genesis
    calm_at = params.chaos_ms
    end = params.chaos_ms + params.calm_ms

    byzantine = set(rng.sample(range(n), params.byzantine))
    honest = set(range(n)) - byzantine
    conditions = _draw_conditions(rng, n, params.chaos_ms)
    if not params.network_faults:
        conditions = NetworkConditions(conditions.min_delay_ms, conditions.max_delay_ms)
    queue = EventQueue()
    checkers = Checkers(validators, honest, payload_is_valid, lambda: queue.now)
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

    def deliver(src: int, dst: int, data: bytes) -> None:
        nodes[dst].receive(src, data)

    network = VirtualNetwork(queue, rng, conditions, deliver)

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
        )
        if isinstance(node, ByzantineNode):
            names = params.behaviours or tuple(sorted(BEHAVIOURS))
            name = rng.choice(names)
            node.setup(BEHAVIOURS[name]())
            behaviours.append(f"{i}:{name}")
        nodes.append(node)

    # Crashes of honest validators during chaos; any number may be down at once,
    # which liveness does not survive but safety must.
    late = rng.choice(sorted(honest)) if params.late_joiner else None
    if params.crashes:
        for _ in range(rng.randint(0, 4)):
            victim = rng.choice(sorted(honest - {late}))
            at = rng.randint(1, params.chaos_ms - 1)
            downtime = rng.randint(10, 1_000)
            queue.at(at, functools.partial(_schedule_crash, nodes[victim]))
            queue.at(min(calm_at, at + downtime), functools.partial(_restart, nodes[victim]))

    for node in nodes:
        if node.index != late:
            queue.at(rng.randint(0, 20), node.start)

    heights_at_calm: dict[int, int] = {}

    def heal() -> None:
        conditions.partitions.clear()
        conditions.loss = 0.0
        conditions.reorder = 0.0
        for i in honest:
            _restart(nodes[i])  # the late joiner, if any, starts now from genesis
        heights_at_calm.update(checkers.heights)

    queue.at(calm_at, heal)
    queue.run_until(end)

    violations = list(checkers.violations)
    recovery = _recovery_timeouts(checkers, honest, heights_at_calm, calm_at, params)
    if recovery is None:
        violations.append(
            f"liveness: an honest validator committed nothing in the {params.calm_ms} ms "
            "after the network healed"
        )
    elif recovery > params.liveness_bound():
        violations.append(
            f"liveness: commits resumed only after {recovery:.2f} timeouts "
            f"(bound {params.liveness_bound()})"
        )
    return SeedResult(
        seed=seed,
        violations=violations,
        committed_height=min(checkers.heights[i] for i in honest),
        recovery_timeouts=recovery,
        evidence=counters["evidence"],
        malformed=counters["malformed"],
        messages=network.sent,
        behaviours=behaviours,
    )


def _observe(hooks: Hooks, checkers: Checkers, genesis: Block) -> None:
    genesis_digest = genesis.digest()

    def on_commit(node: int, block: Block) -> None:
        checkers.on_commit(node, block, genesis_digest)

    hooks.on_send = checkers.on_send
    hooks.on_commit = on_commit


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
