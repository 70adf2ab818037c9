"""GET /v1/markets and GET /v1/accounts/{address}: the market as the node executed it.

Both read the node's latest executed engine state (`ExecutionState`, replaced
by the commit pipeline after each block) and, for the markets, the per-market
counters the pipeline keeps from each block's events
(sequencer_net.node.market_activity). Nothing here scans the state:

- /v1/markets walks the listed markets (a handful), one Black-Scholes mark per
  option market;
- /v1/accounts/{address} looks up the address's subaccounts by id (at most
  256 lookups), their positions by key, and their open orders through
  `OrderIndex`, which groups a market's book by subaccount once per version of
  that book (a book the engine did not touch keeps its object, so it is not
  grouped again); its stop and take-profit orders the same way, grouped once
  per version of the conditional-order index.

Amounts, prices and sizes are exact decimal strings (wad, up to 18 decimals);
times are unix seconds; ids and addresses are 0x-hex. docs/api.md has the
field reference.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sequencer_net.api.errors import ApiError
from sequencer_net.api.inputs import parse_address
from sequencer_net.api.limits import MAX_ACCOUNT_ORDERS_ANSWER
from sequencer_net.execution.auction import Side
from sequencer_net.execution.encoding import decode_canonical
from sequencer_net.execution.fixed_point import SCALE, format_decimal
from sequencer_net.execution.funding import clamp_premium
from sequencer_net.execution.limits import MAX_SUBACCOUNT_NUMBER
from sequencer_net.execution.margin import subaccount_risk, valuation_price
from sequencer_net.execution.markets import is_oracle_fresh
from sequencer_net.execution.positions import pending_charge
from sequencer_net.execution.records import (
    ConditionalOrder,
    MarketKind,
    MarketParams,
    MarketState,
    OptionKind,
    RestingOrder,
    TimeInForce,
    TriggerKind,
)
from sequencer_net.execution.settlement import twap_settlement_price
from sequencer_net.execution.state import PREFIX_CONDITIONAL, ExecutionState, StateWriter
from sequencer_net.node.market_activity import MarketActivity


def decimal(value: int) -> str:
    """A wad as an exact decimal string ("60012.5", "-0.001")."""
    return format_decimal(value, trim=True)


def _optional(value: int | None) -> str | None:
    return None if value is None else decimal(value)


def _per_unit(per_lot: int, lot_size: int) -> int:
    """A per-lot amount per 1.0 of size (wad), rounded toward zero."""
    magnitude = abs(per_lot) * SCALE // lot_size
    return -magnitude if per_lot < 0 else magnitude


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _reader(state: ExecutionState) -> StateWriter:
    """The engine's read accessors (margin, marks) over `state`; nothing is written."""
    return StateWriter(state, state.height, state.block.timestamp)


# --- /v1/markets ----------------------------------------------------------------------


def funding_rate(params: MarketParams, state: MarketState) -> int | None:
    """The current interval's time-weighted impact premium so far, clamped as the
    engine clamps it (funding.clamp_premium), as a fraction of the index (wad):
    what a long pays per interval per unit of notional if the rest of the
    interval looks the same. None for an option, or before the interval has a
    sample."""
    if params.kind != MarketKind.PERPETUAL or state.premium_seconds <= 0:
        return None
    if state.oracle_price <= 0:
        return None
    average = state.premium_sum // state.premium_seconds  # floor
    premium = clamp_premium(params, state.oracle_price, average)
    return premium * SCALE // state.oracle_price  # floor


def option_json(params: MarketParams, state: MarketState) -> dict[str, Any] | None:
    terms = params.option
    if terms is None:
        return None
    average = twap_settlement_price(state)
    return {
        "type": "call" if terms.option_kind == OptionKind.CALL else "put",
        "strike": decimal(terms.strike),
        "expiry": terms.expiry,
        "underlying": terms.underlying,
        "settlement_window_s": params.settlement_window,
        "settlement_average": None if average is None else decimal(average),
        "settlement_seconds_sampled": state.settlement_twap_seconds,
        "settlement_price": _optional(state.settlement_price or None),
    }


def market_json(
    reader: StateWriter, market_id: int, params: MarketParams, activity: MarketActivity
) -> dict[str, Any]:
    state = reader.market(market_id)
    assert state is not None
    counters = activity.counters(market_id)
    perp = params.kind == MarketKind.PERPETUAL
    if perp:
        mark = state.mark_price or None
    else:
        mark = valuation_price(reader, market_id, params, state) if state.oracle_price else None
    last_funding = counters.last_funding_per_lot
    return {
        "id": market_id,
        "kind": "perp" if perp else "option",
        "option": option_json(params, state),
        "paused": state.paused,
        "tick_size": decimal(params.tick_size),
        "lot_size": decimal(params.lot_size),
        "oracle_price": _optional(state.oracle_price or None),
        "oracle_volatility": None if perp else decimal(state.oracle_volatility),
        "oracle_published_at": state.oracle_published_at or None,
        "oracle_fresh": is_oracle_fresh(params, state, reader.timestamp),
        "mark_price": _optional(mark),
        "last_trade_price": _optional(state.last_trade_price or None) if perp else None,
        "last_clearing_price": _optional(counters.last_price),
        "last_clearing_volume": decimal(counters.last_volume),
        "last_cleared_height": counters.last_height,
        "auctions_cleared": counters.auctions_cleared,
        "volume": decimal(counters.volume),
        "open_interest": decimal(state.open_lots * params.lot_size),
        "funding_interval_s": params.funding_interval if perp else None,
        "funding_rate": _optional(funding_rate(params, state)),
        "next_funding_at": state.last_funding_at + params.funding_interval if perp else None,
        "cumulative_funding": decimal(_per_unit(state.long_index, params.lot_size))
        if perp
        else None,
        "last_funding_per_unit": None
        if last_funding is None
        else decimal(_per_unit(last_funding, params.lot_size)),
        "last_funding_height": counters.last_funding_height,
        "liquidations": counters.liquidations,
    }


def markets_document(state: ExecutionState, activity: MarketActivity) -> dict[str, Any]:
    reader = _reader(state)
    return {
        "height": state.height,
        "timestamp": state.block.timestamp,
        "counted_since_height": activity.since_height,
        "markets": [
            market_json(reader, market_id, state.market_params[market_id], activity)
            for market_id in sorted(state.market_params)
        ],
    }


# --- /v1/accounts/{address} -----------------------------------------------------------


_NO_ORDERS: Mapping[bytes, RestingOrder] = MappingProxyType({})
"""The book of a market without orders (one object, so it is grouped once)."""


@dataclass
class OrderIndex:
    """Open orders by subaccount, per market; a market's book is grouped again
    only when the engine replaced it (a new block touched that market)."""

    _grouped: dict[int, tuple[Mapping[bytes, RestingOrder], dict[bytes, list[RestingOrder]]]] = (
        field(default_factory=dict)
    )

    def orders(
        self, state: ExecutionState, subaccount: bytes, market_ids: Sequence[int]
    ) -> Iterator[tuple[int, RestingOrder]]:
        for market_id in market_ids:
            book = state.books.get(market_id, _NO_ORDERS)
            cached = self._grouped.get(market_id)
            if cached is None or cached[0] is not book:
                grouped: dict[bytes, list[RestingOrder]] = {}
                for order in book.values():
                    grouped.setdefault(order.subaccount, []).append(order)
                cached = self._grouped[market_id] = (book, grouped)
            for order in cached[1].get(subaccount, ()):
                yield market_id, order

    _conditional: tuple[Mapping[bytes, bytes], dict[bytes, list[tuple[int, ConditionalOrder]]]] = (
        field(default_factory=lambda: (MappingProxyType({}), {}))
    )

    def conditionals(
        self, state: ExecutionState, subaccount: bytes
    ) -> list[tuple[int, ConditionalOrder]]:
        """The subaccount's stop and take-profit orders (market id, order)."""
        stored = state.order_index.get(PREFIX_CONDITIONAL, _NO_CONDITIONALS)
        if self._conditional[0] is not stored:
            grouped: dict[bytes, list[tuple[int, ConditionalOrder]]] = {}
            for key, raw in stored.items():
                cond = decode_canonical(raw, ConditionalOrder)
                grouped.setdefault(cond.order.subaccount, []).append(
                    (int.from_bytes(key[:4], "big"), cond)
                )
            self._conditional = (stored, grouped)
        return self._conditional[1].get(subaccount, [])


_NO_CONDITIONALS: Mapping[bytes, bytes] = MappingProxyType({})


def _order_json(market_id: int, order: RestingOrder) -> dict[str, Any]:
    return {
        "market_id": market_id,
        "order_id": _hex(order.order_id),
        "side": "buy" if order.side == Side.BUY else "sell",
        "price": decimal(order.limit_price),
        "quantity": decimal(order.quantity),
        "time_in_force": "gtc" if order.time_in_force == TimeInForce.GOOD_TILL_CANCEL else "ioc",
        "post_only": order.post_only,
        "reduce_only": order.reduce_only,
        "placed_height": order.placed_height,
        "client_id": order.client_id or None,
        "good_til": order.good_til or None,
    }


def _conditional_json(market_id: int, cond: ConditionalOrder) -> dict[str, Any]:
    return {
        **_order_json(market_id, cond.order),
        "trigger": "stop" if cond.trigger == TriggerKind.STOP else "take-profit",
        "trigger_price": decimal(cond.trigger_price),
        "triggered_at": cond.triggered_at or None,
    }


def _position_json(reader: StateWriter, subaccount: bytes, market_id: int) -> dict[str, Any]:
    position = reader.position(subaccount, market_id)
    params = reader.params(market_id)
    state = reader.market(market_id)
    assert position is not None and params is not None and state is not None
    price = valuation_price(reader, market_id, params, state) if position.size else 0
    return {
        "market_id": market_id,
        "size": decimal(position.size),
        "valuation_price": decimal(price) if position.size else None,
        "value": decimal((position.size * price) // SCALE),
        "pending_funding": decimal(pending_charge(params, state, position)),
        "open_buy": decimal(position.open_buy),
        "open_sell": decimal(position.open_sell),
    }


def subaccount_json(
    reader: StateWriter, index: OrderIndex, number: int, subaccount: bytes, budget: int
) -> dict[str, Any]:
    """One subaccount, listing at most `budget` of its open orders (oldest first)."""
    sub = reader.subaccount(subaccount)
    risk = subaccount_risk(reader, subaccount)
    ordered = sorted(
        index.orders(reader.base, subaccount, sub.markets),
        key=lambda item: (item[1].placed_height, item[1].placed_nonce, item[1].order_id),
    )
    listed = ordered[: max(budget, 0)]
    waiting = sorted(
        index.conditionals(reader.base, subaccount),
        key=lambda item: (item[1].order.placed_height, item[1].order.placed_nonce, item[0]),
    )
    conditional = waiting[: max(budget - len(listed), 0)]
    return {
        "number": number,
        "id": _hex(subaccount),
        "collateral": decimal(sub.collateral),
        "equity": decimal(risk.equity),
        "maintenance_margin": decimal(risk.maintenance),
        "initial_margin": decimal(risk.initial),
        "initial_margin_with_orders": decimal(risk.initial_with_orders),
        "free_collateral": decimal(risk.equity - risk.initial_with_orders),
        "positions": [_position_json(reader, subaccount, m) for m in sub.markets],
        "open_orders": sub.open_orders,
        "orders": [_order_json(market_id, order) for market_id, order in listed],
        "orders_truncated": len(listed) < len(ordered) or len(conditional) < len(waiting),
        "conditional_orders": [_conditional_json(m, cond) for m, cond in conditional],
    }


def account_document(
    state: ExecutionState, address: bytes, index: OrderIndex
) -> dict[str, Any] | None:
    """The address's subaccounts, or None if it has none in state."""
    numbered = [
        (number, address + bytes([number]))
        for number in range(MAX_SUBACCOUNT_NUMBER + 1)
        if address + bytes([number]) in state.subaccounts
    ]
    if not numbered:
        return None
    reader = _reader(state)
    window = state.nonces.get(address)
    subaccounts = []
    budget = MAX_ACCOUNT_ORDERS_ANSWER  # orders listed in the whole answer
    for number, sid in numbered:
        subaccounts.append(subaccount_json(reader, index, number, sid, budget))
        budget -= len(subaccounts[-1]["orders"]) + len(subaccounts[-1]["conditional_orders"])
    return {
        "address": _hex(address),
        "height": state.height,
        "next_nonce": 0 if window is None else window.highest + 1,
        "subaccounts": subaccounts,
    }


# --- routes ---------------------------------------------------------------------------


@dataclass
class MarketSource:
    """What the two endpoints read: the latest executed state and the counters."""

    state: Callable[[], ExecutionState]
    activity: MarketActivity
    orders: OrderIndex = field(default_factory=OrderIndex)


def market_routes(source: MarketSource | None) -> list[Route]:
    """The routes; without a source (an API with no engine behind it) both
    answer 503 `unavailable`."""

    def require_source() -> MarketSource:
        if source is None:
            raise ApiError(503, "unavailable", "this API serves no execution state")
        return source

    async def markets(request: Request) -> Response:
        found = require_source()
        return JSONResponse(markets_document(found.state(), found.activity))

    async def account(request: Request) -> Response:
        address = parse_address(request.path_params["address"])
        found = require_source()
        document = account_document(found.state(), address, found.orders)
        if document is None:
            raise ApiError(404, "not_found", f"no subaccount of {_hex(address)} in state")
        return JSONResponse(document)

    return [
        Route("/v1/markets", markets, methods=["GET"]),
        Route("/v1/accounts/{address}", account, methods=["GET"]),
    ]
