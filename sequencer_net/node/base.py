"""What every node process holds, validator or full node: its stores, the group
commit, the signature pool, the mempool and the engine state it restarts from."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from consensus.crypto import Address, PrivateKey
from sequencer_net.api.validators import epoch_validator_address, validators_document
from sequencer_net.execution import state_tree
from sequencer_net.execution.fees import CommittedFeeBalances, required_fee
from sequencer_net.execution.genesis import genesis_state
from sequencer_net.execution.state import ExecutionState, load_state
from sequencer_net.fairness.group import decode_point
from sequencer_net.fairness.tdh2 import CiphertextProofCache
from sequencer_net.home.config import NodeConfig
from sequencer_net.home.genesis import Genesis
from sequencer_net.l1.status import L1Status
from sequencer_net.mempool.encrypted import EnvelopeRules, LaterKey
from sequencer_net.mempool.mempool import Accounts, Mempool
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.metrics import Metrics
from sequencer_net.storage.group_commit import GroupCommit
from sequencer_net.storage.node_store import NodeStore
from sequencer_net.storage.state_store import RocksNodeStore

if TYPE_CHECKING:
    import trio

    from sequencer_net.l1.evidence_watch import EvidenceWatcher
    from sequencer_net.node.commit import CommitPipeline

log = logging.getLogger("seqnet.node")


def envelope_rules(genesis: Genesis) -> EnvelopeRules | None:
    """What envelopes are checked against: the genesis's threshold key, if any,
    and each later validator-set epoch's."""
    if genesis.threshold is None:
        return None
    return EnvelopeRules(
        public_key=decode_point(genesis.threshold.public_key),
        key_epoch=genesis.threshold.key_epoch,
        proofs=CiphertextProofCache(),
        later=tuple(
            LaterKey(e.threshold.key_epoch, e.first_height, decode_point(e.threshold.public_key))
            for e in genesis.epochs
            if e.threshold is not None
        ),
    )


class NodeSetupError(RuntimeError):
    """The node cannot start: bad key, not a validator, locked home, ..."""


class NodeBase:
    """The parts a validator and a full node share (validator.py, full.py).

    A subclass checks its key first, calls this to open the stores, then builds
    its own network and sets `self.commits`, the commit pipeline the mempool's
    admission reads the committed state from."""

    commits: CommitPipeline

    def __init__(
        self,
        config: NodeConfig,
        genesis: Genesis,
        *,
        priority_senders: frozenset[Address] = frozenset(),
    ) -> None:
        self.config = config
        self.genesis = genesis
        self.domain = genesis.domain()
        self.genesis_block = genesis.genesis_block()
        self.genesis_state_root = genesis_state(genesis.execution).state_root
        self.metrics = Metrics()
        self.started_at = time.monotonic()
        data = config.data_path
        data.mkdir(parents=True, exist_ok=True)
        self.store = NodeStore(
            data / "chain", genesis_digest=self.genesis_block.digest(), sync=config.storage.sync
        )
        self.state_store = RocksNodeStore(data / "state", sync=config.storage.sync)
        log.info("event=state_opened tree=%s", state_tree.implementation())
        self.group = GroupCommit(
            self.store.write_synced,
            window_s=config.storage.group_commit_ms / 1000,
            on_flush=self.metrics.observe_group_commit,
        )
        self.envelope_rules = envelope_rules(genesis)
        """The network key envelopes are checked against; None: encryption off."""
        self.verifier = VerifierPool(
            self.domain,
            threads=config.storage.verify_threads or None,
            envelopes=self.envelope_rules,
        )
        # The mempool admits what the latest committed state would execute; a
        # validator's own reports skip its pressure and head its batches.
        self.mempool = Mempool(
            self.domain,
            config.mempool.mempool_limits(),
            accounts=Accounts(
                nonce_window=lambda sender: self.commits.state.nonces.get(sender),
                fee_balance=CommittedFeeBalances(lambda: self.commits.state),
                required_fee=lambda length: required_fee(self.commits.state.config, length),
            ),
            envelopes=self.envelope_rules,
            priority_senders=priority_senders,
        )

    def _state_root_at(self, height: int) -> bytes | None:
        return self.genesis_state_root if height == 0 else self.store.state_root_at(height)

    def _load_execution_state(self) -> ExecutionState:
        """The engine's state at the committed tip: genesis, or reloaded from the tree."""
        height = self.store.tip()[0]
        if height == 0:
            return genesis_state(self.genesis.execution, self.state_store)
        root = self.store.state_root_at(height)
        if root is None:
            raise NodeSetupError(f"no state root stored for committed height {height}")
        return load_state(self.state_store, root)

    def commitments_address(self) -> bytes | None:
        """[l1] commitments, else the genesis's verifying_contract (if it names one)."""
        configured = self.config.l1.commitments
        if configured is not None:
            return bytes.fromhex(configured[2:])
        contract = bytes(self.domain.verifying_contract)
        return contract if any(contract) else None

    def _evidence_watcher(
        self,
        default_key: PrivateKey | None,
        status: L1Status,
        default_key_sends: trio.Lock | None = None,
    ) -> EvidenceWatcher | None:
        """The evidence watcher (docs/l1.md, "Watchers"): with [l1] rpc_url, a
        Commitments address and a key ([l1] watcher_key_file, else `default_key`,
        whose other L1 senders hold `default_key_sends`)."""
        l1 = self.config.l1
        commitments = self.commitments_address()
        if l1.rpc_url is None:
            return None
        # Imported here: web3 costs about a second of every node start, and
        # nodes without an L1 never use it.
        from sequencer_net.l1.evidence_watch import EvidenceWatcher, StoreSource, load_l1_key
        from sequencer_net.l1.link import L1Link

        key_path = self.config.watcher_key_path
        key: PrivateKey | None = default_key
        if key_path is not None:
            try:
                key = load_l1_key(key_path)
            except ValueError as exc:
                raise NodeSetupError(f"[l1] watcher_key_file: {exc}") from exc
        if key is None or commitments is None:
            log.warning(
                "event=l1_evidence_watch_off reason=%s",
                "no_watcher_key_file" if key is None else "no_commitments_address",
            )
            return None
        return EvidenceWatcher(
            link=L1Link.connect(l1.rpc_url, commitments=commitments),
            source=StoreSource(self.store),
            key=key,
            data_dir=self.config.data_path / "l1",
            status=status,
            confirmations=l1.confirmations,
            poll_s=l1.poll_ms / 1000,
            sends=default_key_sends if key is default_key else None,
        )

    def validator_address_in_epoch(self, epoch: int, index: int) -> bytes | None:
        """The address of validator `index` of `epoch`'s set (None: no such
        validator or epoch), for the evidence the API reports."""
        return epoch_validator_address(self.genesis, epoch, index)

    def validators_document(self) -> dict[str, Any]:
        """GET /v1/validators: what a subscriber needs to check certificates (it
        should still pin the set from a genesis file it trusts), every epoch's
        set and domain when the genesis rotates it, and the network's threshold
        encryption key if it has one (what a client seals encrypted
        transactions to). Built by `sequencer_net.api.validators`."""
        return validators_document(self.genesis, self.domain)

    def close(self) -> None:
        self.store.close()
        self.state_store.close()
