"""`seqnet node ...`: create a validator's home directory and run the validator.

`node run` imports the node (trio, libp2p, rocksdict: about a second) only
when it starts it, so `seqnet node --help` and `node init` stay fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from consensus.crypto import PrivateKey
from sequencer_net.cli.keys import password_from_file
from sequencer_net.home.config import LOG_LEVELS, ConfigError, NodeConfig, load_config
from sequencer_net.home.genesis import Genesis, GenesisError, load_genesis
from sequencer_net.home.keystore import KeystoreError, read_key_file
from sequencer_net.home.setup import HomeError, init_home

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_HOME = click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The node's home directory (config.toml, genesis.json, validator.key, data/).",
)


@click.group(name="node")
def node() -> None:
    """Set up and run a validator node.

    \b
    Example: a single-validator dev chain in two commands
      seqnet node init --home ~/seqnet
      seqnet node run --home ~/seqnet

    \b
    Example: join a network (get its genesis.json first)
      seqnet keys new --out validator.key --password-file pw
      seqnet node init --home ~/seqnet --genesis genesis.json \\
          --key validator.key --password-file pw
      seqnet node run --home ~/seqnet

    See docs/operator.md for the config keys, ports, backups and upgrades.
    """


@node.command(name="init")
@_HOME
@click.option("--name", help="Node name in logs. Default: the validator's name in genesis.")
@click.option(
    "--genesis",
    "genesis_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="The network's genesis.json (copied verbatim). Default: a new one-validator dev chain.",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Use this existing key file. Default: generate a new key.",
)
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Password (first line) of --key, and of the new validator.key, which is then "
    "encrypted; config.toml records this path so `node run` can decrypt unattended.",
)
@click.option(
    "--p2p-port",
    type=click.IntRange(1, 65535),
    help="P2P listen port. Default: this validator's port in genesis, else 26600.",
)
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    help="API and /metrics port. Default: this validator's port in genesis, else 26700.",
)
@click.option(
    "--listen-host",
    help="P2P listen address. Default: 127.0.0.1 if genesis places this validator on "
    "loopback, else 0.0.0.0. The API does not follow it (see --api-host).",
)
@click.option(
    "--api-host",
    default="127.0.0.1",
    show_default=True,
    help="API and /metrics listen address. Set it (e.g. to 0.0.0.0) only if clients "
    "on other machines must reach the API.",
)
@click.option("--force", is_flag=True, help="Replace an existing home's config, key and genesis.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def init(
    home: Path,
    name: str | None,
    genesis_file: Path | None,
    key_file: Path | None,
    password_file: Path | None,
    p2p_port: int | None,
    api_port: int | None,
    listen_host: str | None,
    api_host: str,
    force: bool,
    as_json: bool,
) -> None:
    """Create a node home: config.toml, genesis.json, validator.key and data/.

    The config lists every key with its default (commented out). Without
    --genesis, the node gets a genesis of its own, one-validator chain, so
    `node run` works at once; with it, ports and name default to what the
    genesis says about this validator. Refuses a non-empty directory unless
    --force (which keeps data/).

    \b
    Examples:
      seqnet node init --home ~/seqnet
      seqnet node init --home /srv/seqnet --genesis genesis.json \\
          --key validator.key --password-file /etc/seqnet/password --json
    """
    password = password_from_file(password_file)
    try:
        secret = None if key_file is None else read_key_file(key_file, password)
        genesis = None if genesis_file is None else load_genesis(genesis_file)
    except (KeystoreError, GenesisError) as exc:
        raise click.ClickException(str(exc)) from exc
    me = None
    if genesis is not None and secret is not None:
        address = PrivateKey(secret).address
        # A validator of a later epoch only (it joins there) gets its entry too.
        me = next((v for v in genesis.members() if v.address == address), None)
    if listen_host is None:
        listen_host = "127.0.0.1" if me is None or me.p2p_host in _LOOPBACK else "0.0.0.0"
    try:
        config = init_home(
            home,
            name=name or (me.name if me is not None else "node"),
            genesis_file=genesis_file,
            secret=secret,
            p2p_port=p2p_port or (me.p2p_port if me is not None else 26600),
            api_port=api_port or (me.api_port if me is not None else 26700),
            password=password,
            force=force,
            listen_host=listen_host,
            api_host=api_host,
            password_file=password_file,
        )
        summary = _summary(config, password)
    except (HomeError, ConfigError, GenesisError, KeystoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"Initialized {summary['home']}")
    for key in ("name", "address", "chain_id", "genesis_hash"):
        click.echo(f"  {key + ':':<14}{summary[key]}")
    if summary["validator_index"] is None:
        click.echo(
            "  validator:    NOT in the genesis validator set: `node run` refuses to start "
            "until a genesis lists this key (`node run --full` runs a full node instead)"
        )
    else:
        n = summary["validators"]
        click.echo(f"  validator:    index {summary['validator_index']} of {n}")
    click.echo(f"  p2p:          {config.p2p.listen_host}:{config.p2p.listen_port}")
    click.echo(f"  api:          {config.api.listen_host}:{config.api.listen_port} (/metrics)")
    click.echo(f"Next: review {config.config_path}, then `seqnet node run --home {config.home}`")


def _summary(config: NodeConfig, password: str | None) -> dict[str, Any]:
    genesis: Genesis = load_genesis(config.genesis_path)
    key = PrivateKey(read_key_file(config.key_path, password))
    return {
        "home": str(config.home),
        "name": config.name,
        "address": "0x" + key.address.hex(),
        "public_key": "0x" + key.public_key.hex(),
        "validator_index": genesis.validator_index(key.address),
        "validators": len(genesis.validators),
        "chain_id": genesis.chain_id,
        "genesis_hash": "0x" + genesis.genesis_block().digest().hex(),
        "p2p_port": config.p2p.listen_port,
        "api_port": config.api.listen_port,
        "config_file": str(config.config_path),
        "genesis_file": str(config.genesis_path),
        "key_file": str(config.key_path),
        "data_dir": str(config.data_path),
    }


@node.command(name="run")
@_HOME
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    help="Override [log] level of config.toml for this run.",
)
@click.option(
    "--full",
    is_flag=True,
    help="Run a full node: follow the validators listed in the genesis, verify and "
    "execute their blocks, serve the API. Needs no validator key: the node makes its "
    "own libp2p key (<home>/full_node.key).",
)
def run(home: Path, log_level: str | None, full: bool) -> None:
    """Run the validator (or, with --full, a full node) until SIGINT or SIGTERM
    (then shut down cleanly).

    Reads <home>/config.toml; the genesis, key and data directory it names
    are resolved relative to the home. Only one process may use a home.

    \b
    Examples:
      seqnet node run --home ~/seqnet
      seqnet node run --home /srv/seqnet --log-level DEBUG
      seqnet node run --full --home ~/seqnet-full
    """
    try:
        config = load_config(home)
        if log_level is not None:
            config = config.with_log_level(log_level)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    # Imported here: trio, libp2p and rocksdict cost about a second.
    import importlib

    import trio

    node_module = importlib.import_module("sequencer_net.node.validator")
    full_module = importlib.import_module("sequencer_net.node.full") if full else None
    from sequencer_net.home.lock import HomeLocked

    kinds: tuple[type[Exception], ...] = (
        ConfigError,
        GenesisError,
        KeystoreError,
        HomeError,
        HomeLocked,
    )
    setup_error = getattr(node_module, "NodeSetupError", None)
    if isinstance(setup_error, type) and issubclass(setup_error, Exception):
        kinds += (setup_error,)
    try:
        if full_module is not None:
            trio.run(full_module.run_full_node, config)
        else:
            trio.run(node_module.run_node, config)
    except BaseException as exc:
        known = _startup_error(exc, kinds)
        if known is None:
            raise
        raise click.ClickException(str(known)) from exc


def _startup_error(exc: BaseException, kinds: tuple[type[Exception], ...]) -> BaseException | None:
    """The operator-facing error inside `exc` (maybe wrapped in exception groups by
    trio's nurseries), or None if `exc` is anything else (a bug: show the traceback)."""
    while isinstance(exc, BaseExceptionGroup):
        if len(exc.exceptions) != 1:
            return None
        exc = exc.exceptions[0]
    return exc if isinstance(exc, kinds) else None
