"""Deterministic decimal fixed-point arithmetic for the execution engine.

Every amount, price, quantity, rate and volatility in the engine is a plain
Python ``int`` in *wad* units: the integer ``SCALE = 10**18`` means 1.0.
There is no binary floating point anywhere in a state transition: every
operation below is exact integer arithmetic, so all validators compute
bit-identical results on any machine.

Rounding vocabulary (used by every function that divides):

* ``Rounding.DOWN``: toward -infinity (floor). ``-1.5 -> -2``.
* ``Rounding.UP``: toward +infinity (ceiling). ``-1.5 -> -1``.
* ``Rounding.NEAREST``: to the nearest integer, ties away from zero.
  ``2.5 -> 3``, ``-2.5 -> -3``.

Transcendental functions (``ln``, ``exp``, ``norm_cdf``, ``norm_pdf``) take an
optional ``scale`` (a power of ten, default ``SCALE``). They evaluate at
``scale * 10**GUARD_DIGITS`` and round the result once to the nearest unit of
``scale``, so the returned value is within 0.5 ulp (plus a ~1e-20 ulp
evaluation error) of the exact value. ``sqrt`` is exact: the floor of the true
square root. The algorithms and the reasons for them are in
docs/execution.md (option pricing).
"""

from __future__ import annotations

import enum
import re
from functools import lru_cache
from math import isqrt  # exact integer square root (no floating point involved)
from typing import Final, NewType

__all__ = [
    "EXP_MAX_ARGUMENT",
    "GUARD_DIGITS",
    "MAX_DECIMAL_LENGTH",
    "SCALE",
    "SCALE_DIGITS",
    "Rounding",
    "Wad",
    "div_down",
    "div_up",
    "exp",
    "format_decimal",
    "ln",
    "mul_div",
    "mul_down",
    "mul_up",
    "norm_cdf",
    "norm_cdf_pair",
    "norm_pdf",
    "parse_decimal",
    "rescale",
    "sqrt",
    "wad",
]

SCALE_DIGITS: Final = 18
SCALE: Final = 10**SCALE_DIGITS
"""One wad: the integer that represents 1.0."""

Wad = NewType("Wad", int)
"""An ``int`` interpreted as a multiple of 10**-18. Purely documentary: all
functions here accept and return plain ints so callers need no casts."""

GUARD_DIGITS: Final = 12
"""Extra decimal digits carried by the transcendental functions before the
single final rounding. Each internal step errs by at most a few units of the
working scale, so 12 digits leave the result far inside 0.5 ulp + 1e-9 ulp."""

EXP_MAX_ARGUMENT: Final = 1000
"""``exp(x)`` raises ``OverflowError`` for x > 1000 (e**1000 ~ 1.97e434): a
bound on the size of the integers a hostile input can make the engine build."""

MAX_DECIMAL_LENGTH: Final = 100
"""Longest string ``parse_decimal`` accepts (bounds the work done on input)."""


class Rounding(enum.Enum):
    """How a division that is not exact picks an integer result."""

    DOWN = "down"  # toward -infinity (floor)
    UP = "up"  # toward +infinity (ceiling)
    NEAREST = "nearest"  # nearest integer, ties away from zero


# --------------------------------------------------------------------------
# Exact integer division with an explicit rounding rule
# --------------------------------------------------------------------------


def _divide(numerator: int, denominator: int, rounding: Rounding) -> int:
    """``numerator / denominator`` rounded by ``rounding``; exact for any signs."""
    if denominator == 0:
        raise ZeroDivisionError("fixed-point division by zero")
    if rounding is Rounding.DOWN:
        return numerator // denominator  # Python's // is floor division
    if rounding is Rounding.UP:
        return -((-numerator) // denominator)  # ceil(n/d) == -floor(-n/d)
    # NEAREST, ties away from zero: floor((2|n| + |d|) / (2|d|)) with the sign
    # of the true quotient.
    negative = (numerator < 0) != (denominator < 0)
    magnitude = (2 * abs(numerator) + abs(denominator)) // (2 * abs(denominator))
    return -magnitude if negative else magnitude


def mul_div(a: int, b: int, c: int, rounding: Rounding = Rounding.DOWN) -> int:
    """Exact ``a * b / c`` rounded once by ``rounding`` (the product is not truncated)."""
    return _divide(a * b, c, rounding)


def mul_down(a: int, b: int) -> int:
    """Wad product ``a * b / SCALE`` rounded toward -infinity."""
    return (a * b) // SCALE


def mul_up(a: int, b: int) -> int:
    """Wad product ``a * b / SCALE`` rounded toward +infinity."""
    return -((-a * b) // SCALE)


def div_down(a: int, b: int) -> int:
    """Wad quotient ``a * SCALE / b`` rounded toward -infinity."""
    return _divide(a * SCALE, b, Rounding.DOWN)


def div_up(a: int, b: int) -> int:
    """Wad quotient ``a * SCALE / b`` rounded toward +infinity."""
    return _divide(a * SCALE, b, Rounding.UP)


def rescale(x: int, from_scale: int, to_scale: int, rounding: Rounding = Rounding.NEAREST) -> int:
    """Convert ``x`` (a multiple of ``1/from_scale``) to a multiple of ``1/to_scale``.

    Exact when ``to_scale`` is a multiple of ``from_scale``; otherwise the
    quotient is rounded by ``rounding``.
    """
    if to_scale % from_scale == 0:
        return x * (to_scale // from_scale)
    return _divide(x * to_scale, from_scale, rounding)


def wad(units: int) -> int:
    """The wad representing the whole number ``units`` (``wad(3) == 3 * 10**18``)."""
    return units * SCALE


# --------------------------------------------------------------------------
# Decimal strings
# --------------------------------------------------------------------------

_DECIMAL_RE: Final = re.compile(r"([+-]?)([0-9]+)(?:\.([0-9]+))?", re.ASCII)


def parse_decimal(text: str) -> int:
    """Parse a plain decimal string into a wad, exactly.

    Accepts an optional sign, ASCII digits, and an optional ``.`` followed by
    1 to 18 digits: ``"1"``, ``"-2.5"``, ``"+0.000000000000000001"``. Rejects
    (with ``ValueError``) empty strings, whitespace, exponents (``"1e3"``),
    ``"inf"``/``"nan"``, underscores, a bare ``"."`` or ``"1."``, more than 18
    fractional digits (that would need rounding, and input is never silently
    rounded) and strings longer than ``MAX_DECIMAL_LENGTH``.
    """
    if len(text) > MAX_DECIMAL_LENGTH:
        raise ValueError(f"decimal string longer than {MAX_DECIMAL_LENGTH} characters")
    match = _DECIMAL_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"not a plain decimal number: {text!r} (expected digits with an optional sign "
            "and an optional '.' fraction, e.g. '-2.5'; no exponents or spaces)"
        )
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    if len(fraction) > SCALE_DIGITS:
        raise ValueError(
            f"{text!r} has {len(fraction)} fractional digits; at most {SCALE_DIGITS} fit a wad"
        )
    value = int(whole) * SCALE + int(fraction.ljust(SCALE_DIGITS, "0") or "0")
    return -value if sign == "-" else value


def format_decimal(x: int, places: int = SCALE_DIGITS, *, trim: bool = False) -> str:
    """Render the wad ``x`` as a decimal string with ``places`` fractional digits.

    When ``places < 18`` the value is rounded to the nearest multiple of
    ``10**-places``, ties away from zero. ``trim=True`` strips trailing zeros
    (and the ``.`` if nothing is left after it). A result that rounds to zero
    never carries a minus sign. With ``places=18`` the output is exact and
    ``parse_decimal(format_decimal(x)) == x``.
    """
    if not 0 <= places <= SCALE_DIGITS:
        raise ValueError(f"places must be between 0 and {SCALE_DIGITS}, got {places}")
    units = _divide(x, 10 ** (SCALE_DIGITS - places), Rounding.NEAREST)
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), 10**places)
    if places == 0:
        return f"{sign}{whole}"
    digits = str(fraction).rjust(places, "0")
    if trim:
        digits = digits.rstrip("0")
        if not digits:
            return f"{sign}{whole}"
    return f"{sign}{whole}.{digits}"


# --------------------------------------------------------------------------
# Transcendentals. The ``_*_at`` functions work at a working scale ``w`` (a
# power of ten) and err by a few units of ``w``; every floor division inside
# them is deliberate and its error is absorbed by the guard digits. The public
# wrappers add GUARD_DIGITS and round once to the caller's scale.
# --------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _digits_of(scale: int) -> int:
    """Number of decimal digits ``d`` with ``scale == 10**d``; rejects other scales."""
    digits = len(str(scale)) - 1
    if scale <= 0 or 10**digits != scale:
        raise ValueError(f"scale must be a positive power of ten, got {scale}")
    return digits


@lru_cache(maxsize=16)
def _ln2_at(w: int) -> int:
    """ln 2 at scale ``w``: 2 * atanh(1/3) = sum 2 / ((2k+1) 3**(2k+1)), floored."""
    g = w * 10**8  # eight private guard digits, then one floor to w
    total = 0
    power = g // 3  # floor
    k = 0
    while power:
        total += power // (2 * k + 1)  # floor; each term errs < 1 unit of g
        power //= 9  # floor
        k += 1
    return (2 * total) // 10**8  # floor


@lru_cache(maxsize=16)
def _pi_at(w: int) -> int:
    """pi at scale ``w`` by Machin's formula 16 atan(1/5) - 4 atan(1/239), floored."""
    g = w * 10**8

    def atan_inverse(n: int) -> int:
        # atan(1/n) = sum (-1)^k / ((2k+1) n^(2k+1)); floors err < 1 unit of g each.
        total = 0
        power = g // n
        k = 0
        n2 = n * n
        while power:
            term = power // (2 * k + 1)
            total += -term if k % 2 else term
            power //= n2
            k += 1
        return total

    return (16 * atan_inverse(5) - 4 * atan_inverse(239)) // 10**8  # floor


@lru_cache(maxsize=16)
def _inv_sqrt_2pi_at(w: int) -> int:
    """1 / sqrt(2 pi) at scale ``w`` (error below 2 units of ``w``)."""
    g = w * 10**8
    sqrt_2pi = isqrt(2 * _pi_at(g) * g)  # floor of sqrt(2 pi) at scale g
    return (g * g // sqrt_2pi) // 10**8  # floor, floor


def _exp_at(x: int, w: int, digits: int) -> int:
    """e**x at scale ``w`` (x at scale ``w``); relative error a few units of 1/w.

    Range reduction x = k ln2 + r with |r| <= ln2/2, Taylor series for e**r
    (terms fall below one unit of ``w`` after ~digits/1.5 steps), then an exact
    shift by k. Inputs so negative that e**x < 10**-digits return 0 at once.
    """
    if x > EXP_MAX_ARGUMENT * w:
        raise OverflowError(f"exp argument above {EXP_MAX_ARGUMENT}")
    # 2303/1000 > ln 10, so below this e**x < 10**-digits * e**-10: zero at scale w.
    if 1000 * x < -(2303 * digits + 10_000) * w:
        return 0
    ln2 = _ln2_at(w)
    k = (2 * x + ln2) // (2 * ln2)  # round(x / ln2), floor of x/ln2 + 1/2
    r = x - k * ln2
    total = w
    term = w
    n = 1
    while term:
        # Floors toward -infinity; each term errs < 1 unit. A negative term
        # times a negative r is positive, so the terms still reach 0.
        term = (term * r) // (n * w)
        total += term
        n += 1
    if k >= 0:
        return total << k
    return total >> -k  # floor


def _ln_at(x: int, w: int) -> int:
    """ln x at scale ``w`` (x > 0 at scale ``w``); absolute error a few units of 1/w.

    Write x = m * 2**k with m in [1/sqrt2, sqrt2], then
    ln m = 2 atanh(z), z = (m-1)/(m+1), |z| <= 0.1716, summed as a series
    (each term gains ~1.5 digits).
    """
    k = x.bit_length() - w.bit_length()

    def mantissa(shift: int) -> int:
        return x >> shift if shift >= 0 else x << -shift  # floor when shifting right

    m = mantissa(k)
    while m * m > 2 * w * w:
        k += 1
        m = mantissa(k)
    while 2 * m * m < w * w:
        k -= 1
        m = mantissa(k)
    # The series is summed on |z| (floors of negative numbers would never
    # reach 0 and stop the loop) and the sign applied at the end.
    z = (abs(m - w) * w) // (m + w)  # floor of |z|
    z2 = (z * z) // w  # floor
    total = z
    power = z
    n = 1
    while power:
        power = (power * z2) // w  # floor
        total += power // (2 * n + 1)  # floor
        n += 1
    atanh = total if m >= w else -total
    return 2 * atanh + k * _ln2_at(w)


def _norm_pdf_at(x: int, w: int, digits: int) -> int:
    """phi(x) = exp(-x**2/2) / sqrt(2 pi) at scale ``w``."""
    half_square = (x * x) // (2 * w)  # floor: makes the exponent at most 1 unit too small
    return (_exp_at(-half_square, w, digits) * _inv_sqrt_2pi_at(w)) // w  # floor


# Below this |x| (in units of 1.0) N(x) uses the power series, above it the
# continued fraction for the tail. At |x| = 6 the tail is ~1e-9, so the series'
# final subtraction 1/2 - phi*S cancels at most 9 digits, fewer than
# GUARD_DIGITS; beyond it the fraction is both cheaper and cancellation-free.
_SERIES_LIMIT: Final = 6


def _tail_terms(a: int, w: int, digits: int) -> int:
    """Number of continued-fraction levels for Q(a) to reach ~digits digits.

    The truncation error of the Mills-ratio fraction after n levels behaves
    like exp(-2 a sqrt(n)); n = (digits ln10 / (2a))**2, here with 2.4 > ln 10
    and a floored to whole units, plus a margin of 20, is enough (the test
    suite checks the result against a 50-digit reference).
    """
    a_units = max(a // w, 1)  # floor: fewer whole units -> more levels (safe side)
    need = (24 * digits + 20 * a_units - 1) // (20 * a_units)  # ceil(1.2 digits / a)
    return need * need + 20


def _upper_tail_at(a: int, w: int, digits: int) -> int:
    """Q(a) = 1 - N(a) = N(-a) for a >= _SERIES_LIMIT, with full relative accuracy.

    Q(a) = phi(a) / (a + 1/(a + 2/(a + 3/(a + ...)))) (Laplace's continued
    fraction for the Mills ratio), evaluated bottom-up, which is numerically
    stable. Computing Q directly, never as 1 - N(a), keeps its relative
    accuracy: N(-6) ~ 1e-9 would otherwise keep only the digits that survive
    the subtraction.
    """
    # Q(a) < phi(a) / a < exp(-a**2/2): once a**2/2 > digits ln10 + 10 it is
    # below one unit of w.
    if 1000 * ((a * a) // (2 * w)) > (2303 * digits + 10_000) * w:
        return 0
    denominator = a
    for level in range(_tail_terms(a, w, digits), 0, -1):
        denominator = a + (level * w * w) // denominator  # floor; the recursion damps errors
    return (_norm_pdf_at(a, w, digits) * w) // denominator  # floor


def _norm_cdf_at(x: int, w: int, digits: int) -> int:
    """N(x), the standard normal CDF, at scale ``w``.

    |x| < 6: N(x) = 1/2 + phi(x) * sum_{n>=0} x**(2n+1) / (1*3*5*...*(2n+1)), a
    series of same-signed terms (no cancellation inside the sum).
    |x| >= 6: the tail Q(|x|) by continued fraction; N(x) = Q(-x) for x < 0 and
    1 - Q(x) for x > 0 (that subtraction is harmless: the result is near 1).
    """
    low, high = _norm_cdf_both_at(abs(x), w, digits)
    return high if x >= 0 else low


def _norm_cdf_both_at(a: int, w: int, digits: int) -> tuple[int, int]:
    """(N(-a), N(a)) at scale ``w`` for a >= 0 (`_norm_cdf_at`'s two signs:
    both come from one tail or one series sum)."""
    if a >= _SERIES_LIMIT * w:
        tail = _upper_tail_at(a, w, digits)
        return tail, w - tail
    # The sum is odd in x: accumulate it for |x| and apply the sign at the end.
    x2 = (a * a) // w  # floor
    total = a
    term = a
    n = 1
    while term:
        term = (term * x2) // ((2 * n + 1) * w)  # floor
        total += term
        n += 1
    half_width = (_norm_pdf_at(a, w, digits) * total) // w  # floor: N(|x|) - 1/2
    return w // 2 - half_width, w // 2 + half_width


def _guarded(scale: int) -> tuple[int, int, int]:
    """(working scale, its digit count, 10**GUARD_DIGITS) for a caller's ``scale``."""
    digits = _digits_of(scale) + GUARD_DIGITS
    guard = 10**GUARD_DIGITS
    return scale * guard, digits, guard


def ln(x: int, scale: int = SCALE) -> int:
    """Natural logarithm of ``x`` (a multiple of ``1/scale``), rounded to nearest.

    Raises ``ValueError`` for x <= 0.
    """
    if x <= 0:
        raise ValueError("ln is defined for positive arguments only")
    w, _, guard = _guarded(scale)
    return _divide(_ln_at(x * guard, w), guard, Rounding.NEAREST)


def exp(x: int, scale: int = SCALE) -> int:
    """e**x for ``x`` a multiple of ``1/scale``, rounded to nearest.

    Results below half a unit of ``scale`` are 0. Raises ``OverflowError`` for
    x > EXP_MAX_ARGUMENT.
    """
    w, digits, guard = _guarded(scale)
    if x > 0:
        # e**x has about x log10(e) integer digits and _exp_at's error is
        # relative: carry that many more digits (435/1000 > log10 e) so the
        # absolute error still stays far below one unit of ``scale``.
        extra = 10 ** ((435 * x) // (1000 * scale) + 1)
        w, digits, guard = w * extra, digits + len(str(extra)) - 1, guard * extra
    return _divide(_exp_at(x * guard, w, digits), guard, Rounding.NEAREST)


def sqrt(x: int, scale: int = SCALE) -> int:
    """Square root of ``x`` (a multiple of ``1/scale``), rounded toward -infinity.

    Exact: the result is the largest r with r*r <= x*scale (integer isqrt).
    Raises ``ValueError`` for x < 0.
    """
    if x < 0:
        raise ValueError("sqrt is defined for non-negative arguments only")
    _digits_of(scale)
    return isqrt(x * scale)


def norm_cdf(x: int, scale: int = SCALE) -> int:
    """Standard normal CDF N(x) = P(Z <= x), rounded to nearest.

    Tails are computed directly (continued fraction), not as 1 - N(-x), so
    N(x) for very negative x is accurate to 0.5 ulp of ``scale`` however
    small it is; at wad scale N(-6) = 0.000000000986587645 exactly rounded.
    """
    w, digits, guard = _guarded(scale)
    return _divide(_norm_cdf_at(x * guard, w, digits), guard, Rounding.NEAREST)


def norm_cdf_pair(x: int, scale: int = SCALE) -> tuple[int, int]:
    """(norm_cdf(x, scale), norm_cdf(-x, scale)), the same two integers, from
    one evaluation: N(x) and N(-x) share the series sum (or the tail) of |x|."""
    w, digits, guard = _guarded(scale)
    low, high = _norm_cdf_both_at(abs(x) * guard, w, digits)
    at_x, at_minus_x = (high, low) if x >= 0 else (low, high)  # at 0 low == high
    return (
        _divide(at_x, guard, Rounding.NEAREST),
        _divide(at_minus_x, guard, Rounding.NEAREST),
    )


def norm_pdf(x: int, scale: int = SCALE) -> int:
    """Standard normal density phi(x) = exp(-x**2/2) / sqrt(2 pi), rounded to nearest."""
    w, digits, guard = _guarded(scale)
    return _divide(_norm_pdf_at(x * guard, w, digits), guard, Rounding.NEAREST)
