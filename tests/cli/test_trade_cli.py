"""`seqnet trade ...` through click's CliRunner against a trading node on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from consensus.crypto import PrivateKey
from sequencer_net.cli.main import cli
from sequencer_net.home.keystore import read_key_file
from tests.cli.trading_node import OPERATOR, TRADER, TradingNode, W

BTC = 1


@pytest.fixture
def node() -> Iterator[TradingNode]:
    served = TradingNode()
    yield served
    served.close()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Key files of the trader (load account 0), the maker and the bridge."""
    paths = {"trader": tmp_path / "trader.key", "bridge": tmp_path / "bridge.key"}
    assert trade("testnet-key", "--account", "0", "--out", str(paths["trader"])).exit_code == 0
    assert trade("testnet-key", "--operator", "--out", str(paths["bridge"])).exit_code == 0
    paths["maker"] = tmp_path / "maker.key"
    assert trade("testnet-key", "--account", "1", "--out", str(paths["maker"])).exit_code == 0
    return paths


def trade(*args: str) -> Result:
    return CliRunner().invoke(cli, ["trade", *args], catch_exceptions=False)


def on(node: TradingNode, *args: str) -> Result:
    return trade(*args, "--node", node.url)


def account(node: TradingNode, key: Path) -> dict[str, object]:
    result = on(node, "positions", "--key", str(key), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def first_sub(node: TradingNode, key: Path) -> dict[str, list[dict[str, object]]]:
    return account(node, key)["subaccounts"][0]  # type: ignore[index, no-any-return]


def test_testnet_keys_are_the_funded_load_account_and_the_operator(keys: dict[str, Path]) -> None:
    assert PrivateKey(read_key_file(keys["trader"])).address == TRADER.address
    assert PrivateKey(read_key_file(keys["bridge"])).address == OPERATOR.address
    again = trade("testnet-key", "--account", "0", "--out", str(keys["trader"]))
    assert again.exit_code != 0 and "already exists" in again.output
    both = trade("testnet-key", "--account", "0", "--operator", "--out", "x.key")
    assert both.exit_code != 0 and "exactly one" in both.output


def test_markets_json_and_table(node: TradingNode) -> None:
    result = on(node, "markets", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert [m["id"] for m in answer["markets"]] == [1, 2, 3, 4]
    assert answer["markets"][0]["oracle_price"] == "60000"
    table = on(node, "markets")
    assert table.exit_code == 0
    assert "BTC-PERP" in table.output and "ETH-P-3000" in table.output


def test_an_order_appears_and_a_cancel_removes_it(node: TradingNode, keys: dict[str, Path]) -> None:
    placed = on(
        node, "order", "BTC-PERP", "buy", "0.1", "59000", "--key", str(keys["trader"]), "--json"
    )
    assert placed.exit_code == 0, placed.output
    answer = json.loads(placed.output)
    assert answer["status"] == "committed" and answer["receipt"]["success"] is True
    orders = first_sub(node, keys["trader"])["orders"]
    assert [(o["order_id"], o["side"], o["price"], o["quantity"]) for o in orders] == [
        (answer["order_id"], "buy", "59000", "0.1")
    ]
    positions = account(node, keys["trader"])
    assert positions["subaccounts"][0]["positions"][0]["open_buy"] == "0.1"  # type: ignore[index]
    cancelled = on(node, "cancel", answer["order_id"], "--key", str(keys["trader"]))
    assert cancelled.exit_code == 0, cancelled.output
    assert "cancelled at height" in cancelled.output
    assert first_sub(node, keys["trader"])["orders"] == []


def test_client_id_good_til_and_cancel_by_client_id(
    node: TradingNode, keys: dict[str, Path]
) -> None:
    args = ("--key", str(keys["trader"]))
    placed = on(
        node, "order", "1", "sell", "0.2", "61000", "--client-id", "7", "--good-til", "+3600", *args
    )
    assert placed.exit_code == 0, placed.output
    [order] = first_sub(node, keys["trader"])["orders"]
    assert order["client_id"] == 7 and isinstance(order["good_til"], int)
    duplicate = on(node, "order", "1", "sell", "0.2", "62000", "--client-id", "7", *args)
    assert duplicate.exit_code == 1
    assert "rejected" in duplicate.output and "DuplicateClientId" in duplicate.output
    cancelled = on(node, "cancel", "--client-id", "7", *args)
    assert cancelled.exit_code == 0, cancelled.output
    assert first_sub(node, keys["trader"])["orders"] == []
    missing = on(node, "cancel", "--client-id", "7", *args)
    assert missing.exit_code == 1 and "UnknownOrder" in missing.output


def test_a_stop_order_waits_then_trades_after_the_mark_falls(
    node: TradingNode, keys: dict[str, Path]
) -> None:
    trader, maker = ("--key", str(keys["trader"])), ("--key", str(keys["maker"]))
    assert on(node, "order", "BTC-PERP", "sell", "0.1", "60000", *maker).exit_code == 0
    assert on(node, "order", "BTC-PERP", "buy", "0.1", "60000", *trader).exit_code == 0
    assert first_sub(node, keys["trader"])["positions"][0]["size"] == "0.1"
    stop = on(
        node,
        "order",
        "BTC-PERP",
        "sell",
        "0.1",
        "--stop",
        "59000",
        "--reduce-only",
        *trader,
        "--json",
    )
    assert stop.exit_code == 0, stop.output
    [waiting] = first_sub(node, keys["trader"])["conditional_orders"]
    assert waiting["trigger"] == "stop" and waiting["trigger_price"] == "59000"
    assert waiting["triggered_at"] is None and waiting["price"] == "0"
    table = on(node, "positions", *trader)
    assert "stop @ 59000" in table.output
    assert on(node, "order", "BTC-PERP", "buy", "0.1", "58500", *maker).exit_code == 0
    node.chain.prices[BTC] = 58_900 * W
    node.chain.execute()  # the mark falls below the trigger at the end of this block
    [armed] = first_sub(node, keys["trader"])["conditional_orders"]
    assert armed["triggered_at"] is not None
    node.chain.execute()  # the next block's auction takes it
    sub = first_sub(node, keys["trader"])
    assert sub["conditional_orders"] == [] and sub["positions"] == []


def test_a_stop_order_cancels_by_order_id(node: TradingNode, keys: dict[str, Path]) -> None:
    args = ("--key", str(keys["trader"]))
    placed = on(
        node, "order", "ETH-PERP", "buy", "1", "3100", "--take-profit", "2900", *args, "--json"
    )
    assert placed.exit_code == 0, placed.output
    order_id = json.loads(placed.output)["order_id"]
    assert on(node, "cancel", order_id, *args).exit_code == 0
    assert first_sub(node, keys["trader"])["conditional_orders"] == []


def test_deposit_needs_the_bridge_key(node: TradingNode, keys: dict[str, Path]) -> None:
    without = on(node, "deposit", "100", "--key", str(keys["trader"]))
    assert without.exit_code == 2 and "--bridge-key" in without.output
    before = first_sub(node, keys["trader"])["collateral"]
    done = on(
        node, "deposit", "100.5", "--bridge-key", str(keys["bridge"]), "--key", str(keys["trader"])
    )
    assert done.exit_code == 0, done.output
    after = first_sub(node, keys["trader"])["collateral"]
    assert float(after) - float(before) == pytest.approx(100.5)  # type: ignore[arg-type]
    wrong = on(
        node, "deposit", "1", "--bridge-key", str(keys["trader"]), "--key", str(keys["trader"])
    )
    assert wrong.exit_code == 1 and "Unauthorized" in wrong.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("order", "DOGE-PERP", "buy", "1", "1"), "unknown market"),
        (("order", "9", "buy", "1", "1"), "not listed"),
        (("order", "BTC-PERP", "buy", "0.0001", "60000"), "lot"),
        (("order", "BTC-PERP", "buy", "0.1", "60000.5"), "tick"),
        (("order", "BTC-PERP", "buy", "abc", "60000"), "not a decimal"),
        (("order", "BTC-PERP", "buy", "0.1", "--stop", "1", "--take-profit", "2"), "not both"),
        (("order", "BTC-PERP", "buy", "0.1", "--tif", "gtc"), "immediate-or-cancel"),
        (("order", "BTC-PERP", "buy", "0.1", "60000", "--good-til", "soon"), "unix seconds"),
        (("order", "BTC-PERP", "hold", "0.1"), "hold"),
        (("cancel",), "ORDER_ID"),
        (("cancel", "0x12"), "64 hex"),
        (("positions", "--address", "0xzz"), "40 hex"),
        (("order", "BTC-PERP", "buy", "0.1", "60000", "--fee", "-1"), "fee"),
    ],
)
def test_bad_input_gets_a_clear_error(
    node: TradingNode, keys: dict[str, Path], args: tuple[str, ...], message: str
) -> None:
    result = on(node, *args, "--key", str(keys["trader"]))
    assert result.exit_code != 0
    assert message in result.output


def test_no_wait_returns_once_the_node_accepted_it(
    node: TradingNode, keys: dict[str, Path]
) -> None:
    result = on(
        node, "order", "BTC-PERP", "buy", "0.1", "59000", "--no-wait", "--key", str(keys["trader"])
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("submitted 0x") and "(nonce 0)" in result.output


def test_an_engine_rejection_exits_1_with_its_reason(
    node: TradingNode, keys: dict[str, Path]
) -> None:
    result = on(node, "order", "BTC-PERP", "buy", "1000", "60000", "--key", str(keys["trader"]))
    assert result.exit_code == 1
    assert "rejected at height" in result.output and "InsufficientMargin" in result.output


def test_an_unreachable_node_is_a_clear_error(keys: dict[str, Path]) -> None:
    result = trade("markets", "--node", "http://127.0.0.1:9")
    assert result.exit_code == 1 and "cannot list markets" in result.output


def test_every_command_has_help() -> None:
    for command in ("", "markets", "positions", "order", "cancel", "deposit", "testnet-key"):
        result = trade(*([command] if command else []), "--help")
        assert result.exit_code == 0 and "Examples:" in result.output, command


def test_encrypt_needs_the_network_key(node: TradingNode, keys: dict[str, Path]) -> None:
    """This node reports no threshold key: --encrypt says so and sends nothing."""
    order = ("order", "BTC-PERP", "buy", "0.1", "59000", "--encrypt")
    result = CliRunner().invoke(
        cli, ["trade", *order, "--key", str(keys["trader"]), "--node", node.url]
    )
    assert result.exit_code == 1
    assert "--encrypt: cannot read the network key" in result.output
    assert first_sub(node, keys["trader"])["orders"] == []
