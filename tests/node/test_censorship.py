"""End-to-end: a censoring leader cannot keep a validator's transactions out.

Four real validators on 127.0.0.1; validator 0 carries the test fault
`[consensus] test_fault = "censor"`: as leader it leaves out validator 1's
batches. Validator 3 is stopped, so the view before each of the censor's
views times out with no block, and certificates formed meanwhile are a view
old when the censor leads. Every validator runs the inclusion rule with
K = 1 view: the honest voters refuse the censor's proposals (without both of
them no quorum), and validator 1's transactions are committed by the honest
leaders.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sequencer_net.testnet.network import set_consensus_key
from tests.node.harness import LocalNetwork

pytestmark = pytest.mark.slow

CENSOR = 0
CENSORED = 1  # the censor's next index
STOPPED = 3  # leads the view before each of the censor's views
LIVE = [0, 1, 2]


@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork.create(tmp_path, n=4)
    for i in range(4):
        set_consensus_key(net.home(i), "inclusion_delay_views", "1")
    set_consensus_key(net.home(CENSOR), "test_fault", '"censor"')
    try:
        yield net
    finally:
        net.close()


def _committed_height(net: LocalNetwork, node: int, tx_hash: str) -> int | None:
    response = net.client.get(f"{net.url(node)}/v1/transactions/{tx_hash}")
    if response.status_code != 200 or response.json()["status"] != "committed":
        return None
    return int(response.json()["height"])


def test_a_censoring_leader_is_refused_and_the_censored_validator_still_commits(
    network: LocalNetwork,
) -> None:
    network.start_all()
    network.wait_height(list(range(4)), 2)
    network.kill(STOPPED)
    user = network.user("alice")
    hashes = []
    # A stream through the censored validator only, over several rounds of leaders.
    for nonce in range(40):
        response = network.client.post(
            network.url(CENSORED) + "/v1/transactions",
            content=network.signed(user, nonce, b"censored-%d" % nonce),
        )
        assert response.status_code == 200, response.text
        hashes.append(response.json()["hash"])
        time.sleep(0.1)
    network.wait_for(
        "the censored validator's transactions committed on every live validator",
        lambda: all(_committed_height(network, i, h) is not None for i in LIVE for h in hashes),
    )
    heights = {_committed_height(network, CENSORED, h) for h in hashes}
    proposers = {
        network.client.get(f"{network.url(2)}/v1/blocks/{h}").json()["proposer"] for h in heights
    }
    assert CENSOR not in proposers  # never in a block the censor proposed
    for honest in (1, 2):
        assert network.metric(honest, "seqnet_inclusion_refusals") > 0, network.log_tail(honest)
    assert network.metric(CENSORED, "seqnet_batch_certificates_formed") > 0
    assert network.metric(2, "seqnet_batch_acks_sent") > 0
    top = min(network.height(i) for i in LIVE)
    network.assert_agree(LIVE, top)
