"""`seqnet watch`: a standalone evidence watcher for anyone who runs no validator."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import click


@click.command(name="watch")
@click.option("--rpc", "rpc_url", required=True, help="The L1 JSON-RPC endpoint.")
@click.option("--commitments", required=True, help="The Commitments contract address (0x...).")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding the 0x-hex private key of the L1 account that pays for evidence.",
)
@click.option(
    "--api",
    "api_urls",
    required=True,
    multiple=True,
    help="A node API to follow (repeat for several nodes).",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the scan position and the evidence settled here (default: in memory only).",
)
@click.option("--confirmations", default=2, show_default=True, type=click.IntRange(0, 1_000))
@click.option("--poll-ms", default=2_000, show_default=True, type=click.IntRange(50, 600_000))
@click.option("--once", is_flag=True, help="Run a single round and exit (tests, cron).")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the result as JSON.")
def watch(
    rpc_url: str,
    commitments: str,
    key_file: Path,
    api_urls: tuple[str, ...],
    state_dir: Path | None,
    confirmations: int,
    poll_ms: int,
    once: bool,
    as_json: bool,
) -> None:
    """Watch nodes and the L1; prove equivocation to Commitments.

    Each round submits the equivocation evidence the nodes hold (GET
    /v1/evidence) that the contract takes and has not recorded, and compares
    every header posted to Commitments with the nodes' finalized blocks: a
    conflicting one is proven from the posting's signatures and the node's
    certificate. The key's account pays the gas. See docs/l1.md, "Watchers".

    \b
    Example: follow two nodes until Ctrl-C
      seqnet watch --rpc http://127.0.0.1:8545 --commitments 0xe7f1... \\
          --key-file watcher.key --api http://127.0.0.1:26700 --api http://10.0.0.2:26700
    \b
    Example: one round from cron
      seqnet watch ... --once --json
    """
    import trio
    from web3 import Web3

    from sequencer_net.l1.evidence_watch import EvidenceWatcher, SourceUnavailable, load_l1_key
    from sequencer_net.l1.link import L1Link, L1Unavailable
    from sequencer_net.l1.node_api import NodeApiSource
    from sequencer_net.l1.status import L1Status

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        key = load_l1_key(key_file)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    address = _address(commitments)
    link = L1Link.connect(rpc_url, commitments=address)
    try:
        link.head()
        code = link.guarded(lambda: link.w3.eth.get_code(Web3.to_checksum_address(address)))
    except L1Unavailable as exc:
        raise click.ClickException(f"L1 unreachable at {rpc_url}: {exc}") from None
    if not code:
        raise click.ClickException(f"no contract at {commitments} on {rpc_url}")
    source = NodeApiSource(api_urls)
    for url in api_urls:
        try:
            node = source.status(url)
        except SourceUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        named = node.get("verifying_contract")
        if isinstance(named, str) and named.lower() not in ("0x" + address.hex(), "0x" + "00" * 20):
            raise click.ClickException(
                f"the node at {url} signs for the contract {named}, not {commitments}"
            )
    status = L1Status(enabled=True)
    watcher = EvidenceWatcher(
        link=link,
        source=source,
        key=key,
        data_dir=state_dir,
        status=status,
        confirmations=confirmations,
        poll_s=poll_ms / 1000,
    )
    try:
        if not once:
            click.echo(
                f"watching {', '.join(api_urls)} and Commitments {commitments} "
                f"as 0x{key.address.hex()} (Ctrl-C stops)",
                err=True,
            )
            with contextlib.suppress(KeyboardInterrupt):
                trio.run(watcher.run)
            return
        try:
            caught_up = trio.run(watcher.watch_round)
        except L1Unavailable as exc:
            raise click.ClickException(str(exc)) from None
    finally:
        source.close()
    result: dict[str, Any] = {
        "evidence_submitted": status.evidence_submitted,
        "frozen": status.frozen,
        "fork_height": status.fork_height,
        "scanned_to_l1_block": watcher.state.block,
        "caught_up": caught_up,
        "pending_postings": len(watcher.state.pending),
        "last_error": status.last_error,
    }
    if as_json:
        click.echo(json.dumps(result))
    else:
        for name, value in result.items():
            click.echo(f"{name:<20}  {'-' if value is None else value}")


def _address(value: str) -> bytes:
    if not (value.startswith("0x") and len(value) == 42):
        raise click.BadParameter("expected 0x and 40 hex digits", param_hint="--commitments")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise click.BadParameter(
            "expected 0x and 40 hex digits", param_hint="--commitments"
        ) from None
