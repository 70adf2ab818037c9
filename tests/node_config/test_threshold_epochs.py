"""Threshold key shares on a chain with validator-set epochs: one key dealt per
epoch to that epoch's members, one share file per epoch a member belongs to,
and a clear error at start-up when one is missing or wrong."""

from __future__ import annotations

import json
import random
import stat
from pathlib import Path

import pytest

from consensus.crypto import PrivateKey
from sequencer_net.fairness.group import encode_point, mul_base
from sequencer_net.fairness.tdh2 import KeyShare, PublicKeySet
from sequencer_net.home.genesis import Genesis, LocalEpoch, make_local_genesis
from sequencer_net.home.keystore import KeystoreError
from sequencer_net.home.setup import init_home
from sequencer_net.home.threshold import (
    THRESHOLD_KEY_FILE,
    deal_epoch_keys,
    key_share_path,
    member_key_shares,
    read_key_shares,
)
from sequencer_net.node.decryption import key_epochs_of, member_peer
from tests.node_config.conftest import GENESIS_TIME_MS, secret_for

SEED = 29
SECRETS = [secret_for(i) for i in range(5)]
ADDRESSES = [PrivateKey(s).address for s in SECRETS]
SETS = ((0, 1, 2, 3), (0, 1, 2, 4), (0, 1, 2))
"""Epoch 0 is node0..node3; epoch 1 (from height 20) swaps node3 for node4;
epoch 2 (from height 40) is node0..node2."""


def rotating_encrypted() -> tuple[Genesis, list[tuple[PublicKeySet, list[KeyShare]]]]:
    dealt = deal_epoch_keys([len(s) for s in SETS], rng=random.Random(SEED).randbytes)
    genesis = make_local_genesis(
        SECRETS,
        chain_id=31337,
        base_p2p_port=36600,
        base_api_port=36700,
        genesis_time_ms=GENESIS_TIME_MS,
        initial=SETS[0],
        threshold_keys=dealt[0][0],
        epochs=(
            LocalEpoch(20, SETS[1], threshold_keys=dealt[1][0]),
            LocalEpoch(40, SETS[2], threshold_keys=dealt[2][0]),
        ),
    )
    return genesis, dealt


def test_one_key_is_dealt_per_epoch_to_its_members() -> None:
    genesis, dealt = rotating_encrypted()
    # t = f + 1 of each epoch's own set: 2 of 4, 2 of 4, 1 of 3.
    assert [keys.threshold for keys, _ in dealt] == [2, 2, 1]
    assert [len(shares) for _, shares in dealt] == [4, 4, 3]
    assert len({encode_point(keys.public_key) for keys, _ in dealt}) == 3
    for epoch, (keys, _) in enumerate(dealt):
        section = genesis.epoch_threshold(epoch)
        assert section is not None and section.key_epoch == epoch
        assert section.public_key == encode_point(keys.public_key)
    shares = {m: member_key_shares(genesis, [s for _, s in dealt], ADDRESSES[m]) for m in range(5)}
    assert sorted(shares[0]) == [0, 1, 2] and sorted(shares[3]) == [0]
    assert sorted(shares[4]) == [1] and shares[4][1].index == 4  # 4th of epoch 1's set


def test_homes_get_a_share_file_per_epoch_and_read_them_back(tmp_path: Path) -> None:
    genesis, dealt = rotating_encrypted()
    by_epoch = [s for _, s in dealt]
    configs = {}
    for m in (0, 3, 4):
        configs[m] = init_home(
            tmp_path / f"node{m}",
            name=f"node{m}",
            genesis=genesis,
            secret=SECRETS[m],
            key_shares=member_key_shares(genesis, by_epoch, ADDRESSES[m]),
        )
    home0 = tmp_path / "node0"
    assert sorted(p.name for p in home0.glob("threshold*.key")) == [
        "threshold.epoch1.key",
        "threshold.epoch2.key",
        THRESHOLD_KEY_FILE,
    ]
    for epoch in range(3):
        path = key_share_path(configs[0].threshold_key_path, epoch, genesis)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text())["key_epoch"] == epoch
    assert sorted(p.name for p in (tmp_path / "node3").glob("threshold*.key")) == [
        THRESHOLD_KEY_FILE
    ]
    assert sorted(p.name for p in (tmp_path / "node4").glob("threshold*.key")) == [
        "threshold.epoch1.key"
    ]
    read = {
        m: read_key_shares(configs[m].threshold_key_path, genesis, ADDRESSES[m]) for m in configs
    }
    assert sorted(read[0]) == [0, 1, 2] and sorted(read[3]) == [0] and sorted(read[4]) == [1]
    for m, shares in read.items():
        for epoch, share in shares.items():
            section = genesis.epoch_threshold(epoch)
            assert section is not None
            index = genesis.epoch_index(epoch, ADDRESSES[m])
            assert index is not None and share.index == index + 1
            assert encode_point(mul_base(share.secret)) == section.verification_keys[index]


def test_a_missing_or_swapped_epoch_share_stops_the_node(tmp_path: Path) -> None:
    genesis, dealt = rotating_encrypted()
    shares = member_key_shares(genesis, [s for _, s in dealt], ADDRESSES[0])
    config = init_home(
        tmp_path / "node0", name="node0", genesis=genesis, secret=SECRETS[0], key_shares=shares
    )
    base = config.threshold_key_path
    epoch1, epoch2 = (key_share_path(base, e, genesis) for e in (1, 2))
    epoch2_text = epoch2.read_text()
    epoch2.unlink()
    with pytest.raises(
        KeystoreError, match=r"threshold\.epoch2\.key: no threshold key share of epoch 2"
    ):
        read_key_shares(base, genesis, ADDRESSES[0])
    epoch2.write_text(epoch1.read_text())  # epoch 1's share where epoch 2's belongs
    epoch2.chmod(0o600)
    with pytest.raises(KeystoreError, match="share of key epoch 1, genesis has 2"):
        read_key_shares(base, genesis, ADDRESSES[0])
    epoch2.write_text(epoch2_text)
    assert sorted(read_key_shares(base, genesis, ADDRESSES[0])) == [0, 1, 2]


def test_a_chain_without_epochs_keeps_its_one_file(tmp_path: Path) -> None:
    ((keys, shares),) = deal_epoch_keys([4], rng=random.Random(SEED).randbytes)
    genesis = make_local_genesis(
        SECRETS[:4],
        chain_id=31337,
        base_p2p_port=36600,
        base_api_port=36700,
        genesis_time_ms=GENESIS_TIME_MS,
        threshold_keys=keys,
        key_epoch=3,
    )
    config = init_home(
        tmp_path / "node1", name="node1", genesis=genesis, secret=SECRETS[1], key_share=shares[1]
    )
    assert key_share_path(config.threshold_key_path, 0, genesis) == config.threshold_key_path
    (share,) = read_key_shares(config.threshold_key_path, genesis, ADDRESSES[1]).values()
    assert share.index == 2
    epochs = key_epochs_of(genesis, {0: share})
    assert epochs is not None and not epochs.named
    assert epochs.at(10**6).number == 3 and epochs.at(1).shareholders == (0, 1, 2, 3)
    config.threshold_key_path.unlink()
    with pytest.raises(KeystoreError, match="no threshold key share"):
        read_key_shares(config.threshold_key_path, genesis, ADDRESSES[1])


def test_the_decryption_service_gets_each_epochs_key_and_shareholders() -> None:
    genesis, dealt = rotating_encrypted()
    shares = member_key_shares(genesis, [s for _, s in dealt], ADDRESSES[4])
    epochs = key_epochs_of(genesis, shares)
    assert epochs is not None and epochs.named
    assert [epochs.at(h).number for h in (1, 19, 20, 39, 40)] == [0, 0, 1, 1, 2]
    # Peers are members in first-appearance order: node4 is peer 4.
    assert member_peer(genesis, ADDRESSES[4]) == 4
    assert epochs.at(19).shareholders == (0, 1, 2, 3)
    assert epochs.at(20).shareholders == (0, 1, 2, 4)
    assert epochs.at(40).shareholders == (0, 1, 2)
    assert epochs.at(19).key_share is None and epochs.at(40).key_share is None
    assert epochs.at(20).key_share == shares[1]
    assert epochs.at(20).keys == dealt[1][0]
