"""Builders for execution tests: keys, market parameters, a tiny chain driver."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from consensus.crypto import PrivateKey, keccak256
from sequencer_net.execution.engine import BlockResult, ExecutionBlock, execute_block
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
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    SignedTransaction,
    TxPayload,
    sign_transaction,
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
    }
    values.update(changes)
    return MarketParams(**values)  # type: ignore[arg-type]


def make_genesis(
    deposits: dict[str, int],
    *,
    insurance: int = 0,
    markets: Sequence[tuple[int, MarketParams]] = (),
) -> ExecutionState:
    return genesis_state(
        GenesisConfig(
            chain_id=CHAIN_ID,
            admin=ADMIN.address,
            bridge=ADMIN.address,
            oracles=(ORACLE.address,),
            genesis_time=GENESIS_TIME,
            deposits=tuple(GenesisDeposit(sub(n), amount) for n, amount in deposits.items()),
            insurance_fund=insurance,
            markets=tuple(GenesisMarket(mid, params) for mid, params in markets),
        )
    )


class Chain:
    """Drives a state block by block, tracking each key's next nonce."""

    def __init__(self, state: ExecutionState) -> None:
        self.state = state
        self.nonces: dict[bytes, int] = {}
        self.results: list[BlockResult] = []

    @property
    def now(self) -> int:
        return self.state.block.timestamp

    def tx(self, signer: PrivateKey, payload: TxPayload) -> SignedTransaction:
        nonce = self.nonces.get(signer.address, 0)
        self.nonces[signer.address] = nonce + 1
        return sign_transaction(signer, CHAIN_ID, nonce, payload)

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
    ) -> SignedTransaction:
        return self.tx(
            key(name),
            PlaceOrder(number, market_id, side, price, quantity, tif, post_only, reduce_only),
        )

    def prices(
        self, prices: dict[int, int], vol: int = 0, at: int | None = None
    ) -> SignedTransaction:
        published = self.now + 1 if at is None else at
        return self.tx(
            ORACLE,
            OracleUpdate(
                published, tuple(OraclePrice(m, p, vol) for m, p in sorted(prices.items()))
            ),
        )

    def block(self, txs: Iterable[SignedTransaction], dt: int = 1) -> BlockResult:
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


__all__ = ["INSURANCE_FUND"]
