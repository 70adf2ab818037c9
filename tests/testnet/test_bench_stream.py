"""The benchmark's submissions over the nodes' WebSocket streams, against fake
nodes (in-process servers on 127.0.0.1) and wsproto: answers matched to their
messages in order, refusals, a node that closes its stream or cannot be
reached, the in-flight bound, the client's frames; and committed blocks
matched to the plan by signature."""

from __future__ import annotations

import os
import socket

import msgspec
import pytest
import trio
import trio.testing
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage

from sequencer_net.client import DEFAULT_FEES
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.testnet.bench import drive
from sequencer_net.testnet.bench.drive import ACCEPTED, REFUSED, StepDriver, StepRecord
from sequencer_net.testnet.bench.limits import MAX_IN_FLIGHT_PER_NODE
from sequencer_net.testnet.bench.run import choose_wire
from sequencer_net.testnet.bench.traffic import RollupLoad, StepPlan, WireFormat, build_plan
from sequencer_net.testnet.bench.ws_receiver import masked
from sequencer_net.testnet.bench.ws_sender import LightSender, stream_outcomes, stream_served
from tests.testnet.fake_node import FakeChain, FakeNode
from tests.testnet.test_bench_drive import one_node


def stream_plan(chain: FakeChain, rate: float, duration_s: float, nodes: int) -> StepPlan:
    return build_plan(
        rate,
        duration_s,
        source=RollupLoad(seed=0, accounts=64),
        nodes=nodes,
        domain=chain.domain(),
        fees=DEFAULT_FEES,
        wire=WireFormat.STREAM,
        seed=1,
    )


def run_stream_step(
    urls: list[str], chain: FakeChain, rate: float, duration_s: float
) -> tuple[StepRecord, StepDriver]:
    plan = stream_plan(chain, rate, duration_s, len(urls))
    driver = StepDriver(plan, urls, [os.getpid()], drain_max_s=3.0)
    return trio.run(driver.run), driver


def indices(plan: StepPlan, hashes: set[bytes]) -> set[int]:
    return {i for i, h in enumerate(plan.hashes) if bytes.fromhex(h[2:]) in hashes}


def with_outcome(record: StepRecord, outcome: int) -> set[int]:
    return {i for i, o in enumerate(record.outcome) if o == outcome}


@pytest.mark.parametrize("lanes", [1, 2])
def test_each_answer_settles_its_own_message_in_order(
    lanes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every 7th transaction the nodes receive is refused, and answers lag
    # their messages so several are out at once: an answer matched to any
    # other message than its own puts the refusals on other transactions.
    monkeypatch.setattr(drive, "STREAMS_PER_NODE", lanes)
    chain = FakeChain(
        name="node0",
        index=0,
        block_interval_s=0.1,
        stream_answer_delay_s=0.12,
        stream_refuse_every=7,
    )
    nodes = [FakeNode(chain).serve_in_thread() for _ in range(2)]
    try:
        record, driver = run_stream_step([n.url for n in nodes], chain, rate=400.0, duration_s=1.5)
    finally:
        for node in nodes:
            node.close()
    plan = record.plan
    refused = indices(plan, chain.stream_refused)
    assert len(refused) == plan.total // 7 > 0
    assert with_outcome(record, REFUSED) == refused
    assert record.refused_codes == {"test_refusal": len(refused)}
    assert with_outcome(record, ACCEPTED) == indices(plan, chain.stream_accepted)
    assert record.accepted == record.committed == plan.total - len(refused)
    assert chain.stream_max_in_flight >= 2  # pipelined
    assert chain.requests == 0  # no POST
    assert chain.stream_connections == 2 * lanes
    assert [s.connections for s in driver.streams] == [lanes, lanes]
    assert min(record.sent_at) >= record.started_at


@pytest.mark.parametrize("lanes", [1, 2])
def test_a_slow_node_holds_its_streams_at_the_in_flight_bound(
    lanes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each answer takes 0.4 s: four messages out at a time carry 10 a second,
    # half of what the 50 ms ticks offer, so the sender waits for free slots
    # (over one connection or two).
    monkeypatch.setattr(drive, "STREAMS_PER_NODE", lanes)
    chain = FakeChain(name="node0", index=0, block_interval_s=0.05, stream_answer_delay_s=0.4)
    with one_node(chain) as cluster:
        record, _ = run_stream_step(cluster.urls, chain, rate=100.0, duration_s=1.5)
    assert chain.stream_max_in_flight == MAX_IN_FLIGHT_PER_NODE
    assert record.waited_for_nodes_s > 0
    assert record.accepted == record.committed == record.plan.total


def test_a_node_closing_its_stream_refuses_what_waited_and_the_step_goes_on() -> None:
    # The node answers 5 messages per connection, then closes (1011) on the
    # next: that message and any sent behind it are refused with the close's
    # code and reason, and the next request opens a new connection.
    chain = FakeChain(name="node0", index=0, block_interval_s=0.05, stream_close_after=5)
    with one_node(chain) as cluster:
        record, driver = run_stream_step(cluster.urls, chain, rate=200.0, duration_s=1.5)
    plan = record.plan
    accepted, refused = with_outcome(record, ACCEPTED), with_outcome(record, REFUSED)
    assert accepted | refused == set(range(plan.total))
    assert accepted == indices(plan, chain.stream_accepted)
    unanswered = indices(plan, chain.stream_unanswered)
    assert unanswered and unanswered <= refused
    assert set(record.refused_codes) == {"stream closed: 1011 test close"}
    assert driver.streams[0].connections == chain.stream_connections >= 3
    assert record.committed == record.accepted > 0 and record.drained


def test_a_node_that_does_not_answer_has_its_batches_refused_after_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The node takes the transactions but answers none within the timeout:
    # each connection is given up with everything waiting on it, and the next
    # request opens another.
    monkeypatch.setattr(drive, "REQUEST_TIMEOUT_S", 0.3)
    chain = FakeChain(name="node0", index=0, block_interval_s=0.05, stream_answer_delay_s=3.0)
    with one_node(chain) as cluster:
        record, driver = run_stream_step(cluster.urls, chain, rate=100.0, duration_s=1.0)
    assert record.accepted == 0
    assert record.refused_codes == {"stream timeout: no answer in 0.3 s": record.plan.total}
    assert driver.streams[0].connections == chain.stream_connections >= 2


def test_a_node_that_cannot_be_reached_has_its_transactions_refused() -> None:
    chain = FakeChain(name="node0", index=0, block_interval_s=0.05)
    with socket.socket() as free:  # a port nothing listens on once closed
        free.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{free.getsockname()[1]}"
    with one_node(chain) as cluster:
        record, _ = run_stream_step([cluster.urls[0], dead], chain, rate=200.0, duration_s=1.0)
    plan = record.plan
    to_dead = {
        i
        for requests in plan.ticks
        for request in requests
        if request.node == 1
        for i in range(request.first, request.first + request.count)
    }
    assert to_dead and with_outcome(record, REFUSED) == to_dead
    assert all(code.startswith("unreachable: ") for code in record.refused_codes)
    assert record.accepted == record.committed == plan.total - len(to_dead)


def test_blocks_listing_encoded_transactions_are_matched_by_signature() -> None:
    chain = FakeChain(name="node0", index=0, block_interval_s=0.05, encoded_blocks=True)
    with one_node(chain) as cluster:
        record, driver = run_stream_step(cluster.urls, chain, rate=200.0, duration_s=1.0)
    assert driver._by_signature is not None
    assert record.accepted == record.committed == record.plan.total == 200


def test_a_block_item_is_matched_by_signature_by_hash_or_by_hashing() -> None:
    chain = FakeChain(name="node0", index=0)
    plan = stream_plan(chain, 100.0, 1.0, 1)
    encoded = [tx for requests in plan.ticks for r in requests for tx in decode(r.body)]
    driver = StepDriver(plan, ["http://127.0.0.1:1"], [os.getpid()])
    driver._note_block({"transactions": ["0x" + encoded[3].hex(), plan.hashes[5].upper()]}, 1.0)
    driver._by_signature = None  # what a plan with a repeated signature falls back to
    driver._note_block({"transactions": ["0x" + encoded[7].hex(), "0x" + bytes(200).hex()]}, 2.0)
    seen = {i: at for i, at in enumerate(driver.record.committed_at) if at >= 0}
    assert seen == {3: 1.0, 5: 1.0, 7: 2.0}
    assert "0x" + tx_hash(encoded[7]).hex() == plan.hashes[7]


@pytest.mark.parametrize("answer_first", [True, False])
def test_a_refused_transaction_seen_committed_does_not_count_as_drained(
    answer_first: bool,
) -> None:
    chain = FakeChain(name="node0", index=0)
    plan = stream_plan(chain, 100.0, 1.0, 1)
    request = plan.ticks[0][0]
    encoded = decode(request.body)
    driver = StepDriver(plan, ["http://127.0.0.1:1"], [os.getpid()])
    record = driver.record
    codes = [None] * request.count
    codes[0] = "stream broken: OSError"  # its answer was lost; the node had stored it
    block = {"transactions": ["0x" + tx.hex() for tx in encoded]}
    if answer_first:
        driver._settle(request, codes)
        driver._note_block(block, 1.0)
    else:
        driver._note_block(block, 1.0)
        driver._settle(request, codes)
    assert record.committed == request.count
    assert record.committed_refused == 1
    assert record.committed - record.committed_refused == record.accepted == request.count - 1


def decode(body: bytes) -> list[bytes]:
    return msgspec.msgpack.decode(body, type=list[bytes])


def test_answers_decode_to_per_transaction_codes() -> None:
    answer = msgspec.msgpack.encode([bytes(32), ["mempool_full", "full"], bytes(32)])
    assert stream_outcomes(answer, 3) == [None, "mempool_full", None]
    whole = msgspec.msgpack.encode({"error": "not msgpack", "code": "bad_request"})
    assert stream_outcomes(whole, 2) == ["batch refused: bad_request"] * 2
    assert stream_outcomes(answer, 2) == ["bad answer: ValueError"] * 2
    assert stream_outcomes(b"\xc1", 1) == ["bad answer: DecodeError"]
    assert stream_outcomes(msgspec.msgpack.encode([7]), 1) == ["bad answer: TypeError"]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 100_003])
async def test_sent_messages_are_masked_frames_wsproto_reads(size: int) -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    server = Connection(ConnectionType.SERVER)
    payload = os.urandom(size)
    sender = LightSender(client_end, 1024)
    received = bytearray()
    finished = False

    async def node() -> None:
        nonlocal finished
        while not finished:
            server.receive_data(await server_end.receive_some())
            for event in server.events():
                assert isinstance(event, BytesMessage)
                received.extend(event.data)
                finished = event.message_finished

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(node)
            await sender.send_binary(payload)
    assert bytes(received) == payload


def test_masking_is_the_bytewise_xor() -> None:
    mask = bytes((0x12, 0xAB, 0x00, 0xFF))
    for size in (0, 1, 3, 4, 5, 1000, 1001):
        payload = os.urandom(size)
        expected = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert masked(payload, mask) == expected


def test_auto_wire_takes_the_stream_when_the_node_serves_it() -> None:
    with one_node(FakeChain(name="node0", index=0)) as cluster:
        url = cluster.urls[0]
        assert stream_served(url)
        assert choose_wire(url, "auto") is WireFormat.STREAM
        assert choose_wire(url, "msgpack") is WireFormat.MSGPACK
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{free.getsockname()[1]}"
    assert not stream_served(dead, timeout_s=1.0)
