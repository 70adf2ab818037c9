"""A running local testnet: its directory, its node processes and their control.

Layout of a testnet directory (default ./.seqnet-testnet):

    genesis.json        the network's genesis (validators, funded load accounts)
    testnet.json        what `status` and `down` read: nodes, anvil, PIDs, commands
    anvil.log           the local L1's output (unless the L1 is off)
    load-nonces.json    next nonce of each load account, so load runs continue
    nodeI/              validator I's home (config, key, data)
    nodeI/node.log      its stdout and stderr, appended across restarts

`start_testnet` writes the homes, starts the L1 (anvil, with the contracts
deployed: sequencer_net.testnet.l1) unless the manifest turns it off, starts
one process per validator and waits until every node has committed a block.
`Testnet.stop()` stops the processes it started; `Testnet.load(directory)`
reattaches to a detached testnet.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sequencer_net.client import SeqnetApiError, SeqnetClient
from sequencer_net.testnet.accounts import (
    LOAD_NONCES_FILE,
    load_account_addresses,
    market_operator_key,
)
from sequencer_net.testnet.l1 import (
    ANVIL_LOG,
    TestnetL1,
    TestnetL1Error,
    check_anvil_installed,
    deploy_testnet_contracts,
    fund_validators,
    l1_port,
    l1_rpc_url,
    node_l1_config,
    predicted_l1_addresses,
)
from sequencer_net.testnet.manifest import (
    MIXES,
    NO_L1,
    LoadSpec,
    Manifest,
    NetworkSpec,
    Perturbation,
    PerturbationAction,
)
from sequencer_net.testnet.processes import (
    STOP_GRACE_S,
    ProcessIdentity,
    StopOutcome,
    is_our_process,
    log_tail,
    send_signal,
    spawn,
    stop_processes,
    wait_stopped,
)

if TYPE_CHECKING:
    from sequencer_net.fairness.tdh2 import PublicKeySet
    from sequencer_net.home.genesis import LocalEpoch

DEFAULT_TESTNET_DIR = Path(".seqnet-testnet")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_BASE_PORT = 26600
API_PORT_OFFSET = 100
"""Node I listens for peers on base + I and serves its API on base + 100 + I."""

FULL_NODE_SLOTS = 8
"""[p2p] max_non_validator_connections of testnet validators: full nodes
(`seqnet node run --full`) can follow a local testnet."""
ADMIN_TOKEN_FILE = "admin.token"
"""In each node's home: the node's admin token (mode 0600), named by its config."""

FORK_POST_INTERVAL_MS = 500
"""[l1] post_interval_ms of a testnet with equivocators (the default is 2 s)."""
FORK_EMPTY_BLOCK_MS = 1500
"""[consensus] empty_block_interval_ms of a testnet with equivocators (the
default is 500 ms; the manifest's view timeout must be at least twice it)."""

TESTNET_FILE = "testnet.json"
GENESIS_FILE = "genesis.json"
NODE_LOG = "node.log"
TESTNET_FILE_VERSION = 1

READY_TIMEOUT_S = 60.0
"""Start to first commit everywhere: imports (~1.5 s), key decryption, libp2p
dials (250 ms each) and the first views, with margin for a loaded machine."""

STATUS_TIMEOUT_S = 2.0
"""One status request. A SIGSTOPped node accepts TCP but never answers."""

READY_POLL_S = 0.25
EXIT_CODE_WAIT_S = 5.0
"""How long to wait for an exited child to be reaped before reporting its exit code."""

NODE_COMMAND_TEMPLATE: tuple[str, ...] = (
    sys.executable,
    "-m",
    "sequencer_net.cli.main",
    "node",
    "run",
    "--home",
    "{home}",
)
"""How a validator is launched; "{home}" becomes the node's home. The
interpreter path rather than `seqnet` on PATH, so it works from any venv."""


class TestnetError(RuntimeError):
    """The testnet cannot start, or the directory is not in a usable state."""

    __test__ = False  # not a pytest test class, despite the name


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One validator's place in the testnet, as its home was written."""

    index: int
    name: str
    home: Path
    api_url: str


HomesWriter = Callable[[Path, Manifest, int, str], list[NodeSpec]]
"""(testnet directory, manifest, base port, host) -> the node homes it wrote."""


def node_ports(base_port: int, index: int) -> tuple[int, int]:
    """(p2p port, api port) of node `index`."""
    return base_port + index, base_port + API_PORT_OFFSET + index


def testnet_oracle(manifest: Manifest) -> dict[str, Any]:
    """The [oracle] keys of a testnet validator: the load seed's simulated walk
    (none in a fork attack, whose views must follow the empty-block interval)."""
    if manifest.network.equivocators:
        return {"source": "none"}
    return {"source": "simulated", "seed": manifest.load.seed}


ROTATION_EPOCHS = 24
"""Later epochs a rotating testnet's genesis lists; the last one never ends. Few enough
that Commitments' deployment (about 23 million gas before any epoch) fits a 30 million gas
block with every epoch's first height and set hash."""


def rotation_epochs(
    network: NetworkSpec, epoch_keys: Sequence[PublicKeySet] = ()
) -> tuple[LocalEpoch, ...]:
    """The epochs of a testnet whose set changes every `rotate_every` heights: the
    same validators, and in epoch k every validator's weight doubled but
    validator (k - 1) mod n's, in turn; any one validator down leaves a quorum
    in every epoch (n = 4: weights 2, 2, 2, 1 of 7, quorum 5). With
    `rotate_members`, epoch k's set is every validator but k mod n instead (epoch
    0's, `rotation_initial`, leaves out validator 0), at its manifest weight:
    one joins and one leaves at every boundary; with n >= 5 (sets of 4 or more
    equal weights) any one validator down still leaves a quorum. With
    encryption on, `epoch_keys[k]` is epoch k's own threshold key
    (`deal_epoch_keys`, dealt to that epoch's set; epoch 0's is genesis's
    `threshold`)."""
    from sequencer_net.home.genesis import LocalEpoch

    every = network.rotate_every
    if every is None:
        return ()
    n = network.validators
    base = list(network.weights) if network.weights is not None else [1] * n
    epochs = []
    for k in range(1, ROTATION_EPOCHS + 1):
        keys = epoch_keys[k] if epoch_keys else None
        if network.rotate_members:
            members = tuple(i for i in range(n) if i != k % n)
            weights = tuple(base[i] for i in members)
            epochs.append(LocalEpoch(1 + k * every, members, weights, keys))
            continue
        kept = (k - 1) % n
        weights = tuple(w if i == kept else 2 * w for i, w in enumerate(base))
        epochs.append(LocalEpoch(1 + k * every, tuple(range(n)), weights, keys))
    return tuple(epochs)


def rotation_initial(network: NetworkSpec) -> tuple[int, ...] | None:
    """Epoch 0's members: all validators, but validator 0 with `rotate_members`."""
    if network.rotate_every is None or not network.rotate_members:
        return None
    return tuple(range(1, network.validators))


def write_validator_homes(
    directory: Path, manifest: Manifest, base_port: int, host: str
) -> list[NodeSpec]:
    """Generate keys and a genesis, and initialise one home per validator.

    Genesis lists the testnet's markets (sequencer_net.home.local_markets) and
    funds the validators (they report prices, which costs fees), the load
    accounts derived from the manifest's load seed and that seed's market
    operator, which is the bridge: `seqnet load` trades from the accounts and
    posts deposits with the operator. Every validator reports the seed's
    simulated price walk (`[oracle] source = "simulated"`), the same walk the
    load's traders quote around.

    With the manifest's L1 on, genesis names the testnet's predicted
    Commitments address as `verifying_contract` and its CollateralToken as the
    collateral token, and each validator's [l1] points at the testnet's anvil
    (sequencer_net.testnet.l1): nothing about the L1 needs it running yet.

    With the manifest's encryption on (the default), a threshold key is dealt
    (t = `encryption_threshold`, default f + 1): genesis gets its `threshold`
    section and each home its share, `threshold.key` (mode 0600).

    With the manifest's `rotate_every`, genesis lists later validator-set
    epochs (`rotation_epochs`), and with encryption on each epoch gets its own
    dealt key: each home holds its share of every epoch
    (`threshold.epoch<e>.key`).
    """
    from consensus.crypto import PrivateKey
    from sequencer_net.api.admin_auth import new_admin_token, write_admin_token_file
    from sequencer_net.home.genesis import make_local_genesis, write_genesis
    from sequencer_net.home.keystore import generate_secret
    from sequencer_net.home.local_markets import genesis_markets, local_markets
    from sequencer_net.home.setup import init_home
    from sequencer_net.home.threshold import deal_epoch_keys, member_key_shares

    network = manifest.network
    secrets = [generate_secret() for _ in range(network.validators)]
    epochs = 1 + (ROTATION_EPOCHS if network.rotate_every is not None else 0)
    set_size = network.validators - (1 if rotation_initial(network) is not None else 0)
    dealt = (
        deal_epoch_keys([set_size] * epochs, network.encryption_threshold)
        if network.encryption
        else []
    )
    epoch_keys = [keys for keys, _ in dealt]
    p2p_base, api_base = node_ports(base_port, 0)
    genesis_time_ms = int(time.time() * 1000)
    genesis = make_local_genesis(
        secrets,
        chain_id=network.chain_id,
        host=host,
        base_p2p_port=p2p_base,
        base_api_port=api_base,
        weights=list(network.weights) if network.weights is not None else None,
        initial=rotation_initial(network),
        view_timeout_ms=network.view_timeout_ms,
        genesis_time_ms=genesis_time_ms,
        funded_accounts=load_account_addresses(manifest.load.seed, manifest.load.accounts),
        markets=genesis_markets(local_markets(genesis_time_ms // 1000)),
        market_operator=market_operator_key(manifest.load.seed).address,
        fund_admin=True,  # validator 0 governs: its transactions pay fees too
        threshold_keys=epoch_keys[0] if epoch_keys else None,
        epochs=rotation_epochs(network, epoch_keys),
    )
    l1_config = None
    if manifest.l1.enabled:
        import msgspec

        addresses = predicted_l1_addresses()
        genesis = replace(
            genesis,
            verifying_contract=addresses.commitments,
            execution=msgspec.structs.replace(
                genesis.execution, collateral_token=addresses.collateral_token
            ),
        )
        l1_config = node_l1_config(l1_rpc_url(host, base_port), addresses)
        if network.equivocators:
            # A fork attack: the fork's blocks reach the L1 soon after it happens.
            l1_config["post_interval_ms"] = FORK_POST_INTERVAL_MS
    genesis_path = directory / GENESIS_FILE
    write_genesis(genesis_path, genesis)
    specs = []
    by_address = {v.address: v for v in genesis.members()}
    for index, secret in enumerate(secrets):
        validator = by_address[PrivateKey(secret).address]
        home = directory / f"node{index}"
        p2p_port, api_port = node_ports(base_port, index)
        init_home(
            home,
            name=validator.name,
            genesis_file=genesis_path,
            secret=secret,
            p2p_port=p2p_port,
            api_port=api_port,
            listen_host=host,
            api_host=host,
            admin_token_file=ADMIN_TOKEN_FILE,
            oracle=testnet_oracle(manifest),
            l1=l1_config,
            max_non_validator_connections=FULL_NODE_SLOTS,
            key_shares=(
                member_key_shares(genesis, [shares for _, shares in dealt], validator.address)
                if dealt
                else None
            ),
        )
        if network.equivocators:
            # Slow, steady views on the idle network of a fork attack: the
            # equivocators' late votes must reach cores still tallying that view.
            set_consensus_key(home, "empty_block_interval_ms", str(FORK_EMPTY_BLOCK_MS))
        if index in network.equivocators:
            set_consensus_key(home, "test_fault", '"equivocate"')
        # The supervisor cuts and restores links through the admin API.
        write_admin_token_file(home / ADMIN_TOKEN_FILE, new_admin_token())
        specs.append(
            NodeSpec(
                index=index,
                name=validator.name,
                home=home,
                api_url=f"http://{validator.api_host}:{validator.api_port}",
            )
        )
    return specs


def set_consensus_key(home: Path, key: str, value: str) -> None:
    """Set `[consensus] key = value` (TOML) in the config of the home (a fork-attack testnet)."""
    from sequencer_net.home.config import CONFIG_FILE

    path = home / CONFIG_FILE
    text = path.read_text()
    header = "[consensus]\n"
    if text.count(header) != 1:
        raise TestnetError(f"{path}: no single [consensus] section to add {key} to")
    path.write_text(text.replace(header, f"{header}{key} = {value}\n"))


def node_admin_token(home: Path) -> str | None:
    """The admin token of the node in `home` (None if its config names none)."""
    from sequencer_net.api.admin_auth import read_admin_token_file
    from sequencer_net.home.config import ConfigError, load_config

    try:
        path = load_config(home).admin_token_path
        return None if path is None else read_admin_token_file(path)
    except ConfigError as exc:
        raise TestnetError(f"{home}: no usable admin token: {exc}") from exc


@dataclass(slots=True)
class TestnetNode:
    """A validator process under supervision."""

    spec: NodeSpec
    command: tuple[str, ...]
    log_path: Path
    identity: ProcessIdentity | None = None
    started_at_ms: int | None = None
    restarts: int = 0
    paused: bool = False
    connected: bool = True
    process: subprocess.Popen[bytes] | None = None  # only in the process that started it

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def api_url(self) -> str:
        return self.spec.api_url

    @property
    def pid(self) -> int | None:
        return self.identity.pid if self.identity else None

    def is_running(self) -> bool:
        if self.process is not None:
            self.process.poll()  # reap, so an exited child stops looking alive
        return self.identity is not None and is_our_process(self.identity)

    def exit_code(self) -> int | None:
        """The exit code of a child that is no longer running, or None when unknown.

        The liveness check reads /proc, where an exited child shows as a zombie
        before `poll()` has reaped it, so reap it here (briefly waiting) rather
        than report the code of a process seen mid-exit as None.
        """
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=EXIT_CODE_WAIT_S)
        except subprocess.TimeoutExpired:
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.spec.index,
            "name": self.spec.name,
            "home": str(self.spec.home),
            "api_url": self.spec.api_url,
            "log": str(self.log_path),
            "command": list(self.command),
            "pid": self.pid,
            "start_ticks": self.identity.start_ticks if self.identity else None,
            "started_at_ms": self.started_at_ms,
            "restarts": self.restarts,
            "paused": self.paused,
            "connected": self.connected,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestnetNode:
        command = tuple(str(part) for part in data["command"])
        identity = None
        if data.get("pid") is not None and data.get("start_ticks") is not None:
            identity = ProcessIdentity(int(data["pid"]), command, int(data["start_ticks"]))
        return cls(
            spec=NodeSpec(
                index=int(data["index"]),
                name=str(data["name"]),
                home=Path(data["home"]),
                api_url=str(data["api_url"]),
            ),
            command=command,
            log_path=Path(data["log"]),
            identity=identity,
            started_at_ms=data.get("started_at_ms"),
            restarts=int(data.get("restarts", 0)),
            paused=bool(data.get("paused", False)),
            connected=bool(data.get("connected", True)),
        )


@dataclass(slots=True)
class Testnet:
    __test__ = False  # not a pytest test class, despite the name

    directory: Path
    manifest: Manifest
    nodes: list[TestnetNode]
    created_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    stop_grace_s: float = STOP_GRACE_S
    l1: TestnetL1 | None = None
    die_with_starter: bool = False
    """The processes this object starts get SIGTERM when this process dies (even
    by SIGKILL): for an owner that supervises them for its whole life (a
    foreground `up`, a benchmark, a test), never for a testnet meant to outlive
    the command that started it (`up --detach`, or a `Testnet.load`ed one). Not
    in the record: it belongs to the process, not to the testnet."""

    # --- the record on disk -------------------------------------------------

    @property
    def record_path(self) -> Path:
        return self.directory / TESTNET_FILE

    def save(self) -> None:
        network, load = self.manifest.network, self.manifest.load
        record = {
            "version": TESTNET_FILE_VERSION,
            "created_at_ms": self.created_at_ms,
            "manifest": self.manifest.source,
            "network": {
                "validators": network.validators,
                "weights": list(network.weights) if network.weights else None,
                "view_timeout_ms": network.view_timeout_ms,
                "chain_id": network.chain_id,
                "equivocators": list(network.equivocators),
            },
            "load": {
                "rate": load.rate,
                "accounts": load.accounts,
                "seed": load.seed,
                "namespace": load.namespace,
                "payload_bytes": list(load.payload_bytes),
                "mix": load.mix,
            },
            "nodes": [node.to_json() for node in self.nodes],
            "l1": None if self.l1 is None else self.l1.to_json(),
        }
        tmp = self.record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(self.record_path)

    @classmethod
    def load(cls, directory: Path) -> Testnet:
        """Reattach to the testnet recorded in `directory` (started by any process)."""
        path = directory / TESTNET_FILE
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise TestnetError(
                f"no testnet in {directory} ({TESTNET_FILE} not found); "
                "start one with `seqnet testnet up`"
            ) from None
        except (OSError, ValueError) as exc:
            raise TestnetError(f"cannot read {path}: {exc}") from exc
        if record.get("version") != TESTNET_FILE_VERSION:
            raise TestnetError(f"{path}: unsupported version {record.get('version')!r}")
        network, load = record["network"], record["load"]
        # A testnet recorded before the L1 existed ran without one.
        l1 = TestnetL1.from_json(record["l1"]) if record.get("l1") else None
        manifest = Manifest(
            network=NetworkSpec(
                validators=int(network["validators"]),
                weights=tuple(network["weights"]) if network.get("weights") else None,
                view_timeout_ms=int(network["view_timeout_ms"]),
                chain_id=int(network["chain_id"]),
                equivocators=tuple(int(i) for i in network.get("equivocators", [])),
            ),
            load=LoadSpec(
                rate=float(load["rate"]),
                accounts=int(load["accounts"]),
                seed=int(load["seed"]),
                namespace=int(load["namespace"]),
                payload_bytes=(int(load["payload_bytes"][0]), int(load["payload_bytes"][1])),
                # A testnet recorded before mixes existed sent rollup blobs.
                mix=load.get("mix", "rollup") if load.get("mix") in MIXES else "rollup",
            ),
            l1=NO_L1 if l1 is None else l1.spec,
            source=str(record.get("manifest", "<defaults>")),
        )
        return cls(
            directory=directory,
            manifest=manifest,
            nodes=[TestnetNode.from_json(node) for node in record["nodes"]],
            created_at_ms=int(record.get("created_at_ms", 0)),
            l1=l1,
        )

    # --- processes ----------------------------------------------------------

    def running_nodes(self) -> list[TestnetNode]:
        return [node for node in self.nodes if node.is_running()]

    def l1_running(self) -> bool:
        return self.l1 is not None and self.l1.is_running()

    def start_l1(self) -> None:
        """Start anvil, deploy the contracts for this testnet's genesis and give
        the validators ETH for gas (the L1 must be planned: `self.l1`)."""
        from sequencer_net.home.genesis import GenesisError, load_genesis

        assert self.l1 is not None
        try:
            genesis = load_genesis(self.directory / GENESIS_FILE)
        except (GenesisError, OSError) as exc:
            raise TestnetError(f"cannot read the testnet's genesis: {exc}") from exc
        try:
            self.l1.start(die_with_parent=self.die_with_starter)
            self.save()
            deploy_testnet_contracts(self.l1, genesis)
            fund_validators(self.l1, genesis)
        except TestnetL1Error as exc:
            raise TestnetError(f"the L1 did not start: {exc}") from exc
        except (OSError, ValueError) as exc:  # web3 and RPC failures
            raise TestnetError(f"the L1 did not start: deploying failed: {exc}") from exc
        self.save()

    def start_node(self, index: int) -> None:
        node = self.nodes[index]
        if node.is_running():
            raise TestnetError(f"{node.name} is already running (pid {node.pid})")
        process, identity = spawn(
            node.command,
            node.log_path,
            cwd=self.directory,
            die_with_parent=self.die_with_starter,
        )
        if node.identity is not None:
            node.restarts += 1
        node.process, node.identity = process, identity
        node.started_at_ms = int(time.time() * 1000)
        node.paused, node.connected = False, True
        self.save()

    def kill(self, index: int) -> bool:
        """kill -9: no shutdown path runs, as in a crash."""
        node = self.nodes[index]
        if node.identity is None or not send_signal(node.identity, signal.SIGKILL):
            return False
        node.paused, node.connected = False, True
        self._wait_exit(node, 5.0)
        self.save()
        return True

    def stop_node(self, index: int) -> StopOutcome | None:
        node = self.nodes[index]
        if node.identity is None:
            return None
        children = {node.identity.pid: node.process} if node.process else {}
        [outcome] = stop_processes([node.identity], grace_s=self.stop_grace_s, children=children)
        node.paused, node.connected = False, True
        self.save()
        return outcome

    def restart(self, index: int) -> None:
        """Start the node again, stopping it first (SIGTERM) if it still runs."""
        if self.nodes[index].is_running():
            self.stop_node(index)
        self.start_node(index)

    def pause(self, index: int) -> bool:
        node = self.nodes[index]
        if node.identity is None or not send_signal(node.identity, signal.SIGSTOP):
            return False
        # Return once it is stopped, not merely signalled (bounded: a process the
        # kernel has not stopped by then is still marked paused; it will stop).
        wait_stopped(node.identity.pid)
        node.paused = True
        self.save()
        return True

    def resume(self, index: int) -> bool:
        node = self.nodes[index]
        if node.identity is None or not send_signal(node.identity, signal.SIGCONT):
            return False
        node.paused = False
        self.save()
        return True

    def arm_fault(self, index: int) -> bool:
        """SIGUSR1: arm the test fault of an equivocator (`[consensus] test_fault`)."""
        node = self.nodes[index]
        return node.identity is not None and send_signal(node.identity, signal.SIGUSR1)

    def set_connected(self, index: int, connected: bool) -> None:
        """Cut or restore the node's validator links through its admin API, with
        the admin token its home's config names."""
        node = self.nodes[index]
        token = node_admin_token(node.spec.home)
        with SeqnetClient(node.api_url, timeout=STATUS_TIMEOUT_S) as client:
            client.set_network_connected(connected, admin_token=token)
        node.connected = connected
        self.save()

    def apply(self, perturbation: Perturbation) -> str:
        """Apply one perturbation; return what happened, for the event log."""
        index, action = perturbation.node, perturbation.action
        name = self.nodes[index].name
        try:
            if action is PerturbationAction.KILL:
                done = self.kill(index)
                return f"kill -9 {name}" if done else f"kill {name}: not running, skipped"
            if action is PerturbationAction.RESTART:
                self.restart(index)
                return f"restarted {name} (pid {self.nodes[index].pid})"
            if action is PerturbationAction.PAUSE:
                done = self.pause(index)
                return f"SIGSTOP {name}" if done else f"pause {name}: not running, skipped"
            if action is PerturbationAction.RESUME:
                done = self.resume(index)
                return f"SIGCONT {name}" if done else f"resume {name}: not running, skipped"
            connected = action is PerturbationAction.RECONNECT
            self.set_connected(index, connected)
            return f"{'reconnected' if connected else 'disconnected'} {name}"
        except (SeqnetApiError, TestnetError, OSError) as exc:
            return f"{action} {name} failed: {exc}"

    def stop(self, grace_s: float | None = None) -> list[StopOutcome]:
        """Stop every node this testnet started (and only those), then its anvil:
        SIGTERM, then SIGKILL. The L1 goes last, so nodes never see it vanish
        while they run."""
        identities = [node.identity for node in self.nodes if node.identity is not None]
        children = {
            node.identity.pid: node.process
            for node in self.nodes
            if node.identity is not None and node.process is not None
        }
        grace = self.stop_grace_s if grace_s is None else grace_s
        outcomes = stop_processes(identities, grace_s=grace, children=children)
        if self.l1 is not None and self.l1.identity is not None:
            anvil = self.l1.identity
            anvil_children = {anvil.pid: self.l1.process} if self.l1.process else {}
            outcomes += stop_processes([anvil], grace_s=grace, children=anvil_children)
        for node in self.nodes:
            node.paused, node.connected = False, True
        if self.record_path.parent.exists():
            self.save()
        return outcomes

    def _wait_exit(self, node: TestnetNode, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while node.is_running() and time.monotonic() < deadline:
            time.sleep(0.02)

    # --- observation --------------------------------------------------------

    def statuses(self, timeout_s: float = STATUS_TIMEOUT_S) -> list[dict[str, Any] | None]:
        """Each node's /v1/status (None where it does not answer), queried in parallel."""

        def fetch(node: TestnetNode) -> dict[str, Any] | None:
            try:
                with SeqnetClient(node.api_url, timeout=timeout_s) as client:
                    return client.status()
            except SeqnetApiError:
                return None

        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            return list(pool.map(fetch, self.nodes))

    def status_report(self) -> dict[str, Any]:
        """`seqnet testnet status --json`: {"nodes": [{name, height, last_hash, ...}]}."""
        nodes = []
        for node, status in zip(self.nodes, self.statuses(), strict=True):
            running = node.is_running()
            answer = status or {}
            nodes.append(
                {
                    "name": node.name,
                    "height": answer.get("height"),
                    "last_hash": answer.get("last_hash"),
                    "state_root": answer.get("state_root"),
                    "view": answer.get("view"),
                    "peers": answer.get("peers"),
                    "up": status is not None,
                    "running": running,
                    "paused": node.paused and running,
                    "pid": node.pid if running else None,
                    "api_url": node.api_url,
                }
            )
        return {"nodes": nodes, "l1": self.l1_report()}

    def l1_report(self) -> dict[str, Any] | None:
        """The L1's process and contracts as recorded (no RPC): null without an L1."""
        if self.l1 is None:
            return None
        running = self.l1.is_running()
        return {
            "rpc_url": self.l1.rpc_url,
            "running": running,
            "pid": self.l1.pid if running else None,
            "deployed": self.l1.deployed,
            "log": str(self.l1.log_path),
            **self.l1.to_json()["addresses"],
        }

    def wait_until_committing(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until every node answers /v1/status with height > 0.

        Raises TestnetError as soon as a node process exits, or at the timeout,
        naming the node and quoting the tail of its log.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            for node in self.nodes:
                if not node.is_running():
                    code = node.exit_code()
                    raise TestnetError(
                        f"{node.name} exited during startup (exit code {code}); "
                        f"last lines of {node.log_path}:\n{log_tail(node.log_path)}"
                    )
            statuses = self.statuses(timeout_s=1.0)
            lagging = [
                (node, status)
                for node, status in zip(self.nodes, statuses, strict=True)
                if status is None
                or not isinstance(status.get("height"), int)
                or status["height"] <= 0
            ]
            if not lagging:
                return
            if time.monotonic() >= deadline:
                node, status = lagging[0]
                why = "does not answer /v1/status" if status is None else "has not committed"
                names = ", ".join(n.name for n, _ in lagging)
                raise TestnetError(
                    f"the network did not commit within {timeout_s:g} s "
                    f"(not ready: {names}); {node.name} {why}. "
                    f"Last lines of {node.log_path}:\n{log_tail(node.log_path)}"
                )
            time.sleep(READY_POLL_S)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def check_ports_free(host: str, base_port: int, validators: int, *, l1: bool = False) -> None:
    """Every node's ports (and the L1's, with `l1`) are free, or TestnetError names the busy."""
    ports = [port for index in range(validators) for port in node_ports(base_port, index)]
    ports += [l1_port(base_port)] if l1 else []
    busy = [port for port in ports if _port_in_use(host, port)]
    if busy:
        raise TestnetError(
            f"ports already in use on {host}: {', '.join(map(str, busy))}. Another "
            "testnet may be running (`seqnet testnet down --dir DIR`), or pick other "
            "ports with --base-port"
        )


def _testnet_paths(directory: Path) -> list[Path]:
    """What a testnet creates in its directory (and all that `clean` removes)."""
    names = (TESTNET_FILE, GENESIS_FILE, LOAD_NONCES_FILE, ANVIL_LOG)
    paths = [directory / name for name in names]
    paths += sorted(p for p in directory.glob("node*") if p.is_dir() and p.name[4:].isdigit())
    return [p for p in paths if p.exists()]


def clean_testnet_dir(directory: Path) -> list[Path]:
    """Remove the files a testnet created (never anything else); the directory
    itself goes only if that leaves it empty. Refuses while nodes still run."""
    if (directory / TESTNET_FILE).exists():
        net = Testnet.load(directory)
        running = [f"{n.name} (pid {n.pid})" for n in net.running_nodes()]
        if net.l1 is not None and net.l1.is_running():
            running.append(f"anvil (pid {net.l1.pid})")
        if running:
            raise TestnetError(f"processes still running in {directory}: " + ", ".join(running))
    removed = _testnet_paths(directory)
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    if directory.exists() and not any(directory.iterdir()):
        directory.rmdir()
    return removed


def _prepare_directory(directory: Path, fresh: bool) -> None:
    if (directory / TESTNET_FILE).exists():
        previous = Testnet.load(directory)
        if previous.running_nodes() or previous.l1_running():
            raise TestnetError(
                f"a testnet is already running in {directory}; stop it with "
                f"`seqnet testnet down --dir {directory}`"
            )
    if _testnet_paths(directory):
        if not fresh:
            raise TestnetError(
                f"{directory} holds a previous testnet's data; remove it with "
                f"`seqnet testnet down --clean --dir {directory}` or pass --fresh"
            )
        clean_testnet_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)


def record_testnet(
    directory: Path,
    manifest: Manifest,
    specs: Sequence[NodeSpec],
    node_command: Sequence[str],
    stop_grace_s: float,
    l1: TestnetL1 | None = None,
    *,
    die_with_starter: bool = False,
) -> Testnet:
    """The testnet of these nodes (each one's command from the "{home}" template)
    and its planned L1, saved to its record; nothing started yet
    (`Testnet.die_with_starter`: whether what it starts dies with this process)."""
    nodes = [
        TestnetNode(
            spec=spec,
            command=tuple(part.replace("{home}", str(spec.home)) for part in node_command),
            log_path=spec.home / NODE_LOG,
        )
        for spec in specs
    ]
    net = Testnet(
        directory=directory,
        manifest=manifest,
        nodes=nodes,
        stop_grace_s=stop_grace_s,
        l1=l1,
        die_with_starter=die_with_starter,
    )
    net.save()
    return net


def start_testnet(
    directory: Path | str = DEFAULT_TESTNET_DIR,
    *,
    manifest: Manifest | None = None,
    validators: int | None = None,
    base_port: int = DEFAULT_BASE_PORT,
    host: str = DEFAULT_HOST,
    node_command: Sequence[str] = NODE_COMMAND_TEMPLATE,
    write_homes: HomesWriter = write_validator_homes,
    ready_timeout_s: float = READY_TIMEOUT_S,
    stop_grace_s: float = STOP_GRACE_S,
    fresh: bool = False,
    wait: bool = True,
    die_with_starter: bool = False,
) -> Testnet:
    """Write the homes, start the L1 and one process per validator, wait for the
    first commits.

    `node_command` is the argv template ("{home}" is replaced by each node's
    home); tests pass a fake node. `write_homes` creates the homes and returns
    the nodes' specs; by default real keys, genesis and configs. With the
    manifest's L1 on (`manifest.l1`, the default), anvil listens on
    base_port + L1_PORT_OFFSET and the contracts are deployed before any node
    starts; without anvil installed this fails before anything is written. On
    any failure the processes started so far are stopped and TestnetError is
    raised. `die_with_starter`: the nodes and anvil get SIGTERM when this process
    dies (`Testnet.die_with_starter`); off for a testnet that outlives it.
    """
    directory = Path(directory).absolute()
    manifest = (manifest or Manifest()).with_overrides(validators=validators)
    if manifest.network.chain_id is None:
        # A fresh chain id per testnet: nothing signed for another one is valid here.
        from sequencer_net.home.genesis import random_chain_id

        chain_id = random_chain_id()
        manifest = replace(manifest, network=replace(manifest.network, chain_id=chain_id))
    if not any("{home}" in part for part in node_command):
        raise TestnetError("node_command must contain a '{home}' placeholder")
    with_l1 = manifest.l1.enabled
    if with_l1:
        try:
            check_anvil_installed()
        except TestnetL1Error as exc:
            raise TestnetError(f"the testnet's L1 needs anvil: {exc}") from exc
    _prepare_directory(directory, fresh)
    check_ports_free(host, base_port, manifest.network.validators, l1=with_l1)
    specs = write_homes(directory, manifest, base_port, host)
    l1 = TestnetL1.plan(directory, host, base_port, manifest.l1) if with_l1 else None
    net = record_testnet(
        directory,
        manifest,
        specs,
        node_command,
        stop_grace_s,
        l1,
        die_with_starter=die_with_starter,
    )
    nodes = net.nodes
    try:
        if net.l1 is not None:
            net.start_l1()
        for node in nodes:
            net.start_node(node.spec.index)
        if wait:
            net.wait_until_committing(ready_timeout_s)
    except BaseException:
        net.stop()
        raise
    return net
