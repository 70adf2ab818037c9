"""config.toml: defaults, every override, and errors that name the file and key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from sequencer_net.home.config import (
    SECTIONS,
    ApiSettings,
    ConfigError,
    ConsensusSettings,
    L1Settings,
    LogSettings,
    MempoolSettings,
    NodeConfig,
    OracleSettings,
    P2PSettings,
    StorageSettings,
    default_config_text,
    documented_keys,
    load_config,
)
from sequencer_net.home.genesis import Genesis
from sequencer_net.mempool.limits import BatchLimits, MempoolLimits

FULL = """
name = "validator-7"
genesis_file = "/etc/seqnet/genesis.json"
key_file = "keys/v7.key"
password_file = "~/pw.txt"

[p2p]
listen_host = "0.0.0.0"
listen_port = 30001
peers = ["0@10.0.0.1:30000", "2@val2.example.org:30002"]
max_non_validator_connections = 8

[api]
listen_host = "::1"
listen_port = 30101
max_connections = 64
body_timeout_ms = 5000
idle_timeout_ms = 1000
max_body_buffer_bytes = 16_777_216
subscriber_queue = 32
max_subscribers = 16
max_subscriptions_per_client = 4
admin_token_file = "admin.token"
max_tx_per_s_per_client = 500
max_tx_burst_per_client = 700

[consensus]
view_timeout_ms = 2500
retry_ms = 700
max_backoff_steps = 6
empty_block_interval_ms = 250
min_block_interval_ms = 60
inclusion_delay_views = 3
inclusion_delay_ms = 750
test_fault = "equivocate"

[mempool]
max_txs = 5000
max_bytes = 10_000_000
max_per_sender = 64
batch_max_txs = 500
batch_max_bytes = 65536
batch_delay_ms = 0
batch_max_uncertified = 2
batch_hold_ms = 400

[storage]
data_dir = "/var/lib/seqnet"
sync = false
group_commit_ms = 5
verify_threads = 3

[oracle]
source = "http"
interval_ms = 2000
lag_s = 2
seed = 9
file = "prices.json"
url = "https://prices.example.com/v1/tickers"
prices = ["1=data.BTC.last", "2=data.ETH.last"]
volatilities = ["3=0.6"]

[l1]
rpc_url = "http://127.0.0.1:8545"
commitments = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
inbox = "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9"
bridge = "0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9"
post = false
post_interval_ms = 5000
takeover_blocks = 20
confirmations = 6
poll_ms = 1000
watcher_key_file = "keys/watcher.key"

[log]
level = "DEBUG"
format = "json"
file = "logs/node.log"
"""


def write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)
    return home


def test_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'name = "n"\n'))
    assert config == NodeConfig(home=tmp_path.resolve(), name="n")
    assert config.genesis_file == "genesis.json"
    assert config.key_file == "validator.key"
    assert config.password_file is None
    assert config.p2p == P2PSettings("127.0.0.1", 26600, ())
    assert config.api == ApiSettings("127.0.0.1", 26700)
    assert config.consensus == ConsensusSettings(None, None)
    assert config.mempool == MempoolSettings(200_000, 256 * 1024 * 1024, 128, 2048, 512 * 1024, 50)
    # The defaults are the pool's and the batcher's own: one source for both.
    assert config.mempool.mempool_limits() == MempoolLimits()
    assert config.mempool.batch_limits() == BatchLimits()
    assert config.storage == StorageSettings("data", True, 2, 0)
    assert config.log == LogSettings("INFO", "text", None)
    assert config.genesis_path == tmp_path.resolve() / "genesis.json"
    assert config.key_path == tmp_path.resolve() / "validator.key"
    assert config.data_path == tmp_path.resolve() / "data"
    assert config.password_path is None and config.log_path is None


def test_every_key_overridden(tmp_path: Path) -> None:
    home = write(tmp_path / "home", FULL).resolve()
    config = load_config(home)
    assert config.name == "validator-7"
    assert config.genesis_path == Path("/etc/seqnet/genesis.json")
    assert config.key_path == home / "keys" / "v7.key"
    assert config.password_path == Path.home() / "pw.txt"
    assert config.p2p == P2PSettings(
        "0.0.0.0", 30001, ("0@10.0.0.1:30000", "2@val2.example.org:30002"), 8
    )
    assert config.p2p.peer_addresses() == {0: ("10.0.0.1", 30000), 2: ("val2.example.org", 30002)}
    assert config.api == ApiSettings(
        "::1", 30101, 64, 5000, 1000, 16 * 1024 * 1024, 32, 16, 4, "admin.token", 500, 700
    )
    assert config.admin_token_path == home / "admin.token"
    assert config.consensus == ConsensusSettings(2500, 700, 6, 250, 60, 3, 750, "equivocate")
    assert config.mempool == MempoolSettings(5000, 10_000_000, 64, 500, 65536, 0, 2, 400)
    assert config.storage == StorageSettings("/var/lib/seqnet", False, 5, 3)
    assert config.data_path == Path("/var/lib/seqnet")
    assert config.oracle == OracleSettings(
        "http",
        2000,
        2,
        9,
        "prices.json",
        "https://prices.example.com/v1/tickers",
        ("1=data.BTC.last", "2=data.ETH.last"),
        ("3=0.6",),
    )
    assert config.oracle_file_path == home / "prices.json"
    assert config.l1 == L1Settings(
        "http://127.0.0.1:8545",
        "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
        "0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9",
        False,
        5000,
        20,
        6,
        1000,
        "keys/watcher.key",
    )
    assert config.watcher_key_path == home / "keys" / "watcher.key"
    assert config.log == LogSettings("DEBUG", "json", "logs/node.log")
    assert config.log_path == home / "logs" / "node.log"
    # Every key of every section differs from its default: the test covers them all.
    default = NodeConfig(home=home, name="x")
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(config, section)):
            assert getattr(getattr(config, section), f.name) != getattr(
                getattr(default, section), f.name
            ), f"[{section}] {f.name} is not overridden by FULL"


def test_consensus_timers_fall_back_to_genesis(genesis: Genesis, tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'name = "n"\n'))
    assert config.consensus.consensus_config(genesis).view_timeout_ms == genesis.view_timeout_ms
    assert config.consensus.consensus_config(genesis).retry_ms == genesis.view_timeout_ms
    tuned = ConsensusSettings(view_timeout_ms=3000)
    assert tuned.consensus_config(genesis).view_timeout_ms == 3000
    assert tuned.consensus_config(genesis).retry_ms == 3000
    assert ConsensusSettings(retry_ms=10).consensus_config(genesis).retry_ms == 10
    assert config.consensus.consensus_config(genesis).max_backoff_steps == 4
    assert ConsensusSettings(max_backoff_steps=7).consensus_config(genesis).max_backoff_steps == 7
    # An idle leader waits at most half a view timeout for a batch.
    assert ConsensusSettings(empty_block_interval_ms=5000).empty_block_wait_ms(genesis) == (
        genesis.view_timeout_ms // 2
    )
    assert ConsensusSettings(empty_block_interval_ms=100).empty_block_wait_ms(genesis) == 100
    # Pacing is on by default; the setting is capped at an eighth of the view
    # timeout, so its longest hold (twice the setting) stays within a quarter.
    assert config.consensus.min_block_wait_ms(genesis) == 120  # the default
    assert ConsensusSettings(min_block_interval_ms=10_000).min_block_wait_ms(genesis) == (
        genesis.view_timeout_ms // 8
    )
    assert ConsensusSettings(min_block_interval_ms=60).min_block_wait_ms(genesis) == 60


def test_with_log_level(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, 'name = "n"\n'))
    assert config.with_log_level("debug").log.level == "DEBUG"
    assert config.log.level == "INFO"
    with pytest.raises(ConfigError, match="--log-level"):
        config.with_log_level("chatty")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "n"\ncolour = "red"\n', "colour: unknown key"),
        ('name = "n"\n[p2p]\nlisten_prot = 1\n', r"\[p2p\] listen_prot: unknown key"),
        ('name = "n"\n[metrics]\nport = 1\n', r"\[metrics\]: unknown section"),
        ('name = "n"\np2p = 5\n', r"p2p: must be a \[p2p\] table"),
        ("", "name: missing"),
        ('name = ""\n', "name: must be 1-64"),
        ("name = 5\n", "name: must be a string"),
        ('name = "n"\ngenesis_file = ""\n', "genesis_file: must not be empty"),
        ('name = "n"\npassword_file = ""\n', "password_file: must not be empty"),
        ('name = "n"\n[p2p]\nlisten_port = 0\n', r"\[p2p\] listen_port: must be in 1..65535"),
        ('name = "n"\n[p2p]\nlisten_port = 65536\n', r"\[p2p\] listen_port: must be in 1..65535"),
        ('name = "n"\n[p2p]\nlisten_port = "26600"\n', r"\[p2p\] listen_port: must be an integer"),
        ('name = "n"\n[p2p]\nlisten_port = true\n', r"\[p2p\] listen_port: must be an integer"),
        (
            'name = "n"\n[p2p]\nmax_non_validator_connections = 1025\n',
            r"\[p2p\] max_non_validator_connections: must be in 0..1024",
        ),
        ('name = "n"\n[p2p]\nlisten_host = ""\n', r"\[p2p\] listen_host: must be a host"),
        ('name = "n"\n[p2p]\npeers = "0@h:1"\n', r"\[p2p\] peers: must be a list of strings"),
        (
            'name = "n"\n[p2p]\npeers = ["h:1"]\n',
            r"\[p2p\] peers: 'h:1' must look like INDEX@HOST:PORT",
        ),
        ('name = "n"\n[p2p]\npeers = ["0@h:99999"]\n', r"\[p2p\] peers: .*port must be in"),
        ('name = "n"\n[p2p]\npeers = ["1@a:1", "1@b:2"]\n', r"\[p2p\] peers: .*listed twice"),
        ('name = "n"\n[api]\nlisten_port = -1\n', r"\[api\] listen_port: must be in 1..65535"),
        ('name = "n"\n[api]\nlisten_port = 26600\n', r"\[api\] listen_port: the same as \[p2p\]"),
        (
            'name = "n"\n[consensus]\nview_timeout_ms = 0\n',
            r"\[consensus\] view_timeout_ms: must be in",
        ),
        (
            'name = "n"\n[consensus]\nretry_ms = 1.5\n',
            r"\[consensus\] retry_ms: must be an integer",
        ),
        ('name = "n"\n[mempool]\nmax_txs = 0\n', r"\[mempool\] max_txs: must be at least 1"),
        (
            'name = "n"\n[mempool]\nmax_per_sender = 0\n',
            r"\[mempool\] max_per_sender: must be in 1..1024",
        ),
        (
            'name = "n"\n[mempool]\nnonce_window = 64\n',
            r"\[mempool\] nonce_window: unknown key",
        ),
        (
            'name = "n"\n[mempool]\nbatch_max_bytes = 4194304\n',
            r"\[mempool\] batch_max_bytes: must be in 32896..2097152",
        ),
        (
            'name = "n"\n[mempool]\nbatch_max_bytes = 10\n',
            r"\[mempool\] batch_max_bytes: must be in",
        ),
        ('name = "n"\n[mempool]\nbatch_delay_ms = -1\n', r"\[mempool\] batch_delay_ms: must be in"),
        (
            'name = "n"\n[mempool]\nmax_txs = 10\n',
            r"\[mempool\] batch_max_txs: must be at most max_txs",
        ),
        (
            'name = "n"\n[mempool]\nmax_bytes = 40000\nbatch_max_bytes = 40960\n',
            r"\[mempool\] batch_max_bytes: must be at most max_bytes",
        ),
        ('name = "n"\n[storage]\nsync = "yes"\n', r"\[storage\] sync: must be true or false"),
        ('name = "n"\n[storage]\ndata_dir = ""\n', r"\[storage\] data_dir: must not be empty"),
        ('name = "n"\n[log]\nlevel = "LOUD"\n', r"\[log\] level: must be one of DEBUG"),
        ('name = "n"\n[log]\nformat = "xml"\n', r"\[log\] format: must be one of text, json"),
        ('name = "n"\n[log]\nfile = 3\n', r"\[log\] file: must be a string"),
        ('name = "n"\n[oracle]\nsource = "exchange"\n', r"\[oracle\] source: must be one of"),
        ('name = "n"\n[oracle]\nsource = "file"\n', r"\[oracle\] file: needed with source"),
        ('name = "n"\n[oracle]\nsource = "http"\n', r"\[oracle\] url: needed with source"),
        (
            'name = "n"\n[oracle]\nsource = "http"\nurl = "ftp://x"\n',
            r"\[oracle\] url: must start with http",
        ),
        ('name = "n"\n[oracle]\nprices = ["btc=x"]\n', r"\[oracle\] prices: 'btc=x' must look"),
        ('name = "n"\n[oracle]\nprices = ["1=a", "1=b"]\n', r"\[oracle\] prices: market 1"),
        ('name = "n"\n[oracle]\ninterval_ms = 10\n', r"\[oracle\] interval_ms: must be in"),
        ('name = "n"\n[p2p\n', "invalid TOML"),
    ],
)
def test_errors_name_file_section_and_key(tmp_path: Path, text: str, message: str) -> None:
    home = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(home)
    assert str(caught.value).startswith(f"{home.resolve() / 'config.toml'}: ")


def test_missing_config_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seqnet node init --home"):
        load_config(tmp_path)


def test_default_text_loads_to_defaults_plus_the_given_values(tmp_path: Path) -> None:
    text = default_config_text("node3", 27003, 28003)
    config = load_config(write(tmp_path, text))
    expected = NodeConfig(
        home=tmp_path.resolve(),
        name="node3",
        p2p=P2PSettings(listen_port=27003),
        api=ApiSettings(listen_port=28003),
    )
    assert config == expected


def test_default_text_options(tmp_path: Path) -> None:
    text = default_config_text("n", 1000, 1001, listen_host="0.0.0.0", password_file="/pw")
    config = load_config(write(tmp_path, text))
    assert config.p2p.listen_host == "0.0.0.0"
    assert config.api.listen_host == "127.0.0.1"  # the API has its own address
    assert config.password_path == Path("/pw")


def test_default_text_documents_every_key_with_its_default() -> None:
    text = default_config_text("n", 26600, 26700)
    lines = text.splitlines()
    for section in SECTIONS:
        assert f"[{section}]" in lines
    for section, key, _default, doc in documented_keys():
        assert doc and doc[-1] == ".", f"{section}.{key} needs a sentence of documentation"
        mentions = [line for line in lines if line.lstrip("# ").startswith(f"{key} = ")]
        assert mentions, f"{section}.{key} is missing from the generated config"
    # Every commented default, uncommented, is exactly the built-in default.
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and " = " in line else line for line in lines
    )
    document = tomllib.loads(uncommented)
    checked = 0
    for section, key, default, _doc in documented_keys():
        if default is None or key in ("name", "listen_port"):
            continue  # unset keys show an example; name and ports were given
        table = document[section] if section else document
        value = tuple(table[key]) if isinstance(default, tuple) else table[key]
        assert value == default, f"[{section}] {key}"
        checked += 1
    assert checked >= 14


def test_documented_keys_cover_every_field() -> None:
    rows = {(section, key) for section, key, _, _ in documented_keys()}
    top = {f.name for f in dataclasses.fields(NodeConfig)} - set(SECTIONS) - {"home"}
    assert {key for section, key in rows if section == ""} == top
    for section in SECTIONS:
        cls = type(getattr(NodeConfig(home=Path("/"), name="x"), section))
        assert {key for s, key in rows if s == section} == {f.name for f in dataclasses.fields(cls)}


def test_operator_guide_documents_every_key() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "operator.md").read_text()
    for section, key, _default, _doc in documented_keys():
        cell = f"`[{section}] {key}`" if section else f"`{key}`"
        assert f"| {cell} |" in guide, f"docs/operator.md lacks a row for {cell}"
