"""RedundantSubmitter: each transaction reaches validators holding more than a
third of the power, nodes that are down are skipped, and a refusal every node
would give ends the call."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import httpx
import pytest

from sequencer_net.client import NotEnoughValidators, RedundantSubmitter, SeqnetClient
from sequencer_net.client.errors import SeqnetApiError
from sequencer_net.client.redundant import needed_power
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
