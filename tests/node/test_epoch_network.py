"""End-to-end: four validator processes run a genesis whose set changes weights
at heights 10 and 20, cross both boundaries, agree, keep the end proofs; a
validator stopped before the first boundary catches up across both, and a full
node follows the chain across them (each block checked in its epoch's domain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.epochs import epoch_domain_separator, verify_epoch_end
from consensus.verifier import SignatureVerifier
from sequencer_net.home.genesis import LocalEpoch
from sequencer_net.storage.node_store import NodeStore
from tests.node.harness import LocalNetwork

pytestmark = pytest.mark.slow

EPOCHS = (
    LocalEpoch(10, (0, 1, 2, 3), weights=(2, 1, 1, 1)),
    LocalEpoch(20, (0, 1, 2, 3), weights=(1, 1, 2, 1)),
)


def test_validators_cross_two_epoch_boundaries_and_a_restarted_one_catches_up(
    tmp_path: Path,
) -> None:
    net = LocalNetwork.create(tmp_path, n=4, view_timeout_ms=600, epochs=EPOCHS, full_nodes=1)
    try:
        net.start_all()
        net.start(4)  # the full node
        net.wait_height([0, 1, 2, 3], 5)
        assert net.stop(3) == 0  # down before the first boundary (weight 1: the rest are a quorum)
        net.wait_height([0, 1, 2], 25, timeout=90)
        net.start(3)
        net.wait_height([0, 1, 2, 3], 28, timeout=90)
        statuses = [net.status(i) for i in range(4)]
        assert all(s is not None and s["epoch"] == 2 for s in statuses), statuses
        net.wait_height([4], 28, timeout=60)
        net.assert_agree([0, 1, 2, 3, 4], 28)
    finally:
        net.close()
    # Every node kept both end proofs, and they verify against their epoch's set.
    schedule = net.genesis.schedule()
    separator = net.genesis.domain().separator()
    for i in range(4):
        store = NodeStore(net.home(i) / "data" / "chain", sync=False)
        try:
            for epoch in (0, 1):
                proof = store.epoch_end(epoch)
                assert proof is not None, f"node{i} has no end proof of epoch {epoch}"
                last = schedule.last_height(epoch)
                assert last is not None
                digest = verify_epoch_end(
                    proof,
                    epoch=epoch,
                    last_height=last,
                    validators=schedule.epoch(epoch).validators,
                    verifier=SignatureVerifier(epoch_domain_separator(separator, epoch)),
                )
                block = store.block_at(last)
                assert block is not None and block.digest() == digest
        finally:
            store.close()
