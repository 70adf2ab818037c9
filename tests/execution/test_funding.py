"""Impact prices, the impact premium and its clamp, the perpetual mark, and
manipulation: what moves funding and the mark, and what does not."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from sequencer_net.execution.auction import Side
from sequencer_net.execution.exceptions import InvalidMarketParams
from sequencer_net.execution.funding import (
    clamp_premium,
    funding_per_lot,
    impact_premium,
    premium_bound,
)
from sequencer_net.execution.impact import (
    ImpactPrices,
    average_fill_price,
    book_impact_prices,
    market_impact_prices,
)
from sequencer_net.execution.margin import subaccount_risk
from sequencer_net.execution.mark import impact_mid, perp_mark_price
from sequencer_net.execution.markets import check_market_params
from sequencer_net.execution.positions import pending_charge
from sequencer_net.execution.receipts import AuctionCleared, FundingApplied, Liquidated
from sequencer_net.execution.records import MarketState, RestingOrder
from sequencer_net.execution.state import StateWriter
from tests.execution.execution_harness import (
    BUY,
    GENESIS_TIME,
    GTC,
    IOC,
    SELL,
    Chain,
    W,
    conserved_total,
    make_genesis,
    perp_params,
    position,
    sub,
)

PERP = 1
CENT = W // 100


def resting(side: Side, price: int, quantity: int, n: int = 0) -> RestingOrder:
    return RestingOrder(bytes([n]) * 32, b"s" * 21, side, price, quantity, GTC, False, False, 1, n)


def bids(*levels: tuple[int, int]) -> list[RestingOrder]:
    return [resting(Side.BUY, p, q, n) for n, (p, q) in enumerate(levels)]


def asks(*levels: tuple[int, int]) -> list[RestingOrder]:
    return [resting(Side.SELL, p, q, n) for n, (p, q) in enumerate(levels)]


def wad(value: Fraction, *, up: bool) -> int:
    """An exact rational as a wad, rounded up or down (the expected values below)."""
    scaled = value * W
    return (
        -(-scaled.numerator // scaled.denominator) if up else scaled.numerator // scaled.denominator
    )


# --- impact prices -----------------------------------------------------------------


def test_impact_bid_takes_whole_bids_best_first_and_the_last_one_fractionally() -> None:
    book = bids((99 * W, 10 * W), (101 * W, W // 2), (100 * W, W))
    # Selling 200: 0.5 at 101 (50.5), 1 at 100 (100), then 49.5 of the bid at 99 = 0.5.
    # 200 / (0.5 + 1 + 0.5) = 100 exactly.
    assert book_impact_prices(book, 200 * W) == ImpactPrices(100 * W, None)
    # Selling 100: 0.5 at 101, then 49.5 at 100 = 0.495: 100 / 0.995 = 100.5025..., down.
    expected = wad(Fraction(100) / Fraction(995, 1000), up=False)
    assert expected == 100_502_512_562_814_070_351
    assert book_impact_prices(book, 100 * W).bid == expected


def test_impact_ask_takes_asks_lowest_first_and_rounds_up() -> None:
    book = asks((101 * W, 10 * W), (99 * W, W // 2), (100 * W, W))
    # Buying 100: 0.5 at 99 (49.5), then 50.5 at 100 = 0.505: 100 / 1.005 = 99.5024..., up.
    expected = wad(Fraction(100) / Fraction(1005, 1000), up=True)
    assert expected == 99_502_487_562_189_054_727
    assert book_impact_prices(book, 100 * W) == ImpactPrices(None, expected)
    # The exact rule: notional * SCALE * p / (taken * p + rest), p the last price taken.
    numerator = 100 * W * W * (100 * W)
    denominator = (W // 2) * (100 * W) + (100 * W * W - (W // 2) * 99 * W)
    assert expected == -(-numerator // denominator)


def test_a_side_without_enough_depth_has_no_impact_price() -> None:
    book = bids((100 * W, W)) + asks((101 * W, W))
    # Depth: 100 of bids, 101 of asks.
    assert book_impact_prices(book, 100 * W) == ImpactPrices(100 * W, 101 * W)
    assert book_impact_prices(book, 101 * W) == ImpactPrices(None, 101 * W)
    assert book_impact_prices(book, 101 * W + 1) == ImpactPrices(None, None)
    assert book_impact_prices([], W) == ImpactPrices(None, None)
    assert average_fill_price([(100 * W, W)], 0, round_up=False) is None


def test_impact_prices_do_not_depend_on_the_order_of_the_book() -> None:
    book = bids((99 * W, 3 * W), (100 * W, W), (100 * W, 2 * W)) + asks(
        (102 * W, W), (101 * W, W), (103 * W, 5 * W)
    )
    expected = book_impact_prices(book, 350 * W)
    assert expected.bid is not None and expected.ask is not None
    rng = random.Random(18)
    for _ in range(20):
        rng.shuffle(book)
        assert book_impact_prices(book, 350 * W) == expected


def test_an_order_beyond_the_mark_band_counts_at_the_band_edge() -> None:
    params = perp_params(impact_notional=1_000 * W)  # band 5%: bids count at most 105
    book = bids((1_000_000 * W, W // 1000), (99 * W, 100 * W))
    # Uncapped, 0.001 at 1,000,000 is 1,000 of notional: the impact bid would be 1,000,000.
    assert book_impact_prices(book, 1_000 * W).bid == 1_000_000 * W
    # Capped: 0.001 at 105 (0.105), then 999.895 at 99; 1,000 / (0.001 + 999.895 / 99).
    base = Fraction(1, 1000) + Fraction(999_895, 1000) / 99
    capped = market_impact_prices(params, 100 * W, book)
    assert capped.bid == wad(Fraction(1000) / base, up=False)
    assert 99 * W < capped.bid < 99 * W + CENT
    # An ask far below the index counts at 95 at the lowest.
    low = asks((CENT, 2 * W), (101 * W, 100 * W))
    base = 2 + Fraction(1000 - 190, 101)
    assert market_impact_prices(params, 100 * W, low).ask == wad(Fraction(1000) / base, up=True)


def test_impact_notional_must_be_positive() -> None:
    check_market_params(perp_params(impact_notional=1), GENESIS_TIME)
    with pytest.raises(InvalidMarketParams):
        check_market_params(perp_params(impact_notional=0), GENESIS_TIME)


# --- premium and clamp ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bid", "ask", "premium"),
    [
        (101, 102, 1),  # bids above the index: longs pay 1
        (98, 99, -1),  # asks below the index: shorts pay 1
        (99, 101, 0),  # the spread straddles the index
        (101, None, 1),  # a missing side counts as 0
        (None, 97, -3),
        (None, None, 0),
        (102, 99, 1),  # a crossed view: 2 above minus 1 below
    ],
)
def test_impact_premium(bid: int | None, ask: int | None, premium: int) -> None:
    as_wad = ImpactPrices(None if bid is None else bid * W, None if ask is None else ask * W)
    assert impact_premium(100 * W, as_wad) == premium * W


def test_the_funding_bound_is_the_smaller_of_the_clamp_and_the_margin_gap() -> None:
    # initial 10%, maintenance 5%: the gap is 5% of the index.
    assert premium_bound(perp_params(funding_clamp=W // 100), 100 * W) == 1 * W
    assert premium_bound(perp_params(funding_clamp=W // 5), 100 * W) == 5 * W
    tight = perp_params(funding_clamp=W // 5, initial_margin=W // 10, maintenance_margin=W // 10)
    assert premium_bound(tight, 100 * W) == 0
    # Floor: 1% of 123.45 = 1.2345; of 0.99 wei = 0.
    assert premium_bound(perp_params(), 12_345 * CENT) == 12_345 * CENT // 100
    assert premium_bound(perp_params(), 99) == 0
    assert clamp_premium(perp_params(), 100 * W, -3 * W) == -1 * W
    assert clamp_premium(perp_params(), 100 * W, W // 2) == W // 2


def test_funding_per_lot_is_clamped_to_the_margin_gap() -> None:
    # funding_clamp 20% alone would allow 20 per unit; the 5% margin gap allows 5.
    params = perp_params(funding_clamp=W // 5, funding_interval=60)
    state = MarketState(False, 100 * W, 0, 0, 0, 0, 0, 60 * 20 * W, 60, 0, 0, 0)
    assert funding_per_lot(params, state) == 5 * W // 1000
    negative = MarketState(False, 100 * W, 0, 0, 0, 0, 0, -60 * 20 * W, 60, 0, 0, 0)
    assert funding_per_lot(params, negative) == -5 * W // 1000


# --- mark ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mid", "last", "mark"),
    [
        ((101, 101), 102, 101),  # index 100 < mid 101 < last 102: the mid
        ((103, 103), 102, 102),  # the last trade is the middle one
        ((99, 99), 102, 100),  # the two market inputs disagree: the index
        ((101, 101), None, 100),  # two inputs: the nearer the index is the index
        ((101, None), 102, 100),  # no impact ask, no mid: two inputs again
        ((None, None), None, 100),  # the index alone
        ((110, 120), 111, 105),  # median 111, clamped to the 5% band
        ((80, 80), 90, 95),  # median 90, clamped to the band from below
    ],
)
def test_mark_is_the_median_of_index_impact_mid_and_last_trade(
    mid: tuple[int | None, int | None], last: int | None, mark: int
) -> None:
    impact = ImpactPrices(*(None if p is None else p * W for p in mid))
    last_trade = None if last is None else last * W
    assert perp_mark_price(perp_params(), 100 * W, impact, last_trade) == mark * W


def test_impact_mid_rounds_down() -> None:
    assert impact_mid(ImpactPrices(100 * W, 100 * W + 1)) == 100 * W
    assert impact_mid(ImpactPrices(None, 100 * W)) is None


# --- the engine: manipulation ----------------------------------------------------------


def perp_chain(**params: int) -> Chain:
    """victim long 50, shortie short 50 at index 100; 60 s funding interval."""
    params.setdefault("funding_interval", 60)
    chain = Chain(
        make_genesis(
            {n: 100_000 * W for n in ("victim", "shortie", "bidder", "asker", "a", "b", "whale")},
            insurance=1_000 * W,
            markets=[(PERP, perp_params(**params))],
        )
    )
    chain.block([chain.prices({PERP: 100 * W})])
    chain.block(
        [
            chain.prices({PERP: 100 * W}),
            chain.order("victim", PERP, BUY, 100 * W, 50 * W),
            chain.order("shortie", PERP, SELL, 100 * W, 50 * W),
        ]
    )
    return chain


def run_until_funding(chain: Chain, per_block: list[tuple[str, int, int, int]]) -> int:
    """Blocks every second, each with these IOC orders (name, side, price, quantity),
    until funding is applied; return its per_lot."""
    while True:
        result = chain.block(
            [chain.prices({PERP: 100 * W})]
            + [chain.order(n, PERP, s, p, q, tif=IOC) for n, s, p, q in per_block]
        )
        applied = [e for e in result.events if isinstance(e, FundingApplied)]
        if applied:
            return applied[0].per_lot


def charges(chain: Chain) -> tuple[int, int]:
    state = chain.state
    params, market = state.market_params[PERP], state.market_states[PERP]
    owed = []
    for name in ("victim", "shortie"):
        held = position(state, sub(name), PERP)
        assert held is not None
        owed.append(pending_charge(params, market, held))
    return owed[0], owed[1]


DUST_AT_110 = [("a", BUY, 110 * W, W // 1000), ("b", SELL, 110 * W, W // 1000)]


def test_a_dust_trade_at_an_extreme_price_moves_neither_mark_nor_funding() -> None:
    """One resting bid of 100 at 100.40 sets the premium (0.40); a and b trade 0.001
    at 110 (twice the mark band away) every block. Funding, mark and last trade
    are what they are without the dust."""
    worlds = []
    for dust in (DUST_AT_110, []):
        chain = perp_chain()
        chain.block(
            [
                chain.prices({PERP: 100 * W}),
                chain.order("bidder", PERP, BUY, 10_040 * CENT, 100 * W),
            ]
        )
        per_lot = run_until_funding(chain, dust)
        market = chain.state.market_states[PERP]
        worlds.append((per_lot, market.mark_price, market.last_trade_price, charges(chain)))
        if dust:
            prices = [e.price for e in chain.results[-1].events if isinstance(e, AuctionCleared)]
            assert prices == [110 * W]  # the dust did trade at 110
    assert worlds[0] == worlds[1]
    per_lot, mark, last_trade, (long_owes, short_owes) = worlds[0]
    # Blocks at genesis + 3 .. + 59 sampled 0.40 for 57 s of 60: 0.38 per unit.
    assert per_lot == 38 * CENT // 1000
    assert mark == 100 * W and last_trade == 100 * W  # the opening trade, 5,000 of notional
    assert long_owes == 50_000 * per_lot == -short_owes  # long pays what short receives


def two_sided(chain: Chain) -> None:
    """Bids 100 at 100.40 and asks 100 at 100.80 rest (impact mid 100.60); a trade of
    20 at 100.50 (2,010 of notional) is the last trade: mark = median = 100.50."""
    chain.block(
        [
            chain.prices({PERP: 100 * W}),
            chain.order("bidder", PERP, BUY, 10_040 * CENT, 100 * W),
            chain.order("asker", PERP, SELL, 10_080 * CENT, 100 * W),
        ]
    )
    result = chain.block(
        [
            chain.prices({PERP: 100 * W}),
            chain.order("a", PERP, BUY, 10_050 * CENT, 20 * W, tif=IOC),
            chain.order("b", PERP, SELL, 10_050 * CENT, 20 * W, tif=IOC),
        ]
    )
    [cleared] = [e for e in result.events if isinstance(e, AuctionCleared)]
    market = chain.state.market_states[PERP]
    assert cleared.price == market.last_trade_price == 10_050 * CENT
    assert cleared.mark_price == market.mark_price == 10_050 * CENT


def test_dust_lifting_the_ask_does_not_move_a_mark_set_by_the_median() -> None:
    worlds = []
    for dust in (DUST_AT_110, []):
        chain = perp_chain()
        two_sided(chain)
        per_lot = run_until_funding(chain, dust)
        market = chain.state.market_states[PERP]
        worlds.append((per_lot, market.mark_price, market.last_trade_price, charges(chain)))
        if dust:  # the dust buy met the ask at 100.80
            prices = [e.price for e in chain.results[-1].events if isinstance(e, AuctionCleared)]
            assert prices == [10_080 * CENT]
    assert worlds[0] == worlds[1]
    per_lot, mark, _, (long_owes, short_owes) = worlds[0]
    assert mark == 10_050 * CENT
    # 0.40 from genesis + 3 .. + 59 (57 s of 60): 0.38 per unit.
    assert per_lot == 38 * CENT // 1000
    assert long_owes == -short_owes == 50 * 38 * CENT


def test_without_the_minimum_notional_the_same_dust_would_move_the_mark() -> None:
    """The guard is what keeps the mark: counted, the dust at 100.80 is the last
    trade, and median(100, 100.60, 100.80) = 100.60."""
    chain = perp_chain(min_premium_notional=0)
    two_sided(chain)
    chain.block(
        [chain.prices({PERP: 100 * W})]
        + [chain.order(n, PERP, s, p, q, tif=IOC) for n, s, p, q in DUST_AT_110]
    )
    market = chain.state.market_states[PERP]
    assert market.last_trade_price == 10_080 * CENT
    assert market.mark_price == 10_060 * CENT


def test_a_large_trade_at_a_far_price_that_leaves_no_depth_does_not_move_funding() -> None:
    """a buys 100 from b at 104 every block (10,400 of notional, counted): no depth
    rests, so there is no impact price and no premium; the last trade alone does
    not move the mark."""
    chain = perp_chain()
    trade = [("a", BUY, 104 * W, 100 * W), ("b", SELL, 104 * W, 100 * W)]
    per_lot = run_until_funding(chain, trade)
    market = chain.state.market_states[PERP]
    assert market.last_trade_price == 104 * W
    assert per_lot == 0
    assert abs(per_lot) <= premium_bound(chain.state.market_params[PERP], 100 * W) // 1000
    assert market.mark_price == 100 * W
    assert charges(chain) == (0, 0)


@pytest.mark.parametrize(
    ("funding_clamp", "mark_band", "bound"),
    [
        (W // 100, W // 20, 1 * W),  # funding_clamp 1% binds
        (W // 5, W // 5, 5 * W),  # funding_clamp 20%: the 5% margin gap binds
    ],
)
def test_a_resting_bid_far_above_the_index_charges_at_most_the_bound(
    funding_clamp: int, mark_band: int, bound: int
) -> None:
    """whale rests a bid of 1,000 at 1,000 (ten times the index). It counts at the
    band edge, so each sample is index * mark_band; the interval's funding is
    clamped to the bound; what the long pays, the short receives."""
    chain = perp_chain(funding_clamp=funding_clamp, mark_band=mark_band)
    assert premium_bound(chain.state.market_params[PERP], 100 * W) == bound
    chain.block(
        [chain.prices({PERP: 100 * W}), chain.order("whale", PERP, BUY, 1_000 * W, 1_000 * W)]
    )
    per_lot = run_until_funding(chain, [])
    assert per_lot == bound // 1000
    long_owes, short_owes = charges(chain)
    assert long_owes == 50 * bound == -short_owes
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_one_interval_at_the_bound_leaves_a_position_opened_at_initial_margin_at_maintenance() -> (
    None
):
    """thin opens 10 long at 100 with exactly the initial 10% (100 of collateral, no
    fees); a bid far above the index pushes the interval to the bound, the 5% gap:
    thin pays 10 * 5 = 50 and is left with 50 = its 5% maintenance, not liquidated."""
    chain = Chain(
        make_genesis(
            {"thin": 100 * W, "shortie": 100_000 * W, "whale": 100_000 * W},
            markets=[
                (
                    PERP,
                    perp_params(
                        funding_interval=60,
                        funding_clamp=W // 5,
                        mark_band=W // 5,
                        maker_fee=0,
                        taker_fee=0,
                    ),
                )
            ],
        )
    )
    chain.block([chain.prices({PERP: 100 * W})])
    opened = chain.block(
        [
            chain.prices({PERP: 100 * W}),
            chain.order("thin", PERP, BUY, 100 * W, 10 * W),
            chain.order("shortie", PERP, SELL, 100 * W, 10 * W),
        ]
    )
    assert all(r.success for r in opened.receipts)
    chain.block(
        [chain.prices({PERP: 100 * W}), chain.order("whale", PERP, BUY, 1_000 * W, 1_000 * W)]
    )
    assert run_until_funding(chain, []) == 5 * W // 1000
    assert not [e for r in chain.results for e in r.events if isinstance(e, Liquidated)]
    risk = subaccount_risk(StateWriter(chain.state, chain.state.height, chain.now), sub("thin"))
    assert risk.equity == risk.maintenance == 50 * W
