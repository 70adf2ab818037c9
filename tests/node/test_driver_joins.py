"""The consensus driver on a chain whose epochs change members, without sockets:
peers are numbered over every member of any epoch, an epoch's messages go to
its members only, a non-member's messages for an epoch are refused, and a
node outside an epoch's set follows it and then starts the next epoch's core
on the followed epoch's last block."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from consensus.core import ConsensusConfig
from consensus.crypto import PrivateKey, keccak256
from consensus.epochs import Anchor
from consensus.io import Event, MessageReceived
from consensus.messages import (
    EpochEnvelope,
    Vote,
    VoteKind,
    encode_epoch_wire,
    encode_message,
)
from consensus.types import Digest, Height, ValidatorIndex, View
from sequencer_net.home.genesis import Genesis, LocalEpoch, make_local_genesis
from sequencer_net.node.driver import ConsensusDriver
from sequencer_net.node.epochs import EpochMembers, EpochPlan, weights_in_peer_order
from tests.node.test_driver_epochs import RecordingP2P, epoch_driver
from tests.node.test_driver_epochs import _plan as epochs_plan

SECRETS = [keccak256(b"seqnet-epoch-joins-%d" % i) for i in range(5)]
KEYS = [PrivateKey(s) for s in SECRETS]
LAST_OF_EPOCH_0 = 9


def _genesis() -> Genesis:
    """Epoch 0: secrets 1..4 (peers 0..3); epoch 1: secrets 0, 1, 2, 3 (secret 0
    joins as peer 4, secret 4 (peer 3) leaves)."""
    return make_local_genesis(
        SECRETS,
        chain_id=4343,
        base_p2p_port=40_000,
        base_api_port=41_000,
        genesis_time_ms=0,
        initial=(1, 2, 3, 4),
        epochs=(LocalEpoch(LAST_OF_EPOCH_0 + 1, (0, 1, 2, 3)),),
    )


def _peer(genesis: Genesis, secret: int) -> int:
    return [v.address for v in genesis.members()].index(KEYS[secret].address)


def _plan(genesis: Genesis, me: int) -> EpochPlan:
    return epochs_plan(genesis, _peer(genesis, me))


def _driver(
    tmp_path: Path, genesis: Genesis, me: int, follow: object = None
) -> tuple[ConsensusDriver, RecordingP2P]:
    plan = _plan(genesis, me)
    p2p = RecordingP2P((0, 1, 2, 3, 4))
    driver = epoch_driver(
        tmp_path,
        genesis,
        plan,
        KEYS[me],
        first=0 if plan.is_member(0) else 1,
        config=ConsensusConfig(view_timeout_ms=60_000, retry_ms=60_000),
        p2p=p2p,
        follow=follow,
    )
    return driver, p2p


def _vote(genesis: Genesis, signer: int, epoch: int, view: int) -> bytes:
    """An enveloped nullify vote of secret `signer` in `epoch` (index 0 if it is
    not a member: what a non-member would claim)."""
    plan = _plan(genesis, signer)
    index = plan.schedule.epoch(epoch).validators.index_of(KEYS[signer].address)
    digest = plan.verifier(epoch).vote_digest(VoteKind.NULLIFY, view, 0, bytes(32))
    vote = Vote(
        VoteKind.NULLIFY,
        view,
        0,
        bytes(32),
        ValidatorIndex(index or 0),
        KEYS[signer].sign_digest(digest),
    )
    return encode_epoch_wire(EpochEnvelope(epoch, encode_message(vote)))


def _queued(driver: ConsensusDriver) -> list[tuple[int, Event | object]]:
    out: list[tuple[int, Event | object]] = []
    while True:
        try:
            epoch, event, _ = driver._events_out.receive_nowait()
        except trio.WouldBlock:
            return out
        out.append((epoch, event))


def test_peers_are_every_member_of_any_epoch_and_outsiders_hold_no_power() -> None:
    genesis = _genesis()
    members = EpochMembers(genesis)
    assert [_peer(genesis, s) for s in range(5)] == [4, 0, 1, 2, 3]
    assert members.peer_count() == 5
    assert members.peers(0) == [0, 1, 2, 3]
    assert members.peers(1) == [4, 0, 1, 2]
    assert members.index_of(0, 4) is None and members.index_of(1, 3) is None
    power = weights_in_peer_order(genesis, 1)
    assert len(power) == 5
    assert [power.contains(p) for p in range(5)] == [True, True, True, False, True]
    assert power.total_weight == 4 and power.quorum_weight == 3
    assert power.weight_of([ValidatorIndex(3)]) == 0
    assert power.index_of(KEYS[4].address) is None
    assert {power.leader(View(v)) for v in range(8)} == {0, 1, 2, 4}
    # In epoch 0 the later newcomer (peer 4) holds nothing yet.
    plain = weights_in_peer_order(genesis, 0)
    assert [plain.contains(p) for p in range(5)] == [True] * 4 + [False]


async def test_a_non_members_consensus_messages_are_refused_and_an_epochs_go_to_its_members(
    tmp_path: Path,
) -> None:
    genesis = _genesis()
    driver, p2p = _driver(tmp_path, genesis, me=1)  # peer 0: in both epochs
    # Secret 0 (peer 4) is not in epoch 0: its vote there never reaches the core.
    driver.on_peer_message(4, _vote(genesis, 0, 0, 1))
    assert _queued(driver) == [] and p2p.sent == []
    # Secret 4 (peer 3) is in epoch 0: the same kind of vote does.
    driver.on_peer_message(3, _vote(genesis, 4, 0, 1))
    ((epoch, event),) = _queued(driver)
    assert epoch == 0 and isinstance(event, MessageReceived) and event.sender == 3
    # Peer 3 claiming an epoch-1 vote: it is not in epoch 1, nothing is kept.
    driver.on_peer_message(3, _vote(genesis, 4, 1, 1))
    assert driver._buffer == []
    # Peer 4's epoch-1 message is kept for epoch 1 (it is a member there).
    driver.on_peer_message(4, _vote(genesis, 0, 1, 1))
    assert [peer for peer, _ in driver._buffer] == [4]
    # An epoch's messages go to its members only; the end proof also to the next's.
    p2p.sent.clear()
    driver._send_to_members(0, b"epoch-0")
    driver._send_to_members(0, b"proof-0", also_next=True)
    driver._send_to_members(1, b"epoch-1")
    assert [(peer, data) for peer, data in p2p.sent] == [
        (1, b"epoch-0"),
        (2, b"epoch-0"),
        (3, b"epoch-0"),
        (1, b"proof-0"),
        (2, b"proof-0"),
        (3, b"proof-0"),
        (4, b"proof-0"),
        (1, b"epoch-1"),
        (2, b"epoch-1"),
        (4, b"epoch-1"),
    ]
    driver.store.close()


async def test_a_node_outside_epoch_0_follows_it_then_runs_epoch_1_on_its_last_block(
    tmp_path: Path,
) -> None:
    genesis = _genesis()
    last_block = Anchor(Digest(keccak256(b"last block of epoch 0")), Height(LAST_OF_EPOCH_0))
    followed: list[tuple[int, Anchor]] = []
    release = trio.Event()

    async def follow(epoch: int, anchor: Anchor) -> Anchor:
        followed.append((epoch, anchor))
        await release.wait()
        return last_block

    driver, p2p = _driver(tmp_path, genesis, me=0, follow=follow)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        await trio.testing.wait_all_tasks_blocked()
        assert driver.following and driver.epoch == 0
        assert followed == [(0, driver.plan.genesis)]  # type: ignore[union-attr]
        # Members' epoch-0 messages have no core here: none is queued or answered
        # (a vote is no fetch), and this node sends nothing in epoch 0.
        driver.on_peer_message(0, _vote(genesis, 1, 0, 1))
        assert _queued(driver) == []
        assert p2p.sent == []
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert not driver.following and driver.epoch == 1
        assert driver.core.epoch == 1 and driver.core.anchor == last_block
        assert driver.core.started
        # Its epoch-1 votes go to epoch 1's members only (peers 0, 1, 2).
        assert {peer for peer, _ in p2p.sent} <= {0, 1, 2}
        nursery.cancel_scope.cancel()
    driver.store.close()
