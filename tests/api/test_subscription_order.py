"""A subscriber derives its namespace's execution order from public, verified
data: the block message carries the order seed and the t coin shares that
prove it, the SDK checks them with the key of the block's epoch, and its
ordered transactions are exactly what the commit pipeline executed (the
stored, executed order). A node that lies about the seed is caught; a chain
without a threshold key sends what it always sent.

The real commit pipeline commits the block; its decryption step is a
stand-in that opens the block with the real `BlockOpening` from two
validators' real shares (node/decryption.py), without a network."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consensus.crypto import PrivateKey, keccak256
from consensus.io import Commit
from consensus.messages import Block, Certificate, VoteKind
from consensus.types import Validator, ValidatorSet
from consensus.verifier import SignatureVerifier
from sequencer_net.api.subscriptions import BlockMessages
from sequencer_net.batches.batch import batch_digest, encode_batch
from sequencer_net.client.verify import BlockVerifier, SubscriptionVerificationError
from sequencer_net.execution.genesis import GenesisConfig, genesis_state
from sequencer_net.execution.records import OracleReporter
from sequencer_net.fairness.envelope import Envelope, label_of, seal
from sequencer_net.fairness.order import order_seed_tag, sender_rank
from sequencer_net.fairness.order_proof import verify_order_seed
from sequencer_net.fairness.tdh2 import block_shares, coin_share, deal
from sequencer_net.mempool.encrypted import encode_encrypted, transaction_namespace
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction, tx_hash
from sequencer_net.node.commit import CommitPipeline
from sequencer_net.node.decryption import BlockOpening, OpenedBlock
from sequencer_net.payload.format import BlockPayload, ForcedEntry, encode_payload
from sequencer_net.payload.namespaces import namespace_root
from sequencer_net.storage.node_store import NodeStore
from tests.api.test_openapi import validate
from tests.mempool.factories import carrying_batch
from tests.node.test_commit_execute import DOMAIN
from tests.node.test_commit_forced import held_batches_pipeline

SEED = 23
NAMESPACE = 7
KEYSET, SHARES = deal(4, 2, random.Random(SEED).randbytes)
VALIDATOR_KEYS = [PrivateKey(keccak256(b"order-proof/validator %d" % i)) for i in range(4)]
VALIDATORS = ValidatorSet([Validator(k.address, 1) for k in VALIDATOR_KEYS])
SENDERS = [PrivateKey(keccak256(b"order-proof/sender %d" % i)) for i in range(6)]
GENESIS_DIGEST = keccak256(b"order-proof/genesis")


def plain(sender: int, nonce: int, namespace: int = NAMESPACE) -> bytes:
    tx = sign_transaction(SENDERS[sender], DOMAIN, nonce, namespace, 0, b"tx %d" % nonce)
    return encode_transaction(tx)


def envelope(sender: int, nonce: int) -> Envelope:
    tx = sign_transaction(SENDERS[sender], DOMAIN, nonce, NAMESPACE, 0, b"sealed")
    rng = random.Random(SEED * 1000 + 10 * sender + nonce).randbytes
    return seal(SENDERS[sender], DOMAIN, KEYSET.public_key, 0, 100, 10, tx, rng)


class ThresholdOpening:
    """The commit pipeline's decryption step on a chain with a threshold key:
    validators `holders` (share indices holders + 1) send their shares."""

    def __init__(self, holders: Sequence[int] = (3, 1)) -> None:
        self.holders = holders
        self.opened: dict[int, OpenedBlock] = {}

    def key_epoch_at(self, height: int) -> int:
        return 0

    def begin(self, height: int, block: bytes, envelopes: Sequence[Envelope]) -> None:
        pass

    def discard(self, height: int) -> None:
        pass

    async def open_block(
        self, height: int, block: bytes, envelopes: Sequence[Envelope]
    ) -> OpenedBlock:
        cts = [e.ciphertext for e in envelopes]
        labels = [label_of(e) for e in envelopes]
        tag = order_seed_tag(DOMAIN.chain_id, height, block)
        opening = BlockOpening(height, block, tag, cts, labels, KEYSET)
        for i in self.holders:
            shares = block_shares(SHARES[i], cts, labels) if cts else None
            assert opening.offer(shares, coin_share(SHARES[i], tag))
        self.opened[height] = opening.open()
        return self.opened[height]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[NodeStore]:
    s = NodeStore(tmp_path / "chain", genesis_digest=GENESIS_DIGEST, sync=False)
    yield s
    s.close()


def pipeline(store: NodeStore, decryptor: ThresholdOpening | None) -> CommitPipeline:
    state = genesis_state(
        GenesisConfig(
            chain_id=DOMAIN.chain_id,
            admin=SENDERS[0].address,
            bridge=SENDERS[0].address,
            oracles=(OracleReporter(SENDERS[0].address, 1),),
            genesis_time=1_700_000_000,
        )
    )
    return held_batches_pipeline(store, state, decryptor)


def certificate(block: Block) -> Certificate:
    vote = SignatureVerifier(DOMAIN.separator()).vote_digest(
        VoteKind.FINALIZE, block.view, block.height, block.digest()
    )
    signers = [0, 1, 2]
    return Certificate(
        VoteKind.FINALIZE,
        block.view,
        block.height,
        block.digest(),
        signers,
        [VALIDATOR_KEYS[i].sign_digest(vote) for i in signers],
    )


async def commit_block(
    store: NodeStore,
    decryptor: ThresholdOpening | None,
    transactions: list[bytes],
    forced: list[bytes],
    envelopes: Sequence[Envelope] = (),
) -> CommitPipeline:
    """Commit one block of one batch holding `transactions` (in that block
    order), marking `forced` (in that inbox order). `envelopes`: the sealed
    ones among them, whose signers the batch carries as their senders."""
    p = pipeline(store, decryptor)
    batch = carrying_batch(DOMAIN, 0, 0, transactions)
    sealed_by = {encode_encrypted(e): bytes(e.sender) for e in envelopes}
    assert all(s == sealed_by.get(tx, s) for tx, s in zip(transactions, batch.senders, strict=True))
    encoded = encode_batch(batch)
    digest = batch_digest(encoded)
    await p.pool.add_own(digest, encoded, batch)
    pairs = [(transaction_namespace(tx), tx_hash(tx)) for tx in transactions]
    marks = [ForcedEntry(10 + i, tx_hash(tx)) for i, tx in enumerate(forced)]
    payload = BlockPayload(1_000, 0, b"\x00" * 32, [digest], namespace_root(pairs), marks)
    block = Block(1, 1, GENESIS_DIGEST, 0, encode_payload(payload))
    await p.apply(Commit(block, certificate(block)))
    return p


def a_block() -> tuple[list[bytes], list[bytes], list[Envelope]]:
    """Six senders in namespace 7 (two of them sealed, one with two
    transactions), two in namespace 0, one forced transaction in the middle."""
    sealed = [envelope(4, 0), envelope(5, 0)]
    txs = [
        plain(0, 0),
        encode_encrypted(sealed[0]),
        plain(1, 0),
        plain(2, 0, namespace=0),
        plain(3, 0),
        plain(0, 1),
        encode_encrypted(sealed[1]),
        plain(2, 1),
        plain(1, 1, namespace=0),
    ]
    return txs, [txs[4]], sealed


async def message(store: NodeStore, namespace: int = NAMESPACE) -> dict[str, Any]:
    text = await BlockMessages(store).message(1, namespace)
    assert text is not None
    decoded: dict[str, Any] = json.loads(text)
    return decoded


def verifier(namespace: int = NAMESPACE, keys: bool = True) -> BlockVerifier:
    return BlockVerifier(VALIDATORS, DOMAIN, namespace, order_keys={0: KEYSET} if keys else None)


def executed(store: NodeStore, namespace: int) -> tuple[bytes, ...]:
    """What the commit pipeline executed of `namespace`, in execution order."""
    return tuple(tx for tx in store.transactions_at(1) if transaction_namespace(tx) == namespace)


async def test_the_subscribers_order_is_the_executed_order(store: NodeStore) -> None:
    txs, forced, sealed = a_block()
    decryptor = ThresholdOpening()
    await commit_block(store, decryptor, txs, forced, sealed)
    opened = decryptor.opened[1]
    assert [s.index for s in opened.order_proof] == [2, 4]  # what was combined, by index
    assert store.order_seed_at(1) == opened.order_seed

    document = await message(store)
    validate(document, {"$ref": "#/components/schemas/NamespaceBlock"})
    order = document["order"]
    assert order["seed"] == "0x" + opened.order_seed.hex()
    assert [s["index"] for s in order["shares"]] == [2, 4]
    block = verifier().verify(document)
    assert block.order_seed == opened.order_seed
    assert block.transactions == tuple(t for t in txs if transaction_namespace(t) == NAMESPACE)
    assert block.ordered_transactions == executed(store, NAMESPACE)
    assert block.ordered_transactions is not None
    assert block.ordered_transactions[0] == forced[0]  # forced first, whatever its rank
    assert block.ordered_transactions != block.transactions  # the seed, not the leader, ordered
    # Namespace 0 (engine transactions) too, from the same proof.
    dex = verifier(0).verify(await message(store, 0))
    assert dex.ordered_transactions == executed(store, 0)
    # The seed is the one any t shares give: it ranks the senders.
    ranks = [sender_rank(opened.order_seed, SENDERS[i].address) for i in (0, 1, 4, 5)]
    assert len(set(ranks)) == 4


async def test_the_order_is_the_same_whichever_t_shares_prove_it(tmp_path: Path) -> None:
    txs, forced, sealed = a_block()
    orders = []
    for holders in ((0, 1), (2, 3)):
        s = NodeStore(tmp_path / f"{holders}", genesis_digest=GENESIS_DIGEST, sync=False)
        try:
            await commit_block(s, ThresholdOpening(holders), txs, forced, sealed)
            document = await message(s)
            orders.append((document["order"]["shares"], verifier().verify(document)))
        finally:
            s.close()
    (shares_a, a), (shares_b, b) = orders
    assert shares_a != shares_b
    assert a.order_seed == b.order_seed and a.ordered_transactions == b.ordered_transactions


def lie(document: dict[str, Any], change: Any) -> dict[str, Any]:
    forged: dict[str, Any] = json.loads(json.dumps(document))
    change(forged)
    return forged


async def test_a_node_lying_about_the_seed_or_its_proof_is_caught(store: NodeStore) -> None:
    txs, forced, sealed = a_block()
    await commit_block(store, ThresholdOpening(), txs, forced, sealed)
    honest = await message(store)
    shares = honest["order"]["shares"]

    def other_seed(m: dict[str, Any]) -> None:
        m["order"]["seed"] = "0x" + keccak256(b"a seed the node likes").hex()

    def one_share(m: dict[str, Any]) -> None:
        m["order"]["shares"] = shares[:1]

    def forged_value(m: dict[str, Any]) -> None:
        m["order"]["shares"][0]["value"] = shares[1]["value"]

    def renamed(m: dict[str, Any]) -> None:
        m["order"]["shares"][0]["index"] = 1

    other_tag = order_seed_tag(DOMAIN.chain_id, 2, keccak256(b"another block"))

    def another_blocks_coin(m: dict[str, Any]) -> None:
        other = [coin_share(SHARES[i], other_tag) for i in (0, 1)]
        m["order"] = {
            "seed": "0x" + verify_order_seed(other_tag, other, KEYSET).hex(),
            "shares": [
                {
                    "index": s.index,
                    "value": "0x" + s.value.hex(),
                    "e": "0x" + s.e.hex(),
                    "f": "0x" + s.f.hex(),
                }
                for s in other
            ],
        }

    def dropped(m: dict[str, Any]) -> None:
        del m["order"]

    def reordered(m: dict[str, Any]) -> None:
        m["transactions"].reverse()

    cases = [
        (other_seed, "the seed sent is not the one its shares prove"),
        (one_share, "exactly 2 coin shares, not 1"),
        (forged_value, "does not verify"),
        (renamed, "does not verify"),
        (another_blocks_coin, "does not verify"),
        (dropped, "carries no order proof"),
        (reordered, "namespace proof"),
    ]
    for change, reason in cases:
        with pytest.raises(SubscriptionVerificationError, match=reason):
            verifier().verify(lie(honest, change))
    assert verifier().verify(honest).height == 1


async def test_a_verifier_without_the_key_does_not_guess_the_order(store: NodeStore) -> None:
    txs, forced, sealed = a_block()
    await commit_block(store, ThresholdOpening(), txs, forced, sealed)
    block = verifier(keys=False).verify(await message(store))
    assert block.ordered_transactions is None and block.order_seed is None


async def test_a_chain_without_a_threshold_key_sends_what_it_always_sent(
    store: NodeStore,
) -> None:
    txs = [plain(0, 0), plain(1, 0), plain(2, 0, namespace=0), plain(3, 0), plain(0, 1)]
    forced = [txs[3]]
    await commit_block(store, None, txs, forced)
    assert store.order_seed_at(1) is None and store.order_proof_at(1) is None
    text = await BlockMessages(store).message(1, NAMESPACE)
    assert text is not None
    document = msgspec.json.decode(text)
    assert list(document) == [
        "type",
        "height",
        "block",
        "certificate",
        "namespace",
        "transactions",
        "proof",
    ]
    assert msgspec.json.encode(document).decode() == text
    block = verifier(keys=False).verify(document)
    # Forced first, then block order: what the pipeline executed.
    assert block.ordered_transactions == (txs[3], txs[0], txs[1], txs[4])
    assert block.ordered_transactions == executed(store, NAMESPACE)
    assert block.order_seed is None
    # A verifier holding a key refuses a message with no order proof.
    with pytest.raises(SubscriptionVerificationError, match="no order proof"):
        verifier().verify(document)
