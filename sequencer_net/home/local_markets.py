"""The markets a local testnet lists at genesis, and the prices its load starts from.

`seqnet testnet up` writes these into genesis (`make_local_genesis(markets=...)`)
and its load generator trades them (sequencer_net.testnet.market):

| id | name        | kind   | underlying | tick | lot   | initial / maintenance margin | funding |
|----|-------------|--------|------------|------|-------|-----------------------------|---------|
| 1  | BTC-PERP    | perp   | BTC 60,000 | 1    | 0.001 | 5% / 3.5% (up to 20x)       | 60 s    |
| 2  | ETH-PERP    | perp   | ETH 3,000  | 0.1  | 0.01  | 5% / 3.5% (up to 20x)       | 60 s    |
| 3  | ETH-C-3000  | option | ETH        | 0.1  | 0.1   | scenarios + floor 1.5%/0.8% | -       |
| 4  | ETH-P-3000  | option | ETH        | 0.1  | 0.1   | scenarios + floor 1.5%/0.8% | -       |

Options are European, cash-settled, strike 3,000, expiring OPTION_TENOR_S after
genesis, priced by the engine at the posted implied volatility (60%). Both ETH
options declare the underlying ETH_UNDERLYING (the ETH-PERP market id), so a
subaccount's calls and puts are margined together as one portfolio (a spread
needs at most its maximum loss); the margin fractions set the floor a short
option needs (a tenth of them, in spot), the scenario grid does the rest.
Funding settles every 60 s so that a session of a few minutes shows it accrue
(a production venue uses an hour or eight). Every `tick * lot` is a whole
multiple of 10**18, as the engine requires (exact fill notionals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sequencer_net.execution.fixed_point import SCALE
from sequencer_net.execution.genesis import GenesisMarket
from sequencer_net.execution.records import MarketKind, MarketParams, OptionKind, OptionTerms

W: Final = SCALE

OPTION_TENOR_S: Final = 30 * 86_400
"""Options expire 30 days after genesis: longer than any local session."""

OPTION_VOLATILITY: Final = 6 * W // 10
"""Implied volatility (60% per sqrt year) the testnet load posts for options."""

ETH_UNDERLYING: Final = 2
"""The ETH options' underlying id: by convention the market id of ETH-PERP."""

FUNDING_INTERVAL_S: Final = 60
ORACLE_STALENESS_S: Final = 60
"""A price is usable for a minute: the load posts every second, so a stalled
load (or a paused node) stops trading within a minute, not at once."""


@dataclass(frozen=True, slots=True)
class LocalMarket:
    """One listed market: its id, a display name, what its oracle prices and its
    parameters. Markets with the same `underlying` share one oracle price walk."""

    market_id: int
    name: str
    underlying: str
    start_price: int  # wad: where the underlying's price walk starts
    volatility: int  # wad: implied volatility posted for an option; 0 for a perp
    params: MarketParams

    @property
    def is_option(self) -> bool:
        return self.params.kind == MarketKind.OPTION


def _perp(tick: int, lot: int, initial: int, maintenance: int) -> MarketParams:
    return MarketParams(
        kind=MarketKind.PERPETUAL,
        tick_size=tick,
        lot_size=lot,
        initial_margin=initial,
        maintenance_margin=maintenance,
        maker_fee=W // 10_000,  # 1 bp
        taker_fee=5 * W // 10_000,  # 5 bp
        liquidation_fee=W // 100,  # 1%
        funding_interval=FUNDING_INTERVAL_S,
        funding_clamp=W // 100,  # 1% of the index per interval
        mark_band=W // 20,  # 5%
        oracle_staleness=ORACLE_STALENESS_S,
        risk_free_rate=0,
        option=None,
    )


def _option(kind: OptionKind, strike: int, expiry: int) -> MarketParams:
    return MarketParams(
        kind=MarketKind.OPTION,
        tick_size=W // 10,
        lot_size=W // 10,
        initial_margin=15 * W // 100,
        maintenance_margin=8 * W // 100,
        maker_fee=0,
        taker_fee=3 * W // 10_000,  # 3 bp of premium notional
        liquidation_fee=W // 100,
        funding_interval=0,
        funding_clamp=0,
        mark_band=W // 2,  # market orders reach 50% around the Black-Scholes mark
        oracle_staleness=ORACLE_STALENESS_S,
        risk_free_rate=5 * W // 100,
        option=OptionTerms(
            option_kind=kind, strike=strike, expiry=expiry, underlying=ETH_UNDERLYING
        ),
    )


def local_markets(genesis_time_s: int) -> tuple[LocalMarket, ...]:
    """The testnet's markets for a chain that starts at `genesis_time_s` (unix s)."""
    expiry = genesis_time_s + OPTION_TENOR_S
    strike = 3_000 * W
    return (
        LocalMarket(
            1, "BTC-PERP", "BTC", 60_000 * W, 0, _perp(W, W // 1000, W // 20, 35 * W // 1000)
        ),
        LocalMarket(
            2, "ETH-PERP", "ETH", 3_000 * W, 0, _perp(W // 10, W // 100, W // 20, 35 * W // 1000)
        ),
        LocalMarket(
            3,
            "ETH-C-3000",
            "ETH",
            3_000 * W,
            OPTION_VOLATILITY,
            _option(OptionKind.CALL, strike, expiry),
        ),
        LocalMarket(
            4,
            "ETH-P-3000",
            "ETH",
            3_000 * W,
            OPTION_VOLATILITY,
            _option(OptionKind.PUT, strike, expiry),
        ),
    )


def genesis_markets(markets: tuple[LocalMarket, ...]) -> tuple[GenesisMarket, ...]:
    return tuple(GenesisMarket(market.market_id, market.params) for market in markets)


def market_names(markets: tuple[LocalMarket, ...]) -> dict[int, str]:
    return {market.market_id: market.name for market in markets}
