"""The consensus driver on a chain of two epochs, without sockets: how it routes
epoch-wire messages (hostile ones included) and where a restarted node resumes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import trio

from consensus.core import ConsensusConfig, ConsensusCore
from consensus.crypto import PrivateKey, keccak256
from consensus.epochs import Anchor, epoch_domain_separator
from consensus.io import Commit, Event, MessageReceived
from consensus.limits import MAX_MESSAGE_BYTES
from consensus.messages import (
    MAX_EPOCH_WIRE_BYTES,
    Block,
    BlockRequest,
    BlockResponse,
    Certificate,
    EpochEndProof,
    EpochEndRequest,
    EpochEnvelope,
    Vote,
    VoteKind,
    decode_epoch_wire,
    decode_message,
    encode_epoch_wire,
    encode_message,
)
from consensus.types import Height
from consensus.verifier import SignatureVerifier
from sequencer_net.home.genesis import Genesis, LocalEpoch, make_local_genesis
from sequencer_net.metrics import Metrics
from sequencer_net.node.driver import (
    BUFFERED_NEXT_EPOCH,
    BUFFERED_NEXT_EPOCH_BYTES,
    ConsensusDriver,
    EpochFollowed,
)
from sequencer_net.node.epochs import (
    EpochMembers,
    EpochPlan,
    resume_epoch,
)
from sequencer_net.p2p.network import Channel
from sequencer_net.storage.node_store import NodeStore

SECRETS = [keccak256(b"seqnet-epoch-driver-%d" % i) for i in range(4)]
KEYS = [PrivateKey(s) for s in SECRETS]
LAST_OF_EPOCH_0 = 9


def _genesis(epochs: tuple[LocalEpoch, ...] | None = None) -> Genesis:
    return make_local_genesis(
        SECRETS,
        chain_id=4242,
        base_p2p_port=40_000,
        base_api_port=41_000,
        genesis_time_ms=0,
        epochs=epochs or (LocalEpoch(LAST_OF_EPOCH_0 + 1, (3, 2, 1, 0), weights=(2, 1, 1, 1)),),
    )


def _plan(genesis: Genesis, me: int | None = None) -> EpochPlan:
    """The genesis's plan; `me` is the node's peer number (None: a member of every epoch)."""
    separator = genesis.domain().separator()
    verifiers = [
        SignatureVerifier(epoch_domain_separator(separator, e))
        for e in range(len(genesis.epochs) + 1)
    ]
    block = genesis.genesis_block()
    return EpochPlan(
        schedule=genesis.schedule(),
        members=EpochMembers(genesis),
        verifier=lambda e: verifiers[e],
        genesis=Anchor(block.digest(), Height(0)),
        me=me,
    )


class RecordingP2P:
    def __init__(self, peers: tuple[int, ...] = (1, 2, 3)) -> None:
        self.sent: list[tuple[int, bytes]] = []
        self.peers = list(peers)

    def send(self, peer: int, channel: Channel, data: bytes) -> bool:
        self.sent.append((peer, data))
        return True

    def broadcast(self, channel: Channel, data: bytes) -> None:
        self.sent.append((-1, data))

    def connected_peers(self) -> list[int]:
        return list(self.peers)


def epoch_driver(
    tmp_path: Path,
    genesis: Genesis,
    plan: EpochPlan,
    key: PrivateKey,
    *,
    first: int,
    config: ConsensusConfig,
    p2p: RecordingP2P,
    follow: object = None,
) -> ConsensusDriver:
    """A driver of `key`'s node over `plan`, starting in epoch `first` (a core on
    the genesis anchor), with no payload service and a store under `tmp_path`."""
    store = NodeStore(tmp_path / "db", genesis_digest=genesis.genesis_block().digest(), sync=False)

    def start_core(epoch: int, anchor: Anchor) -> ConsensusCore:
        validators = plan.schedule.epoch(epoch).validators
        index = validators.index_of(key.address)
        assert index is not None
        return ConsensusCore(
            validators=validators,
            me=index,
            key=key,
            genesis=genesis.genesis_block() if epoch == 0 else None,
            anchor=anchor if epoch > 0 else None,
            last_height=plan.schedule.last_height(epoch),
            epoch=epoch,
            verifier=plan.verifier(epoch),
            config=config,
            stored_block=store.block_by_digest,
        )

    commits_in, _ = trio.open_memory_channel[Commit](10)
    return ConsensusDriver(
        core=start_core(first, plan.genesis),
        store=store,
        p2p=p2p,  # type: ignore[arg-type]
        payloads=None,  # type: ignore[arg-type]
        commits=commits_in,
        metrics=Metrics(),
        epochs=plan,
        start_core=start_core,
        follow_epoch=follow,  # type: ignore[arg-type]
    )


def _driver(tmp_path: Path, genesis: Genesis, me: int = 0) -> tuple[ConsensusDriver, RecordingP2P]:
    p2p = RecordingP2P()
    driver = epoch_driver(
        tmp_path,
        genesis,
        _plan(genesis),
        KEYS[me],
        first=0,
        config=ConsensusConfig(view_timeout_ms=1000, retry_ms=500),
        p2p=p2p,
    )
    return driver, p2p


def _vote(signer: int, epoch: int, view: int, genesis: Genesis) -> Vote:
    plan = _plan(genesis)
    index = plan.schedule.epoch(epoch).validators.index_of(KEYS[signer].address)
    assert index is not None
    digest = plan.verifier(epoch).vote_digest(VoteKind.NULLIFY, view, 0, bytes(32))
    return Vote(VoteKind.NULLIFY, view, 0, bytes(32), index, KEYS[signer].sign_digest(digest))


def _queued(driver: ConsensusDriver) -> list[tuple[int, Event | EpochFollowed]]:
    out: list[tuple[int, Event | EpochFollowed]] = []
    while True:
        try:
            epoch, event, _ = driver._events_out.receive_nowait()
        except trio.WouldBlock:
            return out
        out.append((epoch, event))


def _malformed(driver: ConsensusDriver) -> float:
    (metric,) = driver.metrics.malformed_messages.collect()
    return float(next(s.value for s in metric.samples if s.name.endswith("_total")))


async def test_epoch_wire_is_routed_by_epoch_and_hostile_frames_change_nothing(
    tmp_path: Path,
) -> None:
    genesis = _genesis()
    driver, p2p = _driver(tmp_path, genesis)
    # Garbage, a plain (unenveloped) message, an oversized frame, a broken inner
    # message: counted as malformed, nothing reaches the core.
    vote0 = _vote(1, 0, 1, genesis)
    for frame in (
        b"\xff\x00garbage",
        encode_message(vote0),
        b"\x00" * (MAX_EPOCH_WIRE_BYTES + 1),
        encode_epoch_wire(EpochEnvelope(epoch=0, message=b"\x93\x01")),
    ):
        driver.on_peer_message(1, frame)
    assert _malformed(driver) == 4
    # An epoch the schedule does not have: dropped.
    driver.on_peer_message(1, encode_epoch_wire(EpochEnvelope(2, encode_message(vote0))))
    assert _queued(driver) == [] and p2p.sent == []
    # The current epoch's message goes to the core, from the sender's index in it.
    driver.on_peer_message(1, encode_epoch_wire(EpochEnvelope(0, encode_message(vote0))))
    ((epoch, event),) = _queued(driver)
    assert epoch == 0 and isinstance(event, MessageReceived) and event.sender == 1
    # The next epoch's wait in a bounded buffer, and the sender (which is past our
    # epoch) is asked for our epoch's proof, at most once per retry period.
    vote1 = encode_epoch_wire(EpochEnvelope(1, encode_message(_vote(1, 1, 1, genesis))))
    for _ in range(BUFFERED_NEXT_EPOCH + 10):
        driver.on_peer_message(1, vote1)
    assert len(driver._buffer) == BUFFERED_NEXT_EPOCH
    assert _queued(driver) == []
    # ... bounded in bytes too: large messages fill it sooner.
    driver._buffer, driver._buffer_bytes = [], 0
    big = encode_epoch_wire(EpochEnvelope(1, b"\x00" * (MAX_MESSAGE_BYTES - 1)))
    for _ in range(BUFFERED_NEXT_EPOCH_BYTES // MAX_MESSAGE_BYTES + 5):
        driver.on_peer_message(1, big)
    assert len(driver._buffer) == BUFFERED_NEXT_EPOCH_BYTES // (MAX_MESSAGE_BYTES - 1)
    assert driver._buffer_bytes <= BUFFERED_NEXT_EPOCH_BYTES
    assert [(peer, decode_epoch_wire(data)) for peer, data in p2p.sent] == [
        (1, EpochEndRequest(epoch=0))
    ]
    # A request for a proof this node does not have goes unanswered.
    driver.on_peer_message(2, encode_epoch_wire(EpochEndRequest(epoch=0)))
    assert len(p2p.sent) == 1
    driver.store.close()


def _end_proof(genesis: Genesis, chain: list[Block]) -> EpochEndProof:
    """Epoch 0's proof: a finalization of its last block by validators 0, 1, 2."""
    last = chain[-1]
    verifier = _plan(genesis).verifier(0)
    signers = [0, 1, 2]
    signatures: list[bytes] = [
        KEYS[i].sign_digest(
            verifier.vote_digest(VoteKind.FINALIZE, last.view, last.height, last.digest())
        )
        for i in signers
    ]
    final = Certificate(
        VoteKind.FINALIZE, last.view, last.height, last.digest(), signers, signatures
    )
    return EpochEndProof(epoch=0, last_height=last.height, finalization=final, tail=[])


def _chain(genesis: Genesis, length: int) -> list[Block]:
    parent = genesis.genesis_block().digest()
    chain = []
    for height in range(1, length + 1):
        block = Block(height, height, parent, height % 4, b"")
        chain.append(block)
        parent = block.digest()
    return chain


@pytest.mark.parametrize(
    ("committed", "proof", "epoch"),
    [
        (LAST_OF_EPOCH_0, True, 1),  # over: the next epoch runs
        (LAST_OF_EPOCH_0 - 2, True, 0),  # proof kept, last commits lost: resume epoch 0
        (LAST_OF_EPOCH_0, False, 0),  # last block committed, proof lost: ask for it
        (3, False, 0),
    ],
)
def test_a_restarted_node_resumes_in_the_epoch_its_store_shows(
    tmp_path: Path, committed: int, proof: bool, epoch: int
) -> None:
    genesis = _genesis()
    plan = _plan(genesis)
    chain = _chain(genesis, LAST_OF_EPOCH_0)
    with NodeStore(
        tmp_path / "db", genesis_digest=genesis.genesis_block().digest(), sync=False
    ) as store:
        end = _end_proof(genesis, chain)
        for block in chain[:committed]:
            store.commit_block(block, end.finalization, [], bytes(32))
        if proof:
            store.save_epoch_end(end)
        resumed, anchor = resume_epoch(store, plan)
        assert resumed == epoch
        if epoch == 1:
            assert anchor == Anchor(chain[-1].digest(), Height(LAST_OF_EPOCH_0))
        else:
            assert anchor == plan.genesis


def test_peer_numbers_map_to_each_epochs_indices() -> None:
    members = EpochMembers(_genesis())
    assert [members.index_of(0, p) for p in range(4)] == [0, 1, 2, 3]
    assert [members.index_of(1, p) for p in range(4)] == [3, 2, 1, 0]
    assert [members.peer_of(1, i) for i in range(4)] == [3, 2, 1, 0]
    assert members.peer_of(1, 4) is None
    assert list(itertools.chain(members.peers(0), members.peers(1))) == [0, 1, 2, 3, 3, 2, 1, 0]


async def test_a_laggards_earlier_epoch_fetch_is_answered_with_blocks_and_the_proof(
    tmp_path: Path,
) -> None:
    """In epoch 1, a peer still in epoch 0 asks for a block: the store answers it
    (the ended core is gone after a restart) and the peer gets epoch 0's proof,
    once per retry period however often it asks."""
    genesis = _genesis()
    driver, p2p = _driver(tmp_path, genesis)
    chain = _chain(genesis, LAST_OF_EPOCH_0)
    end = _end_proof(genesis, chain)
    for block in chain:
        driver.store.commit_block(block, end.finalization, [], bytes(32))
    driver.store.save_epoch_end(end)
    driver.epoch = 1  # as if epoch 0 had ended here
    request = BlockRequest(digest=chain[-1].digest(), max_count=2)
    for _ in range(3):
        driver.on_peer_message(2, encode_epoch_wire(EpochEnvelope(0, encode_message(request))))
    wires = [(peer, decode_epoch_wire(data)) for peer, data in p2p.sent]
    responses = [w for _, w in wires if isinstance(w, EpochEnvelope)]
    assert len(responses) == 3 and all(w.epoch == 0 for w in responses)
    response = decode_message(responses[0].message)
    assert isinstance(response, BlockResponse)
    assert [b.height for b in response.blocks] == [LAST_OF_EPOCH_0, LAST_OF_EPOCH_0 - 1]
    assert [(peer, w) for peer, w in wires if isinstance(w, EpochEndProof)] == [(2, end)]
    assert all(peer == 2 for peer, _ in wires)
    driver.store.close()
