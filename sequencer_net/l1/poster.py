"""The commitment poster: each validator posts finalized blocks to Commitments.

Follow one round (`CommitmentPoster.post_round`, every `[l1] poll_ms`):

    read the L1 head and the contract's tip (latestHeight, lastPostBlock, ...:
                        one `latestPost()` call, so they are of one post)
    settle_pending      a posting sent earlier: landed (count it, clear the
                        journal), or its nonce still unused (broadcast the same
                        raw transaction again and wait)
    find_postable       the highest committed height above latestHeight whose
                        block has its own finalization certificate
    is_turn             among the validators of that block's epoch:
                        (l1_head // takeover_blocks) % n == my index there, or
                        no posting landed for 2 * takeover_blocks L1 blocks
    build_posting       the block's L1Header and a bare quorum of the
                        certificate's signatures (by the block's epoch's set,
                        which signed in that epoch's domain), ordered by
                        signer address
    simulate            eth_call; StaleHeight means another poster won the race
    sign -> persist -> send
                        a locally signed EIP-1559 transaction at the pending
                        nonce; the journal (nonce, raw bytes, hash, height) is
                        fsynced before the transaction leaves

Why this never double-posts or skips (docs/l1.md, "Posting"): the contract
accepts a header only above `latestHeight` and one posting covers every height
from `latestHeight + 1` to its own, so a second posting of a height reverts and
no height can fall between two postings. The poster therefore trusts no receipt
for what to post next: it re-reads `latestHeight` every round, and a posting an
L1 reorg removed is simply posted again.

A block is posted with the set of the epoch holding its height (the genesis
schedule, which the contract was deployed with: docs/l1.md, "Validator-set
epochs"); the contract checks the signatures in that epoch's domain.

Every L1 call blocks and runs in a worker thread; the store is read on the
event loop.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeVar

import trio
from eth_account import Account
from web3.exceptions import ContractLogicError
from web3.types import Nonce

from consensus.crypto import PrivateKey
from consensus.epochs import Epoch, EpochSchedule
from consensus.messages import Block, Certificate, VoteKind
from consensus.payload import MalformedPayload
from consensus.types import Height, ValidatorIndex, ValidatorSet
from sequencer_net.home.keystore import write_private_file
from sequencer_net.l1.artifacts import UnknownCustomError, custom_error_name
from sequencer_net.l1.evidence import evidence_epoch
from sequencer_net.l1.header import L1Header
from sequencer_net.l1.link import CommitmentsTip, L1Link, run_rounds
from sequencer_net.l1.status import L1Status
from sequencer_net.logging_limits import RepeatedProblem
from sequencer_net.storage.node_store import NodeStore

log = logging.getLogger("seqnet.l1.poster")

T = TypeVar("T")

MAX_POSTING_WALK: Final = 1_024
"""Committed heights looked at, from the tip down, for one with its own
finalization certificate. A block committed under a descendant's certificate
usually gets its own soon after; past this many, the round waits."""
JOURNAL_FILE: Final = "posting.json"
MAX_JOURNAL_BYTES: Final = 64 * 1024
ERROR_LOG_INTERVAL_S: Final = 60.0
"""The same L1 problem is logged at most once a minute."""


class RoundResult(Enum):
    POSTED = "posted"
    PENDING = "pending"
    NOT_MY_TURN = "not_my_turn"
    TOO_SOON = "too_soon"
    NOTHING_TO_POST = "nothing_to_post"
    RACE_LOST = "race_lost"
    REFUSED = "refused"


# ---- pure rules ---------------------------------------------------------------------------


def is_turn(
    l1_head: int, last_post_block: int, takeover_blocks: int, validators: int, my_index: int | None
) -> bool:
    """Turns rotate every `takeover_blocks` L1 blocks among `validators` (the
    posted block's epoch's set; `my_index` is None outside it); anyone may post
    once no posting landed for twice that."""
    if my_index is not None and (l1_head // takeover_blocks) % validators == my_index:
        return True
    return l1_head - last_post_block >= 2 * takeover_blocks


def find_postable(
    store: NodeStore, above: int, walk: int = MAX_POSTING_WALK
) -> tuple[Block, Certificate] | None:
    """The highest committed block above height `above` that has its own
    finalization certificate, with that certificate (None if none within
    `walk` heights of the tip)."""
    tip = store.tip()[0]
    height = tip
    while height > above and tip - height < walk:
        block = store.block_at(height)
        if block is not None:
            cert = store.own_finalization(height, block.digest())
            if cert is not None and cert.kind == VoteKind.FINALIZE:
                return block, cert
        height -= 1
    return None


def quorum_signatures(cert: Certificate, validators: ValidatorSet) -> bytes:
    """A bare quorum of the certificate's signatures, heaviest signers first
    (fewer signatures, less gas), concatenated in ascending signer address
    order as Commitments.post requires."""
    signed = sorted(
        zip(cert.signers, cert.signatures, strict=True),
        key=lambda pair: (-validators.validators[pair[0]].weight, pair[0]),
    )
    chosen: list[tuple[bytes, bytes]] = []
    power = 0
    for index, signature in signed:
        if power >= validators.quorum_weight:
            break
        chosen.append((validators.address(ValidatorIndex(index)), signature))
        power += validators.validators[index].weight
    if power < validators.quorum_weight:
        raise ValueError("the certificate's signers hold no quorum")
    return b"".join(signature for _, signature in sorted(chosen))


def build_posting(
    block: Block, cert: Certificate, validators: ValidatorSet
) -> tuple[L1Header, bytes]:
    """The header of `block` and the signatures of its finalization `cert`."""
    if cert.height != block.height or cert.block != block.digest():
        raise ValueError("the certificate is not the block's own")
    if any(not validators.contains(i) for i in cert.signers):
        raise ValueError("a signer index outside the validator set")
    header = L1Header.of_block(block)
    if header.block_hash() != block.digest():
        raise ValueError("the block's digest is not the hash of its L1 header")
    return header, quorum_signatures(cert, validators)


# ---- the journal: persist, then send ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingPosting:
    nonce: int
    raw: bytes
    tx_hash: bytes
    height: int

    def encode(self) -> bytes:
        return json.dumps(
            {
                "nonce": self.nonce,
                "raw": "0x" + self.raw.hex(),
                "hash": "0x" + self.tx_hash.hex(),
                "height": self.height,
            }
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> PendingPosting:
        """Raises ValueError on anything but a well-formed record."""
        if len(data) > MAX_JOURNAL_BYTES:
            raise ValueError("posting journal too large")
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("posting journal is not an object")
        nonce, height = raw.get("nonce"), raw.get("height")
        if not isinstance(nonce, int) or not isinstance(height, int) or nonce < 0 or height < 1:
            raise ValueError("posting journal: bad nonce or height")
        tx, tx_hash = _hex(raw.get("raw")), _hex(raw.get("hash"))
        if not tx or len(tx_hash) != 32:
            raise ValueError("posting journal: bad transaction or hash")
        return cls(nonce=nonce, raw=tx, tx_hash=tx_hash, height=height)


def _hex(value: object) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError("expected 0x-prefixed hex")
    return bytes.fromhex(value[2:])


class PostingJournal:
    """The posting sent and not yet seen landed: one small file, written
    atomically and fsynced before the transaction is broadcast."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / JOURNAL_FILE
        self.pending = self._load()

    def _load(self) -> PendingPosting | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return PendingPosting.decode(data)
        except ValueError as exc:
            # The contract's rules make a lost record harmless: at worst one
            # posting reverts for a height already covered.
            log.warning("event=posting_journal_unreadable path=%s error=%s", self.path, exc)
            return None

    def save(self, posting: PendingPosting) -> None:
        write_private_file(self.path, posting.encode())
        self.pending = posting

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.pending = None


def single_epoch(validators: ValidatorSet) -> EpochSchedule:
    """The schedule of a chain whose set never changes."""
    return EpochSchedule([Epoch(0, Height(1), validators)])


# ---- the task ---------------------------------------------------------------------------


class CommitmentPoster:
    def __init__(
        self,
        *,
        link: L1Link,
        store: NodeStore,
        validators: ValidatorSet,
        my_index: int | None,
        key: PrivateKey,
        data_dir: Path,
        status: L1Status,
        post_interval_s: float,
        takeover_blocks: int,
        poll_s: float,
        clock: Callable[[], float] = time.monotonic,
        schedule: EpochSchedule | None = None,
        sends: trio.Lock | None = None,
    ) -> None:
        """`validators` and `my_index` are epoch 0's (None: not a member of it);
        `schedule` (the genesis's, `Genesis.schedule()`) names the later epochs'
        sets, and without it the set never changes. Outside epoch 0 this
        validator's turn is its index in the posted block's epoch's set (none
        outside that set). `sends` is held from reading the account's pending
        nonce until the posting is sent: every sender from the same L1 account
        (the evidence watcher on the validator key) must share it, or two
        worker threads read the same nonce and one transaction is refused."""
        self.link = link
        self.sends = sends if sends is not None else trio.Lock()
        self.commitments = L1Link.require(link.commitments, "commitments")
        self.store = store
        self.validators = validators
        self.my_index = my_index
        self.schedule = schedule if schedule is not None else single_epoch(validators)
        if self.schedule.epoch(0).validators.validators != validators.validators:
            raise ValueError("the schedule's epoch 0 is not the poster's validator set")
        self.account = Account.from_key(key.secret)
        self.account_address = key.address
        self.journal = PostingJournal(data_dir)
        self.status = status
        self.post_interval_s = post_interval_s
        self.takeover_blocks = takeover_blocks
        self.poll_s = poll_s
        self.clock = clock
        self._last_sent: float | None = None
        self._problem = RepeatedProblem(log, "l1_posting_problem", ERROR_LOG_INTERVAL_S)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await run_rounds(self.post_round, self._error, self.poll_s)

    async def _l1(self, call: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(call)

    async def post_round(self) -> RoundResult:
        """One round: settle an earlier posting, then post if it is our turn."""
        head = await self._l1(self.link.head)
        tip = await self._l1(self.link.commitments_tip)
        self._observe(head, tip)
        if self.journal.pending is not None and not await self.settle_pending():
            return RoundResult.PENDING
        found = find_postable(self.store, tip.latest_height)
        if found is None:
            return RoundResult.NOTHING_TO_POST
        block, cert = found
        epoch = self.schedule.epoch_of(block.height)
        if not is_turn(
            head,
            tip.last_post_block,
            self.takeover_blocks,
            len(epoch.validators),
            self._my_index_in(epoch),
        ):
            return RoundResult.NOT_MY_TURN
        if self._last_sent is not None and self.clock() - self._last_sent < self.post_interval_s:
            return RoundResult.TOO_SOON
        if len(self.schedule) > 1 and not await self._contract_knows(epoch, block.height):
            return RoundResult.REFUSED
        try:
            header, signatures = build_posting(block, cert, epoch.validators)
        except (ValueError, MalformedPayload) as exc:
            self._error(f"block {block.height} cannot be posted: {exc}")
            return RoundResult.REFUSED
        if header.state_height < tip.latest_state_height:
            self._error(
                f"block {block.height} vouches for state height {header.state_height}, "
                f"below the posted {tip.latest_state_height}"
            )
            return RoundResult.REFUSED
        call = self.commitments.functions.post(header.as_abi(), signatures)
        sender = self.account.address
        try:
            # On the pending block, where the posting lands: Commitments takes one post per
            # L1 block, so the latest block may hold one already.
            await self._l1(
                lambda: L1Link.guarded(
                    lambda: call.call({"from": sender}, block_identifier="pending")
                )
            )
        except ContractLogicError as exc:
            name = _error_name(exc)
            if name in ("StaleHeight", "AlreadyPostedThisBlock"):
                log.debug("event=posting_race_lost height=%d", header.height)
                return RoundResult.RACE_LOST
            self._error(f"Commitments refuses block {header.height}: {name}")
            return RoundResult.REFUSED
        async with self.sends:  # nonce read to send: no other sender of this account between
            posting = await self._send_posting(call, header.height)
        if posting is None:  # estimation raced another poster
            return RoundResult.RACE_LOST
        self._last_sent = self.clock()
        log.info(
            "event=posting_sent from_height=%d height=%d state_height=%d nonce=%d tx=%s",
            tip.latest_height + 1,
            header.height,
            header.state_height,
            posting.nonce,
            posting.tx_hash.hex()[:16],
        )
        return RoundResult.POSTED

    async def _send_posting(self, call: Any, height: int) -> PendingPosting | None:
        """Build the posting on the account's pending nonce, sign it, journal it,
        then send it (None: gas estimation refused it). The caller holds `sends`."""
        sender = self.account.address
        nonce = await self._l1(lambda: self.link.transaction_count(sender, "pending"))
        chain_id = await self._l1(self.link.chain_id)
        try:
            tx = await self._l1(
                lambda: L1Link.guarded(
                    lambda: call.build_transaction(
                        {
                            "from": sender,
                            "nonce": Nonce(nonce),
                            "chainId": chain_id,
                            "gas": call.estimate_gas({"from": sender}, block_identifier="pending"),
                        }
                    )
                )
            )
        except ContractLogicError:
            return None
        signed = self.account.sign_transaction(tx)
        posting = PendingPosting(
            nonce=nonce,
            raw=bytes(signed.raw_transaction),
            tx_hash=bytes(signed.hash),
            height=height,
        )
        self.journal.save(posting)  # persist, then send
        await self._l1(lambda: self.link.send_raw(posting.raw))
        return posting

    def _my_index_in(self, epoch: Epoch) -> int | None:
        if epoch.number == 0:
            return self.my_index
        return epoch.validators.index_of(self.account_address)

    async def _contract_knows(self, epoch: Epoch, height: int) -> bool:
        """Whether Commitments puts `height` in the same epoch as the schedule
        (it does when it was deployed from this genesis); an error otherwise."""
        known = await self._l1(
            lambda: L1Link.guarded(lambda: evidence_epoch(self.commitments, height))
        )
        if known == epoch.number:
            return True
        self._error(
            f"Commitments puts height {height} in epoch {known}, the genesis in epoch "
            f"{epoch.number}: the contract was not deployed with this genesis's schedule"
        )
        return False

    async def settle_pending(self) -> bool:
        """The journal's posting: True (and the journal cleared) once its nonce
        is used; else it is broadcast again, byte for byte, and False."""
        pending = self.journal.pending
        assert pending is not None
        sender = self.account.address
        used = await self._l1(lambda: self.link.transaction_count(sender, "latest"))
        if used <= pending.nonce:
            await self._l1(lambda: self.link.send_raw(pending.raw))
            return False
        receipt = await self._l1(lambda: self.link.receipt(pending.tx_hash))
        if receipt is not None and receipt[0] == 1:
            self.status.postings += 1
            self.status.gas_per_posting = receipt[1]
            self.status.last_error = None
            log.info(
                "event=posting_landed height=%d gas=%d l1_block=%d",
                pending.height,
                receipt[1],
                receipt[2],
            )
        elif receipt is not None:
            log.info("event=posting_reverted height=%d reason=covered_by_another", pending.height)
        self.journal.clear()
        return True

    def _observe(self, head: int, tip: CommitmentsTip) -> None:
        self.status.observe_head(head)
        self.status.posted_height = tip.latest_height
        self.status.posted_state_height = tip.latest_state_height
        self.status.last_post_block = tip.last_post_block

    def _error(self, message: str) -> None:
        self.status.last_error = message
        self._problem.report(message)


def _error_name(exc: BaseException) -> str:
    try:
        return custom_error_name(exc)
    except UnknownCustomError:
        return f"revert {str(exc)[:120]}"
