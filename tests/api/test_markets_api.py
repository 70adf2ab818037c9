"""GET /v1/markets and GET /v1/accounts/{address}, in process, over a real engine state.

Three blocks on the testnet's markets (sequencer_net.home.local_markets): a
maker quotes BTC-PERP and a taker lifts part of the ask; a trader on
subaccount 1 buys at 18x; the oracle drops 6.7% and bankrupts him. The
answers are checked against numbers worked out by hand and against the
engine's own margin code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import msgspec
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from consensus.crypto import PrivateKey, keccak256
from sequencer_net.api.markets import MarketSource, option_json
from sequencer_net.api.server import build_app
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.engine import ExecutionBlock, SequencedTransaction, execute_block
from sequencer_net.execution.genesis import (
    GenesisConfig,
    GenesisDeposit,
    GenesisMarket,
    genesis_state,
)
from sequencer_net.execution.margin import subaccount_risk
from sequencer_net.execution.options import option_mark
from sequencer_net.execution.records import OracleReporter, TimeInForce
from sequencer_net.execution.state import (
    INSURANCE_FUND,
    ExecutionState,
    StateWriter,
    subaccount_id,
)
from sequencer_net.execution.transactions import (
    DEX_NAMESPACE,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    TxPayload,
    encode_payload,
)
from sequencer_net.home.local_markets import OPTION_VOLATILITY, genesis_markets, local_markets
from sequencer_net.node.market_activity import MarketActivity
from tests.api.conftest import ApiWorld

W = 10**18
GENESIS_TIME = 1_700_000_000
BTC, ETH, CALL, PUT = 1, 2, 3, 4
GTC, IOC = TimeInForce.GOOD_TILL_CANCEL, TimeInForce.IMMEDIATE_OR_CANCEL
BUY, SELL = 0, 1


def key(name: str) -> PrivateKey:
    return PrivateKey(keccak256(b"markets-api/" + name.encode()))


OPERATOR, MAKER, TAKER, LEVER = key("operator"), key("maker"), key("taker"), key("lever")


@dataclass
class Market:
    """A chain driven block by block, with the node's activity counters fed."""

    state: ExecutionState
    activity: MarketActivity
    nonces: dict[bytes, int]

    def tx(self, signer: PrivateKey, payload: TxPayload) -> SequencedTransaction:
        nonce = self.nonces.get(signer.address, 0)
        self.nonces[signer.address] = nonce + 1
        data = encode_payload(payload)
        digest = keccak256(encode((signer.address, nonce, data)))
        return SequencedTransaction(digest, signer.address, nonce, DEX_NAMESPACE, 0, data)

    def block(self, *txs: SequencedTransaction) -> None:
        height = self.state.height + 1
        result = execute_block(self.state, ExecutionBlock(height, GENESIS_TIME + height, txs))
        assert all(r.success for r in result.receipts), result.receipts
        self.state = result.state
        self.activity.record(height, result.events)

    def prices(self, btc: int, eth: int) -> SequencedTransaction:
        published = self.state.block.timestamp + 1
        quotes = (
            OraclePrice(BTC, btc, 0),
            OraclePrice(ETH, eth, 0),
            OraclePrice(CALL, eth, OPTION_VOLATILITY),
            OraclePrice(PUT, eth, OPTION_VOLATILITY),
        )
        return self.tx(OPERATOR, OracleUpdate(published, quotes))


def order(side: int, price: int, quantity: int, tif: TimeInForce = GTC, sub: int = 0) -> PlaceOrder:
    return PlaceOrder(sub, BTC, side, price, quantity, tif, False, False)


def trading_day() -> Market:
    config = GenesisConfig(
        chain_id=7,
        admin=OPERATOR.address,
        bridge=OPERATOR.address,
        oracles=(OracleReporter(OPERATOR.address, 1),),
        genesis_time=GENESIS_TIME,
        deposits=(
            GenesisDeposit(subaccount_id(MAKER.address, 0), 1_000_000 * W),
            GenesisDeposit(subaccount_id(TAKER.address, 0), 1_000_000 * W),
            GenesisDeposit(subaccount_id(LEVER.address, 1), 2_000 * W),
        ),
        insurance_fund=1_000_000 * W,
        # The testnet's markets, with the oracle's per-block cap at 10% so that
        # block 3's 6.7% drop lands in one block (the default is 5%).
        markets=tuple(
            GenesisMarket(m.market_id, msgspec.structs.replace(m.params, max_oracle_move=W // 10))
            for m in genesis_markets(local_markets(GENESIS_TIME))
        ),
        fee_base=0,
        fee_per_byte=0,
    )
    market = Market(genesis_state(config), MarketActivity(), {})
    # Block 1: quotes 59,990 / 60,010 (1 BTC each); a market buy of 0.25 clears at 60,010.
    market.block(
        market.prices(60_000 * W, 3_000 * W),
        market.tx(MAKER, order(BUY, 59_990 * W, W)),
        market.tx(MAKER, order(SELL, 60_010 * W, W)),
        market.tx(TAKER, order(BUY, 0, W // 4, IOC)),
    )
    # Block 2: 0.6 BTC on 2,000 of collateral (18x), from the rest of the ask.
    market.block(market.tx(LEVER, order(BUY, 0, 6 * W // 10, IOC, sub=1)))
    # Block 3: BTC -6.7%: equity 1,976 - 0.6 * 4,010 < 0: bankrupt, so the fund
    # takes the 0.6 over at once and pays the deficit (a drop that left equity
    # positive would first place a liquidation order into block 4's auction).
    market.block(market.prices(56_000 * W, 3_000 * W))
    return market


@pytest.fixture
def day() -> Market:
    return trading_day()


@pytest.fixture
def client_for(world: ApiWorld) -> Iterator[object]:
    def make(source: MarketSource | None) -> httpx.AsyncClient:
        context = world.context()
        context.markets = source
        transport = httpx.ASGITransport(app=build_app(context))
        return httpx.AsyncClient(transport=transport, base_url="http://api")

    yield make


def source_of(day: Market) -> MarketSource:
    return MarketSource(lambda: day.state, day.activity)


@pytest.fixture(scope="module")
def fuzz_app(shared_world: ApiWorld) -> Starlette:
    """One app over one trading day for every example of the property test."""
    context = shared_world.context()
    context.markets = source_of(trading_day())
    return build_app(context)


async def test_markets_report_prices_the_last_auction_open_interest_and_liquidations(
    day: Market, client_for: object
) -> None:
    async with client_for(source_of(day)) as client:  # type: ignore[operator]
        answer = (await client.get("/v1/markets")).json()
    assert answer["height"] == 3 and answer["timestamp"] == GENESIS_TIME + 3
    assert answer["counted_since_height"] == 1
    markets = {m["id"]: m for m in answer["markets"]}
    assert sorted(markets) == [BTC, ETH, CALL, PUT]
    btc = markets[BTC]
    assert btc["kind"] == "perp" and btc["option"] is None and btc["paused"] is False
    assert (btc["tick_size"], btc["lot_size"]) == ("1", "0.001")
    assert btc["oracle_price"] == "56000" and btc["oracle_fresh"] is True
    assert btc["oracle_published_at"] == GENESIS_TIME + 3
    assert btc["mark_price"] == "56000"  # block 3 did not trade: mark = index
    assert btc["last_clearing_price"] == "60010"  # both auctions cleared at the ask
    assert btc["last_clearing_volume"] == "0.6" and btc["last_cleared_height"] == 2
    assert btc["auctions_cleared"] == 2 and btc["volume"] == "0.85"
    # Maker short 0.85; taker long 0.25; the fund took over the liquidated 0.6.
    assert btc["open_interest"] == "0.85"
    assert btc["liquidations"] == 1
    # Premium: 0 in blocks 1 and 2 (the bid 59,990 is under the index 60,000 and the
    # ask's rest, 0.15 * 60,010, is under the 10,000 impact notional); in block 3
    # the bid, capped at the band (56,000 + 5% = 58,800), is 2,800 over the index.
    # Average 2,800 / 3 = 933.33 per second-weighted interval, clamped to 1% of the
    # index (560: the smaller of funding_clamp and the 1.5% margin gap): 0.01.
    assert btc["funding_rate"] == "0.01"
    assert btc["funding_interval_s"] == 60 and btc["next_funding_at"] == GENESIS_TIME + 60
    assert btc["cumulative_funding"] == "0" and btc["last_funding_per_unit"] is None
    call = markets[CALL]
    assert call["kind"] == "option" and call["funding_rate"] is None
    assert call["last_trade_price"] is None
    assert call["option"]["type"] == "call" and call["option"]["strike"] == "3000"
    assert call["option"]["underlying"] == 2 and call["option"]["settlement_window_s"] == 1800
    # Expiry is 30 days away: nothing sampled for the settlement average yet.
    assert call["option"]["settlement_average"] is None
    assert call["option"]["settlement_seconds_sampled"] == 0
    assert call["option"]["settlement_price"] is None
    # Within the window: 3 s at 3,000 and 1 s at 3,010 average to 3,002.5.
    sampled = msgspec.structs.replace(
        day.state.market_states[CALL],
        settlement_twap_sum=3 * 3_000 * W + 3_010 * W,
        settlement_twap_seconds=4,
    )
    option = option_json(day.state.market_params[CALL], sampled)
    assert option is not None and option["settlement_average"] == "3002.5"
    assert option["settlement_seconds_sampled"] == 4
    assert call["oracle_volatility"] == "0.6" and call["last_clearing_price"] is None
    reader = StateWriter(day.state, 3, GENESIS_TIME + 3)
    mark = option_mark(reader, CALL, day.state.market_params[CALL], day.state.market_states[CALL])
    assert call["mark_price"] == format_wad(mark)
    assert markets[ETH]["liquidations"] == 0 and markets[ETH]["open_interest"] == "0"


def format_wad(value: int) -> str:
    whole, fraction = divmod(value, W)
    return f"{whole}.{fraction:018d}".rstrip("0").rstrip(".")


async def test_an_account_shows_collateral_positions_orders_and_margin(
    day: Market, client_for: object
) -> None:
    async with client_for(source_of(day)) as client:  # type: ignore[operator]
        maker = (await client.get("/v1/accounts/0x" + MAKER.address.hex())).json()
        lever = (await client.get("/v1/accounts/" + LEVER.address.hex())).json()
    assert maker["address"] == "0x" + MAKER.address.hex() and maker["height"] == 3
    assert maker["next_nonce"] == 2
    (sub,) = maker["subaccounts"]
    assert sub["number"] == 0 and sub["id"] == "0x" + MAKER.address.hex() + "00"
    (position,) = sub["positions"]
    assert position["market_id"] == BTC and position["size"] == "-0.85"
    assert position["valuation_price"] == "56000" and position["value"] == "-47600"
    assert (position["open_buy"], position["open_sell"]) == ("1", "0.15")
    assert sub["open_orders"] == 2 and sub["orders_truncated"] is False
    bid, ask = sub["orders"]  # oldest first: placed in nonce order in block 1
    assert (bid["side"], bid["price"], bid["quantity"]) == ("buy", "59990", "1")
    assert (ask["side"], ask["price"], ask["quantity"]) == ("sell", "60010", "0.15")
    assert bid["time_in_force"] == "gtc" and bid["placed_height"] == 1
    sid = subaccount_id(MAKER.address, 0)
    risk = subaccount_risk(StateWriter(day.state, 3, GENESIS_TIME + 3), sid)
    assert sub["equity"] == format_wad(risk.equity)
    assert sub["maintenance_margin"] == format_wad(risk.maintenance)
    assert sub["initial_margin_with_orders"] == format_wad(risk.initial_with_orders)
    assert sub["free_collateral"] == format_wad(risk.equity - risk.initial_with_orders)
    # The liquidated trader: only subaccount 1 exists, flat, collateral what was left.
    (levered,) = lever["subaccounts"]
    assert levered["number"] == 1 and levered["positions"] == [] and levered["orders"] == []
    assert float(levered["collateral"]) >= 0


async def test_orders_listed_are_capped_and_the_count_stays_exact(
    day: Market, client_for: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sequencer_net.api.markets.MAX_ACCOUNT_ORDERS_ANSWER", 1)
    async with client_for(source_of(day)) as client:  # type: ignore[operator]
        maker = (await client.get("/v1/accounts/0x" + MAKER.address.hex())).json()
    (sub,) = maker["subaccounts"]
    assert len(sub["orders"]) == 1 and sub["orders_truncated"] is True
    assert sub["open_orders"] == 2


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/accounts/0x1234", 400, "bad_request"),  # too short
        ("/v1/accounts/0x" + "zz" * 20, 400, "bad_request"),  # not hex
        ("/v1/accounts/0x" + "ab" * 21, 400, "bad_request"),  # a subaccount id, not an address
        ("/v1/accounts/0x" + "ab" * 20, 404, "not_found"),  # nobody
        ("/v1/accounts/", 404, "not_found"),  # no address at all
    ],
)
async def test_bad_and_unknown_addresses(
    day: Market, client_for: object, path: str, status: int, code: str
) -> None:
    async with client_for(source_of(day)) as client:  # type: ignore[operator]
        response = await client.get(path)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


async def test_without_an_engine_both_endpoints_answer_503(client_for: object) -> None:
    async with client_for(None) as client:  # type: ignore[operator]
        for path in ("/v1/markets", "/v1/accounts/0x" + "ab" * 20):
            response = await client.get(path)
            assert response.status_code == 503 and response.json()["code"] == "unavailable"


async def test_answers_follow_the_latest_state(day: Market, client_for: object) -> None:
    source = source_of(day)
    async with client_for(source) as client:  # type: ignore[operator]
        before = (await client.get("/v1/accounts/0x" + MAKER.address.hex())).json()
        day.block(day.tx(MAKER, order(SELL, 61_000 * W, W)))
        after = (await client.get("/v1/accounts/0x" + MAKER.address.hex())).json()
        markets = (await client.get("/v1/markets")).json()
    assert before["subaccounts"][0]["open_orders"] == 2
    assert after["subaccounts"][0]["open_orders"] == 3 and after["height"] == 4
    assert len(after["subaccounts"][0]["orders"]) == 3
    assert markets["height"] == 4


def test_the_order_index_groups_a_book_again_only_when_the_engine_replaced_it(
    day: Market,
) -> None:
    # Block 4: the fund's reduce-only order sells the 0.6 it took over in
    # block 3 into the maker's bid; after that the fund places nothing more.
    day.block(day.prices(56_100 * W, 3_005 * W))
    assert day.state.positions.get(INSURANCE_FUND + BTC.to_bytes(4, "big")) is None
    source = source_of(day)
    maker = subaccount_id(MAKER.address, 0)
    assert len(list(source.orders.orders(day.state, maker, [BTC, ETH]))) == 2
    grouped_btc = source.orders._grouped[BTC][1]
    grouped_eth = source.orders._grouped[ETH][1]
    day.block(day.prices(58_600 * W, 3_010 * W))  # no order: no book changes
    list(source.orders.orders(day.state, maker, [BTC, ETH]))
    assert source.orders._grouped[BTC][1] is grouped_btc
    day.block(day.tx(MAKER, order(SELL, 61_000 * W, W)))  # BTC's book changes
    assert len(list(source.orders.orders(day.state, maker, [BTC, ETH]))) == 3
    assert source.orders._grouped[BTC][1] is not grouped_btc
    assert source.orders._grouped[ETH][1] is grouped_eth


_segments = st.one_of(
    st.text(max_size=60),
    st.binary(max_size=42).map(lambda b: "0x" + b.hex()),
    st.binary(max_size=42).map(bytes.hex),
    st.integers(min_value=1, max_value=6000).map(lambda n: "a" * n),
    st.sampled_from(["0x", "..", "%00", "0X" + "ab" * 20, "0x" + "AB" * 20]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(segment=_segments)
@example(segment="0x" + MAKER.address.hex())
@example(segment=LEVER.address.hex().upper())
def test_any_address_segment_is_an_answer_or_a_coded_4xx(fuzz_app: Starlette, segment: str) -> None:
    """Hostile path parameters: 200 for an address in state, else 400/404 with a
    code, never a 5xx (the node's answers to what anyone can send)."""
    path = "/v1/accounts/" + quote(segment, safe="")

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=fuzz_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get(path)

    response = trio.run(ask)
    assert response.status_code in (200, 400, 404), (path, response.status_code, response.text)
    if response.status_code != 200:
        body = response.json()
        assert set(body) == {"error", "code"} and body["code"] in ("bad_request", "not_found")
