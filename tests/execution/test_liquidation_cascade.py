"""A liquidation cascade pushed by a large market order inside one batch.

Ten accounts are each long 1 at 100 on 12 of collateral. The oracle drops to
92 (equity 4 < maintenance 4.6): all ten are below maintenance. In the same
block, and again in the next one, a whale dumps a market sell into the book
to push the uniform price down and sell the liquidated positions into its
own crash. What bounds it:
- valuation is at the index, so the dump itself liquidates nobody: the
  liquidation orders placed are the same with and without it;
- the per-block cap (`max_liquidation_notional`, 50 here) bounds how much
  liquidation goes into one auction;
- each liquidation order is limited at its bankruptcy price, so it never fills
  below it; an account whose order found no fill is not handed to the fund
  for that: its order is placed again next block (up to
  `max_liquidation_misses` auctions in a row), and once the dump is over it
  sells through the book;
- money is conserved and nobody ends with negative equity.
"""

from __future__ import annotations

from sequencer_net.execution.engine import BlockResult
from sequencer_net.execution.margin import subaccount_risk
from sequencer_net.execution.receipts import (
    AuctionCleared,
    FillEvent,
    Liquidated,
    LiquidationOrderPlaced,
    PositionTransferred,
)
from sequencer_net.execution.state import StateWriter
from tests.execution.execution_harness import (
    BUY,
    INSURANCE_FUND,
    IOC,
    SELL,
    Chain,
    W,
    check_engine_invariants,
    conserved_total,
    make_genesis,
    perp_params,
    size,
    sub,
)

PERP = 1
LONGS = tuple(f"long{i}" for i in range(10))
CAP = 50 * W


def leveraged_longs() -> Chain:
    deposits = {name: 12 * W for name in LONGS}
    deposits.update({"mm": 100_000 * W, "bidder": 100_000 * W, "whale": 100_000 * W})
    chain = Chain(
        make_genesis(
            deposits,
            insurance=1_000 * W,
            markets=[(PERP, perp_params(max_liquidation_notional=CAP, maker_fee=0, taker_fee=0))],
        )
    )
    chain.block([chain.prices({PERP: 100 * W})])
    opening = [chain.order(name, PERP, BUY, 100 * W, W) for name in LONGS]
    opening.append(chain.order("mm", PERP, SELL, 100 * W, 10 * W))
    chain.block(opening)
    assert all(size(chain.state, sub(name), PERP) == W for name in LONGS)
    # Resting bids below the index: 5 units at each of 91, 90, ..., 80.
    chain.block([chain.order("bidder", PERP, BUY, (91 - i) * W, 5 * W) for i in range(12)])
    return chain


def placed(result: BlockResult) -> list[LiquidationOrderPlaced]:
    return [e for e in result.events if isinstance(e, LiquidationOrderPlaced)]


def check_block(chain: Chain, result: BlockResult, index: int) -> None:
    state = chain.state
    assert conserved_total(state) == state.ledger.net_deposits
    check_engine_invariants(state)
    w = StateWriter(state, state.height, state.block.timestamp)
    for sid in state.subaccounts:
        assert subaccount_risk(w, sid).equity >= 0, sid.hex()
    orders = [e for e in placed(result) if e.subaccount != INSURANCE_FUND]
    assert sum(e.quantity * index // W for e in orders) <= CAP


def test_a_dump_in_the_same_batch_changes_no_liquidation() -> None:
    quiet = leveraged_longs()
    dumped = leveraged_longs()
    calm = quiet.block([quiet.prices({PERP: 92 * W})])
    crash = dumped.block(
        [dumped.prices({PERP: 92 * W}), dumped.order("whale", PERP, SELL, 0, 60 * W, tif=IOC)]
    )
    [cleared] = [e for e in crash.events if isinstance(e, AuctionCleared)]
    assert cleared.price < 92 * W  # the dump moved the auction price...
    assert placed(crash) == placed(calm)  # ...and not who is liquidated, nor how much
    check_block(dumped, crash, 92 * W)


def test_the_cap_and_the_bankruptcy_limits_bound_a_cascade() -> None:
    chain = leveraged_longs()
    first = chain.block(
        [chain.prices({PERP: 92 * W}), chain.order("whale", PERP, SELL, 0, 10 * W, tif=IOC)]
    )
    check_block(chain, first, 92 * W)
    orders = placed(first)
    # Each needs 0.164 (15.088 of notional); the cap of 50 admits three whole
    # orders (45.264) and 0.051 of a fourth; the other six wait for the next block.
    assert [o.quantity for o in orders] == [164 * W // 1000] * 3 + [51 * W // 1000]
    assert all(o.limit_price == 88 * W for o in orders)  # 92 - 4 of equity per unit
    limits = {o.order_id: o.limit_price for o in orders}
    # The whale dumps 200 more into the auction the liquidation orders join.
    second = chain.block(
        [chain.prices({PERP: 92 * W}), chain.order("whale", PERP, SELL, 0, 200 * W, tif=IOC)]
    )
    check_block(chain, second, 92 * W)
    [cleared] = [e for e in second.events if isinstance(e, AuctionCleared)]
    assert cleared.price < 88 * W  # the dump took the batch below every bankruptcy limit...
    fills = [e for e in second.events if isinstance(e, FillEvent) and e.order_id in limits]
    assert not fills  # ...so no liquidated position was sold into it
    # One auction without a fill takes nothing over: the same accounts get
    # their orders again, one miss counted, within the cap.
    assert not [e for e in second.events if isinstance(e, Liquidated)]
    assert not [e for e in second.events if isinstance(e, PositionTransferred)]
    again = [o for o in placed(second) if o.subaccount != INSURANCE_FUND]
    assert {o.subaccount for o in again} == {o.subaccount for o in orders}
    assert all(chain.state.books[PERP][o.order_id].liquidation_misses == 1 for o in again)
    assert sum(o.quantity * 92 for o in again) <= CAP * W
    # The dump is over and the market maker bids 91: they sell there, through
    # the book, above their bankruptcy limits; the fund takes nothing.
    third = chain.block(
        [chain.prices({PERP: 92 * W}), chain.order("mm", PERP, BUY, 91 * W, 10 * W)]
    )
    check_block(chain, third, 92 * W)
    retried = {o.order_id for o in again}
    sold = [e for e in third.events if isinstance(e, FillEvent) and e.order_id in retried]
    assert {e.subaccount for e in sold} == {o.subaccount for o in again}
    assert all(e.price == 91 * W for e in sold)
    assert not [e for e in third.events if isinstance(e, Liquidated)]
    assert size(chain.state, INSURANCE_FUND, PERP) == 0
