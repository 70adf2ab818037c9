"""The L1 watcher: Bridge deposits and Inbox forced transactions, into this
validator's own intake.

Follow one round (`L1Watcher.watch_round`, every `[l1] poll_ms`):

    read the L1 head; hand it, and the confirmed head (head - confirmations),
    to the forced-inclusion tracker
    check_reorg         the hash of the last scanned block still the L1's?
                        else rewind to a remembered one that is (l1/scan.py)
    scan_confirmed      from the last scanned block + 1 up to head -
                        confirmations, in ranges of at most MAX_LOG_RANGE
                        blocks, events in (block, log index) order (l1/scan.py):
      Deposited         -> an L1DepositReport signed with the validator key,
                           once per deposit nonce (the nonces this validator
                           reported are remembered, and the committed state's
                           tally is asked first)
      ForcedTransaction -> recorded (hash -> inbox index, L1 block:
                           ForcedInclusion.record_entry, what blocks' forced
                           marks are checked against); once the entry is
                           MARK_GRACE_L1_BLOCKS old (the round stops until
                           then, every validator records it meanwhile), the
                           transaction bytes, as a client would submit them;
                           accepted (or already known or committed) ->
                           ForcedInclusion.observe(hash, due block)
    persist the cursor  a small JSON file under the data directory, written
                        atomically after every range and every report

A submission the intake refuses for the moment (rate, a full mempool, a
storage hiccup) stops the round; the range is scanned again next round, and
what was already handled is skipped. Every log is checked (address, types,
sizes) before it is used.

A crash between the intake's acknowledgement of a report and the cursor's
write can report a deposit twice: the engine refuses the second as
`DepositAlreadyReported` (a fee, nothing else). Reporting at most once would
instead risk a deposit short of its quorum.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from consensus.crypto import PrivateKey
from consensus.encoding import Domain
from sequencer_net.api.intake import Accepted, Outcome
from sequencer_net.client.transactions import FeeSchedule, deposit_report_transaction
from sequencer_net.execution.oracle import reporter_power
from sequencer_net.execution.state import ExecutionState
from sequencer_net.home.keystore import write_private_file
from sequencer_net.l1.forced import MAX_TRACKED_FORCED, ForcedInclusion
from sequencer_net.l1.link import (
    MAX_TX_BYTES,
    L1AnswerInvalid,
    L1Link,
    checked_address,
    checked_bytes,
    checked_uint,
    run_rounds,
)
from sequencer_net.l1.scan import (
    ScanPosition,
    check_count,
    check_reorg,
    end_hash,
    json_digest,
    json_uint,
    log_position,
    scan_confirmed,
)
from sequencer_net.l1.status import L1Status
from sequencer_net.logging_limits import RepeatedProblem
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.node.own_nonces import OwnNonces

log = logging.getLogger("seqnet.l1.watcher")

T = TypeVar("T")

MAX_REPORTED_ABOVE: Final = 4_096
"""Deposit nonces reported above the contiguous prefix (deposits come in order,
so this stays tiny)."""
MAX_CURSOR_BYTES: Final = 1 << 20
CURSOR_FILE: Final = "watcher.json"
TRANSIENT_REFUSALS: Final = (429, 503)
"""Intake answers worth retrying: rate limited, mempool full, storage failed."""
ERROR_LOG_INTERVAL_S: Final = 60.0


class CursorInvalid(ValueError):
    """The cursor file is not one this watcher wrote."""


@dataclass
class Cursor(ScanPosition):
    """How far the watcher got, persisted across restarts."""

    reported_below: int = 0
    """Every deposit nonce below this was reported (or found settled)."""
    reported_above: set[int] = field(default_factory=set)
    forced: OrderedDict[bytes, int] = field(default_factory=OrderedDict)
    """Forced transactions handled: hash -> due block (-1: the intake refused it)."""
    inbox: OrderedDict[bytes, tuple[int, int]] = field(default_factory=OrderedDict)
    """The inbox record (ForcedInclusion.record_entry): hash -> (index, L1 block)."""

    def reported(self, nonce: int) -> bool:
        return nonce < self.reported_below or nonce in self.reported_above

    def mark_reported(self, nonce: int) -> None:
        if self.reported(nonce):
            return
        self.reported_above.add(nonce)
        while self.reported_below in self.reported_above:
            self.reported_above.discard(self.reported_below)
            self.reported_below += 1
        while len(self.reported_above) > MAX_REPORTED_ABOVE:
            self.reported_above.discard(min(self.reported_above))

    def remember_forced(self, digest: bytes, due: int) -> None:
        self.forced[digest] = due
        self.forced.move_to_end(digest)
        while len(self.forced) > MAX_TRACKED_FORCED:
            self.forced.popitem(last=False)

    def remember_inbox(self, digest: bytes, index: int, l1_block: int) -> None:
        known = self.inbox.get(digest)
        if known is not None and known[0] <= index:
            return
        self.inbox[digest] = (index, l1_block)
        while len(self.inbox) > MAX_TRACKED_FORCED:
            self.inbox.popitem(last=False)

    def encode(self) -> bytes:
        return json.dumps(
            {
                **self.position_json(),
                "reported_below": self.reported_below,
                "reported_above": sorted(self.reported_above),
                "forced": [["0x" + h.hex(), due] for h, due in self.forced.items()],
                "inbox": [["0x" + h.hex(), i, b] for h, (i, b) in self.inbox.items()],
            }
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Cursor:
        if len(data) > MAX_CURSOR_BYTES:
            raise CursorInvalid("cursor file too large")
        try:
            raw = json.loads(data)
            block, hashes = ScanPosition.position_of(raw)
            cursor = cls(
                block=block,
                hashes=hashes,
                reported_below=json_uint(raw["reported_below"], 0),
                reported_above={json_uint(n, 0) for n in raw["reported_above"]},
                forced=OrderedDict(
                    (json_digest(h), json_uint(due, -1)) for h, due in raw["forced"]
                ),
                # Absent in cursors written before the inbox record existed.
                inbox=OrderedDict(
                    (json_digest(h), (json_uint(i, 0), json_uint(b, 0)))
                    for h, i, b in raw.get("inbox", [])
                ),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CursorInvalid(f"malformed cursor: {exc}") from exc
        if (
            len(cursor.reported_above) > MAX_REPORTED_ABOVE
            or len(cursor.forced) > MAX_TRACKED_FORCED
            or len(cursor.inbox) > MAX_TRACKED_FORCED
        ):
            raise CursorInvalid("cursor lists exceed their bounds")
        return cursor


@dataclass(frozen=True, slots=True)
class DepositEvent:
    block: int
    log_index: int
    nonce: int
    subaccount: bytes
    token: bytes
    amount: int


@dataclass(frozen=True, slots=True)
class ForcedEvent:
    block: int
    log_index: int
    index: int
    due_block: int
    tx: bytes


L1Event = DepositEvent | ForcedEvent


def decode_deposit(entry: Any, start: int, end: int) -> DepositEvent:
    block, index = log_position(entry, start, end)
    args = entry["args"]
    return DepositEvent(
        block=block,
        log_index=index,
        nonce=checked_uint(args["nonce"], "deposit nonce"),
        subaccount=checked_bytes(args["subaccount"], "deposit subaccount", 21),
        token=checked_address(args["token"], "deposit token"),
        amount=checked_uint(args["amount"], "deposit amount", 2**256),
    )


def decode_forced(entry: Any, start: int, end: int) -> ForcedEvent:
    block, index = log_position(entry, start, end)
    args = entry["args"]
    tx = checked_bytes(args["tx"], "forced transaction")
    if not 1 <= len(tx) <= MAX_TX_BYTES:
        raise L1AnswerInvalid(f"a forced transaction of {len(tx)} bytes")
    return ForcedEvent(
        block=block,
        log_index=index,
        index=checked_uint(args["index"], "forced index"),
        due_block=checked_uint(args["dueBlock"], "forced dueBlock"),
        tx=tx,
    )


class L1Watcher:
    def __init__(
        self,
        *,
        link: L1Link,
        key: PrivateKey,
        domain: Domain,
        state: Callable[[], ExecutionState],
        nonces: OwnNonces,
        submit: Callable[[bytes, str], Awaitable[Outcome]],
        is_committed: Callable[[bytes], bool],
        forced: ForcedInclusion | None,
        data_dir: Path,
        status: L1Status,
        confirmations: int,
        poll_s: float,
    ) -> None:
        self.link = link
        self.key = key
        self.domain = domain
        self.state = state
        self.nonces = nonces
        self.submit = submit
        self.is_committed = is_committed
        self.forced = forced
        self.status = status
        self.confirmations = confirmations
        self.poll_s = poll_s
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / CURSOR_FILE
        self.cursor = self._load()
        self._problem = RepeatedProblem(log, "l1_watch_problem", ERROR_LOG_INTERVAL_S)
        self._restore_forced()
        self._caught_up_at: int | None = None
        """The L1 head of the last round that scanned everything (None: none yet)."""
        self._deferred = False
        """This round stopped at a forced entry too young for the intake."""
        self._deferred_at: int | None = None
        """The L1 head of the last round that stopped so (None: none)."""

    def _load(self) -> Cursor:
        try:
            return Cursor.decode(self.path.read_bytes())
        except FileNotFoundError:
            return Cursor()
        except CursorInvalid as exc:
            # Scanning again from the start is safe: the committed state's
            # tallies and the intake's duplicate check stop a second report.
            log.warning("event=l1_cursor_unreadable path=%s error=%s", self.path, exc)
            return Cursor()

    def _save(self) -> None:
        write_private_file(self.path, self.cursor.encode())

    def _restore_forced(self) -> None:
        """The tracker lives in memory: tell it again what was observed."""
        if self.forced is None:
            return
        for digest, (index, l1_block) in self.cursor.inbox.items():
            self.forced.record_entry(digest, index, l1_block)
        for digest, due in self.cursor.forced.items():
            if due >= 0 and not self.is_committed(digest):
                self.forced.observe(digest, due)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await run_rounds(self.watch_round, self._error, self.poll_s)

    async def _l1(self, call: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(call)

    async def watch_round(self) -> bool:
        """One round; True when it scanned everything up to the confirmed head."""
        head = await self._l1(self.link.head)
        self.status.observe_head(head)
        if self.forced is not None:
            self.forced.set_l1_head(head)
            self.forced.set_confirmed(head - self.confirmations)
        if head == self._caught_up_at:
            # No new L1 block since a round that scanned everything: nothing
            # to read (the L1 is polled faster than it makes blocks).
            return True
        if head == self._deferred_at:
            return False  # the waiting entry is no older: nothing to do yet
        await self.check_reorg()
        self._deferred = False
        done = await scan_confirmed(
            link=self.link,
            position=self.cursor,
            safe=head - self.confirmations,
            read_range=self._read_range,
            handle=self._handle,
            save=self._save,
        )
        self._caught_up_at = head if done else None
        self._deferred_at = head if self._deferred else None
        self._deferred = False
        return done

    async def check_reorg(self) -> None:
        """Rewind to the newest remembered block the L1 still has."""
        await check_reorg(self.link, self.cursor, self._save)

    def _read_range(self, start: int, end: int) -> tuple[list[L1Event], bytes]:
        """Blocking: the range's events in L1 order, and the hash of its last block."""
        events: list[L1Event] = []
        if self.link.bridge is not None:
            deposited = self.link.bridge.events.Deposited()
            entries = self.link.guarded(lambda: deposited.get_logs(from_block=start, to_block=end))
            check_count(entries, start, end)
            events += [decode_deposit(e, start, end) for e in entries]
        if self.link.inbox is not None:
            forced = self.link.inbox.events.ForcedTransaction()
            entries = self.link.guarded(lambda: forced.get_logs(from_block=start, to_block=end))
            check_count(entries, start, end)
            events += [decode_forced(e, start, end) for e in entries]
        last_hash = end_hash(self.link, end)
        events.sort(key=lambda e: (e.block, e.log_index))
        return events, last_hash

    async def _handle(self, event: L1Event) -> bool:
        """Act on one event; False to stop the round and retry later."""
        if isinstance(event, DepositEvent):
            return await self.report_deposit(event)
        return await self.submit_forced(event)

    # ---- deposits -----------------------------------------------------------------------

    async def report_deposit(self, event: DepositEvent) -> bool:
        if self.cursor.reported(event.nonce):
            return True
        self.status.deposits_seen += 1
        state = self.state()
        me = self.key.address
        if reporter_power(state.config.oracles, me) == 0:
            self._error("this validator is not an oracle reporter: deposits are not reported")
            self.cursor.mark_reported(event.nonce)
            return True
        if self._already_counted(state, event.nonce):
            self.cursor.mark_reported(event.nonce)
            self._save()
            return True
        raw = deposit_report_transaction(
            self.key,
            self.domain,
            self.nonces.next_nonce(state),
            deposit_nonce=event.nonce,
            subaccount=event.subaccount,
            token=event.token,
            amount=event.amount,
            fees=FeeSchedule(state.config.fee_base, state.config.fee_per_byte),
        )
        outcome = await self.submit(raw, "l1-deposits")
        if not isinstance(outcome, Accepted):
            self.status.deposits_seen -= 1  # seen again when the range is rescanned
            self.nonces.recount()
            self._error(f"deposit {event.nonce} report refused: {outcome.code}: {outcome.message}")
            return False
        self.cursor.mark_reported(event.nonce)
        self._save()
        self.status.deposits_reported += 1
        log.info(
            "event=deposit_reported nonce=%d token=%s amount=%d l1_block=%d",
            event.nonce,
            event.token.hex()[:8],
            event.amount,
            event.block,
        )
        return True

    def _already_counted(self, state: ExecutionState, nonce: int) -> bool:
        """Settled, or this validator's vote is in the committed tally."""
        if nonce < state.bridge.resolved_below:
            return True
        tally = state.deposit_tallies.get(nonce)
        if tally is None:
            return False
        return tally.resolved or any(self.key.address in v.reporters for v in tally.votes)

    # ---- forced transactions ----------------------------------------------------------------

    async def submit_forced(self, event: ForcedEvent) -> bool:
        digest = tx_hash(event.tx)
        # The record is the L1's, whatever this intake makes of the bytes: other
        # validators' intakes may accept what this one refuses.
        self.cursor.remember_inbox(digest, event.index, event.block)
        if self.forced is not None:
            self.forced.record_entry(digest, event.index, event.block)
            if digest not in self.cursor.forced and not self.forced.ready_for_intake(event.block):
                # Not an error: the range is read again next round, and by the
                # time the entry is old enough every validator has recorded it,
                # so whichever block carries it marks it (docs/l1.md).
                self._deferred = True
                return False
        if digest in self.cursor.forced:
            return True
        outcome = await self.submit(event.tx, "l1-inbox")
        if not isinstance(outcome, Accepted) and outcome.status in TRANSIENT_REFUSALS:
            self._error(f"forced transaction {event.index} deferred: {outcome.code}")
            return False
        self.status.forced_seen += 1
        known = isinstance(outcome, Accepted) or outcome.code == "duplicate"
        if known or self.is_committed(digest):
            if self.forced is not None:
                self.forced.observe(digest, event.due_block)
            self.cursor.remember_forced(digest, event.due_block)
            log.info(
                "event=forced_observed index=%d hash=%s due_block=%d",
                event.index,
                digest.hex()[:16],
                event.due_block,
            )
        else:
            self.cursor.remember_forced(digest, -1)
            log.info(
                "event=forced_refused index=%d hash=%s code=%s",
                event.index,
                digest.hex()[:16],
                "" if isinstance(outcome, Accepted) else outcome.code,
            )
        self._save()
        return True

    def _error(self, message: str) -> None:
        self.status.last_error = message
        self._problem.report(message)
