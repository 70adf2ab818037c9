"""A committed block whose order no seed can change (no envelope, at most one
non-forced sender) has no coin round: the commit pipeline makes, persists,
sends and asks for no share message for it, and executes it without a seed.
A block of two senders, or with an envelope, still has its round."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from consensus.crypto import keccak256
from consensus.messages import Block
from consensus.payload import BlockPayload, ForcedEntry, encode_payload
from sequencer_net.batches.batch import Batch, encode_batch
from sequencer_net.fairness.envelope import Envelope
from sequencer_net.mempool.encrypted import encode_encrypted
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction, tx_hash
from sequencer_net.metrics import Metrics
from sequencer_net.node.commit import (
    CommitPipeline,
    ResolvedTransaction,
    block_needs_order_seed,
    resolve_block_transactions,
    senders_in,
)
from sequencer_net.node.decryption import encode_shares_message, encode_shares_request
from sequencer_net.node.status import ChainStatus
from tests.mempool.factories import DOMAIN, KEYS, carrying_batch
from tests.node.test_decryption import BLOCK, HEIGHT, ORDER_SEED, Net, envelope, message


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    yield n
    n.close()


def plain(sender: int, nonce: int) -> bytes:
    return encode_transaction(sign_transaction(KEYS[sender], DOMAIN, nonce, 1, 0, b"p"))


class Pool:
    """Batches by digest and the senders remembered from their verification."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = {keccak256(b"batch %d" % i): encode_batch(b) for i, b in enumerate(batches)}
        self.senders: dict[bytes, bytes] = {}
        for batch in batches:
            for encoded in batch.transactions:
                self.senders[tx_hash(encoded)] = sender_of_encoded(encoded)

    def get(self, digest: bytes) -> bytes | None:
        return self.batches.get(digest)

    def sender_of(self, h: bytes) -> tuple[bytes, int] | None:
        found = self.senders.get(h)
        return None if found is None else (found, -1)


ENCODED_SENDERS: dict[bytes, bytes] = {}


def sender_of_encoded(encoded: bytes) -> bytes:
    return ENCODED_SENDERS[encoded]


def tx(sender: int, nonce: int) -> bytes:
    encoded = plain(sender, nonce)
    ENCODED_SENDERS[encoded] = bytes(KEYS[sender].address)
    return encoded


def sealed(e: Envelope) -> bytes:
    encoded = encode_encrypted(e)
    ENCODED_SENDERS[encoded] = bytes(e.sender)
    return encoded


def pipeline_for(net: Net, batches: list[Batch]) -> CommitPipeline:
    pipeline = CommitPipeline.__new__(CommitPipeline)
    pipeline.domain = DOMAIN
    pipeline.decryptor = net.decryptors[0]
    pipeline.pool = Pool(batches)  # type: ignore[assignment]
    pipeline.status = ChainStatus()
    pipeline.status.feed.orders_expected = True
    pipeline.metrics = Metrics()
    return pipeline


def resolved_of(pipeline: CommitPipeline, batches: list[Batch]) -> list[ResolvedTransaction]:
    return resolve_block_transactions(batches, lambda h: False, senders_in(batches))


def skipped(pipeline: CommitPipeline) -> float:
    return pipeline.metrics.order_seed_skipped._value.get()  # type: ignore[no-any-return]


def test_the_rule_on_a_block_forced_marks_and_envelopes_included() -> None:
    a0, a1, b0 = tx(0, 0), tx(0, 1), tx(1, 0)

    def sender_of(h: bytes, encoded: bytes) -> bytes | None:
        return ENCODED_SENDERS.get(encoded)

    def needs(txs: list[bytes], forced: tuple[bytes, ...] = (), live: bool = False) -> bool:
        marks = [ForcedEntry(i, tx_hash(t)) for i, t in enumerate(forced)]
        envelopes = [(keccak256(b"e"), envelope(0, 0))] if live else []
        return block_needs_order_seed(
            [carrying_batch(DOMAIN, 0, 0, txs)], marks, envelopes, sender_of
        )  # type: ignore[arg-type]

    assert not needs([])
    assert not needs([a0, a1])  # one sender
    assert needs([a0, b0])  # two senders
    assert not needs([a0, b0, a1], forced=(b0,))  # the forced one is not ordered by sender
    assert needs([a0], live=True)  # an envelope opens: its round is needed anyway
    assert not needs([a0, plain(2, 0)])  # a transaction without a sender is not executed


async def test_a_one_sender_block_has_no_share_round(net: Net) -> None:
    batches = [
        carrying_batch(DOMAIN, 0, 0, [tx(0, 0), tx(0, 1)]),
        carrying_batch(DOMAIN, 1, 0, [tx(0, 2)]),
    ]
    pipeline = pipeline_for(net, batches)
    asked: list[int] = []

    async def request(peer: int, data: bytes, timeout: float) -> bytes:
        asked.append(peer)
        return b""

    net.decryptors[0].request = request
    async with trio.open_nursery() as nursery:
        await nursery.start(net.decryptors[0].run)
        with trio.fail_after(5):
            out, opened = await pipeline.open_block_with_proof(
                HEIGHT, BLOCK, resolved_of(pipeline, batches), batches
            )
        await trio.sleep(0.4)  # longer than a block waits before it asks
        nursery.cancel_scope.cancel()
    assert opened is None and len(out) == 3
    assert net.sent == [] and asked == []
    assert net.stores[0].own_shares(HEIGHT) is None
    assert net.decryptors[0].answer_request(encode_shares_request(HEIGHT)[1:]) == b""
    assert net.decryptors[0].released == 0
    assert pipeline.status.feed.orders == {HEIGHT: None}
    assert skipped(pipeline) == 1


@pytest.mark.parametrize("kind", ["two senders", "one envelope"])
async def test_a_two_sender_block_and_an_envelope_block_still_have_their_round(
    net: Net, kind: str
) -> None:
    envelopes = [envelope(0, 0)] if kind == "one envelope" else []
    txs = [sealed(envelopes[0])] if envelopes else [tx(0, 0), tx(1, 0)]
    batches = [carrying_batch(DOMAIN, 0, 0, txs)]
    net.down = {2, 3}  # validator 1 answers from its store when asked
    net.stores[1].save_own_shares(HEIGHT, encode_shares_message(message(1, envelopes)))
    pipeline = pipeline_for(net, batches)
    async with trio.open_nursery() as nursery:
        await nursery.start(net.decryptors[0].run)
        with trio.fail_after(10):
            _, opened = await pipeline.open_block_with_proof(
                HEIGHT, BLOCK, resolved_of(pipeline, batches), batches
            )
        nursery.cancel_scope.cancel()
    assert opened is not None and opened.order_seed == ORDER_SEED
    assert [i for i, _ in net.sent] == [0]  # its own message went out
    assert net.stores[0].own_shares(HEIGHT) is not None
    assert skipped(pipeline) == 0
    assert HEIGHT not in pipeline.status.feed.orders  # the pipeline's `apply` tells it


def committed(batches: list[Batch], forced: tuple[bytes, ...] = ()) -> Block:
    payload = BlockPayload(
        timestamp_ms=1_760_000_000_000,
        state_height=HEIGHT - 1,
        state_root=keccak256(b"root"),
        batches=[keccak256(b"batch %d" % i) for i in range(len(batches))],
        namespace_root=keccak256(b"namespaces"),
        forced=[ForcedEntry(i, tx_hash(t)) for i, t in enumerate(forced)],
    )
    return Block(
        view=HEIGHT, height=HEIGHT, parent=bytes(32), proposer=0, payload=encode_payload(payload)
    )


@pytest.mark.parametrize(
    ("txs", "forced", "round_"),
    [
        ((tx(0, 0), tx(0, 1)), (), False),
        ((tx(0, 0), tx(1, 0)), (), True),
        ((tx(1, 0), tx(0, 0), tx(0, 1)), (0,), False),  # the other sender's is forced
    ],
)
async def test_begin_knows_the_rule_when_the_batches_are_fetched(
    net: Net, txs: tuple[bytes, ...], forced: tuple[int, ...], round_: bool
) -> None:
    """The share round starts when the block's batches are here, before the
    blocks below execute: only for a block that needs a seed; a block that
    needs none is told to the subscribers as having none at once."""
    batches = [carrying_batch(DOMAIN, 0, 0, list(txs))]
    pipeline = pipeline_for(net, batches)
    block = committed(batches, tuple(txs[i] for i in forced))
    net.down = {1, 2, 3}
    async with trio.open_nursery() as nursery:
        await nursery.start(net.decryptors[0].run)
        pipeline._begin_opening(block)
        await trio.sleep(0.05)
        assert (HEIGHT in net.decryptors[0]._jobs) == round_
        assert (net.stores[0].own_shares(HEIGHT) is not None) == round_
        assert (pipeline.status.feed.orders.get(HEIGHT, "unknown") is None) == (not round_)
        nursery.cancel_scope.cancel()
