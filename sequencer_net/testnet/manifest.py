"""Testnet manifests: a TOML description of a local network, its load and its faults.

    description = "4 validators, node 2 crashes at 10 s and comes back at 20 s"
    duration_s = 60             # optional: `testnet up` stops itself after this long

    [network]
    validators = 4              # n; tolerates f = (n - 1) // 3 faulty
    weights = [1, 1, 1, 1]      # optional voting weights, one per validator
    view_timeout_ms = 1000      # consensus view timeout
    chain_id = 424242           # optional: default a random id, fresh per testnet
    equivocators = [0, 1]       # optional, test only: validators carrying the
                                # equivocation fault (a fork attack, docs/testnet.md)
    encryption = true           # deal a threshold encryption key (docs/fairness.md)
    encryption_threshold = 2    # optional: t, default f + 1; must be in f+1..n-f
    rotate_every = 50           # optional: a new validator-set epoch every this many
                                # heights (weights change; docs/operator.md)
    rotate_members = true       # optional, with rotate_every: each epoch leaves out
                                # one validator in turn (joins and leaves instead)

    [load]
    rate = 200                  # signed tx/s submitted while `up` runs; 0 = none
    accounts = 100              # funded load accounts (derived from `seed`)
    seed = 0
    namespace = 1               # rollup id of the load's rollup blobs
    payload_bytes = [100, 300]  # random blob size range, inclusive
    mix = "mixed"               # dex | mixed | rollup (testnet/market.py)

    [l1]
    enabled = true              # run a local L1 (anvil) with the contracts deployed
    block_time_s = 1            # anvil mines a block every this many seconds
    inclusion_window = 20       # Inbox: L1 blocks a forced transaction has to be included
    escape_delay = 600          # Bridge: L1 blocks without a posting before the escape opens

    [[perturbation]]
    at_s = 10                   # seconds after the network first commits
    action = "kill"             # kill | restart | pause | resume | disconnect | reconnect
    node = 2                    # validator index (or `nodes = [1, 2]`)

Every key is optional; unknown keys are errors (a typo must not silently run a
different experiment). `parse_manifest` checks every value and that the
perturbations make sense in order (no `resume` of a node that is not paused).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, cast, get_args

from sequencer_net.fairness.tdh2 import ThresholdError, check_threshold

MAX_TESTNET_VALIDATORS = 64
"""Processes on one machine; beyond a few dozen the host, not the protocol, is measured."""

MIN_ROTATE_EVERY = 2
"""The shortest validator-set epoch a testnet rotates through, in heights."""

DEFAULT_VALIDATORS = 4
DEFAULT_VIEW_TIMEOUT_MS = 1000
DEFAULT_LOAD_RATE = 200.0
DEFAULT_LOAD_ACCOUNTS = 100
DEFAULT_LOAD_SEED = 0
DEFAULT_NAMESPACE = 1
DEFAULT_PAYLOAD_BYTES = (100, 300)
Mix = Literal["rollup", "dex", "mixed"]
"""What the load sends (sequencer_net.testnet.market): rollup blobs only, trader
traffic on the testnet's markets only, or both (4 in 5 DEX)."""
MIXES: tuple[Mix, ...] = get_args(Mix)
DEFAULT_MIX: Mix = "mixed"
DEFAULT_L1_BLOCK_TIME_S = 1
"""An L1 block a second: the local L1 moves like a chain (and faster than Ethereum's 12 s)."""
DEFAULT_INCLUSION_WINDOW = 20
"""Inbox window (L1 blocks): 20 s at the default block time, several posting turns."""
DEFAULT_ESCAPE_DELAY = 600
"""Bridge escape delay (L1 blocks): 10 minutes at the default block time without a posting."""
MAX_L1_BLOCK_TIME_S = 60
MAX_L1_WINDOW_BLOCKS = 2**32


class ManifestError(ValueError):
    """A manifest that cannot be run; the message names the file and the key."""


class PerturbationAction(StrEnum):
    KILL = "kill"  # SIGKILL (kill -9): no shutdown, the data directory stays
    RESTART = "restart"  # start the node again (stopping it first if it runs)
    PAUSE = "pause"  # SIGSTOP: the process freezes, sockets stay open
    RESUME = "resume"  # SIGCONT
    DISCONNECT = "disconnect"  # cut the node's validator links (admin API)
    RECONNECT = "reconnect"  # restore them


@dataclass(frozen=True, slots=True)
class Perturbation:
    at_s: float
    action: PerturbationAction
    node: int

    def describe(self) -> str:
        return f"t+{self.at_s:g}s {self.action} node{self.node}"


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    validators: int = DEFAULT_VALIDATORS
    weights: tuple[int, ...] | None = None
    view_timeout_ms: int = DEFAULT_VIEW_TIMEOUT_MS
    chain_id: int | None = None
    """None: a random one, drawn when the testnet's genesis is written."""
    equivocators: tuple[int, ...] = ()
    """Validators whose config carries `[consensus] test_fault = "equivocate"`; the
    testnet session then runs the fork-attack scenario (sequencer_net.testnet.fork)."""
    encryption: bool = True
    """Deal a threshold key into genesis and the homes (the encrypted mempool)."""
    encryption_threshold: int | None = None
    """t of the threshold key; None: f + 1."""
    rotate_every: int | None = None
    """Heights per validator-set epoch (sequencer_net.testnet.network
    `rotation_epochs`); None: one epoch, the set never changes."""
    rotate_members: bool = False
    """With `rotate_every`: epoch k leaves out validator k mod n (members join and
    leave at every boundary) instead of changing weights."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    rate: float = DEFAULT_LOAD_RATE
    accounts: int = DEFAULT_LOAD_ACCOUNTS
    seed: int = DEFAULT_LOAD_SEED
    namespace: int = DEFAULT_NAMESPACE
    payload_bytes: tuple[int, int] = DEFAULT_PAYLOAD_BYTES
    mix: Mix = DEFAULT_MIX


@dataclass(frozen=True, slots=True)
class L1Spec:
    """The testnet's local L1 (sequencer_net.testnet.l1): anvil and the contracts."""

    enabled: bool = True
    block_time_s: int = DEFAULT_L1_BLOCK_TIME_S
    inclusion_window: int = DEFAULT_INCLUSION_WINDOW
    escape_delay: int = DEFAULT_ESCAPE_DELAY


NO_L1 = L1Spec(enabled=False)


@dataclass(frozen=True, slots=True)
class Manifest:
    network: NetworkSpec = field(default_factory=NetworkSpec)
    load: LoadSpec = field(default_factory=LoadSpec)
    l1: L1Spec = field(default_factory=L1Spec)
    perturbations: tuple[Perturbation, ...] = ()
    description: str = ""
    duration_s: float | None = None
    source: str = "<defaults>"

    def with_overrides(
        self,
        *,
        validators: int | None = None,
        rate: float | None = None,
        duration_s: float | None = None,
        mix: Mix | None = None,
        l1: bool | None = None,
        rotate_every: int | None = None,
        rotate_members: bool | None = None,
    ) -> Manifest:
        """The manifest with CLI flags applied, checked again (e.g. `-n` vs perturbations).

        `l1` False turns the local L1 off (`--no-l1`); True or None keeps the manifest's.
        `rotate_every` (`--rotate-every`) replaces the manifest's; `rotate_members`
        True (`--rotate-members`) turns member rotation on.
        """
        network = self.network
        if validators is not None and validators != network.validators:
            weights = network.weights
            if weights is not None and len(weights) != validators:
                raise ManifestError(
                    f"{self.source}: -n {validators} does not match the "
                    f"{len(weights)} weights in [network]"
                )
            network = replace(network, validators=validators)
        if rotate_every is not None:
            network = replace(network, rotate_every=rotate_every)
        if rotate_members is not None:
            network = replace(network, rotate_members=rotate_members)
        load = self.load if rate is None else replace(self.load, rate=rate)
        load = load if mix is None else replace(load, mix=mix)
        l1_spec = replace(self.l1, enabled=False) if l1 is False else self.l1
        updated = replace(
            self,
            network=network,
            load=load,
            l1=l1_spec,
            duration_s=self.duration_s if duration_s is None else duration_s,
        )
        check_manifest(updated)
        return updated


_TOP_KEYS = {"description", "duration_s", "network", "load", "l1", "perturbation"}
_NETWORK_KEYS = {
    "validators",
    "weights",
    "view_timeout_ms",
    "chain_id",
    "equivocators",
    "encryption",
    "encryption_threshold",
    "rotate_every",
    "rotate_members",
}
_LOAD_KEYS = {"rate", "accounts", "seed", "namespace", "payload_bytes", "mix"}
_L1_KEYS = {"enabled", "block_time_s", "inclusion_window", "escape_delay"}
_PERTURBATION_KEYS = {"at_s", "action", "node", "nodes"}


def load_manifest(path: Path | str) -> Manifest:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from exc
    return parse_manifest(text, source=str(path))


def parse_manifest(text: str, *, source: str = "<manifest>") -> Manifest:
    """Parse and check a manifest; raise ManifestError naming the first bad key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{source}: not valid TOML: {exc}") from exc
    where = _Where(source)
    _reject_unknown(data, _TOP_KEYS, where, "")
    network_table = _table(data, "network", where)
    load_table = _table(data, "load", where)
    l1_table = _table(data, "l1", where)
    _reject_unknown(network_table, _NETWORK_KEYS, where, "network.")
    _reject_unknown(load_table, _LOAD_KEYS, where, "load.")
    _reject_unknown(l1_table, _L1_KEYS, where, "l1.")

    network = NetworkSpec(
        validators=_int(network_table, "validators", DEFAULT_VALIDATORS, where, "network."),
        weights=_weights(network_table, where),
        view_timeout_ms=_int(
            network_table, "view_timeout_ms", DEFAULT_VIEW_TIMEOUT_MS, where, "network."
        ),
        chain_id=_optional_int(network_table, "chain_id", where, "network."),
        equivocators=_indices(network_table, "equivocators", where),
        encryption=_bool(network_table, "encryption", True, where, "network."),
        encryption_threshold=_optional_int(
            network_table, "encryption_threshold", where, "network."
        ),
        rotate_every=_optional_int(network_table, "rotate_every", where, "network."),
        rotate_members=_bool(network_table, "rotate_members", False, where, "network."),
    )
    load = LoadSpec(
        rate=_number(load_table, "rate", DEFAULT_LOAD_RATE, where, "load."),
        accounts=_int(load_table, "accounts", DEFAULT_LOAD_ACCOUNTS, where, "load."),
        seed=_int(load_table, "seed", DEFAULT_LOAD_SEED, where, "load."),
        namespace=_int(load_table, "namespace", DEFAULT_NAMESPACE, where, "load."),
        payload_bytes=_payload_bytes(load_table, where),
        mix=_mix(load_table, where),
    )
    enabled = l1_table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise where.error("l1.enabled", f"must be true or false, not {enabled!r}")
    l1 = L1Spec(
        enabled=enabled,
        block_time_s=_int(l1_table, "block_time_s", DEFAULT_L1_BLOCK_TIME_S, where, "l1."),
        inclusion_window=_int(l1_table, "inclusion_window", DEFAULT_INCLUSION_WINDOW, where, "l1."),
        escape_delay=_int(l1_table, "escape_delay", DEFAULT_ESCAPE_DELAY, where, "l1."),
    )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise where.error("description", "must be a string")
    duration = data.get("duration_s")
    if duration is not None:
        duration = _number(data, "duration_s", 0.0, where, "")
    manifest = Manifest(
        network=network,
        load=load,
        l1=l1,
        perturbations=_perturbations(data.get("perturbation", []), where),
        description=description,
        duration_s=duration,
        source=source,
    )
    check_manifest(manifest)
    return manifest


def check_manifest(manifest: Manifest) -> None:
    """Check the bounds of every value and that the perturbations apply in order."""
    where = _Where(manifest.source)
    network, load = manifest.network, manifest.load
    if not 1 <= network.validators <= MAX_TESTNET_VALIDATORS:
        raise where.error("network.validators", f"must be between 1 and {MAX_TESTNET_VALIDATORS}")
    if network.weights is not None:
        if len(network.weights) != network.validators:
            raise where.error(
                "network.weights",
                f"has {len(network.weights)} entries for {network.validators} validators",
            )
        if any(w <= 0 for w in network.weights):
            raise where.error("network.weights", "every weight must be a positive integer")
    if any(not 0 <= i < network.validators for i in network.equivocators):
        raise where.error(
            "network.equivocators", f"must name validators 0..{network.validators - 1}"
        )
    if len(set(network.equivocators)) != len(network.equivocators):
        raise where.error("network.equivocators", "names a validator twice")
    if network.equivocators and not manifest.l1.enabled:
        raise where.error("network.equivocators", "needs the L1 ([l1] enabled = true)")
    if network.view_timeout_ms <= 0:
        raise where.error("network.view_timeout_ms", "must be positive")
    if network.encryption_threshold is not None:
        try:
            check_threshold(network.validators, network.encryption_threshold)
        except ThresholdError as exc:
            raise where.error("network.encryption_threshold", str(exc)) from None
    if network.rotate_every is not None and not MIN_ROTATE_EVERY <= network.rotate_every < 2**32:
        raise where.error(
            "network.rotate_every", f"must be between {MIN_ROTATE_EVERY} and 2**32 - 1 heights"
        )
    if network.rotate_members:
        if network.rotate_every is None:
            raise where.error("network.rotate_members", "needs rotate_every (or --rotate-every)")
        if network.validators < 2:
            raise where.error("network.rotate_members", "needs at least 2 validators")
        if network.equivocators:
            raise where.error("network.rotate_members", "does not run with equivocators")
        if network.encryption_threshold is not None:
            try:
                check_threshold(network.validators - 1, network.encryption_threshold)
            except ThresholdError as exc:
                raise where.error(
                    "network.encryption_threshold", f"for epochs of n - 1: {exc}"
                ) from None
    if network.chain_id is not None and not 0 < network.chain_id < 2**63:
        raise where.error("network.chain_id", "must be between 1 and 2**63 - 1")
    if load.rate < 0:
        raise where.error("load.rate", "must be >= 0 (0 turns the load off)")
    if load.accounts <= 0:
        raise where.error("load.accounts", "must be positive")
    if not 0 <= load.seed < 2**64:
        raise where.error("load.seed", "must be between 0 and 2**64 - 1")
    if not 0 <= load.namespace < 2**32:
        raise where.error("load.namespace", "must be a uint32")
    low, high = load.payload_bytes
    if not 0 <= low <= high <= 32 * 1024:
        raise where.error("load.payload_bytes", "must be [min, max] with 0 <= min <= max <= 32768")
    if load.mix not in MIXES:
        raise where.error("load.mix", f"is {load.mix!r}; expected one of {', '.join(MIXES)}")
    l1 = manifest.l1
    if not 1 <= l1.block_time_s <= MAX_L1_BLOCK_TIME_S:
        raise where.error("l1.block_time_s", f"must be between 1 and {MAX_L1_BLOCK_TIME_S}")
    windows = (("inclusion_window", l1.inclusion_window), ("escape_delay", l1.escape_delay))
    for key, value in windows:
        if not 1 <= value < MAX_L1_WINDOW_BLOCKS:
            raise where.error(f"l1.{key}", "must be between 1 and 2**32 - 1 L1 blocks")
    if manifest.duration_s is not None and manifest.duration_s <= 0:
        raise where.error("duration_s", "must be positive")
    for index, perturbation in enumerate(manifest.perturbations):
        if not 0 <= perturbation.node < network.validators:
            raise where.error(
                f"perturbation[{index}].node",
                f"is {perturbation.node}, but validators are 0..{network.validators - 1}",
            )
    check_perturbation_order(manifest.perturbations, network.validators, source=manifest.source)


def check_perturbation_order(
    perturbations: tuple[Perturbation, ...], validators: int, *, source: str = "<manifest>"
) -> None:
    """Replay the perturbations on node states and reject one that cannot apply.

    A node is up, paused or down, and connected or not. `pause` needs an up
    node, `resume` a paused one; `disconnect`/`reconnect` need an up node (the
    admin API must answer) in the opposite link state; `kill` needs a node that
    is not already down; `restart` applies in any state and leaves the node up
    and connected.
    """
    state = ["up"] * validators
    connected = [True] * validators
    for perturbation in sorted(perturbations, key=lambda p: p.at_s):
        node, action = perturbation.node, perturbation.action
        problem = ""
        if action is PerturbationAction.KILL:
            if state[node] == "down":
                problem = "is already down"
            state[node], connected[node] = "down", True
        elif action is PerturbationAction.RESTART:
            state[node], connected[node] = "up", True
        elif action is PerturbationAction.PAUSE:
            if state[node] != "up":
                problem = f"is {state[node]}, not up"
            state[node] = "paused"
        elif action is PerturbationAction.RESUME:
            if state[node] != "paused":
                problem = f"is {state[node]}, not paused"
            state[node] = "up"
        else:
            wanted = action is PerturbationAction.RECONNECT
            if state[node] != "up":
                problem = f"is {state[node]}; its admin API cannot answer"
            elif connected[node] == wanted:
                problem = "is already " + ("connected" if wanted else "disconnected")
            connected[node] = wanted
        if problem:
            raise ManifestError(
                f"{source}: perturbation '{perturbation.describe()}' cannot apply: "
                f"node{node} {problem} at that time"
            )


@dataclass(frozen=True, slots=True)
class _Where:
    source: str

    def error(self, key: str, problem: str) -> ManifestError:
        return ManifestError(f"{self.source}: {key} {problem}")


def _reject_unknown(table: dict[str, Any], known: set[str], where: _Where, prefix: str) -> None:
    for key in table:
        if key not in known:
            raise where.error(
                prefix + key, f"is not a manifest key (known: {', '.join(sorted(known))})"
            )


def _table(data: dict[str, Any], key: str, where: _Where) -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise where.error(key, "must be a table ([" + key + "])")
    return table


def _int(table: dict[str, Any], key: str, default: int, where: _Where, prefix: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(prefix + key, f"must be an integer, not {value!r}")
    return value


def _optional_int(table: dict[str, Any], key: str, where: _Where, prefix: str) -> int | None:
    if key not in table:
        return None
    return _int(table, key, 0, where, prefix)


def _bool(table: dict[str, Any], key: str, default: bool, where: _Where, prefix: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise where.error(prefix + key, f"must be true or false, not {value!r}")
    return value


def _number(table: dict[str, Any], key: str, default: float, where: _Where, prefix: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise where.error(prefix + key, f"must be a number, not {value!r}")
    return float(value)


def _weights(table: dict[str, Any], where: _Where) -> tuple[int, ...] | None:
    value = table.get("weights")
    if value is None:
        return None
    if not isinstance(value, list) or not all(
        isinstance(w, int) and not isinstance(w, bool) for w in value
    ):
        raise where.error("network.weights", "must be a list of integers")
    return tuple(value)


def _indices(table: dict[str, Any], key: str, where: _Where) -> tuple[int, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in value
    ):
        raise where.error("network." + key, "must be a list of validator indices")
    return tuple(value)


def _payload_bytes(table: dict[str, Any], where: _Where) -> tuple[int, int]:
    value = table.get("payload_bytes", list(DEFAULT_PAYLOAD_BYTES))
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise where.error("load.payload_bytes", "must be an integer or [min, max]")
    return (value[0], value[1])


def _mix(table: dict[str, Any], where: _Where) -> Mix:
    value = table.get("mix", DEFAULT_MIX)
    if value not in MIXES:
        raise where.error("load.mix", f"is {value!r}; expected one of {', '.join(MIXES)}")
    return cast(Mix, value)


def _perturbations(value: Any, where: _Where) -> tuple[Perturbation, ...]:
    if not isinstance(value, list):
        raise where.error("perturbation", "must be an array of tables ([[perturbation]])")
    result: list[Perturbation] = []
    for index, entry in enumerate(value):
        name = f"perturbation[{index}]"
        if not isinstance(entry, dict):
            raise where.error(name, "must be a table")
        _reject_unknown(entry, _PERTURBATION_KEYS, where, name + ".")
        if "at_s" not in entry:
            raise where.error(name + ".at_s", "is required")
        at_s = _number(entry, "at_s", 0.0, where, name + ".")
        if at_s < 0:
            raise where.error(name + ".at_s", "must be >= 0")
        raw_action = entry.get("action")
        try:
            action = PerturbationAction(str(raw_action))
        except ValueError:
            choices = ", ".join(a.value for a in PerturbationAction)
            raise where.error(
                name + ".action", f"is {raw_action!r}; expected one of {choices}"
            ) from None
        if ("node" in entry) == ("nodes" in entry):
            raise where.error(name, "needs exactly one of `node = I` or `nodes = [I, ...]`")
        if "node" in entry:
            nodes = [_int(entry, "node", 0, where, name + ".")]
        else:
            raw_nodes = entry["nodes"]
            if (
                not isinstance(raw_nodes, list)
                or not raw_nodes
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in raw_nodes)
            ):
                raise where.error(name + ".nodes", "must be a non-empty list of integers")
            nodes = list(raw_nodes)
        result.extend(Perturbation(at_s=at_s, action=action, node=node) for node in nodes)
    # Stable: perturbations at the same time apply in the order the file lists them.
    return tuple(sorted(result, key=lambda p: p.at_s))
