"""The commit pipeline's pure step: a block's batches resolve to the transactions
it orders, each once, each with the sender recovered at intake, every
namespace; the engine then checks nonces and fees on all of them."""

from __future__ import annotations

from consensus.crypto import Address, PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.client import dex_transaction, signed_transaction
from sequencer_net.execution.engine import ExecutionBlock, execute_block
from sequencer_net.execution.genesis import GenesisConfig, GenesisDeposit, genesis_state
from sequencer_net.execution.records import OracleReporter
from sequencer_net.execution.state import ExecutionState, subaccount_id
from sequencer_net.execution.transactions import Transfer
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.node.commit import resolve_block_transactions
from tests.mempool.factories import carrying_batch

W = 10**18
DOMAIN = Domain(31337, bytes(20), bytes(32))
ALICE = PrivateKey(keccak256(b"commit-execute/alice"))
BOB = PrivateKey(keccak256(b"commit-execute/bob"))


def _genesis() -> ExecutionState:
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


def test_batches_resolve_in_block_order_each_transaction_once() -> None:
    a, b, c = (signed_transaction(ALICE, DOMAIN, n, 9, b"blob %d" % n) for n in range(3))
    batches = [
        carrying_batch(DOMAIN, 0, 0, [a, b]),
        carrying_batch(DOMAIN, 1, 0, [b, c]),
        carrying_batch(DOMAIN, 2, 0, [a]),
    ]
    committed_before = {tx_hash(c)}
    recovered: list[bytes] = []

    def sender_of(h: bytes, encoded: bytes) -> Address | None:
        recovered.append(h)
        return ALICE.address

    resolved = resolve_block_transactions(batches, committed_before.__contains__, sender_of)
    assert [r.encoded for r in resolved] == [a, b]  # b once; c committed in an earlier block
    assert recovered == [tx_hash(a), tx_hash(b)]  # only what is ordered is looked up
    assert [r.sequenced.nonce for r in resolved] == [0, 1]
    # The hashes batch verification computed give the same result; a list that
    # does not fit its batch (or none) is computed again.
    known = [[tx_hash(t) for t in batch.transactions] for batch in batches]
    known[1] = known[1][:1]
    again = resolve_block_transactions(batches, committed_before.__contains__, sender_of, known)
    assert again == resolved
    # A transaction whose sender cannot be established is left out.
    unknown = resolve_block_transactions(
        [carrying_batch(DOMAIN, 0, 1, [a])], set().__contains__, lambda h, e: None
    )
    assert unknown == []


def test_every_namespace_reaches_the_engine_with_its_sender_nonce_and_fee() -> None:
    state = _genesis()
    transfer = dex_transaction(ALICE, DOMAIN, 1, Transfer(0, subaccount_id(BOB.address, 0), W))
    blob = signed_transaction(ALICE, DOMAIN, 0, 9, b"rollup bytes")
    replay = dex_transaction(ALICE, DOMAIN, 1, Transfer(0, subaccount_id(BOB.address, 0), 2 * W))

    def run(state: ExecutionState, height: int, txs: list[bytes], seconds: int) -> ExecutionState:
        resolved = resolve_block_transactions(
            [carrying_batch(DOMAIN, 0, height, txs)], set().__contains__, lambda h, e: ALICE.address
        )
        block = ExecutionBlock(height, seconds, tuple(r.sequenced for r in resolved))
        return execute_block(state, block).state

    after = run(state, 1, [transfer, blob], 1_700_000_001)
    assert after.height == 1
    assert after.subaccounts[subaccount_id(BOB.address, 0)].collateral == W
    window = after.nonces[ALICE.address]
    assert (window.highest, window.used) == (1, 0b11)  # nonces 0 (rollup) and 1 (DEX)
    fees = after.ledger.fee_pool
    assert fees > 0  # both namespaces paid
    alice = after.subaccounts[subaccount_id(ALICE.address, 0)].collateral
    assert alice == 9 * W - fees
    # Another transaction with the same (sender, nonce), committed later: refused.
    again = run(after, 2, [replay], 1_700_000_002)
    assert again.subaccounts[subaccount_id(BOB.address, 0)].collateral == W
    assert again.ledger.fee_pool == fees  # a nonce rejection pays nothing
