"""A node's configuration: `<home>/config.toml`, read with tomllib.

Config is data (STYLE.md item 14). Every key lives in one frozen dataclass
below, with its default and the sentence that documents it (the field's
`doc` metadata). The same table drives the loader, the commented file that
`seqnet node init` writes (`default_config_text`) and the key reference in
docs/operator.md, so a key cannot exist without its documentation; a test
checks it.

The loader is strict: an unknown section or key, a value of the wrong type or
out of range raises ConfigError naming the file, the section and the key,
e.g. `/srv/seqnet/config.toml: [p2p] listen_port: must be in 1..65535`.
A key that is absent (or commented out) takes its default.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from sequencer_net.api.limits import MAX_BATCH_BODY_BYTES
from sequencer_net.mempool.limits import (
    MAX_BATCH_TX_BYTES,
    MAX_BATCH_TXS,
    MAX_PER_SENDER_BOUND,
    MAX_TX_BYTES,
    BatchLimits,
    MempoolLimits,
)

if TYPE_CHECKING:
    from consensus.core import ConsensusConfig
    from sequencer_net.home.genesis import Genesis

CONFIG_FILE: Final = "config.toml"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("text", "json")
MAX_TIMEOUT_MS: Final = 3_600_000
MiB: Final = 1024 * 1024

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PEER = re.compile(r"^(?P<index>[0-9]+)@(?P<host>[^\s@]+):(?P<port>[0-9]+)$")

Check = Callable[[Any], str | None]
"""A value check: returns None if the value is fine, else what is wrong."""


class ConfigError(ValueError):
    """config.toml is unreadable or breaks a rule; the message names file and key."""


def _key(default: Any, doc: str, check: Check | None = None, example: Any = None) -> Any:
    """A config key: its default, its documentation, an optional range check and, for
    a key that is unset by default, an example value for the generated file."""
    return field(default=default, metadata={"doc": doc, "check": check, "example": example})


def _port(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "must be in 1..65535"


def _positive(value: int) -> str | None:
    return None if value >= 1 else "must be at least 1"


def _timeout(value: int | None) -> str | None:
    if value is None or 1 <= value <= MAX_TIMEOUT_MS:
        return None
    return f"must be in 1..{MAX_TIMEOUT_MS} (milliseconds)"


def _host(value: str) -> str | None:
    return None if value and not any(c.isspace() for c in value) else "must be a host or IP"


def _non_empty(value: str | None) -> str | None:
    return "must not be empty" if value == "" else None


def _name(value: str) -> str | None:
    if _NAME.match(value):
        return None
    return "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"


def _peers(value: tuple[str, ...]) -> str | None:
    seen: set[int] = set()
    for entry in value:
        match = _PEER.match(entry)
        if match is None:
            return f"{entry!r} must look like INDEX@HOST:PORT, e.g. 0@10.0.0.5:26600"
        if not 1 <= int(match["port"]) <= 65535:
            return f"{entry!r}: the port must be in 1..65535"
        if int(match["index"]) in seen:
            return f"{entry!r}: validator {match['index']} is listed twice"
        seen.add(int(match["index"]))
    return None


def _one_of(*choices: str) -> Check:
    def check(value: str) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _between(low: int, high: int) -> Check:
    def check(value: int) -> str | None:
        return None if low <= value <= high else f"must be in {low}..{high}"

    return check


@dataclass(frozen=True)
class P2PSettings:
    listen_host: str = _key(
        "127.0.0.1",
        "Address the libp2p host listens on. 0.0.0.0 listens on every interface "
        "(needed when peers are on other machines).",
        _host,
    )
    listen_port: int = _key(26600, "TCP port for validator-to-validator traffic.", _port)
    peers: tuple[str, ...] = _key(
        (),
        'Where to reach validators, as "INDEX@HOST:PORT" (INDEX is the validator\'s '
        "position in genesis.json); overrides the p2p_host/p2p_port in genesis.json "
        "for that validator.",
        _peers,
    )
    max_non_validator_connections: int = _key(
        0,
        "Inbound connections kept from peers whose key is not a validator's (in total, "
        "one per peer, 0..1024). 0 closes every such connection right after its "
        "handshake; validators never compete for these slots. Full nodes use them, for "
        "the follow protocol only: set it to the number of full nodes to serve.",
        _between(0, 1024),
    )

    def peer_addresses(self) -> dict[int, tuple[str, int]]:
        """The `peers` overrides as {validator index: (host, port)}."""
        result = {}
        for entry in self.peers:
            match = _PEER.match(entry)
            assert match is not None  # checked when loaded
            result[int(match["index"])] = (match["host"], int(match["port"]))
        return result


@dataclass(frozen=True)
class ApiSettings:
    listen_host: str = _key(
        "127.0.0.1",
        "Address of the HTTP API and the Prometheus /metrics endpoint; independent of "
        "[p2p] listen_host. Keep it on loopback (or a private interface) unless "
        "clients on other machines must reach it.",
        _host,
    )
    listen_port: int = _key(26700, "TCP port of the API and /metrics.", _port)
    max_connections: int = _key(
        256,
        "Most HTTP connections open at once (also the most requests in flight). At "
        "the cap, new connections wait in the listen backlog until one closes.",
        _between(1, 65_536),
    )
    body_timeout_ms: int = _key(
        20_000,
        "A request's whole body must arrive within this long after its headers, "
        "else 408 and the connection is closed (ms).",
        _between(100, 600_000),
    )
    idle_timeout_ms: int = _key(
        5_000,
        "A connection with no request in progress (keep-alive, or one still "
        "sending its headers) is closed after this long (ms).",
        _between(100, 600_000),
    )
    max_body_buffer_bytes: int = _key(
        64 * MiB,
        "Most bytes of large request bodies (batch submissions) held at once; a "
        "request whose declared body does not fit gets 503 busy. Bodies of at most "
        "one transaction's size do not count. At least the batch endpoint's body "
        f"cap ({MAX_BATCH_BODY_BYTES // MiB} MiB).",
        _between(MAX_BATCH_BODY_BYTES, 4096 * MiB),
    )
    subscriber_queue: int = _key(
        256,
        "Blocks one WebSocket subscriber may trail the committed tip by once it has "
        "caught up; beyond it the subscription is closed (4008) with the height to "
        "resume from.",
        _between(1, 65_536),
    )
    max_subscribers: int = _key(
        256,
        "Open WebSocket subscriptions (blocks and transaction status) at once; "
        "beyond it a new one is closed with 4429. Each also holds a connection.",
        _between(1, 65_536),
    )
    max_subscriptions_per_client: int = _key(
        32,
        "Open WebSocket subscriptions (both kinds) from one client address at once; "
        "beyond it a new one from that address is closed with 4429, so one client "
        "cannot take all of max_subscribers.",
        _between(1, 65_536),
    )
    admin_token_file: str | None = _key(
        None,
        "File (relative to the home directory, mode 0600) whose first line is the "
        "admin token; /v1/admin/ requests must send Authorization: Bearer <token>. "
        "Unset (and no SEQNET_ADMIN_TOKEN in the environment): the admin endpoints "
        "are off.",
        _non_empty,
        example="admin.token",
    )
    max_tx_per_s_per_client: int = _key(
        20_000,
        "Transactions per second one client address may submit (a token bucket; "
        "beyond it: 429 rate_limited). Every submission endpoint counts.",
        _between(1, 10_000_000),
    )
    max_tx_burst_per_client: int = _key(
        50_000,
        "Transactions one client address may submit at once before the per-second "
        "rate applies (the token bucket's size).",
        _between(1, 100_000_000),
    )


@dataclass(frozen=True)
class ConsensusSettings:
    view_timeout_ms: int | None = _key(
        None,
        "Base time to wait in a view for a notarization before voting to skip it "
        "(ms); it backs off (x1.5 per step) while views fail for lack of time and "
        "comes back down as blocks finalize. Unset: the view_timeout_ms of "
        "genesis.json, which every validator should use.",
        _timeout,
        example=1000,
    )
    retry_ms: int | None = _key(
        None,
        "While a view is stuck, how often to re-send this view's votes, the "
        "certificates that justify it and unanswered fetches (ms). Unset: the view "
        "timeout.",
        _timeout,
        example=1000,
    )
    max_backoff_steps: int = _key(
        4,
        "Most x1.5 back-off steps of the view timeout (4: at most about 5x the "
        "base). Higher lets the chain keep committing on a slower network; lower "
        "bounds how long a crashed leader's view lasts after a slow period.",
        _between(0, 16),
    )

    empty_block_interval_ms: int = _key(
        500,
        "As leader, how long to wait for a batch before proposing an empty block "
        "(ms); a batch that arrives meanwhile is proposed at once. Capped at half the "
        "view timeout. Lower: faster empty blocks; higher: fewer of them when idle.",
        _between(0, 60_000),
    )

    min_block_interval_ms: int = _key(
        120,
        "As leader, the least time between a busy parent block's timestamp and this "
        "validator's proposal on it (ms): under load, fewer and fuller blocks, so less "
        "of the machine goes to per-block work. A parent of 32 transactions or more "
        "holds the leader this long, a smaller one that fraction of it (an idle "
        "network is barely held), and past 256 the hold grows, to twice this after a "
        "parent of 768 or more (near the highest rate); a transaction in the engine's "
        "namespace (0) counts twice. The wait applies only to this "
        "validator's own proposals (voters do not check it); the setting is capped at "
        "an eighth of the view timeout, so the longest hold stays within a quarter of "
        "it. 0: propose as soon as a batch is there.",
        _between(0, 10_000),
    )

    inclusion_delay_views: int = _key(
        2,
        "The inclusion rule's K: a voter refuses a proposal that leaves out a batch "
        "whose availability certificate it has held for this many views (unless the "
        "block is full of older or overdue ones). Lower: a leader can delay a "
        "validator's batches for fewer views; higher: more slack for certificates "
        "that reach leaders late. Every validator should use the same value.",
        _between(1, 64),
    )

    inclusion_delay_ms: int = _key(
        500,
        "The inclusion rule's time bound (ms): a certificate is overdue only once "
        "this voter has held it for inclusion_delay_views views and also this long, "
        "since under load views can be shorter than a certificate takes to reach "
        "the leader. Lower: a leader can delay a validator's batches for less time; "
        "higher: fewer refusals of leaders the certificate reached late. Every "
        "validator should use the same value.",
        _between(0, 60_000),
    )

    test_fault: str | None = _key(
        None,
        'For local test networks only: a fault this validator carries, "equivocate" '
        "(as leader, propose twin blocks to the two halves of the validators; as voter, "
        'sign every proposal; armed by SIGUSR1) or "censor" (as leader, leave out the '
        "batches of the validator with the next index; active from the start). Refused "
        "at startup unless the genesis chain id is in the local range of "
        "sequencer_net/home/genesis.py. Unset: none.",
        _one_of("equivocate", "censor"),
        example="equivocate",
    )

    def empty_block_wait_ms(self, genesis: Genesis) -> int:
        view_timeout = self.view_timeout_ms or genesis.view_timeout_ms
        return min(self.empty_block_interval_ms, view_timeout // 2)

    def min_block_wait_ms(self, genesis: Genesis) -> int:
        """min_block_interval_ms, capped far inside the view timeout: the longest
        hold, twice the setting after a parent of 768 transactions or more
        (payload/service.py PACE_MAX_FACTOR), stays within a quarter of it."""
        view_timeout = self.view_timeout_ms or genesis.view_timeout_ms
        return min(self.min_block_interval_ms, view_timeout // 8)

    def consensus_config(self, genesis: Genesis) -> ConsensusConfig:
        """The consensus core's timers: these settings, else the genesis defaults."""
        from consensus.core import ConsensusConfig

        view_timeout = self.view_timeout_ms or genesis.view_timeout_ms
        return ConsensusConfig(
            view_timeout_ms=view_timeout,
            retry_ms=self.retry_ms or view_timeout,
            max_backoff_steps=self.max_backoff_steps,
        )


_MEMPOOL: Final = MempoolLimits()
_BATCH: Final = BatchLimits()


@dataclass(frozen=True)
class MempoolSettings:
    """Defaults and ranges come from sequencer_net.mempool.limits, the one source
    the pool and the batcher also use."""

    max_txs: int = _key(
        _MEMPOOL.max_txs,
        "Most pending transactions held; beyond it a new transaction must pay a higher "
        "fee per byte than the cheapest waiting ones, which it evicts.",
        _positive,
    )
    max_bytes: int = _key(_MEMPOOL.max_bytes, "Most bytes of pending transactions held.", _positive)
    max_per_sender: int = _key(
        _MEMPOOL.max_per_sender,
        "Most pending transactions of one sender (the engine accepts nonces at most "
        "64 above a sender's highest used one).",
        _between(1, MAX_PER_SENDER_BOUND),
    )
    batch_max_txs: int = _key(
        _BATCH.max_txs,
        "Most transactions in one batch this node seals.",
        _between(1, MAX_BATCH_TXS),
    )
    batch_max_bytes: int = _key(
        _BATCH.max_bytes,
        "Most bytes of transactions in one batch.",
        _between(MAX_TX_BYTES, MAX_BATCH_TX_BYTES),
    )
    batch_delay_ms: int = _key(
        _BATCH.max_delay_ms,
        "Longest a transaction waits before its batch is sealed and broadcast, even "
        "if the batch is not full (ms); also the least time between two batches that "
        "are not full, so a transaction after a quiet spell is sealed at once. Lower: "
        "less latency, more, smaller batches.",
        _between(0, 60_000),
    )
    batch_max_uncertified: int = _key(
        _BATCH.max_uncertified,
        "Own batches still gathering acknowledgements beyond which a batch that is "
        "not full waits up to batch_hold_ms (instead of batch_delay_ms) for one of "
        "them to be certified. Under load this makes fewer, larger batches, which "
        "every validator verifies, acknowledges and certifies at a cost per batch. "
        "0: never wait.",
        _between(0, 1024),
    )
    batch_hold_ms: int = _key(
        _BATCH.hold_ms,
        "Longest a transaction waits for its batch while own batches are "
        "uncertified (ms; below batch_delay_ms it is batch_delay_ms).",
        _between(0, 60_000),
    )

    def mempool_limits(self) -> MempoolLimits:
        return MempoolLimits(
            max_txs=self.max_txs, max_bytes=self.max_bytes, max_per_sender=self.max_per_sender
        )

    def batch_limits(self) -> BatchLimits:
        return BatchLimits(
            max_txs=self.batch_max_txs,
            max_bytes=self.batch_max_bytes,
            max_delay_ms=self.batch_delay_ms,
            max_uncertified=self.batch_max_uncertified,
            hold_ms=self.batch_hold_ms,
        )


@dataclass(frozen=True)
class StorageSettings:
    data_dir: str = _key(
        "data",
        "Directory of the node's database (blocks, certificates, consensus safety "
        "state, execution state), relative to the home directory.",
        _non_empty,
    )
    sync: bool = _key(
        True,
        "fsync writes that safety needs (the vote record before a vote is sent, "
        "acknowledged transactions). Turn off only for throwaway test networks: a "
        "crash may then lose state and make the validator double-sign.",
    )
    group_commit_ms: int = _key(
        2,
        "Group commit window (ms): the first write waiting for an fsync (an "
        "acknowledgement, a batch) waits this long for others to share it. Higher: "
        "fewer fsyncs under load; lower: less latency when idle.",
        _between(0, 100),
    )
    verify_threads: int = _key(
        0,
        "Threads that check transaction signatures (intake and peers' batches) off "
        "the event loop. 0: one per CPU core.",
        _between(0, 256),
    )


PRICE_SOURCES: Final = ("none", "simulated", "file", "http")


def _mapping_entries(value: tuple[str, ...]) -> str | None:
    for entry in value:
        market, sep, rest = entry.partition("=")
        if not sep or not market.strip().isdigit() or not rest.strip():
            return f"{entry!r} must look like MARKET_ID=VALUE"
    return None


@dataclass(frozen=True)
class OracleSettings:
    source: str = _key(
        "none",
        "Where this validator gets the prices it reports every interval: "
        '"simulated" (a seeded walk every validator of a testnet computes alike; '
        'the default of `seqnet testnet up`), "file" (a JSON document on disk), '
        '"http" (a JSON document at a URL, e.g. an exchange\'s public ticker) or '
        '"none" (report nothing). The oracle price of a market is the weighted '
        "median of the validators' reports; without reports from more than 2/3 "
        "of the voting power a market's price goes stale and it stops trading.",
        _one_of(*PRICE_SOURCES),
    )
    interval_ms: int = _key(1000, "How often prices are reported (ms).", _between(100, 60_000))
    lag_s: int = _key(
        1,
        "Reports are stamped this many seconds before the local clock, so a "
        "leader whose clock is a little behind still accepts them.",
        _between(0, 30),
    )
    seed: int = _key(0, "simulated: the walk's seed (the same on every validator of a testnet).")
    file: str | None = _key(
        None,
        "file: the JSON document, relative to the home directory, re-read every interval.",
        _non_empty,
        example="prices.json",
    )
    url: str | None = _key(
        None,
        "http: the URL of the JSON document, fetched every interval.",
        _non_empty,
        example="https://prices.example.com/v1/tickers",
    )
    prices: tuple[str, ...] = _key(
        (),
        "file and http: where each market's price is in the document, as "
        '"MARKET_ID=dotted.path" (a number in the path indexes a list). A market '
        'not listed is read at "<market id>.price".',
        _mapping_entries,
    )
    volatilities: tuple[str, ...] = _key(
        (),
        "file and http: each option market's implied volatility, as "
        '"MARKET_ID=0.6" (a constant) or "MARKET_ID=dotted.path". A market not '
        'listed is read at "<market id>.volatility".',
        _mapping_entries,
    )


def _l1_address(value: str | None) -> str | None:
    if value is None:
        return None
    body = value[2:] if value.startswith("0x") else ""
    if len(body) != 40 or any(c not in "0123456789abcdefABCDEF" for c in body):
        return f"{value!r} is not a 0x-prefixed 20-byte hex address"
    return None


@dataclass(frozen=True)
class L1Settings:
    rpc_url: str | None = _key(
        None,
        "JSON-RPC endpoint of the L1 (Ethereum) node. Unset: this node does not "
        "talk to an L1 (no commitment posting, no deposits or forced transactions "
        "seen).",
        _non_empty,
        example="http://127.0.0.1:8545",
    )
    commitments: str | None = _key(
        None,
        "Address of the Commitments contract (the light client; genesis names it "
        "as verifying_contract).",
        _l1_address,
        example="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    )
    inbox: str | None = _key(
        None,
        "Address of the forced-inclusion Inbox contract.",
        _l1_address,
        example="0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
    )
    bridge: str | None = _key(
        None,
        "Address of the collateral Bridge contract.",
        _l1_address,
        example="0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9",
    )
    post: bool = _key(
        True,
        "Post finalized blocks to the Commitments contract (validators only). The "
        "validator key signs the L1 transactions, so its address needs ETH for gas.",
    )
    post_interval_ms: int = _key(
        2000,
        "Least time between two postings by this validator (ms): one posting covers "
        "every block finalized since the last.",
        _between(100, 3_600_000),
    )
    takeover_blocks: int = _key(
        10,
        "Validators take turns posting, a turn per this many L1 blocks; any validator "
        "posts when no posting landed for twice this many L1 blocks.",
        _between(1, 100_000),
    )
    confirmations: int = _key(
        2,
        "L1 blocks a deposit or forced transaction must be buried under before this "
        "node acts on it (reorg safety).",
        _between(0, 1_000),
    )
    poll_ms: int = _key(500, "How often the L1 is polled (ms).", _between(50, 60_000))
    watcher_key_file: str | None = _key(
        None,
        "File (relative to the home directory) holding the 0x-hex private key of the "
        "L1 account that pays for equivocation evidence the evidence watcher submits. "
        "Unset: validators use their validator key, full nodes run no evidence watcher.",
        _non_empty,
        example="watcher.key",
    )


@dataclass(frozen=True)
class LogSettings:
    level: str = _key("INFO", f"One of {', '.join(LOG_LEVELS)}.", _one_of(*LOG_LEVELS))
    format: str = _key(
        "text",
        '"text" (one human-readable event per line) or "json" (one JSON object per '
        "line, for log shippers).",
        _one_of(*LOG_FORMATS),
    )
    file: str | None = _key(
        None,
        "Write logs to this file (relative to the home directory) instead of stderr.",
        _non_empty,
        example="seqnet.log",
    )


def _resolve(home: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else home / path


@dataclass(frozen=True)
class NodeConfig:
    home: Path = field(metadata={"doc": "The home directory (not a key of the file)."})
    name: str = field(
        metadata={"doc": "This node's name in logs and status output.", "check": _name}
    )
    genesis_file: str = _key(
        "genesis.json", "The network's genesis file, relative to the home directory.", _non_empty
    )
    key_file: str = _key(
        "validator.key",
        "The validator's key file (encrypted keystore or plain 0600 file), relative "
        "to the home directory.",
        _non_empty,
    )
    password_file: str | None = _key(
        None,
        "File whose first line is the password of an encrypted key file. Unset: the "
        "key file must be plain (unencrypted).",
        _non_empty,
        example="validator.password",
    )
    threshold_key_file: str = _key(
        "threshold.key",
        "The validator's threshold decryption key share (plain 0600 JSON), relative "
        "to the home directory. Read only when the genesis has a threshold section. "
        "A later validator-set epoch e's share is <stem>.epoch<e><suffix> beside it.",
        _non_empty,
    )
    p2p: P2PSettings = field(default_factory=P2PSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    consensus: ConsensusSettings = field(default_factory=ConsensusSettings)
    mempool: MempoolSettings = field(default_factory=MempoolSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    oracle: OracleSettings = field(default_factory=OracleSettings)
    l1: L1Settings = field(default_factory=L1Settings)
    log: LogSettings = field(default_factory=LogSettings)

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE

    @property
    def genesis_path(self) -> Path:
        return _resolve(self.home, self.genesis_file)

    @property
    def key_path(self) -> Path:
        return _resolve(self.home, self.key_file)

    @property
    def threshold_key_path(self) -> Path:
        return _resolve(self.home, self.threshold_key_file)

    @property
    def password_path(self) -> Path | None:
        return None if self.password_file is None else _resolve(self.home, self.password_file)

    @property
    def admin_token_path(self) -> Path | None:
        token_file = self.api.admin_token_file
        return None if token_file is None else _resolve(self.home, token_file)

    @property
    def watcher_key_path(self) -> Path | None:
        key_file = self.l1.watcher_key_file
        return None if key_file is None else _resolve(self.home, key_file)

    @property
    def data_path(self) -> Path:
        return _resolve(self.home, self.storage.data_dir)

    @property
    def oracle_file_path(self) -> Path | None:
        file = self.oracle.file
        return None if file is None else _resolve(self.home, file)

    @property
    def log_path(self) -> Path | None:
        return None if self.log.file is None else _resolve(self.home, self.log.file)

    @property
    def lock_path(self) -> Path:
        return self.home / "LOCK"

    def with_log_level(self, level: str) -> NodeConfig:
        """A copy with another log level (the `--log-level` flag)."""
        problem = _one_of(*LOG_LEVELS)(level.upper())
        if problem is not None:
            raise ConfigError(f"--log-level: {problem}")
        return dataclasses.replace(self, log=dataclasses.replace(self.log, level=level.upper()))


# --- Reading --------------------------------------------------------------------------

SECTIONS: Final[dict[str, str]] = {
    "p2p": "Peer-to-peer networking (libp2p: TCP, Noise, yamux).",
    "api": "HTTP/WebSocket API and Prometheus metrics.",
    "consensus": "Consensus timers.",
    "mempool": "Pending transactions and the batches this node seals.",
    "storage": "The database.",
    "oracle": "The prices this validator reports (the oracle is the validators' median).",
    "l1": "The Ethereum L1: commitment posting, deposits and forced transactions.",
    "log": "Logging.",
}
"""The [sections] of config.toml and what each holds, in the order the file lists them."""

_TOP_LEVEL: Final = ("name", "genesis_file", "key_file", "password_file", "threshold_key_file")


def _section_class(name: str) -> type[Any]:
    hint = typing.get_type_hints(NodeConfig)[name]
    assert isinstance(hint, type)
    return hint


def _convert(value: Any, hint: Any) -> tuple[Any, str | None]:
    """`value` as the Python type `hint`, or an error saying what was expected."""
    args = typing.get_args(hint)
    if type(None) in args:  # X | None: absence means None, so a present value is an X
        (hint,) = [a for a in args if a is not type(None)]
    if hint is bool:
        return value, None if isinstance(value, bool) else "must be true or false"
    if hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value, None if ok else "must be an integer"
    if hint is str:
        return value, None if isinstance(value, str) else "must be a string"
    if typing.get_origin(hint) is tuple:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value), None
        return value, "must be a list of strings"
    raise TypeError(f"unsupported config type {hint!r}")


def _read_fields(
    cls: type[Any], table: dict[str, Any], prefix: str, allowed: tuple[str, ...]
) -> dict[str, Any]:
    """Check and convert the keys of one table; `prefix` starts every error message."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in allowed:
            raise ConfigError(f"{prefix}{key}: unknown key")
        value, problem = _convert(raw, hints[key])
        check = {f.name: f for f in dataclasses.fields(cls)}[key].metadata.get("check")
        if problem is None and check is not None:
            problem = check(value)
        if problem is not None:
            raise ConfigError(f"{prefix}{key}: {problem} (got {raw!r})")
        values[key] = value
    return values


def parse_config(home: Path, document: dict[str, Any], source: str) -> NodeConfig:
    """Build a NodeConfig from parsed TOML; `source` names the file in errors."""
    for key, value in document.items():
        if key in SECTIONS and not isinstance(value, dict):
            raise ConfigError(f"{source}: {key}: must be a [{key}] table")
        if key not in SECTIONS and key not in _TOP_LEVEL and isinstance(value, dict):
            raise ConfigError(f"{source}: [{key}]: unknown section")
    top = {k: v for k, v in document.items() if k not in SECTIONS}
    values = _read_fields(NodeConfig, top, f"{source}: ", _TOP_LEVEL)
    if "name" not in values:
        raise ConfigError(f"{source}: name: missing (every node needs a name)")
    for section in SECTIONS:
        cls = _section_class(section)
        allowed = tuple(f.name for f in dataclasses.fields(cls))
        fields = _read_fields(cls, document.get(section, {}), f"{source}: [{section}] ", allowed)
        values[section] = cls(**fields)
    config = NodeConfig(home=home, **values)
    _check_across_keys(config, source)
    return config


def _check_across_keys(config: NodeConfig, source: str) -> None:
    mempool = config.mempool
    if mempool.batch_max_txs > mempool.max_txs:
        raise ConfigError(f"{source}: [mempool] batch_max_txs: must be at most max_txs")
    if mempool.batch_max_bytes > mempool.max_bytes:
        raise ConfigError(f"{source}: [mempool] batch_max_bytes: must be at most max_bytes")
    oracle = config.oracle
    if oracle.source == "file" and oracle.file is None:
        raise ConfigError(f'{source}: [oracle] file: needed with source = "file"')
    if oracle.source == "http" and oracle.url is None:
        raise ConfigError(f'{source}: [oracle] url: needed with source = "http"')
    if oracle.url is not None and not oracle.url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: [oracle] url: must start with http:// or https://")
    from sequencer_net.pricefeed.sources import parse_mapping

    try:
        parse_mapping(oracle.prices, oracle.volatilities)
    except ValueError as exc:
        raise ConfigError(f"{source}: [oracle] {exc}") from None
    if config.p2p.listen_port == config.api.listen_port and _may_overlap(
        config.p2p.listen_host, config.api.listen_host
    ):
        raise ConfigError(f"{source}: [api] listen_port: the same as [p2p] listen_port")


_WILDCARD_HOSTS: Final = ("0.0.0.0", "::", "")


def _may_overlap(host_a: str, host_b: str) -> bool:
    """Whether two listen addresses can clash on one port: equal, or one is a wildcard."""
    return host_a == host_b or host_a in _WILDCARD_HOSTS or host_b in _WILDCARD_HOSTS


def load_config(home: Path) -> NodeConfig:
    """Read `<home>/config.toml`. Relative paths in it are resolved against `home`."""
    home = Path(home).expanduser().resolve()
    path = home / CONFIG_FILE
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such file (create a home with `seqnet node init --home {home}`)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return parse_config(home, document, str(path))


# --- Writing --------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:_}" if value >= 100_000 else str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _wrap(text: str, width: int = 78) -> list[str]:
    lines, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "#"
        line += " " + word
    lines.append(line)
    return lines


def _key_lines(f: dataclasses.Field[Any], value: Any, active: bool) -> list[str]:
    lines = _wrap(f.metadata["doc"])
    if value is None:
        lines.append(f"# {f.name} = {_toml_value(f.metadata['example'])}")
    else:
        lines.append(f"{'' if active else '# '}{f.name} = {_toml_value(value)}")
    return [*lines, ""]


def default_config_text(
    name: str,
    p2p_port: int,
    api_port: int,
    *,
    listen_host: str = "127.0.0.1",
    api_host: str = "127.0.0.1",
    password_file: str | None = None,
    admin_token_file: str | None = None,
    oracle: dict[str, Any] | None = None,
    l1: dict[str, Any] | None = None,
    max_non_validator_connections: int | None = None,
) -> str:
    """A config.toml listing every key with its documentation and default.

    The keys given here are set; every other key is commented out, so it takes
    the built-in default (and follows that default across upgrades).
    `listen_host` is the p2p listen address; the API has its own, `api_host`,
    so opening p2p to other machines never opens the API with it.
    """
    active: dict[str, Any] = {"name": name, "password_file": password_file}
    section_values: dict[str, dict[str, Any]] = {
        "p2p": {"listen_port": p2p_port},
        "api": {"listen_port": api_port},
    }
    if listen_host != "127.0.0.1":
        section_values["p2p"]["listen_host"] = listen_host
    if api_host != "127.0.0.1":
        section_values["api"]["listen_host"] = api_host
    if admin_token_file is not None:
        section_values["api"]["admin_token_file"] = admin_token_file
    if oracle:
        section_values["oracle"] = dict(oracle)
    if l1:
        section_values["l1"] = dict(l1)
    if max_non_validator_connections is not None:
        section_values["p2p"]["max_non_validator_connections"] = max_non_validator_connections
    out = [
        "# seqnet node configuration (TOML). Generated by `seqnet node init`.",
        "# Commented keys take the built-in default shown. Paths are relative to",
        "# this file's directory (the node's home). Reference: docs/operator.md.",
        "",
    ]
    node_fields = {f.name: f for f in dataclasses.fields(NodeConfig)}
    for key in _TOP_LEVEL:
        f = node_fields[key]
        given = active.get(key)
        default = given if given is not None else f.default
        out += _key_lines(f, default, active=key in active and given is not None)
    for section in SECTIONS:
        out += [f"[{section}]", *_wrap(SECTIONS[section]), ""]
        chosen = section_values.get(section, {})
        for f in dataclasses.fields(_section_class(section)):
            value = chosen.get(f.name, f.default)
            out += _key_lines(f, value, active=f.name in chosen)
    return "\n".join(out).rstrip("\n") + "\n"


def documented_keys() -> list[tuple[str, str, Any, str]]:
    """(section, key, default, doc) for every key: what docs/operator.md tabulates."""
    node_fields = {f.name: f for f in dataclasses.fields(NodeConfig)}
    rows = [
        ("", key, node_fields[key].default, node_fields[key].metadata["doc"])
        for key in ("name", *_TOP_LEVEL[1:])
    ]
    for section in SECTIONS:
        for f in dataclasses.fields(_section_class(section)):
            rows.append((section, f.name, f.default, f.metadata["doc"]))
    return rows
