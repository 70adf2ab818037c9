"""Deploying for a real genesis: the contracts land at the addresses genesis
named, Commitments verifies in that genesis's signing domain, and a deployer
whose nonce moved is refused before anything is sent."""

from __future__ import annotations

import dataclasses
import hashlib

import msgspec
import pytest
from eth_account import Account
from web3 import Web3

from sequencer_net.home.genesis import Genesis, make_local_genesis
from sequencer_net.l1.anvil import DEV_PRIVATE_KEYS, Anvil
from sequencer_net.l1.artifacts import load_artifact
from sequencer_net.l1.deploy import DeploymentError, deploy_for_genesis, predict_addresses
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
