"""The testnet's L1: anvil started with the testnet, the contracts at the
addresses genesis and the validators' configs name, and stopped by `down`.

The fake-node test checks the L1 piece on its own (fast); the real-node test
checks that real validators commit with the [l1] configs and the genesis
naming the Commitments contract.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner
from eth_account import Account
from web3 import Web3

from consensus.crypto import PrivateKey
from sequencer_net.cli.main import cli
from sequencer_net.cli.testnet import testnet_domain as domain_of
from sequencer_net.client import SeqnetApiError, SeqnetClient, withdraw_transaction
from sequencer_net.home.config import load_config
from sequencer_net.home.genesis import load_genesis
from sequencer_net.home.keystore import write_key_file
from sequencer_net.l1.anvil import ANVIL_ENV, DEV_PRIVATE_KEYS, anvil_available
from sequencer_net.l1.artifacts import load_artifact
from sequencer_net.l1.deploy import predict_addresses
from sequencer_net.l1.transact import transact
from sequencer_net.l1.user import contract, deposit_token
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.payload.format import decode_payload
from sequencer_net.testnet.l1 import (
    L1_PORT_OFFSET,
    VALIDATOR_GAS_WEI,
    L1Observer,
    deployer_address,
    predicted_l1_addresses,
)
from sequencer_net.testnet.manifest import Manifest
from sequencer_net.testnet.network import (
    GENESIS_FILE,
    Testnet,
    TestnetError,
    start_testnet,
)
from sequencer_net.testnet.processes import is_our_process

from .conftest import FAKE_NODE_COMMAND, free_base_port

WAD = 10**18
T = TypeVar("T")

needs_anvil = pytest.mark.skipif(
    not anvil_available(), reason="anvil not installed (scripts/setup.sh)"
)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _assert_l1_deployed_for_genesis(net: Testnet) -> None:
    """The contracts are where genesis and every [l1] config say, built for this genesis."""
    assert net.l1 is not None and net.l1.deployed
    genesis = load_genesis(net.directory / GENESIS_FILE)
    addresses = predicted_l1_addresses()
    assert addresses == predict_addresses(deployer_address(), 0) == net.l1.addresses
    assert genesis.verifying_contract == addresses.commitments
    assert genesis.execution.collateral_token == addresses.collateral_token
    for node in net.nodes:
        l1 = load_config(node.spec.home).l1
        assert l1.rpc_url == net.l1.rpc_url
        assert (l1.commitments, l1.inbox, l1.bridge) == (
            addresses.checksum("commitments"),
            addresses.checksum("inbox"),
            addresses.checksum("bridge"),
        )
    w3 = Web3(Web3.HTTPProvider(net.l1.rpc_url))
    for name in ("collateral_token", "commitments", "inbox", "bridge"):
        assert len(w3.eth.get_code(addresses.checksum(name))) > 0, name
    commitments = w3.eth.contract(
        address=addresses.checksum("commitments"), abi=load_artifact("Commitments").abi_list
    )
    # The contract rebuilds the validators' signing domain: same chain id, contract, genesis.
    assert commitments.functions.domainSeparator().call() == genesis.domain().separator()
    assert commitments.functions.genesisHash().call() == genesis.genesis_block().digest()
    # The validators may already have posted by now: read the history as it was in the L1
    # block that deployed the last contract, before any validator could post.
    deployed_at = _deployment_block(w3, addresses.checksum("bridge"))
    assert commitments.functions.postCount().call(block_identifier=deployed_at) == 0
    assert commitments.functions.latestStateRoot().call(block_identifier=deployed_at) == bytes(32)
    assert commitments.functions.totalPower().call() == sum(v.weight for v in genesis.validators)
    for validator in genesis.validators:
        checksum = Web3.to_checksum_address(validator.address)
        assert commitments.functions.powerOf(checksum).call() == validator.weight
        # Funded with VALIDATOR_GAS_WEI; a validator that has posted since has paid gas from it.
        balance = w3.eth.get_balance(checksum)
        sent = w3.eth.get_transaction_count(checksum)
        assert balance == VALIDATOR_GAS_WEI or (sent > 0 and 0 < balance < VALIDATOR_GAS_WEI)


def _deployment_block(w3: Web3, address: str) -> int:
    """The first L1 block at which `address` holds code (a bisection over the chain)."""
    low, high = 0, w3.eth.block_number
    assert len(w3.eth.get_code(address, block_identifier=high)) > 0
    while low < high:
        mid = (low + high) // 2
        if len(w3.eth.get_code(address, block_identifier=mid)) > 0:
            high = mid
        else:
            low = mid + 1
    return low


@needs_anvil
def test_up_starts_anvil_deploys_at_the_predicted_addresses_and_down_stops_it(
    testnet_dir: Path,
) -> None:
    base = free_base_port(3)
    net = start_testnet(
        testnet_dir,
        manifest=Manifest(),
        validators=3,
        base_port=base,
        node_command=FAKE_NODE_COMMAND,
        ready_timeout_s=20.0,
        stop_grace_s=2.0,
    )
    assert net.l1 is not None
    assert net.l1.rpc_url == f"http://127.0.0.1:{base + L1_PORT_OFFSET}"
    _assert_l1_deployed_for_genesis(net)
    anvil_pid = net.l1.pid
    assert anvil_pid is not None

    # Another process (the CLI) finds the L1 from testnet.json.
    runner = CliRunner()
    status = runner.invoke(cli, ["testnet", "status", "--dir", str(testnet_dir), "--json"])
    assert status.exit_code == 0, status.output
    l1_status = json.loads(status.output)["l1"]
    assert l1_status["running"] and l1_status["pid"] == anvil_pid and l1_status["deployed"]
    shown = runner.invoke(cli, ["testnet", "l1", "--dir", str(testnet_dir), "--json"])
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    chain = report["chain"]
    assert chain["error"] is None and chain["head"] >= 1
    assert (chain["committed_height"], chain["deposits"], chain["withdrawals"]) == (0, 0, 0)
    assert chain["forced"] == 0 and chain["escape_open"] is False
    assert [n["l1"] for n in report["nodes"]] == [None, None, None]  # fake nodes report none
    text = runner.invoke(cli, ["testnet", "l1", "--dir", str(testnet_dir)])
    assert text.exit_code == 0 and "posted height 0" in text.output, text.output

    down = runner.invoke(cli, ["testnet", "down", "--dir", str(testnet_dir), "--grace", "2"])
    assert down.exit_code == 0, down.output
    assert f"anvil: terminated (pid {anvil_pid})" in down.output
    assert net.l1.identity is not None and not is_our_process(net.l1.identity)
    assert _port_free(base + L1_PORT_OFFSET)
    after = Testnet.load(testnet_dir)
    assert not after.running_nodes() and not after.l1_running()
    assert L1Observer(net.l1.rpc_url, net.l1.addresses).read().error is not None
    clean = runner.invoke(cli, ["testnet", "down", "--dir", str(testnet_dir), "--clean"])
    assert clean.exit_code == 0, clean.output
    assert not testnet_dir.exists()


@needs_anvil
def test_without_anvil_up_fails_before_writing_anything_and_names_the_setup(
    testnet_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ANVIL_ENV, str(tmp_path / "no-anvil-here"))
    with pytest.raises(TestnetError, match=r"scripts/setup\.sh.*--no-l1"):
        start_testnet(testnet_dir, validators=1, node_command=FAKE_NODE_COMMAND)
    assert not testnet_dir.exists()
    result = CliRunner().invoke(
        cli,
        ["testnet", "up", "--detach", "-n", "1", "--dir", str(testnet_dir),
         "--node-command", " ".join(FAKE_NODE_COMMAND)],
    )  # fmt: skip
    assert result.exit_code == 1 and "scripts/setup.sh" in result.output


def _until(check: Callable[[], T | None], what: str, timeout_s: float = 90.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.25)


def _collateral(client: SeqnetClient, owner: bytes) -> Decimal:
    try:
        account = client.account(owner)
    except SeqnetApiError:
        return Decimal(0)
    subs = [s for s in account["subaccounts"] if s["number"] == 0]
    return Decimal(subs[0]["collateral"]) if subs else Decimal(0)


def _statuses(net: Testnet) -> list[dict[str, Any]]:
    out = []
    for node in net.nodes:
        with SeqnetClient(node.api_url, timeout=5.0) as client:
            out.append(client.status())
    return out


def _committed(client: SeqnetClient, tx: bytes) -> dict[str, Any] | None:
    try:
        found = client.transaction(tx)
    except SeqnetApiError:
        return None
    return found if found.get("status") == "committed" else None


@needs_anvil
def test_real_validators_post_credit_deposits_pay_withdrawals_and_take_forced_transactions(
    testnet_dir: Path,
) -> None:
    """Four real validators and anvil, end to end: the validators post finalized
    blocks to Commitments; an L1 deposit becomes collateral on the chain once a
    quorum reported it; a withdrawal executed on the chain is paid on L1 against
    a posted root; a transaction put in the L1 Inbox is executed by the chain,
    first in its block."""
    net = start_testnet(
        testnet_dir,
        manifest=Manifest().with_overrides(validators=4, rate=0.0),
        base_port=free_base_port(4),
    )
    try:
        _assert_l1_deployed_for_genesis(net)
        assert net.l1 is not None
        addresses = net.l1.addresses
        w3 = Web3(Web3.HTTPProvider(net.l1.rpc_url))
        commitments = contract(w3, "Commitments", addresses.commitments)
        bridge = contract(w3, "Bridge", addresses.bridge)
        inbox = contract(w3, "Inbox", addresses.inbox)
        token = contract(w3, "CollateralToken", addresses.collateral_token)
        client = SeqnetClient(net.nodes[1].api_url, timeout=5.0)
        domain = domain_of(net)

        # Posting: validators post in turns; a steady posting stays under 65,000 gas.
        _until(lambda: commitments.functions.latestHeight().call() > 0, "a first posting")
        gas = _until(
            lambda: [
                s["l1"]["gas_per_posting"] for s in _statuses(net) if s["l1"]["gas_per_posting"]
            ],
            "a node reporting its posting gas",
        )
        assert all(g <= 65_000 for g in gas)

        # Every validator runs an evidence watcher: it reads the contract (not frozen)
        # and has nothing to submit on an honest network.
        def all_watching() -> list[dict[str, Any]] | None:
            states = [s["l1"] for s in _statuses(net)]
            return states if all(s["frozen"] is not None for s in states) else None

        watching = _until(all_watching, "every evidence watcher reading the contract")
        assert all(l1["frozen"] is False and l1["evidence_submitted"] == 0 for l1 in watching)

        # Deposit: an L1 account (its key is also a seqnet key) locks 2 collateral.
        user = Account.from_key(DEV_PRIVATE_KEYS[1])
        key = PrivateKey(DEV_PRIVATE_KEYS[1])
        transact(w3, user, token.functions.mint(user.address, 10 * WAD))
        deposit_token(w3, user, bridge, key.address + b"\x00", 2 * WAD)
        _until(lambda: _collateral(client, key.address) >= 2, "the deposit credited on the chain")

        # Withdrawal, from the command line: executed on the chain (`trade withdraw`
        # prints its id), then paid on L1 against a posted root (`l1 claim`).
        recipient = Account.from_key(DEV_PRIVATE_KEYS[2])
        to = bytes.fromhex(recipient.address[2:])
        trader_key = testnet_dir.parent / "trader.key"
        write_key_file(trader_key, DEV_PRIVATE_KEYS[1])
        l1_key = testnet_dir.parent / "l1.key"
        l1_key.write_text("0x" + DEV_PRIVATE_KEYS[1].hex())
        runner = CliRunner()
        withdrew = runner.invoke(
            cli,
            ["trade", "withdraw", "0.5", "--to", recipient.address, "--key", str(trader_key),
             "--dir", str(testnet_dir), "--timeout", "60", "--json"],
        )  # fmt: skip
        assert withdrew.exit_code == 0, withdrew.output
        withdrawal_id = json.loads(withdrew.output)["withdrawal_id"]
        (record,) = client.withdrawals(recipient=to)["withdrawals"]
        assert record["id"] == withdrawal_id and record["amount"] == str(WAD // 2)
        before = token.functions.balanceOf(recipient.address).call()
        claim = ["l1", "claim", "--id", str(withdrawal_id), "--rpc", net.l1.rpc_url,
                 "--bridge", "0x" + addresses.bridge.hex(), "--node", net.nodes[2].api_url,
                 "--key-file", str(l1_key), "--json"]  # fmt: skip

        def claimed() -> dict[str, Any] | None:
            result = runner.invoke(cli, claim)
            if result.exit_code != 0:
                assert "not in the posted state" in result.output, result.output
                return None
            return json.loads(result.output)  # type: ignore[no-any-return]

        paid = _until(claimed, "the withdrawal in a posted state, then its challenge window")
        assert paid["amount"] == str(WAD // 2)
        assert token.functions.balanceOf(recipient.address).call() == before + WAD // 2
        again = runner.invoke(cli, claim)
        assert again.exit_code == 1 and "AlreadyWithdrawn" in again.output, again.output

        # Forced inclusion: a signed transaction posted to the L1 Inbox is executed.
        forced = withdraw_transaction(key, domain, 1, amount=WAD // 4, recipient=to)
        transact(w3, user, inbox.functions.submit(forced))
        found = _until(lambda: _committed(client, tx_hash(forced)), "the forced transaction")
        assert found["receipt"]["success"], found
        # Marked forced in its block (inbox entry 0: the first Inbox submission
        # here), so it executed first there, whatever else the block carries.
        executed_in = client.block(found["height"])
        payload = decode_payload(bytes.fromhex(executed_in["payload"][2:]))
        assert [(m.index, m.tx_hash) for m in payload.forced] == [(0, tx_hash(forced))]
        assert found["index"] == 0
        assert executed_in["transactions"][0] == "0x" + forced.hex()
        client.close()
        anvil = net.l1.identity
    finally:
        outcomes = net.stop(grace_s=5.0)
    assert {o.how for o in outcomes} == {"terminated"}
    # Checked by identity (command line and start time), not by PID: a PID freed
    # here may already name another process.
    assert anvil is not None and not is_our_process(anvil)
    assert not any(is_our_process(node.identity) for node in net.nodes if node.identity)


def test_the_docs_name_the_predicted_addresses() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "testnet.md").read_text()
    addresses = predicted_l1_addresses()
    for name in ("collateral_token", "commitments", "inbox", "bridge"):
        assert f"`{addresses.checksum(name)}`" in docs, name
