"""`seqnet keys`, `seqnet node` and `seqnet genesis` through click's CliRunner."""

from __future__ import annotations

import contextlib
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from consensus.crypto import PrivateKey
from sequencer_net.cli.main import cli
from sequencer_net.home.config import NodeConfig, load_config
from sequencer_net.home.genesis import Genesis, load_genesis, write_genesis
from sequencer_net.home.keystore import read_key_file, write_key_file
from sequencer_net.home.setup import init_home
from tests.node_config.conftest import FAST_SCRYPT_N, secret_for


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def ok_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- keys ------------------------------------------------------------------------------


def test_keys_new_writes_a_0600_file_and_never_prints_the_secret(tmp_path: Path) -> None:
    out = tmp_path / "v.key"
    info = ok_json("keys", "new", "--out", str(out))
    secret = read_key_file(out)
    key = PrivateKey(secret)
    assert info == {
        "address": "0x" + key.address.hex(),
        "public_key": "0x" + key.public_key.hex(),
        "file": str(out.resolve()),
        "encrypted": False,
    }
    assert out.stat().st_mode & 0o777 == 0o600
    human = run("keys", "show", str(out))
    assert human.exit_code == 0
    assert secret.hex() not in human.output
    assert "0x" + key.address.hex() in human.output


def test_keys_new_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "v.key"
    write_key_file(out, secret_for(1))
    result = run("keys", "new", "--out", str(out))
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert read_key_file(out) == secret_for(1)
    assert run("keys", "new", "--out", str(out), "--force").exit_code == 0
    assert read_key_file(out) != secret_for(1)


def test_keys_new_show_secret_and_no_file(tmp_path: Path) -> None:
    info = ok_json("keys", "new", "--show-secret")
    secret = bytes.fromhex(info["secret"][2:])
    assert "0x" + PrivateKey(secret).address.hex() == info["address"]
    assert info["file"] is None
    result = run("keys", "new")
    assert "secret was not saved" in result.stderr
    assert "secret" not in result.stdout


@pytest.mark.usefixtures("fast_scrypt")
def test_keys_encrypted_round_trip_via_password_file(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("open sesame\n")
    out = tmp_path / "v.key"
    info = ok_json("keys", "new", "--out", str(out), "--password-file", str(password))
    assert info["encrypted"] is True
    assert json.loads(out.read_text())["crypto"]["kdfparams"]["n"] == FAST_SCRYPT_N
    shown = ok_json("keys", "show", str(out), "--password-file", str(password))
    assert shown["address"] == info["address"] and shown["encrypted"] is True
    no_password = run("keys", "show", str(out))
    assert no_password.exit_code == 1 and "password is needed" in no_password.output
    password.write_text("wrong\n")
    wrong = run("keys", "show", str(out), "--password-file", str(password))
    assert wrong.exit_code == 1 and "wrong password" in wrong.output


def test_keys_show_refuses_a_world_readable_plain_key(tmp_path: Path) -> None:
    out = tmp_path / "v.key"
    write_key_file(out, secret_for(1))
    out.chmod(0o644)
    result = run("keys", "show", str(out))
    assert result.exit_code == 1
    assert "readable by others" in result.output


def test_keys_show_secret_for_backups(tmp_path: Path) -> None:
    out = tmp_path / "v.key"
    write_key_file(out, secret_for(3))
    assert (
        ok_json("keys", "show", str(out), "--show-secret")["secret"] == "0x" + secret_for(3).hex()
    )


# --- node init -------------------------------------------------------------------------


def test_node_init_dev_chain(tmp_path: Path) -> None:
    home = tmp_path / "home"
    info = ok_json("node", "init", "--home", str(home))
    config = load_config(home)
    genesis = load_genesis(config.genesis_path)
    assert info["home"] == str(home.resolve())
    assert info["validator_index"] == 0 and info["validators"] == 1
    assert info["genesis_hash"] == "0x" + genesis.genesis_block().digest().hex()
    assert info["address"] == "0x" + genesis.validators[0].address.hex()
    assert (info["p2p_port"], info["api_port"]) == (26600, 26700)
    assert config.name == "node"
    again = run("node", "init", "--home", str(home))
    assert again.exit_code == 1 and "already exists" in again.output


def test_node_init_joins_a_genesis_with_an_existing_key(tmp_path: Path, genesis: Genesis) -> None:
    genesis_file = tmp_path / "genesis.json"
    write_genesis(genesis_file, genesis)
    key_file = tmp_path / "v2.key"
    write_key_file(key_file, secret_for(2))
    home = tmp_path / "home"
    info = ok_json(
        "node", "init", "--home", str(home), "--genesis", str(genesis_file), "--key", str(key_file)
    )
    config = load_config(home)
    # Name and ports default to what genesis says about this validator.
    assert info["validator_index"] == 2
    assert (config.name, config.p2p.listen_port, config.api.listen_port) == ("node2", 36602, 36702)
    assert config.p2p.listen_host == "127.0.0.1"
    assert read_key_file(config.key_path) == secret_for(2)
    assert config.genesis_path.read_bytes() == genesis_file.read_bytes()
    # Flags win over genesis.
    other = tmp_path / "other"
    ok_json(
        "node", "init", "--home", str(other), "--genesis", str(genesis_file), "--key",
        str(key_file), "--name", "mine", "--p2p-port", "5001", "--api-port", "5002",
        "--listen-host", "0.0.0.0",
    )  # fmt: skip
    config = load_config(other)
    assert (config.name, config.p2p.listen_port, config.api.listen_port) == ("mine", 5001, 5002)
    assert config.p2p.listen_host == "0.0.0.0"
    assert config.api.listen_host == "127.0.0.1"  # --listen-host is p2p only (issue 13)


def test_node_init_non_validator_and_human_output(tmp_path: Path, genesis: Genesis) -> None:
    genesis_file = tmp_path / "genesis.json"
    write_genesis(genesis_file, genesis)
    result = run("node", "init", "--home", str(tmp_path / "h"), "--genesis", str(genesis_file))
    assert result.exit_code == 0, result.output
    assert "NOT in the genesis validator set" in result.output
    assert "seqnet node run --home" in result.output


@pytest.mark.usefixtures("fast_scrypt")
def test_node_init_with_encrypted_key(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("pw\n")
    key_file = tmp_path / "v.key"
    write_key_file(key_file, secret_for(1), "pw", scrypt_n=FAST_SCRYPT_N)
    home = tmp_path / "home"
    info = ok_json(
        "node", "init", "--home", str(home), "--key", str(key_file), "--password-file",
        str(password),
    )  # fmt: skip
    config = load_config(home)
    assert config.password_path == password.resolve()
    assert read_key_file(config.key_path, "pw") == secret_for(1)
    assert info["address"] == "0x" + PrivateKey(secret_for(1)).address.hex()
    missing = run("node", "init", "--home", str(tmp_path / "h2"), "--key", str(key_file))
    assert missing.exit_code == 1 and "password is needed" in missing.output


def test_node_init_reports_a_bad_genesis(tmp_path: Path) -> None:
    bad = tmp_path / "genesis.json"
    bad.write_text('{"chain_id": 1}')
    result = run("node", "init", "--home", str(tmp_path / "h"), "--genesis", str(bad))
    assert result.exit_code == 1
    assert "missing" in result.output and str(bad) in result.output
    assert not (tmp_path / "h").exists()


# --- node run --------------------------------------------------------------------------


@pytest.fixture
def fake_node(monkeypatch: pytest.MonkeyPatch) -> list[NodeConfig]:
    """Stand in for sequencer_net.node.validator: record the config run_node receives."""
    calls: list[NodeConfig] = []
    # With the real module imported (as in a full test run), the fake must still win.
    with contextlib.suppress(ImportError):
        importlib.import_module("sequencer_net.node.validator")

    async def run_node(config: NodeConfig) -> None:
        import trio

        await trio.sleep(0)  # proves it runs inside trio.run
        calls.append(config)

    module = types.ModuleType("sequencer_net.node.validator")
    module.run_node = run_node  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sequencer_net.node.validator", module)
    return calls


def test_node_run_loads_the_config_and_runs_the_node(
    tmp_path: Path, fake_node: list[NodeConfig]
) -> None:
    home = tmp_path / "home"
    config = init_home(home, name="n1", secret=secret_for(1))
    result = run("node", "run", "--home", str(home))
    assert result.exit_code == 0, result.output
    assert fake_node == [config]
    result = run("node", "run", "--home", str(home), "--log-level", "debug")
    assert result.exit_code == 0, result.output
    assert fake_node[-1].log.level == "DEBUG"


def test_node_run_reports_config_errors(tmp_path: Path, fake_node: list[NodeConfig]) -> None:
    result = run("node", "run", "--home", str(tmp_path))
    assert result.exit_code == 1
    assert "config.toml: no such file" in result.output
    (tmp_path / "config.toml").write_text('name = "n"\n[p2p]\nlisten_port = 0\n')
    result = run("node", "run", "--home", str(tmp_path))
    assert result.exit_code == 1
    assert "config.toml: [p2p] listen_port: must be in 1..65535" in result.output
    assert fake_node == []


def test_cli_modules_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import sequencer_net.cli.keys, sequencer_net.cli.node, sequencer_net.cli.genesis\n"
        "heavy = ['trio', 'libp2p', 'web3', 'eth_account', 'rocksdict', 'starlette']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


# --- genesis ---------------------------------------------------------------------------


def make_homes(tmp_path: Path, n: int) -> list[Path]:
    homes = []
    for i in range(n):
        home = tmp_path / f"h{i}"
        init_home(home, name=f"v{i}", secret=secret_for(i), p2p_port=41000 + i, api_port=42000 + i)
        homes.append(home)
    return homes


def test_genesis_new_from_homes_and_install(tmp_path: Path) -> None:
    homes = make_homes(tmp_path, 3)
    out = tmp_path / "genesis.json"
    args = [a for h in homes for a in ("--validator", str(h))]
    info = ok_json(
        "genesis", "new", "--out", str(out), *args, "--chain-id", "777", "--genesis-time-ms",
        "1700000000000", "--fund", "0x" + "cd" * 20, "--install",
    )  # fmt: skip
    genesis = load_genesis(out)
    assert info["genesis_hash"] == "0x" + genesis.genesis_block().digest().hex()
    assert genesis.chain_id == genesis.execution.chain_id == 777
    assert [v.name for v in genesis.validators] == ["v0", "v1", "v2"]
    assert [v.address for v in genesis.validators] == [
        PrivateKey(secret_for(i)).address for i in range(3)
    ]
    assert [v.p2p_port for v in genesis.validators] == [41000, 41001, 41002]
    assert genesis.execution.deposits[0].subaccount == bytes.fromhex("cd" * 20) + b"\x00"
    for home in homes:
        assert load_genesis(home / "genesis.json") == genesis
    shown = ok_json("genesis", "show", str(homes[1] / "genesis.json"))
    assert shown["genesis_hash"] == info["genesis_hash"]
    assert shown["quorum_weight"] == 3 and shown["total_weight"] == 3
    again = run("genesis", "new", "--out", str(out), *args)
    assert again.exit_code == 1 and "already exists" in again.output


def test_genesis_new_names_the_contracts_an_l1_deployer_will_create(tmp_path: Path) -> None:
    from sequencer_net.l1.deploy import predict_addresses

    homes = make_homes(tmp_path, 2)
    out = tmp_path / "genesis.json"
    args = [a for h in homes for a in ("--validator", str(h))]
    deployer = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
    info = ok_json(
        "genesis", "new", "--out", str(out), *args, "--l1-deployer", deployer,
        "--l1-deployer-nonce", "5",
    )  # fmt: skip
    predicted = predict_addresses(bytes.fromhex(deployer[2:]), 5)
    genesis = load_genesis(out)
    assert genesis.verifying_contract == predicted.commitments
    assert genesis.execution.collateral_token == predicted.collateral_token
    assert genesis.execution.bridge == bytes(20)  # no faucet key: collateral comes from L1
    assert info["verifying_contract"] == "0x" + predicted.commitments.hex()
    assert info["collateral_token"] == "0x" + predicted.collateral_token.hex()
    bad = run("genesis", "new", "--out", str(tmp_path / "g2.json"), *args, "--l1-deployer", "0x12")
    assert bad.exit_code == 2 and "20-byte" in bad.output


def test_genesis_new_refuses_wildcard_hosts_and_used_homes(tmp_path: Path) -> None:
    homes = make_homes(tmp_path, 2)
    config_file = homes[1] / "config.toml"
    config_file.write_text(
        config_file.read_text().replace("[p2p]\n", '[p2p]\nlisten_host = "0.0.0.0"\n', 1)
    )
    args = [a for h in homes for a in ("--validator", str(h))]
    out = tmp_path / "g.json"
    result = run("genesis", "new", "--out", str(out), *args)
    assert result.exit_code == 1 and "--host-of v1=HOST" in result.output
    info = ok_json("genesis", "new", "--out", str(out), *args, "--host-of", "v1=10.9.9.9")
    assert info["validators"][1]["p2p"] == "10.9.9.9:41001"
    (homes[0] / "data" / "chain").mkdir()
    used = run("genesis", "new", "--out", str(out), "--force", *args, "--host-of", "v1=h",
               "--install")  # fmt: skip
    assert used.exit_code == 1 and "has run another chain" in used.output


def test_genesis_show_rejects_an_invalid_file(tmp_path: Path, genesis: Genesis) -> None:
    path = tmp_path / "genesis.json"
    write_genesis(path, genesis)
    document = json.loads(path.read_text())
    document["validators"][1]["weight"] = 0
    path.write_text(json.dumps(document))
    result = run("genesis", "show", str(path))
    assert result.exit_code == 1
    assert "validators[1] (node1).weight" in result.output


def test_help_teaches_with_examples() -> None:
    for command in (["keys"], ["keys", "new"], ["node"], ["node", "init"], ["node", "run"],
                    ["genesis", "new"]):  # fmt: skip
        result = run(*command, "--help")
        assert result.exit_code == 0
        assert "Example" in result.output, command
    top = run("--help").output
    for name in ("keys", "node", "genesis"):
        assert name in top


def test_node_run_turns_startup_errors_into_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sequencer_net.home.keystore import KeystoreError

    async def failing_node(config: NodeConfig) -> None:
        import trio

        async def fail() -> None:
            raise KeystoreError(f"{config.key_path}: cannot decrypt the key: wrong password")

        async with trio.open_nursery() as nursery:  # errors arrive wrapped in a group
            nursery.start_soon(fail)

    async def buggy_node(config: NodeConfig) -> None:
        raise ZeroDivisionError("a bug")

    module = types.ModuleType("sequencer_net.node.validator")
    monkeypatch.setitem(sys.modules, "sequencer_net.node.validator", module)
    home = tmp_path / "home"
    init_home(home, name="n", secret=secret_for(1))
    module.run_node = failing_node  # type: ignore[attr-defined]
    result = run("node", "run", "--home", str(home))
    assert result.exit_code == 1
    assert "validator.key: cannot decrypt the key: wrong password" in result.output
    module.run_node = buggy_node  # type: ignore[attr-defined]
    result = run("node", "run", "--home", str(home))
    assert isinstance(result.exception, ZeroDivisionError)  # bugs keep their traceback
