"""The [api] config keys, the separate API listen address, and the testnet's
admin tokens."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner

from sequencer_net.api.admin_auth import read_admin_token_file
from sequencer_net.api.limits import MAX_BATCH_BODY_BYTES
from sequencer_net.api.server import ApiOptions
from sequencer_net.cli.main import cli
from sequencer_net.home.config import (
    ApiSettings,
    ConfigError,
    NodeConfig,
    default_config_text,
    load_config,
    parse_config,
)
from sequencer_net.testnet.manifest import Manifest
from sequencer_net.testnet.network import (
    ADMIN_TOKEN_FILE,
    node_admin_token,
    write_validator_homes,
)


def parse(document: Mapping[str, object], home: Path = Path("/srv/seqnet")) -> NodeConfig:
    return parse_config(home, {"name": "n", **document}, "config.toml")


def test_defaults_and_options() -> None:
    config = parse({})
    assert config.api == ApiSettings()
    assert config.api.listen_host == "127.0.0.1"
    options = ApiOptions.from_config(config, environ={})
    assert (options.max_connections, options.body_timeout_s, options.idle_timeout_s) == (
        256,
        20.0,
        5.0,
    )
    assert options.max_body_buffer_bytes == 64 * 1024 * 1024
    assert options.admin_token is None


@pytest.mark.parametrize(
    ("api", "message"),
    [
        ({"max_connections": 0}, r"\[api\] max_connections: must be in 1..65536"),
        ({"body_timeout_ms": 50}, r"\[api\] body_timeout_ms: must be in 100..600000"),
        ({"idle_timeout_ms": 10**9}, r"\[api\] idle_timeout_ms: must be in"),
        (
            {"max_body_buffer_bytes": MAX_BATCH_BODY_BYTES - 1},
            r"\[api\] max_body_buffer_bytes: must be in 8388608..",
        ),
        ({"admin_token_file": ""}, r"\[api\] admin_token_file: must not be empty"),
        ({"admin_token": "secret"}, r"\[api\] admin_token: unknown key"),
    ],
)
def test_bad_values_name_the_key(api: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({"api": api})


@pytest.mark.parametrize(
    ("p2p_host", "api_host", "clash"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("0.0.0.0", "127.0.0.1", True),  # the wildcard bind takes the port everywhere
        ("127.0.0.1", "::", True),
        ("10.0.0.5", "127.0.0.1", False),
    ],
)
def test_same_port_clashes_when_the_addresses_overlap(
    p2p_host: str, api_host: str, clash: bool
) -> None:
    document = {
        "p2p": {"listen_host": p2p_host, "listen_port": 26600},
        "api": {"listen_host": api_host, "listen_port": 26600},
    }
    if clash:
        with pytest.raises(ConfigError, match="the same as"):
            parse(document)
    else:
        parse(document)


def test_opening_p2p_leaves_the_api_on_loopback(tmp_path: Path) -> None:
    text = default_config_text("n", 26600, 26700, listen_host="0.0.0.0")
    config = parse_config(tmp_path, tomllib.loads(text), "c")
    assert (config.p2p.listen_host, config.api.listen_host) == ("0.0.0.0", "127.0.0.1")
    text = default_config_text("n", 26600, 26700, api_host="10.0.0.5", admin_token_file="t")
    config = parse_config(tmp_path, tomllib.loads(text), "c")
    assert (config.p2p.listen_host, config.api.listen_host) == ("127.0.0.1", "10.0.0.5")
    assert config.admin_token_path == tmp_path / "t"


def test_node_init_listen_host_is_p2p_only(tmp_path: Path) -> None:
    def init(home: Path, *flags: str) -> tuple[str, str]:
        result = CliRunner().invoke(
            cli,
            ["node", "init", "--home", str(home), "--p2p-port", "36600", "--api-port", "36700",
             *flags, "--json"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        json.loads(result.stdout)
        config = load_config(home)
        return config.p2p.listen_host, config.api.listen_host

    assert init(tmp_path / "a", "--listen-host", "0.0.0.0") == ("0.0.0.0", "127.0.0.1")
    assert init(tmp_path / "b", "--api-host", "0.0.0.0") == ("127.0.0.1", "0.0.0.0")


def test_testnet_homes_get_their_own_admin_tokens(tmp_path: Path) -> None:
    specs = write_validator_homes(
        tmp_path, Manifest().with_overrides(validators=2), 36900, "127.0.0.1"
    )
    tokens = []
    for spec in specs:
        path = spec.home / ADMIN_TOKEN_FILE
        assert path.stat().st_mode & 0o777 == 0o600
        config = load_config(spec.home)
        assert config.admin_token_path == path
        assert config.api.listen_host == "127.0.0.1"
        tokens.append(node_admin_token(spec.home))
        assert tokens[-1] == read_admin_token_file(path)
        assert ApiOptions.from_config(config, environ={}).admin_token == tokens[-1]
    assert len(set(tokens)) == 2 and all(t is not None and len(t) == 64 for t in tokens)
