"""`seqnet load`: submit signed transactions at a fixed rate and report what happened."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from sequencer_net.testnet.manifest import (
    DEFAULT_LOAD_ACCOUNTS,
    DEFAULT_LOAD_SEED,
    MIXES,
    Mix,
)
from sequencer_net.testnet.network import DEFAULT_TESTNET_DIR


@click.command()
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), required=True, help="tx/s.")
@click.option(
    "--duration", type=click.FloatRange(min=0, min_open=True), required=True, help="Seconds."
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Load the testnet in this directory [default: {DEFAULT_TESTNET_DIR}].",
)
@click.option(
    "--node",
    "node_urls",
    multiple=True,
    help="A node API URL (repeatable) instead of a testnet directory.",
)
@click.option(
    "--accounts",
    type=click.IntRange(min=1),
    default=None,
    help=f"Sending accounts [default: the testnet's, else {DEFAULT_LOAD_ACCOUNTS}].",
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**64 - 1),
    default=None,
    help=f"Account and payload seed [default: the testnet's, else {DEFAULT_LOAD_SEED}].",
)
@click.option(
    "--namespace", type=click.IntRange(0, 2**32 - 1), default=None, help="Rollup id of the blobs."
)
@click.option(
    "--encrypt",
    is_flag=True,
    help="Seal every transaction to the network's threshold key (GET /v1/validators).",
)
@click.option(
    "--mix",
    type=click.Choice(MIXES),
    default=None,
    help="dex (trader traffic on the testnet's markets), mixed (4 in 5 dex) or rollup "
    "[default: the testnet's; with --node, rollup].",
)
@click.option(
    "--genesis",
    "genesis_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Genesis to sign for, with --node [default: chain id from the node, no L1 contract].",
)
@click.option(
    "--start-nonce",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="First nonce of every account, with --node (with --dir, nonces continue).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def load(
    rate: float,
    duration: float,
    directory: Path | None,
    node_urls: tuple[str, ...],
    accounts: int | None,
    seed: int | None,
    namespace: int | None,
    encrypt: bool,
    mix: Mix | None,
    genesis_path: Path | None,
    start_nonce: int,
    as_json: bool,
) -> None:
    """Submit signed transactions at RATE tx/s for DURATION seconds.

    Accounts are derived from --seed, the same derivation `testnet up` funds in
    genesis; each account sends increasing nonces (continuing from the last
    run against the same --dir), spread over the nodes. The dex and mixed
    mixes trade the markets a `testnet up` genesis lists and post their
    oracle prices with the seed's market operator key, which that genesis
    makes an oracle (docs/testnet.md). The report gives sent/accepted/rejected,
    the achieved tx/s and submit->commit latency p50/p99 measured on a sample
    of transactions.
    """
    import trio

    from consensus.encoding import Domain
    from sequencer_net.client import DEFAULT_FEES, FeeSchedule, SeqnetApiError, SeqnetClient
    from sequencer_net.testnet.accounts import (
        LOAD_NONCES_FILE,
        OPERATOR_SLOT,
        read_next_nonces,
        write_next_nonces,
    )
    from sequencer_net.testnet.load import LoadConfig, LoadGenerator, transaction_signer
    from sequencer_net.testnet.network import Testnet, TestnetError

    console = Console(stderr=True)
    if node_urls and directory is not None:
        raise click.UsageError("give --dir or --node, not both")
    nonces_path: Path | None = None
    fees: FeeSchedule = DEFAULT_FEES  # --node without --genesis: the default schedule
    defaults = {"accounts": DEFAULT_LOAD_ACCOUNTS, "seed": DEFAULT_LOAD_SEED, "namespace": 1}
    default_mix: Mix = "rollup"  # an arbitrary network need not list the testnet's markets
    genesis_time_s: int | None = None
    if node_urls:
        urls = list(node_urls)
        if genesis_path is not None:
            from sequencer_net.home.genesis import load_genesis

            genesis = load_genesis(genesis_path)
            domain, fees = genesis.domain(), FeeSchedule.of_genesis(genesis)
            genesis_time_s = genesis.execution.genesis_time
        else:
            try:
                with SeqnetClient(urls[0], timeout=5.0) as client:
                    status = client.status()
                domain = Domain(
                    int(status["chain_id"]),
                    bytes.fromhex(str(status["verifying_contract"]).removeprefix("0x")),
                    bytes.fromhex(str(status["genesis_hash"]).removeprefix("0x")),
                )
            except (SeqnetApiError, KeyError, ValueError) as exc:
                raise click.ClickException(
                    f"cannot read the signing domain from {urls[0]}: {exc}"
                ) from exc
    else:
        from sequencer_net.cli.testnet import testnet_domain
        from sequencer_net.testnet.session import testnet_genesis_time_s

        try:
            net = Testnet.load(directory or DEFAULT_TESTNET_DIR)
        except TestnetError as exc:
            raise click.ClickException(str(exc)) from exc
        urls = [node.api_url for node in net.nodes]
        domain = testnet_domain(net)
        fees = _testnet_fees(net)
        spec = net.manifest.load
        defaults = {"accounts": spec.accounts, "seed": spec.seed, "namespace": spec.namespace}
        default_mix = spec.mix
        genesis_time_s = testnet_genesis_time_s(net)
        nonces_path = net.directory / LOAD_NONCES_FILE
    config = LoadConfig(
        rate=rate,
        duration_s=duration,
        accounts=accounts if accounts is not None else defaults["accounts"],
        seed=seed if seed is not None else defaults["seed"],
        namespace=namespace if namespace is not None else defaults["namespace"],
        mix=mix if mix is not None else default_mix,
        genesis_time_s=genesis_time_s,
    )
    if nonces_path is not None:
        first_nonces = read_next_nonces(nonces_path, config.seed, config.accounts)
        operator_nonce = read_next_nonces(nonces_path, config.seed, 1, OPERATOR_SLOT)[0]
    else:
        first_nonces, operator_nonce = [start_nonce] * config.accounts, start_nonce
    signer = transaction_signer(domain, fees=fees)
    chain_height = None
    if encrypt:
        signer, chain_height = _encrypting(signer, domain, urls[0])
    generator = LoadGenerator(
        urls,
        config,
        signer,
        first_nonces=first_nonces,
        operator_nonce=operator_nonce,
        chain_height=chain_height,
    )
    console.print(
        f"load: {rate:g} tx/s{' encrypted' if encrypt else ''} for {duration:g} s, "
        f"{config.mix} mix, from {config.accounts} "
        f"accounts (seed {config.seed}) to {len(urls)} node(s)"
    )
    interrupted = trio.run(_run_with_progress, generator, console, not as_json)
    if nonces_path is not None:
        write_next_nonces(nonces_path, config.seed, generator.next_nonces())
        write_next_nonces(
            nonces_path, config.seed, [generator.next_operator_nonce()], OPERATOR_SLOT
        )
    report: dict[str, Any] = {
        "rate": rate,
        "duration_s": duration,
        "mix": config.mix,
        "encrypted": encrypt,
        "accounts": config.accounts,
        "seed": config.seed,
        "nodes": urls,
        "interrupted": interrupted,
        **generator.stats.summary(),
    }
    if as_json:
        click.echo(json.dumps(report))
    else:
        _print_report(report, console)
    if report["sent"] and not report["accepted"]:
        sys.exit(1)


ENCRYPTED_LOAD_EXPIRY_BLOCKS = 1_000_000
"""Blocks after the node's height the load's encrypted transactions stay orderable."""


def _encrypting(signer: Any, domain: Any, url: str) -> tuple[Any, Any]:
    """`signer` sealing to the keys the node reports (`--encrypt`), and the chain
    height it reads to pick the epoch's key (the load keeps it current)."""
    from sequencer_net.client import SeqnetApiError, SeqnetClient
    from sequencer_net.client.encrypted import NetworkKeys, NoNetworkKey
    from sequencer_net.testnet.load import ChainHeight, encrypting_signer

    try:
        with SeqnetClient(url, timeout=5.0) as client:
            keys = NetworkKeys.from_validators(client.validators())
            height = ChainHeight(int(client.status()["height"]))
    except (SeqnetApiError, NoNetworkKey, KeyError, ValueError) as exc:
        raise click.ClickException(f"--encrypt: cannot read the network key: {exc}") from exc
    return encrypting_signer(signer, domain, keys, height, ENCRYPTED_LOAD_EXPIRY_BLOCKS), height


def _testnet_fees(net: Any) -> Any:
    """The fee schedule in the testnet's genesis.json."""
    from sequencer_net.client import FeeSchedule
    from sequencer_net.home.genesis import GenesisError, load_genesis
    from sequencer_net.testnet.network import GENESIS_FILE

    try:
        return FeeSchedule.of_genesis(load_genesis(net.directory / GENESIS_FILE))
    except (GenesisError, OSError) as exc:
        raise click.ClickException(f"cannot read the testnet's genesis: {exc}") from exc


async def _run_with_progress(generator: Any, console: Console, show: bool) -> bool:
    """Run the generator with a progress line; Ctrl-C ends it early. True if interrupted."""
    import trio
    from rich.live import Live

    interrupted = False

    async def watch_signals(cancel_scope: trio.CancelScope) -> None:
        nonlocal interrupted
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                interrupted = True
                cancel_scope.cancel()
                return

    def progress() -> str:
        s = generator.stats.summary(trio.current_time())
        return (
            f"t+{s['elapsed_s']:.0f}s sent {s['sent']:,} accepted {s['accepted']:,} "
            f"rejected {s['rejected']:,} ({s['achieved_tps']:,} tx/s)"
        )

    async def run(cancel_scope: trio.CancelScope) -> None:
        await generator.run()
        cancel_scope.cancel()

    async def show_progress(live: Live) -> None:
        while True:  # rendered here: the numbers read the trio clock
            live.update(progress(), refresh=True)
            await trio.sleep(0.5)

    with Live(console=console, transient=True, auto_refresh=False) as live:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_signals, nursery.cancel_scope)
            nursery.start_soon(run, nursery.cancel_scope)
            if show:
                nursery.start_soon(show_progress, live)
    return interrupted


def _print_report(report: dict[str, Any], console: Console) -> None:
    latency = report["latency_ms"]
    out = Console()
    out.print(
        f"sent {report['sent']:,}  accepted {report['accepted']:,}  rejected "
        f"{report['rejected']:,}  in {report['elapsed_s']:g} s = {report['achieved_tps']:,} tx/s"
        + (" (interrupted)" if report["interrupted"] else "")
    )
    out.print(
        f"submit->commit latency: p50 {latency['p50']} ms, p99 {latency['p99']} ms "
        f"({latency['samples']} samples, {latency['unconfirmed']} not seen committed)"
    )
    if report["errors"]:
        out.print(f"rejections: {report['errors']}", markup=False)
