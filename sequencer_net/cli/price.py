"""`seqnet price ...`: price derivatives with the engine's own fixed-point code.

The numbers printed are exactly what the execution engine computes for a mark
(same integer code path), so this command doubles as a way to check a
validator's marks by hand. Imports only click and the pure execution modules.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from sequencer_net.execution.fixed_point import format_decimal, parse_decimal
from sequencer_net.execution.options_pricing import (
    InvalidOptionParameters,
    OptionType,
    black_scholes,
)

_Command = TypeVar("_Command", bound=Callable[..., Any])

_GREEKS = ("price", "delta", "gamma", "vega", "theta", "rho")

_UNITS = {
    "price": "quote currency per 1 unit of underlying",
    "delta": "dV/dS, dimensionless",
    "gamma": "d2V/dS2, per unit of spot",
    "vega": "per 1.00 (100 vol points) of volatility",
    "theta": "per year of calendar time; negative = decay",
    "rho": "per 1.00 (10,000 bp) of rate",
}


def _parse_wad(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """Click callback: a plain decimal string (``0.2``, ``-1.5``) parsed exactly to a wad."""
    if value is None:
        # Some click versions run callbacks before their required check.
        if param.required:
            raise click.MissingParameter(ctx=ctx, param=param)
        return None
    try:
        return parse_decimal(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def _decimal_option(
    flag: str, help_text: str, default: str | None = None
) -> Callable[[_Command], _Command]:
    """A ``--flag DECIMAL`` option parsed by ``parse_decimal`` (never via binary floats)."""
    return click.option(
        flag,
        type=str,
        metavar="DECIMAL",
        callback=_parse_wad,
        required=default is None,
        default=default,
        show_default=default is not None,
        help=help_text,
    )


@click.group(name="price")
def price() -> None:
    """Price derivatives with the execution engine's fixed-point code.

    All inputs are plain decimal strings (up to 18 fractional digits, no
    exponents); they are parsed exactly, never through binary floating point.
    """


@price.command(name="option")
@click.option(
    "--type",
    "option_type",
    type=click.Choice([t.value for t in OptionType], case_sensitive=False),
    required=True,
    help="call or put (European, cash-settled at expiry).",
)
@_decimal_option("--spot", "Underlying price S (> 0).")
@_decimal_option("--strike", "Strike K (> 0).")
@_decimal_option(
    "--expiry-years",
    "Time to expiry T in 365-day years (>= 0); 30 days = 0.082191780821917808.",
)
@_decimal_option(
    "--rate",
    "Continuously compounded risk-free rate r as a fraction: 0.05 = 5% a year.",
    default="0",
)
@_decimal_option("--vol", "Annualised volatility sigma as a fraction (> 0): 0.2 = 20%.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of decimal strings.")
def option(
    option_type: str,
    spot: int,
    strike: int,
    expiry_years: int,
    rate: int,
    vol: int,
    as_json: bool,
) -> None:
    """Black-Scholes price and greeks of a European option (no dividends).

    \b
    Output, each an exact 18-decimal fixed-point value, rounded to nearest:
      price  quote currency per 1 unit of underlying
      delta  dV/dS, dimensionless
      gamma  d2V/dS2, per unit of spot
      vega   per 1.00 (100 vol points) of volatility; /100 per vol point
      theta  per year of calendar time, negative = decay; /365 per day
      rho    per 1.00 (10,000 bp) of rate

    \b
    Example:
      seqnet price option --type call --spot 100 --strike 100 \\
          --expiry-years 0.5 --rate 0.05 --vol 0.2
    """
    try:
        quote = black_scholes(
            OptionType(option_type.lower()),
            spot=spot,
            strike=strike,
            time_to_expiry_years=expiry_years,
            rate=rate,
            volatility=vol,
        )
    except InvalidOptionParameters as exc:
        raise click.UsageError(str(exc)) from exc
    values = {name: format_decimal(getattr(quote, name)) for name in _GREEKS}
    if as_json:
        click.echo(json.dumps(values))
        return
    width = max(len(v) for v in values.values())
    for name in _GREEKS:
        click.echo(f"{name:<6} {values[name]:>{width}}  {_UNITS[name]}")
