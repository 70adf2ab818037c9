"""`seqnet subscribe`: print a namespace's verified blocks as they finalize."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from sequencer_net.testnet.network import DEFAULT_TESTNET_DIR, GENESIS_FILE


@click.command()
@click.option(
    "--node",
    "node_urls",
    multiple=True,
    help="A node API URL, e.g. http://127.0.0.1:26700 (repeatable: the next is used "
    "when one fails) [default: the nodes of the --dir testnet].",
)
@click.option(
    "--namespace", type=click.IntRange(0, 2**32 - 1), required=True, help="The rollup id."
)
@click.option(
    "--from",
    "from_height",
    type=click.IntRange(1, 2**63 - 1),
    default=1,
    show_default=True,
    help="First height to print.",
)
@click.option(
    "--genesis",
    "genesis_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The genesis file you trust: its validators (each block's epoch's set, "
    "when the genesis schedules rotations) must sign every block "
    f"[default: DIR/{GENESIS_FILE} with --dir, else {DEFAULT_TESTNET_DIR / GENESIS_FILE} "
    "if it exists].",
)
@click.option(
    "--genesis-hash",
    "genesis_hash",
    default=None,
    metavar="0xHASH",
    help="The genesis digest you pin (nodes report it as genesis_hash in /v1/status): "
    "the genesis file must be the one with this digest, so a copy from anywhere will do.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A local testnet's directory (its genesis and node URLs).",
)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="--no-verify skips the finalization certificate (no genesis needed): "
    "for debugging only, a node can then feed you anything.",
)
@click.option(
    "--order-later",
    is_flag=True,
    help="Print each block as soon as its inclusion is verified (order_pending), and "
    "again once its order is verified, instead of once with its order.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N lines.")
def subscribe(
    node_urls: tuple[str, ...],
    namespace: int,
    from_height: int,
    genesis_path: Path | None,
    genesis_hash: str | None,
    directory: Path | None,
    verify: bool,
    order_later: bool,
    as_json: bool,
    count: int | None,
) -> None:
    """Print NAMESPACE's transactions of every block from --from on, verified.

    Each block's finalization certificate is checked against the validators
    of the genesis file (of the block's epoch, in that epoch's signing
    domain, when the genesis rotates its set), and the transactions against
    the block's namespace root: a node that alters, adds or drops one is
    caught. On a chain with a threshold key the block's order seed is checked
    against its coin shares, and `ordered_transactions` (--json) are the
    transactions in the order the chain executed them. A dropped
    connection resumes at the next height (on the next --node if the node is
    gone), with no gap and no duplicate.

    \b
      seqnet subscribe --dir .seqnet-testnet --namespace 1 --json
      seqnet subscribe --node http://127.0.0.1:26700 --node http://127.0.0.1:26701 \\
          --genesis genesis.json --namespace 7 --from 100 --count 10
    """
    import trio

    from sequencer_net.client import SubscriptionFailed, SubscriptionVerificationError

    _log_reconnects_to_stderr()
    urls = list(node_urls) or _testnet_urls(directory)
    pinned = _pinned_hash(genesis_hash)
    verifier = _verifier(genesis_path, pinned, directory, verify, namespace, from_height)
    try:
        trio.run(
            _print_blocks, urls, namespace, from_height, verifier, as_json, count, not order_later
        )
    except SubscriptionVerificationError as exc:
        raise click.ClickException(f"verification failed: {exc}") from exc
    except SubscriptionFailed as exc:
        raise click.ClickException(str(exc)) from exc
    except ValueError as exc:  # a malformed --node URL
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        sys.exit(130)


class _StderrHandler(logging.Handler):
    """Reconnect notices on the current stderr (not the stream seen at setup)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"subscribe: {record.getMessage()}", err=True)


def _log_reconnects_to_stderr() -> None:
    logger = logging.getLogger("sequencer_net.client.subscribe")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _testnet_urls(directory: Path | None) -> list[str]:
    from sequencer_net.testnet.network import Testnet, TestnetError

    try:
        net = Testnet.load(directory or DEFAULT_TESTNET_DIR)
    except TestnetError as exc:
        raise click.UsageError(f"give --node URL, or --dir of a running testnet: {exc}") from exc
    return [node.api_url for node in net.nodes]


def _pinned_hash(text: str | None) -> bytes | None:
    if text is None:
        return None
    digits = text.removeprefix("0x")
    if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise click.BadParameter("0x followed by 64 hex digits", param_hint="--genesis-hash")
    return bytes.fromhex(digits)


def _verifier(
    genesis_path: Path | None,
    genesis_hash: bytes | None,
    directory: Path | None,
    verify: bool,
    namespace: int,
    start: int,
) -> Any:
    from consensus.crypto import Address
    from consensus.encoding import Domain
    from consensus.types import Validator, ValidatorSet
    from sequencer_net.client.subscribe import verifier_from_genesis
    from sequencer_net.client.verify import UncertifiedBlockReader
    from sequencer_net.home.genesis import GenesisError

    if not verify:
        placeholder = ValidatorSet([Validator(Address(bytes(20)), 1)])  # never consulted
        return UncertifiedBlockReader(
            placeholder, Domain(0, bytes(20), bytes(32)), namespace, start
        )
    if genesis_path is None:
        candidate = (directory or DEFAULT_TESTNET_DIR) / GENESIS_FILE
        if directory is None and not candidate.exists():
            raise click.UsageError(
                "give --genesis FILE (the network's genesis, from a source you trust) or "
                "--dir TESTNET; --no-verify skips verification"
            )
        genesis_path = candidate
    try:
        return verifier_from_genesis(genesis_path, namespace, start, genesis_hash)
    except GenesisError as exc:
        raise click.ClickException(str(exc)) from exc


def block_json(block: Any) -> dict[str, Any]:
    return {
        "height": block.height,
        "hash": "0x" + block.hash.hex(),
        "state_root": "0x" + block.state_root.hex(),
        "state_height": block.state_height,
        "timestamp_ms": block.timestamp_ms,
        "namespace": block.namespace,
        "transactions": ["0x" + tx.hex() for tx in block.transactions],
        "tx_hashes": ["0x" + h.hex() for h in block.tx_hashes],
        "finalized_by": block.finalized_by,
        "epoch": block.epoch,
        "ordered_transactions": (
            None
            if block.ordered_transactions is None
            else ["0x" + tx.hex() for tx in block.ordered_transactions]
        ),
        "order_seed": None if block.order_seed is None else "0x" + block.order_seed.hex(),
        "order_pending": block.order_pending,
    }


async def _print_blocks(
    urls: list[str],
    namespace: int,
    from_height: int,
    verifier: Any,
    as_json: bool,
    count: int | None,
    order: bool = True,
) -> None:
    from sequencer_net.client import subscribe_trio

    printed = 0
    async for block in subscribe_trio(
        urls, namespace=namespace, from_height=from_height, verifier=verifier, order=order
    ):
        if as_json:
            line = json.dumps(block_json(block))
        else:
            line = (
                f"height {block.height}  {block.hash.hex()[:16]}  "
                f"{len(block.transactions)} tx  state_root {block.state_root.hex()[:16]} "
                f"(height {block.state_height})"
                + ("  order pending" if block.order_pending else "")
            )
        click.echo(line)
        sys.stdout.flush()
        printed += 1
        if count is not None and printed >= count:
            return
