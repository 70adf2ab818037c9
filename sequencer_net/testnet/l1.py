"""The testnet's L1: one anvil process on loopback and the contracts on it.

Everything a validator's home needs about the L1 is known before anvil runs:

    rpc_url    http://HOST:(base port + L1_PORT_OFFSET)
    addresses  predict_addresses(anvil's first dev account, nonce 0)

so `write_validator_homes` names the Commitments address in genesis (its
signing domain's `verifying_contract`) and the CollateralToken as the
collateral token, and writes each validator's [l1] section, without waiting
for anything. `start_testnet` then starts anvil (`start_anvil`, detached and
recorded in testnet.json like the validators), deploys the contracts with the
genesis just written (`deploy_testnet_contracts`, which checks they landed at
the predicted addresses) and gives every validator ETH for gas
(`fund_validators`) before it starts a node.

`L1Observer` reads what the view and `seqnet testnet l1` show from the chain
itself: the head, the latest posted header, the Bridge's deposits and
withdrawals and the Inbox's forced transactions.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sequencer_net.l1.anvil import (
    ANVIL_ENV,
    DEFAULT_CHAIN_ID,
    DEV_PRIVATE_KEYS,
    anvil_available,
    anvil_binary,
)
from sequencer_net.l1.deploy import L1Addresses, predict_addresses
from sequencer_net.testnet.manifest import L1Spec
from sequencer_net.testnet.processes import ProcessIdentity, is_our_process, log_tail, spawn

if TYPE_CHECKING:
    from web3 import Web3

    from sequencer_net.home.genesis import Genesis

L1_PORT_OFFSET: Final = 190
"""The L1's JSON-RPC port is base + 190: validators use base .. base + 63 (p2p)
and base + 100 .. base + 163 (API), so several testnets with distinct base
ports (200 apart, say) never share a port."""

L1_CHAIN_ID: Final = DEFAULT_CHAIN_ID
ANVIL_LOG: Final = "anvil.log"
DEPLOYER_KEY: Final = DEV_PRIVATE_KEYS[0]
"""anvil's first dev account deploys the contracts, from its nonce 0."""
DEPLOYER_NONCE: Final = 0

VALIDATOR_GAS_WEI: Final = 1_000 * 10**18
"""ETH each validator gets for posting gas: at ~65,000 gas a post and anvil's
1 gwei base fee, years of posting on a local chain."""

ANVIL_READY_TIMEOUT_S: Final = 15.0
"""anvil answers in ~30 ms; the bound covers a loaded 2-core machine."""
ANVIL_READY_POLL_S: Final = 0.05
RPC_TIMEOUT_S: Final = 2.0
LOG_SCAN_BLOCKS: Final = 10_000
"""At most this many L1 blocks per eth_getLogs request of the observer."""

SETUP_HINT: Final = (
    f"run scripts/setup.sh (it installs anvil with npm), set ${ANVIL_ENV} to an anvil "
    "binary, or start the testnet without an L1 (--no-l1, or [l1] enabled = false)"
)


class TestnetL1Error(RuntimeError):
    """anvil is missing or did not start, or the contracts did not deploy."""

    __test__ = False  # not a pytest test class, despite the name


def l1_port(base_port: int) -> int:
    return base_port + L1_PORT_OFFSET


def l1_rpc_url(host: str, base_port: int) -> str:
    return f"http://{host}:{l1_port(base_port)}"


def deployer_address() -> bytes:
    from eth_account import Account

    return bytes.fromhex(Account.from_key(DEPLOYER_KEY).address[2:])


def predicted_l1_addresses() -> L1Addresses:
    """Where the contracts of every testnet's fresh L1 are (deployer nonce 0)."""
    return predict_addresses(deployer_address(), DEPLOYER_NONCE)


def node_l1_config(rpc_url: str, addresses: L1Addresses) -> dict[str, Any]:
    """The [l1] keys of a testnet validator."""
    return {
        "rpc_url": rpc_url,
        "commitments": addresses.checksum("commitments"),
        "inbox": addresses.checksum("inbox"),
        "bridge": addresses.checksum("bridge"),
    }


def check_anvil_installed() -> None:
    if not anvil_available():
        raise TestnetL1Error(f"no anvil at {anvil_binary()}: {SETUP_HINT}")


def anvil_command(host: str, port: int, block_time_s: int) -> tuple[str, ...]:
    return (
        str(anvil_binary()),
        "--host",
        host,
        "--port",
        str(port),
        "--chain-id",
        str(L1_CHAIN_ID),
        "--block-time",
        str(block_time_s),
    )


def addresses_to_json(addresses: L1Addresses) -> dict[str, str]:
    return {
        "collateral_token": addresses.checksum("collateral_token"),
        "commitments": addresses.checksum("commitments"),
        "inbox": addresses.checksum("inbox"),
        "bridge": addresses.checksum("bridge"),
    }


def addresses_from_json(data: dict[str, Any]) -> L1Addresses:
    def address(key: str) -> bytes:
        return bytes.fromhex(str(data[key])[2:])

    return L1Addresses(
        collateral_token=address("collateral_token"),  # type: ignore[arg-type]
        commitments=address("commitments"),  # type: ignore[arg-type]
        inbox=address("inbox"),  # type: ignore[arg-type]
        bridge=address("bridge"),  # type: ignore[arg-type]
    )


def rpc(url: str, method: str, params: list[Any], timeout_s: float = RPC_TIMEOUT_S) -> Any:
    """One JSON-RPC call; raises OSError (unreachable) or ValueError (an RPC error)."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        reply = json.loads(response.read(1 << 20))
    if not isinstance(reply, dict) or "error" in reply:
        raise ValueError(f"{method}: {reply.get('error') if isinstance(reply, dict) else reply}")
    return reply.get("result")


@dataclass(slots=True)
class TestnetL1:
    """The testnet's anvil process and the contracts on it."""

    __test__ = False  # not a pytest test class, despite the name

    rpc_url: str
    command: tuple[str, ...]
    log_path: Path
    spec: L1Spec
    addresses: L1Addresses = field(default_factory=predicted_l1_addresses)
    identity: ProcessIdentity | None = None
    deployed: bool = False
    process: subprocess.Popen[bytes] | None = None  # only in the process that started it

    @classmethod
    def plan(cls, directory: Path, host: str, base_port: int, spec: L1Spec) -> TestnetL1:
        return cls(
            rpc_url=l1_rpc_url(host, base_port),
            command=anvil_command(host, l1_port(base_port), spec.block_time_s),
            log_path=directory / ANVIL_LOG,
            spec=spec,
        )

    @property
    def pid(self) -> int | None:
        return self.identity.pid if self.identity else None

    def is_running(self) -> bool:
        if self.process is not None:
            self.process.poll()
        return self.identity is not None and is_our_process(self.identity)

    def start(
        self, ready_timeout_s: float = ANVIL_READY_TIMEOUT_S, *, die_with_parent: bool = False
    ) -> None:
        """Start anvil (its own session, output to anvil.log) and wait until it
        answers eth_chainId; TestnetL1Error naming the log tail if it does not.
        `die_with_parent`: anvil gets SIGTERM when this process dies."""
        check_anvil_installed()
        self.process, self.identity = spawn(
            self.command,
            self.log_path,
            cwd=self.log_path.parent,
            die_with_parent=die_with_parent,
        )
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if self.process.poll() is not None:
                raise TestnetL1Error(
                    f"anvil exited at startup (exit code {self.process.returncode}); "
                    f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            try:
                chain_id = int(rpc(self.rpc_url, "eth_chainId", [], timeout_s=1.0), 16)
            except (OSError, ValueError, TypeError):
                if time.monotonic() >= deadline:
                    raise TestnetL1Error(
                        f"anvil did not answer on {self.rpc_url} within {ready_timeout_s:g} s; "
                        f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                    ) from None
                time.sleep(ANVIL_READY_POLL_S)
                continue
            if chain_id != L1_CHAIN_ID:
                raise TestnetL1Error(f"{self.rpc_url} answers chain id {chain_id}, not anvil's")
            return

    def to_json(self) -> dict[str, Any]:
        return {
            "rpc_url": self.rpc_url,
            "command": list(self.command),
            "log": str(self.log_path),
            "pid": self.pid,
            "start_ticks": self.identity.start_ticks if self.identity else None,
            "deployed": self.deployed,
            "addresses": addresses_to_json(self.addresses),
            "block_time_s": self.spec.block_time_s,
            "inclusion_window": self.spec.inclusion_window,
            "escape_delay": self.spec.escape_delay,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestnetL1:
        command = tuple(str(part) for part in data["command"])
        identity = None
        if data.get("pid") is not None and data.get("start_ticks") is not None:
            identity = ProcessIdentity(int(data["pid"]), command, int(data["start_ticks"]))
        return cls(
            rpc_url=str(data["rpc_url"]),
            command=command,
            log_path=Path(data["log"]),
            spec=L1Spec(
                enabled=True,
                block_time_s=int(data["block_time_s"]),
                inclusion_window=int(data["inclusion_window"]),
                escape_delay=int(data["escape_delay"]),
            ),
            addresses=addresses_from_json(data["addresses"]),
            identity=identity,
            deployed=bool(data.get("deployed", False)),
        )


def _web3(rpc_url: str) -> Web3:
    from web3 import Web3

    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": RPC_TIMEOUT_S * 5}))


def deploy_testnet_contracts(l1: TestnetL1, genesis: Genesis) -> None:
    """Deploy the contracts for `genesis` (its chain id, hash, validators and
    weights) and check they are where the homes were told they would be."""
    from sequencer_net.l1.deploy import DeploymentError, deploy_for_genesis

    if genesis.verifying_contract != l1.addresses.commitments:
        raise TestnetL1Error(
            f"genesis names verifying_contract 0x{genesis.verifying_contract.hex()}, but the "
            f"testnet's Commitments contract is 0x{l1.addresses.commitments.hex()}"
        )
    w3 = _web3(l1.rpc_url)
    try:
        addresses = deploy_for_genesis(
            w3,
            DEPLOYER_KEY,
            genesis,
            inclusion_window=l1.spec.inclusion_window,
            escape_delay=l1.spec.escape_delay,
        )
    except DeploymentError as exc:
        raise TestnetL1Error(f"{exc} (was the deployer's nonce not 0 on a fresh anvil?)") from exc
    if addresses != l1.addresses:
        raise TestnetL1Error(f"contracts deployed at {addresses}, predicted {l1.addresses}")
    l1.deployed = True


def fund_validators(l1: TestnetL1, genesis: Genesis, wei: int = VALIDATOR_GAS_WEI) -> None:
    """Give every validator's address `wei` of ETH (anvil_setBalance: local chains only),
    of every epoch: a later epoch's validators post its blocks."""
    for validator in genesis.members():
        rpc(l1.rpc_url, "anvil_setBalance", ["0x" + validator.address.hex(), hex(wei)])


# --- Observation -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class L1Snapshot:
    """The L1 as one poll saw it; a field is None when it could not be read."""

    head: int | None = None
    committed_height: int | None = None  # Commitments.latestHeight
    committed_state_height: int | None = None
    last_post_block: int | None = None
    epoch: int | None = None
    deposits: int | None = None  # Bridge.depositCount
    withdrawals: int | None = None  # Withdrawn events so far
    forced: int | None = None  # Inbox.count
    escape_open: bool | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class L1Observer:
    """Reads the testnet's contracts; `read()` is one poll (blocking, a few RPCs).

    Withdrawals are counted from the Bridge's Withdrawn events, scanning only
    the blocks not scanned before (LOG_SCAN_BLOCKS per request).
    """

    def __init__(self, rpc_url: str, addresses: L1Addresses) -> None:
        from sequencer_net.l1.artifacts import load_artifact

        self.w3 = _web3(rpc_url)
        self.addresses = addresses

        def contract(name: str, field_name: str) -> Any:
            return self.w3.eth.contract(
                address=addresses.checksum(field_name), abi=load_artifact(name).abi_list
            )

        self.commitments = contract("Commitments", "commitments")
        self.bridge = contract("Bridge", "bridge")
        self.inbox = contract("Inbox", "inbox")
        self.withdrawals = 0
        self._scanned_to = -1  # the last block whose Withdrawn events are counted

    def read(self) -> L1Snapshot:
        from sequencer_net.l1.link import read_tip

        try:
            head = int(self.w3.eth.block_number)
            tip = read_tip(self.commitments)  # one call: its fields name one post
            snapshot = L1Snapshot(
                head=head,
                committed_height=tip.latest_height,
                committed_state_height=tip.latest_state_height,
                last_post_block=tip.last_post_block,
                epoch=tip.epoch,
                deposits=int(self.bridge.functions.depositCount().call()),
                withdrawals=self._count_withdrawals(head),
                forced=int(self.inbox.functions.count().call()),
                escape_open=bool(self.bridge.functions.escapeOpen().call()),
            )
        except Exception as exc:  # any RPC or decoding failure is shown, not raised
            return L1Snapshot(error=f"{type(exc).__name__}: {exc}"[:200])
        return snapshot

    def _count_withdrawals(self, head: int) -> int:
        event = self.bridge.events.Withdrawn
        while self._scanned_to < head:
            start = self._scanned_to + 1
            end = min(head, start + LOG_SCAN_BLOCKS - 1)
            logs = event.get_logs(from_block=start, to_block=end)
            self.withdrawals += len(logs)
            self._scanned_to = end
        return self.withdrawals
