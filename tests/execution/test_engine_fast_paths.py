"""The engine's shortcuts give exactly what the plain computations give.

- `decode_payload` converts a payload as the struct its tag names and falls
  back to the union: same value, or the same MalformedTransaction message.
- `norm_cdf_pair(x)` is (norm_cdf(x), norm_cdf(-x)).
- `black_scholes_value` is `black_scholes(...).price`, raising the same way.
"""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sequencer_net.execution.encoding import NonCanonicalEncoding, decode_canonical, encode
from sequencer_net.execution.exceptions import MalformedTransaction
from sequencer_net.execution.fixed_point import SCALE, norm_cdf, norm_cdf_pair
from sequencer_net.execution.options_pricing import (
    OptionType,
    black_scholes,
    black_scholes_value,
)
from sequencer_net.execution.records import TimeInForce
from sequencer_net.execution.transactions import (
    CancelOrder,
    CancelOrderByClientId,
    Deposit,
    L1DepositReport,
    ListMarket,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    SetMarketPaused,
    Transfer,
    TxPayload,
    Withdraw,
    decode_payload,
)
from tests.execution.execution_harness import W, perp_params, sub


def union_decode(data: bytes) -> TxPayload:
    """`decode_payload` as it was: the whole union converted by msgspec."""
    try:
        return decode_canonical(data, TxPayload, bounded_ints=True)  # type: ignore[arg-type]
    except (NonCanonicalEncoding, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedTransaction(str(exc)[:160]) from exc
    except Exception as exc:
        raise MalformedTransaction(f"undecodable payload ({type(exc).__name__})") from exc


def outcome(decode: object, data: bytes) -> tuple[str, object]:
    try:
        return "ok", decode(data)  # type: ignore[operator]
    except MalformedTransaction as exc:
        return "malformed", str(exc)


PAYLOADS = [
    Deposit(sub("alice"), 5 * W),
    Withdraw(1, 3 * W, bytes(20)),
    Withdraw(0, 2**70, bytes(20), bytes(20)),
    Transfer(0, sub("bob"), 10 * W),
    PlaceOrder(3, 2**32 - 1, 1, 0, W, TimeInForce.IMMEDIATE_OR_CANCEL, False, True),
    PlaceOrder(0, 2, 0, 7 * W, W, TimeInForce.GOOD_TILL_CANCEL, True, False, 9, 10**9, 1, W),
    CancelOrder(0, 1, bytes(range(32))),
    OracleUpdate(1_700_000_000, (OraclePrice(1, 3000 * W, W // 2), OraclePrice(2, W, 0))),
    ListMarket(1, perp_params()),
    SetMarketPaused(4, True),
    CancelOrderByClientId(2, 77),
    L1DepositReport(5, sub("carol"), bytes(20), 2**255 - 1),
]


def test_every_payload_kind_decodes_as_through_the_union() -> None:
    for payload in PAYLOADS:
        data = encode(payload)
        assert decode_payload(data) == payload
        assert outcome(decode_payload, data) == outcome(union_decode, data)


def test_tampered_payloads_fail_with_the_unions_message() -> None:
    rng = random.Random(7)
    cases = [
        b"",
        b"\xc1",
        b"\x91" * 999,
        encode([99, 1, 2]),
        encode([True, sub("alice"), W]),  # a bool where the tag goes
        encode([4, 0, 1, 0, W, W, 0, False, False, 0]),  # a default written out
        encode([5, 0, 2**32, bytes(32)]),
        encode([1, bytes(21), 2**300]),
        encode({"a": 1}),
        encode([]),
        encode(5),
    ]
    for payload in PAYLOADS:
        data = encode(payload)
        cases += [data[:-1], data + b"\x00"]
        for _ in range(40):
            flipped = bytearray(data)
            flipped[rng.randrange(len(data))] = rng.randrange(256)
            cases.append(bytes(flipped))
        fields = msgspec.msgpack.decode(data)
        cases.append(encode([fields[0] % 17 + 1, *fields[1:]]))  # another kind's tag
    for data in cases:
        assert outcome(decode_payload, data) == outcome(union_decode, data), data.hex()


@settings(max_examples=300, deadline=None)
@given(
    x=st.one_of(
        st.integers(min_value=-12 * SCALE, max_value=12 * SCALE),
        st.integers(min_value=-(10**21), max_value=10**21),
        st.sampled_from([0, 6 * SCALE, -6 * SCALE, 6 * SCALE - 1, 1 - 6 * SCALE]),
    ),
    internal=st.booleans(),
)
def test_norm_cdf_pair_is_both_signs_of_norm_cdf(x: int, internal: bool) -> None:
    scale = 10**50 if internal else SCALE
    if internal:
        x *= 10**32
    assert norm_cdf_pair(x, scale) == (norm_cdf(x, scale), norm_cdf(-x, scale))


def _same(call: object, *args: object) -> tuple[str, object]:
    try:
        return "ok", call(*args)  # type: ignore[operator]
    except Exception as exc:
        return type(exc).__name__, str(exc)


@settings(max_examples=200, deadline=None)
@given(
    kind=st.sampled_from([OptionType.CALL, OptionType.PUT]),
    spot=st.integers(min_value=-W, max_value=10**23),
    strike=st.integers(min_value=-W, max_value=10**23),
    years=st.one_of(st.just(0), st.integers(min_value=-1, max_value=5 * SCALE)),
    rate=st.one_of(
        st.integers(min_value=-SCALE, max_value=SCALE),
        st.integers(min_value=-(10**24), max_value=-(10**21)),  # exp(-r T) may overflow
    ),
    volatility=st.integers(min_value=-W, max_value=4 * SCALE),
)
def test_black_scholes_value_is_the_price_of_black_scholes(
    kind: OptionType, spot: int, strike: int, years: int, rate: int, volatility: int
) -> None:
    args = (kind, spot, strike, years, rate, volatility)
    full = _same(lambda *a: black_scholes(*a).price, *args)
    assert _same(black_scholes_value, *args) == full


def test_black_scholes_value_of_a_grid_shares_terms_and_matches() -> None:
    """A call and a put at the same inputs, over a grid of spots and
    volatilities (as the margin grids use them), twice (memo filled)."""
    strike, years, rate = 3000 * W, W // 12, W // 20
    for _ in range(2):
        for spot in (2500 * W, 2999 * W, 3000 * W, 3450 * W):
            for vol in (W // 100, W // 2, 3 * W // 2):
                for kind in (OptionType.CALL, OptionType.PUT):
                    args = (kind, spot, strike, years, rate, vol)
                    assert black_scholes_value(*args) == black_scholes(*args).price


@pytest.mark.parametrize("kind", [OptionType.CALL, OptionType.PUT])
def test_black_scholes_value_at_expiry_is_intrinsic(kind: OptionType) -> None:
    for spot in (W, 3000 * W, 4000 * W):
        args = (kind, spot, 3000 * W, 0, W // 20, W // 2)
        assert black_scholes_value(*args) == black_scholes(*args).price
