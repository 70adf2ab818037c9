"""Price sources (sequencer_net.pricefeed) and the validator's reporter
(sequencer_net.node.reporter): exact conversion, paths into any JSON feed,
one walk for every validator of a testnet, and reports the engine accepts."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.api.intake import Accepted, Outcome, Refused
from sequencer_net.execution.engine import ExecutionBlock, SequencedTransaction, execute_block
from sequencer_net.execution.fees import required_fee
from sequencer_net.execution.genesis import (
    GenesisConfig,
    GenesisDeposit,
    GenesisMarket,
    genesis_state,
)
from sequencer_net.execution.limits import MAX_ORACLE_PRICES
from sequencer_net.execution.records import OptionKind, OracleReporter
from sequencer_net.execution.state import ExecutionState, subaccount_id
from sequencer_net.execution.transactions import OracleUpdate, decode_payload
from sequencer_net.mempool.transaction import decode_transaction, recover_sender, tx_hash
from sequencer_net.node.reporter import PriceReporter
from sequencer_net.pricefeed.sources import (
    FileSource,
    HttpSource,
    MarketPaths,
    PriceSource,
    PriceSourceError,
    local_simulated_source,
    lookup,
    parse_document,
    parse_mapping,
    quotes_from_document,
    to_wad,
)
from sequencer_net.pricefeed.walk import SharedPriceWalk
from tests.execution.execution_harness import option_params, perp_params

W = 10**18
GENESIS_TIME = 1_700_000_000
VALIDATOR = PrivateKey(keccak256(b"reporter test validator"))
DOMAIN = Domain(chain_id=31337, verifying_contract=bytes(20), genesis_hash=bytes(32))
PERP = perp_params()
CALL = option_params(OptionKind.CALL, 3000 * W, GENESIS_TIME + 86_400)


def test_values_convert_to_wad_exactly() -> None:
    assert to_wad("60000.5", "x") == 60_000 * W + W // 2
    assert to_wad(Decimal("0.1"), "x") == W // 10  # a JSON float parsed as Decimal
    assert to_wad(7, "x") == 7 * W
    assert to_wad("1e-18", "x") == 1
    for bad in ("abc", "NaN", "Infinity", True, None, [1]):
        with pytest.raises(PriceSourceError):
            to_wad(bad, "x")


def test_paths_reach_into_objects_and_lists() -> None:
    document = parse_document(b'{"data": [{"last": 0.1}, {"last": "2"}]}', "feed")
    assert lookup(document, "data.1.last") == "2"
    assert to_wad(lookup(document, "data.0.last"), "x") == W // 10
    with pytest.raises(PriceSourceError, match="no '5'"):
        lookup(document, "data.5.last")


def test_mapping_entries_are_paths_or_constant_volatilities() -> None:
    mapping = parse_mapping(["1=btc.last", "3=eth.last"], ["3=0.6", "4=iv.eth"])
    assert mapping[1] == MarketPaths("btc.last")
    assert mapping[3] == MarketPaths("eth.last", constant_volatility=6 * W // 10)
    assert mapping[4] == MarketPaths("4.price", volatility="iv.eth")
    for bad in (["x=1"], ["1"], ["1="], ["1=a", "1=b"]):
        with pytest.raises(ValueError):
            parse_mapping(bad, [])


def test_a_document_gives_quotes_for_the_markets_it_has_and_names_what_is_missing() -> None:
    document = parse_document(
        b'{"1": {"price": "60000"}, "3": {"price": "3000"}, "4": {"price": "-1"}}', "feed"
    )
    quotes, problems = quotes_from_document(document, {1: PERP, 2: PERP, 3: CALL, 4: PERP}, {})
    assert quotes == {1: quotes[1]} and quotes[1].price == 60_000 * W
    assert quotes[1].volatility == 0
    assert len(problems) == 3  # 2 missing, 3 has no volatility, 4 out of range
    assert any("2" in p for p in problems)


def test_oversized_or_broken_documents_are_refused() -> None:
    with pytest.raises(PriceSourceError, match="larger"):
        parse_document(b" " * ((1 << 20) + 1), "feed")
    with pytest.raises(PriceSourceError, match="not JSON"):
        parse_document(b"{", "feed")
    # Deep nesting never reaches the parser (a C-stack overflow would crash the node).
    with pytest.raises(PriceSourceError, match="nested 100000 deep"):
        parse_document(b"[" * 100_000, "feed")
    # Brackets inside strings do not count.
    assert parse_document(b'{"a": "[[[[' + b"[" * 100 + b'\\"]"}', "feed") == {
        "a": "[[[[" + "[" * 100 + '"]'
    }


async def test_the_file_source_rereads_its_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    source = FileSource(path, parse_mapping([], ["3=0.5"]))
    with pytest.raises(PriceSourceError, match="cannot read"):
        await source.read({1: PERP}, 0)
    path.write_text(json.dumps({"1": {"price": 100}, "3": {"price": "3000.25"}}))
    quotes = await source.read({1: PERP, 3: CALL}, 0)
    assert (quotes[1].price, quotes[3].price, quotes[3].volatility) == (
        100 * W,
        3000 * W + W // 4,
        W // 2,
    )
    path.write_text(json.dumps({"1": {"price": 101}}))
    assert (await source.read({1: PERP}, 0))[1].price == 101 * W


async def test_the_http_source_reads_a_ticker_by_path_and_reports_failures() -> None:
    answers = [
        httpx.Response(200, json={"symbol": "BTCUSDT", "price": "60123.45"}),
        httpx.Response(503),
        httpx.Response(200, content=b"<html>"),
    ]
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url))
        return answers.pop(0)

    source = HttpSource("http://127.0.0.1:9/ticker", parse_mapping(["1=price"], []))
    source._client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    assert (await source.read({1: PERP}, 0))[1].price == 60_123 * W + 45 * W // 100
    with pytest.raises(PriceSourceError, match="HTTP 503"):
        await source.read({1: PERP}, 0)
    with pytest.raises(PriceSourceError, match="not JSON"):
        await source.read({1: PERP}, 0)
    assert requests == ["http://127.0.0.1:9/ticker"] * 3
    await source.aclose()


def test_the_walk_depends_on_seed_and_time_only() -> None:
    one = SharedPriceWalk(5, "ETH", 3000 * W)
    two = SharedPriceWalk(5, "ETH", 3000 * W)
    times = [GENESIS_TIME + t for t in (0, 1, 1, 500, 2, 2, 5000, 3, 500)]  # repeats: cached
    first = [one.price_at(t) for t in times]
    second = [two.price_at(t) for t in reversed(times)][::-1]
    assert first == second  # the order of questions does not matter
    assert first != [SharedPriceWalk(6, "ETH", 3000 * W).price_at(t) for t in times]
    assert all(2000 * W < p < 4500 * W for p in first)


def genesis(markets: dict[int, object], funds: int = 1_000 * W) -> ExecutionState:
    return genesis_state(
        GenesisConfig(
            chain_id=31337,
            admin=VALIDATOR.address,
            bridge=VALIDATOR.address,
            oracles=(OracleReporter(VALIDATOR.address, 1),),
            genesis_time=GENESIS_TIME,
            deposits=(GenesisDeposit(subaccount_id(VALIDATOR.address, 0), funds),),
            markets=tuple(GenesisMarket(m, p) for m, p in markets.items()),  # type: ignore[arg-type]
        )
    )


class Submitted:
    def __init__(self, refuse: bool = False) -> None:
        self.raw: list[bytes] = []
        self.refuse = refuse

    async def __call__(self, raw: bytes) -> Outcome:
        self.raw.append(raw)
        if self.refuse:
            return Refused(409, "nonce_used", "nonce is already used")
        return Accepted(tx_hash(raw))


def reporter_for(
    state: ExecutionState,
    submitted: Submitted,
    clock: Callable[[], float],
    *,
    source: PriceSource | None = None,
    interval_s: float = 1.0,
    lag_s: int = 1,
) -> PriceReporter:
    """This validator's reporter over `state`, the simulated walk unless `source`."""
    return PriceReporter(
        key=VALIDATOR,
        domain=DOMAIN,
        source=source if source is not None else local_simulated_source(0),
        source_name="simulated" if source is None else "file",
        state=lambda: state,
        submit=submitted,
        interval_s=interval_s,
        lag_s=lag_s,
        clock=clock,
    )


async def test_the_reporter_signs_reports_the_engine_accepts() -> None:
    state = genesis({1: PERP, 2: PERP, 3: CALL})
    submitted = Submitted()
    now = [GENESIS_TIME + 10.4]
    reporter = reporter_for(state, submitted, lambda: now[0])
    assert await reporter.report_once() == 1
    assert await reporter.report_once() == 0  # the same second is reported once
    now[0] += 1
    assert await reporter.report_once() == 1
    txs = [decode_transaction(raw) for raw in submitted.raw]
    assert [tx.nonce for tx in txs] == [0, 1]
    assert all(recover_sender(tx, DOMAIN) == VALIDATOR.address for tx in txs)
    update = decode_payload(txs[0].payload)
    assert isinstance(update, OracleUpdate)
    assert update.published_at == GENESIS_TIME + 9
    assert [p.market_id for p in update.prices] == [1, 2, 3]
    assert update.prices[2].volatility > 0
    # The engine takes them: one reporter with all the power is the quorum.
    block = ExecutionBlock(
        1,
        GENESIS_TIME + 11,
        tuple(
            SequencedTransaction(
                tx_hash(raw), VALIDATOR.address, tx.nonce, tx.namespace, tx.fee, tx.payload
            )
            for raw, tx in zip(submitted.raw, txs, strict=True)
        ),
    )
    result = execute_block(state, block)
    assert [r.success for r in result.receipts] == [True, True]
    assert result.state.market_states[1].oracle_price == local_simulated_source(0).price(
        1, GENESIS_TIME + 10
    )
    assert reporter.status.document()["reports_sent"] == 2


async def test_a_refused_report_makes_the_reporter_recount_its_nonce_and_say_why() -> None:
    state = genesis({1: PERP})
    submitted = Submitted(refuse=True)
    now = [GENESIS_TIME + 10.0]
    reporter = reporter_for(state, submitted, lambda: now[0])
    assert await reporter.report_once() == 0
    now[0] += 1
    await reporter.report_once()
    assert [decode_transaction(raw).nonce for raw in submitted.raw] == [0, 0]
    assert "nonce_used" in (reporter.status.last_error or "")
    assert reporter.status.reports_refused == 2


async def test_many_markets_are_reported_in_updates_of_at_most_the_engine_limit(
    tmp_path: Path,
) -> None:
    count = MAX_ORACLE_PRICES + 6
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({str(m): {"price": m} for m in range(1, count + 1)}))
    state = genesis({m: PERP for m in range(1, count + 1)})
    submitted = Submitted()
    reporter = reporter_for(state, submitted, lambda: GENESIS_TIME + 5.0, source=FileSource(path))
    assert await reporter.report_once() == 2
    sizes = [len(decode_payload(decode_transaction(r).payload).prices) for r in submitted.raw]  # type: ignore[union-attr]
    assert sizes == [MAX_ORACLE_PRICES, 6]


async def test_the_reporter_task_reports_every_interval_until_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    state = genesis({1: PERP})
    submitted = Submitted()
    reporter = reporter_for(
        state, submitted, lambda: trio.current_time() + GENESIS_TIME, interval_s=0.1, lag_s=0
    )
    with trio.move_on_after(3.05):
        async with trio.open_nursery() as nursery:
            await nursery.start(reporter.run)
    # Whole seconds only: one report per second of the (virtual) clock.
    assert 3 <= len(submitted.raw) <= 4


async def test_the_reporter_warns_when_its_fees_would_not_last_an_hour(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rich = genesis({1: PERP})
    round_fee = required_fee(rich.config, len(decode_transaction(await one_report(rich)).payload))
    hour = 3_600 * round_fee  # one round a second
    assert round_fee > 0
    for funds, low in ((hour, False), (hour - 1, True)):
        caplog.clear()
        state = genesis({1: PERP}, funds=funds)
        reporter = reporter_for(state, Submitted(), lambda: GENESIS_TIME + 10.0)
        with caplog.at_level(logging.WARNING, logger="seqnet.oracle"):
            assert await reporter.report_once() == 1
        document = reporter.status.document()
        assert document["fee_balance"] == str(funds) and document["hour_of_fees"] == str(hour)
        assert document["fee_balance_low"] is low
        warned = [r for r in caplog.records if "oracle_fee_balance_low" in r.getMessage()]
        assert len(warned) == (1 if low else 0)
    # A report every 10 s needs a tenth of that.
    state = genesis({1: PERP}, funds=hour // 10)
    reporter = reporter_for(state, Submitted(), lambda: GENESIS_TIME + 10.0, interval_s=10.0)
    await reporter.report_once()
    assert reporter.status.hour_of_fees == hour // 10 and not reporter.status.fee_balance_low


async def one_report(state: ExecutionState) -> bytes:
    submitted = Submitted()
    await reporter_for(state, submitted, lambda: GENESIS_TIME + 10.0).report_once()
    return submitted.raw[0]
