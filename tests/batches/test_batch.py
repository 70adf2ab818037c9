"""Batch codec, verification and the builder's cut rules."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import keccak256
from sequencer_net.batches.batch import (
    BATCH_DIGEST_TAG,
    Batch,
    BatchBuilder,
    DuplicateTransaction,
    EmptyBatch,
    InvalidBatchTransaction,
    MalformedBatch,
    OversizedBatch,
    SenderMismatch,
    batch_digest,
    decode_batch,
    encode_batch,
    verify_batch,
)
from sequencer_net.mempool.limits import (
    MAX_BATCH_BYTES,
    MAX_BATCH_TXS,
    BatchLimits,
    MempoolLimits,
)
from sequencer_net.mempool.mempool import AddResult, Mempool
from sequencer_net.mempool.transaction import BadSignature, WrongChain
from tests.mempool.factories import DOMAIN, KEYS, OTHER_DOMAIN, carrying_batch, signed
from tests.mempool.test_mempool import cached_tx


def test_round_trip_digest_and_verify() -> None:
    txs = [signed(0, 0), signed(1, 0), signed(0, 1)]
    batch = carrying_batch(DOMAIN, author=3, sequence=7, transactions=txs)
    encoded = encode_batch(batch)
    assert decode_batch(encoded) == batch
    assert batch_digest(encoded) == keccak256(BATCH_DIGEST_TAG + encoded)
    checked = verify_batch(batch, DOMAIN)
    assert [c.sender for c in checked] == [KEYS[0].address, KEYS[1].address, KEYS[0].address]


def test_a_batch_carries_one_sender_per_transaction_and_its_digest_covers_them() -> None:
    txs = [signed(0, 2), signed(1, 2)]
    batch = carrying_batch(DOMAIN, 1, 0, txs)
    assert batch.senders == [KEYS[0].address, KEYS[1].address]
    swapped = Batch(1, 0, txs, batch.senders[::-1])
    assert batch_digest(encode_batch(swapped)) != batch_digest(encode_batch(batch))
    assert decode_batch(encode_batch(swapped)) == swapped  # well formed: only verifying finds it
    with pytest.raises(SenderMismatch, match="transaction 0"):
        verify_batch(swapped, DOMAIN)
    for senders in ([KEYS[0].address], [*batch.senders, KEYS[2].address]):
        with pytest.raises(SenderMismatch):
            decode_batch(encode_batch(Batch(1, 0, txs, senders)))
    # The format without senders, or a sender that is not 20 bytes: malformed.
    for body in ([1, 0, txs], [1, 0, txs, [KEYS[0].address, KEYS[1].address[:19]]]):
        with pytest.raises(MalformedBatch):
            decode_batch(msgspec.msgpack.encode(body))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgspec.msgpack.encode([0, 0]),
        msgspec.msgpack.encode([-1, 0, [b"x"]]),
        msgspec.msgpack.encode([1024, 0, [b"x"]]),  # author beyond MAX_VALIDATORS
        msgspec.msgpack.encode([0, 0, ["text"]]),
    ],
    ids=["empty-bytes", "reserved-byte", "short-array", "negative-author", "big-author", "str"],
)
def test_malformed_rejected(data: bytes) -> None:
    with pytest.raises(MalformedBatch):
        decode_batch(data)


def test_oversized_rejected_before_decoding() -> None:
    with pytest.raises(OversizedBatch):
        decode_batch(b"\x00" * (MAX_BATCH_BYTES + 1))


def test_too_many_transactions_rejected() -> None:
    data = msgspec.msgpack.encode([0, 0, [b"x"] * (MAX_BATCH_TXS + 1)])
    with pytest.raises(MalformedBatch):
        decode_batch(data)


def test_total_bytes_bound() -> None:
    big = b"x" * (32 * 1024)
    data = encode_batch(
        carrying_batch(DOMAIN, 0, 0, [big + bytes([i]) for i in range(70)])
    )  # ~2.2 MB
    with pytest.raises(OversizedBatch):
        decode_batch(data)


def test_empty_and_duplicate_rejected() -> None:
    with pytest.raises(EmptyBatch):
        decode_batch(encode_batch(carrying_batch(DOMAIN, 0, 0, [])))
    tx = signed()
    with pytest.raises(DuplicateTransaction):
        decode_batch(encode_batch(carrying_batch(DOMAIN, 0, 0, [tx, tx])))


def test_non_canonical_rejected() -> None:
    encoded = encode_batch(carrying_batch(DOMAIN, author=1, sequence=0, transactions=[signed()]))
    widened = encoded[:1] + b"\xcc\x01" + encoded[2:]  # author 1 as uint8
    assert msgspec.msgpack.decode(widened) == msgspec.msgpack.decode(encoded)
    with pytest.raises(MalformedBatch, match="canonical"):
        decode_batch(widened)


def test_verify_names_the_first_bad_transaction() -> None:
    batch = carrying_batch(DOMAIN, 0, 0, [signed(0, 0), signed(1, 0, domain=OTHER_DOMAIN), b"junk"])
    with pytest.raises(InvalidBatchTransaction) as caught:
        verify_batch(batch, DOMAIN)
    assert caught.value.position == 1
    assert isinstance(caught.value.cause, WrongChain)
    tx = bytearray(signed(2, 0))
    tx[-40] ^= 1  # flip a bit of s
    try:
        verify_batch(carrying_batch(DOMAIN, 0, 0, [bytes(tx)]), DOMAIN)
    except InvalidBatchTransaction as exc:
        assert isinstance(exc.cause, BadSignature)
    else:  # a flipped s may still recover, but never the original sender
        assert (
            verify_batch(carrying_batch(DOMAIN, 0, 0, [bytes(tx)]), DOMAIN)[0].sender
            != KEYS[2].address
        )


def test_builder_cuts_on_delay() -> None:
    pool = Mempool(DOMAIN)
    builder = BatchBuilder(author=2, limits=BatchLimits(max_txs=10, max_delay_ms=50))
    builder.last_cut_ms = 90  # a batch cut just before
    assert builder.poll(pool, now_ms=0) is None
    pool.add(cached_tx(0, 0, 0), now_ms=100)
    pool.add(cached_tx(1, 0, 0), now_ms=120)
    assert builder.deadline_ms(pool) == 140  # 50 ms after the previous cut
    builder.last_cut_ms = 0
    assert builder.deadline_ms(pool) == 100  # quiet since long before: at once
    builder.last_cut_ms = 120
    assert builder.deadline_ms(pool) == 150  # never later than the oldest's delay
    assert builder.poll(pool, now_ms=149) is None
    batch = builder.poll(pool, now_ms=150)
    assert batch is not None
    assert (batch.author, batch.sequence) == (2, 0)
    assert batch.transactions == [cached_tx(0, 0, 0).encoded, cached_tx(1, 0, 0).encoded]
    assert batch.senders == [cached_tx(0, 0, 0).sender, cached_tx(1, 0, 0).sender]
    assert builder.poll(pool, now_ms=10_000) is None  # taken: not batched twice
    assert len(pool) == 2  # still pending until committed
    pool.add(cached_tx(2, 0, 0), now_ms=180)
    assert builder.poll(pool, now_ms=199) is None
    second = builder.poll(pool, now_ms=200)
    assert second is not None and second.sequence == 1


def test_builder_cuts_at_once_after_a_quiet_spell_and_paces_busy_spells() -> None:
    """Idle: a transaction is cut as it arrives, not after max_delay_ms alone.
    Busy: at most one batch that is not full per max_delay_ms."""
    pool = Mempool(DOMAIN, MempoolLimits(max_per_sender=1024))
    builder = BatchBuilder(author=0, limits=BatchLimits(max_txs=1000, max_delay_ms=50))
    pool.add(cached_tx(0, 0, 0), now_ms=100)
    assert builder.deadline_ms(pool) == 100  # no batch cut since start
    first = builder.poll(pool, now_ms=100)
    assert first is not None and len(first.transactions) == 1
    cuts = []
    for t in range(101, 400):  # a transaction every millisecond
        pool.add(cached_tx(t % 8, 1 + (t - 101) // 8, 0), now_ms=t)
        if (batch := builder.poll(pool, now_ms=t)) is not None:
            cuts.append((t, len(batch.transactions)))
    assert cuts == [(150, 50), (200, 50), (250, 50), (300, 50), (350, 50)]
    pool.add(cached_tx(0, 100, 0), now_ms=1_000)  # quiet again: at once
    assert builder.poll(pool, now_ms=1_000) is not None


def test_builder_holds_a_batch_while_own_batches_are_uncertified() -> None:
    limits = BatchLimits(max_txs=3, max_delay_ms=50, max_uncertified=1, hold_ms=250)
    builder = BatchBuilder(author=0, limits=limits)
    pool = Mempool(DOMAIN)
    pool.add(cached_tx(0, 0, 0), now_ms=100)
    assert builder.deadline_ms(pool, uncertified=0) == 100  # no cut yet: at once
    assert builder.deadline_ms(pool, uncertified=1) == 350  # one in flight: hold
    assert builder.poll(pool, now_ms=349, uncertified=1) is None
    assert builder.poll(pool, now_ms=200, uncertified=0) is not None  # certified: due again
    for sender in range(1, 4):  # a full batch never waits
        pool.add(cached_tx(sender, 0, 0), now_ms=400)
    full = builder.poll(pool, now_ms=400, uncertified=5)
    assert full is not None and len(full.transactions) == 3
    never = BatchBuilder(author=0, limits=BatchLimits(max_delay_ms=50, max_uncertified=0))
    pool.add(cached_tx(5, 0, 0), now_ms=500)
    assert never.deadline_ms(pool, uncertified=100) == 500  # 0: never holds
    short = BatchBuilder(author=0, limits=BatchLimits(max_delay_ms=50, hold_ms=10))
    assert short.deadline_ms(pool, uncertified=1) == 550  # a hold below the delay is the delay


def test_builder_cuts_on_count_and_bytes() -> None:
    pool = Mempool(DOMAIN)
    builder = BatchBuilder(author=0, limits=BatchLimits(max_txs=3, max_delay_ms=10**9))
    for sender in range(5):
        pool.add(cached_tx(sender, 0, 0), now_ms=0)
    first = builder.poll(pool, now_ms=1)
    assert first is not None and len(first.transactions) == 3
    assert builder.poll(pool, now_ms=2) is None  # 2 left, under every trigger

    size = len(cached_tx(0, 1, 3).encoded)
    by_bytes = BatchBuilder(author=1, limits=BatchLimits(max_bytes=40_000, max_delay_ms=10**9))
    pool2 = Mempool(DOMAIN, MempoolLimits(max_per_sender=1024))
    count = 40_000 // size + 1
    for i in range(count):  # 8 senders: nonces stay inside the engine's window of 64
        result, _ = pool2.add(cached_tx(i % 8, i // 8, 3), now_ms=0)
        assert result is AddResult.ACCEPTED
    assert by_bytes.due(pool2, now_ms=0)
    batch = by_bytes.poll(pool2, now_ms=0)
    assert batch is not None
    assert len(batch.transactions) == count - 1  # the last one would pass 40,000 bytes
    assert sum(len(t) for t in batch.transactions) <= 40_000


@settings(max_examples=50, deadline=None)
@given(
    picks=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=20),
    max_txs=st.integers(1, 8),
)
def test_builder_is_deterministic(picks: list[tuple[int, int]], max_txs: int) -> None:
    """Two nodes fed the same arrivals cut byte-identical batches."""

    def run() -> list[bytes]:
        pool = Mempool(DOMAIN)
        builder = BatchBuilder(author=0, limits=BatchLimits(max_txs=max_txs, max_delay_ms=5))
        out = []
        for t, (sender, nonce) in enumerate(picks):
            pool.add(cached_tx(sender, nonce, 0), now_ms=t)
            batch = builder.poll(pool, now_ms=t)
            if batch is not None:
                decode_batch(encode_batch(batch))
                out.append(encode_batch(batch))
        while (batch := builder.poll(pool, now_ms=10**6)) is not None:
            out.append(encode_batch(batch))
        assert pool.untaken_count() == 0
        return out

    assert run() == run()


def test_the_cut_gives_the_checked_transactions_and_their_pairs_match_the_batch() -> None:
    from sequencer_net.batches.batch import batch_namespace_pairs, checked_namespace_pairs
    from sequencer_net.mempool.encrypted import encode_encrypted
    from sequencer_net.mempool.mempool import CheckedTx
    from sequencer_net.mempool.transaction import tx_hash
    from tests.fairness.test_envelope import inner, sealed

    pool = Mempool(DOMAIN)
    builder = BatchBuilder(author=0, limits=BatchLimits(max_txs=3, max_delay_ms=10**9))
    for sender in range(4):
        pool.add(cached_tx(sender, 0, 0), now_ms=0)
    cut = builder.cut(pool, now_ms=1)
    assert cut is not None
    batch, taken = cut
    assert [c.encoded for c in taken] == batch.transactions
    assert [c.hash for c in taken] == [keccak256(t) for t in batch.transactions]
    assert builder.next_sequence == 1 and builder.cut(pool, now_ms=2) is None
    # An envelope's namespace is the one it carries in the clear.
    envelope = sealed(tx=inner(namespace=9))
    encoded = encode_encrypted(envelope)
    opaque = CheckedTx(
        tx=None, encoded=encoded, hash=tx_hash(encoded), sender=KEYS[0].address, envelope=envelope
    )
    checked = [*taken, opaque]
    with_envelope = carrying_batch(DOMAIN, 0, 1, [c.encoded for c in checked])
    assert checked_namespace_pairs(checked) == batch_namespace_pairs(with_envelope)
    assert {n for n, _ in checked_namespace_pairs(checked)} >= {9}


def _pairs_by_definition(batch: Batch) -> list[tuple[int, bytes]]:
    """(namespace, tx hash) per transaction through `transaction_namespace` and
    `tx_hash`, leaving out what does not decode: what `batch_namespace_pairs`
    must equal."""
    from sequencer_net.mempool.encrypted import transaction_namespace
    from sequencer_net.mempool.transaction import InvalidTransaction, tx_hash

    pairs: list[tuple[int, bytes]] = []
    for encoded in batch.transactions:
        try:
            namespace = transaction_namespace(encoded)
        except InvalidTransaction:
            continue
        pairs.append((namespace, tx_hash(encoded)))
    return pairs


def _hostile_transaction(kind: int, n: int, junk: bytes) -> bytes:
    """Valid, non-canonical, out-of-bounds, oversized, encrypted or garbage bytes."""
    from sequencer_net.mempool.encrypted import ENCRYPTED_TX_PREFIX, encode_encrypted
    from sequencer_net.mempool.limits import MAX_TX_BYTES
    from tests.fairness.test_envelope import inner, sealed

    valid = signed(sender=n % len(KEYS), nonce=n, namespace=n % 7, payload=junk)
    match kind:
        case 0:
            return valid
        case 1:  # chain id 31337 as a uint32 instead of a uint16: not canonical
            assert valid[1:2] == b"\xcd"
            return b"\x96\xce" + (31337).to_bytes(4, "big") + valid[4:]
        case 2:  # a namespace beyond uint32
            return msgspec.msgpack.encode([31337, n, 2**32 + n, 0, junk, bytes(65)])
        case 3:
            return valid + b"\x00"
        case 4:
            return b"\x96" + junk
        case 5:
            return ENCRYPTED_TX_PREFIX + junk
        case 6:
            return encode_encrypted(sealed(tx=inner(namespace=n % 5)))
        case 7:
            return valid[:-1] + bytes([valid[-1] ^ 1])  # a bad signature decodes
        case 8:
            return valid + bytes(MAX_TX_BYTES)
        case _:
            return junk


@pytest.mark.parametrize("hashing", ["native", "python"])
@given(st.lists(st.tuples(st.integers(0, 9), st.binary(max_size=40)), min_size=1, max_size=25))
@settings(max_examples=60, deadline=None)
def test_batch_namespace_pairs_equal_their_definition_on_hostile_transactions(
    hashing: str, picks: list[tuple[int, bytes]]
) -> None:
    """With the C keccak-256 (when built) and with sha3's."""
    from sequencer_net.batches.batch import batch_namespace_pairs
    from sequencer_net.payload import namespaces

    saved = namespaces._native
    if hashing == "native" and saved is None:
        pytest.skip("the native code is not built or is switched off")
    txs = [_hostile_transaction(kind, n, junk) for n, (kind, junk) in enumerate(picks)]
    batch = Batch(0, 0, txs, [bytes(20)] * len(txs))
    namespaces._native = saved if hashing == "native" else None
    try:
        pairs = batch_namespace_pairs(batch)
    finally:
        namespaces._native = saved
    assert pairs == _pairs_by_definition(batch)
    # Only the valid, the encrypted and the badly signed (it decodes) are kept.
    assert len(pairs) == sum(1 for kind, _ in picks if kind in (0, 6, 7))
