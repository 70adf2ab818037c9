"""Single-signature DEX transactions from the client and the load generator,
executed by the engine the way the commit pipeline feeds it."""

from __future__ import annotations

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.client import DEFAULT_FEES, FeeSchedule, dex_transaction
from sequencer_net.execution.engine import ExecutionBlock, SequencedTransaction, execute_block
from sequencer_net.execution.fees import required_fee
from sequencer_net.execution.genesis import GenesisConfig, GenesisDeposit, genesis_state
from sequencer_net.execution.records import OracleReporter
from sequencer_net.execution.state import subaccount_id
from sequencer_net.execution.transactions import DEX_NAMESPACE, Transfer, decode_payload
from sequencer_net.home.genesis import make_local_genesis
from sequencer_net.mempool.transaction import decode_transaction, recover_sender, tx_hash
from sequencer_net.testnet.load import dex_load_payload, transaction_signer

W = 10**18
DOMAIN = Domain(31337, bytes(20), bytes(32))
ALICE = PrivateKey(keccak256(b"dex-client/alice"))
BOB = PrivateKey(keccak256(b"dex-client/bob"))


def intake(encoded: bytes) -> SequencedTransaction:
    """What the node does once per transaction before the engine sees it."""
    tx = decode_transaction(encoded)
    sender = recover_sender(tx, DOMAIN)
    return SequencedTransaction(
        tx_hash(encoded), bytes(sender), tx.nonce, tx.namespace, tx.fee, tx.payload
    )


def funded_state() -> object:
    return genesis_state(
        GenesisConfig(
            chain_id=DOMAIN.chain_id,
            admin=BOB.address,
            bridge=BOB.address,
            oracles=(OracleReporter(BOB.address, 1),),
            genesis_time=1_700_000_000,
            deposits=(GenesisDeposit(subaccount_id(ALICE.address, 0), 10 * W),),
        )
    )


def test_a_dex_transaction_has_one_signature_and_offers_the_required_fee() -> None:
    action = Transfer(0, subaccount_id(BOB.address, 0), W)
    encoded = dex_transaction(ALICE, DOMAIN, 4, action)
    tx = decode_transaction(encoded)
    assert recover_sender(tx, DOMAIN) == ALICE.address
    assert (tx.nonce, tx.namespace) == (4, DEX_NAMESPACE)
    assert decode_payload(tx.payload) == action  # no inner signature, nonce or chain id
    assert tx.fee == DEFAULT_FEES.fee_for(len(tx.payload))


def test_the_engine_executes_it_with_the_recovered_sender_and_charges_the_fee() -> None:
    state = funded_state()
    encoded = dex_transaction(ALICE, DOMAIN, 0, Transfer(0, subaccount_id(BOB.address, 0), W))
    block = ExecutionBlock(1, 1_700_000_001, (intake(encoded),))
    result = execute_block(state, block)  # type: ignore[arg-type]
    [receipt] = result.receipts
    assert receipt.success and receipt.sender == ALICE.address
    assert receipt.tx_hash == tx_hash(encoded)  # the order id / receipt id is the outer hash
    fee = required_fee(result.state.config, len(decode_transaction(encoded).payload))
    assert receipt.fee == fee
    assert result.state.subaccounts[subaccount_id(ALICE.address, 0)].collateral == 9 * W - fee
    assert result.state.subaccounts[subaccount_id(BOB.address, 0)].collateral == W


def test_the_load_generators_dex_payload_executes() -> None:
    state = funded_state()
    sign = transaction_signer(DOMAIN)
    encoded = sign(ALICE, 0, DEX_NAMESPACE, dex_load_payload(ALICE.address))
    result = execute_block(state, ExecutionBlock(1, 1_700_000_001, (intake(encoded),)))  # type: ignore[arg-type]
    assert result.receipts[0].success, result.receipts[0]
    assert result.state.subaccounts[subaccount_id(ALICE.address, 1)].collateral == 1


def test_a_local_genesis_uses_the_default_fee_schedule() -> None:
    genesis = make_local_genesis(
        [keccak256(b"validator")], base_p2p_port=30000, base_api_port=31000, genesis_time_ms=0
    )
    assert FeeSchedule.of_genesis(genesis) == DEFAULT_FEES
    assert DEFAULT_FEES.fee_for(0) > 0 and DEFAULT_FEES.per_byte > 0
