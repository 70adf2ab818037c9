"""The simulator over a rotating validator set: one consensus instance per epoch.

Each simulated machine (an `EpochHost`, identified by its key) runs the
instance of the epoch it is in, if it is a member of that epoch's set. Wire
messages travel in `EpochEnvelope`s and are routed by epoch: the current
epoch's go to the running instance, the next epoch's wait in a bounded buffer,
an earlier epoch's are answered by the retained, ended instance (fetches) and
with that epoch's `EpochEndProof`. When an instance emits `EpochEnded` its host
stores the proof, sends it to the members of both epochs, and starts the next
epoch's instance on the proof's anchor. A machine that joins the set (or one
that fell behind) starts from a proof it receives or asks for
(`EpochEndRequest`).

One seed fixes the network (delay, loss, duplication, reordering in a faulty
phase, then calm), and which member of each epoch is Byzantine and how. The
checkers: one committed chain (same digest at every height on every honest
host), heights continuing across epochs, no commit outside an epoch's heights
from that epoch's instance, every committed block from its epoch's leader with
a valid payload, no honest double-sign within an epoch, no certificate counted
in an epoch with an honest signature its signer did not cast in that epoch
(replayed votes), and liveness: every honest host gets through every boundary
and the last epoch keeps committing. `run_epoch_seed(params, seed)` replays a
seed exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from consensus.core import ConsensusConfig, ConsensusCore
from consensus.crypto import PrivateKey
from consensus.epochs import (
    Anchor,
    Epoch,
    EpochSchedule,
    InvalidEpochEnd,
    epoch_domain_separator,
    verify_epoch_end,
)
from consensus.io import (
    Action,
    CommittedTip,
    EpochEnded,
    EpochEndReceived,
    SafetyRecord,
    Start,
)
from consensus.messages import (
    Block,
    BlockRequest,
    Certificate,
    EpochEndProof,
    EpochEndRequest,
    EpochEnvelope,
    MalformedMessage,
    Message,
    Proposal,
    SyncRequest,
    Vote,
    VoteKind,
    decode_epoch_wire,
    decode_message,
    encode_epoch_wire,
    encode_message,
)
from consensus.sim.byzantine import BEHAVIOURS, ByzantineNode
from consensus.sim.checkers import Checkers
from consensus.sim.network import EventQueue, NetworkConditions, VirtualNetwork
from consensus.sim.node import DurableState, Hooks, SimNode, payload_is_valid
from consensus.sim.simulator import SIM_GENESIS, sim_domain, validator_key
from consensus.sync import answer_block_request, answer_sync_request
from consensus.types import Height, Validator, ValidatorIndex, ValidatorSet, View
from consensus.verifier import SignatureVerifier

DEFAULT_ROTATION: tuple[tuple[tuple[int, int], ...], ...] = (
    ((0, 1), (1, 1), (2, 1), (3, 1)),  # n = 4
    ((0, 1), (1, 1), (2, 1), (3, 2), (4, 1)),  # 4 joins, 3's weight doubles: n = 5
    ((1, 1), (2, 1), (3, 1), (4, 1)),  # 0 leaves: n = 4
    ((1, 2), (2, 1), (4, 1), (3, 1), (5, 1)),  # 5 joins, order and weights change
)
"""Per epoch: (machine, weight) in validator-index order."""

BUFFERED_FUTURE_MESSAGES = 512
"""Messages of the next epoch a host keeps until it starts that epoch."""

RETAINED_EPOCHS = 2
"""Ended instances a host keeps to answer laggards' fetches."""


@dataclass(frozen=True)
class EpochSimParams:
    rotation: tuple[tuple[tuple[int, int], ...], ...] = DEFAULT_ROTATION
    epoch_length: int = 10  # heights per epoch (all but the last)
    byzantine: bool = True  # one Byzantine member per epoch (weight <= f)
    behaviours: tuple[str, ...] = ("equivocator", "withholder")
    replay_votes: bool = True  # Byzantine hosts replay their last epoch's votes in the next
    view_timeout_ms: int = 400
    retry_ms: int = 400
    faulty_ms: int = 3_000  # delay, loss, duplication, reordering
    run_ms: int = 16_000
    last_epoch_blocks: int = 5  # every honest member commits this many in the last epoch
    crashes: bool = True  # 0-4 crashes of machines in the faulty phase, restarts by its end
    outage: tuple[int, int, int] | None = None
    """(machine, down at, back at): one long outage, across epochs, besides the crashes."""
    single_domain: bool = False  # mutation tests only: every epoch signs in epoch 0's domain
    core_class: type[ConsensusCore] = ConsensusCore  # mutation tests put a bug back

    def config(self) -> ConsensusConfig:
        return ConsensusConfig(view_timeout_ms=self.view_timeout_ms, retry_ms=self.retry_ms)


@dataclass
class EpochSeedResult:
    seed: int
    violations: list[str]
    heights: dict[int, int]  # machine -> committed height at the end
    epoch_of_host: dict[int, int]  # host -> the epoch it is in at the end
    ended_at: dict[int, int]  # epoch -> virtual time its last block was first committed
    byzantine: list[str] = field(default_factory=list)  # "epoch:machine:behaviour"
    malformed: int = 0
    messages: int = 0
    restarts: int = 0


class SimWorld:
    """What every host shares: the schedule, keys, domains, clock, checkers."""

    def __init__(self, params: EpochSimParams, queue: EventQueue) -> None:
        self.params = params
        self.queue = queue
        machines = sorted({m for members in params.rotation for m, _ in members})
        self.keys: dict[int, PrivateKey] = {m: validator_key(m) for m in machines}
        epochs = []
        for number, members in enumerate(params.rotation):
            validators = ValidatorSet([Validator(self.keys[m].address, w) for m, w in members])
            epochs.append(Epoch(number, Height(1 + number * params.epoch_length), validators))
        self.schedule = EpochSchedule(epochs)
        self.members: list[list[int]] = [[m for m, _ in members] for members in params.rotation]
        chain_separator = sim_domain().separator()
        self.verifiers = [
            SignatureVerifier(
                chain_separator
                if params.single_domain
                else epoch_domain_separator(chain_separator, number)
            )
            for number in range(len(epochs))
        ]
        self.config = params.config()
        self.violations: list[str] = []
        self.checkers: list[Checkers] = []
        self.committed: dict[int, bytes] = {}  # height -> digest, first honest commit
        self.ended_at: dict[int, int] = {}
        self.honest_in: list[set[int]] = []  # per epoch: honest machines
        self.signed: dict[tuple[int, int], set[tuple[int, int, int, bytes]]] = {}
        self.malformed = 0

    def index_of(self, epoch: int, machine: int) -> ValidatorIndex | None:
        members = self.members[epoch]
        return ValidatorIndex(members.index(machine)) if machine in members else None

    def violate(self, text: str) -> None:
        if text not in self.violations:
            self.violations.append(text)

    # ---- observations ---------------------------------------------------------------

    def on_send(self, epoch: int, index: int, message: Message) -> None:
        self.checkers[epoch].on_send(index, message)
        machine = self.members[epoch][index]
        if machine not in self.honest_in[epoch]:
            return
        signed = self.signed.setdefault((epoch, index), set())
        if isinstance(message, Vote) and message.signer == index:
            signed.add((message.kind, message.view, message.height, message.block))
        elif isinstance(message, Proposal) and message.block.proposer == index:
            block = message.block
            signed.add((VoteKind.NOTARIZE, block.view, block.height, block.digest()))

    def on_certificate(self, epoch: int, index: int, cert: Certificate) -> None:
        """Besides the single-epoch checks: every honest signature in a certificate
        an honest member accepts was cast by its signer in this very epoch."""
        self.checkers[epoch].on_certificate(index, cert)
        if self.members[epoch][index] not in self.honest_in[epoch]:
            return
        for signer in cert.signers:
            if signer >= len(self.members[epoch]):
                continue
            if self.members[epoch][signer] not in self.honest_in[epoch]:
                continue
            vote = (cert.kind, cert.view, cert.height, cert.block)
            if vote not in self.signed.get((epoch, signer), set()):
                self.violate(
                    f"replay: machine {self.members[epoch][index]} accepted a certificate of "
                    f"epoch {epoch} (kind {cert.kind}, view {cert.view}) with a vote of "
                    f"machine {self.members[epoch][signer]} it never cast in epoch {epoch}"
                )

    def on_commit(self, host: EpochHost, epoch: int, block: Block) -> None:
        if host.machine not in self.honest_in[epoch]:
            return
        first = self.schedule.epoch(epoch).first_height
        last = self.schedule.last_height(epoch)
        who = f"machine {host.machine}"
        if block.height < first or (last is not None and block.height > last):
            self.violate(
                f"epochs: {who} committed height {block.height} from epoch {epoch}'s "
                f"instance (heights {first}..{last})"
            )
        digest = block.digest()
        seen = self.committed.setdefault(block.height, digest)
        if seen != digest:
            self.violate(
                f"agreement: {who} committed {digest.hex()[:12]} at height {block.height}, "
                f"another honest machine {seen.hex()[:12]}"
            )
        validators = self.schedule.epoch(epoch).validators
        if block.proposer != validators.leader(View(block.view)):
            self.violate(f"validity: height {block.height} not from epoch {epoch}'s view leader")
        if not payload_is_valid(block.payload):
            self.violate(f"validity: height {block.height} has an invalid or empty payload")


class EpochInstance(SimNode):
    """One epoch's instance on a host: the real core, built on the epoch's anchor.
    The committed chain, the finalizations and the proofs belong to the host."""

    host: EpochHost
    epoch: int
    anchor: Anchor
    last_height: int | None

    def start(self) -> None:
        self.core = self.core_class(
            validators=self.validators,
            me=self.index,
            key=self.key,
            verifier=self.verifier,
            anchor=self.anchor,
            last_height=self.last_height,
            epoch=self.epoch,
            config=self.config,
            stored_block=self.stored_block,
        )
        self.up = True
        self.crash_pending = False
        safety = None
        if self.durable.safety is not None:
            safety = msgspec.msgpack.decode(self.durable.safety, type=SafetyRecord)
        host = self.host
        committed = CommittedTip(self.anchor.height, self.anchor.digest, View(0))
        tip_finalization = None
        if host.tip_height > self.anchor.height:
            tip = host.chain[host.tip_height]
            committed = CommittedTip(Height(tip.height), tip.digest(), View(tip.view))
            tip_finalization = self.durable.finalizations.get(tip.height)
        self.feed(
            Start(safety, committed, tuple(self.durable.certificates.values()), tip_finalization)
        )

    def crash(self) -> None:
        super().crash()
        if self.host.instance is self:
            self.host.went_down()

    def execute(self, action: Action) -> None:
        if isinstance(action, EpochEnded):
            self.host.on_epoch_ended(self.epoch, action)
            return
        super().execute(action)

    def commit(self, block: Block, finalization: Certificate) -> None:
        self.host.commit(self.epoch, block, finalization)
        self.durable.by_digest[block.digest()] = block
        for digest in [d for d, b in self.durable.voted.items() if b.height <= block.height]:
            del self.durable.voted[digest]

    def _answer_sync(self, src: int, request: SyncRequest) -> None:
        """Committed blocks of this epoch only, with this epoch's finalizations."""
        host = self.host
        low = self.anchor.height + 1
        high = host.tip_height if self.last_height is None else self.last_height

        def block_at(height: int) -> Block | None:
            return host.chain.get(height) if low <= height <= high else None

        def finalization_at(height: int) -> Certificate | None:
            return self.durable.finalizations.get(height) if low <= height <= high else None

        response = answer_sync_request(request, block_at, finalization_at)
        if response is not None:
            self.send(src, response)


class ByzantineEpochInstance(ByzantineNode, EpochInstance):
    """An epoch instance whose behaviour rewrites what it sends."""


class EpochHost:
    """One machine: its durable chain and proofs, and the instance of its epoch.

    Durable (survives a crash): the chain, its finalizations, the proofs, the
    epoch the machine is in and its anchor, and each epoch's safety record,
    certificates and voted blocks. Lost in a crash: the running and retained
    instances, the buffer of next-epoch messages."""

    def __init__(
        self,
        machine: int,
        world: SimWorld,
        rng: random.Random,
        network: VirtualNetwork,
        byzantine: dict[int, str],  # epoch -> behaviour, where this machine misbehaves
    ) -> None:
        self.machine = machine
        self.world = world
        self.rng = rng
        self.network = network
        self.byzantine = byzantine
        self.epoch = 0
        self.anchor = Anchor(SIM_GENESIS.digest(), Height(0))
        self.chain: dict[int, Block] = {}
        self.tip_height = 0
        self.tip_digest: bytes = SIM_GENESIS.digest()
        self.finalizations: dict[int, Certificate] = {}
        self.by_digest: dict[bytes, Block] = {}
        self.proofs: dict[int, EpochEndProof] = {}
        self.instance: EpochInstance | None = None
        self.retained: dict[int, EpochInstance] = {}
        self.buffer: list[tuple[int, bytes]] = []  # (source, wire) of epoch + 1
        self._answered: dict[tuple[int, int], int] = {}  # (peer, epoch) -> time
        self._replay: list[bytes] = []  # a Byzantine host's votes of its last epoch
        self._asked_ahead_at = -(1 << 62)
        self.durable_by_epoch: dict[int, DurableState] = {}
        self.up = True
        self.crash_pending = False
        self.restarts = 0

    # ---- epochs -----------------------------------------------------------------------

    def begin(self) -> None:
        self._enter(0, self.anchor)
        self._ask_for_proof()

    def _enter(self, epoch: int, anchor: Anchor) -> None:
        """Move (durably) to `epoch` on `anchor`, and start its instance."""
        self.epoch = epoch
        self.anchor = anchor
        self._start_instance()

    def _start_instance(self) -> None:
        epoch, anchor = self.epoch, self.anchor
        self.instance = None
        if not self.up:
            return
        index = self.world.index_of(epoch, self.machine)
        if index is None:
            return
        world = self.world
        behaviour = self.byzantine.get(epoch)
        node_class: type[EpochInstance] = (
            ByzantineEpochInstance if behaviour is not None else EpochInstance
        )
        queue = world.queue
        hooks = Hooks()
        hooks.on_send = lambda i, m: world.on_send(epoch, i, m)
        hooks.on_certificate = lambda i, c: world.on_certificate(epoch, i, c)
        hooks.on_malformed = lambda i: self._malformed()

        def schedule(delay: int, callback: Callable[[], None]) -> None:
            queue.at(queue.now + delay, callback)

        def send_bytes(src: int, dst: int, data: bytes) -> None:
            self._send_in_epoch(epoch, dst, data)

        node = node_class(
            index=index,
            key=world.keys[self.machine],
            validators=world.schedule.epoch(epoch).validators,
            genesis=SIM_GENESIS,
            verifier=world.verifiers[epoch],
            config=world.config,
            rng=random.Random(self.rng.getrandbits(64)),
            hooks=hooks,
            schedule=schedule,
            send_bytes=send_bytes,
        )
        node.durable = self.durable_by_epoch.setdefault(
            epoch, DurableState(by_digest=self.by_digest, finalizations=self.finalizations)
        )
        node.core_class = world.params.core_class
        node.host = self
        node.epoch = epoch
        node.anchor = anchor
        node.last_height = world.schedule.last_height(epoch)
        node.anchored = epoch > 0
        if isinstance(node, ByzantineEpochInstance) and behaviour is not None:
            node.setup(BEHAVIOURS[behaviour]())
        self.instance = node
        node.start()
        if not self.up:
            return  # a crash struck while starting
        self._replay_old_votes(epoch)
        buffered, self.buffer = self.buffer, []
        for src, wire in buffered:
            self.receive(src, wire)

    # ---- crashes ------------------------------------------------------------------------

    def schedule_crash(self) -> None:
        """Crash inside the next action list the instance produces (now, if none)."""
        if not self.up:
            return
        if self.instance is not None and self.instance.up:
            self.instance.crash_pending = True
        else:
            self.went_down()

    def went_down(self) -> None:
        if self.instance is not None and self.instance.up:
            self.instance.crash()
        self.up = False
        self.instance = None
        self.retained = {}
        self.buffer = []
        self._replay = []

    def restart(self) -> None:
        if self.up:
            return
        self.up = True
        self.restarts += 1
        self._start_instance()

    def on_epoch_ended(self, epoch: int, ended: EpochEnded) -> None:
        """Store the proof, hand it to both sets, start the next epoch on it."""
        world = self.world
        if epoch != self.epoch or epoch + 1 >= len(world.schedule):
            return
        self.proofs[epoch] = ended.proof
        world.ended_at.setdefault(epoch, world.queue.now)
        data = encode_epoch_wire(ended.proof)
        for peer in sorted(set(world.members[epoch]) | set(world.members[epoch + 1])):
            if peer != self.machine:
                self.network.send(self.machine, peer, data)
        if self.instance is not None:
            self.retained[epoch] = self.instance
            for old in [e for e in self.retained if e <= epoch - RETAINED_EPOCHS]:
                del self.retained[old]
            if isinstance(self.instance, ByzantineEpochInstance) and world.params.replay_votes:
                self._replay = list(self.instance.received)
        # Durably in the next epoch now; its instance starts once this action list
        # is done (a crash before then restarts straight into the new epoch).
        self.epoch = epoch + 1
        self.anchor = Anchor(ended.last_block, ended.height)
        world.queue.at(world.queue.now, lambda: self._start_next(epoch + 1))

    def _start_next(self, epoch: int) -> None:
        if (
            self.up
            and self.epoch == epoch
            and (self.instance is None or self.instance.epoch != epoch)
        ):
            self._start_instance()

    def _on_proof(self, src: int, proof: EpochEndProof) -> None:
        epoch = proof.epoch
        world = self.world
        if epoch != self.epoch or epoch + 1 >= len(world.schedule):
            return
        if self.instance is not None and self.instance.epoch == epoch:
            self.instance.feed(EpochEndReceived(proof))
            return
        if self.world.index_of(epoch, self.machine) is not None:
            return  # a member whose instance is starting: the proof comes again
        # Not a member of this epoch: follow the chain of proofs to the next one.
        last = world.schedule.last_height(epoch)
        assert last is not None
        try:
            digest = verify_epoch_end(
                proof,
                epoch=epoch,
                last_height=last,
                validators=world.schedule.epoch(epoch).validators,
                verifier=world.verifiers[epoch],
            )
        except InvalidEpochEnd:
            return
        self.proofs[epoch] = proof
        self.tip_height = max(self.tip_height, last)
        self.tip_digest = digest
        self._enter(epoch + 1, Anchor(digest, Height(last)))

    def _ask_for_proof(self) -> None:
        """While not a member of the current epoch, ask a member for its proof."""
        world = self.world
        member = self.world.index_of(self.epoch, self.machine) is not None
        if self.up and not member and self.epoch + 1 < len(world.schedule):
            peers = [m for m in world.members[self.epoch] if m != self.machine]
            if peers:
                wire = encode_epoch_wire(EpochEndRequest(epoch=self.epoch))
                self.network.send(self.machine, self.rng.choice(peers), wire)
        world.queue.at(world.queue.now + world.params.retry_ms, self._ask_for_proof)

    def _replay_old_votes(self, epoch: int) -> None:
        """A Byzantine host replays what it received in its last epoch into this one."""
        for inner in self._replay:
            for peer in self.world.members[epoch]:
                if peer != self.machine:
                    wire = encode_epoch_wire(EpochEnvelope(epoch=epoch, message=inner))
                    self.network.send(self.machine, peer, wire)
        self._replay = []

    # ---- chain ----------------------------------------------------------------------------

    def commit(self, epoch: int, block: Block, finalization: Certificate) -> None:
        world = self.world
        extends = block.height == self.tip_height + 1 and block.parent == self.tip_digest
        if not extends and self.machine in world.honest_in[epoch]:
            world.violate(
                f"chain: machine {self.machine} committed height {block.height} "
                f"not extending its tip at {self.tip_height}"
            )
        self.chain[block.height] = block
        self.finalizations[block.height] = finalization
        self.tip_height = block.height
        self.tip_digest = block.digest()
        world.on_commit(self, epoch, block)

    # ---- network ------------------------------------------------------------------------

    def _send_in_epoch(self, epoch: int, index: int, data: bytes) -> None:
        members = self.world.members[epoch]
        if 0 <= index < len(members):
            wire = encode_epoch_wire(EpochEnvelope(epoch=epoch, message=data))
            self.network.send(self.machine, members[index], wire)

    def _malformed(self) -> None:
        self.world.malformed += 1

    def receive(self, src: int, data: bytes) -> None:
        if not self.up:
            return
        try:
            wire = decode_epoch_wire(data)
        except MalformedMessage:
            self._malformed()
            return
        match wire:
            case EpochEndProof():
                self._on_proof(src, wire)
            case EpochEndRequest():
                self._offer_proof(src, wire.epoch)
            case EpochEnvelope():
                self._on_envelope(src, wire, data)

    def _on_envelope(self, src: int, envelope: EpochEnvelope, data: bytes) -> None:
        epoch = envelope.epoch
        if epoch >= len(self.world.schedule):
            return
        index = self.world.index_of(epoch, src)
        if index is None:
            return  # not a member of that epoch: nothing it says there counts
        if epoch == self.epoch:
            if self.instance is not None and self.instance.epoch == epoch:
                self.instance.receive(index, envelope.message)
            elif len(self.buffer) < BUFFERED_FUTURE_MESSAGES:
                self.buffer.append((src, data))  # its instance is about to start
        elif epoch > self.epoch:
            if epoch == self.epoch + 1 and len(self.buffer) < BUFFERED_FUTURE_MESSAGES:
                self.buffer.append((src, data))
            self._ask_ahead(src)
        elif epoch < self.epoch:
            old = self.retained.get(epoch)
            if old is not None:
                old.receive(index, envelope.message)  # answers its fetches
            else:
                self._answer_from_chain(src, epoch, envelope.message)
            self._offer_proof(src, epoch)

    def _ask_ahead(self, peer: int) -> None:
        """A peer is in a later epoch, so ours has ended: ask it for the proof (at
        most once per retry period). Without this a member that missed the end
        and sends nothing (or nothing the others answer) would never learn it."""
        now = self.world.queue.now
        if now - self._asked_ahead_at < self.world.params.retry_ms:
            return
        self._asked_ahead_at = now
        self.network.send(self.machine, peer, encode_epoch_wire(EpochEndRequest(self.epoch)))

    def _answer_from_chain(self, src: int, epoch: int, data: bytes) -> None:
        """A block request of an epoch whose instance is gone (a restart, or long
        ago): committed blocks are answered from the chain."""
        try:
            request = decode_message(data, anchored=epoch > 0)
        except MalformedMessage:
            return
        if not isinstance(request, BlockRequest):
            return
        response = answer_block_request(request, self.by_digest.get)
        if response is not None:
            members = self.world.members[epoch]
            if self.machine in members and src in members:
                inner = encode_message(response)
                self._send_in_epoch(epoch, members.index(src), inner)

    def _offer_proof(self, peer: int, epoch: int) -> None:
        """Send `peer` the proof of `epoch` (at most once per retry period)."""
        proof = self.proofs.get(epoch)
        now = self.world.queue.now
        last = self._answered.get((peer, epoch))
        if proof is None or (last is not None and now - last < self.world.params.retry_ms):
            return
        self._answered[(peer, epoch)] = now
        self.network.send(self.machine, peer, encode_epoch_wire(proof))


def _draw_conditions(rng: random.Random) -> NetworkConditions:
    return NetworkConditions(
        min_delay_ms=rng.randint(1, 10),
        max_delay_ms=rng.randint(15, 80),
        loss=rng.choice([0.0, 0.02, 0.05, 0.1]),
        duplicate=rng.choice([0.0, 0.02]),
        reorder=rng.choice([0.0, 0.02, 0.05]),
    )


def run_epoch_seed(params: EpochSimParams, seed: int) -> EpochSeedResult:
    rng = random.Random(seed)
    queue = EventQueue()
    world = SimWorld(params, queue)
    machines = sorted(world.keys)
    byzantine: dict[int, dict[int, str]] = {m: {} for m in machines}
    labels: list[str] = []
    for epoch in world.schedule.epochs:
        honest = set(world.members[epoch.number])
        if params.byzantine:
            validators = epoch.validators
            candidates = [
                m
                for i, m in enumerate(world.members[epoch.number])
                if validators.weight_of([ValidatorIndex(i)]) <= validators.max_faulty_weight
            ]
            if candidates:
                bad = rng.choice(candidates)
                behaviour = rng.choice(params.behaviours)
                byzantine[bad][epoch.number] = behaviour
                honest.discard(bad)
                labels.append(f"{epoch.number}:{bad}:{behaviour}")
        world.honest_in.append(honest)
        world.checkers.append(
            Checkers(
                epoch.validators,
                {world.members[epoch.number].index(m) for m in honest},
                payload_is_valid,
                lambda: queue.now,
                world.verifiers[epoch.number],
            )
        )

    conditions = _draw_conditions(rng)
    calm = NetworkConditions(conditions.min_delay_ms, conditions.max_delay_ms)
    hosts: dict[int, EpochHost] = {}

    def deliver(src: int, dst: int, data: bytes) -> None:
        hosts[dst].receive(src, data)

    network = VirtualNetwork(queue, rng, conditions, deliver)
    for m in machines:
        hosts[m] = EpochHost(m, world, random.Random(rng.getrandbits(64)), network, byzantine[m])
        queue.at(rng.randint(0, 20), hosts[m].begin)

    if params.crashes:
        for _ in range(rng.randint(0, 4)):
            victim = hosts[rng.choice(machines)]
            at = rng.randint(1, params.faulty_ms - 1)
            back = min(params.faulty_ms, at + rng.randint(10, 1_000))
            queue.at(at, victim.schedule_crash)
            queue.at(back, victim.restart)

    if params.outage is not None:
        machine, down_at, back_at = params.outage
        queue.at(down_at, hosts[machine].schedule_crash)
        queue.at(back_at, hosts[machine].restart)

    def heal() -> None:
        network.conditions = calm
        for m, host in hosts.items():
            if params.outage is not None and m == params.outage[0]:
                continue  # its outage ends on its own schedule
            if host.instance is not None and host.instance.crash_pending:
                host.went_down()
            host.restart()

    queue.at(params.faulty_ms, heal)
    queue.run_until(params.run_ms)

    violations = list(world.violations)
    for checkers in world.checkers:
        violations.extend(v for v in checkers.violations if v not in violations)
    violations.extend(_liveness(world, hosts, byzantine))
    return EpochSeedResult(
        seed=seed,
        violations=violations,
        heights={m: hosts[m].tip_height for m in machines},
        epoch_of_host={m: hosts[m].epoch for m in machines},
        ended_at=dict(world.ended_at),
        byzantine=labels,
        malformed=world.malformed,
        messages=network.sent,
        restarts=sum(h.restarts for h in hosts.values()),
    )


def _liveness(
    world: SimWorld, hosts: dict[int, EpochHost], byzantine: dict[int, dict[int, str]]
) -> list[str]:
    """Every member honest in an epoch committed that epoch's blocks up to its last
    height; every machine never Byzantine reached the last epoch; every honest
    member of the last epoch committed `last_epoch_blocks` in it."""
    out: list[str] = []
    schedule = world.schedule
    final = len(schedule) - 1
    for number in range(final):
        last = schedule.last_height(number)
        assert last is not None
        for m in sorted(world.honest_in[number]):
            if hosts[m].tip_height < last:
                out.append(
                    f"liveness: machine {m} committed up to {hosts[m].tip_height} only, "
                    f"short of epoch {number}'s last height {last}"
                )
    for m, host in sorted(hosts.items()):
        if not byzantine[m] and host.epoch != final:
            out.append(f"liveness: machine {m} is still in epoch {host.epoch} at the end")
    target = schedule.epoch(final).first_height + world.params.last_epoch_blocks - 1
    for m in sorted(world.honest_in[final]):
        if hosts[m].tip_height < target:
            out.append(
                f"liveness: machine {m} committed up to {hosts[m].tip_height} only "
                f"(wanted {target} in the last epoch)"
            )
    return out


@dataclass
class EpochSummary:
    """What `seqnet sim --epochs` reports over many seeds."""

    seeds: int = 0
    failed_seeds: list[int] = field(default_factory=list)
    violations: int = 0
    ended: dict[int, int] = field(default_factory=dict)  # epoch -> seeds in which it ended
    max_end_ms: dict[int, int] = field(default_factory=dict)  # epoch -> latest first end
    min_final_height: int | None = None  # lowest height any machine reached in any seed
    malformed: int = 0
    messages: int = 0

    def add(self, result: EpochSeedResult) -> None:
        self.seeds += 1
        if result.violations:
            self.failed_seeds.append(result.seed)
            self.violations += len(result.violations)
        for epoch, at in result.ended_at.items():
            self.ended[epoch] = self.ended.get(epoch, 0) + 1
            self.max_end_ms[epoch] = max(self.max_end_ms.get(epoch, 0), at)
        final = max(result.heights.values(), default=0)
        if self.min_final_height is None or final < self.min_final_height:
            self.min_final_height = final
        self.malformed += result.malformed
        self.messages += result.messages

    def epochs(self, params: EpochSimParams) -> list[dict[str, object]]:
        """Per epoch: its heights, set size, and in how many seeds it ended and when."""
        out: list[dict[str, object]] = []
        for number, members in enumerate(params.rotation):
            first = 1 + number * params.epoch_length
            last = first + params.epoch_length - 1 if number + 1 < len(params.rotation) else None
            out.append(
                {
                    "epoch": number,
                    "first_height": first,
                    "last_height": last,
                    "validators": [m for m, _ in members],
                    "weights": [w for _, w in members],
                    "ended_seeds": self.ended.get(number, 0),
                    "max_end_ms": self.max_end_ms.get(number),
                }
            )
        return out


def _run_epoch_star(args: tuple[EpochSimParams, int]) -> EpochSeedResult:
    params, seed = args
    try:
        return run_epoch_seed(params, seed)
    except Exception as exc:  # a crash inside a run is itself a reported failure
        return EpochSeedResult(seed, [f"crash: {type(exc).__name__}: {exc}"], {}, {}, {})


def run_epoch_seeds(
    params: EpochSimParams,
    seeds: list[int],
    jobs: int = 1,
    on_result: Callable[[EpochSeedResult], None] | None = None,
) -> EpochSummary:
    import multiprocessing

    summary = EpochSummary()
    work = [(params, s) for s in seeds]
    if jobs <= 1 or len(work) <= 1:
        results = map(_run_epoch_star, work)
        for result in results:
            summary.add(result)
            if on_result is not None:
                on_result(result)
        return summary
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        for result in pool.imap_unordered(_run_epoch_star, work, chunksize=2):
            summary.add(result)
            if on_result is not None:
                on_result(result)
    return summary
