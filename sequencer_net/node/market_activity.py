"""Per-market activity a node counts from the blocks it executes (GET /v1/markets).

The engine's state holds each market's prices, open interest and funding
index, but not what happened in the last auction or how many positions were
liquidated: those are events of a block (`execute_block(...).events`). The
commit pipeline hands every executed block's events to `MarketActivity.record`,
which keeps a few counters per market, O(events) per block, so the API answers
from memory without scanning anything. The counters start when the node
process starts (`since_height`): they are this node's observations, not state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sequencer_net.execution.receipts import (
    AuctionCleared,
    Deleveraged,
    FundingApplied,
    LiquidationFeePaid,
    PositionTransferred,
)


@dataclass(slots=True)
class MarketCounters:
    """One market, since `MarketActivity.since_height`. Amounts are wad."""

    last_price: int | None = None
    last_volume: int = 0
    last_height: int | None = None
    """Height of the last auction that cleared (traded) in this market."""
    auctions_cleared: int = 0
    volume: int = 0
    """Quantity traded in all those auctions."""
    liquidations: int = 0
    """Liquidations in this market: a liquidation order that filled, a position
    the insurance fund took over, a position deleveraged (once per bankrupt
    account, however many counterparties closed it)."""
    last_funding_per_lot: int | None = None
    """Quote one long lot paid (negative: received) at the last funding settlement."""
    last_funding_height: int | None = None


class MarketActivity:
    """Counters per market id, fed one executed block at a time."""

    def __init__(self) -> None:
        self.markets: dict[int, MarketCounters] = {}
        self.since_height: int | None = None
        self.height: int | None = None

    def counters(self, market_id: int) -> MarketCounters:
        """The market's counters (zeros if it has had no activity yet)."""
        return self.markets.get(market_id) or MarketCounters()

    def _market(self, market_id: int) -> MarketCounters:
        counters = self.markets.get(market_id)
        if counters is None:
            counters = self.markets[market_id] = MarketCounters()
        return counters

    def record(self, height: int, events: Iterable[object]) -> None:
        """Count one executed block's events."""
        if self.since_height is None:
            self.since_height = height
        self.height = height
        deleveraged: set[tuple[int, bytes]] = set()
        for event in events:
            if isinstance(event, AuctionCleared):
                counters = self._market(event.market_id)
                counters.last_price = event.price
                counters.last_volume = event.volume
                counters.last_height = height
                counters.auctions_cleared += 1
                counters.volume += event.volume
            elif isinstance(event, PositionTransferred | LiquidationFeePaid):
                self._market(event.market_id).liquidations += 1
            elif isinstance(event, Deleveraged):
                if (event.market_id, event.subaccount) not in deleveraged:
                    deleveraged.add((event.market_id, event.subaccount))
                    self._market(event.market_id).liquidations += 1
            elif isinstance(event, FundingApplied):
                counters = self._market(event.market_id)
                counters.last_funding_per_lot = event.per_lot
                counters.last_funding_height = height
