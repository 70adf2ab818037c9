"""Outsiders cannot hold connection slots; the node serves only its own protocols.

Real libp2p sockets on 127.0.0.1 in one trio process, plus the admission
policy on its own (hypothesis). Every wait is bounded; no test asserts a time.
"""

from __future__ import annotations

import gc
import logging
import random
from collections.abc import Callable, Iterator

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.custom_types import TProtocol
from libp2p.host.ping import ID as PING_PROTOCOL_ID
from libp2p.identity.identify.identify import ID as IDENTIFY_PROTOCOL_ID
from libp2p.identity.identify_push.identify_push import ID_PUSH as IDENTIFY_PUSH_PROTOCOL_ID
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.stream_muxer.yamux.yamux import Yamux
from multiaddr import Multiaddr

from sequencer_net.p2p import (
    FOLLOW_PROTOCOL,
    REQUEST_PROTOCOL,
    VALIDATOR_PROTOCOL,
    Channel,
    DropReason,
    P2PLimits,
    PeerSpec,
    RefusalReason,
)
from sequencer_net.p2p.admission import Admitted, InboundAdmission, PendingHandshakes
from sequencer_net.p2p.framing import encode_frame
from sequencer_net.p2p.host import build_validator_host, key_pair_from_secret
from tests.p2p.harness import (
    LOOPBACK,
    count_tasks,
    dial_as_outsider,
    free_port,
    network_for,
    peer_ids,
    peer_specs,
    running,
    started,
    validator_keys,
    wait_until,
)

# More than py-libp2p's default resource manager lets in (256 established
# inbound), so before the gate existed these held every slot.
OUTSIDERS = 300
OUTSIDER_CONCURRENCY = 32
STORM_SEED = 13


def addr(port: int) -> Multiaddr:
    return Multiaddr(f"/ip4/{LOOPBACK}/tcp/{port}")


async def settles(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Like wait_until, polling every 0.25 s for conditions that are costly to check."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.25)


def live_connection_objects() -> int:
    """libp2p connection objects still reachable in this process (memory held)."""
    gc.collect()
    return sum(isinstance(o, RawConnection | Yamux | SwarmConn) for o in gc.get_objects())


@pytest.fixture
def quiet_libp2p() -> Iterator[None]:
    """libp2p at CRITICAL, as the node runs it: pytest's log capture would
    otherwise keep every libp2p log record, and with them the connections their
    args name, alive until the test ends."""
    libp2p_log = logging.getLogger("libp2p")
    level = libp2p_log.level
    libp2p_log.setLevel(logging.CRITICAL)
    yield
    libp2p_log.setLevel(level)


@pytest.mark.usefixtures("quiet_libp2p")
async def test_outsiders_cannot_hold_connection_slots_while_a_validator_dials_in() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    # The node's address for validator 1 is a dead port, so the link can only
    # come up by validator 1 dialing in: exactly the dial outsiders used to block.
    node_specs = [specs[0], PeerSpec(1, keys[1].public_key, LOOPBACK, free_port())]
    limits = P2PLimits(reconnect_min_s=0.05, reconnect_max_s=0.5)
    node = network_for(keys, node_specs, 0, limits)
    validator = network_for(keys, specs, 1, limits)
    target = ID.from_base58(node.peer_id)
    rng = random.Random(STORM_SEED)
    release = trio.Event()
    validator_done = trio.Event()
    attempts = 0
    held = 0  # outsider connections that got a working yamux session

    async def outsider(limiter: trio.CapacityLimiter) -> None:
        nonlocal held
        async with limiter:
            if await dial_as_outsider(specs[0].port, target, rng.randbytes(32), release):
                held += 1

    async def storm() -> None:
        # Outsiders dial in a loop, OUTSIDER_CONCURRENCY at a time, until at
        # least OUTSIDERS have tried and the validator has exchanged frames.
        nonlocal attempts
        limiter = trio.CapacityLimiter(OUTSIDER_CONCURRENCY)
        async with trio.open_nursery() as outsiders:
            while attempts < OUTSIDERS or not validator_done.is_set():
                await limiter.acquire()  # pace: start one when one finished
                limiter.release()
                outsiders.start_soon(outsider, limiter)
                attempts += 1
                await trio.sleep(0)
                if attempts >= 4 * OUTSIDERS:
                    break

    async with running(node):
        baseline_tasks = count_tasks()
        baseline_objects = live_connection_objects()
        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(storm)
                await wait_until(lambda: attempts >= OUTSIDERS // 2, timeout=60)
                async with started(validator):
                    await wait_until(
                        lambda: (
                            validator.connected_peers() == [0] and node.connected_peers() == [1]
                        ),
                        timeout=30,
                    )
                    validator.send(0, Channel.CONSENSUS, b"from-1")
                    node.send(1, Channel.CONSENSUS, b"from-0")
                    assert await node.inbound.receive() == (1, Channel.CONSENSUS, b"from-1")
                    assert await validator.inbound.receive() == (0, Channel.CONSENSUS, b"from-0")
                    validator_done.set()
                    in_storm_at = attempts
                    await wait_until(lambda: attempts >= OUTSIDERS, timeout=60)
                    # ... and the link stayed up while the rest of the storm ran.
                    assert validator.connected_peers() == [0]
                    assert node.stats.disconnects == validator.stats.disconnects == 0
                release.set()
            refused = node.stats.connections_refused
            await wait_until(lambda: sum(refused.values()) >= attempts, timeout=30)
            await wait_until(lambda: not node._swarm.connections, timeout=30)  # type: ignore[union-attr]

        assert in_storm_at < attempts  # the validator got in while outsiders kept dialing
        assert held == 0
        assert refused[RefusalReason.NOT_A_VALIDATOR] > OUTSIDERS // 2
        assert sum(refused.values()) == attempts  # each outside connection refused once
        assert node.stats.inbound_connections >= 1  # the validator's
        # Nothing of the storm stays behind: tasks and connection objects are
        # back to what the idle node had (before the gate, each accepted
        # connection's handler task lived until the swarm stopped).
        # The validator's closed connection may still be closing (poll briefly),
        # and the node's link task keeps its last stream referenced: a few objects
        # per validator link, against hundreds held by a storm that got in.
        await settles(lambda: count_tasks() <= baseline_tasks + 5)
        await settles(lambda: live_connection_objects() <= baseline_objects + 10)


async def test_the_node_serves_no_identify_or_ping_only_its_own_protocols() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    node = network_for(keys, specs, 0)
    # Validator 1 as a raw host, so it can ask for protocols P2PNetwork never would.
    raw_host, _ = build_validator_host(
        key_pair_from_secret(keys[1].secret), P2PLimits(), validators=peer_ids(keys)
    )
    node_id = ID.from_base58(node.peer_id)
    async with running(node), raw_host.run(listen_addrs=[addr(specs[1].port)]):
        with trio.fail_after(20):
            await raw_host.connect(PeerInfo(node_id, [addr(specs[0].port)]))
            for protocol in (
                IDENTIFY_PROTOCOL_ID,
                IDENTIFY_PUSH_PROTOCOL_ID,
                PING_PROTOCOL_ID,
            ):
                with pytest.raises(Exception) as refused:
                    await raw_host.new_stream(node_id, [TProtocol(protocol)])
                assert not isinstance(refused.value, trio.TooSlowError)
            stream = await raw_host.new_stream(node_id, [TProtocol(VALIDATOR_PROTOCOL)])
            await stream.write(encode_frame(Channel.CONSENSUS, b"still-works"))
            assert await node.inbound.receive() == (1, Channel.CONSENSUS, b"still-works")
        assert node._host is not None
        served = set(node._host.get_mux().get_protocols())
        assert served == {
            TProtocol(VALIDATOR_PROTOCOL),
            TProtocol(REQUEST_PROTOCOL),
            TProtocol(FOLLOW_PROTOCOL),
        }
        await raw_host.close()


async def test_a_validator_reconnecting_leaves_no_tasks_or_connections_behind() -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    node = network_for(keys, [specs[0], PeerSpec(1, keys[1].public_key, LOOPBACK, free_port())], 0)
    node_id = ID.from_base58(node.peer_id)
    async with running(node):
        baseline = count_tasks()
        for _ in range(20):
            host, _swarm = build_validator_host(
                key_pair_from_secret(keys[1].secret), P2PLimits(), validators=peer_ids(keys)
            )
            async with host.run(listen_addrs=[addr(free_port())]):
                with trio.fail_after(20):
                    await host.connect(PeerInfo(node_id, [addr(specs[0].port)]))
                await host.close()
        await wait_until(lambda: not node._swarm.connections, timeout=30)  # type: ignore[union-attr]
        await wait_until(lambda: count_tasks() <= baseline + 5, timeout=10)
        assert node.stats.inbound_connections == 20


# ------------------------------------------------------------- policy alone

PEERS = [f"v{i}" for i in range(4)] + [f"x{i}" for i in range(6)]


@settings(max_examples=300, deadline=None)
@given(
    slots=st.integers(min_value=0, max_value=3),
    ops=st.lists(st.tuples(st.booleans(), st.sampled_from([*PEERS, "me"])), max_size=60),
)
def test_admission_never_exceeds_its_slots_and_always_admits_validators(
    slots: int, ops: list[tuple[bool, str]]
) -> None:
    validators = {p for p in PEERS if p.startswith("v")}
    admission = InboundAdmission(me="me", validators=[*validators, "me"], non_validator_slots=slots)
    tickets: list[Admitted[str]] = []
    for connect, peer in ops:
        if not connect:
            mine = [t for t in tickets if t.peer == peer]
            if mine:
                tickets.remove(mine[0])
                admission.release(mine[0])
            continue
        verdict = admission.admit(peer)
        if peer == "me":
            assert verdict is RefusalReason.SELF
        elif peer in validators:
            assert verdict == Admitted(peer, validator=True)  # whatever outsiders hold
        elif slots == 0:
            assert verdict is RefusalReason.NOT_A_VALIDATOR
        if isinstance(verdict, Admitted):
            tickets.append(verdict)
        others = [t.peer for t in tickets if not t.validator]
        assert len(others) <= slots
        assert len(others) == len(set(others))  # one connection per non-validator
        assert admission.non_validators_admitted == len(others)


def test_admission_frees_a_slot_when_a_non_validator_leaves() -> None:
    admission = InboundAdmission(me="me", validators=["v"], non_validator_slots=1)
    first = admission.admit("x1")
    assert isinstance(first, Admitted)
    assert admission.admit("x2") is RefusalReason.NON_VALIDATOR_SLOTS_FULL
    assert admission.admit("x1") is RefusalReason.DUPLICATE_NON_VALIDATOR
    admission.release(first)
    assert isinstance(admission.admit("x2"), Admitted)


async def test_pending_handshakes_evict_the_oldest_when_full() -> None:
    pending = PendingHandshakes(2)
    outcomes: dict[int, bool] = {}
    entered = [trio.Event() for _ in range(3)]

    async def handshake(i: int) -> None:
        with pending.slot() as slot:
            with slot:
                entered[i].set()
                await trio.sleep_forever()
            outcomes[i] = slot.cancelled_caught

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(handshake, i)
            await entered[i].wait()
        await wait_until(lambda: 0 in outcomes, timeout=5)
        assert outcomes == {0: True}  # the oldest made room; 1 and 2 still running
        assert len(pending) == 2 and pending.evicted == 1
        nursery.cancel_scope.cancel()


async def test_non_validator_slots_are_bounded_and_give_no_validator_protocol(
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = validator_keys(2)
    specs = peer_specs(keys)
    limits = P2PLimits(max_non_validator_connections=1)
    node = network_for(keys, specs, 0, limits)
    node_id = ID.from_base58(node.peer_id)
    rng = random.Random(STORM_SEED)
    first, _ = build_validator_host(
        key_pair_from_secret(rng.randbytes(32)), limits, validators=[node_id]
    )
    second, _ = build_validator_host(
        key_pair_from_secret(rng.randbytes(32)), limits, validators=[node_id]
    )
    node_at = PeerInfo(node_id, [addr(specs[0].port)])
    refused = node.stats.connections_refused
    caplog.set_level(logging.INFO, logger="seqnet.p2p")
    async with (
        running(node),
        first.run(listen_addrs=[addr(free_port())]),
        second.run(listen_addrs=[addr(free_port())]),
    ):
        with trio.fail_after(30):
            await first.connect(node_at)  # takes the one slot
            await wait_until(lambda: node.stats.inbound_connections == 1)
            with pytest.raises(Exception):  # noqa: B017 - libp2p's error types vary
                await second.connect(node_at)
                await second.new_stream(node_id, [TProtocol(VALIDATOR_PROTOCOL)])
            await wait_until(lambda: refused[RefusalReason.NON_VALIDATOR_SLOTS_FULL] == 1)
            for _ in range(30):  # a slot carries no validator protocol
                with pytest.raises(Exception):  # noqa: B017
                    stream = await first.new_stream(node_id, [TProtocol(VALIDATOR_PROTOCOL)])
                    await stream.write(encode_frame(Channel.CONSENSUS, b"forged"))
                    await stream.read(1)
            await wait_until(lambda: node.stats.dropped[DropReason.UNAUTHENTICATED] == 30)
            await first.close()  # frees the slot
            await wait_until(lambda: not node._swarm.connections)  # type: ignore[union-attr]
            second.get_network().unblock_peer(node_id)  # its client-side 60 s cache
            await second.connect(node_at)
            await wait_until(lambda: node.stats.inbound_connections == 2)
        await second.close()
    assert node.stats.frames_received == 0
    rejected = [r for r in caplog.records if r.getMessage().startswith("rejected_stream")]
    assert len(rejected) == 1
