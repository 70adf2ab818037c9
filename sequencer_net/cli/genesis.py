"""`seqnet genesis ...`: build a network's genesis from node homes, and check one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import msgspec

from consensus.crypto import PrivateKey
from sequencer_net.home.config import ConfigError, load_config
from sequencer_net.home.genesis import (
    Genesis,
    GenesisError,
    GenesisValidator,
    default_execution_genesis,
    load_genesis,
    oracle_reporters,
    random_chain_id,
    write_genesis,
)
from sequencer_net.home.keystore import KeystoreError
from sequencer_net.home.setup import load_validator_secret

_WILDCARD = ("0.0.0.0", "::", "")


@click.group(name="genesis")
def genesis() -> None:
    """Build and check a network's genesis file (genesis.json).

    \b
    Four validators on four machines, each operator first runs
      seqnet node init --home ~/seqnet --p2p-port 26600 --api-port 26700
    then one coordinator collects the homes (or copies of their config.toml
    and key) and runs
      seqnet genesis new --out genesis.json --validator h0 --validator h1 \\
          --validator h2 --validator h3 --host-of node0=10.0.0.1 ...
    and every operator installs the same file with
      seqnet node init --home ~/seqnet --force --genesis genesis.json --key ...
    `seqnet genesis show genesis.json` prints the hash all must agree on.
    """


def _parse_hosts(entries: tuple[str, ...]) -> dict[str, str]:
    hosts = {}
    for entry in entries:
        name, sep, host = entry.partition("=")
        if not sep or not name or not host:
            raise click.BadParameter(f"{entry!r}: expected NAME=HOST", param_hint="--host-of")
        hosts[name] = host
    return hosts


@genesis.command(name="new")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option(
    "--validator",
    "homes",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    multiple=True,
    required=True,
    help="A node home (repeat, in validator order): its name, ports and key are read.",
)
@click.option(
    "--chain-id",
    type=click.IntRange(1, 2**63 - 1),
    help="Chain id in every signature's domain. Default: a random one in "
    "[2**40, 2**48), so transactions signed for another network are refused here.",
)
@click.option(
    "--view-timeout-ms", type=click.IntRange(1, 3_600_000), default=1000, show_default=True
)
@click.option("--genesis-time-ms", type=click.IntRange(0), help="Default: now.")
@click.option(
    "--host-of",
    "host_of",
    multiple=True,
    metavar="NAME=HOST",
    help="Address peers use to reach validator NAME (default: its listen_host).",
)
@click.option(
    "--fund",
    multiple=True,
    metavar="ADDRESS",
    help="Give this 0x address 1,000,000 units of collateral (repeatable).",
)
@click.option(
    "--l1-deployer",
    metavar="ADDRESS",
    help="The L1 account that will deploy the contracts (`seqnet l1 deploy`): genesis "
    "names the Commitments address it will create as verifying_contract, and its "
    "CollateralToken as the collateral token. Without it the chain has no L1.",
)
@click.option(
    "--l1-deployer-nonce",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="The deployer's L1 nonce when it deploys (its transaction count by then).",
)
@click.option("--install", is_flag=True, help="Also write the genesis into every --validator home.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def new(
    out: Path,
    homes: tuple[Path, ...],
    chain_id: int | None,
    view_timeout_ms: int,
    genesis_time_ms: int | None,
    host_of: tuple[str, ...],
    fund: tuple[str, ...],
    l1_deployer: str | None,
    l1_deployer_nonce: int,
    install: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Write a genesis whose validators are the given node homes, in order.

    Validator 0 becomes the execution admin, bridge and oracle. A home whose
    node listens on 0.0.0.0 needs --host-of NAME=HOST. With --install each
    home's genesis.json is replaced (refused if the home's data/ is not empty:
    that node has already run another chain).

    \b
    Example (three homes on one machine):
      seqnet genesis new --out genesis.json --validator a --validator b \\
          --validator c --install
    """
    if out.exists() and not force:
        raise click.ClickException(f"{out} already exists (use --force to replace it)")
    hosts = _parse_hosts(host_of)
    try:
        funded = [bytes.fromhex(a.removeprefix("0x")) for a in fund]
    except ValueError as exc:
        raise click.BadParameter("addresses are 0x hex", param_hint="--fund") from exc
    verifying_contract = bytes(20)
    collateral_token = b""
    if l1_deployer is not None:
        from sequencer_net.l1.deploy import predict_addresses

        deployer = _address(l1_deployer, "--l1-deployer")
        predicted = predict_addresses(deployer, l1_deployer_nonce)
        verifying_contract = predicted.commitments
        collateral_token = predicted.collateral_token
    now_ms = genesis_time_ms if genesis_time_ms is not None else int(time.time() * 1000)
    if chain_id is None:
        chain_id = random_chain_id()
    validators = []
    configs = []
    try:
        for home in homes:
            config = load_config(home)
            configs.append(config)
            key = PrivateKey(load_validator_secret(config))
            host = hosts.get(config.name, config.p2p.listen_host)
            if host in _WILDCARD:
                raise click.ClickException(
                    f"{config.home}: {config.name} listens on {host!r}; "
                    f"say where peers reach it with --host-of {config.name}=HOST"
                )
            api_host = hosts.get(config.name, config.api.listen_host)
            validators.append(
                GenesisValidator(
                    name=config.name,
                    address=key.address,
                    public_key=key.public_key,
                    weight=1,
                    p2p_host=host,
                    p2p_port=config.p2p.listen_port,
                    api_host=host if api_host in _WILDCARD else api_host,
                    api_port=config.api.listen_port,
                )
            )
        execution = default_execution_genesis(
            validators[0].address,
            chain_id=chain_id,
            genesis_time_ms=now_ms,
            reporters=oracle_reporters(validators),
            funded_accounts=funded,
        )
        document = Genesis(
            chain_id=chain_id,
            genesis_time_ms=now_ms,
            verifying_contract=verifying_contract,
            view_timeout_ms=view_timeout_ms,
            validators=tuple(validators),
            execution=msgspec.structs.replace(
                execution,
                collateral_token=collateral_token,
                # Collateral comes from the L1 bridge: no faucet key.
                bridge=bytes(20) if collateral_token else execution.bridge,
            ),
        )
        if install:
            for config in configs:
                if config.data_path.exists() and any(config.data_path.iterdir()):
                    raise click.ClickException(
                        f"{config.data_path} is not empty: {config.name} has run another "
                        "chain; move its data away first"
                    )
        write_genesis(out, document)
        if install:
            for config in configs:
                write_genesis(config.genesis_path, document)
    except (ConfigError, GenesisError, KeystoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    summary = _summary(document)
    summary["file"] = str(out.resolve())
    summary["installed"] = [str(c.genesis_path) for c in configs] if install else []
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"Wrote {summary['file']}")
    _echo_summary(summary)


def _address(text: str, option: str) -> bytes:
    body = text.removeprefix("0x")
    try:
        address = bytes.fromhex(body)
    except ValueError as exc:
        raise click.BadParameter(
            "expected a 0x-prefixed 20-byte hex address", param_hint=option
        ) from exc
    if len(address) != 20:
        raise click.BadParameter("expected a 0x-prefixed 20-byte hex address", param_hint=option)
    return address


def _summary(document: Genesis) -> dict[str, Any]:
    validator_set = document.validator_set()
    return {
        "chain_id": document.chain_id,
        "genesis_hash": "0x" + document.genesis_block().digest().hex(),
        "genesis_time_ms": document.genesis_time_ms,
        "verifying_contract": "0x" + document.verifying_contract.hex(),
        "collateral_token": "0x" + document.execution.collateral_token.hex()
        if document.execution.collateral_token
        else None,
        "total_weight": validator_set.total_weight,
        "quorum_weight": validator_set.quorum_weight,
        "validators": [
            {
                "name": v.name,
                "address": "0x" + v.address.hex(),
                "weight": v.weight,
                "p2p": f"{v.p2p_host}:{v.p2p_port}",
                "api": f"{v.api_host}:{v.api_port}",
            }
            for v in document.validators
        ],
    }


def _echo_summary(summary: dict[str, Any]) -> None:
    click.echo(f"  chain id:      {summary['chain_id']}")
    click.echo(f"  genesis hash:  {summary['genesis_hash']}")
    click.echo(f"  quorum:        {summary['quorum_weight']} of {summary['total_weight']} weight")
    if summary["verifying_contract"] != "0x" + "00" * 20:
        click.echo(f"  L1 contract:   {summary['verifying_contract']} (Commitments)")
        click.echo(f"  L1 collateral: {summary['collateral_token']}")
    for index, v in enumerate(summary["validators"]):
        click.echo(
            f"  [{index}] {v['name']:<12} {v['address']}  weight {v['weight']}  "
            f"p2p {v['p2p']}  api {v['api']}"
        )
    for path in summary.get("installed", []):
        click.echo(f"  installed in {path}")


@genesis.command(name="show")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show(file: Path, as_json: bool) -> None:
    """Check a genesis file and print its hash and validators.

    Every validator of a network must print the same genesis hash.

    \b
    Example:
      seqnet genesis show ~/seqnet/genesis.json --json
    """
    try:
        document = load_genesis(file)
    except GenesisError as exc:
        raise click.ClickException(str(exc)) from exc
    summary = _summary(document)
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{file}: valid")
    _echo_summary(summary)
