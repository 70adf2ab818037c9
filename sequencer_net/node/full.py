"""The full node: follows the chain from validators, verifies, executes, serves the API.

    follower (follow protocol: blocks + own finalizations, checked against the
              genesis validator set; batches by digest; namespace root checked)
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

import itertools
import logging
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from consensus.crypto import PrivateKey
from consensus.epochs import epoch_domain_separator
from consensus.io import Commit
from consensus.messages import Block, Certificate, EpochEndProof
from consensus.types import ValidatorSet
from consensus.verifier import SignatureVerifier
from sequencer_net.api.intake import Intake, Outcome, Refused
from sequencer_net.api.markets import MarketSource
from sequencer_net.api.server import ApiContext, ApiOptions, build_app, serve_api
from sequencer_net.batches.fetch import BatchFetcher
from sequencer_net.batches.pool import MAX_BATCHES_PER_REQUEST, BatchPool, BatchRequest
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
    MAX_FOLLOW_BLOCKS,
    FollowBlocksAnswer,
    FollowEpochs,
    ForgedAnswer,
    decode_blocks_answer,
    decode_epoch_end_answer,
    decode_outcome,
    encode_blocks_request,
    encode_epoch_end_request,
    encode_submit_request,
    verify_blocks,
)
from sequencer_net.node.status import ChainStatus
from sequencer_net.node.validator import (
    COMMIT_QUEUE,
    GIL_SWITCH_INTERVAL_S,
    LOG_FLUSH_S,
    _stop_on_signal,
    configure_logging,
)
from sequencer_net.p2p.limits import P2PLimits
from sequencer_net.p2p.network import P2PNetwork, PeerSpec
from sequencer_net.payload import MalformedPayload, decode_payload
from sequencer_net.payload.checks import (
    NamespaceRootMismatch,
    block_namespace_pairs,
    check_namespace_root,
)
from sequencer_net.storage.node_store import NodeStore

log = logging.getLogger("seqnet.fullnode")

KEY_FILE = "full_node.key"
"""The full node's libp2p identity in its home: 64 hex digits, mode 0600."""
POLL_S = 0.2
"""How long a caught-up follower waits before asking again."""
RETRY_S = 1.0
"""How long the follower waits after every validator failed it."""
SKIP_FAILED_S = 10.0
"""A validator that failed a request (unreachable, timed out, forged answer) is
asked last for this long: one that is down costs a dial timeout per ask."""


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


class FollowerStats:
    def __init__(self) -> None:
        self.forged_answers = 0
        self.failed_requests = 0
        self.blocks_verified = 0
        self.root_mismatches = 0


class Follower:
    """Asks validators for committed blocks, verifies them, feeds the pipeline."""

    def __init__(
        self,
        *,
        p2p: P2PNetwork,
        store: NodeStore,
        pool: BatchPool,
        fetcher: BatchFetcher,
        validators: ValidatorSet,
        verifier: SignatureVerifier,
        commits: trio.MemorySendChannel[Commit],
        epochs: FollowEpochs | None = None,
    ) -> None:
        """`epochs`: the genesis epoch schedule, on a chain that has later epochs."""
        self.p2p = p2p
        self.store = store
        self.pool = pool
        self.fetcher = fetcher
        self.validators = validators  # the genesis set: what certificates must satisfy
        self.verifier = verifier
        self.commits = commits
        self.epochs = epochs
        self.proofs: dict[int, EpochEndProof] = {}
        """End proofs of epochs this follower has not left yet (fetched when a
        block at an epoch's last height needs one)."""
        height, digest, _ = store.tip()
        self.next_height = height + 1
        self.parent = digest
        self.peer_tip = 0
        self.stats = FollowerStats()
        self._rotation = itertools.count()
        self._failed_at: dict[int, float] = {}

    def order(self) -> list[int]:
        """Validators to ask, in rotation, those that failed lately last."""
        peers = self.p2p.connected_peers()
        if not peers:
            return []
        start = next(self._rotation) % len(peers)
        rotated = peers[start:] + peers[:start]
        now = trio.current_time()
        recent = {p for p, t in self._failed_at.items() if now - t < SKIP_FAILED_S}
        return [p for p in rotated if p not in recent] + [p for p in rotated if p in recent]

    async def run(self) -> None:
        while True:
            progressed = await self.step()
            if not progressed:
                await trio.sleep(POLL_S)

    async def step(self) -> bool:
        """Ask validators in turn until one gives verified blocks (or all are
        caught up or fail); True if blocks were passed on."""
        caught_up = False
        for peer in self.order():
            try:
                data = await self.p2p.request(
                    peer, encode_blocks_request(self.next_height, MAX_FOLLOW_BLOCKS)
                )
            except Exception as exc:  # transport: try the next validator
                self.stats.failed_requests += 1
                self._failed_at[peer] = trio.current_time()
                log.debug("event=follow_request_failed peer=%d reason=%s", peer, exc)
                continue
            try:
                answer = decode_blocks_answer(data)
                verified = await self._verify(answer)
                if not verified and await self._fetch_epoch_end(peer, answer):
                    verified = await self._verify(answer)
            except ForgedAnswer as exc:
                self.stats.forged_answers += 1
                self._failed_at[peer] = trio.current_time()
                log.warning("event=forged_answer peer=%d reason=%s", peer, exc)
                continue
            self.peer_tip = max(self.peer_tip, answer.tip)
            if not verified:
                if answer.tip < self.next_height:
                    return False  # caught up with this validator: poll again later
                caught_up = True  # it holds the block, not its own certificate yet
                continue
            for block, cert in verified:
                if not await self._batches_match(block, peer):
                    return False
                self._keep_epoch_end(block)
                await self.commits.send(Commit(block, cert))
                self.next_height = block.height + 1
                self.parent = block.digest()
                self.stats.blocks_verified += 1
            return True
        if not caught_up:
            await trio.sleep(RETRY_S - POLL_S)
        return False

    def _keep_epoch_end(self, block: Block) -> None:
        """Store the end proof that proved an epoch's last block (verified with it
        by `verify_blocks`), so this node's API can prove that block to subscribers
        when no certificate of its own exists."""
        if self.epochs is None:
            return
        number = self.epochs.schedule.epoch_of(block.height).number
        proof = self.proofs.get(number)
        if proof is not None and self.epochs.schedule.last_height(number) == block.height:
            self.store.save_epoch_end(proof)

    async def _verify(self, answer: FollowBlocksAnswer) -> list[tuple[Block, Certificate]]:
        return await trio.to_thread.run_sync(
            lambda: verify_blocks(
                answer,
                validators=self.validators,
                verifier=self.verifier,
                next_height=self.next_height,
                parent=self.parent,
                epochs=self.epochs,
                proofs=self.proofs,
            )
        )

    async def _fetch_epoch_end(self, peer: int, answer: FollowBlocksAnswer) -> bool:
        """The answer reaches the last block of the current epoch and proves
        nothing: ask `peer` for the epoch's end proof (the last block may be
        committed under a tail block's finalization). True if one came."""
        if self.epochs is None or not answer.blocks:
            return False
        schedule = self.epochs.schedule
        epoch = schedule.epoch_of(self.next_height).number
        last = schedule.last_height(epoch)
        if last is None or epoch in self.proofs:
            return False
        if last > self.next_height + len(answer.blocks) - 1:
            return False
        try:
            data = await self.p2p.request(peer, encode_epoch_end_request(epoch))
        except Exception as exc:  # transport: the next step asks again
            log.debug("event=epoch_end_request_failed peer=%d reason=%s", peer, exc)
            return False
        proof = decode_epoch_end_answer(data)  # ForgedAnswer: dropped with the answer
        if proof.epoch != epoch:
            raise ForgedAnswer(f"asked for epoch {epoch}'s end proof, got epoch {proof.epoch}'s")
        self.proofs = {e: p for e, p in self.proofs.items() if e >= epoch}
        self.proofs[epoch] = proof
        return True

    async def _batches_match(self, block: Block, peer: int) -> bool:
        """Fetch the block's batches (digest-checked, transactions verified by the
        pool) and check the payload's namespace root against them."""
        try:
            payload = decode_payload(block.payload)
        except MalformedPayload:
            # A quorum finalized it: the pipeline commits it empty, as validators do.
            log.error("event=committed_malformed_payload height=%d", block.height)
            return True
        digests = list(payload.batches)
        for i in range(0, len(digests), MAX_BATCHES_PER_REQUEST):
            chunk = [d for d in digests[i : i + MAX_BATCHES_PER_REQUEST] if d not in self.pool]
            if chunk:
                await self.fetcher.fetch(BatchRequest(chunk), prefer=peer)
        batches = []
        for digest in digests:
            pairs = self.pool.namespace_pairs(digest)
            if pairs is None:
                log.info("event=batches_missing height=%d retry=yes", block.height)
                return False
            batches.append(pairs)
        try:
            check_namespace_root(payload, block_namespace_pairs(batches))
        except NamespaceRootMismatch as exc:
            # Batches are authenticated by digest and the payload by a quorum's
            # certificate: only more than f faulty validators get here. Stop
            # at this block (nothing unverified is executed) and say so.
            self.stats.root_mismatches += 1
            log.critical("event=namespace_root_mismatch height=%d reason=%s", block.height, exc)
            await trio.sleep(RETRY_S * 10)
            return False
        return True


class RelayIntake(Intake):
    """POST /v1/transactions at a full node: the intake's checks (size, signature,
    fee and nonce against this node's executed state), then the transaction goes to
    a validator over the follow protocol and the client gets its answer."""

    def __init__(self, *, p2p: P2PNetwork, order: Callable[[], list[int]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.p2p = p2p
        self.order = order  # validators to try, in turn, those that failed lately last

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
        if self.mempool.seen(hash_):
            return Refused(409, "duplicate", AddResult.DUPLICATE.value)
        (checked,) = await self.verifier.check_many([encoded])
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
        if validators.index_of(PrivateKey(secret).address) is not None:
            raise NodeSetupError("a full node's key must not be a validator's")
        super().__init__(config, genesis)
        overrides = config.p2p.peer_addresses()
        specs = []
        for i, v in enumerate(genesis.validators):
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
    configure_logging(config)
    genesis = load_genesis(config.genesis_path)
    with HomeLock(config.home):
        node = FullNode(config, genesis, load_or_make_node_key(config.home))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
                await node.run()
        finally:
            node.close()
            log.info("event=node_stopped mode=full height=%d", node.status.height)
