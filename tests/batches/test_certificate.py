"""Batch acknowledgements and certificates, pure: the canonical encoding with its
size bounds, signature and quorum checks, the author's collector and the book
of held certificates."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import Address, PrivateKey, keccak256, recover_address
from consensus.encoding import Domain, batch_ack_digest
from consensus.limits import MAX_VALIDATORS
from consensus.types import Validator, ValidatorIndex, ValidatorSet
from sequencer_net.batches.certificate import (
    MAX_ACK_BYTES,
    MAX_CERTIFICATE_BYTES,
    AckCollector,
    BadAckSignature,
    BatchAck,
    BatchCertificate,
    CertificateBook,
    InsufficientPower,
    InsufficientVerifiedPower,
    MalformedCertMessage,
    UnknownSigner,
    UnsortedSigners,
    decode_cert_message,
    decode_certificate,
    designated_verifiers,
    encode_cert_message,
    sign_ack,
    verify_ack,
    verify_certificate,
)

KEYS = [PrivateKey(keccak256(b"cert-test-%d" % i)) for i in range(4)]
VALIDATORS = ValidatorSet([Validator(k.address, 1) for k in KEYS])
SEPARATOR = Domain(31337, bytes(20), b"\x11" * 32).separator()
OTHER_NETWORK = Domain(31337, bytes(20), b"\x22" * 32).separator()
BATCH = b"\xab" * 32


def recover(digest: bytes, signature: bytes) -> Address | None:
    try:
        return recover_address(digest, signature)
    except ValueError:
        return None


def ack(
    signer: int, batch: bytes = BATCH, author: int = 1, round_: int = 5, verified: bool = True
) -> BatchAck:
    return sign_ack(KEYS[signer], SEPARATOR, signer, batch, author, round_, verified)


def cert_of(
    signers: list[int], batch: bytes = BATCH, verified: list[bool] | None = None
) -> BatchCertificate:
    flags = [True] * len(signers) if verified is None else verified
    acks = [ack(i, batch, verified=v) for i, v in zip(signers, flags, strict=True)]
    return BatchCertificate(batch, 1, 5, signers, [a.signature for a in acks], flags)


def test_an_ack_signs_the_eip712_digest_of_batch_author_round_and_verified() -> None:
    a = ack(2)
    digest = batch_ack_digest(SEPARATOR, BATCH, 1, 5, True)
    assert recover_address(digest, a.signature) == KEYS[2].address
    verify_ack(VALIDATORS, SEPARATOR, a, recover)
    # Another round, author, batch, network or flag: another digest.
    assert digest != batch_ack_digest(SEPARATOR, BATCH, 1, 6, True)
    assert digest != batch_ack_digest(SEPARATOR, BATCH, 2, 5, True)
    assert digest != batch_ack_digest(SEPARATOR, b"\xac" * 32, 1, 5, True)
    assert digest != batch_ack_digest(OTHER_NETWORK, BATCH, 1, 5, True)
    assert digest != batch_ack_digest(SEPARATOR, BATCH, 1, 5, False)
    unverified = ack(2, verified=False)
    verify_ack(VALIDATORS, SEPARATOR, unverified, recover)
    # An unverified ack presented as verified (or the reverse): refused.
    with pytest.raises(BadAckSignature):
        verify_ack(
            VALIDATORS, SEPARATOR, msgspec.structs.replace(unverified, verified=True), recover
        )
    with pytest.raises(BadAckSignature):
        verify_ack(VALIDATORS, SEPARATOR, msgspec.structs.replace(a, verified=False), recover)


def test_an_ack_naming_another_signer_or_round_is_refused() -> None:
    a = ack(2)
    with pytest.raises(BadAckSignature):
        verify_ack(VALIDATORS, SEPARATOR, msgspec.structs.replace(a, signer=3), recover)
    with pytest.raises(BadAckSignature):
        verify_ack(VALIDATORS, SEPARATOR, msgspec.structs.replace(a, round=6), recover)
    with pytest.raises(BadAckSignature):
        verify_ack(VALIDATORS, OTHER_NETWORK, a, recover)
    with pytest.raises(UnknownSigner):
        verify_ack(VALIDATORS, SEPARATOR, msgspec.structs.replace(a, signer=4), recover)


def test_messages_round_trip_and_only_the_canonical_encoding_decodes() -> None:
    a = ack(0)
    assert decode_cert_message(encode_cert_message(a)) == a
    c = cert_of([0, 1, 2])
    assert decode_cert_message(encode_cert_message(c)) == c
    assert decode_certificate(encode_cert_message(c)) == c
    with pytest.raises(MalformedCertMessage):
        decode_certificate(encode_cert_message(a))
    # The same fields as a msgpack map (not the array form): refused.
    as_map = msgspec.msgpack.encode(
        {
            "batch": a.batch,
            "author": 1,
            "round": 5,
            "signer": 0,
            "signature": a.signature,
            "verified": True,
        }
    )
    with pytest.raises(MalformedCertMessage):
        decode_cert_message(b"\x01" + as_map)
    # A non-minimal integer encoding of the same array: refused.
    body = msgspec.msgpack.encode(a)
    padded = body.replace(b"\x05", b"\xcd\x00\x05", 1)
    assert padded != body
    with pytest.raises(MalformedCertMessage):
        decode_cert_message(b"\x01" + padded)
    for bad in (b"", b"\x09" + body, b"\x01", b"\x01\xc1"):
        with pytest.raises(MalformedCertMessage):
            decode_cert_message(bad)
    # The flag is a msgpack boolean: an integer 1 in its place is refused.
    as_int = body[:-1] + b"\x01"
    assert body[-1:] == b"\xc3"
    with pytest.raises(MalformedCertMessage):
        decode_cert_message(b"\x01" + as_int)
    # A certificate without its flags (the previous format): refused.
    flagless = msgspec.msgpack.encode([c.batch, c.author, c.round, c.signers, c.signatures])
    with pytest.raises(MalformedCertMessage):
        decode_cert_message(b"\x02" + flagless)


def test_size_limits_are_checked_before_decoding_and_fit_the_widest_message() -> None:
    with pytest.raises(MalformedCertMessage, match="more than"):
        decode_cert_message(b"\x01" + b"\x00" * MAX_ACK_BYTES)
    with pytest.raises(MalformedCertMessage, match="more than"):
        decode_cert_message(b"\x02" + b"\x00" * MAX_CERTIFICATE_BYTES)
    widest_ack = BatchAck(
        b"\xff" * 32, MAX_VALIDATORS - 1, 2**63 - 1, MAX_VALIDATORS - 1, a_sig(), False
    )
    assert decode_cert_message(encode_cert_message(widest_ack)) == widest_ack
    widest = BatchCertificate(
        b"\xff" * 32,
        MAX_VALIDATORS - 1,
        2**63 - 1,
        list(range(MAX_VALIDATORS)),
        [a_sig()] * MAX_VALIDATORS,
        [False] * MAX_VALIDATORS,
    )
    encoded = encode_cert_message(widest)
    assert len(encoded) <= MAX_CERTIFICATE_BYTES
    assert decode_cert_message(encoded) == widest


def a_sig() -> bytes:
    return ack(0).signature


def test_a_certificate_needs_a_quorum_of_distinct_members_with_valid_signatures() -> None:
    verify_certificate(VALIDATORS, SEPARATOR, cert_of([0, 1, 2]), recover)
    verify_certificate(VALIDATORS, SEPARATOR, cert_of([0, 1, 2, 3]), recover)
    with pytest.raises(InsufficientPower):
        verify_certificate(VALIDATORS, SEPARATOR, cert_of([0, 1]), recover)
    twice = cert_of([0, 1, 1])
    with pytest.raises(UnsortedSigners):
        verify_certificate(VALIDATORS, SEPARATOR, twice, recover)
    backwards = cert_of([2, 1, 0])
    with pytest.raises(UnsortedSigners):
        verify_certificate(VALIDATORS, SEPARATOR, backwards, recover)
    outsider = cert_of([0, 1, 2])
    outsider = msgspec.structs.replace(outsider, signers=[0, 1, 7])
    with pytest.raises(UnknownSigner):
        verify_certificate(VALIDATORS, SEPARATOR, outsider, recover)
    swapped = cert_of([0, 1, 2])
    swapped = msgspec.structs.replace(swapped, signatures=swapped.signatures[::-1])
    with pytest.raises(BadAckSignature):
        verify_certificate(VALIDATORS, SEPARATOR, swapped, recover)
    other_batch = msgspec.structs.replace(cert_of([0, 1, 2]), batch=b"\xac" * 32)
    with pytest.raises(BadAckSignature):
        verify_certificate(VALIDATORS, SEPARATOR, other_batch, recover)
    with pytest.raises(BadAckSignature):
        verify_certificate(VALIDATORS, OTHER_NETWORK, cert_of([0, 1, 2]), recover)
    short = msgspec.structs.replace(cert_of([0, 1, 2]), signatures=[a_sig()])
    with pytest.raises(MalformedCertMessage):
        verify_certificate(VALIDATORS, SEPARATOR, short, recover)
    few_flags = msgspec.structs.replace(cert_of([0, 1, 2]), verified=[True, True])
    with pytest.raises(MalformedCertMessage):
        verify_certificate(VALIDATORS, SEPARATOR, few_flags, recover)


def test_a_certificate_needs_more_than_f_of_verified_power() -> None:
    # n = 4, f = 1: two verified signers suffice, one does not.
    verify_certificate(
        VALIDATORS, SEPARATOR, cert_of([0, 1, 2], verified=[True, True, False]), recover
    )
    verify_certificate(
        VALIDATORS, SEPARATOR, cert_of([0, 1, 2, 3], verified=[False, True, False, True]), recover
    )
    for flags in ([False, False, False], [True, False, False], [False, False, True]):
        with pytest.raises(InsufficientVerifiedPower):
            verify_certificate(VALIDATORS, SEPARATOR, cert_of([0, 1, 2], verified=flags), recover)
    # Signatures over "unverified" presented with the flag set: refused.
    honest = cert_of([0, 1, 2], verified=[True, False, False])
    forged = msgspec.structs.replace(honest, verified=[True, True, False])
    with pytest.raises(BadAckSignature):
        verify_certificate(VALIDATORS, SEPARATOR, forged, recover)
    # Power, not count: with weights 5,1,1,1 (f = 2) only validator 0 exceeds f.
    weighted = ValidatorSet(
        [Validator(k.address, w) for k, w in zip(KEYS, [5, 1, 1, 1], strict=True)]
    )
    verify_certificate(weighted, SEPARATOR, cert_of([0, 1], verified=[True, False]), recover)
    with pytest.raises(InsufficientVerifiedPower):
        verify_certificate(
            weighted, SEPARATOR, cert_of([0, 1, 2, 3], verified=[False, True, True, False]), recover
        )


def test_designated_verifiers_are_the_author_and_the_next_until_more_than_f() -> None:
    assert designated_verifiers(VALIDATORS, 0) == {0, 1}
    assert designated_verifiers(VALIDATORS, 3) == {3, 0}  # wraps
    seven = ValidatorSet(
        [Validator(PrivateKey(keccak256(b"d%d" % i)).address, 1) for i in range(7)]
    )
    assert designated_verifiers(seven, 5) == {5, 6, 0}  # f = 2
    weighted = ValidatorSet(
        [Validator(k.address, w) for k, w in zip(KEYS, [5, 1, 1, 1], strict=True)]
    )
    assert designated_verifiers(weighted, 0) == {0}  # 5 > f = 2 alone
    assert designated_verifiers(weighted, 1) == {1, 2, 3}
    assert designated_verifiers(weighted, 3) == {3, 0}
    assert designated_verifiers(VALIDATORS, 4) == frozenset()  # not a member


def test_power_not_count_decides_the_quorum() -> None:
    weighted = ValidatorSet(
        [Validator(k.address, w) for k, w in zip(KEYS, [5, 1, 1, 1], strict=True)]
    )
    # quorum = floor(2 * 8 / 3) + 1 = 6: validator 0 and any one other
    verify_certificate(weighted, SEPARATOR, cert_of([0, 3]), recover)
    with pytest.raises(InsufficientPower):
        verify_certificate(weighted, SEPARATOR, cert_of([1, 2, 3]), recover)
    collector = AckCollector(weighted, BATCH, 1, 5)
    assert collector.add(ack(1)) is None
    assert collector.add(ack(2)) is None
    assert collector.add(ack(3)) is None
    formed = collector.add(ack(0))
    assert formed is not None and formed.signers == [0, 1, 2, 3]
    verify_certificate(weighted, SEPARATOR, formed, recover)


def test_the_collector_waits_for_verified_power_and_prefers_verified_acks() -> None:
    collector = AckCollector(VALIDATORS, BATCH, 1, 5)
    assert collector.add(ack(1)) is None  # the author's own, verified
    assert collector.add(ack(2, verified=False)) is None
    assert collector.add(ack(3, verified=False)) is None  # a quorum, 1 verified: not yet
    assert collector.add(ack(3, verified=False)) is None
    formed = collector.add(ack(3, verified=True))  # 3's verified ack replaces its other
    assert formed is not None
    assert formed.signers == [1, 2, 3] and formed.verified == [True, False, True]
    verify_certificate(VALIDATORS, SEPARATOR, formed, recover)
    # A later unverified ack never replaces a verified one.
    again = AckCollector(VALIDATORS, BATCH, 1, 5)
    for a in (ack(0), ack(1, verified=True), ack(1, verified=False)):
        assert again.add(a) is None
    formed = again.add(ack(2, verified=False))
    assert formed is not None and formed.verified == [True, True, False]


def test_the_collector_forms_one_sorted_certificate_at_the_quorum() -> None:
    collector = AckCollector(VALIDATORS, BATCH, 1, 5)
    assert collector.add(ack(3)) is None
    assert collector.add(ack(3)) is None  # a repeated ack counts once
    assert collector.add(ack(1, round_=6)) is None  # another round: ignored
    assert collector.add(ack(0)) is None
    formed = collector.add(ack(2))
    assert formed is not None
    assert formed.signers == [0, 2, 3]
    verify_certificate(VALIDATORS, SEPARATOR, formed, recover)


def test_the_book_orders_by_first_view_and_knows_what_is_overdue() -> None:
    book = CertificateBook(limit=3)
    a, b, c = (cert_of([0, 1, 2], bytes([i]) * 32) for i in (1, 2, 3))
    assert book.add(b, view=4)
    assert book.add(a, view=6)
    assert not book.add(b, view=9)  # held since view 4 still
    assert book.add(c, view=5)
    assert [h.certificate.batch for h in book.oldest_first()] == [b.batch, c.batch, a.batch]
    assert [h.certificate.batch for h in book.overdue(7, 2)] == [b.batch, c.batch]
    assert book.overdue(5, 2) == []
    book.add(cert_of([0, 1, 2], b"\x09" * 32), view=7)  # over the limit: the first in goes
    assert b.batch not in book and len(book) == 3
    book.drop([c.batch])
    assert c.batch not in book


def test_the_book_counts_overdue_in_views_and_in_time() -> None:
    book = CertificateBook()
    a, b = cert_of([0, 1, 2], b"\x0a" * 32), cert_of([0, 1, 2], b"\x0b" * 32)
    assert book.add(a, view=2, now_ms=1_000)
    assert book.add(b, view=2, now_ms=1_400)
    assert book.overdue(9, 2, now_ms=1_499, delay_ms=500) == []
    assert [h.certificate.batch for h in book.overdue(9, 2, now_ms=1_500, delay_ms=500)] == [
        a.batch
    ]
    assert len(book.overdue(9, 2, now_ms=1_900, delay_ms=500)) == 2
    assert book.overdue(3, 2, now_ms=60_000, delay_ms=500) == []


POOL = [PrivateKey(keccak256(b"cert-prop-%d" % i)) for i in range(7)]


@settings(max_examples=150, deadline=None)
@given(
    weights=st.lists(st.integers(1, 10), min_size=1, max_size=7),
    picks=st.lists(st.tuples(st.integers(0, 6), st.booleans()), max_size=10),
)
def test_any_certificate_verifies_exactly_when_quorum_and_more_than_f_verified(
    weights: list[int], picks: list[tuple[int, bool]]
) -> None:
    """For any weights and any acks (signer, verified flag), in any order: the
    collector forms a certificate exactly when the acks so far hold a quorum
    and their verified part more than f; a certificate built from any subset
    verifies exactly then; and every author's designated verifiers are a
    smallest run (author, author+1, ...) holding more than f."""
    validators = ValidatorSet(
        [Validator(k.address, w) for k, w in zip(POOL[: len(weights)], weights, strict=True)]
    )
    n, f = len(weights), validators.max_faulty_weight

    def power(signers: set[int]) -> int:
        return validators.weight_of([ValidatorIndex(i) for i in sorted(signers)])

    for author in range(n):
        run = designated_verifiers(validators, author)
        assert power(set(run)) > f
        ordered = [(author + k) % n for k in range(len(run))]
        assert set(ordered) == run and power(set(ordered[:-1])) <= f

    collector = AckCollector(validators, BATCH, 0, 5)
    held: dict[int, bool] = {}
    for signer, verified in picks:
        if signer >= n:
            continue
        a = sign_ack(POOL[signer], SEPARATOR, signer, BATCH, 0, 5, verified)
        formed = collector.add(a)
        held[signer] = held.get(signer, False) or verified
        ok = power(set(held)) >= validators.quorum_weight and (
            power({i for i, v in held.items() if v}) > f
        )
        assert (formed is not None) == ok
        if formed is not None:
            assert formed.signers == sorted(held)
            assert formed.verified == [held[i] for i in formed.signers]
            verify_certificate(validators, SEPARATOR, formed, recover)

    signers = sorted(held)
    if signers:
        flags = [held[i] for i in signers]
        sigs = [
            sign_ack(POOL[i], SEPARATOR, i, BATCH, 0, 5, v).signature
            for i, v in zip(signers, flags, strict=True)
        ]
        cert = BatchCertificate(BATCH, 0, 5, signers, sigs, flags)
        quorum = power(set(signers)) >= validators.quorum_weight
        enough = power({i for i, v in zip(signers, flags, strict=True) if v}) > f
        if quorum and enough:
            verify_certificate(validators, SEPARATOR, cert, recover)
        else:
            with pytest.raises(InsufficientPower if not quorum else InsufficientVerifiedPower):
                verify_certificate(validators, SEPARATOR, cert, recover)
