"""Canonical encoding and transaction signing."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sequencer_net.execution.encoding import (
    NonCanonicalEncoding,
    decode_canonical,
    encode,
    to_wire,
)
from sequencer_net.execution.exceptions import BadSignature, MalformedTransaction
from sequencer_net.execution.records import Position
from sequencer_net.execution.transactions import (
    ListMarket,
    SignedTransaction,
    Transfer,
    TxEnvelope,
    recover_transaction,
    sign_transaction,
    signing_digest,
)
from tests.execution.execution_harness import CHAIN_ID, W, key, perp_params, sub

big_ints = st.integers(min_value=-(2**200), max_value=2**200)


@given(a=big_ints, b=big_ints, c=big_ints, d=big_ints)
def test_big_integers_round_trip_canonically(a: int, b: int, c: int, d: int) -> None:
    value = Position(a, b, c, d)
    data = encode(value)
    assert decode_canonical(data, Position) == value
    # The fast path (msgspec native) and the slow path agree wherever both apply.
    assert data == msgspec.msgpack.encode(to_wire(value))


def test_small_integer_written_as_extension_is_rejected() -> None:
    sneaky = msgspec.msgpack.encode([msgspec.msgpack.Ext(1, (5).to_bytes(1, "big")), 0, 0, 0])
    with pytest.raises(NonCanonicalEncoding):
        decode_canonical(sneaky, Position)


def test_non_minimal_msgpack_is_rejected() -> None:
    canonical = encode(Position(1, 2, 3, 4))
    padded = b"\x94\xcd\x00\x01" + canonical[2:]  # 1 written as uint16
    assert msgspec.msgpack.decode(padded) == [1, 2, 3, 4]
    with pytest.raises(NonCanonicalEncoding):
        decode_canonical(padded, Position)


def test_signed_transaction_recovers_its_sender_and_binds_the_chain() -> None:
    alice = key("alice")
    tx = sign_transaction(alice, CHAIN_ID, 3, Transfer(0, sub("bob"), 10 * W))
    recovered = recover_transaction(tx)
    assert recovered.sender == alice.address
    assert recovered.envelope == TxEnvelope(CHAIN_ID, 3, Transfer(0, sub("bob"), 10 * W))
    other = sign_transaction(alice, CHAIN_ID + 1, 3, Transfer(0, sub("bob"), 10 * W))
    assert signing_digest(other.envelope) != signing_digest(tx.envelope)


def test_same_payload_and_nonce_from_two_senders_has_two_hashes() -> None:
    payload = Transfer(0, sub("carol"), W)
    a = recover_transaction(sign_transaction(key("alice"), CHAIN_ID, 0, payload))
    b = recover_transaction(sign_transaction(key("bob"), CHAIN_ID, 0, payload))
    assert a.tx_hash != b.tx_hash  # order ids must not collide across senders


def test_tampered_or_garbage_transactions_are_named_failures() -> None:
    tx = sign_transaction(key("alice"), CHAIN_ID, 0, ListMarket(1, perp_params()))
    changed = bytearray(tx.envelope)
    changed[-1] ^= 1
    with pytest.raises((BadSignature, MalformedTransaction)):
        recovered = recover_transaction(SignedTransaction(bytes(changed), tx.signature))
        assert recovered.sender != key("alice").address
        raise BadSignature("recovered someone else")
    with pytest.raises(MalformedTransaction):
        recover_transaction(SignedTransaction(b"\xc1", tx.signature))
    with pytest.raises(BadSignature):
        recover_transaction(SignedTransaction(tx.envelope, tx.signature[:64]))
