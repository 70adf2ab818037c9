"""The validator process: every component, wired in one readable place.

Follow a transaction through it:
  API (intake: verifier pool, mempool, group commit, ack) -> own batches (cut,
  stored once, broadcast to validators) -> peers' batches (queued apart from
  consensus, verified in the pool, acknowledged to their author) -> batch
  certificates (a quorum of acks, broadcast; the certifier) -> consensus
  driver (the leader's payload names certified batches, oldest first; voters
  fetch what they lack and apply the inclusion rule) -> commit pipeline (open
  the block's encrypted transactions and draw its order seed with the
  validators' share messages, order it by the seed, execute off the loop,
  store) -> status.

One trio nursery owns every task; SIGINT or SIGTERM cancels it, and each
component cleans up on the way out (the p2p host closes, the stores close,
the home directory lock is released).
"""

from __future__ import annotations

import itertools
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from consensus.core import ConsensusCore
from consensus.crypto import PrivateKey
from consensus.epochs import Anchor, epoch_domain_separator, verify_epoch_end
from consensus.io import Commit
from consensus.types import Digest, Height, ValidatorIndex
from consensus.verifier import SignatureVerifier
from sequencer_net.api.intake import Intake, Outcome
from sequencer_net.api.markets import MarketSource
from sequencer_net.api.server import ApiContext, ApiOptions, build_app, serve_api
from sequencer_net.batches.batch import BatchBuilder
from sequencer_net.batches.fetch import BatchFetcher, encode_batch_answer
from sequencer_net.batches.pool import BatchPool, BatchRequest
from sequencer_net.fairness.tdh2 import KeyShare
from sequencer_net.home.config import NodeConfig
from sequencer_net.home.genesis import Genesis, load_genesis
from sequencer_net.home.keystore import KeystoreError
from sequencer_net.home.lock import HomeLock
from sequencer_net.home.setup import load_validator_secret
from sequencer_net.home.threshold import read_key_shares
from sequencer_net.l1.forced import ForcedInclusion
from sequencer_net.l1.status import L1Status
from sequencer_net.logging_limits import run_flusher
from sequencer_net.mempool.mempool import AddResult
from sequencer_net.mempool.transaction import InvalidTransaction
from sequencer_net.node.base import NodeBase, NodeSetupError
from sequencer_net.node.batching import OwnBatches, PeerBatches
from sequencer_net.node.certifying import BatchCertifier
from sequencer_net.node.commit import CommitPipeline
from sequencer_net.node.decryption import Decryptor, key_epochs_of, member_peer
from sequencer_net.node.driver import ConsensusDriver
from sequencer_net.node.epochs import (
    EpochMembers,
    EpochPlan,
    resume_epoch,
    weights_in_peer_order,
)
from sequencer_net.node.equivocation import (
    CROSS_DELAY_BLOCKS,
    Equivocator,
    TestFaultRefused,
    check_test_fault_allowed,
)
from sequencer_net.node.follow import (
    FollowEpochs,
    Follower,
    FollowServer,
    decode_epoch_end_answer,
    decode_outcome,
    encode_epoch_end_request,
    encode_submit_request,
)
from sequencer_net.node.gc_pauses import GC_PAUSES, tune_gc
from sequencer_net.node.own_nonces import OwnNonces
from sequencer_net.node.reporter import PriceReporter, build_source
from sequencer_net.node.requests import RequestKind, split_request
from sequencer_net.node.status import ChainStatus
from sequencer_net.p2p.limits import P2PLimits
from sequencer_net.p2p.network import Channel, P2PNetwork, PeerSpec
from sequencer_net.payload.service import PayloadService

if TYPE_CHECKING:
    from sequencer_net.l1.poster import CommitmentPoster
    from sequencer_net.l1.watcher import L1Watcher

log = logging.getLogger("seqnet.node")

_batch_request_decoder = msgspec.msgpack.Decoder(BatchRequest)

COMMIT_QUEUE = 1_000
"""Committed blocks waiting for execution; consensus pauses when execution lags this far."""
LOG_FLUSH_S = 10.0
"""How often rate-limited log lines get their summary written."""
FOLLOW_POLL_S = 0.2
"""How long a validator following an epoch waits before asking its members again."""


def configure_logging(config: NodeConfig) -> None:
    """One event per line; `key=value` text or JSON objects (config [log])."""
    handler: logging.Handler
    if config.log_path is not None:
        handler = logging.FileHandler(config.log_path)
    else:
        handler = logging.StreamHandler(sys.stderr)
    if config.log.format == "json":

        class JsonFormatter(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                return json.dumps(
                    {
                        "ts": round(record.created, 3),
                        "level": record.levelname,
                        "logger": record.name,
                        "node": config.name,
                        "msg": record.getMessage(),
                    }
                )

        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {config.name} %(name)s %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log.level)
    # Third-party libraries stay quiet unless something is wrong.
    for noisy in ("libp2p", "hypercorn", "multiaddr", "async_service"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class ValidatorNode(NodeBase):
    def __init__(self, config: NodeConfig, genesis: Genesis, key: PrivateKey) -> None:
        self.key = key
        validators = genesis.validator_set()
        index = member_peer(genesis, key.address)
        if index is None:
            raise NodeSetupError(
                f"key {key.address.hex()} is not a validator of any epoch in {config.genesis_path}"
            )
        self.schedule = genesis.schedule()
        """Which set signs for which heights; one epoch unless genesis has `epochs`."""
        self.index = index
        """This validator's p2p peer number: its place in `Genesis.members()` (its
        validator index on a chain whose set never changes); batches are authored
        and acknowledged under it."""
        self.validators = validators
        self.key_shares = _load_key_shares(config, genesis, key.address)
        """This validator's threshold key share of each validator-set epoch it
        is a member of (epoch -> share); empty when the genesis has no
        threshold section (encryption off)."""
        super().__init__(config, genesis, priority_senders=frozenset({key.address}))
        self.connected = True
        self.p2p = P2PNetwork(
            secret=key.secret,
            me=self.index,
            listen_host=config.p2p.listen_host,
            listen_port=config.p2p.listen_port,
            peers=self._peer_specs(),
            limits=P2PLimits(
                max_non_validator_connections=config.p2p.max_non_validator_connections
            ),
        )
        self.pool = BatchPool(self.store, self.verifier, self.group)
        self.fetcher = BatchFetcher(self.pool, self.p2p)
        self.epochs = self._epoch_plan()
        """The epoch schedule as the driver runs it; None on a single-epoch chain."""
        self.core = self._first_core()
        """The current epoch's consensus core (the driver starts each epoch's); while
        the node follows an epoch it is not a member of, an earlier epoch's."""
        self._power_epoch = 0
        """The epoch whose power the certifier counts."""
        self.certifier = BatchCertifier(
            me=self.index,
            key=key,
            validators=validators if self.epochs is None else weights_in_peer_order(genesis, 0),
            separator=self.domain.separator(),
            recover=self.core.verifier.recover,
            store=self.store,
            group=self.group,
            pool=self.pool,
            fetcher=self.fetcher,
            p2p=self.p2p,
            metrics=self.metrics,
            view=lambda: self.core.view,
            delay_views=config.consensus.inclusion_delay_views,
            delay_ms=config.consensus.inclusion_delay_ms,
            is_connected=lambda: self.connected,
            leader=self._leader_peer,
            on_own_certified=lambda: self.own_batches.certified(),
            # A batch still uncertified after the inclusion rule's time bound is
            # late by the rule's own measure: only then do the validators that
            # acknowledged it unverified check it themselves.
            verify_after_ms=config.consensus.inclusion_delay_ms,
        )
        self.pool.certified = self.certifier.certified
        self._forward_rotation = itertools.count()
        self.own_batches = OwnBatches(
            batcher=BatchBuilder(
                self.index,
                config.mempool.batch_limits(),
                next_sequence=self.store.next_batch_sequence(),
            ),
            mempool=self.mempool,
            pool=self.pool,
            broadcast=self._broadcast_batch,
            metrics=self.metrics,
            on_batch=self.certifier.own_batch,
            may_cut=self._is_member_now,
            forward=self._forward_to_members if self.epochs is not None else None,
            forget=self.store.remove_pending,
            uncertified=self.certifier.uncertified_own,
        )
        self.peer_batches = PeerBatches(
            self.pool, self.metrics, self.certifier.acknowledge, self.certifier.must_verify
        )
        self.forced = ForcedInclusion() if config.l1.rpc_url is not None else None
        """Forced transactions seen on the L1 Inbox: the L1 watcher submits each to
        `intake` and, once accepted, calls `forced.observe`; None without [l1]."""
        self.payloads = PayloadService(
            core=self.core,
            pool=self.pool,
            fetcher=self.fetcher,
            genesis_time_ms=genesis.genesis_time_ms,
            genesis_state_root=self.genesis_state_root,
            executed=lambda: (self.status.height, self.status.state_root),
            wait_executed=lambda height: self.commits.wait_executed(height),
            state_root_at=self._state_root_at,
            empty_block_wait_ms=config.consensus.empty_block_wait_ms(genesis),
            min_block_wait_ms=config.consensus.min_block_wait_ms(genesis),
            lag_wait_ms=config.consensus.consensus_config(genesis).view_timeout_ms // 2,
            forced=self.forced,
            is_committed=self._is_committed,
            certificates=self.certifier,
            censor=self._censored(),
        )
        self._commits_in, self._commits_out = trio.open_memory_channel[Commit](COMMIT_QUEUE)
        self.fault = self._test_fault()
        self.driver = ConsensusDriver(
            core=self.core,
            store=self.store,
            p2p=self.p2p,
            payloads=self.payloads,
            commits=self._commits_in,
            metrics=self.metrics,
            is_connected=lambda: self.connected,
            fault=self.fault,
            on_view=self.certifier.view_changed,
            epochs=self.epochs,
            start_core=None if self.epochs is None else self._start_core,
            on_epoch=self._epoch_started,
            follow_epoch=None if self.epochs is None else self._follow_epoch,
        )
        self.status = ChainStatus()
        self.accepted_at: dict[bytes, float] = {}
        self.decryptor = self._decryptor()
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
            own_index=self.index,
            domain=self.domain,
            decryptor=self.decryptor,
        )
        self.intake = Intake(
            mempool=self.mempool,
            verifier=self.verifier,
            group=self.group,
            store=self.store,
            metrics=self.metrics,
            accepted_at=self.accepted_at,
            client_rate=config.api.max_tx_per_s_per_client,
            client_burst=config.api.max_tx_burst_per_client,
            on_accepted=self.own_batches.transactions_arrived,
            ordering_height=lambda: self.status.height + 1,
        )
        height, digest, _ = self.store.tip()
        self.status.height, self.status.last_hash = height, digest
        self.status.state_root = self.commits.state.state_root
        self._restore_pending_transactions()
        if self.epochs is not None:
            # Certificates held before a restart are checked with the power of the
            # epoch the node resumes in (the driver moves the certifier on from there).
            epoch, _ = resume_epoch(self.store, self.epochs)
            if epoch > 0:
                self.certifier.epoch_changed(
                    weights_in_peer_order(genesis, epoch),
                    weights_in_peer_order(genesis, epoch - 1),
                )
                self._power_epoch = epoch
        if held := self.certifier.load():
            log.info("event=batch_certificates_restored count=%d", held)
        self.own_nonces = OwnNonces(key.address, lambda: self.commits.state)
        """Nonces of the transactions this validator signs: price and deposit reports."""
        self.reporter = self._price_reporter()
        self.l1_status = L1Status(enabled=config.l1.rpc_url is not None)
        self.l1_sends = trio.Lock()
        """Held by whoever sends from the validator key's L1 account, from its
        pending nonce to the send: the poster and the evidence watcher on it."""
        self.poster, self.watcher = self._l1_tasks()
        self.evidence_watcher = self._evidence_watcher(key, self.l1_status, self.l1_sends)
        self.follow_server = FollowServer(
            store=self.store,
            pool=self.pool,
            submit=self._submit_relayed,
            is_connected=lambda: self.connected,
        )
        # Gauges read live at scrape time.
        self.metrics.peers.set_function(lambda: len(self._connected_peers()))
        self.metrics.mempool_size.set_function(lambda: len(self.mempool))
        self.metrics.watch_p2p(self.p2p.stats)

    # ---- validator-set epochs ---------------------------------------------------------

    def _epoch_plan(self) -> EpochPlan | None:
        if len(self.schedule) == 1:
            return None
        separator = self.domain.separator()
        verifiers = [
            SignatureVerifier(epoch_domain_separator(separator, number))
            for number in range(len(self.schedule))
        ]
        genesis = self.genesis_block
        return EpochPlan(
            schedule=self.schedule,
            members=EpochMembers(self.genesis),
            verifier=lambda number: verifiers[number],
            genesis=Anchor(genesis.digest(), Height(genesis.height)),
            me=self.index,
        )

    def _first_core(self) -> ConsensusCore:
        """Epoch 0's core, or, for a validator that joins later, the core of the
        first epoch it is a member of (a placeholder on the genesis anchor: the
        driver starts each epoch's core on its real anchor when it gets there)."""
        if self.epochs is None or self.epochs.is_member(0):
            return self._start_core(0, None)
        first = next(e for e in range(len(self.schedule)) if self.epochs.is_member(e))
        return self._start_core(first, self.epochs.genesis)

    def _is_member_now(self) -> bool:
        """Whether this node runs the current epoch's consensus (else it follows)."""
        return self.epochs is None or not self.driver.following

    def _follower(self) -> Follower:
        """Fetches and checks an epoch's committed blocks from its members, as a
        full node does, for the commit pipeline (node/full.py `Follower`)."""
        assert self.epochs is not None
        separator = self.domain.separator()
        follow_epochs = FollowEpochs(
            self.schedule,
            tuple(
                SignatureVerifier(epoch_domain_separator(separator, e))
                for e in range(len(self.schedule))
            ),
        )
        return Follower(
            p2p=self.p2p,
            store=self.store,
            pool=self.pool,
            fetcher=self.fetcher,
            validators=self.validators,
            verifier=SignatureVerifier(separator),
            commits=self._commits_in,
            epochs=follow_epochs,
            peers=self._follow_peers,
        )

    def _follow_peers(self) -> list[int]:
        """Connected members of the followed epoch first (they have its blocks),
        then the other peers."""
        assert self.epochs is not None
        members = self.epochs.members
        epoch = self.driver.epoch
        peers = self._connected_peers()
        inside = [p for p in peers if members.index_of(epoch, p) is not None]
        return inside + [p for p in peers if p not in inside]

    async def _follow_epoch(self, epoch: int, anchor: Anchor) -> Anchor:
        """Commit `epoch`'s blocks (this node is not in its set) up to its last,
        each checked against the epoch's set and domain (the last by the end
        proof when its own finalization is not at hand); the next epoch's anchor."""
        follower = self._follower()
        height, digest, _ = self.store.tip()
        if height < anchor.height:  # the pipeline has not stored the anchor yet
            height, digest = anchor.height, anchor.digest
        follower.next_height, follower.parent = height + 1, digest
        last = self.schedule.last_height(epoch)
        follower.until = last
        log.info("event=following epoch=%d from_height=%d", epoch, height + 1)
        while last is None or follower.next_height <= last:
            if not self.connected or not await follower.step():
                await trio.sleep(FOLLOW_POLL_S)
        if follower.next_height == last + 1:
            digest = follower.parent
        else:  # a restart past the last block: it is in the store
            block = self.store.block_at(last)
            assert block is not None, "a committed height above the last has its block"
            digest = block.digest()
        if self.store.epoch_end(epoch) is None:
            await self._fetch_end_proof(epoch, last, digest)
        return Anchor(Digest(digest), Height(last))

    async def _fetch_end_proof(self, epoch: int, last: int, digest: bytes) -> None:
        """Ask the epoch's members once each for its end proof and keep the first
        that proves `digest` (so this node can answer for the epoch's end like
        its members); without one the node goes on: the blocks are proven."""
        assert self.epochs is not None
        for peer in self._follow_peers():
            try:
                data = await self.p2p.request(peer, encode_epoch_end_request(epoch))
                proof = decode_epoch_end_answer(data)
                proven = verify_epoch_end(
                    proof,
                    epoch=epoch,
                    last_height=last,
                    validators=self.schedule.epoch(epoch).validators,
                    verifier=self.epochs.verifier(epoch),
                )
            except Exception as exc:  # transport, or an answer that proves nothing
                log.debug("event=end_proof_fetch_failed peer=%d reason=%s", peer, exc)
                continue
            if proven == digest:
                self.store.save_epoch_end(proof)
                return
        log.info("event=end_proof_missing epoch=%d", epoch)

    def _start_core(self, epoch: int, anchor: Anchor | None) -> ConsensusCore:
        """The consensus core of `epoch`: the epoch's set, this validator's index in
        it, the epoch's signing domain, built on `anchor` (genesis for epoch 0)."""
        validators = self.schedule.epoch(epoch).validators
        me = validators.index_of(self.key.address)
        assert me is not None  # the driver starts cores only for epochs this node is in
        verifier = (
            SignatureVerifier(self.domain.separator())
            if self.epochs is None
            else self.epochs.verifier(epoch)
        )
        return ConsensusCore(
            validators=validators,
            me=me,
            key=self.key,
            genesis=self.genesis_block if epoch == 0 else None,
            anchor=anchor if epoch > 0 else None,
            last_height=self.schedule.last_height(epoch),
            epoch=epoch,
            verifier=verifier,
            config=self.config.consensus.consensus_config(self.genesis),
            stored_block=self.store.block_by_digest,
        )

    def _epoch_started(self, epoch: int, core: ConsensusCore | None) -> None:
        """Everything that follows the current epoch's core moves to the new one;
        `core` is None for an epoch this node follows (it cuts no batches then)."""
        if core is not None:
            self.core = core
            self.payloads.core = core
        if epoch != self._power_epoch:
            self._power_epoch = epoch
            self.certifier.epoch_changed(
                weights_in_peer_order(self.genesis, epoch),
                None if epoch == 0 else weights_in_peer_order(self.genesis, epoch - 1),
            )
        self.own_batches.membership_changed()

    def _leader_peer(self, view: int) -> int:
        """The p2p peer that leads `view` of the current epoch."""
        leader = self.core.leader(view)
        if self.epochs is None:
            return leader
        peer = self.epochs.members.peer_of(self.core.epoch, leader)
        assert peer is not None
        return peer

    def _decryptor(self) -> Decryptor | None:
        """Releases this validator's decryption shares for committed blocks and
        gathers the others' (node/decryption.py); None with encryption off."""
        epochs = key_epochs_of(self.genesis, self.key_shares)
        if epochs is None:
            return None

        async def request(peer: int, data: bytes, timeout: float) -> bytes:
            return await self.p2p.request(peer, data, timeout=timeout)

        def broadcast(data: bytes) -> None:
            if self.connected:
                self.p2p.broadcast(Channel.SHARES, data)

        return Decryptor(
            chain_id=self.genesis.chain_id,
            epochs=epochs,
            store=self.store,
            broadcast=broadcast,
            request=request,
            executed=lambda: self.status.height,
            me=member_peer(self.genesis, self.key.address),
            proofs=None if self.envelope_rules is None else self.envelope_rules.proofs,
        )

    def _test_fault(self) -> Equivocator | None:
        """The test-only fault of `[consensus] test_fault`, refused outside local networks."""
        fault = self.config.consensus.test_fault
        try:
            check_test_fault_allowed(fault, self.genesis.chain_id)
        except TestFaultRefused as exc:
            raise NodeSetupError(f"{self.config.config_path}: {exc}") from exc
        if fault is None or fault == "censor":
            return None
        if self.epochs is not None:
            raise NodeSetupError(
                f"{self.config.config_path}: test_fault {fault!r} runs on single-epoch chains only"
            )
        log.warning("event=test_fault_configured fault=%s armed_by=SIGUSR1", fault)
        core = self.core

        def sign(kind: int, view: int, height: int, block: bytes) -> bytes:
            return bytes(core.key.sign_digest(core.verifier.vote_digest(kind, view, height, block)))

        empty_block_s = self.config.consensus.empty_block_wait_ms(self.genesis) / 1000
        return Equivocator(
            me=self.index,
            validators=len(self.validators),
            sign=sign,
            cross_delay_s=CROSS_DELAY_BLOCKS * empty_block_s,
        )

    def _censored(self) -> int | None:
        """`[consensus] test_fault = "censor"` (checked by `_test_fault`): the
        validator whose batches this one leaves out as leader."""
        if self.config.consensus.test_fault != "censor":
            return None
        censored = (self.index + 1) % len(self.validators)
        log.warning("event=test_fault_configured fault=censor censored=%d", censored)
        return censored

    def _price_reporter(self) -> PriceReporter | None:
        """The reporter of this validator's prices ([oracle]); None without a source."""
        try:
            source = build_source(self.config)
        except ValueError as exc:
            raise NodeSetupError(f"{self.config.config_path}: [oracle] {exc}") from exc
        if source is None:
            if self.genesis.execution.markets:
                log.warning(
                    "event=oracle_not_configured markets=%d hint=%s",
                    len(self.genesis.execution.markets),
                    "set [oracle] source: prices need reports from more than 2/3 of the power",
                )
            return None

        async def submit(raw: bytes) -> Outcome:
            (outcome,) = await self.intake.submit([raw], client="oracle")
            return outcome

        oracle = self.config.oracle
        return PriceReporter(
            key=self.key,
            domain=self.domain,
            source=source,
            source_name=oracle.source,
            state=lambda: self.commits.state,
            submit=submit,
            interval_s=oracle.interval_ms / 1000,
            lag_s=oracle.lag_s,
            nonces=self.own_nonces,
        )

    def _l1_tasks(self) -> tuple[CommitmentPoster | None, L1Watcher | None]:
        """The commitment poster ([l1] post) and the deposit/forced-transaction
        watcher, both only with [l1] rpc_url (docs/l1.md)."""
        l1 = self.config.l1
        if l1.rpc_url is None:
            return None, None
        # Imported here: web3 costs about a second of every node start, and
        # nodes without an L1 never use it.
        from sequencer_net.l1.link import L1Link
        from sequencer_net.l1.poster import CommitmentPoster
        from sequencer_net.l1.watcher import L1Watcher

        link = L1Link.connect(
            l1.rpc_url,
            commitments=self.commitments_address(),
            inbox=_address(l1.inbox),
            bridge=_address(l1.bridge),
        )
        data = self.config.data_path / "l1"
        poll_s = l1.poll_ms / 1000
        poster = None
        if l1.post and link.commitments is not None:
            poster = CommitmentPoster(
                link=link,
                store=self.store,
                validators=self.validators,
                my_index=self.validators.index_of(self.key.address),
                key=self.key,
                data_dir=data,
                status=self.l1_status,
                post_interval_s=l1.post_interval_ms / 1000,
                takeover_blocks=l1.takeover_blocks,
                poll_s=poll_s,
                schedule=self.genesis.schedule(),
                sends=self.l1_sends,
            )
        elif l1.post:
            log.warning("event=l1_posting_off reason=no_commitments_address")

        async def submit(raw: bytes, client: str) -> Outcome:
            (outcome,) = await self.intake.submit([raw], client=client)
            return outcome

        watcher = L1Watcher(
            link=link,
            key=self.key,
            domain=self.domain,
            state=lambda: self.commits.state,
            nonces=self.own_nonces,
            submit=submit,
            is_committed=self._is_committed,
            forced=self.forced,
            data_dir=data,
            status=self.l1_status,
            confirmations=l1.confirmations,
            poll_s=poll_s,
        )
        return poster, watcher

    def _peer_specs(self) -> list[PeerSpec]:
        overrides = self.config.p2p.peer_addresses()
        specs = []
        for i, v in enumerate(self.genesis.members()):
            host, port = overrides.get(i, (v.p2p_host, v.p2p_port))
            specs.append(PeerSpec(index=i, public_key=v.public_key, host=host, port=port))
        return specs

    def _is_committed(self, tx_hash: bytes) -> bool:
        return self.store.find_transaction(tx_hash) is not None

    def _validator_address(self, index: int) -> bytes | None:
        if not self.validators.contains(index):
            return None
        return self.validators.address(ValidatorIndex(index))

    def _restore_pending_transactions(self) -> None:
        """Transactions acknowledged before a restart go back into the mempool."""
        restored = 0
        for encoded in self.store.load_pending_transactions():
            try:
                checked = self.mempool.check(encoded)
            except InvalidTransaction:
                continue
            if self.store.find_transaction(checked.hash) is not None:
                continue
            result, _ = self.mempool.add(checked, now_ms=0, restoring=True)
            if result is AddResult.ACCEPTED:
                self.accepted_at[checked.hash] = time.monotonic()
                restored += 1
        if restored:
            log.info("event=pending_restored transactions=%d", restored)

    # ---- status ---------------------------------------------------------------------

    def status_document(self) -> dict[str, Any]:
        peers = self._connected_peers()
        return {
            "name": self.config.name,
            "validator_index": self.index,
            "chain_id": self.domain.chain_id,
            "verifying_contract": "0x" + self.domain.verifying_contract.hex(),
            "genesis_hash": "0x" + self.domain.genesis_hash.hex(),
            "height": self.status.height,
            "last_hash": "0x" + self.status.last_hash.hex(),
            "consensus_height": self.core.committed.height,
            "view": self.core.view,
            "state_root": "0x" + self.status.state_root.hex(),
            "peers": peers,
            "connected": self.connected,
            "mempool_size": len(self.mempool),
            "committed_txs": self.status.committed_txs,
            "commit_latency_ms": self.status.latency_percentiles(),
            "oracle": (
                {"source": "none"} if self.reporter is None else self.reporter.status.document()
            ),
            "forced": None if self.forced is None else self.forced.status(self._is_committed),
            "l1": self.l1_status.document(self.store.tip()[0]),
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            **(
                {}
                if self.epochs is None
                else {"epoch": self.driver.epoch, "member": not self.driver.following}
            ),
        }

    def _connected_peers(self) -> list[int]:
        return self.p2p.connected_peers() if self.connected else []

    def set_connected(self, connected: bool) -> None:
        self.connected = connected
        log.warning("event=network_%s", "restored" if connected else "cut")

    # ---- tasks ----------------------------------------------------------------------

    async def _inbound(self) -> None:
        async for peer, channel, data in self.p2p.inbound:
            if not self.connected:
                continue
            if channel == Channel.CONSENSUS:
                self.driver.on_peer_message(peer, data)
            elif channel == Channel.BATCH:
                self.peer_batches.offer(peer, data)
            elif channel == Channel.CERT:
                self.certifier.offer(peer, data)
            elif channel == Channel.SHARES and self.decryptor is not None:
                self.decryptor.on_message(peer, data)

    async def _answer_request(self, peer: int, data: bytes) -> bytes:
        split = split_request(data) if self.connected else None
        if split is None:
            return b""
        kind, body = split
        if kind is RequestKind.CONSENSUS:
            return self.driver.answer_consensus_request(body)
        if kind is RequestKind.BATCHES:
            try:
                request = _batch_request_decoder.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError):
                return b""
            return encode_batch_answer(self.pool.answer(request))
        if kind is RequestKind.BATCH_CERTIFICATES:
            return self.certifier.answer(body)
        if kind is RequestKind.SHARES and self.decryptor is not None:
            return self.decryptor.answer_request(body)
        if kind in (RequestKind.FOLLOW_BLOCKS, RequestKind.EPOCH_END, RequestKind.SUBMIT):
            # A validator following an epoch it is not a member of, or handing on
            # the transactions it acknowledged (`_forward_to_members`).
            return await self.follow_server.answer(str(peer), data)
        return b""

    async def _forward_to_members(self, raw: bytes) -> Outcome | None:
        """One acknowledged transaction, submitted to a member of the current epoch
        while this node is outside it (`OwnBatches.forward`): the first member that
        answers, in rotation; None when none does."""
        assert self.epochs is not None
        connected = set(self._connected_peers())
        members = [
            p
            for p in self.epochs.members.peers(self.driver.epoch)
            if p != self.index and p in connected
        ]
        if not members:
            return None
        start = next(self._forward_rotation) % len(members)
        for peer in members[start:] + members[:start]:
            try:
                answer = await self.p2p.request(peer, encode_submit_request(raw))
                return decode_outcome(answer)
            except Exception as exc:  # transport or a bad answer: the next member
                log.info("event=forward_failed peer=%d reason=%s", peer, exc)
        return None

    async def _submit_relayed(self, raw: bytes, client: str) -> Outcome:
        """A transaction a full node relays: the same intake as the API's."""
        (outcome,) = await self.intake.submit([raw], client=client)
        return outcome

    def _broadcast_batch(self, encoded: bytes) -> None:
        if self.connected:
            self.p2p.broadcast(Channel.BATCH, encoded)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        api = ApiContext(
            mempool=self.mempool,
            intake=self.intake,
            store=self.store,
            metrics=self.metrics,
            status=self.status_document,
            set_connected=self.set_connected,
            validator_address=self._validator_address,
            epoch_validator_address=self.validator_address_in_epoch,
            markets=MarketSource(lambda: self.commits.state, self.commits.market_activity),
            commit_feed=self.status.feed,
            validators=self.validators_document,
            schedule=self.genesis.schedule(),
            epoch_end_proof=self.store.epoch_end,
        )
        api_options = ApiOptions.from_config(  # reads the admin token: fail early
            self.config, genesis_view_timeout_ms=self.genesis.view_timeout_ms
        )
        self.p2p.set_request_handler(self._answer_request)
        self.p2p.set_follow_handler(self.follow_server.answer)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.group.run)
            await nursery.start(self.p2p.run)
            await nursery.start(self.certifier.run)
            await nursery.start(self.peer_batches.run)
            if self.decryptor is not None:
                await nursery.start(self.decryptor.run)
            nursery.start_soon(self._inbound)
            nursery.start_soon(self.commits.run, self._commits_out)
            await nursery.start(self.driver.run)
            await nursery.start(self.own_batches.run)
            if self.reporter is not None:
                await nursery.start(self.reporter.run)
            if self.poster is not None:
                await nursery.start(self.poster.run)
            if self.watcher is not None:
                await nursery.start(self.watcher.run)
            if self.evidence_watcher is not None:
                await nursery.start(self.evidence_watcher.run)
            nursery.start_soon(run_flusher, self.pool.log_limiter, LOG_FLUSH_S)
            nursery.start_soon(run_flusher, self.certifier.log_limiter, LOG_FLUSH_S)
            if self.fault is not None:
                nursery.start_soon(_arm_on_signal, self.fault)
            await nursery.start(serve_api, build_app(api, api_options), api_options)
            log.info(
                "event=node_started validator=%d p2p=%s:%d api=%s:%d peer_id=%s height=%d",
                self.index,
                self.config.p2p.listen_host,
                self.config.p2p.listen_port,
                self.config.api.listen_host,
                self.config.api.listen_port,
                self.p2p.peer_id,
                self.status.height,
            )
            task_status.started()


def _load_key_shares(config: NodeConfig, genesis: Genesis, address: bytes) -> dict[int, KeyShare]:
    """The threshold key shares named by the config (one per epoch the validator
    is a member of), checked against genesis."""
    try:
        return read_key_shares(config.threshold_key_path, genesis, address)
    except KeystoreError as exc:
        raise NodeSetupError(str(exc)) from exc


def _address(value: str | None) -> bytes | None:
    """A config address ("0x" + 40 hex digits, checked when the config was read)."""
    return None if value is None else bytes.fromhex(value[2:])


GIL_SWITCH_INTERVAL_S = 0.001
"""How long a thread may hold the GIL while another waits for it (Python's
default is 5 ms). Execution and signature checks run in worker threads; the
event loop, which serves consensus, gets the GIL back within this long."""


async def run_node(config: NodeConfig) -> None:
    """Run one validator until SIGINT or SIGTERM."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    GC_PAUSES.install()
    configure_logging(config)
    genesis = load_genesis(config.genesis_path)
    key = PrivateKey(load_validator_secret(config))
    with HomeLock(config.home):
        node = ValidatorNode(config, genesis, key)
        tune_gc()

        def finish() -> None:
            node.close()
            log.info("event=node_stopped height=%d", node.status.height)

        await run_until_stopped(node.run, finish)


async def _arm_on_signal(fault: Equivocator) -> None:
    """SIGUSR1 arms the test fault (a local test network's scenario sends it)."""
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            fault.arm()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""What stops a node (`run_until_stopped`)."""


async def run_until_stopped(run: Callable[[], Awaitable[None]], finish: Callable[[], None]) -> None:
    """`await run()` until the first of STOP_SIGNALS, then `finish()` (close the
    stores, log `event=node_stopped`), also when `run` fails. The signals'
    receiver stays open until `finish` returns, so a second one during the
    shutdown (an impatient Ctrl-C, or the kernel's parent-death signal, sent
    again each time the child is handed to another thread of a dying
    multi-threaded parent) is taken and ignored rather than killing the process,
    by the default action, halfway through closing."""
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_on_signal, signals, nursery.cancel_scope)
                await run()
        finally:
            finish()


async def _stop_on_signal(signals: AsyncIterator[int], scope: trio.CancelScope) -> None:
    """Cancel `scope` at the first of `signals` (a receiver of STOP_SIGNALS)."""
    async for signum in signals:
        log.info("event=shutdown signal=%s", signal.Signals(signum).name)
        scope.cancel()
        return
