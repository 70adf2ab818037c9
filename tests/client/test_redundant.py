"""RedundantSubmitter: each transaction reaches validators holding more than a
third of the power, nodes that are down are skipped, and a refusal every node
would give ends the call."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx
import pytest

from sequencer_net.api.validators import validators_document
from sequencer_net.client import NotEnoughValidators, RedundantSubmitter, SeqnetClient
from sequencer_net.client.errors import SeqnetApiError
from sequencer_net.client.redundant import STATUS_REFRESH_S, _table_of, needed_power
from sequencer_net.home.genesis import LocalEpoch, make_local_genesis
from sequencer_net.mempool.transaction import tx_hash

TX = b"\x01signed transaction"
HASH = "0x" + tx_hash(TX).hex()


@dataclass
class StandIn:
    """One node's API: its validator index (None: a full node) and how it answers."""

    index: int | None
    weights: list[int]
    answer: int = 200  # the status a submission gets
    received: list[bytes] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/status":
            return httpx.Response(200, json={"validator_index": self.index, "height": 3})
        if request.url.path == "/v1/validators":
            listed = [{"index": i, "weight": w} for i, w in enumerate(self.weights)]
            return httpx.Response(200, json={"validators": listed})
        assert request.url.path == "/v1/transactions"
        if self.answer == 0:
            raise httpx.ConnectError("refused", request=request)
        self.received.append(request.content)
        if self.answer != 200:
            code = {400: "invalid_transaction", 409: "duplicate"}.get(self.answer, "overloaded")
            return httpx.Response(self.answer, content=json.dumps({"error": "no", "code": code}))
        return httpx.Response(200, json={"hash": HASH})


def submitter(nodes: list[StandIn]) -> RedundantSubmitter:
    clients = [
        SeqnetClient(f"http://node{i}", transport=httpx.MockTransport(node.handle))
        for i, node in enumerate(nodes)
    ]
    return RedundantSubmitter(clients=clients)


def test_the_power_needed_includes_one_honest_validator() -> None:
    assert [needed_power(total) for total in (1, 4, 7, 10, 16, 100)] == [1, 2, 3, 4, 6, 34]


def test_equal_validators_get_f_plus_one_copies_starting_further_along_each_time() -> None:
    nodes = [StandIn(i, [1] * 7) for i in range(7)]
    with submitter(nodes) as s:
        first = s.submit(TX)
        second = s.submit(TX)
    assert first.hash == HASH and first.power == 3
    assert first.accepted_by == ("http://node0", "http://node1", "http://node2")
    assert second.accepted_by == ("http://node1", "http://node2", "http://node3")
    assert [len(n.received) for n in nodes] == [1, 2, 2, 1, 0, 0, 0]


def test_down_or_overloaded_nodes_and_full_nodes_do_not_count() -> None:
    weights = [5, 1, 1, 1]  # total 8: more than 2 is needed
    nodes = [
        StandIn(None, weights),  # a full node: it takes it, with no power
        StandIn(1, weights, answer=0),  # unreachable
        StandIn(2, weights, answer=503),
        StandIn(3, weights),
        StandIn(0, weights),
    ]
    with submitter(nodes) as s:
        result = s.submit(TX)
    assert result.accepted_by == ("http://node0", "http://node3", "http://node4")
    assert result.power == 6


def test_a_node_that_already_holds_it_counts() -> None:
    nodes = [StandIn(0, [1] * 4, answer=409), StandIn(1, [1] * 4)]
    with submitter(nodes) as s:
        result = s.submit(TX)
    assert result.power == 2 and result.hash == HASH
    assert result.accepted_by == ("http://node0", "http://node1")


def test_too_little_power_reachable_is_an_error_naming_what_failed() -> None:
    nodes = [StandIn(0, [1] * 4), StandIn(1, [1] * 4, answer=0), StandIn(2, [1] * 4, answer=503)]
    with submitter(nodes) as s, pytest.raises(NotEnoughValidators) as caught:
        s.submit(TX)
    assert (caught.value.power, caught.value.needed, caught.value.tx_hash) == (1, 2, HASH)
    assert "node1" in str(caught.value) and "node2" in str(caught.value)


def test_a_refusal_every_node_would_give_ends_the_call() -> None:
    nodes = [StandIn(i, [1] * 4, answer=400) for i in range(4)]
    with submitter(nodes) as s, pytest.raises(SeqnetApiError) as caught:
        s.submit(TX)
    assert caught.value.code == "invalid_transaction"
    assert [len(n.received) for n in nodes] == [1, 0, 0, 0]


def test_malformed_validator_lists_are_refused() -> None:
    node = StandIn(0, [1, 0, 1, 1])
    with submitter([node]) as s, pytest.raises(SeqnetApiError, match="weight below 1"):
        s.submit(TX)


# -- a validator set that changes --------------------------------------------------

SECRETS = [bytes([i + 1]) * 32 for i in range(5)]
ROTATING = make_local_genesis(
    SECRETS,
    base_p2p_port=1,
    base_api_port=100,
    initial=(0, 1, 2, 3),
    epochs=[LocalEpoch(first_height=10, members=(1, 2, 3, 4), weights=(1, 1, 1, 4))],
)


@dataclass
class EpochStandIn:
    """A node of the rotating chain: validator `index` (members order) in `epoch`."""

    index: int
    epoch: int
    received: list[bytes] = field(default_factory=list)
    status_reads: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/status":
            self.status_reads += 1
            return httpx.Response(200, json={"validator_index": self.index, "epoch": self.epoch})
        if request.url.path == "/v1/validators":
            return httpx.Response(200, json=validators_document(ROTATING))
        assert request.url.path == "/v1/transactions"
        self.received.append(request.content)
        return httpx.Response(200, json={"hash": HASH})


def rotating_submitter(
    nodes: list[EpochStandIn], *, pinned: bool, clock: list[float] | None = None
) -> RedundantSubmitter:
    clients = [
        SeqnetClient(f"http://node{n.index}", transport=httpx.MockTransport(n.handle))
        for n in nodes
    ]
    now = clock if clock is not None else [0.0]
    return RedundantSubmitter(
        clients=clients, genesis=ROTATING if pinned else None, clock=lambda: now[0]
    )


@pytest.mark.parametrize("pinned", [True, False], ids=["genesis", "validators_document"])
def test_power_is_counted_in_the_epoch_the_chain_is_in(pinned: bool) -> None:
    """Epoch 1 drops validator 0 and gives newcomer 4 a weight of 4 (of 7: more
    than 2 needed). In epoch 1 the newcomer alone suffices; in epoch 0 it
    counts nothing and two of the first four are needed."""
    later = [EpochStandIn(4, 1)] + [EpochStandIn(i, 1) for i in range(4)]
    with rotating_submitter(later, pinned=pinned) as s:
        result = s.submit(TX)
        assert (result.accepted_by, result.power) == (("http://node4",), 4)
        result = s.submit(TX)  # from node 0: it left, so it counts nothing
        assert result.accepted_by == (
            "http://node0",
            "http://node1",
            "http://node2",
            "http://node3",
        )
        assert result.power == 3
    earlier = [EpochStandIn(4, 0)] + [EpochStandIn(i, 0) for i in range(4)]
    with rotating_submitter(earlier, pinned=pinned) as s:
        result = s.submit(TX)
        assert (result.accepted_by, result.power) == (
            ("http://node4", "http://node0", "http://node1"),
            2,
        )


def test_a_long_lived_submitter_follows_the_chain_into_the_next_epoch() -> None:
    nodes = [EpochStandIn(4, 0), EpochStandIn(0, 0), EpochStandIn(1, 0)]
    clock = [0.0]
    with rotating_submitter(nodes, pinned=True, clock=clock) as s:
        assert s.submit(TX).power == 2  # epoch 0: node 4 is no member yet
        for node in nodes:
            node.epoch = 1
        clock[0] = STATUS_REFRESH_S - 0.1
        s._next = 0
        assert s.submit(TX).power == 2  # statuses not read again yet
        clock[0] = STATUS_REFRESH_S
        s._next = 0
        result = s.submit(TX)
        assert (result.accepted_by, result.power) == (("http://node4",), 4)
    assert [n.status_reads for n in nodes] == [2, 1, 1]  # only node 4 was asked again


def test_an_epochs_document_without_addresses_is_refused() -> None:
    document = validators_document(ROTATING)
    del document["epochs"][1]["validators"][0]["address"]
    with pytest.raises(SeqnetApiError, match="names no address"):
        _table_of(document)
