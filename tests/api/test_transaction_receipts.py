"""GET /v1/transactions/{hash} carries the engine's receipt once committed, and
/v1/accounts lists stop / take-profit orders with client ids and good-til times."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from consensus.crypto import keccak256
from consensus.messages import Block, Certificate, VoteKind
from sequencer_net.api.markets import OrderIndex, account_document
from sequencer_net.api.server import receipt_json
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.receipts import Receipt
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.storage.node_store import NodeStore
from tests.api.conftest import GENESIS, ApiWorld
from tests.execution.execution_harness import BUY, SELL, Chain, W, key, make_genesis, perp_params
from tests.mempool.factories import DOMAIN, signed

TXS = [signed(sender=5, nonce=0, payload=b"first"), signed(sender=5, nonce=1, payload=b"second")]


def test_a_committed_transaction_answers_with_its_receipt(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "chain", genesis_digest=GENESIS, sync=False)
    try:
        receipts = (
            Receipt(tx_hash(TXS[0]), b"\x01" * 20, True, "", "", 10**15),
            Receipt(tx_hash(TXS[1]), b"\x01" * 20, False, "DuplicateClientId", "client id 7", 0),
        )
        block = Block(view=1, height=1, parent=GENESIS, proposer=0, payload=b"\x92\x00\x90")
        finalization = Certificate(
            kind=VoteKind.FINALIZE, view=1, height=1, block=block.digest(), signers=[0],
            signatures=[b"\x00" * 65],
        )  # fmt: skip
        store.commit_block(block, finalization, TXS, keccak256(b"root"), encode(receipts))
        world = ApiWorld(store=store, mempool=Mempool(DOMAIN))
        with TestClient(world.app(), backend="trio") as client:
            ok = client.get("/v1/transactions/0x" + tx_hash(TXS[0]).hex()).json()
            failed = client.get("/v1/transactions/0x" + tx_hash(TXS[1]).hex()).json()
    finally:
        store.close()
    assert ok["status"] == "committed" and ok["index"] == 0
    assert ok["receipt"] == {"success": True, "error": None, "reason": None, "fee": "0.001"}
    assert failed["receipt"] == {
        "success": False,
        "error": "DuplicateClientId",
        "reason": "client id 7",
        "fee": "0",
    }


def test_no_stored_output_means_no_receipt() -> None:
    assert receipt_json(b"", 0) is None
    assert receipt_json(b"\xc1garbage", 0) is None
    assert receipt_json(encode((Receipt(b"", b"", True, "", ""),)), 3) is None


def test_an_account_lists_conditional_orders_and_the_new_order_fields() -> None:
    chain = Chain(make_genesis({"alice": 100_000 * W}, markets=[(1, perp_params())]))
    chain.block([chain.prices({1: 100 * W})])
    dated = chain.order("alice", 1, BUY, 90 * W, W, client_id=3, good_til=chain.now + 100)
    stop = chain.order("alice", 1, SELL, 0, W, tif=1, trigger=1, trigger_price=95 * W)
    chain.block([dated, stop])
    document = account_document(chain.state, key("alice").address, OrderIndex())
    assert document is not None
    sub = document["subaccounts"][0]
    assert sub["open_orders"] == 2
    [resting] = sub["orders"]
    assert resting["client_id"] == 3 and resting["good_til"] == chain.now + 99
    [waiting] = sub["conditional_orders"]
    assert waiting["order_id"] == "0x" + stop.tx_hash.hex()
    assert waiting["trigger"] == "stop" and waiting["trigger_price"] == "95"
    assert waiting["price"] == "0" and waiting["time_in_force"] == "ioc"
    assert waiting["client_id"] is None and waiting["triggered_at"] is None
