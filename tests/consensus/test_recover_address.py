"""`recover_address` against the reference it replaced (coincurve's PublicKey
round trip, integer range checks): the same address or the same error, with
the same message, for every input."""

from __future__ import annotations

import threading
from collections.abc import Callable

import coincurve
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consensus.crypto import (
    SECP256K1_N,
    Address,
    InvalidSignature,
    PrivateKey,
    address_of_public_key,
    recover_address,
)

HALF_N = SECP256K1_N // 2


def reference_recover_address(digest: bytes, signature: bytes) -> Address:
    """recover_address as it was before it called libsecp256k1 directly."""
    if len(digest) != 32:
        raise InvalidSignature("digest must be 32 bytes")
    if len(signature) != 65:
        raise InvalidSignature("signature must be 65 bytes")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise InvalidSignature("signature v must be 27 or 28")
    if not (0 < r < SECP256K1_N) or not (0 < s <= HALF_N):
        raise InvalidSignature("signature r or s out of range (high s is rejected)")
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([v - 27]), digest, hasher=None
        )
    except Exception as exc:
        raise InvalidSignature("signature does not recover a public key") from exc
    return address_of_public_key(public_key)


def outcome(
    recover: Callable[[bytes, bytes], Address], digest: bytes, signature: bytes
) -> tuple[str, object]:
    try:
        return ("address", recover(digest, signature))
    except Exception as exc:  # the class and the message are compared
        return (type(exc).__name__, str(exc))


def assert_same(digest: bytes, signature: bytes) -> None:
    assert outcome(recover_address, digest, signature) == outcome(
        reference_recover_address, digest, signature
    )


SPECIAL: tuple[int, ...] = (0, 1, HALF_N - 1, HALF_N, HALF_N + 1)
SPECIAL += (SECP256K1_N - 1, SECP256K1_N, SECP256K1_N + 1, 2**256 - 1, 2**255, 2**248)

scalars = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(min_value=0, max_value=2**256 - 1),
    st.integers(min_value=1, max_value=HALF_N),
)
secrets = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda k: k.to_bytes(32, "big"))
digests = st.binary(min_size=32, max_size=32)


@st.composite
def signed(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A valid signature, then maybe one of its parts replaced."""
    digest = draw(digests)
    signature = PrivateKey(draw(secrets)).sign_digest(digest)
    r, s, v = signature[:32], signature[32:64], signature[64]
    change = draw(st.sampled_from(("none", "r", "s", "v", "high s", "digest")))
    if change == "r":
        r = draw(scalars).to_bytes(32, "big")
    elif change == "s":
        s = draw(scalars).to_bytes(32, "big")
    elif change == "v":
        v = draw(st.integers(min_value=0, max_value=255))
    elif change == "high s":
        s = (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")
        v ^= 1 if v in (27, 28) else 0
    elif change == "digest":
        digest = draw(digests)
    return digest, r + s + bytes([v])


@st.composite
def garbage(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """Any r, s and v, often unrecoverable (an r that is no point's x)."""
    r = draw(scalars).to_bytes(32, "big")
    s = draw(scalars).to_bytes(32, "big")
    v = draw(st.one_of(st.sampled_from((27, 28)), st.integers(min_value=0, max_value=255)))
    return draw(digests), r + s + bytes([v])


@settings(max_examples=400, deadline=None)
@given(signed())
def test_valid_and_altered_signatures_match_the_reference(case: tuple[bytes, bytes]) -> None:
    assert_same(*case)


@settings(max_examples=400, deadline=None)
@given(garbage())
@example((bytes(32), bytes(64) + b"\x1b"))
@example((bytes(32), SECP256K1_N.to_bytes(32, "big") + (1).to_bytes(32, "big") + b"\x1c"))
@example((b"\x01" * 32, (1).to_bytes(32, "big") + HALF_N.to_bytes(32, "big") + b"\x1b"))
def test_garbage_signatures_match_the_reference(case: tuple[bytes, bytes]) -> None:
    assert_same(*case)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=70), st.binary(max_size=70))
def test_wrong_lengths_match_the_reference(digest: bytes, signature: bytes) -> None:
    assert_same(digest, signature)


def test_an_unrecoverable_r_is_rejected_as_the_reference_rejects_it() -> None:
    # x = 5 is not on secp256k1 (5**3 + 7 = 132 is not a square mod p)
    signature = (5).to_bytes(32, "big") + (1).to_bytes(32, "big") + b"\x1b"
    assert outcome(recover_address, bytes(32), signature) == (
        "InvalidSignature",
        "signature does not recover a public key",
    )
    assert_same(bytes(32), signature)


class _Bytes(bytes):
    pass


@settings(max_examples=100, deadline=None)
@given(signed(), st.sampled_from((bytearray, memoryview, _Bytes)), st.booleans())
def test_other_buffer_types_match_the_reference(
    case: tuple[bytes, bytes], kind: type, wrap_digest: bool
) -> None:
    digest, signature = case
    if wrap_digest:
        assert_same(kind(digest), signature)
    else:
        assert_same(digest, kind(signature))


def test_threads_recover_concurrently_with_their_own_buffers() -> None:
    keys = [PrivateKey(bytes([index + 1]) * 32) for index in range(4)]
    digests_ = [bytes([index]) * 32 for index in range(50)]
    wrong: list[tuple[int, int]] = []

    def work(index: int) -> None:
        key = keys[index]
        for round_ in range(4):
            for number, digest in enumerate(digests_):
                if recover_address(digest, key.sign_digest(digest)) != key.address:
                    wrong.append((index, round_ * 100 + number))

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert wrong == []
