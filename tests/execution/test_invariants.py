"""Property tests over random blocks (hypothesis, seeded by hypothesis' own database).

- conservation: sum(collateral) + fee pool - sum(unsettled charges) == net deposits,
  exactly, after every block (trades, fees, funding, liquidations, socialized loss);
- every subaccount holding positions meets maintenance after every block;
- lots held long == lots held short == the market's open_lots;
- determinism: the same block on the same state gives the same bytes and root;
- shuffling the transactions of a block changes nothing (orders only).
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sequencer_net.execution.block import SequencedTransaction
from sequencer_net.execution.engine import ExecutionBlock, encode_outcome, execute_block
from sequencer_net.execution.margin import (
    Maintenance,
    MaintenanceCheck,
    maintenance_risk,
    subaccount_risk,
)
from sequencer_net.execution.state import INSURANCE_FUND, StateWriter
from tests.execution.execution_harness import (
    BUY,
    GTC,
    IOC,
    SELL,
    Chain,
    W,
    conserved_total,
    make_genesis,
    perp_params,
)

TRADERS = ["t0", "t1", "t2", "t3", "t4", "t5"]
MARKETS = (1, 2)

order_strategy = st.tuples(
    st.sampled_from(TRADERS),
    st.sampled_from(MARKETS),
    st.sampled_from([BUY, SELL]),
    st.integers(min_value=-8, max_value=8),  # price offset from the index, in ticks * 50
    st.integers(min_value=1, max_value=400),  # lots * 100: up to 40 units, ~10x leverage
    st.sampled_from(["gtc", "ioc", "market", "post", "reduce"]),
)
block_strategy = st.tuples(
    st.lists(order_strategy, max_size=12),
    st.integers(min_value=-6, max_value=6),  # index move, percent
    st.integers(min_value=1, max_value=900),  # seconds to the next block
)


def fresh_chain() -> Chain:
    params = perp_params(funding_interval=600)
    state = make_genesis(
        {name: (200 + 150 * i) * W for i, name in enumerate(TRADERS)},
        insurance=50 * W,
        markets=[(mid, params) for mid in MARKETS],
    )
    chain = Chain(state)
    chain.block([chain.prices({mid: 100 * W for mid in MARKETS})])
    return chain


def build_block(chain: Chain, orders: list, index: int, dt: int = 1) -> list[SequencedTransaction]:
    txs = [chain.prices({mid: index for mid in MARKETS}, at=chain.now + dt)]
    for name, mid, side, offset, lots, kind in orders:
        price = index + offset * 50 * (W // 100)
        price = max(price - price % (W // 100), W // 100)
        quantity = lots * 100 * (W // 1000)
        if kind == "market":
            txs.append(chain.order(name, mid, side, 0, quantity, tif=IOC))
        else:
            txs.append(
                chain.order(
                    name,
                    mid,
                    side,
                    price,
                    quantity,
                    tif=IOC if kind == "ioc" else GTC,
                    post_only=kind == "post",
                    reduce_only=kind == "reduce",
                )
            )
    return txs


def check_invariants(chain: Chain) -> None:
    state = chain.state
    assert conserved_total(state) == state.ledger.net_deposits
    w = StateWriter(state, state.height, state.block.timestamp)
    check = MaintenanceCheck(w)
    for sid in state.open_subaccounts:
        if sid == INSURANCE_FUND:
            continue
        risk = subaccount_risk(w, sid)
        assert maintenance_risk(w, sid) == Maintenance(risk.equity, risk.maintenance)
        assert check(sid) == Maintenance(risk.equity, risk.maintenance)
        # Below maintenance only with positive equity (liquidation orders pending).
        assert risk.equity >= risk.maintenance or risk.equity > 0, sid.hex()
    for mid in MARKETS:
        lot = state.market_params[mid].lot_size
        sizes = [p.size for k, p in state.positions.items() if int.from_bytes(k[21:], "big") == mid]
        assert sum(sizes) == 0
        assert sum(max(s, 0) for s in sizes) // lot == state.market_states[mid].open_lots
    for sid, sub in state.subaccounts.items():
        orders = sum(
            1 for book in state.books.values() for o in book.values() if o.subaccount == sid
        )
        assert sub.open_orders == orders


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(blocks=st.lists(block_strategy, min_size=1, max_size=6))
def test_conservation_maintenance_and_determinism(blocks: list) -> None:
    chain = fresh_chain()
    index = 100 * W
    for orders, move, dt in blocks:
        index = max(index + index * move // 100, W)
        txs = build_block(chain, orders, index, dt)
        block = ExecutionBlock(chain.state.height + 1, chain.now + dt, tuple(txs))
        again = execute_block(chain.state, block)
        result = chain.block(txs, dt=dt)
        assert encode_outcome(result) == encode_outcome(again)
        check_invariants(chain)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    orders=st.lists(order_strategy, min_size=2, max_size=16),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
# Three equal buys sharing one lot's remainder with a sell: the tie-break's
# salt once hashed the transactions in block order, so a shuffle moved the lot.
@example(orders=[("t0", 1, BUY, 0, 1, "gtc")] * 3 + [("t1", 1, SELL, 0, 1, "gtc")], seed=0)
def test_shuffling_order_transactions_changes_no_outcome(orders: list, seed: int) -> None:
    chain = fresh_chain()
    chain.block([chain.prices({mid: 100 * W for mid in MARKETS})])
    # Oracle first so it is not part of the shuffle; then orders and cancels only.
    txs = build_block(chain, orders, 100 * W)[1:]
    state = chain.state
    shuffled = list(txs)
    random.Random(seed).shuffle(shuffled)
    block_a = ExecutionBlock(state.height + 1, state.block.timestamp + 1, tuple(txs))
    block_b = ExecutionBlock(state.height + 1, state.block.timestamp + 1, tuple(shuffled))
    a = execute_block(state, block_a)
    b = execute_block(state, block_b)
    assert a.state_root == b.state_root, f"seed {seed}"
    by_hash_a = {r.tx_hash: r for r in a.receipts}
    by_hash_b = {r.tx_hash: r for r in b.receipts}
    assert by_hash_a == by_hash_b
    assert sorted(map(repr, a.events)) == sorted(map(repr, b.events))
