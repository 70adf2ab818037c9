"""End-to-end: five validator processes run a genesis whose epochs each leave
out one member in turn (epoch k without node k mod 5, boundaries every 6
heights), so members join and leave at every boundary. Every node crosses the
boundaries, following the epochs it is not a member of and running the others,
and all agree; a node stopped while it follows is restarted and rejoins, one
killed just after it rejoined is restarted and goes on voting, and
transactions sent to a node while it is outside the set commit once it is back;
a full node follows the same chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.crypto import PrivateKey
from sequencer_net.home.genesis import LocalEpoch
from tests.node.harness import LocalNetwork

pytestmark = pytest.mark.slow

N = 5
EPOCH_BLOCKS = 6
EPOCHS = tuple(
    LocalEpoch(1 + k * EPOCH_BLOCKS, tuple(i for i in range(N) if i != k % N)) for k in range(1, 7)
)
"""Epoch 0 (heights 1..6) without node 0; epoch k from height 6k + 1 without node
k mod 5: node 0 is out in epochs 0 and 5, node 1 in 1 and 6, node k in k."""
LAST = 1 + 6 * EPOCH_BLOCKS + 3
"""A few blocks into epoch 6: every node has left and rejoined the set."""


USERS = ("alice", "load", "mallory", "bob")


def _submit(net: LocalNetwork, node: int, user: PrivateKey, nonce: int) -> str:
    response = net.client.post(
        f"{net.url(node)}/v1/transactions",
        content=net.signed(user, nonce, b"joins-%d-%d" % (node, nonce)),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["hash"])


def _committed(net: LocalNetwork, node: int, tx_hash: str) -> bool:
    response = net.client.get(f"{net.url(node)}/v1/transactions/{tx_hash}")
    return response.status_code == 200 and response.json()["status"] == "committed"


def test_members_join_and_leave_at_every_boundary_and_a_following_node_restarts(
    tmp_path: Path,
) -> None:
    net = LocalNetwork.create(
        tmp_path, n=N, view_timeout_ms=600, epochs=EPOCHS, initial=(1, 2, 3, 4), full_nodes=1
    )
    try:
        net.start_all()
        net.start(N)  # the full node: it asks any member of any epoch
        net.wait_for(
            "every node's API", lambda: all(net.status(i) is not None for i in range(N)), timeout=30
        )
        status = net.status(0)
        assert status is not None and status["epoch"] == 0 and status["member"] is False
        # A transaction to each of nodes 0..3: node 0's waits until it joins.
        hashes = [_submit(net, i, net.user(label), 0) for i, label in enumerate(USERS)]
        # Node 2 is out of epoch 2 (heights 13..18): stop it while it follows,
        # and start it again inside that epoch; it rejoins in epoch 3.
        net.wait_height([2], 14, timeout=60)
        assert net.stop(2) == 0
        net.wait_height([0, 1, 3, 4], 16, timeout=60)
        net.start(2)
        # Node 3 rejoined in epoch 4 (heights 25..30): kill it there and restart
        # it; it resumes running epoch 4's core.
        net.wait_height([3], 26, timeout=60)
        net.kill(3)
        net.wait_height([0, 1, 2], 28, timeout=60)
        net.start(3)
        # Node 0 is out again in epoch 5 (heights 31..36): its transaction there
        # is batched once it rejoins in epoch 6.
        net.wait_height([0], 32, timeout=90)
        hashes.append(_submit(net, 0, net.user(USERS[0]), 1))
        net.wait_height(list(range(N)), LAST, timeout=120)
        net.wait_for(
            "every transaction committed on every node",
            lambda: all(_committed(net, i, h) for i in range(N) for h in hashes),
            timeout=60,
        )
        statuses = [net.status(i) for i in range(N)]
        assert all(s is not None and s["epoch"] == 6 for s in statuses), statuses
        assert [s["member"] for s in statuses if s is not None] == [True, False, True, True, True]
        net.wait_height([N], LAST, timeout=60)
        net.assert_agree(list(range(N + 1)), LAST)
    finally:
        net.close()
