"""Mempool rules, and its invariants under random operation sequences."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cache

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from consensus.crypto import keccak256
from sequencer_net.execution.exceptions import NonceUsed
from sequencer_net.execution.limits import NONCE_WINDOW
from sequencer_net.execution.nonces import nonce_rejection, use_nonce
from sequencer_net.execution.records import NonceWindow
from sequencer_net.mempool.limits import MempoolLimits
from sequencer_net.mempool.mempool import Accounts, AddResult, CheckedTx, Mempool
from sequencer_net.mempool.transaction import BadSignature, OversizedTransaction, WrongChain
from tests.mempool.factories import DOMAIN, KEYS, OTHER_DOMAIN, checked, signed

SENDERS = 4
NONCES = 12


@cache
def cached_tx(sender: int, nonce: int, variant: int) -> CheckedTx:
    """Signing is the slow part of these tests: every (sender, nonce, variant) once."""
    return checked(sender, nonce, payload=b"v%d" % variant + b"." * (variant * 40))


def test_check_rejects_with_named_errors() -> None:
    pool = Mempool(DOMAIN)
    with pytest.raises(OversizedTransaction):
        pool.check(b"\x00" * 10**6)
    with pytest.raises(WrongChain):
        pool.check(signed(domain=OTHER_DOMAIN))
    good = bytearray(signed())
    good[-2] ^= 0xFF  # corrupt s: recovers nobody or a stranger
    try:
        stranger = pool.check(bytes(good))
        assert stranger.sender != KEYS[0].address
    except BadSignature:
        pass


def add(pool: Mempool, tx: CheckedTx, now_ms: int = 0, **kwargs: bool) -> AddResult:
    result, _evicted = pool.add(tx, now_ms, **kwargs)
    return result


@dataclass
class Ledger:
    """A stand-in for the committed state: nonce windows, balances, a fee rule."""

    windows: dict[bytes, NonceWindow] = field(default_factory=dict)
    balances: dict[bytes, int] = field(default_factory=dict)
    fee_base: int = 0

    def accounts(self) -> Accounts:
        return Accounts(
            nonce_window=self.windows.get,
            fee_balance=lambda sender: self.balances.get(sender, 10**30),
            required_fee=lambda length: self.fee_base,
        )

    def commit(self, tx: CheckedTx) -> None:
        self.windows[tx.sender] = use_nonce(self.windows.get(tx.sender), tx.nonce)


def paying(sender: int, nonce: int, fee: int, variant: int = 0) -> CheckedTx:
    return checked(sender, nonce, fee=fee, payload=b"p%d" % variant)


def test_add_rules() -> None:
    ledger = Ledger()
    pool = Mempool(DOMAIN, MempoolLimits(max_txs=6, max_per_sender=3), accounts=ledger.accounts())
    assert add(pool, cached_tx(0, 0, 0)) is AddResult.ACCEPTED
    assert add(pool, cached_tx(0, 0, 0)) is AddResult.DUPLICATE
    assert add(pool, cached_tx(0, 0, 1)) is AddResult.NONCE_TAKEN
    assert add(pool, cached_tx(0, 3, 0)) is AddResult.ACCEPTED  # gaps are allowed
    assert add(pool, cached_tx(0, NONCE_WINDOW - 1, 0)) is AddResult.ACCEPTED  # the top
    assert add(pool, cached_tx(0, 5, 0)) is AddResult.SENDER_LIMIT
    assert add(pool, cached_tx(1, NONCE_WINDOW, 0)) is AddResult.NONCE_TOO_HIGH
    for nonce in range(3):
        assert add(pool, cached_tx(1, nonce, 0)) is AddResult.ACCEPTED
    assert add(pool, cached_tx(2, 0, 0)) is AddResult.FULL  # nothing cheaper to evict
    committed = cached_tx(0, 0, 0)
    ledger.commit(committed)
    assert pool.on_committed([committed.hash], [committed.sender]) == [committed.hash]
    assert add(pool, cached_tx(0, 0, 0)) is AddResult.DUPLICATE  # recently committed
    assert pool.seen(committed.hash) and not pool.seen(cached_tx(5, 0, 0).hash)
    assert add(pool, cached_tx(0, 0, 1)) is AddResult.NONCE_USED  # the engine's rule


def test_the_nonce_rule_is_the_engines_window_not_a_floor() -> None:
    """A client that sends to several validators sees them included out of order:
    the pool accepts any unused nonce in the window, as the engine does."""
    ledger = Ledger()
    pool = Mempool(DOMAIN, accounts=ledger.accounts())
    ledger.commit(cached_tx(0, 5, 0))  # nonce 5 committed first, from another node
    assert add(pool, cached_tx(0, 2, 0)) is AddResult.ACCEPTED  # lower, unused: fine
    assert add(pool, cached_tx(0, 5, 1)) is AddResult.NONCE_USED
    # A pending transaction whose nonce another committed transaction used is dropped.
    pending = cached_tx(0, 3, 0)
    assert add(pool, pending) is AddResult.ACCEPTED
    ledger.commit(cached_tx(0, 3, 1))
    removed = pool.on_committed([cached_tx(0, 3, 1).hash], [pending.sender])
    assert removed == [pending.hash] and pending.hash in pool.dropped
    assert pending.hash not in pool


def test_fees_must_be_offered_and_covered_by_the_balance() -> None:
    ledger = Ledger(fee_base=100)
    sender = KEYS[0].address
    ledger.balances[sender] = 250
    pool = Mempool(DOMAIN, accounts=ledger.accounts())
    assert add(pool, paying(0, 0, 99)) is AddResult.FEE_TOO_LOW
    assert add(pool, paying(0, 0, 100)) is AddResult.ACCEPTED
    assert add(pool, paying(0, 1, 150)) is AddResult.ACCEPTED  # 250 pending: all of it
    assert pool.pending_fees(sender) == 250
    assert add(pool, paying(0, 2, 100)) is AddResult.INSUFFICIENT_BALANCE
    # A transaction the node acknowledged before a restart is not judged again.
    assert add(pool, paying(0, 2, 100), restoring=True) is AddResult.ACCEPTED
    pool.on_committed([paying(0, 0, 100).hash], [sender])
    assert pool.pending_fees(sender) == 250  # 150 + 100 restored


def test_a_full_pool_evicts_the_cheapest_per_byte_for_a_better_payer() -> None:
    cheap = [paying(i, 0, 10 + i) for i in range(3)]
    pool = Mempool(DOMAIN, MempoolLimits(max_txs=3), accounts=Ledger().accounts())
    for tx in cheap:
        assert add(pool, tx) is AddResult.ACCEPTED
    assert add(pool, paying(4, 0, 5)) is AddResult.FULL  # pays less: refused
    result, evicted = pool.add(paying(5, 0, 1000))
    assert result is AddResult.ACCEPTED and evicted == [cheap[0].hash]
    assert cheap[0].hash in pool.dropped and cheap[0].hash not in pool
    # Batched transactions are on their way to a block: never evicted.
    pool.mark_batched([cheap[1].hash, cheap[2].hash, paying(5, 0, 1000).hash])
    assert add(pool, paying(6, 0, 10**6)) is AddResult.FULL


def test_byte_bound() -> None:
    size = len(cached_tx(0, 0, 0).encoded)
    pool = Mempool(DOMAIN, MempoolLimits(max_bytes=2 * size))
    assert add(pool, cached_tx(0, 0, 0)) is AddResult.ACCEPTED
    assert add(pool, cached_tx(1, 0, 0)) is AddResult.ACCEPTED
    assert add(pool, cached_tx(2, 0, 0)) is AddResult.FULL
    assert pool.total_bytes == 2 * size


def test_take_batch_orders_by_arrival_and_sender_nonce() -> None:
    pool = Mempool(DOMAIN)
    arrivals = [(1, 0), (0, 2), (2, 0), (0, 0), (0, 1), (1, 1)]
    for i, (sender, nonce) in enumerate(arrivals):
        add(pool, cached_tx(sender, nonce, 0), now_ms=i)
    taken = pool.take_batch(100, 10**6)
    # Sender 0's nonce 2 arrived first, but its lower nonces are pulled ahead of it.
    assert [(KEYS.index(_key_of(c)), c.nonce) for c in taken] == [
        (1, 0),
        (0, 0),
        (0, 1),
        (0, 2),
        (2, 0),
        (1, 1),
    ]
    assert pool.take_batch(100, 10**6) == taken  # taking does not mark
    pool.mark_batched(c.hash for c in taken[:3])
    assert pool.take_batch(100, 10**6) == taken[3:]
    assert pool.oldest_untaken_ms() == 1  # (0, 2) arrived at 1
    pool.requeue([taken[1].hash])
    assert pool.take_batch(2, 10**6) == [taken[1], taken[3]]
    assert len(pool) == 6  # batched transactions stay pending until committed


def test_take_batch_stops_at_the_first_that_does_not_fit() -> None:
    pool = Mempool(DOMAIN)
    small, big, small2 = cached_tx(0, 0, 0), cached_tx(1, 0, 5), cached_tx(2, 0, 0)
    for tx in (small, big, small2):
        add(pool, tx)
    limit = len(small.encoded) + len(small2.encoded)
    assert pool.take_batch(10, limit) == [small]  # small2 does not overtake big
    assert pool.take_batch(1, 10**6) == [small]


def test_a_validators_own_reports_are_exempt_from_pressure_and_head_its_batch() -> None:
    """The validator's key (KEYS[7] here) pays the minimum fee for its reports;
    a flood of better payers fills the pool and the sender cap, yet the report
    is admitted, never evicted, and is the first of the next batch."""
    own = KEYS[7].address
    pool = Mempool(
        DOMAIN,
        MempoolLimits(max_txs=4, max_per_sender=2),
        accounts=Ledger().accounts(),
        priority_senders=frozenset({own}),
    )
    flood = [paying(i, 0, 1_000) for i in range(4)]
    for tx in flood:
        assert add(pool, tx) is AddResult.ACCEPTED
    reports = [paying(7, nonce, 1) for nonce in range(3)]
    for report in reports:  # full pool, third pending of a sender capped at two
        assert pool.add(report) == (AddResult.ACCEPTED, [])
    assert len(pool) == 7  # over max_txs by the reports alone
    taken = pool.take_batch(4, 10**6)
    assert taken[:3] == reports and taken[3] == flood[0]
    # A better payer evicts the flood, never the reports, though they pay least.
    result, evicted = pool.add(paying(5, 0, 10**6))
    assert result is AddResult.ACCEPTED and set(evicted) == {tx.hash for tx in flood}
    assert all(report.hash in pool for report in reports)
    # The rules the engine applies still hold for them.
    assert add(pool, paying(7, NONCE_WINDOW + 1, 1)) is AddResult.NONCE_TOO_HIGH
    assert add(pool, paying(7, 0, 1, variant=1)) is AddResult.NONCE_TAKEN


def test_another_sender_gets_no_priority() -> None:
    pool = Mempool(
        DOMAIN,
        MempoolLimits(max_txs=2, max_per_sender=1),
        accounts=Ledger().accounts(),
        priority_senders=frozenset({KEYS[7].address}),
    )
    assert add(pool, paying(0, 0, 5)) is AddResult.ACCEPTED
    assert add(pool, paying(0, 1, 5)) is AddResult.SENDER_LIMIT
    assert add(pool, paying(6, 0, 1)) is AddResult.ACCEPTED
    assert add(pool, paying(1, 0, 1)) is AddResult.FULL
    result, evicted = pool.add(paying(2, 0, 10**6))
    assert result is AddResult.ACCEPTED and evicted == [paying(6, 0, 1).hash]
    assert pool.take_batch(10, 10**6)[0] == paying(0, 0, 5)  # arrival order


def test_a_reversed_nonce_burst_cannot_stall_batching() -> None:
    """A sender's nonces arriving highest first pull all lower ones ahead of the
    first arrival; if they do not all fit, the batch takes the lowest that do."""
    pool = Mempool(DOMAIN)
    burst = [cached_tx(0, nonce, 3) for nonce in reversed(range(10))]
    for tx in burst:
        add(pool, tx)
    add(pool, cached_tx(1, 0, 0))
    size = len(burst[0].encoded)
    taken = pool.take_batch(100, 3 * size)
    assert [c.nonce for c in taken] == [0, 1, 2]
    assert pool.take_batch(4, 10**6) == [burst[9], burst[8], burst[7], burst[6]]
    pool.mark_batched(c.hash for c in taken)
    assert [c.nonce for c in pool.take_batch(100, 10**6)] == [*range(3, 10), 0]


def _key_of(c: CheckedTx) -> object:
    return next(k for k in KEYS if k.address == c.sender)


class MempoolMachine(RuleBasedStateMachine):
    """Random adds, batches, commits and requeues against the engine's nonce rule."""

    def __init__(self) -> None:
        super().__init__()
        self.limits = MempoolLimits(max_txs=10, max_bytes=1500, max_per_sender=5)
        self.ledger = Ledger()
        self.pool = Mempool(DOMAIN, self.limits, accounts=self.ledger.accounts())
        self.twin = Mempool(DOMAIN, self.limits, accounts=self.ledger.accounts())
        self.committed: set[bytes] = set()
        self.clock = 0

    def both(self, method: str, *args: object) -> object:
        first = getattr(self.pool, method)(*args)
        second = getattr(self.twin, method)(*args)
        assert first == second
        return first

    @rule(
        sender=st.integers(0, SENDERS - 1),
        nonce=st.integers(0, NONCES - 1),
        variant=st.integers(0, 2),
    )
    def add(self, sender: int, nonce: int, variant: int) -> None:
        tx = cached_tx(sender, nonce, variant)
        self.clock += 1
        before = len(self.pool)
        result, evicted = self.both("add", tx, self.clock)  # type: ignore[misc]
        window = self.ledger.windows.get(tx.sender)
        if tx.hash in self.committed:
            assert result is AddResult.DUPLICATE
        elif nonce_rejection(window, nonce) is not None:
            assert result in (AddResult.NONCE_USED, AddResult.NONCE_TOO_HIGH, AddResult.DUPLICATE)
        assert evicted == []  # every test transaction pays the same: nothing is cheaper
        assert (len(self.pool) == before + 1) == (result is AddResult.ACCEPTED)

    @rule(max_txs=st.integers(1, 6), max_bytes=st.integers(100, 1500), mark=st.booleans())
    def take(self, max_txs: int, max_bytes: int, mark: bool) -> None:
        taken = self.both("take_batch", max_txs, max_bytes)
        assert isinstance(taken, list)
        assert len(taken) <= max_txs
        if self.pool.untaken_count() and max_bytes >= 400:  # every test tx is < 400 B
            assert taken, "a non-empty queue must always yield a batch"
        assert sum(len(c.encoded) for c in taken) <= max_bytes
        assert len({c.hash for c in taken}) == len(taken)
        for sender in range(SENDERS):
            nonces = [c.nonce for c in taken if c.sender == KEYS[sender].address]
            assert nonces == sorted(nonces)
        if mark:
            self.both("mark_batched", [c.hash for c in taken])

    @precondition(lambda self: len(self.pool) > 0)
    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        pending = [self.pool.get(h) for h in _hashes(self.pool)]
        chosen = data.draw(st.lists(st.sampled_from(pending), max_size=3, unique_by=id))
        hashes = [c.hash for c in chosen if c is not None]
        for c in chosen:
            assert c is not None
            self.ledger.commit(c)
        removed = self.both("on_committed", hashes, [c.sender for c in chosen if c])
        assert isinstance(removed, list)
        assert set(hashes) <= set(removed)
        self.committed.update(hashes)

    @rule()
    def requeue_all(self) -> None:
        self.both("requeue", _hashes(self.pool))

    @invariant()
    def bounded_and_consistent(self) -> None:
        pending = [self.pool.get(h) for h in _hashes(self.pool)]
        hashes = [c.hash for c in pending if c is not None]
        assert len(hashes) == len(set(hashes)) == len(self.pool) <= self.limits.max_txs
        assert self.pool.total_bytes == sum(len(e) for e in self.pool.pending())
        assert self.pool.total_bytes <= self.limits.max_bytes
        assert self.pool.untaken_count() <= len(self.pool)
        assert not set(hashes) & self.committed
        seen: set[tuple[bytes, int]] = set()
        for c in pending:
            assert c is not None
            # Nothing pending that the committed state refuses as used.
            assert not isinstance(
                nonce_rejection(self.ledger.windows.get(c.sender), c.nonce), NonceUsed
            )
            assert (c.sender, c.nonce) not in seen
            seen.add((c.sender, c.nonce))
        for sender in {c.sender for c in pending if c}:
            mine = [c for c in pending if c and c.sender == sender]
            assert len(mine) <= self.limits.max_per_sender
            assert self.pool.pending_fees(sender) == sum(c.fee for c in mine)
        assert self.pool.pending() == self.twin.pending()


def _hashes(pool: Mempool) -> list[bytes]:
    from sequencer_net.mempool.transaction import tx_hash

    return [tx_hash(e) for e in pool.pending()]


TestMempoolMachine = MempoolMachine.TestCase
TestMempoolMachine.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _remembered_one_at_a_time(
    limit: int, old: list[bytes], blocks: list[list[bytes]]
) -> list[bytes]:
    pool = Mempool(DOMAIN, MempoolLimits(recent_committed=limit))
    for h in old:
        pool._remember_committed(h)
    for block in blocks:
        for h in block:
            pool._remember_committed(h)
    return list(pool._recent_committed)


def test_a_blocks_committed_hashes_are_remembered_as_one_at_a_time_would() -> None:
    rng = random.Random(5)
    names = [bytes([i]) * 32 for i in range(60)]
    for limit in (1, 7, 30, 100):
        for _ in range(30):
            old = rng.sample(names, rng.randrange(len(names)))
            # Fresh hashes, hashes remembered already, and (once) a hash twice.
            blocks = [rng.sample(names, rng.randrange(1, 20)) for _ in range(3)]
            blocks.append([names[0], names[1], names[0]])
            pool = Mempool(DOMAIN, MempoolLimits(recent_committed=limit))
            for h in old:
                pool._remember_committed(h)
            for block in blocks:
                pool.on_committed(block, [])
                assert len(pool._recent_committed) <= limit
            assert list(pool._recent_committed) == _remembered_one_at_a_time(limit, old, blocks)


def test_on_committed_removes_what_it_removed_one_hash_at_a_time() -> None:
    txs = [cached_tx(s, n, 0) for s in range(3) for n in range(3)]
    pool = Mempool(DOMAIN)
    for tx in txs:
        assert add(pool, tx) is AddResult.ACCEPTED
    committed = [txs[4].hash, keccak256(b"not pending"), txs[0].hash, txs[4].hash]
    removed = pool.on_committed(iter(committed), [])
    assert removed == [txs[4].hash, txs[0].hash]
    assert all(pool.seen(h) for h in committed)
    assert pool.get(txs[0].hash) is None and pool.get(txs[1].hash) is not None
