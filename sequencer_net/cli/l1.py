"""`seqnet l1 ...`: the network's L1 side as the contracts and a node see it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from sequencer_net.home.config import ConfigError, NodeConfig, load_config

NODE_TIMEOUT_S = 5.0
LOOPBACK_FOR_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


@click.group(name="l1")
def l1() -> None:
    """The L1 (Ethereum) side: posted commitments, backlog, posting gas.

    \b
    Example: a validator's view, from its home directory
      seqnet l1 status --home ~/seqnet
      seqnet l1 status --home ~/seqnet --json

    \b
    Example: any node's API and any L1 endpoint
      seqnet l1 status --api http://127.0.0.1:26700 --rpc http://127.0.0.1:8545

    See docs/l1.md for the contracts and how posting works.
    """


def _node_api(config: NodeConfig) -> str:
    host = LOOPBACK_FOR_WILDCARD.get(config.api.listen_host, config.api.listen_host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.api.listen_port}"


def _hex_address(value: object) -> bytes | None:
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        try:
            address = bytes.fromhex(value[2:])
        except ValueError:
            return None
        return address if any(address) else None
    return None


def fetch_node_status(api: str) -> dict[str, Any]:
    """GET /v1/status; raises click.ClickException with what went wrong."""
    import httpx

    try:
        response = httpx.get(f"{api.rstrip('/')}/v1/status", timeout=NODE_TIMEOUT_S)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise click.ClickException(f"node unreachable at {api}: {exc}") from None
    if not isinstance(document, dict):
        raise click.ClickException(f"node at {api} answered a status that is not an object")
    return document


def l1_report(
    rpc_url: str,
    commitments: bytes,
    inbox: bytes | None,
    bridge: bytes | None,
    node: dict[str, Any] | None,
) -> dict[str, Any]:
    """What `l1 status` prints, from the contracts (and the node's status if any)."""
    from web3 import Web3

    from sequencer_net.l1.link import L1Link, L1Unavailable, checked_uint

    link = L1Link.connect(rpc_url, commitments=commitments)
    try:
        head = link.head()
        tip = link.commitments_tip()
    except L1Unavailable as exc:
        raise click.ClickException(f"L1 unreachable at {rpc_url}: {exc}") from None
    node_l1 = node.get("l1") if node is not None else None
    committed = node.get("height") if node is not None else None
    if isinstance(node_l1, dict) and isinstance(node_l1.get("committed_height"), int):
        committed = node_l1["committed_height"]
    if not isinstance(committed, int):
        committed = None
    gas, gas_source = None, None
    if isinstance(node_l1, dict) and isinstance(node_l1.get("gas_per_posting"), int):
        gas, gas_source = node_l1["gas_per_posting"], "node"
    elif tip.latest_height > 0:
        contract = L1Link.require(link.commitments, "commitments")
        event = contract.events.Committed()
        try:
            entries = link.guarded(
                lambda: event.get_logs(from_block=tip.last_post_block, to_block=tip.last_post_block)
            )
            if entries:
                receipt = link.receipt(bytes(entries[-1]["transactionHash"]))
                if receipt is not None:
                    gas = checked_uint(receipt[1], "gasUsed")
                    gas_source = "l1"
        except L1Unavailable:
            pass

    def checksum(address: bytes | None) -> str | None:
        return None if address is None else Web3.to_checksum_address(address)

    return {
        "commitments": checksum(commitments),
        "inbox": checksum(inbox),
        "bridge": checksum(bridge),
        "posted_height": tip.latest_height,
        "posted_state_height": tip.latest_state_height,
        "posted_state_root": "0x" + tip.latest_state_root.hex(),
        "epoch": tip.epoch,
        "last_post_block": tip.last_post_block,
        "l1_head": head,
        "l1_blocks_behind": max(0, head - tip.last_post_block),
        "committed_height": committed,
        "backlog": None if committed is None else max(0, committed - tip.latest_height),
        "gas_per_posting": gas,
        "gas_source": gas_source,
    }


@l1.command(name="status")
@click.option(
    "--home",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A node's home directory: its [l1] endpoint and addresses, and its API.",
)
@click.option("--api", "api_url", help="The node's API URL (default: from --home).")
@click.option("--rpc", "rpc_url", help="The L1 JSON-RPC endpoint (default: [l1] rpc_url).")
@click.option(
    "--commitments",
    help="The Commitments address (default: [l1] commitments, else the node's verifying_contract).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(
    home: Path | None,
    api_url: str | None,
    rpc_url: str | None,
    commitments: str | None,
    as_json: bool,
) -> None:
    """The contract's latest posted height and state, the node's committed
    height, the backlog between them and the gas of a posting.

    \b
    JSON keys: commitments, inbox, bridge, posted_height, posted_state_height,
    posted_state_root, epoch, last_post_block, l1_head, l1_blocks_behind,
    committed_height, backlog, gas_per_posting, gas_source ("node": the node's
    last posting; "l1": the receipt of the contract's last Committed event).
    """
    config = None
    if home is not None:
        try:
            config = load_config(home)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    api = api_url or (None if config is None else _node_api(config))
    rpc = rpc_url or (None if config is None else config.l1.rpc_url)
    if rpc is None:
        raise click.ClickException("no L1 endpoint: pass --rpc or set [l1] rpc_url (--home)")
    node = fetch_node_status(api) if api is not None else None
    address = _hex_address(commitments) if commitments is not None else None
    if commitments is not None and address is None:
        raise click.ClickException(f"--commitments {commitments!r} is not a 20-byte hex address")
    if address is None and config is not None:
        address = _hex_address(config.l1.commitments)
    if address is None and node is not None:
        address = _hex_address(node.get("verifying_contract"))
    if address is None:
        raise click.ClickException(
            "no Commitments address: pass --commitments, set [l1] commitments, or --api a node"
        )
    inbox = None if config is None else _hex_address(config.l1.inbox)
    bridge = None if config is None else _hex_address(config.l1.bridge)
    report = l1_report(rpc, address, inbox, bridge, node)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
        return
    rows = [
        ("Commitments", report["commitments"]),
        ("Inbox", report["inbox"] or "-"),
        ("Bridge", report["bridge"] or "-"),
        ("posted height", report["posted_height"]),
        ("posted state", f"{report['posted_state_height']} {report['posted_state_root']}"),
        ("epoch", report["epoch"]),
        ("L1 head", f"{report['l1_head']} ({report['l1_blocks_behind']} since the last posting)"),
        ("committed height", _or_dash(report["committed_height"])),
        ("backlog", _or_dash(report["backlog"])),
        (
            "gas per posting",
            "-"
            if report["gas_per_posting"] is None
            else f"{report['gas_per_posting']:,} ({report['gas_source']})",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        click.echo(f"{name:<{width}}  {value}")


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def _l1_account(key_file: Path) -> Any:
    """The L1 account whose private key (0x hex, one line) is in `key_file`."""
    from eth_account import Account

    try:
        text = key_file.read_text().strip()
        return Account.from_key(bytes.fromhex(text.removeprefix("0x")))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{key_file}: not a usable L1 private key ({exc})") from None


def _web3(rpc_url: str) -> Any:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    try:
        w3.eth.chain_id  # noqa: B018 - a cheap call that proves the endpoint answers
    except Exception as exc:  # web3 raises many transport errors
        raise click.ClickException(f"L1 unreachable at {rpc_url}: {exc}") from None
    return w3


_KEY_FILE = click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="File holding the L1 account's private key as 0x hex (never pass keys as arguments).",
)


@l1.command(name="deploy")
@click.option(
    "--genesis",
    "genesis_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help="The network's genesis.json, built with `seqnet genesis new --l1-deployer`.",
)
@click.option("--rpc", "rpc_url", required=True, help="The L1 JSON-RPC endpoint.")
@_KEY_FILE
@click.option(
    "--inclusion-window",
    type=click.IntRange(1, 2**32),
    default=20,
    show_default=True,
    help="L1 blocks within which validators must include a forced transaction.",
)
@click.option(
    "--escape-delay",
    type=click.IntRange(1, 2**32),
    default=7200,
    show_default=True,
    help="L1 blocks without a posting after which the escape hatch opens.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def deploy(
    genesis_file: Path,
    rpc_url: str,
    key_file: Path,
    inclusion_window: int,
    escape_delay: int,
    as_json: bool,
) -> None:
    """Deploy the contracts a genesis names, from the deployer it was built for.

    Refuses before sending anything unless the key's next nonce creates the
    Commitments contract at the genesis's verifying_contract. Prints the
    addresses and the [l1] section every validator's config.toml needs.

    \b
    Example:
      seqnet genesis new --out genesis.json --validator h0 ... --l1-deployer 0xDEPLOYER
      seqnet l1 deploy --genesis genesis.json --rpc https://l1.example.org \\
          --key-file deployer.key
    """
    from sequencer_net.home.genesis import GenesisError, load_genesis
    from sequencer_net.l1.deploy import DeploymentError, deploy_for_genesis

    try:
        genesis = load_genesis(genesis_file)
    except GenesisError as exc:
        raise click.ClickException(str(exc)) from None
    if not any(genesis.verifying_contract):
        raise click.ClickException(
            f"{genesis_file} names no L1 contract (build it with --l1-deployer)"
        )
    account = _l1_account(key_file)
    w3 = _web3(rpc_url)
    try:
        addresses = deploy_for_genesis(
            w3,
            bytes(account.key),
            genesis,
            inclusion_window=inclusion_window,
            escape_delay=escape_delay,
        )
    except DeploymentError as exc:
        raise click.ClickException(str(exc)) from None
    names = ("commitments", "inbox", "bridge", "collateral_token")
    document = {name: "0x" + getattr(addresses, name).hex() for name in names}
    if as_json:
        click.echo(json.dumps(document, sort_keys=True))
        return
    for name in names:
        click.echo(f"{name:<17} {document[name]}")
    click.echo("\nIn every validator's config.toml:\n[l1]")
    click.echo(f'rpc_url = "{rpc_url}"')
    for name in ("commitments", "inbox", "bridge"):
        click.echo(f'{name} = "{document[name]}"')


@l1.command(name="deposit")
@click.option("--rpc", "rpc_url", required=True, help="The L1 JSON-RPC endpoint.")
@click.option("--bridge", "bridge_address", required=True, help="The Bridge contract's address.")
@_KEY_FILE
@click.option(
    "--to",
    "owner",
    help="The seqnet account credited (0x address; default: the depositing L1 account).",
)
@click.option("--subaccount", "number", type=click.IntRange(0, 255), default=0, show_default=True)
@click.option("--amount", required=True, help="In whole units with up to 18 decimals, e.g. 1.5.")
@click.option(
    "--eth",
    is_flag=True,
    help="Deposit ether (credited as an L1 ether balance) instead of the collateral token.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def deposit(
    rpc_url: str,
    bridge_address: str,
    key_file: Path,
    owner: str | None,
    number: int,
    amount: str,
    eth: bool,
    as_json: bool,
) -> None:
    """Lock collateral (or ether) in the Bridge for a seqnet subaccount.

    The validators credit it once it is buried under their confirmation depth
    and a quorum of them has reported it (docs/l1.md, "Deposits").
    """
    from sequencer_net.cli.trade import parse_amount
    from sequencer_net.l1.user import contract, deposit_eth, deposit_token

    bridge = _hex_address(bridge_address)
    if bridge is None:
        raise click.ClickException(f"--bridge {bridge_address!r} is not a 20-byte hex address")
    account = _l1_account(key_file)
    recipient = bytes.fromhex(account.address[2:]) if owner is None else _hex_address(owner)
    if recipient is None:
        raise click.ClickException(f"--to {owner!r} is not a 20-byte hex address")
    wad = parse_amount(amount, "--amount")
    w3 = _web3(rpc_url)
    bridge_contract = contract(w3, "Bridge", bridge)
    subaccount = recipient + bytes([number])
    sender = deposit_eth if eth else deposit_token
    try:
        made = sender(w3, account, bridge_contract, subaccount, wad)
    except Exception as exc:  # a revert names its custom error
        raise click.ClickException(f"deposit failed: {_revert_reason(exc)}") from None
    document = {
        "nonce": made.nonce,
        "subaccount": "0x" + made.subaccount.hex(),
        "token": "0x" + made.token.hex(),
        "amount": str(made.amount),
        "l1_block": made.l1_block,
    }
    if as_json:
        click.echo(json.dumps(document, sort_keys=True))
        return
    click.echo(
        f"deposit {made.nonce}: {amount} {'ETH' if eth else 'collateral'} for "
        f"{document['subaccount']} in L1 block {made.l1_block}"
    )


def _revert_reason(exc: Exception) -> str:
    from sequencer_net.l1.artifacts import UnknownCustomError, custom_error_name

    try:
        return custom_error_name(exc)
    except (UnknownCustomError, ValueError, TypeError):
        return str(exc)


def _bridge_and_commitments(w3: Any, bridge_address: str) -> tuple[Any, Any]:
    from sequencer_net.l1.user import contract

    bridge = _hex_address(bridge_address)
    if bridge is None:
        raise click.ClickException(f"--bridge {bridge_address!r} is not a 20-byte hex address")
    bridge_contract = contract(w3, "Bridge", bridge)
    try:
        commitments = bridge_contract.functions.commitments().call()
    except Exception as exc:  # not a Bridge, or the endpoint failed
        raise click.ClickException(f"{bridge_address} does not answer as a Bridge: {exc}") from None
    return bridge_contract, contract(w3, "Commitments", commitments)


def _payout_json(payout: Any) -> dict[str, Any]:
    return {
        "recipient": "0x" + payout.recipient.hex(),
        "token": "0x" + payout.token.hex(),
        "amount": str(payout.amount),
        "state_height": payout.state_height,
        "l1_block": payout.l1_block,
    }


_L1_USER_OPTIONS = (
    click.option("--rpc", "rpc_url", required=True, help="The L1 JSON-RPC endpoint."),
    click.option("--bridge", "bridge_address", required=True, help="The Bridge's address."),
    click.option(
        "--node",
        "node_url",
        required=True,
        help="Any seqnet node's API URL: proofs are read there and checked against the "
        "root the L1 holds, so the node need not be trusted.",
    ),
    _KEY_FILE,
)


def _l1_user_options(command: Any) -> Any:
    for option in reversed(_L1_USER_OPTIONS):
        command = option(command)
    return command


@l1.command(name="claim")
@_l1_user_options
@click.option("--id", "withdrawal_id", type=click.IntRange(0, 2**64 - 1), required=True)
@click.option(
    "--no-wait",
    is_flag=True,
    help="Only prove the withdrawal; pay it later with another `claim` once payable.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def claim(
    rpc_url: str,
    bridge_address: str,
    node_url: str,
    key_file: Path,
    withdrawal_id: int,
    no_wait: bool,
    as_json: bool,
) -> None:
    """Pay withdrawal ID on L1 (`seqnet trade withdraw` prints the id).

    Proves the withdrawal record against the latest posted state root, waits
    out the Bridge's challenge window, and has the Bridge pay the recipient.
    Anyone may claim: the Bridge always pays the recipient the record names.
    A withdrawal already proven is only paid. The latest post is read in one
    call, so a post landing meanwhile cannot mix two posts into its ref.
    """
    from sequencer_net.client import SeqnetClient
    from sequencer_net.l1.user import (
        NotPostedYet,
        finalize_withdrawal,
        prove_withdrawal,
        wait_for_l1_block,
    )

    account = _l1_account(key_file)
    w3 = _web3(rpc_url)
    bridge, commitments = _bridge_and_commitments(w3, bridge_address)
    # (recipient, payableAt, era, asset, postHeight, stateHeight, amount); payableAt 0: unproven
    pending = bridge.functions.pendingWithdrawals(withdrawal_id).call()
    payable_at = int(pending[1])
    try:
        if payable_at == 0:
            with SeqnetClient(node_url, timeout=NODE_TIMEOUT_S) as node:
                proven = prove_withdrawal(w3, account, bridge, commitments, node, withdrawal_id)
            payable_at = proven.payable_at
            if not as_json:
                click.echo(f"proven; payable from L1 block {payable_at}")
        if no_wait:
            if as_json:
                click.echo(json.dumps({"id": withdrawal_id, "payable_at": payable_at}))
            return
        wait_for_l1_block(w3, payable_at)
        payout = finalize_withdrawal(w3, account, bridge, withdrawal_id)
    except NotPostedYet as exc:
        raise click.ClickException(f"{exc}; try again in a few seconds") from None
    except click.ClickException:
        raise
    except Exception as exc:  # a revert names its custom error
        raise click.ClickException(f"claim failed: {_revert_reason(exc)}") from None
    document = {"id": withdrawal_id, **_payout_json(payout)}
    if as_json:
        click.echo(json.dumps(document, sort_keys=True))
        return
    click.echo(
        f"paid withdrawal {withdrawal_id}: {payout.amount} of token {document['token']} "
        f"to {document['recipient']} in L1 block {payout.l1_block}"
    )


@l1.command(name="escape")
@_l1_user_options
@click.option("--subaccount", "number", type=click.IntRange(0, 255), default=0, show_default=True)
@click.option(
    "--eth", is_flag=True, help="Take the L1 ether balance instead of a subaccount's collateral."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def escape(
    rpc_url: str,
    bridge_address: str,
    node_url: str,
    key_file: Path,
    number: int,
    eth: bool,
    as_json: bool,
) -> None:
    """Take your funds out through the escape hatch, from the last posted state.

    Opens only when the validators have posted nothing for the Bridge's escape
    delay, or after evidence of equivocation froze the contracts. Pays a
    subaccount's collateral (it must hold no positions in that state) or, with
    --eth, your L1 ether balance; each once.
    """
    from sequencer_net.client import SeqnetClient
    from sequencer_net.l1.user import NotPostedYet, escape_balance, escape_collateral

    account = _l1_account(key_file)
    w3 = _web3(rpc_url)
    bridge, commitments = _bridge_and_commitments(w3, bridge_address)
    try:
        with SeqnetClient(node_url, timeout=NODE_TIMEOUT_S) as node:
            if eth:
                payout = escape_balance(w3, account, bridge, commitments, node)
            else:
                payout = escape_collateral(w3, account, bridge, commitments, node, number)
    except NotPostedYet as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # a revert names its custom error
        raise click.ClickException(f"escape failed: {_revert_reason(exc)}") from None
    document = _payout_json(payout)
    if as_json:
        click.echo(json.dumps(document, sort_keys=True))
        return
    click.echo(
        f"escaped {payout.amount} of token {document['token']} in L1 block {payout.l1_block}"
    )
