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
