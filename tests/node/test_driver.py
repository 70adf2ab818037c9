"""The consensus driver on trio's mock clock, with a real core and a real store:
a vote is on disk before it is sent, timers fire at the core's delays, and the
wait of each peer message for the core is measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from trio.testing import MockClock

from consensus.io import Commit, CommittedTip, Start
from consensus.messages import (
    Block,
    Certificate,
    Proposal,
    Vote,
    VoteKind,
    decode_message,
    encode_message,
)
from consensus.types import Height, View
from sequencer_net.metrics import Metrics
from sequencer_net.node.driver import ConsensusDriver
from sequencer_net.p2p.network import Channel
from sequencer_net.storage.node_store import NodeStore
from tests.consensus.conftest import Net
from tests.consensus.conftest import net as consensus_net


class FakeP2P:
    def __init__(self, store: NodeStore) -> None:
        self.store = store
        self.sent: list[tuple[float, Any, bool]] = []  # (time, message, persisted first)

    def broadcast(self, channel: Channel, data: bytes) -> None:
        message = decode_message(data)
        record = self.store.load_safety()
        persisted = record is not None and record.view >= getattr(message, "view", 0)
        self.sent.append((trio.current_time(), message, persisted))

    def send(self, peer: int, channel: Channel, data: bytes) -> None:
        self.broadcast(channel, data)

    def connected_peers(self) -> list[int]:
        return []


class FakePayloads:
    async def build(self, parent: bytes, height: int) -> bytes:
        return b"ok-built"

    async def verify(self, block: Block) -> bool:
        await trio.sleep(0.01)  # a voter fetching a batch, say
        return True


net = consensus_net  # the four-validator network fixture of the core's tests


async def test_a_vote_is_persisted_before_it_is_sent_and_timers_follow_the_core(
    tmp_path: Path, net: Net, mock_clock: MockClock
) -> None:
    # Jump virtual time only after 50 ms of real idleness: the store's fsync runs
    # in a worker thread, and time must not race ahead while it does.
    mock_clock.autojump_threshold = 0.05
    store = NodeStore(tmp_path / "db", genesis_digest=net.genesis.digest(), sync=False)
    core = net.core(2, stored_block=store.block_by_digest)
    p2p = FakeP2P(store)
    metrics = Metrics()
    commits_in, _commits_out = trio.open_memory_channel[Commit](10)
    driver = ConsensusDriver(
        core=core,
        store=store,
        p2p=p2p,  # type: ignore[arg-type]
        payloads=FakePayloads(),  # type: ignore[arg-type]
        commits=commits_in,
        metrics=metrics,
    )
    proposal: Proposal = net.proposal(view=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        driver.on_peer_message(1, encode_message(proposal))
        await trio.sleep(0.1)
        votes = [m for _, m, _ in p2p.sent if isinstance(m, Vote)]
        assert [(v.kind, v.view) for v in votes] == [(VoteKind.NOTARIZE, 1)]
        assert all(persisted for _, m, persisted in p2p.sent if isinstance(m, Vote))
        record = store.load_safety()
        assert record is not None and record.notarized == proposal.block.digest()
        assert store.get_voted_block(proposal.block.digest()) == proposal.block
        # No notarization comes: the view times out at the core's deadline (1000 ms
        # in this network), with a retry tick at 500 ms in between.
        started = trio.current_time() - 0.1
        await trio.sleep(1.0)
        nullify = [
            (t, m) for t, m, _ in p2p.sent if isinstance(m, Vote) and m.kind == VoteKind.NULLIFY
        ]
        assert nullify and abs(nullify[0][0] - started - 1.0) < 0.05
        assert core.view == View(1)
        nursery.cancel_scope.cancel()
    samples = metrics.consensus_event_delay.collect()[0].samples
    count = next(s.value for s in samples if s.name.endswith("_count"))
    assert count == 1  # the proposal's wait for the core was measured
    store.close()


async def test_a_late_finalization_of_a_committed_height_is_verified_and_kept(
    tmp_path: Path, net: Net
) -> None:
    """A block committed under a descendant's finalization gets its own when a
    peer forwards it (for subscribers); a forged one is not kept; one above the
    committed height still goes to the core."""
    store = NodeStore(tmp_path / "db", genesis_digest=net.genesis.digest(), sync=False)
    core = net.core(2)
    core.handle(Start(None, CommittedTip(Height(3), b"\x03" * 32, View(3))))
    metrics = Metrics()
    commits_in, _commits_out = trio.open_memory_channel[Commit](10)
    driver = ConsensusDriver(
        core=core,
        store=store,
        p2p=FakeP2P(store),  # type: ignore[arg-type]
        payloads=FakePayloads(),  # type: ignore[arg-type]
        commits=commits_in,
        metrics=metrics,
    )
    late = net.certificate([0, 1, 3], VoteKind.FINALIZE, 2, 2, b"\x02" * 32)
    forged = Certificate(VoteKind.FINALIZE, 1, 1, b"\x01" * 32, [0, 1, 3], late.signatures)
    ahead = net.certificate([0, 1, 3], VoteKind.FINALIZE, 5, 5, b"\x05" * 32)
    for cert in (forged, late, late, ahead):
        driver.on_peer_message(1, encode_message(cert))
    assert store.own_finalization(2, b"\x02" * 32) == late
    assert store.own_finalization(1, b"\x01" * 32) is None
    assert store.own_finalization(5, b"\x05" * 32) is None
    samples = metrics.late_finalizations.collect()[0].samples
    assert next(s.value for s in samples if s.name.endswith("_total")) == 1
    assert driver._events_out.statistics().current_buffer_used == 1  # only `ahead`
    store.close()


class RecordingPayloads(FakePayloads):
    """Records, for each build, when it ran and whether the core held its parent."""

    def __init__(self, core: Any, lag_wait_ms: int) -> None:
        self.core = core
        self.lag_wait_ms = lag_wait_ms
        self.builds: list[tuple[float, int, bool]] = []

    async def build(self, parent: bytes, height: int) -> bytes:
        held = self.core.known_block(parent) is not None
        self.builds.append((trio.current_time(), height, held))
        return b"ok-built"


async def _lead_on_a_certified_parent(
    tmp_path: Path, net: Net, proposal_after_s: float | None
) -> tuple[RecordingPayloads, float, Proposal]:
    """The leader of view 2 learns view 1's notarization before (or without)
    view 1's proposal; returns its builds, when the certificate went in, and
    the proposal."""
    me = int(net.validators.leader(View(2)))
    store = NodeStore(tmp_path / "db", genesis_digest=net.genesis.digest(), sync=False)
    core = net.core(me, stored_block=store.block_by_digest)
    payloads = RecordingPayloads(core, lag_wait_ms=500)
    commits_in, _commits_out = trio.open_memory_channel[Commit](10)
    driver = ConsensusDriver(
        core=core,
        store=store,
        p2p=FakeP2P(store),  # type: ignore[arg-type]
        payloads=payloads,  # type: ignore[arg-type]
        commits=commits_in,
        metrics=Metrics(),
    )
    proposal = net.proposal(view=1)
    digest = proposal.block.digest()
    others = [i for i in range(4) if i != me][:3]
    notarization = net.certificate(others, VoteKind.NOTARIZE, 1, 1, digest)
    async with trio.open_nursery() as nursery:
        await nursery.start(driver.run)
        sender = others[0]
        driver.on_peer_message(sender, encode_message(notarization))
        certified_at = trio.current_time()
        if proposal_after_s is not None:
            await trio.sleep(proposal_after_s)
            driver.on_peer_message(int(proposal.block.proposer), encode_message(proposal))
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    store.close()
    return payloads, certified_at, proposal


async def test_a_leader_waits_for_a_parent_it_knows_only_by_its_certificate(
    tmp_path: Path, net: Net, autojump_clock: MockClock
) -> None:
    """The core may propose on a parent it holds only as a notarization; the
    payload needs the parent's vouched state, so the build waits for the
    block (here its proposal, 0.2 s later) and then runs at once."""
    payloads, certified_at, _ = await _lead_on_a_certified_parent(tmp_path, net, 0.2)
    builds = [(t, held) for t, height, held in payloads.builds if height == 2]
    assert len(builds) == 1
    built_at, held = builds[0]
    assert held
    assert 0.2 <= built_at - certified_at < 0.25


async def test_a_leader_builds_without_a_parent_that_never_comes(
    tmp_path: Path, net: Net, autojump_clock: MockClock
) -> None:
    """Without the parent the wait ends after half a view timeout (the payload
    service's lag_wait_ms) and the proposal goes out on what the node has."""
    payloads, certified_at, _ = await _lead_on_a_certified_parent(tmp_path, net, None)
    builds = [(t, held) for t, height, held in payloads.builds if height == 2]
    assert len(builds) == 1
    built_at, held = builds[0]
    assert not held
    assert 0.5 <= built_at - certified_at < 0.55
