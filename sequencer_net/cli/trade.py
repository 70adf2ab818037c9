"""`seqnet trade ...`: trade on a seqnet chain from a terminal.

Every command talks to one node's HTTP API (docs/api.md): `--node URL`, or
by default the first node of the local testnet in `--dir` (what `seqnet
testnet up` started). Commands that sign read a key file (`--key`, the
format `seqnet keys` writes; `--password-file` for an encrypted one). The
signing domain comes from the node's /v1/status (or `--genesis`); the fee
offered is the chain's required fee for the payload (the testnet's genesis
schedule, or the default one with `--node`; `--fee` overrides).

A command that submits waits until the transaction is committed and prints
the engine's receipt (exit status 1 when the engine rejected it); `--no-wait`
returns once the node accepted it. The nonce is the account's next one from
/v1/accounts (`--nonce` overrides it, e.g. to send several transactions in
one block).

Amounts, prices and quantities are exact decimals ("0.25", "60010"); the
engine works in wad (10**18 = 1.0) and this module converts exactly, never
through floats. docs/trading.md has a worked session.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sequencer_net.testnet.network import DEFAULT_TESTNET_DIR

_FILE = click.Path(path_type=Path, dir_okay=False)
_EXISTING_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)
WAIT_POLL_S = 0.25


# --- where the node is, who signs -----------------------------------------------------


@dataclass
class Target:
    """One node and what signing for its chain needs."""

    url: str
    genesis_path: Path | None

    def client(self) -> Any:
        from sequencer_net.client import SeqnetClient

        return SeqnetClient(self.url, timeout=10.0)

    def domain(self) -> Any:
        from consensus.encoding import Domain
        from sequencer_net.client import SeqnetApiError

        if self.genesis_path is not None:
            return _load_genesis(self.genesis_path).domain()
        try:
            with self.client() as client:
                status = client.status()
            return Domain(
                int(status["chain_id"]),
                bytes.fromhex(str(status["verifying_contract"]).removeprefix("0x")),
                bytes.fromhex(str(status["genesis_hash"]).removeprefix("0x")),
            )
        except SeqnetApiError as exc:
            raise click.ClickException(f"cannot reach the node at {self.url}: {exc}") from exc
        except (KeyError, ValueError) as exc:
            raise click.ClickException(
                f"the node at {self.url} does not report its signing domain ({exc})"
            ) from exc

    def fees(self) -> Any:
        from sequencer_net.client import DEFAULT_FEES, FeeSchedule

        if self.genesis_path is None:
            return DEFAULT_FEES
        return FeeSchedule.of_genesis(_load_genesis(self.genesis_path))


def _load_genesis(path: Path) -> Any:
    from sequencer_net.home.genesis import GenesisError, load_genesis

    try:
        return load_genesis(path)
    except (GenesisError, OSError) as exc:
        raise click.ClickException(f"cannot read the genesis {path}: {exc}") from exc


def resolve_target(node: str | None, directory: Path | None, genesis: Path | None) -> Target:
    if node is not None:
        if directory is not None:
            raise click.UsageError("give --node or --dir, not both")
        return Target(node, genesis)
    from sequencer_net.testnet.network import GENESIS_FILE, Testnet, TestnetError

    where = directory or DEFAULT_TESTNET_DIR
    try:
        net = Testnet.load(where)
    except TestnetError as exc:
        raise click.ClickException(
            f"{exc}\n(no local testnet in {where}: start one with `seqnet testnet up`, "
            "or point at a node with --node URL)"
        ) from exc
    return Target(net.nodes[0].api_url, genesis or net.directory / GENESIS_FILE)


def read_key(path: Path | None, password_file: Path | None, what: str = "--key") -> Any:
    from consensus.crypto import PrivateKey
    from sequencer_net.home.keystore import KeystoreError, read_key_file, read_password_file

    if path is None:
        raise click.UsageError(
            f"{what} FILE is required: a key file as `seqnet keys new --out FILE` writes "
            "(on a local testnet, `seqnet trade testnet-key` exports a funded one)"
        )
    try:
        password = None if password_file is None else read_password_file(password_file)
        return PrivateKey(read_key_file(path, password))
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from exc


def node_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--node, --dir, --genesis: which node to talk to and which chain it runs."""
    for option in reversed(
        [
            click.option(
                "--node",
                envvar="SEQNET_NODE",
                help="A node's API URL, e.g. http://127.0.0.1:26700 [env SEQNET_NODE].",
            ),
            click.option(
                "--dir",
                "directory",
                type=click.Path(path_type=Path, file_okay=False),
                help=f"A local testnet's directory [default: {DEFAULT_TESTNET_DIR}].",
            ),
            click.option(
                "--genesis",
                type=_EXISTING_FILE,
                help="The chain's genesis.json (signing domain and fee schedule).",
            ),
        ]
    ):
        command = option(command)
    return command


def signer_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--key, --password-file, --subaccount, --nonce, --fee, --no-wait, --json."""
    for option in reversed(
        [
            click.option(
                "--key",
                "key_file",
                type=_EXISTING_FILE,
                envvar="SEQNET_KEY",
                help="Key file of the trading account [env SEQNET_KEY].",
            ),
            click.option(
                "--password-file",
                type=_EXISTING_FILE,
                help="First line: the password of an encrypted key file.",
            ),
            click.option(
                "--subaccount",
                type=click.IntRange(0, 255),
                default=0,
                show_default=True,
                help="Subaccount number (fees are always paid from subaccount 0).",
            ),
            click.option(
                "--nonce",
                type=click.IntRange(0, 2**64 - 1),
                help="Transaction nonce [default: the account's next one].",
            ),
            click.option("--fee", help="Fee to offer (decimal) [default: the required fee]."),
            click.option(
                "--wait/--no-wait",
                default=True,
                show_default=True,
                help="Wait for the transaction to be committed and print its receipt.",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(min=0, min_open=True),
                default=30.0,
                show_default=True,
                help="Seconds to wait for the commit.",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print one JSON object."),
        ]
    ):
        command = option(command)
    return command


# --- parsing ---------------------------------------------------------------------------


def parse_amount(text: str, what: str, *, positive: bool = True) -> int:
    """An exact decimal as wad; a clear error for anything else."""
    from sequencer_net.execution.fixed_point import parse_decimal

    try:
        value = parse_decimal(text.strip())
    except (ValueError, ArithmeticError):
        raise click.BadParameter(f"{text!r} is not a decimal number", param_hint=what) from None
    if positive and value <= 0:
        raise click.BadParameter(f"{text!r} must be positive", param_hint=what)
    return value


def parse_address(text: str, what: str) -> bytes:
    """A 20-byte address given as 0x + 40 hex digits."""
    digits = text.removeprefix("0x")
    if len(digits) != 40 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise click.BadParameter("an address is 0x + 40 hex digits", param_hint=what)
    return bytes.fromhex(digits)


def on_grid(value: int, step: int, what: str) -> int:
    """`value` if it is on the market's grid (`what`: the parameter it came from)."""
    from sequencer_net.api.markets import decimal

    grid = "lot size" if what == "QUANTITY" else "tick size"
    if value % step:
        raise click.BadParameter(
            f"{decimal(value)} is not a multiple of the market's {grid} {decimal(step)}",
            param_hint=what,
        )
    return value


def fetch_markets(target: Target) -> dict[str, Any]:
    from sequencer_net.client import SeqnetApiError

    try:
        with target.client() as client:
            answer: dict[str, Any] = client.markets()
    except SeqnetApiError as exc:
        raise click.ClickException(f"cannot list markets at {target.url}: {exc}") from exc
    return answer


def market_names() -> dict[str, int]:
    """Names of the local testnet's markets (the chain itself knows only ids)."""
    from sequencer_net.home.local_markets import local_markets

    return {market.name.upper(): market.market_id for market in local_markets(0)}


def name_of(market_id: int) -> str:
    for name, mid in market_names().items():
        if mid == market_id:
            return name
    return str(market_id)


def find_market(target: Target, text: str) -> dict[str, Any]:
    """The /v1/markets entry of a market given by id or testnet name."""
    markets = {m["id"]: m for m in fetch_markets(target)["markets"]}
    if text.isdigit():
        market_id = int(text)
    else:
        found = market_names().get(text.upper())
        if found is None:
            known = ", ".join(sorted(market_names()))
            raise click.BadParameter(
                f"unknown market {text!r}: give an id or one of {known}", param_hint="MARKET"
            )
        market_id = found
    if market_id not in markets:
        listed = ", ".join(str(m) for m in sorted(markets)) or "none"
        raise click.BadParameter(
            f"market {market_id} is not listed on this chain (listed: {listed})",
            param_hint="MARKET",
        )
    entry: dict[str, Any] = markets[market_id]
    return entry


def parse_good_til(text: str | None, target: Target) -> int:
    """Unix seconds, or +SECONDS after the chain's latest block time (the
    engine compares good-til times with block times, not with this machine's
    clock)."""
    if text is None:
        return 0
    relative = text.startswith("+")
    digits = text[1:] if relative else text
    if not digits.isdigit() or int(digits) == 0:
        raise click.BadParameter(
            f"{text!r}: give unix seconds or +SECONDS from now", param_hint="--good-til"
        )
    if not relative:
        return int(digits)
    return int(fetch_markets(target)["timestamp"]) + int(digits)


# --- submitting ------------------------------------------------------------------------


def next_nonce(target: Target, address: bytes) -> int:
    from sequencer_net.client import SeqnetApiError

    try:
        with target.client() as client:
            return int(client.account(address)["next_nonce"])
    except SeqnetApiError as exc:
        if exc.status == 404:
            return 0
        raise click.ClickException(f"cannot read the account's nonce: {exc}") from exc


def submit(
    target: Target,
    key: Any,
    action: Any,
    *,
    nonce: int | None,
    fee: str | None,
    wait: bool,
    timeout: float,
    encrypt: bool = False,
) -> dict[str, Any]:
    """Sign and submit one DEX action; with `wait`, poll until it is committed.
    With `encrypt`, the signed transaction is sealed to the network's threshold
    key (docs/fairness.md) and what is submitted, and hashed, is the envelope."""
    from sequencer_net.client import SeqnetApiError, TransactionTimeout, dex_transaction

    offered = None if fee is None else parse_amount(fee, "--fee", positive=False)
    if offered is not None and not 0 <= offered <= 2**64 - 1:
        raise click.BadParameter("a fee is between 0 and 18.446744073709551615", param_hint="--fee")
    used = next_nonce(target, key.address) if nonce is None else nonce
    encoded = dex_transaction(key, target.domain(), used, action, fees=target.fees(), fee=offered)
    try:
        with target.client() as client:
            if encrypt:
                encoded = seal_for(target, client, key, encoded)
            tx_hash = client.submit(encoded)
            answer: dict[str, Any] = {"hash": tx_hash, "nonce": used, "status": "pending"}
            if not wait:
                return answer
            return {**answer, **client.wait_committed(tx_hash, timeout, WAIT_POLL_S)}
    except TransactionTimeout as exc:
        raise click.ClickException(str(exc)) from exc
    except SeqnetApiError as exc:
        raise click.ClickException(f"the node refused the transaction: {exc}") from exc


ENCRYPTED_EXPIRY_BLOCKS = 100
"""An encrypted order made by `--encrypt` may be ordered up to this many blocks
after the node's current height; later it is dropped undecrypted."""


def seal_for(target: Target, client: Any, key: Any, encoded: bytes) -> bytes:
    """`encoded` sealed to the network key of the next block's validator-set
    epoch: the genesis's with --genesis, else the one the node reports (GET
    /v1/validators)."""
    from sequencer_net.client import SeqnetApiError
    from sequencer_net.client.encrypted import NetworkKeys, NoNetworkKey, seal_transaction

    try:
        if target.genesis_path is not None:
            keys = NetworkKeys.from_genesis(_load_genesis(target.genesis_path))
        else:
            keys = NetworkKeys.from_validators(client.validators())
    except (NoNetworkKey, SeqnetApiError, KeyError, ValueError) as exc:
        raise click.ClickException(f"--encrypt: cannot read the network key: {exc}") from exc
    height = int(client.status()["height"])
    expiry = height + ENCRYPTED_EXPIRY_BLOCKS
    network = keys.at(height + 1)
    return seal_transaction(key, target.domain(), encoded, network, expiry_height=expiry)


def report(answer: dict[str, Any], as_json: bool, done: str) -> None:
    """Print the outcome; exit 1 if the engine rejected it or it was dropped."""
    receipt = answer.get("receipt")
    failed = answer.get("status") == "dropped" or (receipt is not None and not receipt["success"])
    if as_json:
        click.echo(json.dumps(answer))
    elif answer.get("status") == "dropped":
        click.echo(f"dropped: {answer.get('reason', '')} ({answer['hash']})")
    elif answer.get("status") == "pending":
        click.echo(f"submitted {answer['hash']} (nonce {answer['nonce']})")
    elif receipt is None:
        click.echo(f"committed at height {answer.get('height')}: {answer['hash']}")
    elif receipt["success"]:
        click.echo(f"{done} at height {answer['height']}: {answer['hash']}")
    else:
        click.echo(
            f"rejected at height {answer['height']}: {receipt['error']}: "
            f"{receipt['reason'] or ''} ({answer['hash']})"
        )
    if failed:
        raise SystemExit(1)


# --- the commands ----------------------------------------------------------------------


@click.group(name="trade")
def trade() -> None:
    """Trade from a terminal: markets, positions, deposit, order, cancel.

    \b
    Every command talks to one node: --node URL, or by default the local
    testnet in ~/.seqnet/testnet (see `seqnet testnet up`). Signing commands
    need --key FILE (or SEQNET_KEY); on a local testnet `seqnet trade
    testnet-key` writes funded keys. docs/trading.md walks through a session.

    \b
    Examples:
      seqnet trade markets
      seqnet trade testnet-key --account 0 --out trader.key
      seqnet trade order BTC-PERP buy 0.1 60000 --key trader.key
      seqnet trade order BTC-PERP sell 0.1 --stop 58000 --reduce-only --key trader.key
      seqnet trade positions --key trader.key --json
      seqnet trade cancel --client-id 7 --key trader.key
    """


@trade.command(name="markets")
@node_options
@click.option("--json", "as_json", is_flag=True, help="Print the node's answer as JSON.")
def markets_command(
    node: str | None, directory: Path | None, genesis: Path | None, as_json: bool
) -> None:
    """List the markets: prices, last auction, open interest, funding.

    \b
    Examples:
      seqnet trade markets
      seqnet trade markets --node http://127.0.0.1:26700 --json
    """
    answer = fetch_markets(resolve_target(node, directory, genesis))
    if as_json:
        click.echo(json.dumps(answer))
        return
    rows: list[tuple[str, ...]] = [
        ("ID", "NAME", "KIND", "ORACLE", "MARK", "LAST", "OPEN INT", "FUNDING", "TICK", "LOT")
    ]
    for m in answer["markets"]:
        rows.append(
            (
                str(m["id"]),
                name_of(m["id"]),
                m["kind"] + (" (paused)" if m["paused"] else ""),
                m["oracle_price"] or "-",
                m["mark_price"] or "-",
                m["last_clearing_price"] or "-",
                m["open_interest"],
                m["funding_rate"] or "-",
                m["tick_size"],
                m["lot_size"],
            )
        )
    click.echo(f"height {answer['height']}")
    echo_table(rows)


def echo_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


@trade.command(name="positions")
@node_options
@click.option("--key", "key_file", type=_EXISTING_FILE, envvar="SEQNET_KEY", help="Key file.")
@click.option("--password-file", type=_EXISTING_FILE, help="Password of an encrypted key.")
@click.option("--address", help="Show this address instead of the key's (0x + 40 hex).")
@click.option("--json", "as_json", is_flag=True, help="Print the node's answer as JSON.")
def positions_command(
    node: str | None,
    directory: Path | None,
    genesis: Path | None,
    key_file: Path | None,
    password_file: Path | None,
    address: str | None,
    as_json: bool,
) -> None:
    """Show an account: collateral, margin, positions and open orders.

    \b
    Examples:
      seqnet trade positions --key trader.key
      seqnet trade positions --address 0x5c0f...e1 --json
    """
    from sequencer_net.client import SeqnetApiError

    if address is None:
        raw = read_key(key_file, password_file).address
    else:
        raw = parse_address(address, "--address")
    target = resolve_target(node, directory, genesis)
    try:
        with target.client() as client:
            answer = client.account(raw)
    except SeqnetApiError as exc:
        if exc.status == 404:
            raise click.ClickException(
                f"0x{raw.hex()} has no subaccount on this chain yet (deposit first)"
            ) from exc
        raise click.ClickException(f"cannot read the account: {exc}") from exc
    if as_json:
        click.echo(json.dumps(answer))
        return
    click.echo(f"account {answer['address']}  height {answer['height']}")
    for sub in answer["subaccounts"]:
        click.echo(
            f"\nsubaccount {sub['number']}: collateral {sub['collateral']}  equity "
            f"{sub['equity']}  free {sub['free_collateral']}  maintenance "
            f"{sub['maintenance_margin']}"
        )
        if sub["positions"]:
            rows: list[tuple[str, ...]] = [
                ("MARKET", "SIZE", "PRICE", "VALUE", "FUNDING DUE", "OPEN BUY", "OPEN SELL")
            ]
            for p in sub["positions"]:
                rows.append(
                    (
                        name_of(p["market_id"]),
                        p["size"],
                        p["valuation_price"] or "-",
                        p["value"],
                        p["pending_funding"],
                        p["open_buy"],
                        p["open_sell"],
                    )
                )
            echo_table(rows)
        orders = [(o, "") for o in sub["orders"]] + [
            (
                o,
                f"{o['trigger']} @ {o['trigger_price']}"
                + (" (triggered)" if o["triggered_at"] else ""),
            )
            for o in sub.get("conditional_orders", [])
        ]
        if orders:
            rows = [
                ("ORDER", "MARKET", "SIDE", "PRICE", "QTY", "TIF", "CLIENT", "GOOD-TIL", "TRIGGER")
            ]
            for o, trigger in orders:
                rows.append(
                    (
                        o["order_id"],
                        name_of(o["market_id"]),
                        o["side"],
                        o["price"] if o["price"] != "0" else "market",
                        o["quantity"],
                        o["time_in_force"],
                        str(o.get("client_id") or "-"),
                        str(o.get("good_til") or "-"),
                        trigger or "-",
                    )
                )
            echo_table(rows)
        if sub["orders_truncated"]:
            click.echo("(more orders than one answer lists)")


@trade.command(name="order")
@click.argument("market")
@click.argument("side", type=click.Choice(["buy", "sell"], case_sensitive=False))
@click.argument("quantity")
@click.argument("price", required=False)
@click.option(
    "--tif",
    type=click.Choice(["gtc", "ioc"], case_sensitive=False),
    help="Time in force [default: gtc for a limit order; a market order is ioc].",
)
@click.option("--post-only", is_flag=True, help="Never take: removed if it would cross.")
@click.option("--reduce-only", is_flag=True, help="May only shrink the position.")
@click.option(
    "--client-id",
    type=click.IntRange(1, 2**64 - 1),
    help="Your own id for the order (unique among the subaccount's open orders).",
)
@click.option(
    "--good-til",
    help="Expire at this unix time, or +SECONDS after the latest block (at most 90 days).",
)
@click.option("--stop", help="Stop order: wait until the mark crosses this price.")
@click.option("--take-profit", help="Take-profit order: wait until the mark reaches this price.")
@click.option(
    "--encrypt",
    is_flag=True,
    help="Seal the order to the network's threshold key: nobody reads it before it is ordered.",
)
@node_options
@signer_options
def order_command(
    market: str,
    side: str,
    quantity: str,
    price: str | None,
    tif: str | None,
    post_only: bool,
    reduce_only: bool,
    client_id: int | None,
    good_til: str | None,
    stop: str | None,
    take_profit: str | None,
    encrypt: bool,
    node: str | None,
    directory: Path | None,
    genesis: Path | None,
    key_file: Path | None,
    password_file: Path | None,
    subaccount: int,
    nonce: int | None,
    fee: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Place an order: MARKET (id or name) SIDE QUANTITY [PRICE].

    Without PRICE it is a market order (immediate-or-cancel, at most the
    market's price band away from the reference). With --stop or
    --take-profit the order waits, reserving nothing, until the block's mark
    price crosses the trigger (a sell stop: mark <= trigger; a sell
    take-profit: mark >= trigger; buys the mirror), then enters the next
    block's auction.

    \b
    Examples:
      seqnet trade order BTC-PERP buy 0.1 60000 --key trader.key
      seqnet trade order 1 sell 0.05 --key trader.key                  # market order
      seqnet trade order ETH-PERP buy 1 2990 --post-only --client-id 7 --good-til +600
      seqnet trade order BTC-PERP sell 0.1 --stop 58000 --reduce-only --key trader.key
      seqnet trade order BTC-PERP buy 0.1 60000 --encrypt --key trader.key  # sealed

    With --encrypt the order travels sealed to the network's threshold key
    (docs/fairness.md) and is opened only after its block commits; its id is
    the envelope's hash.
    """
    from sequencer_net.execution.records import TimeInForce, TriggerKind
    from sequencer_net.execution.transactions import PlaceOrder

    if stop is not None and take_profit is not None:
        raise click.UsageError("give --stop or --take-profit, not both")
    target = resolve_target(node, directory, genesis)
    found = find_market(target, market)
    tick = parse_amount(found["tick_size"], "tick")
    lot = parse_amount(found["lot_size"], "lot")
    size = on_grid(parse_amount(quantity, "QUANTITY"), lot, "QUANTITY")
    limit = 0 if price is None else on_grid(parse_amount(price, "PRICE"), tick, "PRICE")
    if limit == 0:
        if tif == "gtc":
            raise click.UsageError(
                "a market order (no PRICE) is immediate-or-cancel: drop --tif gtc"
            )
        if post_only:
            raise click.UsageError("--post-only needs a PRICE (a resting limit order)")
    chosen = (
        TimeInForce.IMMEDIATE_OR_CANCEL
        if limit == 0 or tif == "ioc"
        else TimeInForce.GOOD_TILL_CANCEL
    )
    if post_only and chosen != TimeInForce.GOOD_TILL_CANCEL:
        raise click.UsageError("--post-only needs a good-till-cancel order")
    trigger, trigger_price = TriggerKind.NONE, 0
    if stop is not None:
        trigger, trigger_price = (
            TriggerKind.STOP,
            on_grid(parse_amount(stop, "--stop"), tick, "--stop"),
        )
    if take_profit is not None:
        trigger = TriggerKind.TAKE_PROFIT
        trigger_price = on_grid(parse_amount(take_profit, "--take-profit"), tick, "--take-profit")
    expiry = parse_good_til(good_til, target)
    if expiry and chosen != TimeInForce.GOOD_TILL_CANCEL and trigger == TriggerKind.NONE:
        raise click.UsageError("--good-til needs a resting (gtc) or a --stop/--take-profit order")
    action = PlaceOrder(
        subaccount_number=subaccount,
        market_id=found["id"],
        side=0 if side.lower() == "buy" else 1,
        limit_price=limit,
        quantity=size,
        time_in_force=chosen,
        post_only=post_only,
        reduce_only=reduce_only,
        client_id=client_id or 0,
        good_til=expiry,
        trigger=trigger,
        trigger_price=trigger_price,
    )
    key = read_key(key_file, password_file)
    answer = submit(
        target, key, action, nonce=nonce, fee=fee, wait=wait, timeout=timeout, encrypt=encrypt
    )
    answer["order_id"] = answer["hash"]  # an order's id is its transaction's hash
    report(answer, as_json, "order placed")


@trade.command(name="cancel")
@click.argument("order_id", required=False)
@click.option("--market", help="The order's market (id or name); needed with ORDER_ID.")
@click.option("--client-id", type=click.IntRange(1, 2**64 - 1), help="Cancel by your client id.")
@node_options
@signer_options
def cancel_command(
    order_id: str | None,
    market: str | None,
    client_id: int | None,
    node: str | None,
    directory: Path | None,
    genesis: Path | None,
    key_file: Path | None,
    password_file: Path | None,
    subaccount: int,
    nonce: int | None,
    fee: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Cancel an open order: by ORDER_ID (with --market), or by --client-id.

    Works on resting orders and on waiting stop / take-profit orders. Without
    --market, the market is looked up in the account's open orders.

    \b
    Examples:
      seqnet trade cancel 0x8d96...c8 --key trader.key
      seqnet trade cancel --client-id 7 --key trader.key
    """
    from sequencer_net.execution.transactions import CancelOrder, CancelOrderByClientId

    target = resolve_target(node, directory, genesis)
    key = read_key(key_file, password_file)
    action: Any
    if client_id is not None:
        if order_id is not None or market is not None:
            raise click.UsageError("give ORDER_ID (and --market) or --client-id, not both")
        action = CancelOrderByClientId(subaccount, client_id)
    else:
        if order_id is None:
            raise click.UsageError("give the ORDER_ID to cancel, or --client-id")
        text = order_id.removeprefix("0x")
        if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise click.BadParameter("an order id is 0x + 64 hex digits", param_hint="ORDER_ID")
        market_id = (
            find_market(target, market)["id"]
            if market is not None
            else _market_of_order(target, key.address, subaccount, "0x" + text.lower())
        )
        action = CancelOrder(subaccount, market_id, bytes.fromhex(text))
    answer = submit(target, key, action, nonce=nonce, fee=fee, wait=wait, timeout=timeout)
    report(answer, as_json, "cancelled")


def _market_of_order(target: Target, address: bytes, number: int, order_id: str) -> int:
    from sequencer_net.client import SeqnetApiError

    try:
        with target.client() as client:
            account = client.account(address)
    except SeqnetApiError as exc:
        raise click.ClickException(f"cannot look up the order's market: {exc}") from exc
    for sub in account["subaccounts"]:
        if sub["number"] != number:
            continue
        for order in [*sub["orders"], *sub.get("conditional_orders", [])]:
            if order["order_id"] == order_id:
                return int(order["market_id"])
    raise click.ClickException(
        f"{order_id} is not an open order of subaccount {number}; give --market to cancel anyway"
    )


@trade.command(name="deposit")
@click.argument("amount")
@click.option("--to", "to_address", help="Credit this address (0x + 40 hex) [default: --key's].")
@click.option(
    "--bridge-key",
    type=_EXISTING_FILE,
    help="Key file of the chain's bridge account (needed: deposits come from the bridge).",
)
@node_options
@signer_options
def deposit_command(
    amount: str,
    to_address: str | None,
    bridge_key: Path | None,
    node: str | None,
    directory: Path | None,
    genesis: Path | None,
    key_file: Path | None,
    password_file: Path | None,
    subaccount: int,
    nonce: int | None,
    fee: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Credit AMOUNT of collateral to a subaccount.

    Deposits are bridged in from L1, so only the chain's bridge key may send
    them. Until the L1 bridge exists, the bridge is a key listed in genesis:
    on a local testnet it is the market operator, whose key `seqnet trade
    testnet-key --operator --out bridge.key` writes. --bridge-key signs (and
    pays the fee); the credited account is --to or --key's address.

    \b
    Examples:
      seqnet trade deposit 5000 --bridge-key bridge.key --key trader.key
      seqnet trade deposit 100.5 --bridge-key bridge.key --to 0x5c0f...e1 --subaccount 1
    """
    from sequencer_net.execution.state import subaccount_id
    from sequencer_net.execution.transactions import Deposit

    if bridge_key is None:
        raise click.UsageError(
            "--bridge-key FILE is required: only the chain's bridge account may deposit. "
            "On a local testnet the market operator is the bridge: "
            "`seqnet trade testnet-key --operator --out bridge.key` exports its key"
        )
    value = parse_amount(amount, "AMOUNT")
    if to_address is not None:
        owner = parse_address(to_address, "--to")
    else:
        if key_file is None:
            raise click.UsageError("say whom to credit: --to ADDRESS or --key FILE")
        owner = read_key(key_file, password_file).address
    target = resolve_target(node, directory, genesis)
    bridge = read_key(bridge_key, None, "--bridge-key")
    action = Deposit(subaccount_id(owner, subaccount), value)
    answer = submit(target, bridge, action, nonce=nonce, fee=fee, wait=wait, timeout=timeout)
    report(answer, as_json, f"deposited {amount} to 0x{owner.hex()}/{subaccount}")


@trade.command(name="withdraw")
@click.argument("amount")
@click.option(
    "--to",
    "to_address",
    help="The L1 address the Bridge pays (0x + 40 hex) [default: --key's address].",
)
@click.option(
    "--eth",
    is_flag=True,
    help="Withdraw from the L1 ether balance (credited by ether deposits) instead of collateral.",
)
@node_options
@signer_options
def withdraw_command(
    amount: str,
    to_address: str | None,
    eth: bool,
    node: str | None,
    directory: Path | None,
    genesis: Path | None,
    key_file: Path | None,
    password_file: Path | None,
    subaccount: int,
    nonce: int | None,
    fee: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Withdraw AMOUNT to L1: debit it here and write the record the L1 Bridge pays.

    Once the validators have posted a state holding the record, claim it on L1
    with `seqnet l1 claim --id ID` (the Bridge pays after its challenge window).
    Collateral is paid in the chain's collateral token; --eth withdraws ether.

    \b
    Examples:
      seqnet trade withdraw 250 --key trader.key
      seqnet trade withdraw 0.5 --eth --to 0x5c0f...e1 --key trader.key
    """
    from sequencer_net.execution.transactions import Withdraw

    if key_file is None:
        raise click.UsageError("--key FILE is required: the withdrawing account signs")
    key = read_key(key_file, password_file)
    recipient = key.address
    if to_address is not None:
        recipient = parse_address(to_address, "--to")
    value = parse_amount(amount, "AMOUNT")
    if eth and subaccount != 0:
        raise click.BadParameter("ether is withdrawn from subaccount 0", param_hint="--subaccount")
    action = Withdraw(subaccount, value, recipient, bytes(20) if eth else b"")
    target = resolve_target(node, directory, genesis)
    answer = submit(target, key, action, nonce=nonce, fee=fee, wait=wait, timeout=timeout)
    receipt = answer.get("receipt")
    if receipt is not None and receipt["success"]:
        answer["withdrawal_id"] = _newest_withdrawal_id(target, recipient, value)
    done = f"withdrew {amount} to 0x{recipient.hex()}"
    if answer.get("withdrawal_id") is not None:
        done += f" (withdrawal id {answer['withdrawal_id']}: `seqnet l1 claim --id` pays it)"
    report(answer, as_json, done)


def _newest_withdrawal_id(target: Target, recipient: bytes, amount: int) -> int | None:
    """The id of the newest L1 withdrawal record paying `amount` to `recipient`."""
    from sequencer_net.client import SeqnetApiError

    try:
        with target.client() as client:
            listed = client.withdrawals(recipient=recipient, limit=20)["withdrawals"]
    except SeqnetApiError:
        return None
    for record in listed:
        if record.get("amount") == str(amount):
            return int(record["id"])
    return None


@trade.command(name="testnet-key")
@click.option("--account", type=click.IntRange(min=0), help="Load account number N of the seed.")
@click.option("--operator", is_flag=True, help="The seed's market operator (the bridge).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed.")
@click.option("--out", type=_FILE, required=True, help="Write the key here (mode 0600).")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
def testnet_key_command(
    account: int | None, operator: bool, seed: int, out: Path, force: bool
) -> None:
    """Write a local testnet's funded key to a key file.

    `seqnet testnet up` funds load accounts 0..N-1 of its seed and makes the
    seed's market operator the bridge (docs/testnet.md, "Load
    accounts"). Their keys are derived from the seed by a public rule, so this
    is for local testnets only.

    \b
    Examples:
      seqnet trade testnet-key --account 0 --out trader.key
      seqnet trade testnet-key --operator --out bridge.key
    """
    from sequencer_net.home.keystore import KeystoreError, write_key_file
    from sequencer_net.testnet.accounts import load_account_secret, market_operator_key

    if operator == (account is not None):
        raise click.UsageError("give exactly one of --account N and --operator")
    if out.exists() and not force:
        raise click.ClickException(f"{out} already exists (use --force to replace it)")
    secret = (
        market_operator_key(seed).secret if operator else load_account_secret(seed, account or 0)
    )
    try:
        write_key_file(out, secret)
    except (KeystoreError, OSError) as exc:
        raise click.ClickException(f"cannot write {out}: {exc}") from exc
    from consensus.crypto import PrivateKey

    click.echo(f"wrote {out}: address 0x{PrivateKey(secret).address.hex()}")
