"""A simulated validator: the real consensus core driven by the simulator.

The driver plays the node's role: it encodes messages to bytes and decodes
what arrives (so the codec and its checks run on every message), keeps the
durable state a node keeps on disk (the safety record and the committed
chain), and carries out the core's actions in order. A crash may strike after
any prefix of an action list, modelling kill -9 between a write and a send.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from consensus.core import ConsensusConfig, ConsensusCore
from consensus.crypto import PrivateKey
from consensus.io import (
    Action,
    Broadcast,
    BuildPayload,
    Commit,
    CommittedTip,
    Event,
    Fetch,
    MessageReceived,
    PayloadBuilt,
    PayloadVerified,
    Persist,
    ReportEvidence,
    SafetyRecord,
    Send,
    SetTimer,
    Start,
    StoreBlock,
    StoreCertificate,
    TimerFired,
    VerifyPayload,
)
from consensus.messages import (
    Block,
    Certificate,
    MalformedMessage,
    Message,
    SyncRequest,
    VoteKind,
    decode_message,
    encode_message,
)
from consensus.sync import answer_sync_request
from consensus.types import Digest, Height, ValidatorIndex, ValidatorSet, View
from consensus.verifier import SignatureVerifier

MEMORY_SAMPLE_EVERY = 32
"""Events between two samples of a core's memory footprint."""

VALID_PAYLOAD_PREFIX = b"ok"
"""The simulated application accepts payloads starting with this prefix."""


def payload_is_valid(payload: bytes) -> bool:
    return payload.startswith(VALID_PAYLOAD_PREFIX) and len(payload) <= 64


@dataclass(slots=True)
class DurableState:
    """What survives a crash: written synchronously, as the real node fsyncs it."""

    safety: bytes | None = None  # msgspec-encoded SafetyRecord
    chain: list[Block] = field(default_factory=list)  # committed blocks, height 1..
    certificates: dict[tuple[int, int], Certificate] = field(default_factory=dict)
    by_digest: dict[bytes, Block] = field(default_factory=dict)  # committed blocks
    voted: dict[bytes, Block] = field(default_factory=dict)  # StoreBlock, not yet committed
    finalizations: dict[int, Certificate] = field(default_factory=dict)  # by committed height


class Hooks:
    """What the simulator observes; the checkers read these."""

    def __init__(self) -> None:
        self.on_send: Callable[[int, Message], None] = lambda src, msg: None
        self.on_commit: Callable[[int, Block], None] = lambda node, block: None
        self.on_evidence: Callable[[int], None] = lambda node: None
        self.on_malformed: Callable[[int], None] = lambda node: None
        self.on_certificate: Callable[[int, Certificate], None] = lambda node, cert: None


class SimNode:
    def __init__(
        self,
        *,
        index: ValidatorIndex,
        key: PrivateKey,
        validators: ValidatorSet,
        genesis: Block,
        verifier: SignatureVerifier,
        config: ConsensusConfig,
        rng: random.Random,
        hooks: Hooks,
        schedule: Callable[[int, Callable[[], None]], None],
        send_bytes: Callable[[int, int, bytes], None],
        persist_safety: bool = True,
    ) -> None:
        self.index = index
        self.key = key
        self.validators = validators
        self.genesis = genesis
        self.verifier = verifier
        self.config = config
        self.rng = rng
        self.hooks = hooks
        self._schedule = schedule
        self._send_bytes = send_bytes
        self.persist_safety = persist_safety  # False only in the mutation tests
        self.durable = DurableState()
        self.up = False
        self.crash_pending = False
        self.core: ConsensusCore | None = None
        self._timer_generation = 0
        self.restarts = 0
        self.peak_memory: dict[str, int] = {}
        self._events = 0

    # ---- lifecycle ------------------------------------------------------------------

    core_class: type[ConsensusCore] = ConsensusCore
    """The simulator's mutation tests swap in a core with a bug put back."""
    anchored: bool = False
    """True for an instance of an epoch after the first (its chain starts above an
    anchor of any height): decoding allows its first blocks' heights."""

    def start(self) -> None:
        self.core = self.core_class(
            validators=self.validators,
            me=self.index,
            key=self.key,
            genesis=self.genesis,
            verifier=self.verifier,
            config=self.config,
            stored_block=self.stored_block,
        )
        self.up = True
        self.crash_pending = False
        safety = None
        if self.durable.safety is not None:
            safety = msgspec.msgpack.decode(self.durable.safety, type=SafetyRecord)
        tip_finalization = None
        if self.durable.chain:
            tip = self.durable.chain[-1]
            committed = CommittedTip(Height(tip.height), tip.digest(), View(tip.view))
            tip_finalization = self.durable.finalizations.get(tip.height)
        else:
            committed = CommittedTip(Height(0), self.genesis.digest(), View(0))
        self.feed(
            Start(
                safety,
                committed,
                tuple(self.durable.certificates.values()),
                tip_finalization,
            )
        )

    def stored_block(self, digest: bytes) -> Block | None:
        return self.durable.by_digest.get(digest) or self.durable.voted.get(digest)

    def crash(self) -> None:
        """Stop now: memory is lost, durable state stays, timers die."""
        self.up = False
        self.core = None
        self._timer_generation += 1

    def restart(self) -> None:
        self.restarts += 1
        self.start()

    # ---- events in, actions out -------------------------------------------------------

    def feed(self, event: Event) -> None:
        if not self.up or self.core is None:
            return
        actions = self.core.handle(event)
        self._events += 1
        if self._events % MEMORY_SAMPLE_EVERY == 0:
            self.sample_memory()
        if self.crash_pending:
            # kill -9 lands somewhere inside this list: after any prefix of it.
            cut = self.rng.randint(0, len(actions))
            for action in actions[:cut]:
                self.execute(action)
            self.crash()
            return
        for action in actions:
            self.execute(action)

    def receive(self, src: int, data: bytes) -> None:
        if not self.up:
            return
        try:
            message = decode_message(data, anchored=self.anchored)
        except MalformedMessage:
            self.hooks.on_malformed(self.index)
            return
        if isinstance(message, SyncRequest):
            self._answer_sync(src, message)
            return
        self.feed(MessageReceived(ValidatorIndex(src), message))

    def _answer_sync(self, src: int, request: SyncRequest) -> None:
        chain = self.durable.chain
        response = answer_sync_request(
            request,
            lambda h: chain[h - 1] if 1 <= h <= len(chain) else None,
            self.durable.finalizations.get,
        )
        if response is not None:
            self.send(src, response)

    def execute(self, action: Action) -> None:
        match action:
            case Persist():
                if self.persist_safety:
                    self.durable.safety = msgspec.msgpack.encode(action.record)
            case StoreBlock():
                self.durable.voted[action.block.digest()] = action.block
            case StoreCertificate():
                self.hooks.on_certificate(self.index, action.certificate)
                self.store_certificate(action.certificate)
            case Broadcast():
                self.broadcast(action.message)
            case Send():
                self.send(action.to, action.message)
            case SetTimer():
                self._timer_generation += 1
                generation = self._timer_generation
                view = action.view
                self._schedule(action.delay_ms, lambda: self._timer(generation, view))
            case BuildPayload():
                payload = VALID_PAYLOAD_PREFIX + self.rng.randbytes(16)
                view = action.view
                self._schedule(0, lambda: self.feed(PayloadBuilt(view, payload)))
            case VerifyPayload():
                block = action.block
                event = PayloadVerified(
                    View(block.view), Digest(block.digest()), payload_is_valid(block.payload)
                )
                self._schedule(0, lambda: self.feed(event))
            case Commit():
                self.commit(action.block, action.finalization)
            case ReportEvidence():
                self.hooks.on_evidence(self.index)
            case Fetch():
                self.send(self._pick_peer(action.prefer), action.request)

    def schedule(self, delay_ms: int, callback: Callable[[], None]) -> None:
        """Run `callback` after `delay_ms` of virtual time."""
        self._schedule(delay_ms, callback)

    def sample_memory(self) -> None:
        """Record the peak of what the core holds (the memory checker reads it)."""
        if self.core is None:
            return
        for name, size in self.core.memory_footprint().items():
            if size > self.peak_memory.get(name, 0):
                self.peak_memory[name] = size

    def _pick_peer(self, prefer: int | None) -> int:
        """One peer per request, as the node asks one peer at a time: the preferred
        one, else a random other validator."""
        if prefer is not None and prefer != self.index:
            return prefer
        peers = [i for i in range(len(self.validators)) if i != self.index]
        return self.rng.choice(peers) if peers else self.index

    def store_certificate(self, cert: Certificate) -> None:
        certs = self.durable.certificates
        certs[(cert.view, cert.kind)] = cert
        if cert.kind == VoteKind.FINALIZE:
            for key in [k for k in certs if k[0] < cert.view]:
                del certs[key]

    def _timer(self, generation: int, view: View) -> None:
        if self.up and generation == self._timer_generation:
            self.feed(TimerFired(view))

    def commit(self, block: Block, finalization: Certificate) -> None:
        expected = len(self.durable.chain) + 1
        if block.height != expected:
            raise AssertionError(
                f"node {self.index} committed height {block.height}, expected {expected}"
            )
        self.durable.chain.append(block)
        self.durable.by_digest[block.digest()] = block
        self.durable.finalizations[block.height] = finalization
        for digest in [d for d, b in self.durable.voted.items() if b.height <= block.height]:
            del self.durable.voted[digest]
        self.hooks.on_commit(self.index, block)

    # ---- network ------------------------------------------------------------------------

    def send(self, to: int, message: Message) -> None:
        self.hooks.on_send(self.index, message)
        self._send_bytes(self.index, to, encode_message(message))

    def broadcast(self, message: Message) -> None:
        self.hooks.on_send(self.index, message)
        data = encode_message(message)
        for peer in range(len(self.validators)):
            if peer != self.index:
                self._send_bytes(self.index, peer, data)
