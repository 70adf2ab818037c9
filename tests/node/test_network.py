"""End-to-end: real validator processes over libp2p on 127.0.0.1."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from sequencer_net.payload import decode_payload
from tests.node.harness import LocalNetwork

pytestmark = pytest.mark.slow


def _submit(net: LocalNetwork, node: int, encoded: bytes) -> httpx.Response:
    return net.client.post(net.url(node) + "/v1/transactions", content=encoded)


def _committed(net: LocalNetwork, node: int, tx_hash: str) -> bool:
    response = net.client.get(f"{net.url(node)}/v1/transactions/{tx_hash}")
    return response.status_code == 200 and response.json()["status"] == "committed"


def test_four_validators_commit_transactions_and_agree(network: LocalNetwork) -> None:
    network.start_all()
    network.wait_height(list(range(4)), 5)
    user = network.user("alice")
    hashes = []
    for nonce in range(20):
        response = _submit(network, nonce % 4, network.signed(user, nonce, b"tx-%d" % nonce))
        assert response.status_code == 200, response.text
        hashes.append(response.json()["hash"])
    network.wait_for(
        "all transactions committed everywhere",
        lambda: all(_committed(network, i, h) for i in range(4) for h in hashes),
    )
    top = min(network.height(i) for i in range(4))
    network.assert_agree(list(range(4)), top)
    roots = {
        network.client.get(f"{network.url(i)}/v1/blocks/{top}").json()["state_root"]
        for i in range(4)
    }
    assert len(roots) == 1  # every node executed to the same state
    # Execution trails consensus, never leads it.
    status = network.status(0)
    assert status is not None
    assert status["consensus_height"] >= status["height"] >= top
    # Each block vouches for an earlier executed state root, checked by its voters.
    block = network.client.get(f"{network.url(0)}/v1/blocks/{top}").json()
    payload = decode_payload(bytes.fromhex(block["payload"][2:]))
    assert payload.state_height < top
    if payload.state_height > 0:
        vouched = network.client.get(f"{network.url(1)}/v1/blocks/{payload.state_height}")
        assert vouched.json()["state_root"] == "0x" + payload.state_root.hex()
    # SIGTERM is a graceful shutdown: exit status 0.
    assert network.stop(3) == 0


def test_killed_validator_others_continue_and_it_catches_up(network: LocalNetwork) -> None:
    network.start_all()
    network.wait_height(list(range(4)), 3)
    network.kill(2)
    before = max(network.height(i) for i in (0, 1, 3))
    network.wait_height([0, 1, 3], before + 10)
    network.start(2)
    target = max(network.height(i) for i in (0, 1, 3))
    network.wait_height([2], target)
    network.assert_agree(list(range(4)), target)


def test_kill9_under_load_twenty_times_loses_nothing_and_never_double_signs(
    network: LocalNetwork,
) -> None:
    seed = 20261126
    rng = random.Random(seed)
    print(f"seed {seed}")
    network.start_all()
    network.wait_height(list(range(4)), 3)
    victim = 1
    acked: list[str] = []
    stop = threading.Event()
    user = network.user("load")

    def load() -> None:
        nonce = 0
        with httpx.Client(timeout=2.0) as client:
            while not stop.is_set():
                encoded = network.signed(user, nonce, b"load-%d" % nonce)
                try:
                    response = client.post(
                        network.url(victim) + "/v1/transactions", content=encoded
                    )
                except httpx.HTTPError:
                    time.sleep(0.05)  # the victim is down: retry the same nonce
                    continue
                if response.status_code == 200:
                    acked.append(response.json()["hash"])
                    nonce += 1
                elif response.status_code == 409:
                    nonce += 1  # accepted before a crash, answer lost: already ours
                else:
                    time.sleep(0.05)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    try:
        for _ in range(20):
            time.sleep(rng.uniform(0.2, 1.2))
            network.kill(victim)
            network.start(victim)
            network.wait_for("victim answers", lambda: network.status(victim) is not None, 30)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(acked) > 20
    network.wait_for(
        f"all {len(acked)} acknowledged transactions committed",
        lambda: all(_committed(network, 0, h) for h in acked),
        timeout=90,
    )
    top = min(network.height(i) for i in range(4))
    network.assert_agree(list(range(4)), top)
    roots = {
        network.client.get(f"{network.url(i)}/v1/blocks/{top}").json()["state_root"]
        for i in range(4)
    }
    assert len(roots) == 1  # the restarted validator reloaded its state and agrees
    # A restarted validator that signed two different votes for one view would be
    # caught by its peers, which keep both signed votes as evidence.
    for i in range(4):
        assert network.metric(i, "seqnet_equivocation_evidence") == 0


def test_fifth_validator_joining_late_catches_up_from_genesis(tmp_path: Path) -> None:
    net = LocalNetwork.create(tmp_path, n=5, view_timeout_ms=300)
    try:
        net.start_all(range(4))
        net.wait_height([0, 1, 2, 3], 80, timeout=90)  # past the forward-sync gap (64)
        net.start(4)
        target = max(net.height(i) for i in range(4))
        net.wait_height([4], target, timeout=60)
        net.assert_agree(list(range(5)), target)
    finally:
        net.close()
