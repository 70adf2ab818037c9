"""End-to-end: a full node (`node run --full`) started after the chain has grown
follows it from the validators, executes to their state roots, serves a verified
subscriber from height 1, and relays transactions; validators admit it for the
follow protocol only.

SEQNET_FULL_NODE_BLOCKS sets how many blocks the chain has before the full node
starts (default 40; the manual run in the report used 500)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import trio

from sequencer_net.client import subscribe
from tests.node.harness import LocalNetwork

pytestmark = pytest.mark.slow

BLOCKS_BEFORE = int(os.environ.get("SEQNET_FULL_NODE_BLOCKS", "40"))


def _state_root(network: LocalNetwork, node: int, height: int) -> str:
    response = network.client.get(f"{network.url(node)}/v1/blocks/{height}")
    assert response.status_code == 200, response.text
    return str(response.json()["state_root"])


def test_a_late_full_node_syncs_executes_serves_and_relays(tmp_path: Path) -> None:
    network = LocalNetwork.create(tmp_path, n=4, full_nodes=1)
    full = 4
    try:
        network.start_all()
        alice = network.user("alice")
        network.wait_height([0], 2, timeout=60)
        sent: list[bytes] = []
        for nonce in range(3):  # some transactions before the full node exists
            sent.append(network.signed(alice, nonce, b"before-%d" % nonce))
            r = network.client.post(network.url(nonce % 4) + "/v1/transactions", content=sent[-1])
            assert r.status_code == 200, r.text
        network.wait_height([0, 1, 2, 3], BLOCKS_BEFORE, timeout=60 + BLOCKS_BEFORE)
        started = time.monotonic()
        network.start(full)
        target = network.height(0)
        network.wait_height([full], target, timeout=60 + target / 5)
        # A figure for the report (pytest -s), never asserted.
        print(f"full node: caught up {target} blocks in {time.monotonic() - started:.1f} s")
        # Same blocks, same executed state.
        for h in (1, target // 2, target):
            assert network.block_hash(full, h) == network.block_hash(0, h)
            assert _state_root(network, full, h) == _state_root(network, 0, h)
        status = network.status(full)
        assert status is not None and status["mode"] == "full"
        assert status["follow"]["forged_answers"] == 0

        # A transaction posted to the full node is relayed and committed.
        sent.append(network.signed(alice, 3, b"through-the-full-node"))
        r = network.client.post(network.url(full) + "/v1/transactions", content=sent[-1])
        assert r.status_code == 200, r.text
        tx = r.json()["hash"]

        def committed() -> bool:
            answer = network.client.get(f"{network.url(full)}/v1/transactions/{tx}")
            return answer.status_code == 200 and answer.json().get("status") == "committed"

        network.wait_for("the relayed transaction committed at the full node", committed, 60)
        # An invalid one is refused by the full node's own checks, not relayed.
        r = network.client.post(network.url(full) + "/v1/transactions", content=b"\x01garbage")
        assert r.status_code == 400, r.text

        # A subscriber pointed at the full node gets every block from height 1, verified.
        upto = network.height(full)
        heights: list[int] = []
        transactions: list[bytes] = []

        async def read() -> None:
            with trio.fail_after(60):
                async for block in subscribe(
                    [network.url(full)], namespace=7, from_height=1, genesis=network.genesis
                ):
                    heights.append(block.height)
                    transactions.extend(block.transactions)
                    if block.height >= upto:
                        return

        trio.run(read)
        assert heights == list(range(1, upto + 1))
        # Three before, one relayed. A transaction two validators both batched
        # is ordered in two blocks (docs/rollups.md, "A transaction can be
        # ordered twice"); the relay sends to several validators, so count
        # each once.
        assert set(transactions) == set(sent)
    finally:
        network.close()


def test_a_full_node_follows_with_a_validator_down(tmp_path: Path) -> None:
    network = LocalNetwork.create(tmp_path, n=4, full_nodes=1)
    full = 4
    try:
        network.start_all()
        network.wait_height([0, 1, 2, 3], 10, timeout=60)
        network.kill(0)  # f = 1: the other three keep committing
        network.start(full)
        target = network.height(1) + 5
        network.wait_height([1, full], target, timeout=90)
        assert network.block_hash(full, target) == network.block_hash(1, target)
        assert _state_root(network, full, target) == _state_root(network, 1, target)
    finally:
        network.close()
