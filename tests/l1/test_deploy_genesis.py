"""Deploying for a real genesis: the contracts land at the addresses genesis
named, Commitments verifies in that genesis's signing domain (and takes its
whole validator-set schedule), and a deployer whose nonce moved is refused
before anything is sent."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import msgspec
import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError

from consensus.crypto import PrivateKey
from consensus.epochs import epoch_domain_separator
from sequencer_net.home.genesis import Genesis, LocalEpoch, make_local_genesis
from sequencer_net.l1.anvil import DEV_PRIVATE_KEYS, Anvil
from sequencer_net.l1.artifacts import custom_error_name, load_artifact
from sequencer_net.l1.deploy import DeploymentError, deploy_for_genesis, predict_addresses
from sequencer_net.l1.header import L1Header, sign_packed, validator_set_hash
from sequencer_net.l1.transact import transact
from tests.l1.l1_chain import requires_anvil

pytestmark = requires_anvil


def _genesis(deployer: bytes, nonce: int) -> Genesis:
    secrets = [hashlib.sha256(b"deploy-genesis-%d" % i).digest() for i in range(4)]
    local = make_local_genesis(
        secrets, chain_id=4242, base_p2p_port=36600, base_api_port=36700, genesis_time_ms=1
    )
    predicted = predict_addresses(deployer, nonce)
    return dataclasses.replace(
        local,
        verifying_contract=predicted.commitments,
        execution=msgspec.structs.replace(
            local.execution, collateral_token=predicted.collateral_token
        ),
    )


def test_the_contracts_land_where_genesis_named_them() -> None:
    deployer = Account.from_key(DEV_PRIVATE_KEYS[0])
    genesis = _genesis(bytes.fromhex(deployer.address[2:]), 0)
    with Anvil.start() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        wrong = _genesis(bytes.fromhex(deployer.address[2:]), 1)
        with pytest.raises(DeploymentError, match="would create Commitments"):
            deploy_for_genesis(w3, DEV_PRIVATE_KEYS[0], wrong, inclusion_window=5, escape_delay=9)
        assert w3.eth.get_transaction_count(deployer.address) == 0  # nothing sent
        addresses = deploy_for_genesis(
            w3, DEV_PRIVATE_KEYS[0], genesis, inclusion_window=5, escape_delay=9
        )
        assert addresses.commitments == genesis.verifying_contract
        assert addresses.collateral_token == genesis.execution.collateral_token
        commitments = w3.eth.contract(
            address=addresses.checksum("commitments"), abi=load_artifact("Commitments").abi_list
        )
        assert commitments.functions.domainSeparator().call() == genesis.domain().separator()
        assert commitments.functions.totalPower().call() == genesis.validator_set().total_weight


def test_the_cli_deploys_for_a_genesis_and_deposits(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from sequencer_net.cli.main import cli
    from sequencer_net.home.genesis import write_genesis

    deployer = Account.from_key(DEV_PRIVATE_KEYS[0])
    genesis = _genesis(bytes.fromhex(deployer.address[2:]), 0)
    write_genesis(tmp_path / "genesis.json", genesis)
    key_file = tmp_path / "deployer.key"
    key_file.write_text("0x" + DEV_PRIVATE_KEYS[0].hex() + "\n")
    runner = CliRunner()
    with Anvil.start() as anvil:
        deployed = runner.invoke(
            cli,
            ["l1", "deploy", "--genesis", str(tmp_path / "genesis.json"), "--rpc", anvil.url,
             "--key-file", str(key_file), "--json"],
        )  # fmt: skip
        assert deployed.exit_code == 0, deployed.output
        addresses = json.loads(deployed.output)
        assert addresses["commitments"] == "0x" + genesis.verifying_contract.hex()
        again = runner.invoke(
            cli,
            ["l1", "deploy", "--genesis", str(tmp_path / "genesis.json"), "--rpc", anvil.url,
             "--key-file", str(key_file)],
        )  # fmt: skip
        assert again.exit_code == 1 and "would create Commitments" in again.output

        w3 = Web3(Web3.HTTPProvider(anvil.url))
        token = w3.eth.contract(
            address=Web3.to_checksum_address(addresses["collateral_token"]),
            abi=load_artifact("CollateralToken").abi_list,
        )
        transact(w3, deployer, token.functions.mint(deployer.address, 5 * 10**18))
        owner = "0x" + "ab" * 20
        common = [
            "l1", "deposit", "--rpc", anvil.url, "--bridge", addresses["bridge"],
            "--key-file", str(key_file), "--to", owner, "--subaccount", "2", "--json",
        ]  # fmt: skip
        made = runner.invoke(cli, [*common, "--amount", "1.5"])
        assert made.exit_code == 0, made.output
        assert json.loads(made.output) == {
            "nonce": 0,
            "subaccount": owner + "02",
            "token": addresses["collateral_token"],
            "amount": str(15 * 10**17),
            "l1_block": json.loads(made.output)["l1_block"],
        }
        ether = runner.invoke(cli, [*common, "--amount", "0.25", "--eth"])
        assert ether.exit_code == 0, ether.output
        assert json.loads(ether.output)["token"] == "0x" + "00" * 20
        too_much = runner.invoke(cli, [*common, "--amount", "100"])
        assert too_much.exit_code == 1 and "TokenTransferFailed" in too_much.output
        bad = runner.invoke(cli, [*common, "--amount", "-1"])
        assert bad.exit_code == 2


def test_a_genesis_with_epochs_deploys_its_whole_schedule() -> None:
    """Commitments gets every epoch of the genesis: its first height, its set and
    its separator, and verifies a height of epoch 1 with epoch 1's keys only."""
    deployer = Account.from_key(DEV_PRIVATE_KEYS[0])
    predicted = predict_addresses(bytes.fromhex(deployer.address[2:]), 0)
    secrets = [hashlib.sha256(b"deploy-epochs-%d" % i).digest() for i in range(6)]
    local = make_local_genesis(
        secrets,
        chain_id=4243,
        base_p2p_port=36610,
        base_api_port=36710,
        genesis_time_ms=1,
        initial=(0, 1, 2, 3),
        epochs=(LocalEpoch(20, (0, 1, 2, 4), weights=(1, 1, 1, 2)), LocalEpoch(40, (1, 3, 4, 5))),
    )
    genesis = dataclasses.replace(
        local,
        verifying_contract=predicted.commitments,
        execution=msgspec.structs.replace(
            local.execution, collateral_token=predicted.collateral_token
        ),
    )
    schedule = genesis.schedule()
    with Anvil.start() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        addresses = deploy_for_genesis(
            w3, DEV_PRIVATE_KEYS[0], genesis, inclusion_window=5, escape_delay=9
        )
        commitments = w3.eth.contract(
            address=addresses.checksum("commitments"), abi=load_artifact("Commitments").abi_list
        )
        functions = commitments.functions
        base = genesis.domain().separator()
        assert functions.lastEpoch().call() == 2
        for epoch in range(3):
            members = sorted((v.address, v.weight) for v in genesis.epoch_validators(epoch))
            assert functions.setHashOf(epoch).call() == validator_set_hash(
                epoch, [a for a, _ in members], [w for _, w in members]
            )
            assert functions.epochSeparator(epoch).call() == epoch_domain_separator(base, epoch)
        for height in (1, 19, 20, 39, 40, 1_000):
            assert functions.epochOf(height).call() == [True, schedule.epoch_of(height).number]

        header = L1Header(
            view=1,
            height=25,
            parent=bytes(32),
            proposer=0,
            timestamp_ms=1,
            state_height=0,
            state_root=bytes(32),
            batches_hash=L1Header.hash_batches([]),
            namespace_root=bytes(32),
        )
        keys: dict[bytes, PrivateKey] = {PrivateKey(s).address: PrivateKey(s) for s in secrets}
        epoch_1 = [keys[v.address] for v in genesis.epoch_validators(1)]
        epoch_0 = [keys[v.address] for v in genesis.epoch_validators(0)]

        def post(signers: list[PrivateKey], epoch: int) -> object:
            digest = header.finalize_digest(genesis.domain(), epoch)
            call = functions.post(header.as_abi(), sign_packed(signers, digest))
            return transact(w3, deployer, call, estimate_on="pending")

        with pytest.raises(ContractCustomError) as refused:
            post(epoch_0, 0)
        assert custom_error_name(refused.value) == "SignerNotInSet"
        post(epoch_1, 1)
        assert (functions.latestHeight().call(), functions.epoch().call()) == (25, 1)
