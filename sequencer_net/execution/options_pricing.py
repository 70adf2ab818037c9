"""Black-Scholes marks and greeks for European options, in integer fixed point.

The engine marks option positions (for margin and for the settlement preview)
with the Black-Scholes model: European exercise, no dividends, a constant
continuously compounded rate. Inputs and outputs are wads (``10**18`` = 1.0,
see ``fixed_point``); nothing here uses binary floating point, so every
validator computes the same quote to the last unit.

Internally everything is evaluated at ``INTERNAL_SCALE = 10**50`` (32 digits
beyond a wad) and each output is rounded once to the nearest wad, ties away
from zero. The result is within 0.5 wad ulp (plus ~1e-20 ulp) of the exact
Black-Scholes value for the inputs as given; docs/execution.md (option pricing) states
the accuracy rule the tests enforce.

Units of ``OptionQuote`` (for one option on one unit of the underlying):

* ``price``: quote currency per unit of underlying.
* ``delta``: dV/dS, dimensionless (call in [0, 1], put in [-1, 0]).
* ``gamma``: d2V/dS2, per unit of spot (per quote-currency unit of price).
* ``vega``: dV/dsigma per 1.00 of volatility (100 vol points); divide by 100
  for the change per vol point.
* ``theta``: dV/dt per year of calendar time, t running forward, i.e.
  ``-dV/dT``. Negative means the option loses value as time passes (decay);
  divide by 365 for a per-day figure.
* ``rho``: dV/dr per 1.00 of rate (10,000 basis points).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from sequencer_net.execution.fixed_point import (
    SCALE,
    Rounding,
    exp,
    format_decimal,
    ln,
    mul_div,
    norm_cdf,
    norm_cdf_pair,
    norm_pdf,
    rescale,
    sqrt,
)

__all__ = [
    "INTERNAL_SCALE",
    "SECONDS_PER_YEAR",
    "InvalidOptionParameters",
    "OptionQuote",
    "OptionType",
    "black_scholes",
    "black_scholes_value",
    "years_from_seconds",
]

SECONDS_PER_YEAR: Final = 31_536_000
"""The engine's year: 365 days of 86,400 s (no leap years, no day counts)."""

INTERNAL_SCALE: Final = 10**50
"""Working scale of the pricing formulas (a wad times 10**32)."""

_TO_INTERNAL: Final = INTERNAL_SCALE // SCALE


class OptionType(enum.Enum):
    CALL = "call"
    PUT = "put"


class InvalidOptionParameters(ValueError):
    """Inputs outside the model's domain (non-positive spot, strike or
    volatility, negative time, a rate so large that exp(-r T) overflows)."""


@dataclass(frozen=True, slots=True)
class OptionQuote:
    """Black-Scholes value and greeks, all wads; units in the module docstring."""

    price: int
    delta: int
    gamma: int
    vega: int
    theta: int
    rho: int


def years_from_seconds(seconds: int) -> int:
    """Seconds as a wad number of 365-day years, rounded toward -infinity."""
    return (seconds * SCALE) // SECONDS_PER_YEAR  # floor


def _validate(
    spot: int, strike: int, time_to_expiry_years: int, rate: int, volatility: int
) -> None:
    """Raise ``InvalidOptionParameters`` at the first input outside the domain."""
    fields = {
        "spot": spot,
        "strike": strike,
        "time_to_expiry_years": time_to_expiry_years,
        "rate": rate,
        "volatility": volatility,
    }
    for name, value in fields.items():
        # Guards determinism: a binary float (or a bool) here is a caller bug.
        if type(value) is not int:
            raise InvalidOptionParameters(f"{name} must be an int wad, got {type(value).__name__}")
    if spot <= 0:
        raise InvalidOptionParameters(
            f"spot must be positive, got {format_decimal(spot, trim=True)}"
        )
    if strike <= 0:
        raise InvalidOptionParameters(
            f"strike must be positive, got {format_decimal(strike, trim=True)}"
        )
    if volatility <= 0:
        raise InvalidOptionParameters(
            f"volatility must be positive, got {format_decimal(volatility, trim=True)}"
        )
    if time_to_expiry_years < 0:
        raise InvalidOptionParameters(
            "time_to_expiry_years must not be negative, got "
            + format_decimal(time_to_expiry_years, trim=True)
        )


def _at_expiry(option_type: OptionType, spot: int, strike: int) -> OptionQuote:
    """The t == 0 quote: intrinsic value, a step delta, every other greek 0.

    Exactly at the money the delta is the limit of N(d1) as t -> 0 with
    r = 0, i.e. 1/2 for a call and -1/2 for a put, which keeps
    delta_call - delta_put = 1 (put-call parity differentiated in spot).
    """
    half = SCALE // 2
    if option_type is OptionType.CALL:
        price = max(spot - strike, 0)
        delta = SCALE if spot > strike else (half if spot == strike else 0)
    else:
        price = max(strike - spot, 0)
        delta = -SCALE if spot < strike else (-half if spot == strike else 0)
    return OptionQuote(price=price, delta=delta, gamma=0, vega=0, theta=0, rho=0)


def _to_wad(x: int) -> int:
    """Internal-scale value to wad, rounded to nearest, ties away from zero."""
    return rescale(x, INTERNAL_SCALE, SCALE, Rounding.NEAREST)


def black_scholes(
    option_type: OptionType,
    spot: int,
    strike: int,
    time_to_expiry_years: int,
    rate: int,
    volatility: int,
) -> OptionQuote:
    """Black-Scholes price and greeks of a European option (all arguments wads).

    With s = sigma sqrt(T), d1 = (ln(S/K) + (r + sigma**2/2) T) / s, d2 = d1 - s,
    D = K exp(-r T):

    * price: call S N(d1) - D N(d2); put D N(-d2) - S N(-d1)
    * delta: call N(d1); put -N(-d1)
    * gamma: phi(d1) / (S s), both types
    * vega: S phi(d1) sqrt(T), both types
    * theta: call -S phi(d1) sigma / (2 sqrt(T)) - r D N(d2);
      put -S phi(d1) sigma / (2 sqrt(T)) + r D N(-d2)
    * rho: call T D N(d2); put -T D N(-d2)

    Puts use N(-d) directly (a tail computed without cancellation), never
    1 - N(d). ``time_to_expiry_years == 0`` returns the intrinsic value (see
    ``_at_expiry``). Raises ``InvalidOptionParameters`` for spot, strike or
    volatility <= 0, negative time, non-int inputs, or |r T| > 1000.
    """
    _validate(spot, strike, time_to_expiry_years, rate, volatility)
    if time_to_expiry_years == 0:
        return _at_expiry(option_type, spot, strike)

    hp = INTERNAL_SCALE
    terms = _d_terms(spot, strike, time_to_expiry_years, rate, volatility)
    s_, t_, r_, sigma, sqrt_t, sigma_sqrt_t, d1, d2, discounted_strike = terms
    density = norm_pdf(d1, hp)

    gamma = (density * hp * hp) // (s_ * sigma_sqrt_t)
    vega = (s_ * density * sqrt_t) // (hp * hp)
    time_decay = -((s_ * density * sigma) // (2 * sqrt_t * hp))

    if option_type is OptionType.CALL:
        n_d1 = norm_cdf(d1, hp)
        n_d2 = norm_cdf(d2, hp)
        price = (s_ * n_d1 - discounted_strike * n_d2) // hp
        delta = n_d1
        theta = time_decay - (r_ * discounted_strike * n_d2) // (hp * hp)
        rho = (t_ * discounted_strike * n_d2) // (hp * hp)
    else:
        n_minus_d1 = norm_cdf(-d1, hp)
        n_minus_d2 = norm_cdf(-d2, hp)
        price = (discounted_strike * n_minus_d2 - s_ * n_minus_d1) // hp
        delta = -n_minus_d1
        theta = time_decay + (r_ * discounted_strike * n_minus_d2) // (hp * hp)
        rho = -((t_ * discounted_strike * n_minus_d2) // (hp * hp))

    return OptionQuote(
        # The exact price is >= 0; an internal error of ~1e-50 can only make a
        # zero price a hair negative, which rounds to 0 anyway: max() makes
        # the guarantee explicit.
        price=max(_to_wad(price), 0),
        delta=_to_wad(delta),
        gamma=_to_wad(gamma),
        vega=_to_wad(vega),
        theta=_to_wad(theta),
        rho=_to_wad(rho),
    )


def black_scholes_value(
    option_type: OptionType,
    spot: int,
    strike: int,
    time_to_expiry_years: int,
    rate: int,
    volatility: int,
) -> int:
    """`black_scholes(...).price`: the same integer, raising the same way,
    without the greeks (the engine values options by price only).

    The parts a call and a put at the same inputs share (N(d1) with N(-d1),
    N(d2) with N(-d2), the discounted strike) are computed once for both
    (`_price_terms`), ln(S/K) once per spot and strike and exp(-r T) once per
    rate and time: a scenario grid re-values one option at many spots and
    volatilities. Each of those is a pure function of its integer arguments,
    evaluated exactly as `black_scholes` does."""
    _validate(spot, strike, time_to_expiry_years, rate, volatility)
    if time_to_expiry_years == 0:
        return _at_expiry(option_type, spot, strike).price
    terms = _price_terms(spot, strike, time_to_expiry_years, rate, volatility)
    s_, discounted_strike, n_d1, n_minus_d1, n_d2, n_minus_d2 = terms
    if option_type is OptionType.CALL:
        price = (s_ * n_d1 - discounted_strike * n_d2) // INTERNAL_SCALE
    else:
        price = (discounted_strike * n_minus_d2 - s_ * n_minus_d1) // INTERNAL_SCALE
    return max(_to_wad(price), 0)


_PRICE_TERMS_MEMO: Final = 4_096
"""Argument sets whose `_price_terms` are remembered (each a few 50-digit ints)."""


@lru_cache(maxsize=_PRICE_TERMS_MEMO)
def _price_terms(
    spot: int, strike: int, time_to_expiry_years: int, rate: int, volatility: int
) -> tuple[int, int, int, int, int, int]:
    """(S, K exp(-r T), N(d1), N(-d1), N(d2), N(-d2)) at the internal scale,
    each step as in `black_scholes` (validated inputs, T > 0)."""
    hp = INTERNAL_SCALE
    terms = _d_terms(spot, strike, time_to_expiry_years, rate, volatility)
    s_, _, _, _, _, _, d1, d2, discounted_strike = terms
    n_d1, n_minus_d1 = norm_cdf_pair(d1, hp)
    n_d2, n_minus_d2 = norm_cdf_pair(d2, hp)
    return s_, discounted_strike, n_d1, n_minus_d1, n_d2, n_minus_d2


def _d_terms(
    spot: int, strike: int, time_to_expiry_years: int, rate: int, volatility: int
) -> tuple[int, int, int, int, int, int, int, int, int]:
    """(S, T, r, sigma, sqrt(T), sigma sqrt(T), d1, d2, K exp(-r T)) at the
    internal scale (validated inputs, T > 0): what the price and the greeks
    start from. Every // is a floor at the internal scale: its error is one
    unit of 10**-50, 32 digits below the final rounding to the nearest wad."""
    hp = INTERNAL_SCALE
    s_ = spot * _TO_INTERNAL
    t_ = time_to_expiry_years * _TO_INTERNAL
    r_ = rate * _TO_INTERNAL
    sigma = volatility * _TO_INTERNAL
    sqrt_t = sqrt(t_, hp)
    sigma_sqrt_t = (sigma * sqrt_t) // hp
    log_moneyness = _log_moneyness(spot, strike)
    drift = ((r_ + (sigma * sigma) // (2 * hp)) * t_) // hp
    d1 = ((log_moneyness + drift) * hp) // sigma_sqrt_t
    d2 = d1 - sigma_sqrt_t
    discounted_strike = (strike * _TO_INTERNAL * _discount(r_, t_)) // hp
    return s_, t_, r_, sigma, sqrt_t, sigma_sqrt_t, d1, d2, discounted_strike


@lru_cache(maxsize=_PRICE_TERMS_MEMO)
def _log_moneyness(spot: int, strike: int) -> int:
    """ln(S/K) at the internal scale, as `black_scholes` computes it."""
    return ln(mul_div(spot, INTERNAL_SCALE, strike, Rounding.DOWN), INTERNAL_SCALE)


@lru_cache(maxsize=256)
def _discount(r_: int, t_: int) -> int:
    """exp(-r T) at the internal scale (r, T at the internal scale), as
    `black_scholes` computes it."""
    hp = INTERNAL_SCALE
    try:
        return exp(-((r_ * t_) // hp), hp)
    except OverflowError as exc:
        raise InvalidOptionParameters("rate * time is too negative: exp(-r T) overflows") from exc
