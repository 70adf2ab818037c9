"""The certifier in-process, with a real store, batch pool and verifier pool and
a recording network: acknowledgements (persisted before they leave, one per
author and round, across a restart), the author's certificate, certificates
received, fetched and answered, and overdue ones handed to the next leader."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from rocksdict import WriteBatch

from consensus.crypto import PrivateKey, keccak256
from consensus.types import Validator, ValidatorSet
from consensus.verifier import SignatureVerifier
from sequencer_net.batches.batch import Batch, batch_digest, encode_batch
from sequencer_net.batches.certificate import (
    BatchAck,
    BatchCertificate,
    InvalidCertMessage,
    decode_cert_message,
    encode_cert_message,
    sign_ack,
    verify_ack,
    verify_certificate,
)
from sequencer_net.batches.pool import BatchPool, BatchRequest
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.metrics import Metrics
from sequencer_net.node import certifying
from sequencer_net.node.certifying import BatchCertifier
from sequencer_net.p2p.network import Channel
from sequencer_net.storage.group_commit import GroupCommit
from sequencer_net.storage.node_store import NodeStore
from tests.mempool.factories import DOMAIN, carrying_batch, signed

VALIDATOR_KEYS = [PrivateKey(keccak256(b"certifier-test-%d" % i)) for i in range(4)]
VALIDATORS = ValidatorSet([Validator(k.address, 1) for k in VALIDATOR_KEYS])
SEPARATOR = DOMAIN.separator()


class RecordingP2P:
    """Sends recorded as (to, channel, message); `store` lets a send check what
    was durable when it left. `peers` answer requests with their certifier."""

    def __init__(self, store: NodeStore | None = None) -> None:
        self.store = store
        self.sent: list[tuple[int | None, Channel, bytes, bool]] = []
        self.peers: dict[int, BatchCertifier] = {}

    def send(self, peer: int, channel: Channel, data: bytes) -> bool:
        durable = False
        if self.store is not None and channel == Channel.CERT:
            message = decode_cert_message(data)
            if isinstance(message, BatchAck):
                acked = self.store.acked_batch(message.author, message.round)
                durable = acked == message.batch
        self.sent.append((peer, channel, data, durable))
        return True

    def broadcast(self, channel: Channel, data: bytes) -> None:
        self.sent.append((None, channel, data, False))

    def connected_peers(self) -> list[int]:
        return sorted(self.peers)

    async def request(self, peer: int, data: bytes) -> bytes:
        return self.peers[peer].answer(data[1:])

    def cert_messages(self) -> list[tuple[int | None, BatchAck | BatchCertificate]]:
        return [(to, decode_cert_message(d)) for to, ch, d, _ in self.sent if ch == Channel.CERT]


class RecordingFetcher:
    def __init__(self) -> None:
        self.asked: list[tuple[list[bytes], int | None]] = []

    async def fetch(self, request: BatchRequest, prefer: int | None = None) -> int:
        self.asked.append((list(request.digests), prefer))
        return len(request.digests)


class Node:
    """One validator's certifier over a store in `path`."""

    def __init__(self, path: Path, me: int, view: int = 1) -> None:
        self.store = NodeStore(path, sync=False)
        self.pool = BatchPool(
            self.store, VerifierPool(DOMAIN, threads=1), GroupCommit(self.store.write_synced)
        )
        self.p2p = RecordingP2P(self.store)
        self.fetcher = RecordingFetcher()
        self.metrics = Metrics()
        self.view = view
        fetcher: Any = self.fetcher
        p2p: Any = self.p2p
        self.certifier = BatchCertifier(
            me=me,
            key=VALIDATOR_KEYS[me],
            validators=VALIDATORS,
            separator=SEPARATOR,
            recover=SignatureVerifier(SEPARATOR).recover,
            store=self.store,
            group=self.pool.group,
            pool=self.pool,
            fetcher=fetcher,
            p2p=p2p,
            metrics=self.metrics,
            view=lambda: self.view,
            delay_views=2,
        )

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path / "db0", me=0)
    yield n
    n.close()


def batch_of(author: int, sequence: int, nonce: int) -> tuple[bytes, bytes, Batch]:
    batch = carrying_batch(
        DOMAIN, author=author, sequence=sequence, transactions=[signed(sender=author, nonce=nonce)]
    )
    encoded = encode_batch(batch)
    return batch_digest(encoded), encoded, batch


def cert_of(digest: bytes, author: int, round_: int, signers: list[int]) -> BatchCertificate:
    sigs = [
        sign_ack(VALIDATOR_KEYS[i], SEPARATOR, i, digest, author, round_, True).signature
        for i in signers
    ]
    return BatchCertificate(digest, author, round_, signers, sigs, [True] * len(signers))


async def receive_and_ack(node: Node, sender: int, encoded: bytes) -> None:
    digest = await node.pool.receive(sender, encoded)
    assert digest is not None
    await node.certifier.acknowledge(sender, digest)


async def test_a_stored_batch_is_acknowledged_to_its_author_after_the_record_is_durable(
    node: Node,
) -> None:
    digest, encoded, _ = batch_of(author=2, sequence=0, nonce=0)
    await receive_and_ack(node, 2, encoded)
    [(to, channel, data, durable)] = node.p2p.sent
    ack = decode_cert_message(data)
    assert to == 2 and channel == Channel.CERT and durable
    assert isinstance(ack, BatchAck)
    assert (ack.batch, ack.author, ack.round, ack.signer) == (digest, 2, 0, 0)
    verify_ack(VALIDATORS, SEPARATOR, ack, SignatureVerifier(SEPARATOR).recover)
    assert node.store.acked_batch(2, 0) == digest
    # The same batch again (a re-broadcast): the same ack again.
    await receive_and_ack(node, 2, encoded)
    assert node.p2p.sent[1][2] == data
    assert node.metrics.batch_acks_sent._value.get() == 2


async def test_a_second_batch_for_one_round_is_never_acknowledged_even_after_a_restart(
    tmp_path: Path,
) -> None:
    first = Node(tmp_path / "db", me=0)
    digest, encoded, _ = batch_of(author=2, sequence=4, nonce=0)
    await receive_and_ack(first, 2, encoded)
    _, other, _ = batch_of(author=2, sequence=4, nonce=1)  # same round, other batch
    await receive_and_ack(first, 2, other)
    assert len(first.p2p.sent) == 1
    first.close()
    restarted = Node(tmp_path / "db", me=0)
    try:
        await receive_and_ack(restarted, 2, other)
        assert restarted.p2p.sent == []
        assert restarted.store.acked_batch(2, 4) == digest
        _, next_round, _ = batch_of(author=2, sequence=5, nonce=1)
        await receive_and_ack(restarted, 2, next_round)
        assert len(restarted.p2p.sent) == 1
    finally:
        restarted.close()


async def test_a_copy_arriving_while_the_ack_record_is_written_waits_for_it(
    node: Node,
) -> None:
    """Peer batches are verified by several tasks, so two copies of one batch
    can reach `acknowledge` at once. The first records (author, round) and
    waits for group commit's synced write, in a worker thread; the second
    finds the record in memory and must not send its ack before that write
    is durable either: a crash in between would forget the ack."""
    digest, encoded, _ = batch_of(author=2, sequence=0, nonce=0)
    assert await node.pool.receive(2, encoded) == digest
    release = threading.Event()

    def held_write(batch: WriteBatch) -> None:
        assert release.wait(timeout=30)
        node.store.write_synced(batch)

    group = GroupCommit(held_write, window_s=0)
    node.certifier.group = group
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(group.run)
            try:
                async with trio.open_nursery() as acks:
                    acks.start_soon(node.certifier.acknowledge, 2, digest)
                    await trio.testing.wait_all_tasks_blocked()
                    acks.start_soon(node.certifier.acknowledge, 2, digest)
                    await trio.testing.wait_all_tasks_blocked()
                    assert node.p2p.sent == []  # neither copy's ack left before the write
                    release.set()
            finally:
                release.set()  # never leave the writing thread waiting
            nursery.cancel_scope.cancel()
    assert [durable for _, _, _, durable in node.p2p.sent] == [True, True]


async def test_the_author_certifies_its_batch_at_a_quorum_and_broadcasts_it(
    tmp_path: Path,
) -> None:
    author = Node(tmp_path / "db1", me=1)
    try:
        digest, encoded, batch = batch_of(author=1, sequence=0, nonce=0)
        await author.pool.add_own(digest, encoded, batch)
        async with trio.open_nursery() as nursery:
            await nursery.start(author.certifier.run)
            author.certifier.own_batch(digest, encoded, batch)
            ack0 = sign_ack(VALIDATOR_KEYS[0], SEPARATOR, 0, digest, 1, 0, True)
            forged = sign_ack(VALIDATOR_KEYS[3], SEPARATOR, 3, digest, 1, 0, True)
            # Rejected, no state change: an ack relayed by another peer, one for
            # another round, bytes that do not decode.
            author.certifier.offer(2, encode_cert_message(forged))
            author.certifier.offer(0, encode_cert_message(msgspec.structs.replace(ack0, round=1)))
            author.certifier.offer(0, b"\x01garbage")
            author.certifier.offer(0, encode_cert_message(ack0))
            await trio.testing.wait_all_tasks_blocked()
            assert author.p2p.cert_messages() == []  # own + validator 0: 2 of 4, no quorum
            ack2 = sign_ack(VALIDATOR_KEYS[2], SEPARATOR, 2, digest, 1, 0, True)
            author.certifier.offer(2, encode_cert_message(ack2))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        [(to, cert)] = author.p2p.cert_messages()
        assert to is None and isinstance(cert, BatchCertificate)
        assert cert.signers == [0, 1, 2] and cert.verified == [True, True, True]
        verify_certificate(VALIDATORS, SEPARATOR, cert, SignatureVerifier(SEPARATOR).recover)
        assert author.certifier.certified(digest)
        assert author.metrics.batch_certificates_formed._value.get() == 1
        assert author.store.load_batch_certificates() == [encode_cert_message(cert)]
    finally:
        author.close()


async def test_a_valid_certificate_is_held_and_its_missing_batch_fetched(node: Node) -> None:
    digest, _, _ = batch_of(author=2, sequence=0, nonce=0)
    weak = cert_of(digest, 2, 0, [1, 2])
    good = cert_of(digest, 2, 0, [1, 2, 3])
    node.view = 6
    async with trio.open_nursery() as nursery:
        await nursery.start(node.certifier.run)
        node.certifier.offer(1, encode_cert_message(weak))
        await trio.testing.wait_all_tasks_blocked()
        assert not node.certifier.certified(digest)
        node.certifier.offer(1, encode_cert_message(good))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    entry = node.certifier.book.get(digest)
    assert entry is not None and entry.first_view == 6
    assert node.fetcher.asked == [([digest], 2)]  # the batch, from its author first
    assert node.certifier.candidates(set()) == []  # no batch here yet: not a candidate


async def test_certificates_are_fetched_from_peers_and_verified(tmp_path: Path) -> None:
    holder = Node(tmp_path / "db1", me=1)
    asker = Node(tmp_path / "db2", me=2)
    try:
        digest, _, _ = batch_of(author=3, sequence=0, nonce=0)
        holder.certifier.book.add(cert_of(digest, 3, 0, [0, 1, 3]), view=1)
        bogus = b"\x77" * 32
        holder.certifier.book.add(cert_of(bogus, 3, 1, [0, 1]), view=1)  # not a quorum
        asker.p2p.peers = {1: holder.certifier}
        await asker.certifier.fetch_certificates([digest, bogus], prefer=1)
        assert asker.certifier.certified(digest)
        assert not asker.certifier.certified(bogus)
    finally:
        holder.close()
        asker.close()


async def test_overdue_certificates_go_to_the_leaders_that_must_include_them(node: Node) -> None:
    digest, encoded, _ = batch_of(author=2, sequence=0, nonce=0)
    assert await node.pool.receive(2, encoded) == digest
    cert = cert_of(digest, 2, 0, [0, 1, 2])
    node.certifier.book.add(cert, view=5)
    node.p2p.sent.clear()
    node.certifier.view_changed(5)  # overdue at 7: not yet for view 6's leader
    assert node.p2p.cert_messages() == []
    node.certifier.view_changed(6)  # view 7's leader (7 mod 4 = 3) needs it
    assert node.p2p.cert_messages() == [(3, cert)]
    node.certifier.view_changed(7)  # already sent to view 7's leader: once
    assert node.p2p.cert_messages() == [(3, cert)]
    node.certifier.refused(8)  # a refused proposal: view 9's leader, 1, gets it at once
    assert node.p2p.cert_messages() == [(3, cert), (1, cert)]
    assert node.metrics.inclusion_refusals._value.get() == 1
    held = node.certifier.candidates(set())
    assert [h.digest for h in held] == [digest]
    node.pool.mark_included([digest])
    assert node.certifier.candidates(set()) == []  # included: dropped
    assert digest not in node.certifier.book
    assert node.certifier.certified(digest)  # a committed block named it


async def test_an_uncertified_own_batch_is_broadcast_again_after_the_delay(node: Node) -> None:
    digest, encoded, batch = batch_of(author=0, sequence=0, nonce=0)
    node.view = 3
    node.certifier.own_batch(digest, encoded, batch)
    node.certifier.view_changed(4)
    assert [d for _, ch, d, _ in node.p2p.sent if ch == Channel.BATCH] == []
    node.certifier.view_changed(5)
    assert [d for _, ch, d, _ in node.p2p.sent if ch == Channel.BATCH] == [encoded]


async def test_held_certificates_survive_a_restart_and_included_ones_are_dropped(
    tmp_path: Path,
) -> None:
    first = Node(tmp_path / "db", me=0)
    kept, kept_encoded, _ = batch_of(author=2, sequence=0, nonce=0)
    done, done_encoded, _ = batch_of(author=3, sequence=0, nonce=1)
    for sender, encoded in ((2, kept_encoded), (3, done_encoded)):
        assert await first.pool.receive(sender, encoded) is not None
    async with trio.open_nursery() as nursery:
        await nursery.start(first.certifier.run)
        for digest, author in ((kept, 2), (done, 3)):
            first.certifier.offer(1, encode_cert_message(cert_of(digest, author, 0, [1, 2, 3])))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert len(first.store.load_batch_certificates()) == 2
    first.close()
    restarted = Node(tmp_path / "db", me=0, view=40)
    try:
        restarted.store.batch_referenced = lambda digest: digest == done  # type: ignore[method-assign]
        assert restarted.certifier.load() == 1
        assert kept in restarted.certifier.book and done not in restarted.certifier.book
        # An included batch still counts as certified: a committed block named it.
        assert restarted.certifier.certified(kept) and restarted.certifier.certified(done)
        entry = restarted.certifier.book.get(kept)
        assert entry is not None and entry.first_view == 40
        assert len(restarted.store.load_batch_certificates()) == 1  # the included one deleted
    finally:
        restarted.close()


def _power_without(peer: int) -> ValidatorSet:
    """An epoch's power over the four peers with `peer` outside the set."""
    from sequencer_net.node.epochs import PeerPower

    weights = {bytes(k.address): 1 for i, k in enumerate(VALIDATOR_KEYS) if i != peer}
    return PeerPower([Validator(k.address, 1) for k in VALIDATOR_KEYS], weights)


async def test_an_author_outside_the_current_set_gets_no_ack_and_no_certificate(
    node: Node,
) -> None:
    """In an epoch without peer 2: its batch is stored but not acknowledged, its
    certificate does not verify, and peer 2's signature counts for nothing."""
    node.certifier.epoch_changed(_power_without(2), VALIDATORS)
    digest, encoded, _ = batch_of(author=2, sequence=0, nonce=0)
    await receive_and_ack(node, 2, encoded)
    assert node.p2p.sent == [] and node.store.acked_batch(2, 0) is None
    # Formed in the previous epoch (all four members): still counts, one epoch.
    node.certifier._verify_certificate(cert_of(digest, 2, 0, [0, 1, 3]))
    node.certifier.epoch_changed(_power_without(2), _power_without(2))
    with pytest.raises(InvalidCertMessage, match="author 2 is not a validator"):
        node.certifier._verify_certificate(cert_of(digest, 2, 0, [0, 1, 3]))
    other, _, _ = batch_of(author=3, sequence=0, nonce=0)
    with pytest.raises(InvalidCertMessage, match="a signer is not a validator"):
        node.certifier._verify_certificate(cert_of(other, 3, 0, [0, 2, 3]))
    node.certifier._verify_certificate(cert_of(other, 3, 0, [0, 1, 3]))


async def test_an_own_batch_gathers_its_acks_again_under_the_next_epochs_power(
    tmp_path: Path,
) -> None:
    """Peer 1's batch has acks of 0 and itself when peer 0 leaves the set: they
    are gathered again under the new power, where 1, 2 and 3 form the quorum."""
    author = Node(tmp_path / "db1", me=1)
    try:
        digest, encoded, batch = batch_of(author=1, sequence=0, nonce=0)
        await author.pool.add_own(digest, encoded, batch)
        async with trio.open_nursery() as nursery:
            await nursery.start(author.certifier.run)
            author.certifier.own_batch(digest, encoded, batch)
            ack = {
                i: sign_ack(VALIDATOR_KEYS[i], SEPARATOR, i, digest, 1, 0, True) for i in range(4)
            }
            author.certifier.offer(0, encode_cert_message(ack[0]))
            await trio.testing.wait_all_tasks_blocked()
            author.certifier.epoch_changed(_power_without(0), VALIDATORS)
            author.certifier.offer(0, encode_cert_message(ack[0]))  # no power now
            author.certifier.offer(2, encode_cert_message(ack[2]))
            await trio.testing.wait_all_tasks_blocked()
            assert author.p2p.cert_messages() == []  # 1 and 2: 2 of 3, no quorum
            author.certifier.offer(3, encode_cert_message(ack[3]))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        [(to, cert)] = author.p2p.cert_messages()
        assert to is None and isinstance(cert, BatchCertificate) and cert.signers == [1, 2, 3]
        verify_certificate(_power_without(0), SEPARATOR, cert, SignatureVerifier(SEPARATOR).recover)
    finally:
        author.close()


async def test_overdue_is_judged_as_of_the_entry_into_the_view(tmp_path: Path) -> None:
    """The time a proposal of view v is judged at is when this validator
    entered v (the leader built it then), or the latest view before it that
    it entered; a new epoch's views start over, and their times with them."""
    clock = [0]
    node = Node(tmp_path / "db", me=0)
    node.certifier.clock_ms = lambda: clock[0]
    try:
        assert node.certifier.overdue_as_of_ms(4) is None  # no view entered yet
        node.certifier.view_changed(3)
        clock[0] = 300
        node.certifier.view_changed(4)
        clock[0] = 900
        assert node.certifier.overdue_as_of_ms(4) == 300
        assert node.certifier.overdue_as_of_ms(3) == 0
        assert node.certifier.overdue_as_of_ms(7) == 300  # not entered yet: the latest before
        assert node.certifier.overdue_as_of_ms(2) is None
        node.certifier.epoch_changed(VALIDATORS, None)
        assert node.certifier.overdue_as_of_ms(4) is None
    finally:
        node.close()


async def test_a_voter_waits_for_a_queued_certificate_instead_of_asking_peers(
    node: Node,
) -> None:
    """A certificate offered just before the proposal that names its batch is
    held as soon as the certifier takes it from its queue; one that never
    comes ends the wait at its bound."""
    digest, encoded, _ = batch_of(author=2, sequence=0, nonce=0)
    assert await node.pool.receive(2, encoded) == digest
    async with trio.open_nursery() as nursery:
        await nursery.start(node.certifier.run)
        node.certifier.offer(2, encode_cert_message(cert_of(digest, 2, 0, [0, 1, 2])))
        assert not node.certifier.certified(digest)  # still queued
        with trio.fail_after(5):
            await node.certifier.wait_for_certificates([digest], 5.0)
        assert node.certifier.certified(digest)
        with trio.fail_after(5):
            await node.certifier.wait_for_certificates([b"\x55" * 32], 0.05)
        assert not node.certifier.certified(b"\x55" * 32)
        nursery.cancel_scope.cancel()
    assert node.fetcher.asked == []


async def test_a_non_designated_node_acks_unverified_and_verifies_after_the_bound(
    node: Node, autojump_clock: trio.testing.MockClock
) -> None:
    """Node 0 is not a designated verifier of author 2 (those are 2 and 3): it
    stores and acknowledges without checking a signature; only once the
    batch has gone uncertified for `verify_after_ms` does it verify it and
    send a verified ack for the same digest."""
    assert not node.certifier.must_verify(2) and node.certifier.must_verify(3)
    assert node.certifier.must_verify(0)  # its own (checked at intake)
    verifier = node.pool.verifier
    digest, encoded, _ = batch_of(author=2, sequence=0, nonce=0)
    certified_digest, certified_encoded, _ = batch_of(author=2, sequence=1, nonce=1)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.certifier.run)
        for data in (encoded, certified_encoded):
            got = await node.pool.receive(2, data, verify=node.certifier.must_verify(2))
            assert got is not None
            await node.certifier.acknowledge(2, got)
        first = [m for _, m in node.p2p.cert_messages()]
        assert [(a.batch, a.verified) for a in first if isinstance(a, BatchAck)] == [
            (digest, False),
            (certified_digest, False),
        ]
        assert verifier.checked == 0
        # The second batch's certificate arrives in time: it is never verified here.
        node.certifier.offer(1, encode_cert_message(cert_of(certified_digest, 2, 1, [1, 2, 3])))
        await trio.sleep(node.certifier.verify_after_ms / 1000 - 0.01)
        assert verifier.checked == 0 and len(node.p2p.cert_messages()) == 2
        await trio.sleep(0.02)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert verifier.checked == 1
    late = node.p2p.cert_messages()[2:]
    assert len(late) == 1
    to, ack = late[0]
    assert to == 2 and isinstance(ack, BatchAck) and ack.verified and ack.batch == digest
    verify_ack(VALIDATORS, SEPARATOR, ack, SignatureVerifier(SEPARATOR).recover)


async def test_fallback_checks_waiting_at_once_are_bounded(
    node: Node, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of batches acknowledged unverified schedules at most
    MAX_VERIFYING_LATER fallback checks at once; the rest are not scheduled."""
    monkeypatch.setattr(certifying, "MAX_VERIFYING_LATER", 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.certifier.run)
        for sequence in range(4):
            _, encoded, _ = batch_of(author=2, sequence=sequence, nonce=sequence)
            got = await node.pool.receive(2, encoded, verify=False)
            assert got is not None
            await node.certifier.acknowledge(2, got)
        assert len(node.certifier._verifying_later) == 2
        await trio.sleep(node.certifier.verify_after_ms / 1000 + 0.1)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert node.pool.verifier.checked == 2
    assert [a.verified for _, a in node.p2p.cert_messages()] == [False] * 4 + [True] * 2


async def test_a_designated_node_acks_verified_and_a_bad_sender_list_gets_no_ack(
    tmp_path: Path,
) -> None:
    node = Node(tmp_path / "db3", me=3)
    try:
        assert node.certifier.must_verify(2)
        _, encoded, _ = batch_of(author=2, sequence=0, nonce=0)
        await receive_and_ack(node, 2, encoded)
        [(_, ack)] = node.p2p.cert_messages()
        assert isinstance(ack, BatchAck) and ack.verified and ack.batch == batch_digest(encoded)
        assert node.pool.verifier.checked == 1
        batch = carrying_batch(DOMAIN, 2, 1, [signed(sender=2, nonce=1)])
        wrong = encode_batch(Batch(2, 1, batch.transactions, [VALIDATOR_KEYS[0].address]))
        assert await node.pool.receive(2, wrong, verify=True) is None
        assert len(node.p2p.cert_messages()) == 1
    finally:
        node.close()


async def test_the_author_needs_verified_acks_beyond_f(tmp_path: Path) -> None:
    """Unverified acks from a quorum do not certify; the designated verifier's
    verified ack (or a late verified one from any other) does."""
    author = Node(tmp_path / "db1", me=1)
    try:
        digest, encoded, batch = batch_of(author=1, sequence=0, nonce=0)
        await author.pool.add_own(digest, encoded, batch)
        async with trio.open_nursery() as nursery:
            await nursery.start(author.certifier.run)
            author.certifier.own_batch(digest, encoded, batch)
            for i in (0, 3):
                unverified = sign_ack(VALIDATOR_KEYS[i], SEPARATOR, i, digest, 1, 0, False)
                author.certifier.offer(i, encode_cert_message(unverified))
            await trio.testing.wait_all_tasks_blocked()
            assert author.p2p.cert_messages() == []  # 4 of 4 acks, 1 verified
            late = sign_ack(VALIDATOR_KEYS[0], SEPARATOR, 0, digest, 1, 0, True)
            author.certifier.offer(0, encode_cert_message(late))
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        [(_, cert)] = author.p2p.cert_messages()
        assert isinstance(cert, BatchCertificate)
        assert cert.signers == [0, 1, 3] and cert.verified == [True, True, False]
        verify_certificate(VALIDATORS, SEPARATOR, cert, SignatureVerifier(SEPARATOR).recover)
    finally:
        author.close()
