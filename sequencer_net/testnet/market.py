"""Trader traffic: a seeded stream of transactions that makes a real market.

`MarketTraffic` yields `TrafficItem(account, nonce, namespace, payload)` from
its config alone, never from what a node answers, so the stream can be
generated ahead of time and signed in bulk (the benchmark does), or consumed
live (the load generator does); the same seed gives the same stream. The one
thing it needs besides its config is the id of an order it will cancel later,
which is the hash of the signed placing transaction: `TrafficSigner.order_id`
signs that item once and keeps the bytes, so the sender sends what was hashed.

Accounts are the seed's load accounts (accounts.py), indices 0..accounts-1,
and its market operator at index `accounts` (`traffic_keys`). Each account's
nonces count up from its first nonce in the order its items appear. What they
send, for the markets of a local genesis (sequencer_net.home.local_markets):

- the operator: now and then a bridge `Deposit` to a trader. The load sends no
  prices: the validators report them (the oracle is their median), each from
  the seed's simulated walk (sequencer_net.pricefeed.walk), and the traders
  quote around the same walk, computed here from the seed and the time;
- makers (3 in 10 traders): a resting bid and ask per market around that
  price (Black-Scholes for options), amended as the price moves: a
  `CancelOrder` of the old quote followed by a `PlaceOrder` of the new one;
- takers (5 in 10): immediate-or-cancel limit orders and market orders that
  cross the makers' quotes, leaning with a slowly moving per-market sentiment
  (which makes auctions clear off the index; funding accrues from quotes
  that lag the moving index), and
  good-till-cancel limit orders away from the market, cancelled seconds later;
  now and then a `Withdraw`;
- leveraged traders (2 in 10): move a stake from subaccount 0 to a fresh
  subaccount (`Transfer`), open a perpetual position there at 85-98% of the
  maximum leverage with a market order, and close it with a reduce-only market
  order 5-40 s later, unless a price move liquidated it first.

Time: item i is planned at `start_time_s + i / rate`. At the first item
planned at or after second k, the traders' reference prices move to the walk's
price at `start_time_s + k - price_lag_s`: the second the validators' reports
of that moment carry. Scheduled actions (cancels of resting orders, closes) go
out at the first item planned after they are due.

Mixes: "dex" is all of the above; "mixed" makes about one item in five a
rollup blob (random bytes of `payload_bytes` length in `namespace`, see
MIXED_ROLLUP_SHARE); "rollup" is rollup blobs only, round-robin over the
accounts (namespace 0 there is the historical 1-wei DEX transfer).

A blind stream cannot know every fill: a cancel can name a quote that filled
meanwhile, a close can follow a liquidation. The engine rejects those
(`UnknownOrder`, `InvalidOrder`: the fee is paid, nothing else changes); in
the common case everything else succeeds (tests/testnet/test_market_traffic.py
runs the stream through the engine and counts).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from consensus.crypto import PrivateKey
from sequencer_net.execution.auction import Side
from sequencer_net.execution.fixed_point import SCALE
from sequencer_net.execution.options_pricing import OptionType, black_scholes, years_from_seconds
from sequencer_net.execution.records import OptionKind, TimeInForce
from sequencer_net.execution.state import subaccount_id
from sequencer_net.execution.transactions import (
    DEX_NAMESPACE,
    CancelOrder,
    Deposit,
    PlaceOrder,
    Transfer,
    TxPayload,
    Withdraw,
    encode_payload,
)
from sequencer_net.home.local_markets import LocalMarket, local_markets
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.pricefeed.walk import SharedPriceWalk
from sequencer_net.testnet.accounts import load_account_keys, market_operator_key
from sequencer_net.testnet.manifest import MIXES, Mix

MIXED_ROLLUP_SHARE: Final = 0.25
"""In the "mixed" mix, the chance that an item which starts a new action is a
rollup blob instead. Oracle updates, the second half of an amend and
scheduled cancels and closes are never replaced, so about one item in five
(19%) is a blob: most of the chain's traffic is the market, and rollup data
still shares every block with it."""

LEVERED_SUBACCOUNTS: Final = range(1, 256)
"""A leveraged trader opens each position in the next of its subaccounts 1..255
(isolated margin): a liquidation takes only the stake moved there, the
leverage is what was planned whatever earlier cycles left behind, and
subaccount 0 keeps paying fees."""


__all__ = [
    "MIXED_ROLLUP_SHARE",
    "MIXES",
    "MarketTraffic",
    "Mix",
    "TrafficConfig",
    "TrafficItem",
    "TrafficModel",
    "TrafficSigner",
    "market_traffic",
    "presign",
    "traffic_keys",
]


class TrafficItem(NamedTuple):
    """One transaction to sign and send: `account` indexes `traffic_keys`."""

    account: int
    nonce: int
    namespace: int
    payload: bytes


OrderIdOf = Callable[[TrafficItem], bytes]
"""The order id (the hash of the signed transaction) an item will have."""

TxSigner = Callable[[PrivateKey, int, int, bytes], bytes]
"""(account key, nonce, namespace, payload) -> encoded signed transaction."""


@dataclass(frozen=True, slots=True)
class TrafficModel:
    """How the simulated traders behave. Fractions are plain numbers (this is a
    load generator, not the engine); every amount ends up an integer on the
    market's grid before it is encoded."""

    price_interval_s: int = 1
    price_lag_s: int = 1
    """Traders quote around the walk's price this many seconds before the
    planned send time: what the validators, who stamp reports one second back
    (`[oracle] lag_s`), have reported by then."""
    sentiment_step: float = 0.05
    sentiment_max: float = 0.3
    """Takers buy with probability 0.5 + sentiment (per underlying, a bounded walk)."""
    weights: tuple[tuple[str, float], ...] = (
        ("amend", 0.42),
        ("take", 0.36),
        ("rest", 0.08),
        ("lever", 0.10),
        ("deposit", 0.02),
        ("withdraw", 0.02),
    )
    maker_spread_bps: tuple[int, int] = (2, 40)
    maker_notional: tuple[int, int] = (5_000, 50_000)
    """Quote size range, in quote units of underlying notional."""
    taker_notional: tuple[int, int] = (500, 6_000)
    taker_market_order_share: float = 0.5
    taker_slippage_bps: int = 30
    resting_distance_bps: tuple[int, int] = (50, 200)
    resting_life_s: tuple[int, int] = (3, 20)
    lever_stake: int = 2_000
    lever_fraction_of_max: tuple[float, float] = (0.85, 0.98)
    """At 20x maximum, 17-19.6x: a 1.6-2.4% move against the position liquidates it."""
    lever_hold_s: tuple[int, int] = (5, 40)
    deposit_amount: int = 5_000
    withdraw_amount: int = 500
    perp_weight: float = 0.35
    option_weight: float = 0.15
    """How takers and makers pick a market: perpetuals trade more than options."""


@dataclass(frozen=True, slots=True)
class TrafficConfig:
    seed: int = 0
    accounts: int = 100
    mix: Mix = "mixed"
    rate: float = 200.0
    """Planned items per second: places price steps and scheduled actions in time."""
    start_time_s: int = 0
    """Unix seconds when item 0 is sent (the traders' prices follow the walk from it)."""
    genesis_time_s: int | None = None
    """The chain's genesis time: option expiries (and so their prices) follow
    from it. None: the genesis is taken to start at `start_time_s`."""
    namespace: int = 1
    """Namespace of the rollup blobs (uint32)."""
    payload_bytes: tuple[int, int] = (100, 300)
    first_nonces: tuple[int, ...] = ()
    """First nonce of each trader (missing ones start at 0)."""
    operator_nonce: int = 0
    model: TrafficModel = field(default_factory=TrafficModel)

    def __post_init__(self) -> None:
        if self.mix not in MIXES:
            raise ValueError(f"mix must be one of {', '.join(MIXES)}, not {self.mix!r}")
        if not self.rate > 0 or math.isinf(self.rate):
            raise ValueError("traffic needs a positive, finite planned rate")
        if self.accounts <= 0:
            raise ValueError("accounts must be positive")
        if self.mix != "rollup" and self.start_time_s <= self.model.price_lag_s:
            raise ValueError("start_time_s must be a unix time (the price walk follows it)")
        low, high = self.payload_bytes
        if not 0 <= low <= high:
            raise ValueError("payload_bytes must be (min, max) with 0 <= min <= max")

    def markets(self) -> tuple[LocalMarket, ...]:
        genesis = self.start_time_s if self.genesis_time_s is None else self.genesis_time_s
        return local_markets(genesis)


def traffic_keys(seed: int, accounts: int) -> list[PrivateKey]:
    """Keys of a stream's accounts: the load accounts, then the market operator."""
    return [*load_account_keys(seed, accounts), market_operator_key(seed)]


def dex_load_payload(sender: bytes) -> bytes:
    """The "rollup" mix's DEX action: 1 wei from subaccount 0 to subaccount 1."""
    return encode_payload(Transfer(0, subaccount_id(sender, 1), 1))


def rollup_payload(
    rng: random.Random, namespace: int, sender: bytes, sizes: tuple[int, int]
) -> bytes:
    """A rollup blob; in namespace 0 (the DEX) the 1-wei transfer (`dex_load_payload`)."""
    if namespace == DEX_NAMESPACE:
        return dex_load_payload(sender)
    return rng.randbytes(rng.randint(*sizes))


class PriceWalk:
    """One underlying as the traders see it: the seed's shared walk (the price the
    validators report) and a slowly moving sentiment of the takers."""

    def __init__(self, walk: SharedPriceWalk, rng: random.Random, model: TrafficModel) -> None:
        self.walk = walk
        self.rng = rng
        self.model = model
        self.price = walk.start
        self.sentiment = 0.0

    def advance(self, unix_s: int) -> None:
        """Move to the walk's price at `unix_s`, and the sentiment one step."""
        model, rng = self.model, self.rng
        self.price = self.walk.price_at(unix_s)
        self.sentiment += rng.uniform(-model.sentiment_step, model.sentiment_step)
        self.sentiment = max(-model.sentiment_max, min(model.sentiment_max, self.sentiment))


def _order(
    market: LocalMarket,
    side: int,
    price: int,
    quantity: int,
    tif: TimeInForce,
    *,
    subaccount: int = 0,
    reduce_only: bool = False,
) -> PlaceOrder:
    """A PlaceOrder; `price` 0 is a market order."""
    return PlaceOrder(subaccount, market.market_id, side, price, quantity, tif, False, reduce_only)


GTC: Final = TimeInForce.GOOD_TILL_CANCEL
IOC: Final = TimeInForce.IMMEDIATE_OR_CANCEL


def floor_to_tick(price: int, tick: int) -> int:
    return max(price // tick, 1) * tick


def ceil_to_tick(price: int, tick: int) -> int:
    return max(-(-price // tick), 1) * tick


def _scaled(price: int, bps: int) -> int:
    """price * (1 + bps / 10,000), rounded down."""
    return price * (10_000 + bps) // 10_000


@dataclass(order=True, frozen=True, slots=True)
class _Scheduled:
    due_s: float
    sequence: int
    kind: str = field(compare=False)
    account: int = field(compare=False)
    payload: TxPayload = field(compare=False)


class MarketTraffic(Iterator[TrafficItem]):
    """The stream (see the module docstring). Infinite: take what you need."""

    def __init__(self, config: TrafficConfig, order_id_of: OrderIdOf | None = None) -> None:
        if config.mix != "rollup" and order_id_of is None:
            raise ValueError("DEX traffic needs order ids: pass TrafficSigner(...).order_id")
        self.config = config
        self.model = config.model
        self._order_id_of = order_id_of
        self.operator = config.accounts
        first = list(config.first_nonces[: config.accounts])
        self._nonces = first + [0] * (config.accounts - len(first)) + [config.operator_nonce]
        self._addresses = [key.address for key in traffic_keys(config.seed, config.accounts)]
        self._blob_rng = random.Random(config.seed)
        self._rng = random.Random(f"seqnet/market-traffic/{config.seed}")
        self._index = 0
        self._cursor = 0
        self.markets = config.markets()
        self._walks: dict[str, PriceWalk] = {}
        for market in self.markets:
            if market.underlying not in self._walks:
                self._walks[market.underlying] = PriceWalk(
                    SharedPriceWalk(config.seed, market.underlying, market.start_price),
                    self._rng,
                    self.model,
                )
        self._references: dict[int, int] = {}
        self._price_steps = 0
        self._queue: deque[TrafficItem] = deque()
        self._schedule: list[_Scheduled] = []
        self._scheduled_count = 0
        self._quotes: dict[tuple[int, int, int], bytes] = {}
        self._makers, self._takers, self._levered = self._roles(config.accounts)
        self._idle_levered = list(self._levered)
        self._lever_cycles: dict[int, int] = {}
        self._activities = [name for name, _ in self.model.weights]
        self._activity_weights = [weight for _, weight in self.model.weights]
        self._market_weights = [
            self.model.option_weight if m.is_option else self.model.perp_weight
            for m in self.markets
        ]
        self._perps = [m for m in self.markets if not m.is_option]

    # --- roles and accounts -------------------------------------------------

    @staticmethod
    def _roles(accounts: int) -> tuple[list[int], list[int], list[int]]:
        """Makers, takers, leveraged traders: 3, 5 and 2 in 10; with fewer than
        three accounts, the first quotes and the rest take."""
        makers, takers, levered = [], [], []
        for index in range(accounts):
            slot = index % 10 if accounts >= 3 else (0 if index == 0 else 5)
            if slot in (0, 3, 6):
                makers.append(index)
            elif slot in (2, 8):
                levered.append(index)
            else:
                takers.append(index)
        return makers, takers or makers, levered

    def _next_nonce(self, account: int) -> int:
        """The nonce of the account's next item: a queued one's, else a fresh one."""
        queued = [item.nonce for item in self._queue if item.account == account]
        return min(queued) if queued else self._nonces[account]

    def next_nonces(self) -> list[int]:
        """Per trader, the nonce its next item will carry."""
        return [self._next_nonce(account) for account in range(self.config.accounts)]

    def next_operator_nonce(self) -> int:
        return self._next_nonce(self.operator)

    # --- the stream ---------------------------------------------------------

    def __iter__(self) -> MarketTraffic:
        return self

    def __next__(self) -> TrafficItem:
        index = self._index
        self._index += 1
        config = self.config
        if config.mix == "rollup":
            return self._rollup_item()
        now = index / config.rate
        if now >= self._price_steps * self.model.price_interval_s:
            self._advance_prices()
        if self._queue:
            return self._queue.popleft()
        if self._schedule and self._schedule[0].due_s <= now:
            return self._scheduled_item(heapq.heappop(self._schedule))
        if config.mix == "mixed" and self._rng.random() < MIXED_ROLLUP_SHARE:
            return self._rollup_item()
        items = self._activity(now)
        self._queue.extend(items[1:])
        return items[0]

    def _item(self, account: int, payload: TxPayload) -> TrafficItem:
        nonce = self._nonces[account]
        self._nonces[account] = nonce + 1
        return TrafficItem(account, nonce, DEX_NAMESPACE, encode_payload(payload))

    def _rollup_item(self) -> TrafficItem:
        account = self._cursor % self.config.accounts
        self._cursor += 1
        nonce = self._nonces[account]
        self._nonces[account] = nonce + 1
        config = self.config
        payload = rollup_payload(
            self._blob_rng, config.namespace, self._addresses[account], config.payload_bytes
        )
        return TrafficItem(account, nonce, config.namespace, payload)

    def _order_id(self, item: TrafficItem) -> bytes:
        assert self._order_id_of is not None
        return self._order_id_of(item)

    def _schedule_at(self, due_s: float, kind: str, account: int, payload: TxPayload) -> None:
        self._scheduled_count += 1
        heapq.heappush(
            self._schedule, _Scheduled(due_s, self._scheduled_count, kind, account, payload)
        )

    # --- prices ---------------------------------------------------------------

    def _advance_prices(self) -> None:
        step = self._price_steps
        self._price_steps += 1
        at = self.config.start_time_s + step * self.model.price_interval_s - self.model.price_lag_s
        for walk in self._walks.values():
            walk.advance(at)
        self._references = {m.market_id: self._reference(m, at) for m in self.markets}

    def _reference(self, market: LocalMarket, now_s: int) -> int:
        """What traders quote around: the index (perp) or Black-Scholes (option)."""
        spot = self._walks[market.underlying].price
        terms = market.params.option
        if terms is None:
            return spot
        remaining = max(terms.expiry - now_s, 0)
        option_type = OptionType.CALL if terms.option_kind == OptionKind.CALL else OptionType.PUT
        quote = black_scholes(
            option_type,
            spot,
            terms.strike,
            years_from_seconds(remaining),
            market.params.risk_free_rate,
            market.volatility,
        )
        return max(quote.price, market.params.tick_size)

    # --- trader activity ----------------------------------------------------

    def _activity(self, now: float) -> list[TrafficItem]:
        choice = self._rng.choices(self._activities, self._activity_weights)[0]
        if choice == "amend" and self._makers:
            return self._amend_quote()
        if choice == "rest":
            return self._rest_order(now)
        if choice == "lever" and self._idle_levered and self._perps:
            return self._open_levered(now)
        if choice == "deposit":
            trader = self._rng.randrange(self.config.accounts)
            amount = self.model.deposit_amount * SCALE
            return [
                self._item(
                    self.operator, Deposit(subaccount_id(self._addresses[trader], 0), amount)
                )
            ]
        if choice == "withdraw":
            trader = self._rng.choice(self._takers)
            amount = self.model.withdraw_amount * SCALE
            return [self._item(trader, Withdraw(0, amount, self._addresses[trader]))]
        return self._take()

    def _pick_market(self) -> LocalMarket:
        return self._rng.choices(self.markets, self._market_weights)[0]

    def _quantity(self, market: LocalMarket, notional: tuple[int, int]) -> int:
        """A size worth `notional` quote of the underlying, in whole lots (>= 1)."""
        spot = self._walks[market.underlying].price
        worth = self._rng.randint(*notional) * SCALE
        lot = market.params.lot_size
        return max(worth * SCALE // spot // lot, 1) * lot

    def _amend_quote(self) -> list[TrafficItem]:
        maker = self._rng.choice(self._makers)
        market = self._pick_market()
        side = self._rng.choice((Side.BUY, Side.SELL))
        items = []
        key = (maker, market.market_id, int(side))
        old = self._quotes.pop(key, None)
        if old is not None:
            items.append(self._item(maker, CancelOrder(0, market.market_id, old)))
        spread = self._rng.randint(*self.model.maker_spread_bps)
        price = self._behind_reference(market, side, spread)
        quantity = self._quantity(market, self.model.maker_notional)
        order = _order(market, side, price, quantity, GTC)
        place = self._item(maker, order)
        self._quotes[key] = self._order_id(place)
        items.append(place)
        return items

    def _behind_reference(self, market: LocalMarket, side: Side, bps: int) -> int:
        """`bps` below the market's reference price for a buy, above it for a sell,
        on the tick grid (rounded away from the reference)."""
        reference, tick = self._references[market.market_id], market.params.tick_size
        if side == Side.BUY:
            return floor_to_tick(_scaled(reference, -bps), tick)
        return ceil_to_tick(_scaled(reference, bps), tick)

    def _take(self) -> list[TrafficItem]:
        taker = self._rng.choice(self._takers)
        market = self._pick_market()
        walk = self._walks[market.underlying]
        buy = self._rng.random() < 0.5 + walk.sentiment
        side = Side.BUY if buy else Side.SELL
        quantity = self._quantity(market, self.model.taker_notional)
        market_order = self._rng.random() < self.model.taker_market_order_share
        if market_order and not (market.is_option and buy):  # option buys need a limit
            order = _order(market, side, 0, quantity, IOC)
        else:
            # A taker's limit is where a maker on the other side would quote.
            other = Side.SELL if buy else Side.BUY
            limit = self._behind_reference(market, other, self.model.taker_slippage_bps)
            order = _order(market, side, limit, quantity, IOC)
        return [self._item(taker, order)]

    def _rest_order(self, now: float) -> list[TrafficItem]:
        """A good-till-cancel limit away from the market, cancelled seconds later."""
        taker = self._rng.choice(self._takers)
        market = self._pick_market()
        side = self._rng.choice((Side.BUY, Side.SELL))
        distance = self._rng.randint(*self.model.resting_distance_bps)
        price = self._behind_reference(market, side, distance)
        quantity = self._quantity(market, self.model.taker_notional)
        order = _order(market, side, price, quantity, GTC)
        item = self._item(taker, order)
        order_id = self._order_id(item)
        life = self._rng.randint(*self.model.resting_life_s)
        self._schedule_at(now + life, "cancel", taker, CancelOrder(0, market.market_id, order_id))
        return [item]

    def _open_levered(self, now: float) -> list[TrafficItem]:
        """Stake into a fresh subaccount, then a market order at a high leverage."""
        trader = self._idle_levered.pop(self._rng.randrange(len(self._idle_levered)))
        cycle = self._lever_cycles.get(trader, 0)
        self._lever_cycles[trader] = cycle + 1
        number = LEVERED_SUBACCOUNTS[cycle % len(LEVERED_SUBACCOUNTS)]
        market = self._rng.choice(self._perps)
        params = market.params
        stake = self.model.lever_stake * SCALE
        walk = self._walks[market.underlying]
        # leverage = fraction / initial margin; size = stake * leverage / spot
        permille = round(self._rng.uniform(*self.model.lever_fraction_of_max) * 1000)
        size = stake * permille * SCALE * SCALE // (1000 * params.initial_margin * walk.price)
        quantity = max(size // params.lot_size, 1) * params.lot_size
        side = Side.BUY if self._rng.random() < 0.5 + walk.sentiment else Side.SELL
        to = subaccount_id(self._addresses[trader], number)
        items = [
            self._item(trader, Transfer(0, to, stake)),
            self._item(trader, _order(market, side, 0, quantity, IOC, subaccount=number)),
        ]
        close = _order(market, 1 - side, 0, quantity, IOC, subaccount=number, reduce_only=True)
        hold = self._rng.randint(*self.model.lever_hold_s)
        self._schedule_at(now + hold, "close", trader, close)
        return items

    def _scheduled_item(self, entry: _Scheduled) -> TrafficItem:
        if entry.kind == "close":
            self._idle_levered.append(entry.account)
        return self._item(entry.account, entry.payload)


class TrafficSigner:
    """Signs traffic items, each once.

    `order_id(item)` signs the item and keeps its bytes until `encoded(item)`
    takes them, so an order's id is the hash of exactly what is sent;
    signatures are deterministic (RFC 6979), so signing again would give the
    same bytes anyway, only slower.
    """

    def __init__(self, keys: Sequence[PrivateKey], sign: TxSigner) -> None:
        self.keys = list(keys)
        self.sign = sign
        self._signed: dict[tuple[int, int], bytes] = {}

    def _sign(self, item: TrafficItem) -> bytes:
        return self.sign(self.keys[item.account], item.nonce, item.namespace, item.payload)

    def order_id(self, item: TrafficItem) -> bytes:
        encoded = self._sign(item)
        self._signed[(item.account, item.nonce)] = encoded
        return tx_hash(encoded)

    def encoded(self, item: TrafficItem) -> bytes:
        kept = self._signed.pop((item.account, item.nonce), None)
        return kept if kept is not None else self._sign(item)


def presign(
    items: Iterable[TrafficItem], signer: TrafficSigner, count: int
) -> list[tuple[TrafficItem, bytes]]:
    """The first `count` items of a stream with their signed bytes (what a
    benchmark sends without signing on its hot path)."""
    return [(item, signer.encoded(item)) for item in itertools.islice(items, count)]


def market_traffic(config: TrafficConfig, sign: TxSigner) -> tuple[MarketTraffic, TrafficSigner]:
    """A stream and the signer that gives its order ids and its bytes."""
    signer = TrafficSigner(traffic_keys(config.seed, config.accounts), sign)
    return MarketTraffic(config, signer.order_id), signer
