"""Deploy the L1 contracts at addresses known in advance.

One deployer account creates, at its nonces n0, n0+1, n0+2, n0+3:

    CollateralToken,
    Commitments(seqChainId, genesisHash, validators, powers, admin, resumeDelay,
                firstHeights, setHashes),
    Inbox(inclusionWindow), Bridge(commitments, token, escapeDelay, challengeWindow)

A CREATE address is the last 20 bytes of keccak(rlp([sender, nonce])), so
`predict_addresses(deployer, n0)` names every contract before anything is
sent: genesis can carry the Commitments address (its signing domain's
`verifying_contract`) before the chain starts. `deploy` checks each contract
landed where predicted.

Commitments takes the whole validator-set schedule at deployment: epoch 0's
set, and each later epoch's first height and set hash (`DeployEpoch`), as the
genesis names them (`deploy_for_genesis`); `deploy` then installs each later
epoch's set with `installEpoch` (one transaction each, checked against the
hash: a deployment's arguments count toward the 49,152-byte initcode limit,
which large sets would exceed). The schedule is fixed in the genesis, so
nothing needs signing later for the contract to follow it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from eth_account import Account
from eth_typing import ChecksumAddress
from web3 import Web3

from consensus.crypto import ADDRESS_LENGTH, Address, keccak256
from sequencer_net.l1.artifacts import load_artifact
from sequencer_net.l1.header import validator_set_hash
from sequencer_net.l1.transact import send, transact, wait

if TYPE_CHECKING:
    from sequencer_net.home.genesis import Genesis

DEPLOY_ORDER: Final = ("CollateralToken", "Commitments", "Inbox", "Bridge")
DEFAULT_CHALLENGE_WINDOW: Final = 10
DEPLOY_GAS_MARGIN_DIVISOR: Final = 10
"""Each deployment gets its gas estimate plus estimate // this."""
"""L1 blocks a proven withdrawal waits for evidence before it is paid (a testnet default:
two minutes at 12 s blocks; a public deployment wants hours)."""
DEFAULT_RESUME_DELAY: Final = 50
"""L1 blocks between a freeze and the earliest admin `resume`."""


@dataclass(frozen=True, slots=True)
class DeployEpoch:
    """A later validator-set epoch as Commitments takes it: from `first_height`
    on, `validators` (20-byte addresses) with `powers` sign, in the epoch's own
    signing domain."""

    first_height: int
    validators: Sequence[bytes]
    powers: Sequence[int]


class DeploymentError(RuntimeError):
    """A contract did not deploy, or not at its predicted address."""


@dataclass(frozen=True, slots=True)
class L1Addresses:
    """Where the contracts live (20-byte addresses)."""

    collateral_token: Address
    commitments: Address
    inbox: Address
    bridge: Address

    def checksum(self, name: str) -> ChecksumAddress:
        """The EIP-55 form of one field, e.g. `checksum("bridge")`, as web3 takes it."""
        return Web3.to_checksum_address(getattr(self, name))


def _rlp_string(data: bytes) -> bytes:
    if len(data) == 1 and data[0] < 0x80:
        return data
    if len(data) >= 56:
        raise ValueError("only short RLP strings are needed here")
    return bytes([0x80 + len(data)]) + data


def create_address(sender: bytes, nonce: int) -> Address:
    """The address CREATE gives the contract that `sender` deploys at `nonce`."""
    if len(sender) != ADDRESS_LENGTH:
        raise ValueError("sender must be a 20-byte address")
    if not 0 <= nonce < 2**64:
        raise ValueError("nonce out of range")
    nonce_bytes = nonce.to_bytes((nonce.bit_length() + 7) // 8, "big")  # 0 -> b""
    payload = _rlp_string(sender) + _rlp_string(nonce_bytes)
    return Address(keccak256(bytes([0xC0 + len(payload)]) + payload)[12:])


def predict_addresses(deployer: bytes, start_nonce: int) -> L1Addresses:
    """Where `deploy` puts the contracts when the deployer's next nonce is `start_nonce`."""
    token, commitments, inbox, bridge = (
        create_address(deployer, start_nonce + i) for i in range(len(DEPLOY_ORDER))
    )
    return L1Addresses(collateral_token=token, commitments=commitments, inbox=inbox, bridge=bridge)


def deploy(
    w3: Web3,
    deployer_key: bytes,
    seq_chain_id: int,
    genesis_hash: bytes,
    validators: Sequence[bytes],
    powers: Sequence[int],
    inclusion_window: int,
    escape_delay: int,
    *,
    challenge_window: int = DEFAULT_CHALLENGE_WINDOW,
    admin: bytes | None = None,
    resume_delay: int = DEFAULT_RESUME_DELAY,
    epochs: Sequence[DeployEpoch] = (),
) -> L1Addresses:
    """Deploy the four contracts from `deployer_key` at its next nonces.

    `validators` (20-byte addresses) and `powers` are paired and passed to
    Commitments in ascending address order, as it requires: they are epoch 0's
    set. `epochs` are the later epochs (1, 2, ...), each sorted the same way. `admin` (20 bytes)
    may resume the contracts `resume_delay` L1 blocks after a freeze; None
    means nobody can (a freeze is final). The Bridge's escape delay is never
    below `challenge_window`. Raises
    DeploymentError if a contract is not where `predict_addresses` says, and
    web3's ContractCustomError if a constructor refuses its arguments.
    """
    if len(validators) != len(powers):
        raise ValueError("validators and powers differ in length")
    if len(genesis_hash) != 32:
        raise ValueError("genesis hash must be 32 bytes")
    if admin is not None and len(admin) != ADDRESS_LENGTH:
        raise ValueError("admin must be a 20-byte address")
    account = Account.from_key(deployer_key)
    deployer = bytes.fromhex(account.address[2:])
    start = w3.eth.get_transaction_count(account.address, "pending")
    addresses = predict_addresses(deployer, start)
    ordered = sorted(zip(validators, powers, strict=True))
    schedule: list[tuple[list[bytes], list[int]]] = []
    for epoch in epochs:
        if len(epoch.validators) != len(epoch.powers):
            raise ValueError(
                f"epoch from height {epoch.first_height}: validators and powers differ"
            )
        pairs = sorted(zip(epoch.validators, epoch.powers, strict=True))
        schedule.append(([address for address, _ in pairs], [power for _, power in pairs]))
    constructor_args: dict[str, tuple[object, ...]] = {
        "CollateralToken": (),
        "Commitments": (
            seq_chain_id,
            genesis_hash,
            [Web3.to_checksum_address(address) for address, _ in ordered],
            [power for _, power in ordered],
            Web3.to_checksum_address(admin if admin is not None else bytes(20)),
            resume_delay,
            [epoch.first_height for epoch in epochs],
            [
                validator_set_hash(number, members, member_powers)
                for number, (members, member_powers) in enumerate(schedule, start=1)
            ],
        ),
        "Inbox": (inclusion_window,),
        "Bridge": (
            addresses.checksum("commitments"),
            addresses.checksum("collateral_token"),
            escape_delay,
            challenge_window,
        ),
    }
    expected = {
        "CollateralToken": addresses.collateral_token,
        "Commitments": addresses.commitments,
        "Inbox": addresses.inbox,
        "Bridge": addresses.bridge,
    }
    sent = []
    for offset, name in enumerate(DEPLOY_ORDER):
        artifact = load_artifact(name)
        factory = w3.eth.contract(abi=artifact.abi_list, bytecode=artifact.bytecode)
        call = factory.constructor(*constructor_args[name])
        # A tenth over the estimate: Commitments' constructor writes its 1,025 history slots
        # (about 23 million gas), and an estimate made before the earlier deployments landed
        # can fall short of what the transaction meets in its block.
        estimate = call.estimate_gas({"from": account.address})
        gas = estimate + estimate // DEPLOY_GAS_MARGIN_DIVISOR
        sent.append((name, send(w3, account, call, nonce=start + offset, gas=gas)))
    for name, tx_hash in sent:
        receipt = wait(w3, tx_hash)
        landed = receipt["contractAddress"]
        if landed is None or bytes.fromhex(landed[2:]) != expected[name]:
            raise DeploymentError(
                f"{name} deployed at {landed}, predicted 0x{expected[name].hex()}"
            )
    if schedule:
        # Each later epoch's set, checked on chain against the hash the constructor took.
        commitments = w3.eth.contract(
            address=addresses.checksum("commitments"), abi=load_artifact("Commitments").abi_list
        )
        for number, (members, member_powers) in enumerate(schedule, start=1):
            checksums = [Web3.to_checksum_address(member) for member in members]
            install = commitments.functions.installEpoch(number, checksums, member_powers)
            transact(w3, account, install)
    return addresses


def deploy_for_genesis(
    w3: Web3,
    deployer_key: bytes,
    genesis: Genesis,
    *,
    inclusion_window: int,
    escape_delay: int,
    challenge_window: int = DEFAULT_CHALLENGE_WINDOW,
    admin: bytes | None = None,
    resume_delay: int = DEFAULT_RESUME_DELAY,
) -> L1Addresses:
    """Deploy the contracts a genesis names (`seqnet genesis new --l1-deployer`).

    Commitments gets the genesis's whole schedule: epoch 0's set and every
    later epoch (`Genesis.epochs`) with its first height and set.

    Refuses, before sending anything, unless the deployer's next nonce creates
    the Commitments contract at the genesis's `verifying_contract` and the
    collateral token at its `collateral_token`: a contract anywhere else could
    never verify the network's signatures.
    """
    account = Account.from_key(deployer_key)
    deployer = bytes.fromhex(account.address[2:])
    nonce = w3.eth.get_transaction_count(account.address, "pending")
    predicted = predict_addresses(deployer, nonce)
    if predicted.commitments != genesis.verifying_contract:
        raise DeploymentError(
            f"deployer {account.address} at nonce {nonce} would create Commitments at "
            f"0x{predicted.commitments.hex()}, but genesis names "
            f"0x{genesis.verifying_contract.hex()} (build the genesis with this deployer "
            "and its nonce at deployment time)"
        )
    if predicted.collateral_token != genesis.execution.collateral_token:
        raise DeploymentError(
            f"genesis names collateral token 0x{genesis.execution.collateral_token.hex()}, "
            f"this deployment would create 0x{predicted.collateral_token.hex()}"
        )
    validator_set = genesis.validator_set()
    epochs = [
        DeployEpoch(
            first_height=epoch.first_height,
            validators=[v.address for v in epoch.validators],
            powers=[v.weight for v in epoch.validators],
        )
        for epoch in genesis.epochs
    ]
    return deploy(
        w3,
        deployer_key,
        genesis.chain_id,
        genesis.genesis_block().digest(),
        [v.address for v in validator_set.validators],
        [v.weight for v in validator_set.validators],
        inclusion_window,
        escape_delay,
        challenge_window=challenge_window,
        admin=admin,
        resume_delay=resume_delay,
        epochs=epochs,
    )
