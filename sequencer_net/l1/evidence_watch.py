"""The evidence watcher: equivocation proof to Commitments, without anyone asking.

BFT safety holds while at most f validators lie; beyond that two conflicting
blocks can both be finalized, and the contract freezes once anyone proves that
a validator signed two conflicting votes (docs/l1.md, "Accountable safety",
"Watchers"). Every node with `[l1] rpc_url` and a key runs one; `seqnet watch`
runs one against node APIs. Follow one round (`EvidenceWatcher.watch_round`,
every `[l1] poll_ms`):

    read the L1 head, Commitments' domainSeparator (once) and frozen()
    submit_stored       every evidence record of the source, of every epoch,
                        that the contract takes as evidence (FINALIZE +
                        FINALIZE in one view, FINALIZE + NULLIFY in one view),
                        not yet settled here: epochOf(disputed height), the
                        signer in the separator of the record's epoch and
                        offenceOfInEpoch(validator, epoch) first (proven ->
                        settled, no gas), else
                          the height in the record's epoch: submit_evidence
                            (submitEvidence, which judges it against that
                            epoch's set)
                          the height above it (the epoch's tail, whose votes
                            finalize its last block): submit_evidence_of_epoch
                            (submitEvidenceOfEpoch with the epoch's installed
                            set; it disputes the epoch's last height)
                        then remember it (evidence.json)
    check_reorg + scan_confirmed (l1/scan.py) over Commitments' Committed events:
      compare           the source's block at toHeight against the posted
                        blockHash; a height the source has not reached yet is
                        kept pending and compared in a later round
      on a conflict     event=l1_fork_detected; read the posting transaction's
                        calldata (post(header, signatures)), check the header
                        hashes to the posted blockHash, recover its signers
                        in the separator of the epoch holding its height,
                        gather this side's certificates of the posted view
                        and of its own block at that height, and for every
                        validator that signed two conflicting votes in one
                        view build the pair the contract takes
                        (conflict_evidence), lowest disputed height first,
                        then submit it as above; a conflict this side cannot
                        prove yet stays pending and is compared every round

The source is what the L1 is compared with: the node's own store
(`StoreSource`), or node APIs (`sequencer_net.l1.node_api.NodeApiSource`).
Every L1 answer is checked before use; an L1 or source failure is logged and
retried next round, and never stops the node.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import msgspec
import trio
from eth_account import Account
from web3 import Web3

from consensus.crypto import Address, InvalidSignature, PrivateKey, keccak256, recover_address
from consensus.encoding import vote_digest
from consensus.epochs import epoch_domain_separator
from consensus.messages import Certificate, Vote, VoteKind
from consensus.types import Digest, Height, View
from sequencer_net.home.keystore import write_private_file
from sequencer_net.l1.evidence import (
    EvidenceRejected,
    NotEquivocation,
    ProvenEquivocation,
    disputed_height,
    evidence_epoch,
    submit_evidence,
    submit_evidence_of_epoch,
)
from sequencer_net.l1.header import L1Header
from sequencer_net.l1.link import (
    L1AnswerInvalid,
    L1Link,
    L1Unavailable,
    checked_bytes,
    checked_uint,
    run_rounds,
)
from sequencer_net.l1.scan import (
    ScanPosition,
    check_count,
    check_reorg,
    end_hash,
    log_position,
    scan_confirmed,
)
from sequencer_net.l1.status import L1Status
from sequencer_net.logging_limits import RepeatedProblem
from sequencer_net.storage.node_store import MAX_STORED_EVIDENCE, EvidenceRecord, NodeStore

log = logging.getLogger("seqnet.l1.evidence")

T = TypeVar("T")

STATE_FILE: Final = "evidence.json"
MAX_STATE_BYTES: Final = 4 << 20
MAX_SETTLED: Final = 2 * MAX_STORED_EVIDENCE
"""Evidence pairs remembered as settled (submitted, proven by someone else, or
refused for good); the oldest is forgotten beyond this (offenceOfInEpoch
still stops a resend)."""
MAX_PENDING: Final = 256
"""Postings above the source's height, kept to compare once it gets there."""
SIGNATURE_BYTES: Final = 65
MAX_POSTING_CALLDATA: Final = 4 + 32 * 9 + 64 + 1_024 * SIGNATURE_BYTES + 64
"""post(header, signatures) with a signature from each of at most 1,024 validators."""
ERROR_LOG_INTERVAL_S: Final = 60.0


class SourceUnavailable(RuntimeError):
    """The node (store or API) compared with the L1 did not answer usefully."""


class PostingUnreadable(ValueError):
    """A Committed event whose transaction is not a direct `post` call this code can read."""


# ---- what the L1 is compared with -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finalized:
    """One node's block at a height and the FINALIZE certificates it holds for it
    (its own, and the one it committed it under, which may be a descendant's)."""

    digest: bytes
    certificates: tuple[Certificate, ...]


@dataclass(frozen=True, slots=True)
class EpochEvidence:
    """An evidence record and the epoch whose consensus instance holds it: its votes
    are signed in that epoch's separator, its offender is an index in that epoch's set."""

    epoch: int
    record: EvidenceRecord


class ChainSource(Protocol):
    async def evidence(self) -> list[EpochEvidence]:
        """The source's evidence of every epoch."""
        ...

    async def height(self) -> int: ...

    async def view(self) -> int:
        """The highest consensus view the source has reached."""
        ...

    async def finalized(self, height: int) -> list[Finalized]:
        """Each source node's block at `height` (empty if none has it)."""
        ...

    async def view_certificates(self, view: int) -> list[Certificate]:
        """The certificates of `view` the source holds (any kind)."""
        ...


class StoreSource:
    """A node's own store: its persisted evidence, blocks and certificates."""

    def __init__(self, store: NodeStore) -> None:
        self.store = store

    async def evidence(self) -> list[EpochEvidence]:
        return [
            EpochEvidence(epoch, record)
            for epoch, record in self.store.load_every_epoch_evidence(limit=MAX_STORED_EVIDENCE)
        ]

    async def height(self) -> int:
        return self.store.tip()[0]

    async def finalized(self, height: int) -> list[Finalized]:
        block = self.store.block_at(height)
        if block is None:
            return []
        digest = block.digest()
        certs: list[Certificate] = []
        for cert in (
            self.store.own_finalization(height, digest),
            self.store.finalization_at(height),
        ):
            if cert is not None and cert.kind == VoteKind.FINALIZE and cert not in certs:
                certs.append(cert)
        return [Finalized(digest, tuple(certs))]

    async def view(self) -> int:
        return self.store.tip()[2]

    async def view_certificates(self, view: int) -> list[Certificate]:
        return self.store.view_certificates(view)


# ---- pure rules ---------------------------------------------------------------------------


def is_l1_evidence(record: EvidenceRecord) -> bool:
    """Whether the contract takes the pair (see sequencer_net.l1.evidence)."""
    try:
        disputed_height(record.first, record.second)
    except NotEquivocation:
        return False
    return True


def evidence_key(record: EvidenceRecord, epoch: int = 0) -> bytes:
    """One pair of signed votes as evidence of `epoch`, whoever holds it. The epoch
    is part of it for a later epoch: a source that names the wrong epoch for a
    pair settles only its own claim, never the pair named rightly."""
    votes = record.first.signature + record.second.signature
    return keccak256(votes if epoch == 0 else epoch.to_bytes(8, "big") + votes)


def vote_signer(separator: bytes, vote: Vote) -> Address | None:
    digest = vote_digest(
        separator, vote.kind, View(vote.view), Height(vote.height), Digest(vote.block)
    )
    try:
        return recover_address(digest, vote.signature)
    except InvalidSignature:
        return None


@dataclass(frozen=True, slots=True)
class Posting:
    """A header Commitments accepted and the packed signatures it was posted with."""

    header: L1Header
    signatures: bytes

    def votes(self, separator: bytes) -> dict[Address, Vote]:
        """The FINALIZE vote of each signer, by recovered address."""
        block = self.header.block_hash()
        digest = vote_digest(
            separator, VoteKind.FINALIZE, View(self.header.view), Height(self.header.height), block
        )
        out: dict[Address, Vote] = {}
        for start in range(0, len(self.signatures), SIGNATURE_BYTES):
            signature = self.signatures[start : start + SIGNATURE_BYTES]
            try:
                signer = recover_address(digest, signature)
            except InvalidSignature:
                continue
            out[signer] = Vote(
                kind=VoteKind.FINALIZE,
                view=self.header.view,
                height=self.header.height,
                block=block,
                signer=0,
                signature=signature,
            )
        return out


def certificate_votes(separator: bytes, cert: Certificate) -> dict[Address, Vote]:
    """The certificate's votes, by recovered signer (unrecoverable ones dropped)."""
    out: dict[Address, Vote] = {}
    for index, signature in zip(cert.signers, cert.signatures, strict=True):
        vote = Vote(
            kind=cert.kind,
            view=cert.view,
            height=cert.height,
            block=cert.block,
            signer=index,
            signature=signature,
        )
        signer = vote_signer(separator, vote)
        if signer is not None:
            out[signer] = vote
    return out


def conflict_evidence(
    separator: bytes, posting: Posting, certificates: list[Certificate], height: int
) -> list[EvidenceRecord]:
    """The pairs the contract takes from a posted header and this side's certificates,
    one per validator (its lowest disputed height), lowest height first.

    Every vote in them is grouped by (signer, view): a signer that cast two
    FINALIZE votes for different blocks in one view (at any heights), or a
    FINALIZE and a NULLIFY in one view, signed what no honest validator signs.
    Which certificates to pass: this side's FINALIZE of its own block at the
    posted height (same view: a double finalize), and every certificate this
    side holds of the posted view (a FINALIZE of another block, at any height,
    or the view's nullification) and of its own block's view. So a fork is
    proven at the posting's height or below even when the two sides finalized
    that height in different views, as soon as this side has certified the
    posted view.
    """
    index_of: dict[Address, int] = {}
    by_signer: dict[tuple[Address, int], list[Vote]] = {}

    def add(signer: Address, vote: Vote) -> None:
        votes = by_signer.setdefault((signer, vote.view), [])
        if all((v.kind, v.height, v.block) != (vote.kind, vote.height, vote.block) for v in votes):
            votes.append(vote)

    for cert in certificates:
        if cert.kind not in (VoteKind.FINALIZE, VoteKind.NULLIFY):
            continue
        for signer, vote in certificate_votes(separator, cert).items():
            index_of[signer] = vote.signer
            add(signer, vote)
    for signer, vote in posting.votes(separator).items():
        # A posted vote names no validator index: take the one this side's certificates give.
        add(signer, msgspec.structs.replace(vote, signer=index_of.get(signer, 0)))

    best: dict[Address, tuple[int, EvidenceRecord]] = {}
    for (signer, _view), votes in sorted(by_signer.items()):
        for i, first in enumerate(votes):
            for second in votes[i + 1 :]:
                record = EvidenceRecord(
                    offender=index_of.get(signer, first.signer),
                    first=first,
                    second=second,
                    reason=f"finalized conflicting blocks at height {height} (L1 fork)",
                )
                try:
                    disputed = disputed_height(first, second)
                except NotEquivocation:
                    continue
                if signer not in best or disputed < best[signer][0]:
                    best[signer] = (disputed, record)
    return [record for _, record in sorted(best.values(), key=lambda found: found[0])]


def decode_posting(commitments: Any, calldata: bytes) -> Posting:
    """The header and signatures of a `post` call (PostingUnreadable otherwise)."""
    if not 4 <= len(calldata) <= MAX_POSTING_CALLDATA:
        raise PostingUnreadable(f"calldata of {len(calldata)} bytes is no post call")
    try:
        function, args = commitments.decode_function_input(calldata)
    except Exception as exc:  # web3 raises several types for undecodable input
        raise PostingUnreadable(f"calldata does not decode: {str(exc)[:120]}") from exc
    if function.fn_name != "post":
        raise PostingUnreadable(f"the transaction calls {function.fn_name}, not post")
    h, signatures = args["h"], args["signatures"]
    fields = h.values() if isinstance(h, dict) else h
    try:
        view, height, parent, proposer, timestamp, state_height, root, batches, ns = fields
        header = L1Header(
            view=checked_uint(view, "viewNumber"),
            height=checked_uint(height, "height"),
            parent=checked_bytes(parent, "parent", 32),
            proposer=checked_uint(proposer, "proposer", 2**32),
            timestamp_ms=checked_uint(timestamp, "timestamp"),
            state_height=checked_uint(state_height, "stateHeight"),
            state_root=checked_bytes(root, "stateRoot", 32),
            batches_hash=checked_bytes(batches, "batchesHash", 32),
            namespace_root=checked_bytes(ns, "namespaceRoot", 32),
        )
        packed = checked_bytes(signatures, "signatures")
    except (ValueError, L1AnswerInvalid) as exc:
        raise PostingUnreadable(f"post arguments: {exc}") from exc
    if len(packed) % SIGNATURE_BYTES:
        raise PostingUnreadable(f"signatures of {len(packed)} bytes")
    return Posting(header=header, signatures=packed)


# ---- persisted state ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommittedEvent:
    block: int
    log_index: int
    height: int
    """toHeight: the posted header's height."""
    block_hash: bytes
    tx_hash: bytes


class StateInvalid(ValueError):
    """The state file is not one this watcher wrote."""


@dataclass
class WatchState(ScanPosition):
    settled: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    """Evidence pairs (evidence_key) submitted, already proven, or refused for good."""
    pending: list[CommittedEvent] = field(default_factory=list)
    """Postings above the source's height at the time they were scanned."""

    def settle(self, key: bytes) -> None:
        self.settled[key] = None
        while len(self.settled) > MAX_SETTLED:
            self.settled.popitem(last=False)

    def add_pending(self, event: CommittedEvent) -> None:
        if event not in self.pending:
            self.pending.append(event)
        del self.pending[:-MAX_PENDING]

    def encode(self) -> bytes:
        return json.dumps(
            {
                **self.position_json(),
                "settled": ["0x" + key.hex() for key in self.settled],
                "pending": [
                    [
                        e.block,
                        e.log_index,
                        e.height,
                        "0x" + e.block_hash.hex(),
                        "0x" + e.tx_hash.hex(),
                    ]
                    for e in self.pending
                ],
            }
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> WatchState:
        if len(data) > MAX_STATE_BYTES:
            raise StateInvalid("state file too large")
        try:
            raw = json.loads(data)
            block, hashes = ScanPosition.position_of(raw)
            settled = [_hex32(k) for k in raw["settled"]]
            pending = [
                CommittedEvent(_uint(b), _uint(i), _uint(h), _hex32(d), _hex32(t))
                for b, i, h, d, t in raw["pending"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise StateInvalid(f"malformed state: {exc}") from exc
        if len(settled) > MAX_SETTLED or len(pending) > MAX_PENDING:
            raise StateInvalid("state lists exceed their bounds")
        return cls(
            block=block,
            hashes=hashes,
            settled=OrderedDict.fromkeys(settled),
            pending=pending,
        )


def _uint(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise ValueError("expected an unsigned integer")
    return value


def _hex32(value: object) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise ValueError("expected a 32-byte 0x hex string")
    return bytes.fromhex(value[2:])


def load_l1_key(path: Path) -> PrivateKey:
    """The L1 private key in `path` (0x hex, one line); ValueError saying what is wrong."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the L1 key file ({exc.strerror})") from None
    try:
        return PrivateKey(bytes.fromhex(text.removeprefix("0x")))
    except ValueError:
        raise ValueError(f"{path}: not an L1 private key (expected 64 hex digits)") from None


# ---- the task -----------------------------------------------------------------------------


class EvidenceWatcher:
    def __init__(
        self,
        *,
        link: L1Link,
        source: ChainSource,
        key: PrivateKey,
        data_dir: Path | None,
        status: L1Status,
        confirmations: int,
        poll_s: float,
        sends: trio.Lock | None = None,
    ) -> None:
        """`sends` is held while a submission is built, sent and mined: share the
        commitment poster's when both send from one L1 account (the validator
        key), so their worker threads never read the same pending nonce."""
        self.link = link
        self.sends = sends if sends is not None else trio.Lock()
        self.commitments = L1Link.require(link.commitments, "commitments")
        self.source = source
        self.account = Account.from_key(key.secret)
        self.status = status
        self.confirmations = confirmations
        self.poll_s = poll_s
        self.path: Path | None = None
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.path = data_dir / STATE_FILE
        self.state = self._load()
        self._separator: bytes | None = None
        self._forks_seen: set[bytes] = set()
        self._problem = RepeatedProblem(log, "l1_evidence_problem", ERROR_LOG_INTERVAL_S)
        self._caught_up_at: int | None = None
        """The L1 head of the last round that scanned every posting (None: none yet)."""

    def _load(self) -> WatchState:
        if self.path is None:
            return WatchState()
        try:
            return WatchState.decode(self.path.read_bytes())
        except FileNotFoundError:
            return WatchState()
        except StateInvalid as exc:
            # Safe to start over: offenceOfInEpoch stops a second submission.
            log.warning("event=l1_evidence_state_unreadable path=%s error=%s", self.path, exc)
            return WatchState()

    def _save(self) -> None:
        if self.path is not None:
            write_private_file(self.path, self.state.encode())

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await run_rounds(self.watch_round, self._error, self.poll_s)

    async def _l1(self, call: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(call)

    async def watch_round(self) -> bool:
        """One round; True when it scanned every confirmed posting. Raises
        L1Unavailable or SourceUnavailable (the round is retried)."""
        try:
            return await self._round()
        except SourceUnavailable as exc:
            raise L1Unavailable(f"source: {exc}") from exc

    async def _round(self) -> bool:
        head = await self._l1(self.link.head)
        self.status.observe_head(head)
        separator = await self._domain_separator()
        unchanged = head == self._caught_up_at
        if not unchanged:
            await self._read_frozen()
        await self.submit_stored(separator)
        await self._recheck_pending(separator)
        if unchanged:
            # No new L1 block since a round that scanned every posting: the
            # contract and its events are as read then.
            return True
        await check_reorg(self.link, self.state, self._save)
        done = await scan_confirmed(
            link=self.link,
            position=self.state,
            safe=head - self.confirmations,
            read_range=self._read_committed,
            handle=lambda event: self.compare(event, separator),
            save=self._save,
        )
        self._caught_up_at = head if done else None
        return done

    async def _domain_separator(self) -> bytes:
        if self._separator is None:
            call = self.commitments.functions.domainSeparator().call
            self._separator = checked_bytes(
                await self._l1(lambda: self.link.guarded(call)), "domainSeparator", 32
            )
        return self._separator

    async def _read_frozen(self) -> None:
        frozen = await self._l1(lambda: self.link.guarded(self.commitments.functions.frozen().call))
        if not isinstance(frozen, bool):
            raise L1AnswerInvalid(f"frozen(): expected a bool, got {frozen!r:.40}")
        self.status.frozen = frozen

    # ---- 1: evidence the source holds -------------------------------------------------------

    async def submit_stored(self, separator: bytes) -> int:
        """Submit the source's evidence the contract takes; the number submitted."""
        submitted = 0
        for found in await self.source.evidence():
            record = found.record
            settled = evidence_key(record, found.epoch) in self.state.settled
            if settled or not is_l1_evidence(record):
                continue
            submitted += await self.submit(record, separator, epoch=found.epoch)
        return submitted

    async def submit(self, record: EvidenceRecord, separator: bytes, epoch: int) -> int:
        """Submit one pair of `epoch` unless the contract already holds the offence;
        1 if sent. `separator` is the chain's (epoch 0's); the pair is checked in
        `epoch`'s. A pair above the epoch's heights is of its tail and goes to
        submitEvidenceOfEpoch; any other to submitEvidence."""
        key = evidence_key(record, epoch)
        if key in self.state.settled:
            return 0
        height = disputed_height(record.first, record.second)
        holder = await self._epoch_of(height)
        if holder is None:
            self._settle(key)  # below the current era: the contract refuses it too
            self._error(f"evidence at height {height}: before this era")
            return 0
        if holder < epoch:
            # Below the epoch's first height, or an epoch the contract does not
            # schedule: no entry point judges it in that epoch.
            self._settle(key)
            self._error(
                f"evidence of epoch {epoch} at height {height}: the L1 holds it in {holder}"
            )
            return 0
        tail = holder > epoch
        epoch_separator = epoch_domain_separator(separator, epoch)
        signer = vote_signer(epoch_separator, record.first)
        if signer is None or vote_signer(epoch_separator, record.second) != signer:
            self._settle(key)  # no signer in this epoch's domain: the contract refuses it too
            return 0
        # A tail pair disputes the epoch's last height, below `height`: a proven
        # offence of the epoch is never above it.
        proven, proven_height = await self._offence_of(signer, epoch)
        if proven and proven_height <= height:
            self._settle(key)
            return 0
        async with self.sends:  # no other sender of this account between nonce and send
            result = await self._l1(
                lambda: self.link.guarded(lambda: self._send(record, epoch, tail))
            )
        if isinstance(result, EvidenceRejected):
            if result.reason == "EpochNotInstalled":
                # The poster installs a scheduled epoch's set before its first post: retried.
                self._error(f"evidence of epoch {epoch}: its set is not installed yet")
                return 0
            self._settle(key)
            if result.reason != "EquivocationAlreadyProven":
                self._error(f"evidence against 0x{signer.hex()} refused: {result.reason}")
            return 0
        self._settle(key)
        self.status.evidence_submitted += 1
        self.status.frozen = True
        log.warning(
            "event=evidence_submitted validator=0x%s height=%d epoch=%d tail=%s view=%d "
            "kinds=%s/%s l1_block=%d froze=%s",
            signer.hex(),
            result.height,
            result.epoch,
            tail,
            record.first.view,
            VoteKind(record.first.kind).name,
            VoteKind(record.second.kind).name,
            result.l1_block,
            result.froze,
        )
        return 1

    def _send(
        self, record: EvidenceRecord, epoch: int, tail: bool
    ) -> ProvenEquivocation | EvidenceRejected:
        """Blocking: the pair through submitEvidence, or, for an epoch's tail,
        submitEvidenceOfEpoch; a refusal is returned (L1Link.guarded would turn
        a raised one into L1Unavailable, and the pair would be retried forever)."""
        w3, account, commitments = self.link.w3, self.account, self.commitments
        try:
            if tail:
                return submit_evidence_of_epoch(w3, account, commitments, epoch, record)
            return submit_evidence(w3, account, commitments, record)
        except EvidenceRejected as exc:
            return exc

    async def _epoch_of(self, height: int) -> int | None:
        return await self._l1(
            lambda: self.link.guarded(lambda: evidence_epoch(self.commitments, height))
        )

    def _settle(self, key: bytes) -> None:
        self.state.settle(key)
        self._save()

    async def _offence_of(self, signer: bytes, epoch: int) -> tuple[bool, int]:
        call = self.commitments.functions.offenceOfInEpoch(
            Web3.to_checksum_address(signer), epoch
        ).call
        answer = await self._l1(lambda: self.link.guarded(call))
        if not isinstance(answer, list | tuple) or len(answer) != 2:
            raise L1AnswerInvalid(f"offenceOfInEpoch: expected (bool, uint64), got {answer!r:.60}")
        proven, height = answer
        if not isinstance(proven, bool):
            raise L1AnswerInvalid("offenceOfInEpoch: proven is not a bool")
        return proven, checked_uint(height, "offenceOfInEpoch height")

    # ---- 2: postings against the source's blocks --------------------------------------------

    def _read_committed(self, start: int, end: int) -> tuple[list[CommittedEvent], bytes]:
        """Blocking: the range's Committed events in L1 order, and its last block's hash."""
        committed = self.commitments.events.Committed()
        entries = self.link.guarded(lambda: committed.get_logs(from_block=start, to_block=end))
        check_count(entries, start, end)
        events = []
        for entry in entries:
            block, index = log_position(entry, start, end)
            events.append(
                CommittedEvent(
                    block=block,
                    log_index=index,
                    height=checked_uint(entry["args"]["toHeight"], "toHeight"),
                    block_hash=checked_bytes(entry["args"]["blockHash"], "blockHash", 32),
                    tx_hash=checked_bytes(entry.get("transactionHash"), "transactionHash", 32),
                )
            )
        last_hash = end_hash(self.link, end)
        events.sort(key=lambda e: (e.block, e.log_index))
        return events, last_hash

    async def _recheck_pending(self, separator: bytes) -> None:
        height = await self.source.height()
        ready = [e for e in self.state.pending if e.height <= height]
        for event in ready:
            self.state.pending.remove(event)
            await self.compare(event, separator)
        if ready:
            self._save()

    async def compare(self, event: CommittedEvent, separator: bytes) -> bool:
        """Compare one posting with the source's block at its height."""
        if event.height > await self.source.height():
            self.state.add_pending(event)
            return True
        finalized = await self.source.finalized(event.height)
        conflicting = [f for f in finalized if f.digest != event.block_hash]
        if not conflicting:
            return True
        self.status.fork_height = (
            event.height
            if self.status.fork_height is None
            else min(self.status.fork_height, event.height)
        )
        if event.block_hash not in self._forks_seen:
            self._forks_seen.add(event.block_hash)
            log.critical(
                "event=l1_fork_detected height=%d posted=%s ours=%s l1_block=%d tx=%s",
                event.height,
                event.block_hash.hex()[:16],
                conflicting[0].digest.hex()[:16],
                event.block,
                event.tx_hash.hex()[:16],
            )
        try:
            posting = await self._l1(lambda: self._read_posting(event))
        except PostingUnreadable as exc:
            self._error(f"fork at height {event.height}: posting unreadable: {exc}")
            return True
        posted_view = posting.header.view
        certificates = [cert for side in conflicting for cert in side.certificates]
        for view in sorted({posted_view} | {cert.view for cert in certificates}):
            certificates += await self.source.view_certificates(view)
        # The posting was signed in the separator of its height's epoch, and so were this
        # side's certificates at that height.
        epoch = await self._epoch_of(event.height)
        signed_in = separator if epoch is None else epoch_domain_separator(separator, epoch)
        records = conflict_evidence(signed_in, posting, certificates, event.height)
        if not records:
            # Compared again every round: what this side certifies in the posted view
            # (another block, or a nullification), or a late finalization it receives,
            # will be the proof.
            self.state.add_pending(event)
            if await self.source.view() > posted_view:
                self._error(
                    f"fork at height {event.height}: no validator signed conflicting votes "
                    f"in view {posted_view} that this side's certificates show yet"
                )
            return True
        for record in records:
            await self.submit(record, separator, 0 if epoch is None else epoch)
        return True

    def _read_posting(self, event: CommittedEvent) -> Posting:
        """Blocking: the posting transaction's header and signatures, checked
        against the event (PostingUnreadable if it is not a direct post call)."""

        def read() -> Any:
            return self.link.w3.eth.get_transaction(event.tx_hash)  # type: ignore[arg-type]

        tx = self.link.guarded(read)
        to = tx.get("to")
        if not isinstance(to, str) or to.lower() != self.commitments.address.lower():
            raise PostingUnreadable(f"transaction {event.tx_hash.hex()[:16]} is not a direct call")
        calldata = tx.get("input")
        if not isinstance(calldata, bytes | bytearray):
            raise L1AnswerInvalid("transaction input is not bytes")
        posting = decode_posting(self.commitments, bytes(calldata))
        if posting.header.height != event.height or posting.header.block_hash() != event.block_hash:
            raise PostingUnreadable("the transaction's header is not the posted block")
        return posting

    def _error(self, message: str) -> None:
        self.status.last_error = message
        self._problem.report(message)
