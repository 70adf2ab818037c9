"""`execute_block` is total: every input yields one receipt each and a state, never an exception.

Each test here pins one input that used to raise out of the engine (and so would
have halted every validator at once, on every restart). The general property is
fuzzed in `test_fuzz.py`.
"""

from __future__ import annotations

from sequencer_net.execution import engine, limits
from sequencer_net.execution.engine import ExecutionBlock, execute_block
from sequencer_net.execution.receipts import OrderRemoved, PhaseSkipped
from sequencer_net.execution.records import OptionKind
from sequencer_net.execution.transactions import (
    CancelOrder,
    ListMarket,
    PlaceOrder,
    UpdateMarketParams,
)
from tests.execution.execution_harness import (
    ADMIN,
    BUY,
    GENESIS_TIME,
    GTC,
    SELL,
    Chain,
    W,
    conserved_total,
    key,
    make_genesis,
    option_params,
    perp_params,
    size,
    sub,
)

PERP = 1


def funded_chain() -> Chain:
    chain = Chain(
        make_genesis(
            {"alice": 10_000 * W, "bob": 10_000 * W},
            insurance=1_000 * W,
            markets=[(PERP, perp_params())],
        )
    )
    chain.block([chain.prices({PERP: 100 * W})])
    return chain


def test_cancel_with_a_market_id_beyond_four_bytes_is_a_failed_receipt() -> None:
    chain = funded_chain()
    result = chain.block([chain.tx(key("alice"), CancelOrder(0, 2**32, bytes(32)))])
    [receipt] = result.receipts
    assert not receipt.success
    assert receipt.error == "MalformedTransaction"
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_deeply_nested_msgpack_payload_is_a_failed_receipt() -> None:
    chain = funded_chain()
    nested = b"\x91" * 999  # 999 bytes of nested one-element arrays: [[[[...]]]]
    result = chain.block([chain.raw(key("alice"), nested)])
    [receipt] = result.receipts
    assert (receipt.success, receipt.error) == (False, "MalformedTransaction")


def test_transactions_beyond_the_block_limit_get_a_block_full_receipt(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(limits, "MAX_TRANSACTIONS_PER_BLOCK", 3)
    chain = funded_chain()
    txs = [chain.order("alice", PERP, BUY, 99 * W, W // 1000) for _ in range(5)]
    result = chain.block(txs)
    assert len(result.receipts) == 5
    assert [r.success for r in result.receipts] == [True, True, True, False, False]
    assert {r.error for r in result.receipts[3:]} == {"BlockFull"}
    # The extra transactions consumed nothing: their nonces are still free.
    window = chain.state.nonces[key("alice").address]
    assert (window.highest, window.used) == (2, 0b111)


def test_option_with_negative_rate_and_distant_expiry_is_refused_at_listing() -> None:
    chain = funded_chain()
    far = GENESIS_TIME + 2_000 * 365 * 86_400  # 2,000 years: exp(-r T) overflowed at r = -1
    params = option_params(OptionKind.PUT, 100 * W, far, risk_free_rate=-W)
    result = chain.block([chain.tx(ADMIN, ListMarket(7, params))])
    assert result.receipts[0].error == "InvalidMarketParams"
    assert 7 not in chain.state.market_params


def test_option_mark_is_total_even_for_a_distant_expiry_already_in_state() -> None:
    """Listing refuses such terms; a state that holds them anyway (forged here by
    swapping the parameters in place) still marks: the tenor is clamped."""
    far = GENESIS_TIME + 2_000 * 365 * 86_400
    chain = Chain(make_genesis({"alice": 10_000 * W, "bob": 10_000 * W}, insurance=1_000 * W))
    near = option_params(OptionKind.PUT, 100 * W, GENESIS_TIME + 86_400)
    listed = chain.block([chain.tx(ADMIN, ListMarket(7, near))])
    assert listed.receipts[0].success
    forged = option_params(OptionKind.PUT, 100 * W, far, risk_free_rate=-W)
    chain.state.market_params[7] = forged  # type: ignore[index]
    chain.block([chain.prices({7: 100 * W}, vol=W)])
    result = chain.block(
        [
            chain.order("alice", 7, BUY, 50 * W, W // 100),
            chain.order("bob", 7, SELL, 50 * W, W // 100),
        ]
    )
    assert len(result.receipts) == 2
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_tick_size_change_that_strands_resting_orders_is_refused() -> None:
    chain = funded_chain()
    rest = chain.block([chain.order("alice", PERP, BUY, 9_901 * W // 100, W // 1000)])
    assert rest.receipts[0].success and len(chain.state.books[PERP]) == 1
    coarse = perp_params(tick_size=W // 10)  # 99.01 is off the 0.1 grid
    result = chain.block([chain.tx(ADMIN, UpdateMarketParams(PERP, coarse))])
    assert result.receipts[0].error == "InvalidMarketParams"
    finer = perp_params(tick_size=W // 1000)  # every 0.01 price is on the 0.001 grid
    result = chain.block([chain.tx(ADMIN, UpdateMarketParams(PERP, finer))])
    assert result.receipts[0].success


def test_auction_drops_off_grid_resting_orders_instead_of_raising() -> None:
    """Totality by construction: even if a resting order is off the grid (a state
    from before the listing check), the auction removes it with an event."""
    chain = funded_chain()
    chain.block([chain.order("alice", PERP, BUY, 9_901 * W // 100, W // 1000)])
    coarse = perp_params(tick_size=W // 10)
    chain.state.market_params[PERP] = coarse  # type: ignore[index]
    result = chain.block(
        [chain.prices({PERP: 100 * W}), chain.order("bob", PERP, SELL, 99 * W, W // 1000, tif=GTC)]
    )
    removed = [e for e in result.events if isinstance(e, OrderRemoved)]
    assert [e.why for e in removed] == ["off-grid"]
    assert all(r.success for r in result.receipts)
    assert chain.state.subaccounts[sub("alice")].open_orders == 0
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits


def test_the_same_block_twice_gives_the_same_outcome_even_when_it_fails_everywhere() -> None:
    chain = funded_chain()
    state = chain.state
    txs = (
        chain.tx(key("alice"), CancelOrder(0, 2**32, bytes(32))),
        chain.tx(key("alice"), PlaceOrder(0, 2**40, BUY, W, W, GTC, False, False)),
        chain.raw(key("bob"), b"\x93\x01\x00" + b"\x91" * 500),
    )
    block = ExecutionBlock(state.height + 1, state.block.timestamp + 1, txs)
    a = execute_block(state, block)
    b = execute_block(state, block)
    assert a.state_root == b.state_root and a.receipts == b.receipts
    assert len(a.receipts) == 3 and not any(r.success for r in a.receipts)


def test_an_auction_that_raises_is_skipped_and_the_block_runs_again_without_it() -> None:
    """Safety net: a market whose grid makes notionals inexact (forged past the
    listing check) raises inside its auction; the block is executed again with
    that auction skipped, its new orders removed, every other market untouched."""
    chain = Chain(
        make_genesis(
            {"alice": 10_000 * W, "bob": 10_000 * W},
            insurance=1_000 * W,
            markets=[(PERP, perp_params()), (2, perp_params())],
        )
    )
    chain.block([chain.prices({PERP: 100 * W, 2: 100 * W})])
    inexact = perp_params(tick_size=W // 100 + 1, lot_size=W // 1000)
    chain.state.market_params[PERP] = inexact  # type: ignore[index]
    before = chain.state
    price = 100 * (W // 100 + 1)  # on the forged grid
    result = chain.block(
        [
            chain.prices({PERP: price, 2: 100 * W}),
            chain.order("alice", PERP, BUY, price, W // 1000),
            chain.order("bob", PERP, SELL, price, W // 1000),
            chain.order("alice", 2, BUY, 100 * W, W // 1000),
            chain.order("bob", 2, SELL, 100 * W, W // 1000),
        ]
    )
    assert [e for e in result.events if isinstance(e, PhaseSkipped)] == [
        PhaseSkipped("auction", PERP, b"", "EngineInvariantBroken")
    ]
    removed = {e.why for e in result.events if isinstance(e, OrderRemoved) and e.market_id == PERP}
    assert removed == {"auction-skipped"}
    assert all(r.success for r in result.receipts)
    assert size(chain.state, sub("alice"), 2) == W // 1000  # the other market traded
    assert size(chain.state, sub("alice"), PERP) == 0
    assert chain.state.subaccounts[sub("alice")].open_orders == 0
    assert conserved_total(chain.state) == chain.state.ledger.net_deposits
    assert chain.state.height == before.height + 1


def test_a_block_that_cannot_execute_at_all_commits_empty_with_a_receipt_each(
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    chain = funded_chain()
    state = chain.state

    def broken(*args: object) -> None:
        raise RuntimeError("simulated engine bug outside any unit")

    monkeypatch.setattr(engine, "admit_transactions", broken)
    txs = (chain.order("alice", PERP, BUY, 99 * W, W // 1000), chain.raw(key("bob"), b"\x00"))
    result = execute_block(state, ExecutionBlock(state.height + 1, chain.now + 1, txs))
    assert [r.error for r in result.receipts] == ["BlockFailed", "BlockFailed"]
    assert result.events == (PhaseSkipped("all", 0, b"", "RuntimeError"),)
    assert result.state.height == state.height + 1
    assert result.state.nonces == state.nonces
    assert result.state.subaccounts == state.subaccounts
