"""`seqnet testnet up|status|l1|down`: a local multi-node network on this machine.

See docs/testnet.md for the manifest format, the live view and the directory
layout.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sequencer_net.testnet.manifest import (
    MIN_ROTATE_EVERY,
    MIXES,
    Manifest,
    ManifestError,
    Mix,
    load_manifest,
)
from sequencer_net.testnet.network import (
    DEFAULT_BASE_PORT,
    DEFAULT_TESTNET_DIR,
    GENESIS_FILE,
    NODE_COMMAND_TEMPLATE,
    READY_TIMEOUT_S,
    Testnet,
    TestnetError,
    clean_testnet_dir,
    start_testnet,
)
from sequencer_net.testnet.processes import STOP_GRACE_S

_DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_TESTNET_DIR,
    show_default=True,
    help="Testnet directory: genesis, node homes, logs and testnet.json.",
)


def testnet_domain(net: Testnet) -> Any:
    """The signing domain of the testnet's chain (from its genesis.json)."""
    from sequencer_net.home.genesis import GenesisError, load_genesis

    genesis_path = net.directory / GENESIS_FILE
    try:
        return load_genesis(genesis_path).domain()
    except (GenesisError, OSError) as exc:
        raise click.ClickException(f"cannot read the testnet's genesis: {exc}") from exc


@click.group()
def testnet() -> None:
    """Run a local multi-node testnet and its L1: `up`, `status`, `l1`, `down`.

    \b
      seqnet testnet up -n 4                  # start, load, live view; Ctrl-C stops
      seqnet testnet up --detach              # start and return once it commits
      seqnet testnet up --no-l1               # without the local L1 (anvil)
      seqnet testnet status --json
      seqnet testnet l1                       # the L1: contracts, postings, deposits
      seqnet load --rate 500 --duration 30    # load a detached testnet
      seqnet testnet down --clean
    """


@testnet.command()
@click.option(
    "-n",
    "--validators",
    type=click.IntRange(1, 64),
    default=None,
    help="Number of validators [default: 4, or the manifest's].",
)
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A testnet manifest (testnet/*.toml): network, load, perturbations.",
)
@_DIR_OPTION
@click.option(
    "--base-port",
    type=click.IntRange(1024, 65000),
    default=DEFAULT_BASE_PORT,
    show_default=True,
    help="Node I uses p2p port BASE+I and API port BASE+100+I.",
)
@click.option("--detach", is_flag=True, help="Return once the network commits; leave it running.")
@click.option("--no-load", is_flag=True, help="Run without the load generator.")
@click.option(
    "--no-l1",
    is_flag=True,
    help="Run without the local L1 (anvil and the contracts); default: the manifest's "
    "[l1] enabled, true.",
)
@click.option(
    "--rate", type=click.FloatRange(min=0), help="Load in tx/s [default: manifest's, 200]."
)
@click.option(
    "--mix",
    type=click.Choice(MIXES),
    default=None,
    help="What the load sends: dex (trader traffic on the testnet's markets), mixed "
    "(4 in 5 dex, the rest rollup blobs) or rollup [default: manifest's, mixed].",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop after this many seconds [default: the manifest's, else until Ctrl-C].",
)
@click.option("--fresh", is_flag=True, help="Delete an earlier testnet's data in --dir first.")
@click.option(
    "--rotate-every",
    type=click.IntRange(MIN_ROTATE_EVERY, 2**32 - 1),
    default=None,
    help="Start a new validator-set epoch every this many heights (the weights change) "
    "[default: the manifest's, else one epoch].",
)
@click.option(
    "--rotate-members",
    is_flag=True,
    default=None,
    help="With --rotate-every: epoch k leaves out validator k mod n instead of changing "
    "weights, so one validator joins and one leaves at every boundary (use -n 5 or more "
    "to keep a quorum with any one node down) [default: the manifest's].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=READY_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for every node to commit its first block.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--node-command", hidden=True, help="Node argv template with {home} (tests).")
def up(
    validators: int | None,
    manifest_path: Path | None,
    directory: Path,
    base_port: int,
    detach: bool,
    no_load: bool,
    no_l1: bool,
    rate: float | None,
    mix: Mix | None,
    duration: float | None,
    fresh: bool,
    rotate_every: int | None,
    rotate_members: bool | None,
    timeout: float,
    as_json: bool,
    node_command: str | None,
) -> None:
    """Start a local testnet: genesis, the L1, one process per validator, load, live view.

    Writes a genesis (listing the testnet's markets) and a home per validator
    under --dir, starts anvil on BASE+190 with the contracts deployed at the
    addresses genesis and the validators' [l1] name (unless --no-l1), starts
    `seqnet node run` for each validator, and waits until every node has
    committed a block. Then, unless --detach, it submits load (by default
    mostly trader traffic: --mix), applies the manifest's perturbations and
    shows a live view of the nodes and the markets until Ctrl-C (or
    --duration), stops the nodes and prints a summary, exiting 1 if the nodes
    disagree on a block.
    """
    console = Console(stderr=as_json)
    try:
        manifest = load_manifest(manifest_path) if manifest_path else Manifest()
        manifest = manifest.with_overrides(
            validators=validators,
            rate=0.0 if no_load else rate,
            duration_s=duration,
            mix=mix,
            l1=False if no_l1 else None,
            rotate_every=rotate_every,
            rotate_members=rotate_members or None,
        )
    except ManifestError as exc:
        raise click.ClickException(str(exc)) from exc
    command = shlex.split(node_command) if node_command else list(NODE_COMMAND_TEMPLATE)
    n = manifest.network.validators
    l1 = " and the L1 (anvil.log)" if manifest.l1.enabled else ""
    with console.status(f"starting {n} validators{l1} in {directory} (logs: nodeI/node.log)"):
        try:
            net = start_testnet(
                directory,
                manifest=manifest,
                base_port=base_port,
                node_command=command,
                ready_timeout_s=timeout,
                fresh=fresh,
                # In the foreground this command supervises the nodes to the end:
                # killed, it takes them with it. Detached, they outlive it.
                die_with_starter=not detach,
            )
        except TestnetError as exc:
            raise click.ClickException(str(exc)) from exc
    if detach:
        _print_started(net, console, as_json)
        return
    sys.exit(_run_foreground(net, console, as_json))


def _print_started(net: Testnet, console: Console, as_json: bool) -> None:
    report = net.status_report()
    if as_json:
        click.echo(json.dumps({"directory": str(net.directory), **report}))
        return
    table = Table(title=f"testnet running in {net.directory}")
    for column in ("node", "height", "api", "pid", "log"):
        table.add_column(column)
    for node, row in zip(net.nodes, report["nodes"], strict=True):
        table.add_row(
            node.name, str(row["height"]), node.api_url, str(node.pid), str(node.log_path)
        )
    console.print(table)
    if net.l1 is not None:
        console.print(
            f"L1: {net.l1.rpc_url} (anvil pid {net.l1.pid}, log {net.l1.log_path}); "
            f"Commitments {net.l1.addresses.checksum('commitments')}",
            markup=False,
        )
    console.print(
        f"Load it:  seqnet load --dir {net.directory} --rate 200 --duration 30\n"
        f"The L1:   seqnet testnet l1 --dir {net.directory}\n"
        f"Watch it: seqnet testnet status --dir {net.directory}\n"
        f"Stop it:  seqnet testnet down --dir {net.directory}"
    )


def _run_foreground(net: Testnet, console: Console, as_json: bool) -> int:
    import trio

    from sequencer_net.testnet.load import transaction_signer
    from sequencer_net.testnet.session import run_session, summarize

    started = time.monotonic()
    try:
        signer = transaction_signer(testnet_domain(net))
        state = trio.run(lambda: run_session(net, signer=signer, console=console, live=not as_json))
        summary = summarize(state, time.monotonic() - started)
    finally:
        what = "the nodes and the L1" if net.l1 is not None else "the nodes"
        with console.status(f"stopping {what} (SIGTERM, then SIGKILL after a grace period)"):
            outcomes = net.stop()
    summary["stopped"] = {o.identity.pid: o.how for o in outcomes}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        _print_summary(summary, console)
    if net.manifest.network.equivocators:
        # A fork attack is meant to split the nodes: it passes when the L1 caught it.
        attack = summary.get("attack") or {}
        caught = attack.get("frozen") and attack.get("fork_withdrawals_paid") == 0
        return 0 if caught and attack.get("escape_hatch_paid") else 1
    return 1 if summary["agreement"]["agree"] is False else 0


def _print_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table(title=f"testnet summary after {summary['elapsed_s']:g} s")
    for column in ("node", "up", "height", "last hash", "state root", "txs", "restarts"):
        table.add_column(column)
    for node in summary["nodes"]:
        table.add_row(
            node["name"],
            "yes" if node["up"] else "no",
            str(node["height"]),
            (node["last_hash"] or "-")[:18],
            (node["state_root"] or "-")[:18],
            str(node["committed_txs"]),
            str(node["restarts"]),
        )
    console.print(table)
    agreement = summary["agreement"]
    verdict = {True: "[green]agree[/]", False: "[red]DISAGREE[/]", None: "unknown"}
    console.print(f"block at height {agreement['height']}: nodes {verdict[agreement['agree']]}")
    load = summary["load"]
    if load:
        latency = load["latency_ms"]
        console.print(
            f"load: sent {load['sent']:,}, accepted {load['accepted']:,}, rejected "
            f"{load['rejected']:,}, {load['achieved_tps']:,} tx/s; submit->commit p50 "
            f"{latency['p50']} ms, p99 {latency['p99']} ms ({latency['samples']} samples)"
        )
        if load["errors"]:
            console.print(f"rejections: {load['errors']}", markup=False)
    l1 = summary.get("l1")
    chain = l1.get("chain") if l1 else None
    if chain:
        console.print(
            f"L1: block {chain['head']}, posted height {chain['committed_height']}, "
            f"deposits {chain['deposits']}, withdrawals {chain['withdrawals']}, "
            f"forced {chain['forced']}"
            + (f" (last read failed: {chain['error']})" if chain.get("error") else ""),
            markup=False,
        )
    console.print(
        f"logs and data: {summary['directory']} (remove: seqnet testnet down --clean)",
        markup=False,
    )


@testnet.command()
@_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help='Print {"nodes": [...]} as JSON.')
def status(directory: Path, as_json: bool) -> None:
    """Each node's height, last committed block hash, state root and process.

    JSON: {"nodes": [{"name", "height", "last_hash", "state_root", "view",
    "peers", "up", "running", "paused", "pid", "api_url"}, ...], "l1": {"rpc_url",
    "running", "pid", "deployed", "log", "collateral_token", "commitments",
    "inbox", "bridge"} or null}; a node that does not answer has "up": false
    and null height and hashes.
    """
    try:
        net = Testnet.load(directory)
    except TestnetError as exc:
        raise click.ClickException(str(exc)) from exc
    report = net.status_report()
    if as_json:
        click.echo(json.dumps(report))
        return
    table = Table(title=f"testnet in {net.directory}")
    for column in ("node", "up", "height", "last hash", "state root", "peers", "pid"):
        table.add_column(column)
    for row in report["nodes"]:
        state = "yes" if row["up"] else ("paused" if row["paused"] else "no")
        peers = row["peers"]
        table.add_row(
            row["name"],
            state,
            "-" if row["height"] is None else str(row["height"]),
            (row["last_hash"] or "-")[:18],
            (row["state_root"] or "-")[:18],
            "-" if peers is None else str(len(peers)),
            "-" if row["pid"] is None else str(row["pid"]),
        )
    console = Console()
    console.print(table)
    l1 = report["l1"]
    if l1 is not None:
        state = f"anvil pid {l1['pid']}" if l1["running"] else "anvil NOT running"
        console.print(
            f"L1: {l1['rpc_url']} ({state}); Commitments {l1['commitments']} "
            f"(seqnet testnet l1 for its state)",
            markup=False,
        )


@testnet.command("l1")
@_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def l1_command(directory: Path, as_json: bool) -> None:
    """The testnet's L1: anvil, the contracts, what they hold and each node's view.

    Reads the chain (head block; Commitments' latest posted height, state
    height and posting block; the Bridge's deposit count, withdrawals and
    escape state; the Inbox's forced transactions) and each node's `l1` object
    in /v1/status (its poster and watcher).

    JSON: {"l1": {rpc_url, running, pid, addresses...}, "chain": {head,
    committed_height, committed_state_height, last_post_block, epoch,
    deposits, withdrawals, forced, escape_open, error}, "nodes": [{"name",
    "l1": {...} or null}]}.
    """
    from sequencer_net.testnet.l1 import L1Observer

    try:
        net = Testnet.load(directory)
    except TestnetError as exc:
        raise click.ClickException(str(exc)) from exc
    if net.l1 is None:
        raise click.ClickException(f"the testnet in {directory} runs without an L1 (--no-l1)")
    report = net.l1_report()
    chain = L1Observer(net.l1.rpc_url, net.l1.addresses).read()
    nodes = [
        {"name": node.name, "l1": status.get("l1") if status else None}
        for node, status in zip(net.nodes, net.statuses(), strict=True)
    ]
    if as_json:
        click.echo(json.dumps({"l1": report, "chain": chain.to_json(), "nodes": nodes}))
        return
    console = Console()
    assert report is not None
    state = f"anvil pid {report['pid']}" if report["running"] else "anvil NOT running"
    console.print(f"L1 {report['rpc_url']} ({state}, log {report['log']})", markup=False)
    for name in ("commitments", "bridge", "inbox", "collateral_token"):
        console.print(f"  {name:<17}{report[name]}", markup=False)
    if chain.error is not None:
        console.print(f"  chain: cannot read it: {chain.error}", markup=False)
    else:
        console.print(
            f"  head block {chain.head}; posted height {chain.committed_height} "
            f"(state height {chain.committed_state_height}) in L1 block "
            f"{chain.last_post_block}; epoch {chain.epoch}\n"
            f"  deposits {chain.deposits}, withdrawals {chain.withdrawals}, forced "
            f"transactions {chain.forced}; escape {'OPEN' if chain.escape_open else 'closed'}",
            markup=False,
        )
    table = Table(title="each node's view (/v1/status l1)")
    for column in ("node", "posted", "behind", "backlog", "gas/post", "posts", "deposits",
                   "forced", "last error"):  # fmt: skip
        table.add_column(column)
    for row in nodes:
        l1 = row["l1"] if isinstance(row["l1"], dict) else {}

        def cell(key: str, node_l1: dict[str, Any] = l1) -> str:
            value = node_l1.get(key)
            return "-" if value is None else str(value)

        table.add_row(
            row["name"],
            cell("posted_height"),
            cell("l1_blocks_behind"),
            cell("backlog"),
            cell("gas_per_posting"),
            cell("postings"),
            cell("deposits_seen"),
            cell("forced_seen"),
            cell("last_error")[:40],
        )
    console.print(table)


@testnet.command()
@_DIR_OPTION
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=STOP_GRACE_S,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL.",
)
@click.option("--clean", is_flag=True, help="Also delete the genesis, node homes and logs.")
def down(directory: Path, grace: float, clean: bool) -> None:
    """Stop the nodes and the anvil this testnet started, and nothing else.

    A recorded PID is signalled only if /proc shows it still runs the exact
    command line we started, since the time we started it. SIGTERM first,
    SIGKILL after --grace seconds. Data stays unless --clean.
    """
    if not (directory / "testnet.json").exists():
        click.echo(f"no testnet in {directory}; nothing to stop")
    else:
        try:
            net = Testnet.load(directory)
        except TestnetError as exc:
            raise click.ClickException(str(exc)) from exc
        outcomes = {o.identity.pid: o.how for o in net.stop(grace_s=grace)}
        named = [(node.name, node.pid) for node in net.nodes]
        named += [("anvil", net.l1.pid)] if net.l1 is not None else []
        for name, pid in named:
            how = outcomes.get(pid, "never started") if pid else "never started"
            click.echo(f"{name}: {how}" + (f" (pid {pid})" if pid else ""))
        if "survived" in outcomes.values():
            raise click.ClickException("some nodes survived SIGKILL; see the lines above")
    if clean:
        try:
            removed = clean_testnet_dir(directory)
        except TestnetError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"removed {len(removed)} testnet files and directories from {directory}")
