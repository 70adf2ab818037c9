"""Certified batches only, and the inclusion rule: the pure checks, then the
payload service on both sides (a leader fills blocks from certificates oldest
first; a voter fetches missing certificates, refuses uncertified batches and
proposals that leave out an overdue certificate)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from consensus.messages import Block
from sequencer_net.execution.limits import MAX_TRANSACTIONS_PER_BLOCK
from sequencer_net.payload.checks import (
    BatchSize,
    HeldBatch,
    OverdueCertificateSkipped,
    UncertifiedBatch,
    check_batches_certified,
    check_certificate_inclusion,
)
from sequencer_net.payload.format import BlockPayload, decode_payload, encode_payload
from sequencer_net.payload.namespaces import namespace_root
from sequencer_net.payload.service import PayloadService

SMALL = BatchSize(1, 100)
HALF = BatchSize(MAX_TRANSACTIONS_PER_BLOCK // 2, 100)


def held(n: int, first_view: int, size: BatchSize = SMALL) -> HeldBatch:
    return HeldBatch(bytes([n]) * 32, first_view, size)


# ---- the pure rules ------------------------------------------------------------------------


def test_every_named_batch_must_be_certified() -> None:
    certified = {b"\x01" * 32}
    check_batches_certified([b"\x01" * 32], certified.__contains__)
    check_batches_certified([], certified.__contains__)
    with pytest.raises(UncertifiedBatch):
        check_batches_certified([b"\x01" * 32, b"\x02" * 32], certified.__contains__)


def test_a_left_out_certificate_binds_only_once_overdue() -> None:
    young = held(1, first_view=9)
    check_certificate_inclusion([young], [], view=10, delay_views=2)
    overdue = held(1, first_view=8)
    with pytest.raises(OverdueCertificateSkipped):
        check_certificate_inclusion([overdue], [], view=10, delay_views=2)
    with pytest.raises(OverdueCertificateSkipped):
        check_certificate_inclusion([overdue], [held(2, 9)], view=10, delay_views=2)


def test_a_full_block_filled_oldest_first_excuses_an_overdue_one() -> None:
    left_out = held(3, first_view=5, size=HALF)
    # Two older half-block batches fill the block: the third does not fit.
    full_of_older = [held(1, 3, HALF), held(2, 4, HALF)]
    check_certificate_inclusion([left_out], full_of_older, view=10, delay_views=2)
    # Full, but of a younger batch that is not overdue: the leader filled it wrong.
    with pytest.raises(OverdueCertificateSkipped):
        check_certificate_inclusion(
            [left_out], [held(1, 3, HALF), held(2, 9, HALF)], view=10, delay_views=2
        )
    # A younger batch that is overdue itself is a fair choice among overdue ones.
    check_certificate_inclusion(
        [left_out], [held(1, 3, HALF), held(2, 7, HALF)], view=10, delay_views=2
    )
    # Not full (the left-out one still fits): no excuse, however old the others.
    with pytest.raises(OverdueCertificateSkipped):
        check_certificate_inclusion([held(3, 5)], [held(1, 3, HALF)], view=10, delay_views=2)


def test_overdue_needs_both_the_views_and_the_time() -> None:
    """Held since view 3 at 1,000 ms: at view 10 it is overdue only from 1,500 ms
    on with a 500 ms bound, and never before view 5 however long ago."""
    left_out = HeldBatch(bytes([1]) * 32, 3, SMALL, first_ms=1_000)

    def check(view: int, now_ms: int) -> None:
        check_certificate_inclusion(
            [left_out], [], view=view, delay_views=2, now_ms=now_ms, delay_ms=500
        )

    check(10, 1_499)  # many views, too little time
    check(4, 60_000)  # much time, too few views
    with pytest.raises(OverdueCertificateSkipped):
        check(10, 1_500)
    with pytest.raises(OverdueCertificateSkipped):
        check(5, 60_000)


# ---- the payload service -------------------------------------------------------------------


class _Committed:
    height = 0


GENESIS = Block(view=0, height=0, parent=b"\x00" * 32, proposer=0, payload=b"")


class FakeCore:
    """Knows the genesis (digest 00..00) and the blocks put in `blocks`."""

    committed = _Committed()

    def __init__(self) -> None:
        self.blocks: dict[bytes, Block] = {b"\x00" * 32: GENESIS}

    def known_block(self, digest: bytes) -> Block | None:
        return self.blocks.get(digest)


class FakePool:
    def __init__(self, batches: dict[bytes, int]) -> None:
        self.batches = batches  # digest -> author

    def __contains__(self, digest: object) -> bool:
        return digest in self.batches

    def unincluded(self, exclude: set[bytes], limit: int) -> list[tuple[bytes, BatchSize]]:
        return [(d, SMALL) for d in self.batches if d not in exclude][:limit]

    def size_of(self, digest: bytes) -> BatchSize | None:
        return SMALL if digest in self.batches else None

    def namespace_pairs(self, digest: bytes) -> list[tuple[int, bytes]] | None:
        return [(1, digest)] if digest in self.batches else None

    async def wait_for(self, digests: Iterable[bytes], timeout_s: float) -> None:
        return None

    async def wait_for_batch(self) -> None:
        await trio.sleep_forever()


class FakeCertificates:
    """Held certificates: digest -> (first view, author); some only at peers."""

    def __init__(self, held: dict[bytes, tuple[int, int]], at_peers: Iterable[bytes] = ()) -> None:
        self.delay_views = 2
        self.delay_ms = 0
        self.book = dict(held)
        self.at_peers = set(at_peers)
        self.fetched: list[tuple[list[bytes], int | None]] = []
        self.refusals: list[int] = []

    def now_ms(self) -> int:
        return 0

    def overdue_as_of_ms(self, view: int) -> int | None:
        return self.now_ms()

    def certified(self, digest: bytes) -> bool:
        return digest in self.book

    def held(self, digest: bytes) -> HeldBatch | None:
        entry = self.book.get(digest)
        return None if entry is None else HeldBatch(digest, entry[0], SMALL)

    def author_of(self, digest: bytes) -> int | None:
        entry = self.book.get(digest)
        return None if entry is None else entry[1]

    def candidates(self, exclude: set[bytes]) -> list[HeldBatch]:
        out = [h for d in self.book if d not in exclude and (h := self.held(d)) is not None]
        return sorted(out, key=lambda h: (h.first_view, h.digest))

    async def wait_for_certificate(self) -> None:
        await trio.sleep_forever()

    async def wait_for_certificates(self, digests: Iterable[bytes], timeout_s: float) -> None:
        await trio.sleep(timeout_s)

    async def fetch_missing_batches(self) -> None:
        return None

    async def fetch_certificates(self, digests: Iterable[bytes], prefer: int | None) -> None:
        wanted = list(digests)
        self.fetched.append((wanted, prefer))
        for d in wanted:
            if d in self.at_peers:
                self.book[d] = (99, 0)

    def refused(self, view: int) -> None:
        self.refusals.append(view)


A, B, C, D = (bytes([n]) * 32 for n in (0xA, 0xB, 0xC, 0xD))


def service(pool: FakePool, certs: FakeCertificates, censor: int | None = None) -> PayloadService:
    core: Any = FakeCore()

    async def wait_executed(height: int) -> None:
        return None

    return PayloadService(
        core=core,
        pool=pool,  # type: ignore[arg-type]
        fetcher=None,  # type: ignore[arg-type]
        genesis_time_ms=0,
        genesis_state_root=b"\x00" * 32,
        executed=lambda: (0, b"\x00" * 32),
        wait_executed=wait_executed,
        state_root_at=lambda height: None,
        empty_block_wait_ms=100,
        lag_wait_ms=100,
        clock_ms=lambda: 1_000,
        certificates=certs,
        censor=censor,
    )


def proposal(batches: list[bytes], view: int = 10) -> Block:
    payload = BlockPayload(
        timestamp_ms=1_000,
        state_height=0,
        state_root=b"\x00" * 32,
        batches=batches,
        namespace_root=namespace_root([(1, d) for d in batches]),
    )
    return Block(
        view=view, height=1, parent=b"\x00" * 32, proposer=3, payload=encode_payload(payload)
    )


async def test_a_leader_names_only_certified_batches_oldest_certificate_first(
    autojump_clock: MockClock,
) -> None:
    pool = FakePool({A: 0, B: 1, C: 2, D: 3})  # D's batch is here, its certificate is not
    certs = FakeCertificates({A: (7, 0), B: (3, 1), C: (5, 2)})
    payload = decode_payload(await service(pool, certs).build(b"\x00" * 32, 1))
    assert payload.batches == [B, C, A]


async def test_a_censoring_leader_leaves_out_one_author(autojump_clock: MockClock) -> None:
    pool = FakePool({A: 0, B: 1, C: 2})
    certs = FakeCertificates({A: (7, 0), B: (3, 1), C: (5, 2)})
    payload = decode_payload(await service(pool, certs, censor=1).build(b"\x00" * 32, 1))
    assert payload.batches == [C, A]
    # ...which honest voters that held B's certificate since view 3 refuse at view 10.
    assert not await service(pool, certs).verify(proposal(payload.batches))
    assert certs.refusals == [10]


async def test_a_voter_that_lacks_an_uncommitted_ancestor_is_not_bound_by_the_rule(
    autojump_clock: MockClock,
) -> None:
    """The parent (notarized, not received here yet) may carry B: refusing would
    refuse an honest leader, so the rule does not bind this vote."""
    pool = FakePool({A: 0, B: 1, C: 2})
    certs = FakeCertificates({A: (7, 0), B: (3, 1), C: (5, 2)})
    voter = service(pool, certs)
    unknown_parent = Block(view=9, height=1, parent=b"\x07" * 32, proposer=1, payload=b"").digest()
    block = proposal([C, A])
    orphan = Block(
        view=block.view,
        height=2,
        parent=unknown_parent,
        proposer=block.proposer,
        payload=block.payload,
    )
    assert await voter.verify(orphan)
    assert voter.inclusion_unchecked == 1
    assert certs.refusals == []
    # The same leaving-out on a parent it knows is refused.
    assert not await voter.verify(block)
    assert certs.refusals == [10]


async def test_a_voter_fetches_a_missing_certificate_and_refuses_an_uncertified_batch(
    autojump_clock: MockClock,
) -> None:
    pool = FakePool({A: 0, B: 1})
    certs = FakeCertificates({}, at_peers=[A])
    voter = service(pool, certs)
    assert await voter.verify(proposal([A]))
    assert certs.fetched == [([A], 3)]  # asked, the proposer first
    assert not await voter.verify(proposal([A, B]))  # B's certificate exists nowhere
    with pytest.raises(UncertifiedBatch):
        await voter.check(proposal([B]))


async def test_a_voter_accepts_a_block_with_every_overdue_certificate(
    autojump_clock: MockClock,
) -> None:
    pool = FakePool({A: 0, B: 1, C: 2})
    certs = FakeCertificates({A: (3, 0), B: (9, 1), C: (4, 2)})
    voter = service(pool, certs)
    assert await voter.verify(proposal([A, C]))  # B, held since view 9, is not overdue at 10
    assert not await voter.verify(proposal([A]))  # C, held since view 4, is
    assert await voter.verify(proposal([A], view=5))  # ...but not yet at view 5
    assert certs.refusals == [10]


class ArrivingPool(FakePool):
    def __init__(self) -> None:
        super().__init__({})
        self.arrived = trio.Event()

    async def wait_for_batch(self) -> None:
        await self.arrived.wait()

    def arrive(self, digest: bytes) -> None:
        self.batches[digest] = 0
        self.arrived.set()
        self.arrived = trio.Event()


class PoolBoundCertificates(FakeCertificates):
    def __init__(self, pool: FakePool, held: dict[bytes, tuple[int, int]]) -> None:
        super().__init__(held)
        self.pool = pool

    def candidates(self, exclude: set[bytes]) -> list[HeldBatch]:
        return [h for h in super().candidates(exclude) if h.digest in self.pool]


async def test_a_waiting_leader_proposes_once_the_batch_of_a_held_certificate_arrives(
    autojump_clock: MockClock,
) -> None:
    pool = ArrivingPool()
    certs = PoolBoundCertificates(pool, {A: (1, 0)})  # certificate first, batch later
    built: list[bytes] = []

    async def leader() -> None:
        built.append(await service(pool, certs).build(b"\x00" * 32, 1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leader)
        await trio.sleep(0.02)
        assert built == []
        pool.arrive(A)
    assert decode_payload(built[0]).batches == [A]
    assert trio.current_time() < 0.1  # well before the empty-block wait ran out


class ClockedCertificates(FakeCertificates):
    """Held certificates with the time each was first held, a clock, and the
    time this validator entered each view (the certifier's record)."""

    def __init__(self, held: dict[bytes, tuple[int, int, int]], delay_ms: int) -> None:
        super().__init__({d: (view, author) for d, (view, author, _) in held.items()})
        self.first_ms = {d: ms for d, (_, _, ms) in held.items()}
        self.delay_ms = delay_ms
        self.clock = 0
        self.entered: dict[int, int] = {}

    def now_ms(self) -> int:
        return self.clock

    def overdue_as_of_ms(self, view: int) -> int | None:
        entered = [v for v in self.entered if v <= view]
        return self.entered[max(entered)] if entered else None

    def held(self, digest: bytes) -> HeldBatch | None:
        entry = self.book.get(digest)
        if entry is None:
            return None
        return HeldBatch(digest, entry[0], SMALL, self.first_ms[digest])


async def test_time_counts_up_to_the_entry_into_the_view_not_up_to_the_check(
    autojump_clock: MockClock,
) -> None:
    """B's certificate, held since view 3 at 0 ms, crosses the 500 ms bound at
    600 ms, while this voter checks view 5's proposal (it entered view 5 at
    300 ms and then waited, for a certificate say): the leader built that
    proposal as it entered view 5, so it is not bound to B. View 6's proposal
    is: the voter entered view 6 at 700 ms."""
    pool = FakePool({A: 0, B: 1})
    certs = ClockedCertificates({A: (2, 0, 0), B: (3, 1, 0)}, delay_ms=500)
    voter = service(pool, certs)
    certs.entered = {4: 0, 5: 300}
    certs.clock = 600
    assert await voter.verify(proposal([A], view=5))
    certs.entered[6] = 700
    certs.clock = 750
    assert not await voter.verify(proposal([A], view=6))
    assert certs.refusals == [6]


async def test_a_voter_that_entered_no_view_yet_is_not_bound_by_time(
    autojump_clock: MockClock,
) -> None:
    pool = FakePool({A: 0, B: 1})
    certs = ClockedCertificates({A: (2, 0, 0), B: (3, 1, 0)}, delay_ms=500)
    certs.clock = 60_000
    assert await service(pool, certs).verify(proposal([A], view=10))
    certs.entered = {10: 59_000}
    assert not await service(pool, certs).verify(proposal([A], view=10))


class ArrivingCertificates(FakeCertificates):
    """A certificate that reaches this voter while it checks the proposal."""

    def __init__(self, arriving: dict[bytes, tuple[int, int]], after_s: float) -> None:
        super().__init__({})
        self.arriving = arriving
        self.after_s = after_s

    async def wait_for_certificates(self, digests: Iterable[bytes], timeout_s: float) -> None:
        if self.after_s <= timeout_s:
            await trio.sleep(self.after_s)
            self.book.update(self.arriving)
        else:
            await trio.sleep(timeout_s)


async def test_a_voter_waits_briefly_for_a_certificate_before_asking_peers(
    autojump_clock: MockClock,
) -> None:
    pool = FakePool({A: 0})
    soon = ArrivingCertificates({A: (9, 0)}, after_s=0.05)
    assert await service(pool, soon).verify(proposal([A]))
    assert soon.fetched == []  # it came on its own: no request
    late = ArrivingCertificates({A: (9, 0)}, after_s=60)
    assert not await service(pool, late).verify(proposal([A]))
    assert late.fetched == [([A], 3)]  # not within the wait: asked, the proposer first
