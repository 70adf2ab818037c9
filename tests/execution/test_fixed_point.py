"""Tests for sequencer_net.execution.fixed_point: rounding rules, decimal strings,
and the transcendentals against 100-digit mpmath references."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction

import mpmath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sequencer_net.execution.fixed_point import (
    EXP_MAX_ARGUMENT,
    MAX_DECIMAL_LENGTH,
    SCALE,
    Rounding,
    div_down,
    div_up,
    exp,
    format_decimal,
    ln,
    mul_div,
    mul_down,
    mul_up,
    norm_cdf,
    norm_pdf,
    parse_decimal,
    rescale,
    sqrt,
    wad,
)


@pytest.fixture(autouse=True, scope="module")
def _mpmath_precision() -> Iterator[None]:
    """Every mpmath operation in this module runs at 100 significant digits."""
    with mpmath.workdps(100):
        yield


PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)
WADS = st.integers(min_value=-(10**40), max_value=10**40)
NONZERO_WADS = WADS.filter(lambda x: x != 0)


def exact(value: mpmath.mpf, scale: int) -> mpmath.mpf:
    """The exact value expressed in units of 1/scale (what a perfect function returns)."""
    return value * scale


def ulps(got: int, reference: mpmath.mpf) -> mpmath.mpf:
    return abs(mpmath.mpf(got) - reference)


# A result within half a unit of the exact value, give or take the guard-digit
# evaluation error: i.e. rounded to nearest.
NEAREST_BOUND = mpmath.mpf("0.5") + mpmath.mpf("1e-6")


# --------------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    ("a", "b", "c", "rounding", "expected"),
    [
        (7, 1, 2, Rounding.DOWN, 3),
        (7, 1, 2, Rounding.UP, 4),
        (7, 1, 2, Rounding.NEAREST, 4),  # 3.5 -> 4, tie away from zero
        (-7, 1, 2, Rounding.DOWN, -4),  # toward -infinity, not toward zero
        (-7, 1, 2, Rounding.UP, -3),
        (-7, 1, 2, Rounding.NEAREST, -4),  # -3.5 -> -4, tie away from zero
        (7, 1, -2, Rounding.DOWN, -4),
        (5, 1, 3, Rounding.NEAREST, 2),  # 1.67
        (4, 1, 3, Rounding.NEAREST, 1),  # 1.33
        (-4, 1, 3, Rounding.NEAREST, -1),
        (6, 1, 3, Rounding.UP, 2),  # exact quotients are not bumped
        (10**30, 10**30, 10**59, Rounding.DOWN, 10),  # the product is not truncated
    ],
)
def test_mul_div_rounding_rules(a: int, b: int, c: int, rounding: Rounding, expected: int) -> None:
    assert mul_div(a, b, c, rounding) == expected


def test_wad_helpers_round_in_their_stated_direction() -> None:
    third = div_down(SCALE, 3 * SCALE)
    assert third == 333_333_333_333_333_333
    assert div_up(SCALE, 3 * SCALE) == third + 1
    assert div_down(-SCALE, 3 * SCALE) == -third - 1  # toward -infinity
    assert div_up(-SCALE, 3 * SCALE) == -third
    assert mul_down(third, 3 * SCALE) == 999_999_999_999_999_999
    assert mul_down(1, 1) == 0 and mul_up(1, 1) == 1
    assert mul_down(-1, 1) == -1 and mul_up(-1, 1) == 0
    assert mul_down(wad(2), wad(3)) == mul_up(wad(2), wad(3)) == wad(6)
    with pytest.raises(ZeroDivisionError):
        div_down(1, 0)


@PROPERTY
@given(WADS, WADS)
def test_mul_down_and_mul_up_bracket_the_exact_product(a: int, b: int) -> None:
    product = Fraction(a * b, SCALE)
    low, high = mul_down(a, b), mul_up(a, b)
    assert low <= product <= high
    assert high - low == (0 if product.denominator == 1 else 1)


@PROPERTY
@given(WADS, NONZERO_WADS)
def test_div_down_and_div_up_bracket_the_exact_quotient(a: int, b: int) -> None:
    quotient = Fraction(a * SCALE, b)
    low, high = div_down(a, b), div_up(a, b)
    assert low <= quotient <= high
    assert high - low == (0 if quotient.denominator == 1 else 1)
    nearest = mul_div(a, SCALE, b, Rounding.NEAREST)
    assert abs(nearest - quotient) <= Fraction(1, 2)
    if abs(nearest - quotient) == Fraction(1, 2):
        assert abs(nearest) > abs(quotient)  # ties go away from zero


def test_rescale() -> None:
    assert rescale(3, SCALE, 10**20) == 300
    assert rescale(150, 10**20, SCALE) == 2  # 1.5 -> 2
    assert rescale(-150, 10**20, SCALE) == -2
    assert rescale(149, 10**20, SCALE, Rounding.UP) == 2
    assert rescale(-149, 10**20, SCALE, Rounding.DOWN) == -2


# ------------------------------------------------------------- decimal strings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", SCALE),
        ("-2.5", -5 * SCALE // 2),
        ("+0.5", SCALE // 2),
        ("0.000000000000000001", 1),
        ("-0.000000000000000001", -1),
        ("0", 0),
        ("-0", 0),
        ("007.10", 7_100_000_000_000_000_000),
        (
            "123456789012345678901234567890.123456789012345678",
            123456789012345678901234567890123456789012345678,
        ),
    ],
)
def test_parse_decimal_accepts(text: str, expected: int) -> None:
    assert parse_decimal(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        " 1",
        "1 ",
        "1e3",
        "1E-3",
        "inf",
        "nan",
        "1_000",
        ".5",
        "1.",
        ".",
        "-",
        "--1",
        "1.2.3",
        "0x10",
        "١",  # a non-ASCII digit that int() would accept
        "0.0000000000000000001",  # 19 fractional digits
    ],
)
def test_parse_decimal_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_decimal(text)


def test_parse_decimal_error_messages_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="19 fractional digits; at most 18"):
        parse_decimal("0.1234567890123456789")
    with pytest.raises(ValueError, match="no exponents"):
        parse_decimal("1e3")
    with pytest.raises(ValueError, match="longer than"):
        parse_decimal("1" * (MAX_DECIMAL_LENGTH + 1))


@pytest.mark.parametrize(
    ("x", "places", "trim", "expected"),
    [
        (SCALE, 18, False, "1.000000000000000000"),
        (SCALE, 18, True, "1"),
        (-5 * SCALE // 2, 18, True, "-2.5"),
        (1, 18, False, "0.000000000000000001"),
        (5 * SCALE // 1000, 2, False, "0.01"),  # 0.005 -> 0.01: half away from zero
        (-5 * SCALE // 1000, 2, False, "-0.01"),
        (4 * SCALE // 1000, 2, False, "0.00"),
        (-4 * SCALE // 1000, 2, False, "0.00"),  # no "-0.00"
        (-4 * SCALE // 1000, 2, True, "0"),
        (15 * SCALE // 10, 0, False, "2"),
        (-15 * SCALE // 10, 0, False, "-2"),
        (1_234_500_000_000_000_000, 3, True, "1.235"),
        (1_200_000_000_000_000_000, 3, False, "1.200"),
    ],
)
def test_format_decimal(x: int, places: int, trim: bool, expected: str) -> None:
    assert format_decimal(x, places, trim=trim) == expected


def test_format_decimal_rejects_bad_places() -> None:
    for places in (-1, 19):
        with pytest.raises(ValueError):
            format_decimal(1, places)


@PROPERTY
@given(WADS, st.booleans())
def test_decimal_round_trip_is_exact(x: int, trim: bool) -> None:
    assert parse_decimal(format_decimal(x, trim=trim)) == x


# --------------------------------------------------------------- transcendentals

ARGUMENTS = [
    -40,
    -12.5,
    -8,
    -6.000001,
    -6,
    -5.999999,
    -3,
    -1,
    -0.3,
    -(10**-18),
    0,
    10**-18,
    0.25,
    1,
    2.5,
    5.999999,
    6,
    6.5,
    9,
    20,
]


def as_scaled(value: float | int, scale: int) -> int:
    # Test-side only: turn a literal into an exact multiple of 1/scale via its
    # decimal repr, so the reference sees exactly the integer the code sees.
    return int(mpmath.mpf(repr(value)) * scale)


@pytest.mark.parametrize("scale", [SCALE, 10**50])
@pytest.mark.parametrize(
    ("function", "reference"),
    [
        (norm_cdf, mpmath.ncdf),
        (norm_pdf, mpmath.npdf),
        (exp, mpmath.exp),
    ],
    ids=["norm_cdf", "norm_pdf", "exp"],
)
def test_transcendental_is_rounded_to_nearest(
    function: Callable[[int, int], int],
    reference: Callable[[mpmath.mpf], mpmath.mpf],
    scale: int,
) -> None:
    for value in ARGUMENTS:
        x = as_scaled(value, scale)
        expected = exact(reference(mpmath.mpf(x) / scale), scale)
        assert ulps(function(x, scale), expected) <= NEAREST_BOUND, (function.__name__, value)


@pytest.mark.parametrize("scale", [SCALE, 10**50])
def test_ln_is_rounded_to_nearest(scale: int) -> None:
    for x in [1, 2, 3, scale // 2 - 1, scale - 1, scale, scale + 1, 2 * scale, 10**70, 7 * 10**99]:
        expected = exact(mpmath.log(mpmath.mpf(x) / scale), scale)
        assert ulps(ln(x, scale), expected) <= NEAREST_BOUND, x


@PROPERTY
@given(st.integers(min_value=-50 * SCALE, max_value=50 * SCALE))
def test_exp_and_norm_cdf_random_arguments(x: int) -> None:
    arg = mpmath.mpf(x) / SCALE
    assert ulps(exp(x), exact(mpmath.exp(arg), SCALE)) <= NEAREST_BOUND
    assert ulps(norm_cdf(x), exact(mpmath.ncdf(arg), SCALE)) <= NEAREST_BOUND


@PROPERTY
@given(st.integers(min_value=1, max_value=10**60))
def test_ln_random_arguments(x: int) -> None:
    assert ulps(ln(x), exact(mpmath.log(mpmath.mpf(x) / SCALE), SCALE)) <= NEAREST_BOUND


def test_exp_of_large_argument_keeps_every_digit() -> None:
    # e**200 has 87 integer digits; the error must stay below an ulp, not a
    # relative 1e-30 of the value.
    x = 200 * SCALE
    assert ulps(exp(x), exact(mpmath.exp(200), SCALE)) <= NEAREST_BOUND


def test_tail_probabilities_keep_relative_accuracy() -> None:
    # At scale 10**60, N(-x) for x from 6 to 30 must come out with ~all its
    # significant digits, which 1 - N(x) evaluated by a series could not give.
    scale = 10**60
    for x_units in (6, 7, 8.5, 10, 15, 20, 30):
        x = as_scaled(x_units, scale)
        expected = exact(mpmath.ncdf(-mpmath.mpf(x) / scale), scale)
        got = norm_cdf(-x, scale)
        assert ulps(got, expected) <= NEAREST_BOUND, x_units
        if expected > 10**15:  # enough significant digits to talk about relative error
            assert abs(got - expected) / expected < mpmath.mpf("1e-15"), x_units
    # At wad scale, N(-6) ~ 9.8659e-10 is exact to the last digit.
    assert norm_cdf(-6 * SCALE) == 986_587_645
    assert format_decimal(norm_cdf(-6 * SCALE)) == "0.000000000986587645"


@PROPERTY
@given(st.integers(min_value=-40 * SCALE, max_value=40 * SCALE))
def test_norm_cdf_symmetry_and_monotonicity(x: int) -> None:
    assert abs(norm_cdf(x) + norm_cdf(-x) - SCALE) <= 1
    assert norm_cdf(x) <= norm_cdf(x + SCALE // 1000)
    assert 0 <= norm_cdf(x) <= SCALE


def test_norm_cdf_at_the_working_precision_of_the_pricer() -> None:
    # options_pricing evaluates N at scale 10**50 (62 working digits); the
    # continued fraction's term count must suffice there too, right at the
    # branch point 6 and beyond.
    scale = 10**50
    for x_units in ("-6", "-6.0000001", "-6.5", "-7.25", "-9", "-14", "5.9999999", "6", "7"):
        x = int(mpmath.mpf(x_units) * scale)
        expected = exact(mpmath.ncdf(mpmath.mpf(x) / scale), scale)
        assert ulps(norm_cdf(x, scale), expected) <= NEAREST_BOUND, x_units


@PROPERTY
@given(st.integers(min_value=0, max_value=10**60))
def test_sqrt_is_the_exact_floor(x: int) -> None:
    root = sqrt(x)
    assert root * root <= x * SCALE < (root + 1) * (root + 1)


def test_exp_ln_round_trip() -> None:
    for x in (1, 10**9, SCALE, 3 * SCALE + 7, 10**30):
        high = 10**40  # round-trip at 22 digits beyond a wad, compare at wad
        back = exp(ln(x * 10**22, high), high)
        assert rescale(back, high, SCALE) == x


def test_domain_errors() -> None:
    with pytest.raises(ValueError):
        ln(0)
    with pytest.raises(ValueError):
        ln(-1)
    with pytest.raises(ValueError):
        sqrt(-1)
    with pytest.raises(OverflowError):
        exp((EXP_MAX_ARGUMENT + 1) * SCALE)
    with pytest.raises(ValueError, match="power of ten"):
        exp(1, scale=12345)
    assert exp(-(10**9) * SCALE) == 0  # far underflow returns 0 at once
    assert norm_cdf(-(10**30) * SCALE) == 0 and norm_cdf(10**30 * SCALE) == SCALE
    assert exp(0) == SCALE and ln(SCALE) == 0 and sqrt(4 * SCALE) == 2 * SCALE
    assert norm_cdf(0) == SCALE // 2
