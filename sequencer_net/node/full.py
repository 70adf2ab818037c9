"""The full node: follows the chain from validators, verifies, executes, serves the API.

    follower (node/follow.py: blocks + own finalizations, checked against each
              block's epoch's set; batches by digest; namespace root checked)
      -> commit pipeline (the validators' own: execute off the loop, store)
      -> API (HTTP and WebSocket subscriptions from its own store and state)

It holds no validator key and never votes, proposes or sends a consensus
message: its libp2p identity is a key of its own (`<home>/full_node.key`,
made on first run), admitted by validators on their non-validator slots
(`[p2p] max_non_validator_connections`) for the follow protocol only.
Transactions posted to its API are checked against its executed state and
relayed to a validator, whose answer the client gets (`RelayIntake`).
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

from consensus.crypto import PrivateKey
from consensus.epochs import epoch_domain_separator
from consensus.io import Commit
from consensus.verifier import SignatureVerifier
from sequencer_net.api.intake import Intake, Outcome, Refused
from sequencer_net.api.markets import MarketSource
from sequencer_net.api.server import ApiContext, ApiOptions, build_app, serve_api
from sequencer_net.batches.fetch import BatchFetcher
from sequencer_net.batches.pool import BatchPool
from sequencer_net.home.config import NodeConfig
from sequencer_net.home.genesis import Genesis, load_genesis
from sequencer_net.home.lock import HomeLock
from sequencer_net.l1.status import L1Status
from sequencer_net.logging_limits import run_flusher
from sequencer_net.mempool.mempool import AddResult
from sequencer_net.mempool.transaction import InvalidTransaction, tx_hash
from sequencer_net.node.base import NodeBase, NodeSetupError
from sequencer_net.node.commit import CommitPipeline
from sequencer_net.node.decryption import Decryptor, key_epochs_of
from sequencer_net.node.follow import (
    FollowEpochs,
    Follower,
    decode_outcome,
    encode_submit_request,
)
from sequencer_net.node.gc_pauses import GC_PAUSES, tune_gc
from sequencer_net.node.status import ChainStatus
from sequencer_net.node.validator import (
    COMMIT_QUEUE,
    GIL_SWITCH_INTERVAL_S,
    LOG_FLUSH_S,
    configure_logging,
    run_until_stopped,
)
from sequencer_net.p2p.limits import P2PLimits
from sequencer_net.p2p.network import P2PNetwork, PeerSpec

log = logging.getLogger("seqnet.fullnode")

KEY_FILE = "full_node.key"
"""The full node's libp2p identity in its home: 64 hex digits, mode 0600."""


def load_or_make_node_key(home: Path) -> bytes:
    """The full node's own key, made (and kept) on first use."""
    path = home / KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_bytes(32).hex() + "\n")
    text = path.read_text().strip()
    try:
        secret = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        secret = b""
    if len(secret) != 32:
        raise NodeSetupError(f"{path}: expected 64 hex digits (a secp256k1 secret)")
    return secret


_DUPLICATE: Final = Refused(409, "duplicate", AddResult.DUPLICATE.value)


@dataclass(eq=False)
class _Relay:
    """One transaction being handed to a validator, and how that ended."""

    done: trio.Event = field(default_factory=trio.Event)
    outcome: Outcome = field(
        default_factory=lambda: Refused(503, "no_validator", "no validator answered; try again")
    )


class RelayIntake(Intake):
    """POST /v1/transactions at a full node: the intake's checks (size, signature,
    fee and nonce against this node's executed state), then the transaction goes to
    a validator over the follow protocol and the client gets its answer."""

    def __init__(self, *, p2p: P2PNetwork, order: Callable[[], list[int]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.p2p = p2p
        self.order = order  # validators to try, in turn, those that failed lately last
        self._relaying: dict[bytes, _Relay] = {}
        """Hashes being handed to a validator now: a copy arriving meanwhile (a
        client's retry) is answered as the first one ends, never `duplicate`
        while no validator holds it yet."""

    async def submit(self, items: Any, client: str) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for item in items:
            if isinstance(item, Refused):
                outcomes.append(item)
                continue
            if self.take_client_allowance(client, 1) < 1:
                outcomes.append(Refused(429, "rate_limited", "too many transactions"))
                continue
            outcomes.append(await self._relay(item))
        return outcomes

    async def _relay(self, encoded: bytes) -> Outcome:
        hash_ = tx_hash(encoded)
        pending = self._relaying.get(hash_)
        if pending is not None:
            await pending.done.wait()
            first = pending.outcome
            # Held by a validator now: a duplicate, as it would be after the
            # first answer; refused or not delivered: the same answer.
            return first if isinstance(first, Refused) else _DUPLICATE
        if self.mempool.seen(hash_):
            return _DUPLICATE
        relay = self._relaying[hash_] = _Relay()
        try:
            relay.outcome = await self._hand_on(hash_, encoded)
        finally:
            del self._relaying[hash_]
            relay.done.set()
        return relay.outcome

    async def _hand_on(self, hash_: bytes, encoded: bytes) -> Outcome:
        (checked,) = await self.verifier.check_many([encoded], hashes=[hash_])
        if isinstance(checked, InvalidTransaction):
            return Refused(400, "invalid_transaction", str(checked))
        added, _ = self.mempool.add(checked, now_ms=time.monotonic_ns() // 1_000_000)
        if added is not AddResult.ACCEPTED:
            return Refused(
                400 if added is not AddResult.FULL else 503, added.name.lower(), added.value
            )
        for peer in self.order():
            try:
                answer = await self.p2p.request(peer, encode_submit_request(encoded))
                outcome = decode_outcome(answer)
            except Exception as exc:  # transport or a bad answer: the next validator
                log.info("event=relay_failed peer=%d reason=%s", peer, exc)
                continue
            if isinstance(outcome, Refused):
                self.mempool.discard([hash_])
            else:
                self.accepted_at[hash_] = time.monotonic()
            return outcome
        self.mempool.discard([hash_])
        return Refused(503, "no_validator", "no validator answered; try again")


class FullNode(NodeBase):
    def __init__(self, config: NodeConfig, genesis: Genesis, secret: bytes) -> None:
        validators = genesis.validator_set()
        if any(v.address == PrivateKey(secret).address for v in genesis.members()):
            raise NodeSetupError("a full node's key must not be a validator's")
        super().__init__(config, genesis)
        overrides = config.p2p.peer_addresses()
        specs = []
        for i, v in enumerate(genesis.members()):  # numbered as validators number peers
            host, port = overrides.get(i, (v.p2p_host, v.p2p_port))
            specs.append(PeerSpec(index=i, public_key=v.public_key, host=host, port=port))
        self.p2p = P2PNetwork(
            secret=secret,
            me=-1,
            listen_host=config.p2p.listen_host,
            listen_port=config.p2p.listen_port,
            peers=specs,
            limits=P2PLimits(),
            follower=True,
        )
        self.pool = BatchPool(self.store, self.verifier, self.group)
        self.fetcher = BatchFetcher(self.pool, self.p2p)
        self.status = ChainStatus()
        self.accepted_at: dict[bytes, float] = {}
        self.commits = CommitPipeline(
            store=self.store,
            pool=self.pool,
            fetcher=self.fetcher,
            mempool=self.mempool,
            state=self._load_execution_state(),
            metrics=self.metrics,
            status=self.status,
            accepted_at=self.accepted_at,
            state_root_at=self._state_root_at,
            own_index=-1,
            domain=self.domain,
            decryptor=self._decryptor(genesis),
        )
        height, digest, _ = self.store.tip()
        self.status.height, self.status.last_hash = height, digest
        self.status.state_root = self.commits.state.state_root
        self._commits_in, self._commits_out = trio.open_memory_channel[Commit](COMMIT_QUEUE)
        self.follower = Follower(
            p2p=self.p2p,
            store=self.store,
            pool=self.pool,
            fetcher=self.fetcher,
            validators=validators,
            verifier=SignatureVerifier(self.domain.separator()),
            commits=self._commits_in,
            epochs=self._follow_epochs(genesis),
        )
        self.intake = RelayIntake(
            p2p=self.p2p,
            order=self.follower.order,
            mempool=self.mempool,
            verifier=self.verifier,
            group=self.group,
            store=self.store,
            metrics=self.metrics,
            accepted_at=self.accepted_at,
            client_rate=config.api.max_tx_per_s_per_client,
            client_burst=config.api.max_tx_burst_per_client,
        )
        self.metrics.mempool_size.set_function(lambda: len(self.mempool))
        self.l1_status = L1Status(enabled=config.l1.rpc_url is not None)
        self.evidence_watcher = self._evidence_watcher(None, self.l1_status)

    def _follow_epochs(self, genesis: Genesis) -> FollowEpochs | None:
        """The epoch schedule blocks are checked against; None without `epochs`."""
        schedule = genesis.schedule()
        if len(schedule) == 1:
            return None
        separator = self.domain.separator()
        return FollowEpochs(
            schedule,
            tuple(
                SignatureVerifier(epoch_domain_separator(separator, e))
                for e in range(len(schedule))
            ),
        )

    def _decryptor(self, genesis: Genesis) -> Decryptor | None:
        """Opens committed envelopes with shares asked from validators over the
        follow protocol, each message verified as validators verify it; a full
        node has no share of its own."""
        epochs = key_epochs_of(genesis, {})
        if epochs is None:
            return None

        async def request(peer: int, data: bytes, timeout: float) -> bytes:
            return await self.p2p.request(peer, data, timeout=timeout)

        return Decryptor(
            chain_id=genesis.chain_id,
            epochs=epochs,
            store=self.store,
            broadcast=lambda data: None,
            request=request,
            executed=lambda: self.status.height,
        )

    def status_document(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "mode": "full",
            "validator_index": None,
            "chain_id": self.domain.chain_id,
            "verifying_contract": "0x" + self.domain.verifying_contract.hex(),
            "genesis_hash": "0x" + self.domain.genesis_hash.hex(),
            "height": self.status.height,
            "last_hash": "0x" + self.status.last_hash.hex(),
            "validators_height": self.follower.peer_tip,
            "state_root": "0x" + self.status.state_root.hex(),
            "peers": [],
            "connected": True,
            "mempool_size": len(self.mempool),
            "committed_txs": self.status.committed_txs,
            "commit_latency_ms": self.status.latency_percentiles(),
            "follow": {
                "blocks_verified": self.follower.stats.blocks_verified,
                "forged_answers": self.follower.stats.forged_answers,
                "failed_requests": self.follower.stats.failed_requests,
            },
            "l1": self.l1_status.document(self.store.tip()[0]),
            "uptime_s": round(time.monotonic() - self.started_at, 1),
        }

    def _set_connected(self, connected: bool) -> None:
        log.warning("event=set_connected_ignored mode=full connected=%s", connected)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        api = ApiContext(
            mempool=self.mempool,
            intake=self.intake,
            store=self.store,
            metrics=self.metrics,
            status=self.status_document,
            set_connected=self._set_connected,
            markets=MarketSource(lambda: self.commits.state, self.commits.market_activity),
            commit_feed=self.status.feed,
            validators=self.validators_document,
            schedule=self.genesis.schedule(),
            epoch_end_proof=self.store.epoch_end,
        )
        api_options = ApiOptions.from_config(self.config)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.group.run)
            await nursery.start(self.p2p.run)
            nursery.start_soon(self.commits.run, self._commits_out)
            nursery.start_soon(self.follower.run)
            if self.evidence_watcher is not None:
                await nursery.start(self.evidence_watcher.run)
            nursery.start_soon(run_flusher, self.pool.log_limiter, LOG_FLUSH_S)
            await nursery.start(serve_api, build_app(api, api_options), api_options)
            log.info(
                "event=node_started mode=full p2p=%s:%d api=%s:%d peer_id=%s height=%d",
                self.config.p2p.listen_host,
                self.config.p2p.listen_port,
                self.config.api.listen_host,
                self.config.api.listen_port,
                self.p2p.peer_id,
                self.status.height,
            )
            task_status.started()


async def run_full_node(config: NodeConfig) -> None:
    """Run one full node until SIGINT or SIGTERM."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    GC_PAUSES.install()
    configure_logging(config)
    genesis = load_genesis(config.genesis_path)
    with HomeLock(config.home):
        node = FullNode(config, genesis, load_or_make_node_key(config.home))
        tune_gc()

        def finish() -> None:
            node.close()
            log.info("event=node_stopped mode=full height=%d", node.status.height)

        await run_until_stopped(node.run, finish)
