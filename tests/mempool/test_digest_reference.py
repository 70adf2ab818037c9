"""`transaction_digest` and the typed `struct_hash` against the code they
replaced (kept here as the reference): the same digest or the same error, with
the same message, for every input, plain and typed, in range or not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import keccak256
from consensus.encoding import Domain, word
from sequencer_net.execution.transactions import DEX_NAMESPACE, TxPayload, encode_payload
from sequencer_net.mempool.limits import MAX_FEE, MAX_NAMESPACE, MAX_NONCE
from sequencer_net.mempool.transaction import TX_TYPEHASH, transaction_digest
from sequencer_net.mempool.typed import (
    TYPED_ACTIONS,
    action_fields,
    struct_hash,
    type_hash,
    typed_action,
)

_INT_BOUND = 1 << 255


def reference_encode_value(value: Any, eip712_type: str) -> bytes:
    if eip712_type == "bool":
        return word(1 if value else 0)
    if eip712_type == "int256":
        number = int(value)
        if not -_INT_BOUND <= number < _INT_BOUND:
            raise ValueError("an integer field does not fit int256")
        return (number % (1 << 256)).to_bytes(32, "big")
    if eip712_type == "bytes32":
        return bytes(value)
    return keccak256(bytes(value))


def reference_struct_hash(nonce: int, fee: int, action: TxPayload) -> bytes:
    kind = type(action)
    encoded = b"".join(
        reference_encode_value(getattr(action, field), eip712_type)
        for field, _, eip712_type in action_fields(kind)
    )
    return keccak256(type_hash(kind) + word(nonce) + word(fee) + encoded)


def reference_transaction_digest(
    domain: Domain, nonce: int, namespace: int, fee: int, payload: bytes
) -> bytes:
    if not 0 <= nonce <= MAX_NONCE:
        raise ValueError("nonce out of range")
    if not 0 <= namespace <= MAX_NAMESPACE:
        raise ValueError("namespace out of range")
    if not 0 <= fee <= MAX_FEE:
        raise ValueError("fee out of range")
    if namespace == DEX_NAMESPACE:
        action = typed_action(payload)
        if action is not None:
            return keccak256(
                b"\x19\x01" + domain.separator() + reference_struct_hash(nonce, fee, action)
            )
    struct = keccak256(TX_TYPEHASH + word(nonce) + word(namespace) + word(fee) + keccak256(payload))
    return keccak256(b"\x19\x01" + domain.separator() + struct)


def outcome(function: Callable[..., bytes], *args: Any) -> tuple[str, object]:
    try:
        return ("digest", function(*args))
    except Exception as exc:  # the class and the message are compared
        return (type(exc).__name__, str(exc))


DOMAINS = (
    Domain(1, bytes(20), b"\x01" * 32),
    Domain(7, b"\x02" * 20, b"\x03" * 32),
    Domain(2**64 - 1, b"\x04" * 20, bytes(32)),
)

BOUNDARY = (0, 1, 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64, 2**256, -1)
envelope_ints = st.one_of(st.sampled_from(BOUNDARY), st.integers(min_value=0, max_value=2**64))

wide_ints = st.one_of(
    st.sampled_from((0, 1, -1, _INT_BOUND - 1, _INT_BOUND, -_INT_BOUND, -_INT_BOUND - 1)),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.integers(min_value=-(2**260), max_value=2**260),
)


def _field_value(eip712_type: str) -> st.SearchStrategy[Any]:
    if eip712_type == "bool":
        return st.booleans()
    if eip712_type == "int256":
        return wide_ints
    if eip712_type == "bytes32":
        return st.one_of(st.binary(min_size=32, max_size=32), st.binary(max_size=40))
    return st.binary(max_size=40)


@st.composite
def actions(draw: st.DrawFn) -> TxPayload:
    """A typed action with any field values, in int256 or not (built in Python,
    where msgspec checks nothing)."""
    kind = draw(st.sampled_from(TYPED_ACTIONS))
    values = [draw(_field_value(eip712_type)) for _, _, eip712_type in action_fields(kind)]
    return kind(*values)  # type: ignore[no-any-return]


@settings(max_examples=400, deadline=None)
@given(actions(), envelope_ints, envelope_ints)
def test_struct_hash_matches_the_reference(action: TxPayload, nonce: int, fee: int) -> None:
    assert outcome(struct_hash, nonce, fee, action) == outcome(
        reference_struct_hash, nonce, fee, action
    )


def _wire_value(info: Any) -> st.SearchStrategy[Any]:
    """Values a payload field takes on the wire (in its declared bounds)."""
    if isinstance(info, msgspec.inspect.BoolType):
        return st.booleans()
    if isinstance(info, msgspec.inspect.EnumType):
        return st.sampled_from(list(info.cls))
    if isinstance(info, msgspec.inspect.IntType):
        low = -(2**63) if info.ge is None else info.ge
        high = 2**64 - 1 if info.le is None else info.le
        return st.one_of(st.integers(min_value=0, max_value=min(high, 9)), st.integers(low, high))
    assert isinstance(info, msgspec.inspect.BytesType)
    return st.binary(min_size=info.min_length or 0, max_size=info.max_length or 40)


@st.composite
def typed_payloads(draw: st.DrawFn) -> bytes:
    """The canonical payload of a typed action a node accepts."""
    kind = draw(st.sampled_from(TYPED_ACTIONS))
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return encode_payload(kind(*[draw(_wire_value(field.type)) for field in info.fields]))


payloads = st.one_of(
    st.binary(max_size=200),
    typed_payloads(),
    typed_payloads().map(lambda data: data[:-1]),
)


@settings(max_examples=100, deadline=None)
@given(typed_payloads())
def test_typed_payloads_decode_as_typed_actions(payload: bytes) -> None:
    """The payloads generated for the digest test reach the typed path."""
    assert typed_action(payload) is not None


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(DOMAINS),
    envelope_ints,
    st.one_of(st.just(DEX_NAMESPACE), envelope_ints),
    envelope_ints,
    payloads,
)
def test_transaction_digest_matches_the_reference(
    domain: Domain, nonce: int, namespace: int, fee: int, payload: bytes
) -> None:
    assert outcome(transaction_digest, domain, nonce, namespace, fee, payload) == outcome(
        reference_transaction_digest, domain, nonce, namespace, fee, payload
    )


def test_equal_domains_that_are_different_objects_give_their_own_digests() -> None:
    first, second = DOMAINS[0], DOMAINS[1]
    copy = Domain(first.chain_id, first.verifying_contract, first.genesis_hash)
    digests = [transaction_digest(domain, 1, 5, 2, b"x") for domain in (first, second, copy)]
    assert digests[0] == digests[2] != digests[1]
    assert digests[1] == reference_transaction_digest(second, 1, 5, 2, b"x")
