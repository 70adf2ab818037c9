"""The per-market counters a node keeps from executed blocks' events."""

from __future__ import annotations

from sequencer_net.execution.receipts import (
    AuctionCleared,
    Deleveraged,
    FillEvent,
    FundingApplied,
    Liquidated,
    LiquidationFeePaid,
    PositionTransferred,
)
from sequencer_net.node.market_activity import MarketActivity, MarketCounters


def test_counters_follow_the_events_of_each_block() -> None:
    activity = MarketActivity()
    assert activity.counters(1) == MarketCounters() and activity.since_height is None
    activity.record(
        7,
        [
            AuctionCleared(1, price=100, volume=5, mark_price=100),
            FillEvent(1, b"o" * 32, b"s" * 21, 0, 100, 5, 0, False),  # not counted twice
            PositionTransferred(1, b"a" * 21, 3, 99),
            PositionTransferred(2, b"a" * 21, -1, 50),
            Liquidated(b"a" * 21, 1, 2, 0, 0, 0, 0),  # counted per market above, not here
        ],
    )
    activity.record(8, [AuctionCleared(1, 101, 2, 101), FundingApplied(1, 1, -4, -4, 4)])
    activity.record(9, [])
    btc = activity.counters(1)
    assert (btc.last_price, btc.last_volume, btc.last_height) == (101, 2, 8)
    assert btc.auctions_cleared == 2 and btc.volume == 7
    assert btc.liquidations == 1 and activity.counters(2).liquidations == 1
    assert (btc.last_funding_per_lot, btc.last_funding_height) == (-4, 8)
    assert activity.since_height == 7 and activity.height == 9


def test_liquidation_fills_and_deleveraging_count_as_liquidations() -> None:
    activity = MarketActivity()
    activity.record(
        3,
        [
            LiquidationFeePaid(1, b"a" * 21, notional=940, fee=9),
            Deleveraged(2, b"b" * 21, b"c" * 21, 5, 80, 1),
            Deleveraged(2, b"b" * 21, b"d" * 21, 2, 80, 1),  # same bankrupt account
            Deleveraged(2, b"e" * 21, b"c" * 21, 1, 80, 0),
        ],
    )
    assert activity.counters(1).liquidations == 1
    assert activity.counters(2).liquidations == 2
