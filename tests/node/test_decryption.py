"""Decryption after commit: four validators' decryptors wired in memory (no sockets).

They open a block's envelopes together, persist their shares before sending,
re-serve them from the store after a restart, ignore shares signed for
another index or failing their proof, and a full node (no share) opens the
block from what it asks for."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import trio

from consensus.crypto import keccak256
from sequencer_net.execution.block import FailedReveal, SequencedTransaction
from sequencer_net.fairness.envelope import Envelope, label_of, seal
from sequencer_net.fairness.tdh2 import BlockShares, block_shares, deal, encode
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction
from sequencer_net.node.decryption import (
    MAX_SHARES_MESSAGE_BYTES,
    BlockDecryption,
    Decryptor,
    MalformedSharesMessage,
    SharesMessage,
    decode_shares_message,
    encode_shares_message,
    encode_shares_request,
    revealed_transaction,
)
from sequencer_net.node.requests import RequestKind
from sequencer_net.storage.node_store import NodeStore
from tests.mempool.factories import DOMAIN, KEYS

SEED = 5
KEYSET, SHARES = deal(4, 2, random.Random(SEED).randbytes)
BLOCK = keccak256(b"block 3")
HEIGHT = 3


def envelope(sender: int, nonce: int, payload: bytes = b"order") -> Envelope:
    tx = sign_transaction(KEYS[sender], DOMAIN, nonce, 1, 0, payload)
    rng = random.Random(SEED + 100 * sender + nonce).randbytes
    return seal(KEYS[sender], DOMAIN, KEYSET.public_key, 0, 100, 10, tx, rng)


ENVELOPES = [envelope(0, 0), envelope(1, 0, b"another"), envelope(0, 1)]


class Net:
    """Four validators' decryptors; broadcasts and requests are direct calls."""

    def __init__(self, directory: Path) -> None:
        self.stores = [
            NodeStore(directory / f"n{i}", genesis_digest=keccak256(b"g"), sync=False)
            for i in range(4)
        ]
        self.down: set[int] = set()
        self.sent: list[tuple[int, bytes]] = []
        self.decryptors = [self.make(i) for i in range(4)]

    def make(self, i: int, key_share: bool = True) -> Decryptor:
        def broadcast(data: bytes) -> None:
            # Persisted before sent: the store already holds what goes out.
            assert self.stores[i].own_shares(HEIGHT) == data
            self.sent.append((i, data))
            for j, other in enumerate(self.decryptors):
                if j != i and j not in self.down:
                    other.on_message(i, data)

        async def request(peer: int, data: bytes, timeout: float) -> bytes:
            if peer in self.down:
                raise OSError("down")
            assert data[:1] == RequestKind.SHARES.value
            return self.decryptors[peer].answer_request(data[1:])

        return Decryptor(
            keys=KEYSET,
            key_share=SHARES[i] if key_share else None,
            store=self.stores[i],
            broadcast=broadcast,
            request=request,
            peers=lambda: [p for p in range(4) if p != i],
            executed=lambda: HEIGHT - 1,
        )

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    yield n
    n.close()


def plaintexts() -> list[bytes]:
    out = []
    for sender, nonce, payload in ((0, 0, b"order"), (1, 0, b"another"), (0, 1, b"order")):
        tx = sign_transaction(KEYS[sender], DOMAIN, nonce, 1, 0, payload)
        out.append(encode_transaction(tx))
    return out


def test_block_decryption_needs_t_verified_messages_and_drops_a_bad_one() -> None:
    cts = [e.ciphertext for e in ENVELOPES]
    labels = [label_of(e) for e in ENVELOPES]
    job = BlockDecryption(HEIGHT, BLOCK, cts, labels, KEYSET)
    honest = [block_shares(SHARES[i], cts, labels) for i in range(4)]
    forged = msgspec.structs.replace(honest[1], values=list(reversed(honest[1].values)))
    assert not job.offer(forged) and 2 in job.refused
    assert not job.offer(honest[1])  # a refused index is not tried again
    assert job.offer(honest[0]) and not job.ready
    assert job.offer(honest[3]) and job.ready
    opened = job.open()
    assert [o[32:] for o in opened] == plaintexts()


async def test_four_validators_open_the_block(net: Net) -> None:
    async with trio.open_nursery() as nursery:
        for d in net.decryptors:
            await nursery.start(d.run)
        results: dict[int, list[bytes]] = {}

        async def open_at(i: int) -> None:
            results[i] = await net.decryptors[i].open_block(HEIGHT, BLOCK, ENVELOPES)  # type: ignore[assignment]

        for i in (1, 2):  # as the commit pipeline does when it has fetched the block
            net.decryptors[i].begin(HEIGHT, BLOCK, ENVELOPES)
            assert HEIGHT in net.decryptors[i]._jobs
        async with trio.open_nursery() as openers:
            for i in range(4):
                openers.start_soon(open_at, i)
        nursery.cancel_scope.cancel()
    assert {tuple(r) for r in results.values()} == {tuple(results[0])}
    assert [r[32:] for r in results[0]] == plaintexts()
    assert sorted(i for i, _ in net.sent) == [0, 1, 2, 3]  # one message each


async def test_a_late_node_asks_and_a_restarted_one_re_serves(net: Net) -> None:
    # Validators 0 and 1 committed and released their shares, then 1 restarted.
    for i in (0, 1):
        cts = [e.ciphertext for e in ENVELOPES]
        shares = block_shares(SHARES[i], cts, [label_of(e) for e in ENVELOPES])
        net.stores[i].save_own_shares(
            HEIGHT, encode_shares_message(SharesMessage(HEIGHT, BLOCK, encode(shares)))
        )
    net.decryptors[1] = net.make(1)  # a fresh process: only its store remains
    net.down = {2}
    with trio.fail_after(10):
        opened = await net.decryptors[3].open_block(HEIGHT, BLOCK, ENVELOPES)
    assert [o[32:] for o in opened] == plaintexts()  # type: ignore[index]
    # A full node (no share) opens it from what it asks for.
    full = net.make(3, key_share=False)
    with trio.fail_after(10):
        assert await full.open_block(HEIGHT, BLOCK, ENVELOPES) == opened
    # Nothing is served for a block this node did not commit.
    assert net.decryptors[2].answer_request(encode_shares_request(HEIGHT + 1)[1:]) == b""


async def test_shares_naming_another_index_are_ignored(net: Net) -> None:
    cts = [e.ciphertext for e in ENVELOPES]
    theirs = block_shares(SHARES[0], cts, [label_of(e) for e in ENVELOPES])
    data = encode_shares_message(SharesMessage(HEIGHT, BLOCK, encode(theirs)))
    net.down = {0, 1, 2}
    decryptor = net.decryptors[3]

    async def opener() -> None:
        await decryptor.open_block(HEIGHT, BLOCK, ENVELOPES)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(decryptor.run)
        nursery.start_soon(opener)
        await trio.sleep(0.05)
        decryptor.on_message(2, data)  # validator 2 relaying validator 0's shares
        await trio.sleep(0.5)
        job = decryptor._jobs[HEIGHT].decryption
        assert set(job.verified) == {4}  # only its own
        decryptor.on_message(0, data)  # from validator 0 itself: accepted
        with trio.fail_after(5):
            while HEIGHT in decryptor._jobs:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


def test_message_bounds() -> None:
    with pytest.raises(MalformedSharesMessage, match="exceed"):
        decode_shares_message(b"\x93" + bytes(MAX_SHARES_MESSAGE_BYTES))
    good = SharesMessage(HEIGHT, BLOCK, encode(BlockShares(1, [], bytes(32), bytes(32))))
    message, shares = decode_shares_message(encode_shares_message(good))
    assert message == good and shares.index == 1
    with pytest.raises(MalformedSharesMessage):
        decode_shares_message(encode_shares_message(good)[:-1])


def test_revealed_transaction_is_the_inner_tx_under_the_envelope_hash() -> None:
    h = keccak256(b"wire")
    cts = [e.ciphertext for e in ENVELOPES]
    labels = [label_of(e) for e in ENVELOPES]
    job = BlockDecryption(HEIGHT, BLOCK, cts, labels, KEYSET)
    for i in (0, 1):
        job.offer(block_shares(SHARES[i], cts, labels))
    opened = job.open()
    inner = revealed_transaction(h, ENVELOPES[1], opened[1], DOMAIN)
    assert isinstance(inner, SequencedTransaction)
    assert (inner.tx_hash, inner.sender, inner.nonce, inner.payload) == (
        h,
        KEYS[1].address,
        0,
        b"another",
    )
    # The right transaction behind another blind: the payload hash fails.
    bad = revealed_transaction(h, ENVELOPES[0], b"\x00" * 32 + plaintexts()[0], DOMAIN)
    assert bad == FailedReveal(h, KEYS[0].address, 10, "payload_hash_mismatch")


async def test_the_commit_pipeline_reveals_in_place(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expired envelopes and those past the per-block limit are never decrypted;
    the others become their inner transactions at their positions."""
    from sequencer_net.batches.batch import Batch
    from sequencer_net.mempool.encrypted import encode_encrypted
    from sequencer_net.node import commit
    from sequencer_net.node.commit import CommitPipeline, ResolvedTransaction

    monkeypatch.setattr(commit, "MAX_BLOCK_CIPHERTEXTS", 2)
    expired = envelope(2, 0)
    expired = msgspec.structs.replace(expired, expiry_height=HEIGHT - 1)
    order = [ENVELOPES[0], expired, ENVELOPES[1], ENVELOPES[2]]
    resolved = [
        ResolvedTransaction(
            encode_encrypted(e),
            FailedReveal(keccak256(encode_encrypted(e)), e.sender, e.max_fee, "not_decrypted"),
            e,
        )
        for e in order
    ]

    class Pool:  # senders remembered from batch verification
        def sender_of(self, h: bytes) -> tuple[bytes, int]:
            return next(e.sender for e in order if keccak256(encode_encrypted(e)) == h), -1

    pipeline = CommitPipeline.__new__(CommitPipeline)
    pipeline.domain = DOMAIN
    pipeline.decryptor = net.decryptors[0]
    pipeline.pool = Pool()  # type: ignore[assignment]
    batches = [Batch(author=0, sequence=0, transactions=[r.encoded for r in resolved])]
    net.down = {2, 3}  # validator 1 answers when asked
    net.stores[1].save_own_shares(
        HEIGHT,
        encode_shares_message(
            SharesMessage(
                HEIGHT,
                BLOCK,
                encode(
                    block_shares(
                        SHARES[1],
                        [e.ciphertext for e in ENVELOPES[:2]],
                        [label_of(e) for e in ENVELOPES[:2]],
                    )
                ),
            )
        ),
    )
    with trio.fail_after(10):
        out = await pipeline.reveal_envelopes(HEIGHT, BLOCK, resolved, batches)
    kinds = [r.sequenced.reason if isinstance(r.sequenced, FailedReveal) else "tx" for r in out]
    assert kinds == ["tx", "expired", "tx", "block_envelope_limit"]
    assert [r.sequenced.tx_hash for r in out] == [r.sequenced.tx_hash for r in resolved]
    assert [r.sequenced.fee for r in out[1::2]] == [0, 0]


async def test_a_discarded_block_stops_gathering(net: Net) -> None:
    net.down = {0, 1, 2}  # nobody answers: the job would ask forever
    decryptor = net.decryptors[3]
    async with trio.open_nursery() as nursery:
        await nursery.start(decryptor.run)
        decryptor.begin(HEIGHT, BLOCK, ENVELOPES)
        job = decryptor._jobs[HEIGHT]
        await trio.sleep(0.05)
        assert net.stores[3].own_shares(HEIGHT) is not None  # released, then waiting
        decryptor.discard(HEIGHT)
        assert HEIGHT not in decryptor._jobs and job.scope.cancel_called
        assert not job.done.is_set()
        nursery.cancel_scope.cancel()
