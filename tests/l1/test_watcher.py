"""The L1 watcher against a real anvil: deposits reported once, forced
transactions handed to the intake and the tracker at confirmation depth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from consensus.crypto import PrivateKey, keccak256
from sequencer_net.api.intake import Accepted, Outcome, Refused
from sequencer_net.client.transactions import signed_transaction
from sequencer_net.execution.genesis import GenesisConfig, genesis_state
from sequencer_net.execution.records import OracleReporter
from sequencer_net.execution.state import ExecutionState
from sequencer_net.execution.transactions import L1DepositReport, decode_payload
from sequencer_net.l1.forced import MARK_GRACE_L1_BLOCKS, ForcedInclusion, InboxEntry
from sequencer_net.l1.link import L1Link
from sequencer_net.l1.status import L1Status
from sequencer_net.l1.watcher import MAX_REPORTED_ABOVE, Cursor, L1Watcher
from sequencer_net.mempool.transaction import decode_transaction, tx_hash
from sequencer_net.node.own_nonces import OwnNonces
from tests.l1.l1_chain import INCLUSION_WINDOW, L1Chain, requires_anvil

VALIDATOR = PrivateKey(keccak256(b"watcher test validator"))
SUBACCOUNT = b"\x42" * 20 + b"\x00"
CONFIRMATIONS = 2


@dataclass
class FakeIntake:
    """The node's intake: accepts everything unless told to refuse."""

    submitted: list[tuple[bytes, str]] = field(default_factory=list)
    refuse: Refused | None = None

    async def submit(self, raw: bytes, client: str) -> Outcome:
        if self.refuse is not None:
            return self.refuse
        if any(raw == seen for seen, _ in self.submitted):
            return Refused(409, "duplicate", "duplicate")
        self.submitted.append((raw, client))
        return Accepted(tx_hash(raw))

    def reports(self) -> list[L1DepositReport]:
        out = []
        for raw, client in self.submitted:
            if client == "l1-deposits":
                action = decode_payload(decode_transaction(raw).payload)
                assert isinstance(action, L1DepositReport)
                out.append(action)
        return out

    def forced(self) -> list[bytes]:
        return [raw for raw, client in self.submitted if client == "l1-inbox"]


def engine_state() -> ExecutionState:
    return genesis_state(
        GenesisConfig(
            chain_id=4242,
            admin=b"\x01" * 20,
            bridge=b"\x02" * 20,
            oracles=(OracleReporter(VALIDATOR.address, 1),),
            genesis_time=1_760_000_000,
        )
    )


def make_watcher(
    chain: L1Chain, intake: FakeIntake, data: Path, forced: ForcedInclusion | None = None
) -> L1Watcher:
    state = engine_state()
    link = L1Link.connect(
        chain.anvil.url, inbox=chain.addresses.inbox, bridge=chain.addresses.bridge
    )
    return L1Watcher(
        link=link,
        key=VALIDATOR,
        domain=chain.domain,
        state=lambda: state,
        nonces=OwnNonces(VALIDATOR.address, lambda: state),
        submit=intake.submit,
        is_committed=lambda digest: False,
        forced=forced if forced is not None else ForcedInclusion(),
        data_dir=data,
        status=L1Status(enabled=True),
        confirmations=CONFIRMATIONS,
        poll_s=0.05,
    )


def deposit(chain: L1Chain, amount: int) -> None:
    chain.send(chain.bridge.functions.depositEth(SUBACCOUNT), chain.users[0], value=amount)


def run(watcher: L1Watcher) -> bool:
    return trio.run(watcher.watch_round)


@requires_anvil
def test_a_deposit_is_reported_once_at_confirmation_depth_and_across_a_restart(
    chain: L1Chain, tmp_path: Path
) -> None:
    intake = FakeIntake()
    watcher = make_watcher(chain, intake, tmp_path / "l1")
    assert run(watcher)
    deposit(chain, 10**18)
    run(watcher)
    assert intake.reports() == []  # not yet buried under CONFIRMATIONS blocks
    chain.mine(CONFIRMATIONS)
    assert run(watcher)
    (report,) = intake.reports()
    assert (report.nonce, report.subaccount, report.token, report.amount) == (
        0,
        SUBACCOUNT,
        bytes(20),
        10**18,
    )
    assert watcher.status.deposits_reported == 1
    run(watcher)
    assert len(intake.reports()) == 1

    again = make_watcher(chain, intake, tmp_path / "l1")  # a restart
    assert again.cursor.block == watcher.cursor.block
    again.cursor.rewind(-1)  # even a full rescan reports nothing twice
    assert run(again)
    deposit(chain, 5)
    chain.mine(CONFIRMATIONS)
    assert run(again)
    assert [r.nonce for r in intake.reports()] == [0, 1]


class HeadOnly:
    """A link that answers only `head`: any other L1 read fails the test."""

    def __init__(self, link: L1Link) -> None:
        self.head = link.head

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the round read {name} although no L1 block is new")


@requires_anvil
def test_a_round_without_a_new_l1_block_reads_only_the_head(chain: L1Chain, tmp_path: Path) -> None:
    intake = FakeIntake()
    watcher = make_watcher(chain, intake, tmp_path / "l1")
    assert run(watcher)
    real = watcher.link
    watcher.link = HeadOnly(real)  # type: ignore[assignment]
    assert run(watcher)
    watcher.link = real
    deposit(chain, 4)
    chain.mine(CONFIRMATIONS)  # new blocks: the round reads them again
    assert run(watcher)
    assert [r.amount for r in intake.reports()] == [4]


@requires_anvil
def test_a_reorg_rescans_and_reports_nothing_twice(chain: L1Chain, tmp_path: Path) -> None:
    intake = FakeIntake()
    watcher = make_watcher(chain, intake, tmp_path / "l1")
    provider = chain.w3.provider
    snapshot = provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    deposit(chain, 7)
    chain.mine(CONFIRMATIONS)
    assert run(watcher)
    assert [r.amount for r in intake.reports()] == [7]
    scanned_to = watcher.cursor.block
    # The L1 forgets those blocks and builds others: the same deposit lands
    # again (nonce 0) in a block with another hash, after more blocks.
    provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    chain.mine(1)
    deposit(chain, 7)
    chain.mine(CONFIRMATIONS + 3)
    assert run(watcher)
    assert watcher.cursor.block > scanned_to
    assert [r.amount for r in intake.reports()] == [7]
    # A deposit the reorg brought in at a new nonce is reported.
    deposit(chain, 9)
    chain.mine(CONFIRMATIONS)
    assert run(watcher)
    assert [(r.nonce, r.amount) for r in intake.reports()] == [(0, 7), (1, 9)]
    nonces = [decode_transaction(raw).nonce for raw, _ in intake.submitted]
    assert nonces == [0, 1]  # the validator's own transaction nonces count up


@requires_anvil
def test_a_refused_report_is_retried_next_round(chain: L1Chain, tmp_path: Path) -> None:
    intake = FakeIntake(refuse=Refused(503, "full", "mempool full"))
    watcher = make_watcher(chain, intake, tmp_path / "l1")
    deposit(chain, 3)
    chain.mine(CONFIRMATIONS)
    assert not run(watcher)
    assert watcher.status.last_error is not None and "full" in watcher.status.last_error
    intake.refuse = None
    assert run(watcher)
    assert [r.amount for r in intake.reports()] == [3]


@requires_anvil
def test_a_forced_transaction_reaches_intake_and_tracker_after_confirmations(
    chain: L1Chain, tmp_path: Path
) -> None:
    intake = FakeIntake()
    tracker = ForcedInclusion()
    watcher = make_watcher(chain, intake, tmp_path / "l1", tracker)
    user = PrivateKey(keccak256(b"forcing user"))
    tx = signed_transaction(user, chain.domain, 0, 7, b"forced payload")
    receipt = chain.send(chain.inbox.functions.submit(tx), chain.users[1])
    due = receipt["blockNumber"] + INCLUSION_WINDOW
    run(watcher)
    assert intake.forced() == [] and len(tracker) == 0
    chain.mine(CONFIRMATIONS - 1)
    run(watcher)
    assert intake.forced() == []
    chain.mine(1)
    # Confirmed: recorded in the inbox record (what blocks' forced marks are
    # checked against), but not handed to the intake until every validator
    # has had MARK_GRACE_L1_BLOCKS to record it too; the round waits.
    assert not run(watcher)
    assert tracker.inbox_entry(tx_hash(tx)) == InboxEntry(0, receipt["blockNumber"])
    assert tracker.confirmed_l1_block == chain.w3.eth.block_number - CONFIRMATIONS
    assert intake.forced() == [] and watcher.status.last_error is None
    assert not run(watcher)  # the same head: nothing read again
    chain.mine(MARK_GRACE_L1_BLOCKS - 1)
    assert not run(watcher)
    assert intake.forced() == []
    chain.mine(1)
    assert run(watcher)
    assert intake.forced() == [tx]
    assert tx_hash(tx) in tracker
    assert tracker.l1_head == chain.w3.eth.block_number
    chain.mine(due + 2 - chain.w3.eth.block_number)
    run(watcher)
    assert tracker.overdue(lambda digest: False) == {tx_hash(tx)}
    assert watcher.status.forced_seen == 1

    fresh = ForcedInclusion()  # a restart: the tracker is rebuilt from the cursor
    again = make_watcher(chain, intake, tmp_path / "l1", fresh)
    assert tx_hash(tx) in fresh
    assert fresh.inbox_entry(tx_hash(tx)) == InboxEntry(0, receipt["blockNumber"])
    assert run(again)
    assert fresh.confirmed_l1_block == tracker.confirmed_l1_block
    assert intake.forced() == [tx]


@requires_anvil
def test_forced_bytes_the_intake_refuses_are_not_tracked(chain: L1Chain, tmp_path: Path) -> None:
    intake = FakeIntake(refuse=Refused(400, "invalid_transaction", "bad signature"))
    tracker = ForcedInclusion()
    watcher = make_watcher(chain, intake, tmp_path / "l1", tracker)
    chain.send(chain.inbox.functions.submit(b"\x01garbage"), chain.users[1])
    chain.mine(CONFIRMATIONS + MARK_GRACE_L1_BLOCKS)
    assert run(watcher)
    assert len(tracker) == 0
    assert watcher.cursor.forced[tx_hash(b"\x01garbage")] == -1
    # Still an inbox entry: another validator's intake may take it, and blocks mark it.
    entry = tracker.inbox_entry(tx_hash(b"\x01garbage"))
    assert entry is not None and entry.index == 0


def test_the_cursor_round_trips_and_refuses_what_it_did_not_write() -> None:
    cursor = Cursor()
    for nonce in (0, 1, 3):
        cursor.mark_reported(nonce)
    assert (cursor.reported_below, cursor.reported_above) == (2, {3})
    cursor.scanned(10, b"\x01" * 32)
    cursor.remember_forced(b"\x02" * 32, 55)
    cursor.remember_inbox(b"\x02" * 32, 4, 9)
    cursor.remember_inbox(b"\x02" * 32, 6, 10)  # the same bytes again keep their first index
    again = Cursor.decode(cursor.encode())
    assert again == cursor
    assert again.inbox == {b"\x02" * 32: (4, 9)}
    cursor.mark_reported(2)
    assert (cursor.reported_below, cursor.reported_above) == (4, set())
    for nonce in range(10, 10 + MAX_REPORTED_ABOVE + 5):
        cursor.mark_reported(nonce)
    assert len(cursor.reported_above) == MAX_REPORTED_ABOVE
    with pytest.raises(ValueError):
        Cursor.decode(b'{"block": "x"}')
    with pytest.raises(ValueError):
        Cursor.decode(b"[1, 2]")


def test_a_cursor_written_before_the_inbox_record_still_loads() -> None:
    import json

    cursor = Cursor()
    cursor.scanned(10, b"\x01" * 32)
    cursor.remember_forced(b"\x02" * 32, 55)
    older = json.loads(cursor.encode())
    del older["inbox"]
    again = Cursor.decode(json.dumps(older).encode())
    assert again == cursor and again.inbox == {}
