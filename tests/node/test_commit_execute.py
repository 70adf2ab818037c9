"""The commit pipeline feeds the engine every committed transaction, each
namespace, with the sender recovered at intake (`CommitPipeline._execute`)."""

from __future__ import annotations

from types import SimpleNamespace

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.client import dex_transaction, signed_transaction
from sequencer_net.execution.genesis import GenesisConfig, GenesisDeposit, genesis_state
from sequencer_net.execution.state import subaccount_id
from sequencer_net.execution.transactions import Transfer
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.node.commit import CommitPipeline

W = 10**18
DOMAIN = Domain(31337, bytes(20), bytes(32))
ALICE = PrivateKey(keccak256(b"commit-execute/alice"))
BOB = PrivateKey(keccak256(b"commit-execute/bob"))


def test_every_namespace_reaches_the_engine_with_its_sender_nonce_and_fee() -> None:
    state = genesis_state(
        GenesisConfig(
            chain_id=DOMAIN.chain_id,
            admin=BOB.address,
            bridge=BOB.address,
            oracles=(BOB.address,),
            genesis_time=1_700_000_000,
            deposits=(GenesisDeposit(subaccount_id(ALICE.address, 0), 10 * W),),
        )
    )
    transfer = dex_transaction(ALICE, DOMAIN, 1, Transfer(0, subaccount_id(BOB.address, 0), W))
    blob = signed_transaction(ALICE, DOMAIN, 0, 9, b"rollup bytes")
    replay = dex_transaction(ALICE, DOMAIN, 1, Transfer(0, subaccount_id(BOB.address, 0), 2 * W))
    encoded = [transfer, blob]
    pipeline = SimpleNamespace(state=state)
    after = CommitPipeline._execute(
        pipeline,  # type: ignore[arg-type]
        1,
        1_700_000_001_500,
        encoded,
        [tx_hash(e) for e in encoded],
        [ALICE.address, ALICE.address],
    )
    assert after.height == 1 and after.block.timestamp == 1_700_000_001
    assert after.subaccounts[subaccount_id(BOB.address, 0)].collateral == W
    window = after.nonces[ALICE.address]
    assert (window.highest, window.used) == (1, 0b11)  # nonces 0 (rollup) and 1 (DEX)
    assert after.ledger.fee_pool > 0  # both namespaces paid
    alice = after.subaccounts[subaccount_id(ALICE.address, 0)].collateral
    assert alice == 9 * W - after.ledger.fee_pool
    # Another transaction with the same (sender, nonce), committed later: refused.
    pipeline.state = after
    again = CommitPipeline._execute(
        pipeline,  # type: ignore[arg-type]
        2,
        1_700_000_002_000,
        [replay],
        [tx_hash(replay)],
        [ALICE.address],
    )
    assert again.subaccounts[subaccount_id(BOB.address, 0)].collateral == W
    assert again.ledger.fee_pool == after.ledger.fee_pool  # a nonce rejection pays nothing
