"""Mempool rules, and its invariants under random operation sequences."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from sequencer_net.mempool.limits import MempoolLimits
from sequencer_net.mempool.mempool import AddResult, CheckedTx, Mempool
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


def test_add_rules() -> None:
    pool = Mempool(DOMAIN, MempoolLimits(nonce_window=4, max_txs=5))
    assert pool.add(cached_tx(0, 0, 0)) is AddResult.ACCEPTED
    assert pool.add(cached_tx(0, 0, 0)) is AddResult.DUPLICATE
    assert pool.add(cached_tx(0, 0, 1)) is AddResult.NONCE_TAKEN
    assert pool.add(cached_tx(0, 3, 0)) is AddResult.ACCEPTED  # gaps are allowed
    assert pool.add(cached_tx(0, 4, 0)) is AddResult.NONCE_TOO_HIGH
    for nonce in range(3):
        assert pool.add(cached_tx(1, nonce, 0)) is AddResult.ACCEPTED
    assert pool.add(cached_tx(2, 0, 0)) is AddResult.FULL
    removed = pool.on_committed([cached_tx(0, 0, 0).hash], {KEYS[0].address: 1})
    assert removed == [cached_tx(0, 0, 0).hash]
    assert pool.add(cached_tx(0, 0, 0)) is AddResult.DUPLICATE  # recently committed
    assert pool.seen(cached_tx(0, 0, 0).hash) and not pool.seen(cached_tx(5, 0, 0).hash)
    assert pool.add(cached_tx(0, 0, 1)) is AddResult.NONCE_TOO_LOW
    assert pool.add(cached_tx(0, 4, 0)) is AddResult.ACCEPTED  # the window moved


def test_byte_bound() -> None:
    size = len(cached_tx(0, 0, 0).encoded)
    pool = Mempool(DOMAIN, MempoolLimits(max_bytes=2 * size))
    assert pool.add(cached_tx(0, 0, 0)) is AddResult.ACCEPTED
    assert pool.add(cached_tx(1, 0, 0)) is AddResult.ACCEPTED
    assert pool.add(cached_tx(2, 0, 0)) is AddResult.FULL
    assert pool.total_bytes == 2 * size


def test_next_nonce_lookup_for_unknown_senders() -> None:
    pool = Mempool(DOMAIN, next_nonce=lambda sender: 5 if sender == KEYS[0].address else 0)
    assert pool.add(cached_tx(0, 4, 0)) is AddResult.NONCE_TOO_LOW
    assert pool.add(cached_tx(0, 5, 0)) is AddResult.ACCEPTED


def test_committing_a_higher_nonce_keeps_lower_pending_ones_but_raises_the_floor() -> None:
    pool = Mempool(DOMAIN)
    for nonce in range(4):
        pool.add(cached_tx(0, nonce, 0))
    # Nonce 2 committed from another validator's copy. The pool's 0..3 were
    # acknowledged: they stay (the sequencer orders by inclusion, not by nonce).
    removed = pool.on_committed([], {KEYS[0].address: 3})
    assert removed == []
    assert len(pool) == 4
    # New admissions now start at the raised floor...
    assert pool.add(cached_tx(0, 1, 1)) is AddResult.NONCE_TOO_LOW
    # ...except for a transaction the node acknowledged before a restart.
    restored = Mempool(DOMAIN, next_nonce=lambda _sender: 3)
    assert restored.add(cached_tx(0, 1, 0), restoring=True) is AddResult.ACCEPTED
    assert restored.add(cached_tx(0, 200, 0), restoring=True) is AddResult.ACCEPTED


def test_take_batch_orders_by_arrival_and_sender_nonce() -> None:
    pool = Mempool(DOMAIN)
    arrivals = [(1, 0), (0, 2), (2, 0), (0, 0), (0, 1), (1, 1)]
    for i, (sender, nonce) in enumerate(arrivals):
        pool.add(cached_tx(sender, nonce, 0), now_ms=i)
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
        pool.add(tx)
    limit = len(small.encoded) + len(small2.encoded)
    assert pool.take_batch(10, limit) == [small]  # small2 does not overtake big
    assert pool.take_batch(1, 10**6) == [small]


def test_a_reversed_nonce_burst_cannot_stall_batching() -> None:
    """A sender's nonces arriving highest first pull all lower ones ahead of the
    first arrival; if they do not all fit, the batch takes the lowest that do."""
    pool = Mempool(DOMAIN)
    burst = [cached_tx(0, nonce, 3) for nonce in reversed(range(10))]
    for tx in burst:
        pool.add(tx)
    pool.add(cached_tx(1, 0, 0))
    size = len(burst[0].encoded)
    taken = pool.take_batch(100, 3 * size)
    assert [c.nonce for c in taken] == [0, 1, 2]
    assert pool.take_batch(4, 10**6) == [burst[9], burst[8], burst[7], burst[6]]
    pool.mark_batched(c.hash for c in taken)
    assert [c.nonce for c in pool.take_batch(100, 10**6)] == [*range(3, 10), 0]


def _key_of(c: CheckedTx) -> object:
    return next(k for k in KEYS if k.address == c.sender)


class MempoolMachine(RuleBasedStateMachine):
    """Random adds, batches, commits and requeues against a simple model."""

    def __init__(self) -> None:
        super().__init__()
        self.limits = MempoolLimits(max_txs=10, max_bytes=1500, nonce_window=4)
        self.pool = Mempool(DOMAIN, self.limits)
        self.twin = Mempool(DOMAIN, self.limits)  # fed the same operations
        self.next_nonce = [0] * SENDERS
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
        result = self.both("add", tx, self.clock)
        if tx.hash in self.committed:
            assert result is AddResult.DUPLICATE
        elif nonce < self.next_nonce[sender]:
            assert result in (AddResult.NONCE_TOO_LOW, AddResult.DUPLICATE)
        elif nonce >= self.next_nonce[sender] + self.limits.nonce_window:
            assert result is AddResult.NONCE_TOO_HIGH
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
        nonces = {}
        for c in chosen:
            assert c is not None
            sender = KEYS.index(_key_of(c))  # type: ignore[arg-type]
            self.next_nonce[sender] = max(self.next_nonce[sender], c.nonce + 1)
            nonces[c.sender] = self.next_nonce[sender]
        removed = self.both("on_committed", hashes, nonces)
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
            sender = KEYS.index(_key_of(c))  # type: ignore[arg-type]
            # Below the floor is allowed (acknowledged before a higher nonce
            # committed); beyond the window never.
            assert c.nonce < self.next_nonce[sender] + self.limits.nonce_window
            assert (c.sender, c.nonce) not in seen
            seen.add((c.sender, c.nonce))
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
