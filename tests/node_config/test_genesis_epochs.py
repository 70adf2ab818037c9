"""genesis.json `epochs`: later validator sets, their checks, JSON and canonical bytes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from consensus.epochs import EpochSchedule
from sequencer_net.home.genesis import (
    Genesis,
    GenesisError,
    LocalEpoch,
    genesis_from_json,
    genesis_to_json,
    load_genesis,
    make_local_genesis,
    write_genesis,
)
from sequencer_net.home.threshold import deal_network_key
from tests.node_config.conftest import GENESIS_TIME_MS, secret_for


def rotating(**changes: object) -> Genesis:
    """Members node0..node4: epoch 0 is node0..node3, epoch 1 (from height 20)
    drops node3 and adds node4 with weight 2, epoch 2 (from 40) is node0..node2."""
    arguments: dict[str, object] = dict(
        chain_id=31337,
        base_p2p_port=36600,
        base_api_port=36700,
        genesis_time_ms=GENESIS_TIME_MS,
        initial=(0, 1, 2, 3),
        epochs=(LocalEpoch(20, (0, 1, 2, 4), (1, 1, 1, 2)), LocalEpoch(40, (0, 1, 2))),
    )
    arguments.update(changes)
    return make_local_genesis([secret_for(i) for i in range(5)], **arguments)  # type: ignore[arg-type]


def test_schedule_members_and_indices() -> None:
    genesis = rotating()
    schedule = genesis.schedule()
    assert isinstance(schedule, EpochSchedule)
    assert [e.first_height for e in schedule.epochs] == [1, 20, 40]
    assert schedule.epoch_of(19).number == 0 and schedule.epoch_of(20).number == 1
    assert schedule.last_height(0) == 19 and schedule.last_height(2) is None
    assert schedule.validators_for(25).total_weight == 5
    assert [v.name for v in genesis.members()] == ["node0", "node1", "node2", "node3", "node4"]
    node4 = genesis.members()[4].address
    assert genesis.epoch_index(0, node4) is None
    assert genesis.epoch_index(1, node4) == 3
    assert genesis.epoch_index(2, node4) is None
    assert genesis.epoch_validators(2) == genesis.epochs[1].validators
    # the execution oracles are epoch 0's set
    assert len(genesis.execution.oracles) == 4


def test_a_genesis_without_epochs_keeps_its_bytes() -> None:
    plain = make_local_genesis(
        [secret_for(i) for i in range(4)],
        chain_id=31337,
        base_p2p_port=36600,
        base_api_port=36700,
        genesis_time_ms=GENESIS_TIME_MS,
    )
    assert rotating(epochs=()).canonical_bytes() == plain.canonical_bytes()
    assert "epochs" not in genesis_to_json(plain)
    assert len(plain.schedule()) == 1


def test_epochs_are_covered_by_the_digest_and_round_trip(tmp_path: Path) -> None:
    genesis = rotating()
    assert genesis.genesis_block().digest() != rotating(epochs=()).genesis_block().digest()
    moved = rotating(epochs=(LocalEpoch(21, (0, 1, 2, 4), (1, 1, 1, 2)), LocalEpoch(40, (0, 1, 2))))
    assert moved.genesis_block().digest() != genesis.genesis_block().digest()
    path = tmp_path / "genesis.json"
    write_genesis(path, genesis)
    loaded = load_genesis(path)
    assert loaded == genesis
    assert loaded.canonical_bytes() == genesis.canonical_bytes()


def test_each_epoch_has_its_own_threshold_key() -> None:
    keys = [deal_network_key(n, 2)[0] for n in (4, 4, 3)]
    genesis = rotating(
        threshold_keys=keys[0],
        epochs=(
            LocalEpoch(20, (0, 1, 2, 4), None, keys[1]),
            LocalEpoch(40, (0, 1, 2), None, keys[2]),
        ),
    )
    assert [genesis.epoch_threshold(e).key_epoch for e in range(3)] == [0, 1, 2]  # type: ignore[union-attr]
    assert genesis_from_json(genesis_to_json(genesis)) == genesis
    with pytest.raises(GenesisError, match="exactly when epoch 0 does"):
        rotating(threshold_keys=keys[0])
    with pytest.raises(GenesisError, match=r"epochs\[1\]\.threshold\.verification_keys"):
        rotating(
            threshold_keys=keys[0],
            epochs=(
                LocalEpoch(20, (0, 1, 2, 4), None, keys[1]),
                LocalEpoch(40, (0, 1, 2), None, keys[1]),
            ),
        )
    bad = dataclasses.replace(
        genesis.epochs[0],
        threshold=dataclasses.replace(genesis.epochs[0].threshold, key_epoch=5),  # type: ignore[arg-type]
    )
    with pytest.raises(GenesisError, match=r"epochs\[0\]\.threshold\.key_epoch: must be 1"):
        dataclasses.replace(genesis, epochs=(bad, genesis.epochs[1]))
    with pytest.raises(GenesisError, match=r"threshold\.key_epoch: must be 0"):
        dataclasses.replace(
            genesis,
            threshold=dataclasses.replace(genesis.threshold, key_epoch=3),  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("epochs", "message"),
    [
        ((LocalEpoch(1, (0, 1)),), r"epochs\[0\]\.first_height: must be an integer above 1"),
        (
            (LocalEpoch(20, (0, 1)), LocalEpoch(20, (1, 2))),
            r"epochs\[1\]\.first_height: must be an integer above 20",
        ),
        ((LocalEpoch(20, ()),), r"epochs\[0\]\.validators: at least one"),
        ((LocalEpoch(20, (0, 0)),), r"epochs\[0\]\.validators\[1\] \(node0\)\.name: duplicate"),
        ((LocalEpoch(20, (0, 1), (1, 0)),), r"epochs\[0\]\.validators\[1\] \(node1\)\.weight"),
    ],
)
def test_epoch_rules(epochs: tuple[LocalEpoch, ...], message: str) -> None:
    with pytest.raises(GenesisError, match=message):
        rotating(epochs=epochs)


def test_a_member_keeps_its_name_and_key() -> None:
    genesis = rotating()
    renamed = dataclasses.replace(genesis.epochs[0].validators[0], name="other")
    epoch = dataclasses.replace(
        genesis.epochs[0], validators=(renamed, *genesis.epochs[0].validators[1:])
    )
    with pytest.raises(GenesisError, match="a member keeps its name and key"):
        dataclasses.replace(genesis, epochs=(epoch, genesis.epochs[1]))


def test_json_errors_name_the_epoch_key() -> None:
    document = genesis_to_json(rotating())
    document["epochs"][1]["colour"] = "red"
    with pytest.raises(GenesisError, match=r"epochs\[1\]\.colour: unknown key"):
        genesis_from_json(document)
    document = genesis_to_json(rotating())
    del document["epochs"][0]["first_height"]
    with pytest.raises(GenesisError, match=r"epochs\[0\]\.first_height: missing"):
        genesis_from_json(document)
    document = genesis_to_json(rotating())
    document["epochs"] = {"first_height": 3}
    with pytest.raises(GenesisError, match="epochs: must be a JSON array"):
        genesis_from_json(document)
