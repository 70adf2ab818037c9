"""init_home: layout, permissions, genesis choices, and refusal to overwrite."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from consensus.crypto import PrivateKey
from sequencer_net.home.config import ConfigError, load_config
from sequencer_net.home.genesis import Genesis, GenesisError, load_genesis, write_genesis
from sequencer_net.home.keystore import KeystoreError, read_key_file
from sequencer_net.home.lock import HomeLock
from sequencer_net.home.setup import HomeError, init_home, load_validator_secret
from tests.node_config.conftest import FAST_SCRYPT_N, secret_for


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_layout_and_permissions(tmp_path: Path, genesis: Genesis) -> None:
    home = tmp_path / "nested" / "home"
    config = init_home(
        home, name="node2", genesis=genesis, secret=secret_for(2), p2p_port=36602, api_port=36702
    )
    assert sorted(p.name for p in home.iterdir()) == [
        "LOCK",
        "config.toml",
        "data",
        "genesis.json",
        "validator.key",
    ]
    assert mode_of(home) == 0o700
    assert mode_of(home / "validator.key") == 0o600
    assert mode_of(home / "data") == 0o700
    assert (home / "data").is_dir() and not any((home / "data").iterdir())
    assert config == load_config(home)
    assert config.home == home.resolve()
    assert (config.name, config.p2p.listen_port, config.api.listen_port) == ("node2", 36602, 36702)
    assert read_key_file(config.key_path) == secret_for(2)
    assert load_genesis(config.genesis_path) == genesis
    assert load_validator_secret(config) == secret_for(2)


def test_genesis_file_is_copied_verbatim(tmp_path: Path, genesis: Genesis) -> None:
    source = tmp_path / "distributed.json"
    write_genesis(source, genesis)
    source.write_text(source.read_text().replace("\n", "\n ") + "\n")  # odd but valid JSON
    config = init_home(tmp_path / "home", name="n", genesis_file=source)
    assert config.genesis_path.read_bytes() == source.read_bytes()
    assert load_genesis(config.genesis_path) == genesis


def test_invalid_genesis_file_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(GenesisError):
        init_home(tmp_path / "home", name="n", genesis_file=bad)
    assert not (tmp_path / "home").exists()


def test_bad_settings_write_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name"):
        init_home(tmp_path / "a", name="no spaces allowed")
    with pytest.raises(ConfigError, match="the same as"):
        init_home(tmp_path / "b", name="n", p2p_port=5000, api_port=5000)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_without_genesis_a_one_validator_dev_chain(tmp_path: Path) -> None:
    config = init_home(tmp_path / "home", name="solo", p2p_port=4000, api_port=4001)
    genesis = load_genesis(config.genesis_path)
    key = PrivateKey(read_key_file(config.key_path))
    assert [v.address for v in genesis.validators] == [key.address]
    assert (genesis.validators[0].p2p_port, genesis.validators[0].api_port) == (4000, 4001)
    assert genesis.execution.admin == key.address


def test_encrypted_key_and_password_file(tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("hunter2\n")
    config = init_home(
        tmp_path / "home",
        name="n",
        secret=secret_for(1),
        password="hunter2",
        password_file=password_file,
        scrypt_n=FAST_SCRYPT_N,
    )
    assert config.password_path == password_file.resolve()
    assert load_validator_secret(config) == secret_for(1)
    assert load_validator_secret(config, "hunter2") == secret_for(1)
    with pytest.raises(KeystoreError, match="wrong password"):
        load_validator_secret(config, "nope")


def test_refuses_to_overwrite_unless_forced(tmp_path: Path, genesis: Genesis) -> None:
    home = tmp_path / "home"
    first = init_home(home, name="n", secret=secret_for(1))
    (first.data_path / "chain").mkdir()
    with pytest.raises(HomeError, match="already exists"):
        init_home(home, name="n", secret=secret_for(2))
    assert read_key_file(first.key_path) == secret_for(1)  # untouched
    forced = init_home(home, name="m", genesis=genesis, secret=secret_for(2), force=True)
    assert forced.name == "m"
    assert read_key_file(forced.key_path) == secret_for(2)
    assert load_genesis(forced.genesis_path) == genesis
    assert (forced.data_path / "chain").is_dir()  # data is never deleted


def test_refuses_a_non_empty_directory_and_a_file(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("mine")
    with pytest.raises(HomeError, match="not empty"):
        init_home(tmp_path / "dir", name="n")
    (tmp_path / "file").write_text("x")
    with pytest.raises(HomeError, match="not a directory"):
        init_home(tmp_path / "file", name="n")
    (tmp_path / "empty").mkdir()
    assert init_home(tmp_path / "empty", name="n").name == "n"  # an empty dir is fine


def test_force_refuses_the_home_of_a_running_node(tmp_path: Path) -> None:
    home = tmp_path / "home"
    init_home(home, name="n", secret=secret_for(1))
    with HomeLock(home), pytest.raises(HomeError, match="in use"):
        init_home(home, name="n", secret=secret_for(2), force=True)
    assert read_key_file(home / "validator.key") == secret_for(1)


def test_genesis_and_genesis_file_are_exclusive(tmp_path: Path, genesis: Genesis) -> None:
    path = tmp_path / "g.json"
    write_genesis(path, genesis)
    with pytest.raises(HomeError, match="not both"):
        init_home(tmp_path / "home", name="n", genesis=genesis, genesis_file=path)
