"""The genesis `threshold` section and the validators' key share files."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import stat
from pathlib import Path

import pytest

from sequencer_net.fairness.group import encode_point, mul_base
from sequencer_net.fairness.tdh2 import KeyShare
from sequencer_net.home.genesis import (
    Genesis,
    GenesisError,
    genesis_from_json,
    genesis_to_json,
    load_genesis,
    make_local_genesis,
    write_genesis,
)
from sequencer_net.home.keystore import KeystoreError
from sequencer_net.home.setup import init_home
from sequencer_net.home.threshold import (
    THRESHOLD_KEY_FILE,
    deal_network_key,
    default_threshold,
    read_key_share,
    write_key_share,
)
from tests.node_config.conftest import GENESIS_TIME_MS

SEED = 7


def encrypted_genesis(
    secrets: list[bytes], threshold: int | None = None
) -> tuple[Genesis, list[KeyShare]]:
    keys, shares = deal_network_key(len(secrets), threshold, random.Random(SEED).randbytes)
    genesis = make_local_genesis(
        secrets,
        chain_id=31337,
        base_p2p_port=36600,
        base_api_port=36700,
        genesis_time_ms=GENESIS_TIME_MS,
        threshold_keys=keys,
        key_epoch=3,
    )
    return genesis, shares


def test_default_threshold_is_f_plus_one() -> None:
    assert [default_threshold(n) for n in (1, 4, 7, 16)] == [1, 2, 3, 6]


def test_round_trip_and_digest(secrets: list[bytes], genesis: Genesis, tmp_path: Path) -> None:
    encrypted, _ = encrypted_genesis(secrets)
    assert encrypted.threshold is not None
    assert encrypted.threshold.threshold == 2 and encrypted.threshold.key_epoch == 3
    path = tmp_path / "genesis.json"
    write_genesis(path, encrypted)
    loaded = load_genesis(path)
    assert loaded == encrypted
    assert loaded.canonical_bytes() == encrypted.canonical_bytes()
    # The section is part of the chain's identity; without it the digest is unchanged.
    plain = dataclasses.replace(encrypted, threshold=None)
    assert plain.genesis_block().digest() != encrypted.genesis_block().digest()
    assert "threshold" not in genesis_to_json(genesis)
    assert (
        dataclasses.replace(genesis, threshold=None).canonical_bytes() == genesis.canonical_bytes()
    )


@pytest.mark.parametrize("t", [1, 4])
def test_unsafe_thresholds_are_refused(secrets: list[bytes], t: int) -> None:
    encrypted, _ = encrypted_genesis(secrets)
    document = genesis_to_json(encrypted)
    document["threshold"]["threshold"] = t
    with pytest.raises(GenesisError, match=r"threshold.threshold: threshold .* is unsafe"):
        genesis_from_json(document)


def test_configurable_threshold_within_range(secrets: list[bytes]) -> None:
    encrypted, _ = encrypted_genesis(secrets, threshold=3)  # n - f for n = 4
    assert encrypted.threshold is not None and encrypted.threshold.threshold == 3


def test_wrong_key_count_and_bad_point_refused(secrets: list[bytes]) -> None:
    encrypted, _ = encrypted_genesis(secrets)
    document = genesis_to_json(encrypted)
    document["threshold"]["verification_keys"] = document["threshold"]["verification_keys"][:3]
    with pytest.raises(GenesisError, match="3 keys for 4 validators"):
        genesis_from_json(document)
    document = genesis_to_json(encrypted)
    document["threshold"]["public_key"] = "0x02" + "00" * 32
    with pytest.raises(GenesisError, match=r"threshold\.public_key"):
        genesis_from_json(document)
    document = genesis_to_json(encrypted)
    del document["threshold"]["key_epoch"]
    with pytest.raises(GenesisError, match=r"threshold\.key_epoch: missing"):
        genesis_from_json(document)


def test_share_file_is_private_and_checked(secrets: list[bytes], tmp_path: Path) -> None:
    encrypted, shares = encrypted_genesis(secrets)
    assert encrypted.threshold is not None
    path = tmp_path / THRESHOLD_KEY_FILE
    write_key_share(path, shares[1], encrypted.threshold.key_epoch)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    share = read_key_share(path, encrypted.threshold, validator_index=1)
    assert share.index == 2 and share.secret == shares[1].secret
    with pytest.raises(KeystoreError, match="share index 2, this validator's is 1"):
        read_key_share(path, encrypted.threshold, validator_index=0)
    os.chmod(path, 0o644)
    with pytest.raises(KeystoreError, match="readable by others"):
        read_key_share(path, encrypted.threshold, validator_index=1)
    os.chmod(path, 0o600)
    document = json.loads(path.read_text())
    document["secret"] = "0x" + (shares[1].secret + 1).to_bytes(32, "big").hex()
    path.write_text(json.dumps(document))
    with pytest.raises(KeystoreError, match="does not match the genesis"):
        read_key_share(path, encrypted.threshold, validator_index=1)
    with pytest.raises(KeystoreError, match="no threshold key share"):
        read_key_share(tmp_path / "missing.key", encrypted.threshold, validator_index=1)


def test_init_home_writes_the_share(secrets: list[bytes], tmp_path: Path) -> None:
    encrypted, shares = encrypted_genesis(secrets)
    assert encrypted.threshold is not None
    config = init_home(
        tmp_path / "node2", name="node2", genesis=encrypted, secret=secrets[2], key_share=shares[2]
    )
    assert config.threshold_key_path == tmp_path / "node2" / THRESHOLD_KEY_FILE
    assert stat.S_IMODE(config.threshold_key_path.stat().st_mode) == 0o600
    share = read_key_share(config.threshold_key_path, encrypted.threshold, 2)
    assert encode_point(mul_base(share.secret)) == encrypted.threshold.verification_keys[2]


def test_testnet_homes_get_matching_shares(tmp_path: Path) -> None:
    from sequencer_net.home.config import load_config
    from sequencer_net.testnet.manifest import L1Spec, Manifest, NetworkSpec
    from sequencer_net.testnet.network import write_validator_homes

    manifest = Manifest(network=NetworkSpec(validators=4), l1=L1Spec(enabled=False))
    specs = write_validator_homes(tmp_path, manifest, 47000, "127.0.0.1")
    genesis = load_genesis(tmp_path / "genesis.json")
    assert genesis.threshold is not None and genesis.threshold.threshold == 2
    secrets = []
    for index, spec in enumerate(specs):
        config = load_config(spec.home)
        share = read_key_share(config.threshold_key_path, genesis.threshold, index)
        secrets.append(share.secret)
    assert len(set(secrets)) == 4


def test_testnet_without_encryption(tmp_path: Path) -> None:
    from sequencer_net.testnet.manifest import L1Spec, Manifest, NetworkSpec
    from sequencer_net.testnet.network import write_validator_homes

    manifest = Manifest(
        network=NetworkSpec(validators=1, encryption=False), l1=L1Spec(enabled=False)
    )
    specs = write_validator_homes(tmp_path, manifest, 47100, "127.0.0.1")
    assert load_genesis(tmp_path / "genesis.json").threshold is None
    assert not (specs[0].home / THRESHOLD_KEY_FILE).exists()


def test_manifest_refuses_an_unsafe_threshold(tmp_path: Path) -> None:
    from sequencer_net.testnet.manifest import ManifestError, load_manifest

    path = tmp_path / "m.toml"
    path.write_text("[network]\nvalidators = 4\nencryption_threshold = 4\n")
    with pytest.raises(ManifestError, match="encryption_threshold"):
        load_manifest(path)
