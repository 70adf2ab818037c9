"""The commit pipeline's per-transaction steps on the event loop take fast
paths (carried senders read from their table, nothing forced, a struct per
transaction); each gives what the general step gives."""

from __future__ import annotations

from random import Random

from consensus.crypto import Address, keccak256
from sequencer_net.batches.batch import Batch
from sequencer_net.execution.engine import SequencedTransaction
from sequencer_net.fairness.order import order_block, sender_rank
from sequencer_net.mempool.encrypted import encode_encrypted
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.node.commit import (
    ResolvedTransaction,
    resolve_block_transactions,
    senders_in,
    split_forced,
)
from sequencer_net.payload.format import ForcedEntry
from tests.mempool.factories import DOMAIN, carrying_batch, signed
from tests.node.test_decryption import envelope

SEED = keccak256(b"commit-fast-paths/seed")


def _batches() -> list[Batch]:
    """Plain transactions of several senders, one carried twice, an envelope,
    bytes that decode as nothing, and a transaction in two batches whose
    carried senders differ (the last batch's counts)."""
    a, b, c, d = signed(0, 0), signed(1, 0), signed(2, 0, payload=b"x" * 300), signed(0, 1)
    sealed = encode_encrypted(envelope(3, 0))
    garbage = b"\x93\x01\x02"
    first = carrying_batch(DOMAIN, 0, 0, [a, b, sealed, garbage])
    second = carrying_batch(DOMAIN, 1, 0, [b, c, d])
    relabelled = Batch(2, 0, [c, a], [bytes([7]) * 20, bytes(first.senders[0])])
    return [first, second, relabelled]


def test_carried_senders_resolve_as_any_sender_lookup_does() -> None:
    batches = _batches()
    carried = senders_in(batches)

    def as_callable(h: bytes, e: bytes) -> Address | None:  # the general path: no table
        return carried(h, e)

    for committed in (set(), {tx_hash(batches[0].transactions[1])}):
        fast = resolve_block_transactions(batches, committed.__contains__, carried)
        general = resolve_block_transactions(batches, committed.__contains__, as_callable)
        assert fast == general
        assert [type(r.sequenced.sender) for r in fast] == [bytes] * len(fast)
    resolved = resolve_block_transactions(batches, set().__contains__, carried)
    # Garbage left out; the envelope a placeholder; c's sender the last batch's.
    assert len(resolved) == 5
    assert [r.envelope is not None for r in resolved] == [False, False, True, False, False]
    assert resolved[3].sender == bytes([7]) * 20


def _split_forced_as_it_was(
    resolved: list[ResolvedTransaction], marks: list[ForcedEntry]
) -> tuple[list[ResolvedTransaction], list[ResolvedTransaction]]:
    by_hash = {r.sequenced.tx_hash: r for r in resolved}
    forced: list[ResolvedTransaction] = []
    taken: set[bytes] = set()
    for mark in marks:
        found = by_hash.get(mark.tx_hash)
        if found is None or mark.tx_hash in taken:
            continue
        taken.add(mark.tx_hash)
        forced.append(found)
    return forced, [r for r in resolved if r.sequenced.tx_hash not in taken]


def _resolved(count: int, senders: int, rng: Random) -> list[ResolvedTransaction]:
    out = []
    for i in range(count):
        sender = bytes([rng.randrange(senders)]) * 20
        h = keccak256(b"tx %d" % i)
        out.append(ResolvedTransaction(b"tx %d" % i, SequencedTransaction(h, sender, i, 1, 0, b"")))
    return out


def test_split_forced_without_marks_and_with_marks_gives_what_it_gave() -> None:
    rng = Random(1)
    resolved = _resolved(40, 6, rng)
    hashes = [r.sequenced.tx_hash for r in resolved]
    for marks in (
        [],
        [ForcedEntry(1, keccak256(b"not in the block"))],
        [ForcedEntry(i, h) for i, h in enumerate(rng.sample(hashes, 5))],
        [ForcedEntry(1, hashes[3]), ForcedEntry(2, hashes[3]), ForcedEntry(3, hashes[0])],
    ):
        got = split_forced(resolved, marks)
        assert got == _split_forced_as_it_was(resolved, marks)
        assert got[1] is not resolved  # a list of its own, as before


def test_order_block_ranks_senders_as_sender_rank_then_address_does() -> None:
    rng = Random(2)
    for senders in (1, 3, 50):
        resolved = _resolved(200, senders, rng)
        by_sender: dict[bytes, list[ResolvedTransaction]] = {}
        for r in resolved:
            by_sender.setdefault(r.sender, []).append(r)
        ranked = sorted(by_sender, key=lambda s: (sender_rank(SEED, s), s))
        expected = [r for s in ranked for r in by_sender[s]]
        assert order_block(SEED, [], resolved) == expected
        forced = resolved[:3]
        assert order_block(SEED, forced, resolved[3:])[:3] == forced
        assert order_block(None, forced, resolved[3:]) == resolved


def test_resolved_transactions_compare_and_replace_by_value() -> None:
    sequenced = SequencedTransaction(keccak256(b"h"), Address(bytes(20)), 0, 1, 0, b"p")
    one = ResolvedTransaction(b"p", sequenced)
    assert one == ResolvedTransaction(b"p", sequenced) and one.envelope is None
    assert one.sender == bytes(20)
    assert hash(one) == hash(ResolvedTransaction(b"p", sequenced))
