"""A one-process trading node on 127.0.0.1 for CLI tests.

It serves the endpoints `seqnet trade` uses with the real pieces behind them:
submitted transactions are decoded and their signature recovered as the node
does, each one is executed by the engine in a block of its own (after an
oracle update that keeps the prices fresh), and /v1/markets, /v1/accounts and
the receipt of /v1/transactions/{hash} are built by the API's own functions
(sequencer_net.api.markets, sequencer_net.api.server.receipt_json). There is
no consensus: a transaction is committed as soon as it is accepted.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.api.markets import OrderIndex, account_document, markets_document
from sequencer_net.api.server import receipt_json
from sequencer_net.client import DEFAULT_FEES, dex_transaction
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.engine import ExecutionBlock, SequencedTransaction, execute_block
from sequencer_net.execution.genesis import GenesisConfig, GenesisDeposit, genesis_state
from sequencer_net.execution.records import OracleReporter
from sequencer_net.execution.state import ExecutionState, subaccount_id
from sequencer_net.execution.transactions import OraclePrice, OracleUpdate
from sequencer_net.home.local_markets import genesis_markets, local_markets
from sequencer_net.mempool.transaction import (
    InvalidTransaction,
    decode_transaction,
    recover_sender,
    tx_hash,
)
from sequencer_net.node.market_activity import MarketActivity
from sequencer_net.testnet.accounts import load_account_secret, market_operator_key

W = 10**18
GENESIS_TIME = 1_700_000_000
DOMAIN = Domain(7, bytes(20), keccak256(b"trade-cli test genesis"))
OPERATOR = market_operator_key(0)  # the bridge, as on a local testnet
ORACLE = PrivateKey(keccak256(b"trade-cli test oracle"))  # the node's own price feed
TRADER = PrivateKey(load_account_secret(0, 0))  # testnet load account 0 of seed 0
MAKER = PrivateKey(load_account_secret(0, 1))
FUNDED = 1_000_000 * W


@dataclass
class TradingChain:
    state: ExecutionState
    activity: MarketActivity = field(default_factory=MarketActivity)
    prices: dict[int, int] = field(default_factory=dict)
    committed: dict[bytes, tuple[int, int, bytes]] = field(default_factory=dict)
    oracle_nonce: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def oracle_tx(self, at: int) -> SequencedTransaction:
        vol = 6 * W // 10
        quotes = tuple(
            OraclePrice(mid, price, 0 if mid in (1, 2) else vol)
            for mid, price in sorted(self.prices.items())
        )
        encoded = dex_transaction(
            ORACLE, DOMAIN, self.oracle_nonce, OracleUpdate(at, quotes), fees=DEFAULT_FEES
        )
        self.oracle_nonce += 1
        return sequenced(encoded)

    def execute(self, *txs: SequencedTransaction) -> None:
        """One block: fresh prices, then `txs`; remember each one's receipt."""
        with self.lock:
            height = self.state.height + 1
            at = self.state.block.timestamp + 1
            block = ExecutionBlock(height, at, (self.oracle_tx(at), *txs))
            result = execute_block(self.state, block)
            assert result.receipts[0].success, result.receipts[0]
            receipts = encode(result.receipts)
            for index, tx in enumerate(block.transactions):
                self.committed[tx.tx_hash] = (height, index, receipts)
            self.state = result.state
            self.activity.record(height, result.events)


def sequenced(encoded: bytes) -> SequencedTransaction:
    tx = decode_transaction(encoded)
    sender = recover_sender(tx, DOMAIN)
    return SequencedTransaction(
        tx_hash(encoded), bytes(sender), tx.nonce, tx.namespace, tx.fee, tx.payload
    )


def new_chain() -> TradingChain:
    markets = local_markets(GENESIS_TIME)
    config = GenesisConfig(
        chain_id=DOMAIN.chain_id,
        admin=OPERATOR.address,
        bridge=OPERATOR.address,
        oracles=(OracleReporter(ORACLE.address, 1),),
        genesis_time=GENESIS_TIME,
        deposits=tuple(
            GenesisDeposit(subaccount_id(key.address, 0), FUNDED)
            for key in (OPERATOR, ORACLE, TRADER, MAKER)
        ),
        insurance_fund=FUNDED,
        markets=genesis_markets(markets),
        fee_base=DEFAULT_FEES.base,
        fee_per_byte=DEFAULT_FEES.per_byte,
    )
    chain = TradingChain(genesis_state(config))
    chain.prices = {m.market_id: m.start_price for m in markets}
    chain.execute()
    return chain


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        chain = self.server.chain
        path = self.path
        if path == "/v1/status":
            self._answer(
                200,
                {
                    "chain_id": DOMAIN.chain_id,
                    "verifying_contract": "0x" + DOMAIN.verifying_contract.hex(),
                    "genesis_hash": "0x" + DOMAIN.genesis_hash.hex(),
                    "height": chain.state.height,
                },
            )
        elif path == "/v1/markets":
            self._answer(200, markets_document(chain.state, chain.activity))
        elif path.startswith("/v1/accounts/0x"):
            address = bytes.fromhex(path.removeprefix("/v1/accounts/0x"))
            document = account_document(chain.state, address, OrderIndex())
            if document is None:
                self._answer(404, {"error": "no subaccount in state", "code": "not_found"})
            else:
                self._answer(200, document)
        elif path.startswith("/v1/transactions/0x"):
            digest = bytes.fromhex(path.removeprefix("/v1/transactions/0x"))
            found = chain.committed.get(digest)
            if found is None:
                self._answer(404, {"error": "unknown transaction", "code": "not_found"})
                return
            height, index, receipts = found
            self._answer(
                200,
                {
                    "hash": "0x" + digest.hex(),
                    "status": "committed",
                    "height": height,
                    "index": index,
                    "receipt": receipt_json(receipts, index),
                },
            )
        else:
            self._answer(404, {"error": "no such endpoint", "code": "not_found"})

    def do_POST(self) -> None:
        if self.path != "/v1/transactions":
            self._answer(404, {"error": "no such endpoint", "code": "not_found"})
            return
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            tx = sequenced(body)
        except InvalidTransaction as exc:
            self._answer(400, {"error": str(exc), "code": "invalid_transaction"})
            return
        self.server.chain.execute(tx)
        self._answer(200, {"hash": "0x" + tx.tx_hash.hex()})


class _Server(ThreadingHTTPServer):
    chain: TradingChain


class TradingNode:
    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.chain = new_chain()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def chain(self) -> TradingChain:
        return self.server.chain

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
