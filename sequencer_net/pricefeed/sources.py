"""Price sources: what a validator reports for each listed market.

A source answers `read(markets, now_s)` with a `Quote(price, volatility)` (wad
integers) for each market id it knows; markets it does not know, or whose value
it could not get, are left out (the validator reports the others). The
volatility is the option's implied volatility, 0 for a perpetual.

The file and HTTP sources read a JSON document and find each market's values
by a dotted path (`data.BTC.last`; a number as a path part indexes a list);
each market's path defaults to `<market id>.price` and `<market id>.volatility`,
so a document like {"1": {"price": "60000.5"}, "3": {"price": "3000",
"volatility": "0.6"}} needs no mapping. Values may be JSON numbers or decimal
strings; they are converted to wad exactly (no binary floats on the way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, Protocol

import httpx

from sequencer_net.execution.fixed_point import SCALE
from sequencer_net.execution.limits import MAX_AMOUNT, MAX_VOLATILITY
from sequencer_net.execution.records import MarketKind, MarketParams
from sequencer_net.json_input import JsonTooDeep, loads_bounded
from sequencer_net.pricefeed.walk import SharedPriceWalk

MAX_DOCUMENT_BYTES: Final = 1 << 20
"""A price document larger than 1 MiB is refused (a feed is small)."""

MAX_DOCUMENT_DEPTH: Final = 32
"""Arrays and objects nested deeper are refused before parsing (json_input.py)."""


class PriceSourceError(Exception):
    """The source could not answer (unreadable file, HTTP failure, bad JSON)."""


@dataclass(frozen=True, slots=True)
class Quote:
    price: int
    volatility: int


class PriceSource(Protocol):
    async def read(self, markets: Mapping[int, MarketParams], now_s: int) -> dict[int, Quote]: ...

    async def aclose(self) -> None: ...


def to_wad(value: Any, what: str) -> int:
    """A JSON number or decimal string as a wad integer (rounded down to 10**-18)."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise PriceSourceError(f"{what}: {value!r} is not a number")
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise PriceSourceError(f"{what}: {value!r} is not a number") from None
    if not number.is_finite():
        raise PriceSourceError(f"{what}: {value!r} is not a finite number")
    return int((number * SCALE).to_integral_value(rounding="ROUND_FLOOR"))


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted path; PriceSourceError if it is not there."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PriceSourceError(f"{path}: no {part!r} in the document")
    return node


@dataclass(frozen=True, slots=True)
class MarketPaths:
    """Where one market's values are in the document: a price path, and a
    volatility path or a constant (wad)."""

    price: str
    volatility: str | None = None
    constant_volatility: int | None = None


def parse_mapping(prices: Sequence[str], volatilities: Sequence[str]) -> dict[int, MarketPaths]:
    """`["1=data.BTC.price"]` and `["3=0.6", "4=iv.eth"]` (a decimal is a constant
    volatility, anything else a path) -> paths per market id. ValueError if an
    entry is malformed."""

    def split(entry: str, what: str) -> tuple[int, str]:
        market, sep, rest = entry.partition("=")
        if not sep or not market.strip().isdigit() or not rest.strip():
            raise ValueError(f"{what}: {entry!r} must look like MARKET_ID=VALUE")
        return int(market), rest.strip()

    mapping: dict[int, MarketPaths] = {}
    for entry in prices:
        market, path = split(entry, "prices")
        if market in mapping:
            raise ValueError(f"prices: market {market} is listed twice")
        mapping[market] = MarketPaths(price=path)
    for entry in volatilities:
        market, value = split(entry, "volatilities")
        base = mapping.get(market, MarketPaths(price=f"{market}.price"))
        try:
            constant = to_wad(value, "volatility")
        except PriceSourceError:
            mapping[market] = MarketPaths(base.price, volatility=value)
        else:
            mapping[market] = MarketPaths(base.price, constant_volatility=constant)
    return mapping


def quotes_from_document(
    document: Any, markets: Mapping[int, MarketParams], mapping: Mapping[int, MarketPaths]
) -> tuple[dict[int, Quote], list[str]]:
    """The quotes the document gives for the listed markets, and what was missing."""
    quotes: dict[int, Quote] = {}
    problems: list[str] = []
    for market_id in sorted(markets):
        params = markets[market_id]
        paths = mapping.get(market_id, MarketPaths(price=f"{market_id}.price"))
        option = params.kind == MarketKind.OPTION
        try:
            price = to_wad(lookup(document, paths.price), f"market {market_id} price")
            volatility = 0
            if option:
                if paths.constant_volatility is not None:
                    volatility = paths.constant_volatility
                else:
                    where = paths.volatility or f"{market_id}.volatility"
                    volatility = to_wad(lookup(document, where), f"market {market_id} volatility")
        except PriceSourceError as exc:
            problems.append(str(exc))
            continue
        if not 0 < price <= MAX_AMOUNT or not 0 <= volatility <= MAX_VOLATILITY:
            problems.append(f"market {market_id}: price or volatility out of range")
            continue
        if option and volatility == 0:
            problems.append(f"market {market_id}: an option needs a volatility")
            continue
        quotes[market_id] = Quote(price, volatility)
    return quotes, problems


def parse_document(data: bytes, where: str) -> Any:
    """The JSON document `data` (from `where`); PriceSourceError if it is too
    large, too deeply nested or not JSON. Floats parse as exact decimals."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise PriceSourceError(f"{where}: larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return loads_bounded(data, max_depth=MAX_DOCUMENT_DEPTH, parse_float=Decimal)
    except JsonTooDeep as exc:
        raise PriceSourceError(f"{where}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise PriceSourceError(f"{where}: not JSON ({exc})") from None


@dataclass
class FileSource:
    """Prices from a JSON file, re-read at every report."""

    path: Path
    mapping: Mapping[int, MarketPaths] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    async def read(self, markets: Mapping[int, MarketParams], now_s: int) -> dict[int, Quote]:
        try:
            with open(self.path, "rb") as file:
                data = file.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as exc:
            raise PriceSourceError(f"{self.path}: cannot read: {exc.strerror}") from None
        quotes, self.problems = quotes_from_document(
            parse_document(data, str(self.path)), markets, self.mapping
        )
        return quotes

    async def aclose(self) -> None:
        return None


@dataclass
class HttpSource:
    """Prices from a JSON document at a URL, fetched at every report."""

    url: str
    mapping: Mapping[int, MarketPaths] = field(default_factory=dict)
    timeout_s: float = 2.0
    problems: list[str] = field(default_factory=list)
    _client: httpx.AsyncClient | None = None

    async def read(self, markets: Mapping[int, MarketParams], now_s: int) -> dict[int, Quote]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=True)
        try:
            response = await self._client.get(self.url)
        except httpx.HTTPError as exc:
            raise PriceSourceError(f"{self.url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise PriceSourceError(f"{self.url}: HTTP {response.status_code}")
        quotes, self.problems = quotes_from_document(
            parse_document(response.content, self.url), markets, self.mapping
        )
        return quotes

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


@dataclass(frozen=True, slots=True)
class SimulatedMarket:
    underlying: str
    start_price: int
    volatility: int


class SimulatedSource:
    """The testnet's shared walk (walk.SharedPriceWalk) for known markets: every
    validator with the same seed reports the same price for the same second."""

    def __init__(self, seed: int, markets: Mapping[int, SimulatedMarket]) -> None:
        self.markets = dict(markets)
        self.problems: list[str] = []
        self._walks: dict[str, SharedPriceWalk] = {}
        for market in self.markets.values():
            if market.underlying not in self._walks:
                self._walks[market.underlying] = SharedPriceWalk(
                    seed, market.underlying, market.start_price
                )

    def price(self, market_id: int, unix_s: int) -> int:
        return self._walks[self.markets[market_id].underlying].price_at(unix_s)

    async def read(self, markets: Mapping[int, MarketParams], now_s: int) -> dict[int, Quote]:
        return {
            market_id: Quote(self.price(market_id, now_s), self.markets[market_id].volatility)
            for market_id in sorted(markets)
            if market_id in self.markets
        }

    async def aclose(self) -> None:
        return None


def local_simulated_source(seed: int) -> SimulatedSource:
    """The simulated source for the markets a local genesis lists."""
    from sequencer_net.home.local_markets import local_markets

    return SimulatedSource(
        seed,
        {
            m.market_id: SimulatedMarket(m.underlying, m.start_price, m.volatility)
            for m in local_markets(0)
        },
    )
