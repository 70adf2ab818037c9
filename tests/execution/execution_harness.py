"""Builders for execution tests: keys, market parameters, a tiny chain driver."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from consensus.crypto import PrivateKey, keccak256
from sequencer_net.execution.block import FailedReveal, SequencedTransaction
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.engine import BlockResult, ExecutionBlock, execute_block
from sequencer_net.execution.fees import required_fee
from sequencer_net.execution.genesis import (
    GenesisConfig,
    GenesisDeposit,
    GenesisMarket,
    genesis_state,
)
from sequencer_net.execution.records import (
    MarketKind,
    MarketParams,
    OptionKind,
    OptionTerms,
    OracleReporter,
    Position,
    TimeInForce,
)
from sequencer_net.execution.state import (
    INSURANCE_FUND,
    ExecutionState,
    position_key,
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

W = 10**18
CHAIN_ID = 7_777
GENESIS_TIME = 1_700_000_000
BUY, SELL = 0, 1
GTC, IOC = TimeInForce.GOOD_TILL_CANCEL, TimeInForce.IMMEDIATE_OR_CANCEL


def key(name: str) -> PrivateKey:
    return PrivateKey(keccak256(b"seqnet-test-key/" + name.encode()))


ADMIN = key("admin")
ORACLE = key("oracle")
COLLATERAL_TOKEN = bytes.fromhex("c011a7e2a1c011a7e2a1c011a7e2a1c011a7e2a1")
"""The L1 collateral ERC-20 of the test chains (ChainConfig.collateral_token)."""
ETH = bytes(20)


def sub(name: str, number: int = 0) -> bytes:
    return subaccount_id(key(name).address, number)


def perp_params(**changes: int) -> MarketParams:
    values: dict[str, object] = {
        "kind": MarketKind.PERPETUAL,
        "tick_size": W // 100,  # 0.01
        "lot_size": W // 1000,  # 0.001
        "initial_margin": W // 10,  # 10%
        "maintenance_margin": W // 20,  # 5%
        "maker_fee": W // 10_000,  # 1 bp
        "taker_fee": 5 * W // 10_000,  # 5 bp
        "liquidation_fee": W // 100,  # 1%
        "funding_interval": 3600,
        "funding_clamp": W // 100,  # 1% of index per interval
        "mark_band": W // 20,  # 5%
        "oracle_staleness": 60,
        "risk_free_rate": 0,
        "option": None,
        # Tests move the (single-reporter) oracle price freely; test_oracle.py
        # sets the per-block cap it checks.
        "max_oracle_move": W,
    }
    values.update(changes)
    return MarketParams(**values)  # type: ignore[arg-type]


def option_params(kind: OptionKind, strike: int, expiry: int, **changes: int) -> MarketParams:
    values: dict[str, object] = {
        "kind": MarketKind.OPTION,
        "tick_size": W // 100,
        "lot_size": W // 100,
        "initial_margin": W // 5,  # 20% of spot
        "maintenance_margin": W // 10,
        "maker_fee": 0,
        "taker_fee": 0,
        "liquidation_fee": W // 100,
        "funding_interval": 0,
        "funding_clamp": 0,
        "mark_band": W // 2,
        "oracle_staleness": 60,
        "risk_free_rate": W // 20,
        "option": OptionTerms(option_kind=kind, strike=strike, expiry=expiry),
        "max_oracle_move": W,
    }
    values.update(changes)
    return MarketParams(**values)  # type: ignore[arg-type]


def make_genesis(
    deposits: dict[str, int],
    *,
    insurance: int = 0,
    markets: Sequence[tuple[int, MarketParams]] = (),
    fee_base: int = 0,
    fee_per_byte: int = 0,
    collateral_token: bytes = COLLATERAL_TOKEN,
) -> ExecutionState:
    """A genesis with these deposits (by key name, subaccount 0). Fees default
    to zero here so that trading tests keep exact balances; test_fees.py and
    the fuzz run with real fees (`with_fees`)."""
    return genesis_state(
        GenesisConfig(
            chain_id=CHAIN_ID,
            admin=ADMIN.address,
            bridge=ADMIN.address,
            oracles=(OracleReporter(ORACLE.address, 1),),
            genesis_time=GENESIS_TIME,
            deposits=tuple(GenesisDeposit(sub(n), amount) for n, amount in deposits.items()),
            insurance_fund=insurance,
            markets=tuple(GenesisMarket(mid, params) for mid, params in markets),
            fee_base=fee_base,
            fee_per_byte=fee_per_byte,
            collateral_token=collateral_token,
        )
    )


def sequenced(
    sender: bytes, nonce: int, payload: bytes, *, namespace: int = DEX_NAMESPACE, fee: int = 0
) -> SequencedTransaction:
    """A committed transaction as the node hands it to the engine. The hash is
    keccak of the fields (unique per input); a real node passes the hash of the
    signed transaction's bytes."""
    tx_hash = keccak256(encode((sender, nonce, namespace, fee, payload)))
    return SequencedTransaction(tx_hash, sender, nonce, namespace, fee, payload)


class Chain:
    """Drives a state block by block, tracking each key's next nonce. Every
    transaction offers exactly the required fee unless told otherwise."""

    def __init__(self, state: ExecutionState) -> None:
        self.state = state
        self.nonces: dict[bytes, int] = {}
        self.results: list[BlockResult] = []

    @property
    def now(self) -> int:
        return self.state.block.timestamp

    def next_nonce(self, signer: PrivateKey) -> int:
        nonce = self.nonces.get(signer.address, 0)
        self.nonces[signer.address] = nonce + 1
        return nonce

    def fee(self, payload: bytes) -> int:
        return required_fee(self.state.config, len(payload))

    def tx(self, signer: PrivateKey, payload: TxPayload) -> SequencedTransaction:
        return self.raw(signer, encode_payload(payload))

    def tx_with_nonce(
        self, signer: PrivateKey, payload: TxPayload, nonce: int
    ) -> SequencedTransaction:
        """Any nonce (reused, far ahead); the tracked next nonce does not move."""
        data = encode_payload(payload)
        return sequenced(signer.address, nonce, data, fee=self.fee(data))

    def raw(
        self,
        signer: PrivateKey,
        payload: bytes,
        *,
        namespace: int = DEX_NAMESPACE,
        fee: int | None = None,
    ) -> SequencedTransaction:
        """Arbitrary payload bytes in any namespace, with the next nonce."""
        offered = self.fee(payload) if fee is None else fee
        nonce = self.next_nonce(signer)
        return sequenced(signer.address, nonce, payload, namespace=namespace, fee=offered)

    def order(
        self,
        name: str,
        market_id: int,
        side: int,
        price: int,
        quantity: int,
        *,
        tif: TimeInForce = GTC,
        post_only: bool = False,
        reduce_only: bool = False,
        number: int = 0,
        client_id: int = 0,
        good_til: int = 0,
        trigger: int = 0,
        trigger_price: int = 0,
    ) -> SequencedTransaction:
        return self.tx(
            key(name),
            PlaceOrder(
                number,
                market_id,
                side,
                price,
                quantity,
                tif,
                post_only,
                reduce_only,
                client_id,
                good_til,
                trigger,
                trigger_price,
            ),
        )

    def prices(
        self, prices: dict[int, int], vol: int = 0, at: int | None = None
    ) -> SequencedTransaction:
        published = self.now + 1 if at is None else at
        return self.tx(
            ORACLE,
            OracleUpdate(
                published, tuple(OraclePrice(m, p, vol) for m, p in sorted(prices.items()))
            ),
        )

    def block(self, txs: Iterable[SequencedTransaction | FailedReveal], dt: int = 1) -> BlockResult:
        block = ExecutionBlock(self.state.height + 1, self.now + dt, tuple(txs))
        result = execute_block(self.state, block)
        self.state = result.state
        self.results.append(result)
        return result


def collateral(state: ExecutionState, sid: bytes) -> int:
    found = state.subaccounts.get(sid)
    return 0 if found is None else found.collateral


def position(state: ExecutionState, sid: bytes, market_id: int) -> Position | None:
    return state.positions.get(position_key(sid, market_id))


def size(state: ExecutionState, sid: bytes, market_id: int) -> int:
    found = position(state, sid, market_id)
    return 0 if found is None else found.size


def conserved_total(state: ExecutionState) -> int:
    """Sum of collateral + fee pool - unsettled charges: must equal net deposits."""
    from sequencer_net.execution.positions import pending_charge

    total = state.ledger.fee_pool + sum(s.collateral for s in state.subaccounts.values())
    for pkey, pos in state.positions.items():
        mid = int.from_bytes(pkey[21:], "big")
        total -= pending_charge(state.market_params[mid], state.market_states[mid], pos)
    return total


def l1_asset_totals(state: ExecutionState) -> dict[bytes, int]:
    """Per L1 token, the sum of every owner's L1 asset balance."""
    totals: dict[bytes, int] = {}
    for bkey, amount in state.l1_balances.items():
        totals[bkey[20:]] = totals.get(bkey[20:], 0) + amount
    return totals


def check_engine_invariants(state: ExecutionState) -> None:
    """What must hold after every block, whatever the block held:
    - conservation: collateral + fee pool - unsettled charges == net deposits;
    - L1 bridge bookkeeping: every L1 asset balance is positive, no collateral
      token balance exists, open tallies lie inside the deposit window and the
      withdrawal records are exactly ids 0 .. next_withdrawal - 1;
    - per market, sizes sum to 0 and lots held long == open_lots;
    - per subaccount, its market list and order count match its positions and
      the books; per position, the open buy/sell quantities and the reserved
      option premium match its resting orders;
    - every subaccount with positions meets maintenance or has positive equity
      (a bankrupt one was closed out; one below maintenance has liquidation
      orders for the next block, or waits for the per-block cap);
    - each market's liquidation-order counter matches the liquidation orders
      in its book."""
    from sequencer_net.execution.encoding import decode_canonical
    from sequencer_net.execution.margin import subaccount_risk
    from sequencer_net.execution.orders import reserved_premium
    from sequencer_net.execution.records import ConditionalOrder
    from sequencer_net.execution.state import PREFIX_CONDITIONAL, StateWriter

    assert conserved_total(state) == state.ledger.net_deposits
    check_bridge_records(state)
    by_market: dict[int, list[int]] = {}
    markets_of: dict[bytes, set[int]] = {}
    for pkey, pos in state.positions.items():
        mid = int.from_bytes(pkey[21:], "big")
        by_market.setdefault(mid, []).append(pos.size)
        markets_of.setdefault(pkey[:21], set()).add(mid)
    for mid, sizes in by_market.items():
        lot = state.market_params[mid].lot_size
        assert sum(sizes) == 0, mid
        assert sum(max(s, 0) for s in sizes) // lot == state.market_states[mid].open_lots, mid
    orders: dict[bytes, int] = {}
    open_qty: dict[bytes, list[int]] = {}
    for mid, mstate in state.market_states.items():
        book = state.books.get(mid, {})
        assert mstate.liquidation_orders == sum(o.liquidation for o in book.values()), mid
    for mid, book in state.books.items():
        params = state.market_params[mid]
        for order in book.values():
            orders[order.subaccount] = orders.get(order.subaccount, 0) + 1
            totals = open_qty.setdefault(position_key(order.subaccount, mid), [0, 0, 0])
            totals[order.side] += order.quantity
            totals[2] += reserved_premium(params, order.side, order.limit_price, order.quantity)
    conditional = state.order_index.get(PREFIX_CONDITIONAL, {})
    for raw in conditional.values():
        waiting = decode_canonical(raw, ConditionalOrder).order
        orders[waiting.subaccount] = orders.get(waiting.subaccount, 0) + 1
    check_order_index(state)
    for sid, sub_ in state.subaccounts.items():
        assert sub_.open_orders == orders.get(sid, 0), sid.hex()
        assert set(sub_.markets) == markets_of.get(sid, set()), sid.hex()
    for pkey, pos in state.positions.items():
        expected = open_qty.get(pkey, [0, 0, 0])
        assert [pos.open_buy, pos.open_sell, pos.open_buy_premium] == expected, pkey.hex()
    w = StateWriter(state, state.height, state.block.timestamp)
    for sid in state.open_subaccounts:
        if sid == INSURANCE_FUND:
            continue
        risk = subaccount_risk(w, sid)
        assert risk.equity >= risk.maintenance or risk.equity > 0, sid.hex()


def check_bridge_records(state: ExecutionState) -> None:
    from sequencer_net.execution.l1_bridge import decode_withdrawal_record
    from sequencer_net.execution.limits import MAX_OPEN_DEPOSITS

    collateral = state.config.collateral_token
    for bkey, amount in state.l1_balances.items():
        assert amount > 0 and len(bkey) == 40, bkey.hex()
        assert not collateral or bkey[20:] != collateral, bkey.hex()
    low = state.bridge.resolved_below
    for nonce, tally in state.deposit_tallies.items():
        assert low < nonce < low + MAX_OPEN_DEPOSITS or (nonce == low and not tally.resolved)
        assert tally.resolved == (not tally.votes)
    assert sorted(state.withdrawals) == list(range(state.bridge.next_withdrawal))
    for wid, record in state.withdrawals.items():
        assert decode_withdrawal_record(record)[0] == wid


def check_order_index(state: ExecutionState) -> None:
    """The client-id and good-til indexes name exactly the open orders (resting
    or conditional) that carry a client id / a good-til time, and the
    per-subaccount conditional counts match."""
    from sequencer_net.execution.encoding import decode_canonical
    from sequencer_net.execution.order_index import client_key, good_til_key, trigger_key
    from sequencer_net.execution.records import ConditionalOrder
    from sequencer_net.execution.state import (
        PREFIX_ARMED,
        PREFIX_CLIENT_ID,
        PREFIX_CONDITIONAL,
        PREFIX_CONDITIONAL_COUNT,
        PREFIX_GOOD_TIL,
        PREFIX_TRIGGER,
        order_key,
    )

    open_orders = [(mid, order) for mid, book in state.books.items() for order in book.values()]
    counts: dict[bytes, int] = {}
    triggers: set[bytes] = set()
    armed: set[bytes] = set()
    for okey, raw in state.order_index.get(PREFIX_CONDITIONAL, {}).items():
        cond = decode_canonical(raw, ConditionalOrder)
        waiting = cond.order
        mid = int.from_bytes(okey[:4], "big")
        open_orders.append((mid, waiting))
        counts[waiting.subaccount] = counts.get(waiting.subaccount, 0) + 1
        if cond.triggered_at:
            armed.add(okey)
        else:
            triggers.add(trigger_key(mid, cond))
    assert set(state.order_index.get(PREFIX_TRIGGER, {})) == triggers
    assert set(state.order_index.get(PREFIX_ARMED, {})) == armed
    clients = {
        client_key(o.subaccount, o.client_id): order_key(mid, o.order_id)
        for mid, o in open_orders
        if o.client_id
    }
    expiries = {good_til_key(o.good_til, mid, o.order_id) for mid, o in open_orders if o.good_til}
    assert dict(state.order_index.get(PREFIX_CLIENT_ID, {})) == clients
    assert set(state.order_index.get(PREFIX_GOOD_TIL, {})) == expiries
    stored = {
        sid: int.from_bytes(raw, "big")
        for sid, raw in state.order_index.get(PREFIX_CONDITIONAL_COUNT, {}).items()
    }
    assert stored == counts


__all__ = ["INSURANCE_FUND"]
