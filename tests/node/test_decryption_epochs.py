"""A threshold key per validator-set epoch: five members' decryptors wired in
memory (no sockets) across an epoch boundary.

Epoch 0 (heights 1..9) is peers 0..3 with key K0; epoch 1 (from height 10) is
peers 0, 1, 2, 4 with its own key K1. A block opens with the key of its
height's epoch, only that epoch's shareholders release shares for it, share
messages name their key epoch, a message of another epoch (or made with the
other epoch's key share) is refused, and an envelope of another key epoch is
never shared: the commit pipeline refuses it undecrypted, the same on every
node, at no fee."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
import pytest
import trio

from consensus.crypto import keccak256
from sequencer_net.execution.block import FailedReveal
from sequencer_net.fairness.envelope import Envelope, label_of, seal
from sequencer_net.fairness.limits import MAX_BLOCK_SHARES_BYTES, MAX_SHARE_BYTES
from sequencer_net.fairness.order import order_seed_tag
from sequencer_net.fairness.tdh2 import (
    KeyShare,
    PublicKeySet,
    block_shares,
    coin_share,
    combine,
    combine_coin,
    deal,
    decryption_share,
    encode,
)
from sequencer_net.mempool.encrypted import encode_encrypted
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction
from sequencer_net.node.commit import (
    KEY_EPOCH_MISMATCH,
    ResolvedTransaction,
    block_envelopes,
    reveal_envelopes,
)
from sequencer_net.node.decryption import (
    MAX_SHARES_MESSAGE_BYTES,
    Decryptor,
    KeyEpoch,
    KeyEpochMismatch,
    KeyEpochs,
    MalformedSharesMessage,
    OpenedBlock,
    SharesMessage,
    decode_shares_message,
    encode_shares_message,
)
from sequencer_net.node.requests import RequestKind
from sequencer_net.storage.node_store import NodeStore
from tests.mempool.factories import DOMAIN, KEYS, carrying_batch

SEED = 11
KEYSET0, SHARES0 = deal(4, 2, random.Random(SEED).randbytes)
KEYSET1, SHARES1 = deal(4, 2, random.Random(SEED + 1).randbytes)
HOLDERS0 = (0, 1, 2, 3)
HOLDERS1 = (0, 1, 2, 4)
SWITCH = 10
LAST0 = SWITCH - 1
BLOCKS = {h: keccak256(b"block %d" % h) for h in (LAST0, SWITCH)}
PEERS = 5


def epochs_of(peer: int | None) -> KeyEpochs:
    """The chain's keys with `peer`'s share of each epoch it is in (None: a full node)."""
    share0 = SHARES0[HOLDERS0.index(peer)] if peer in HOLDERS0 else None
    share1 = SHARES1[HOLDERS1.index(peer)] if peer in HOLDERS1 else None
    return KeyEpochs(
        [
            KeyEpoch(0, 1, KEYSET0, share0, HOLDERS0),
            KeyEpoch(1, SWITCH, KEYSET1, share1, HOLDERS1),
        ]
    )


def envelope(key_epoch: int, sender: int, nonce: int, payload: bytes = b"order") -> Envelope:
    tx = sign_transaction(KEYS[sender], DOMAIN, nonce, 1, 0, payload)
    rng = random.Random(SEED + 100 * sender + nonce + 1000 * key_epoch).randbytes
    keys = KEYSET1 if key_epoch == 1 else KEYSET0
    return seal(KEYS[sender], DOMAIN, keys.public_key, key_epoch, 100, 10, tx, rng)


OLD = [envelope(0, 0, 0), envelope(0, 1, 0, b"another")]
NEW = [envelope(1, 0, 1), envelope(1, 2, 0, b"third")]


def inner(e: Envelope, nonce: int, sender: int, payload: bytes) -> bytes:
    return encode_transaction(sign_transaction(KEYS[sender], DOMAIN, nonce, 1, 0, payload))


OLD_PLAIN = [inner(OLD[0], 0, 0, b"order"), inner(OLD[1], 0, 1, b"another")]
NEW_PLAIN = [inner(NEW[0], 1, 0, b"order"), inner(NEW[1], 0, 2, b"third")]


def seed(height: int, keyset: PublicKeySet, shares: Sequence[KeyShare]) -> bytes:
    tag = order_seed_tag(DOMAIN.chain_id, height, BLOCKS[height])
    combined = combine_coin(tag, [coin_share(s, tag) for s in shares], keyset)
    assert isinstance(combined, bytes)
    return combined


class Net:
    """Five members' decryptors; broadcasts and requests are direct calls."""

    def __init__(self, directory: Path) -> None:
        self.stores = [
            NodeStore(directory / f"n{i}", genesis_digest=keccak256(b"g"), sync=False)
            for i in range(PEERS)
        ]
        self.down: set[int] = set()
        self.sent: list[tuple[int, SharesMessage]] = []
        self.decryptors = [self.make(i) for i in range(PEERS)]

    def make(self, i: int) -> Decryptor:
        def broadcast(data: bytes) -> None:
            message = decode_shares_message(data)[0]
            assert self.stores[i].own_shares(message.height) == data  # persisted first
            self.sent.append((i, message))
            for j, other in enumerate(self.decryptors):
                if j != i and j not in self.down:
                    other.on_message(i, data)

        async def request(peer: int, data: bytes, timeout: float) -> bytes:
            if peer in self.down:
                raise OSError("down")
            assert data[:1] == RequestKind.SHARES.value
            return self.decryptors[peer].answer_request(data[1:])

        return Decryptor(
            chain_id=DOMAIN.chain_id,
            epochs=epochs_of(i),
            store=self.stores[i],
            broadcast=broadcast,
            request=request,
            executed=lambda: LAST0 - 1,
            me=i,
        )

    def close(self) -> None:
        for store in self.stores:
            store.close()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    yield n
    n.close()


def test_the_key_epoch_of_a_height() -> None:
    epochs = epochs_of(4)
    assert [epochs.at(h).number for h in (1, LAST0, SWITCH, 10**9)] == [0, 0, 1, 1]
    assert epochs.at(LAST0).key_share is None and epochs.at(SWITCH).key_share is not None
    assert epochs.at(SWITCH).share_index_of(4) == 4 and epochs.at(LAST0).share_index_of(4) is None
    assert epochs.named and epochs.named_epoch(LAST0) == 0
    single = KeyEpochs.single(KEYSET0, SHARES0[0])
    assert not single.named and single.named_epoch(SWITCH) is None
    assert single.at(SWITCH).shareholders == (0, 1, 2, 3)
    with pytest.raises(ValueError):
        KeyEpochs([KeyEpoch(1, SWITCH, KEYSET1, None, HOLDERS1)])  # nothing from height 1
    with pytest.raises(ValueError):
        KeyEpochs([KeyEpoch(0, 1, KEYSET0, None, (0, 1, 2))])  # one peer short


def test_share_messages_name_their_key_epoch_only_on_a_chain_with_epochs() -> None:
    coin = encode(coin_share(SHARES0[0], b"tag"))
    unnamed = SharesMessage(LAST0, BLOCKS[LAST0], b"", coin)
    named = SharesMessage(LAST0, BLOCKS[LAST0], b"", coin, 0)
    # A single-epoch chain's message is the four-field array it always was.
    assert encode_shares_message(unnamed)[:1] == b"\x94"
    assert encode_shares_message(named)[:1] == b"\x95"
    assert decode_shares_message(encode_shares_message(named))[0].key_epoch == 0
    # An explicit nil key epoch is not the canonical form of an unnamed message.
    explicit_nil = msgspec.msgpack.encode([LAST0, BLOCKS[LAST0], b"", coin, None])
    with pytest.raises(MalformedSharesMessage):
        decode_shares_message(explicit_nil)
    # The widest legal named message fits the cap.
    widest = SharesMessage(
        2**63 - 1, BLOCKS[LAST0], bytes(MAX_BLOCK_SHARES_BYTES), bytes(MAX_SHARE_BYTES), 2**63 - 1
    )
    assert len(encode_shares_message(widest)) <= MAX_SHARES_MESSAGE_BYTES


async def test_blocks_on_both_sides_of_the_switch_open_with_their_epochs_keys(net: Net) -> None:
    results: dict[tuple[int, int], OpenedBlock] = {}
    async with trio.open_nursery() as nursery:
        for d in net.decryptors:
            await nursery.start(d.run)

        async def open_at(i: int, height: int, envelopes: list[Envelope]) -> None:
            opened = await net.decryptors[i].open_block(height, BLOCKS[height], envelopes)
            results[(i, height)] = opened

        with trio.fail_after(20):
            async with trio.open_nursery() as openers:
                for i in range(PEERS):
                    openers.start_soon(open_at, i, LAST0, OLD)
                    openers.start_soon(open_at, i, SWITCH, NEW)
        nursery.cancel_scope.cancel()
    for height, plain, keyset, shares in (
        (LAST0, OLD_PLAIN, KEYSET0, SHARES0),
        (SWITCH, NEW_PLAIN, KEYSET1, SHARES1),
    ):
        opened = [results[(i, height)] for i in range(PEERS)]
        assert all(o == opened[0] for o in opened)  # every member, shareholder or not
        assert [p[32:] for p in opened[0].plaintexts] == plain  # type: ignore[index]
        assert opened[0].order_seed == seed(height, keyset, shares[:2])
    # Only each epoch's shareholders released shares, each message naming its epoch.
    assert sorted(i for i, m in net.sent if m.height == LAST0) == list(HOLDERS0)
    assert sorted(i for i, m in net.sent if m.height == SWITCH) == list(HOLDERS1)
    assert {m.key_epoch for _, m in net.sent if m.height == LAST0} == {0}
    assert {m.key_epoch for _, m in net.sent if m.height == SWITCH} == {1}
    assert net.stores[4].own_shares(LAST0) is None  # not in epoch 0
    assert net.stores[3].own_shares(SWITCH) is None  # left at the switch


async def test_an_envelope_of_another_key_epoch_is_never_shared(net: Net) -> None:
    """Handing the decryptor an epoch-0 envelope at an epoch-1 height (or the
    reverse) is refused before anything is made: nothing stored, nothing sent."""
    decryptor = net.decryptors[0]
    with pytest.raises(KeyEpochMismatch):
        await decryptor.open_block(SWITCH, BLOCKS[SWITCH], [OLD[0], NEW[0]])
    with pytest.raises(KeyEpochMismatch):
        await decryptor.open_block(LAST0, BLOCKS[LAST0], NEW[:1])
    async with trio.open_nursery() as nursery:
        await nursery.start(decryptor.run)
        with pytest.raises(KeyEpochMismatch):
            decryptor.begin(SWITCH, BLOCKS[SWITCH], OLD)
        nursery.cancel_scope.cancel()
    assert decryptor.released == 0 and net.sent == []
    assert net.stores[0].own_shares(SWITCH) is None and net.stores[0].own_shares(LAST0) is None


def _message(
    height: int, share: KeyShare, key_epoch: int | None, envelopes: list[Envelope]
) -> bytes:
    cts = [e.ciphertext for e in envelopes]
    made = block_shares(share, cts, [label_of(e) for e in envelopes])
    tag = order_seed_tag(DOMAIN.chain_id, height, BLOCKS[height])
    coin = coin_share(share, tag)
    return encode_shares_message(
        SharesMessage(height, BLOCKS[height], encode(made), encode(coin), key_epoch)
    )


async def test_shares_of_the_other_epoch_are_refused(net: Net) -> None:
    """Peer 4 opens the first epoch-1 block; peer 0 sends it a message made
    with its epoch-0 key share (named epoch 1: its proofs fail against epoch
    1's verification key; named epoch 0: refused unread), and peer 1 an honest
    message without the key epoch. None counts; peer 2's honest one does."""
    net.down = {0, 1, 2, 3}  # nobody answers requests: only what is offered here
    decryptor = net.decryptors[4]
    # Epoch 0's x_1 under epoch 1's network key, so the maker's ciphertext check passes.
    old_share = dataclasses.replace(SHARES0[0], public_key=KEYSET1.public_key)
    old_key_as_new = _message(SWITCH, old_share, 1, NEW)
    named_old = _message(SWITCH, SHARES1[0], 0, NEW)
    unnamed = _message(SWITCH, SHARES1[1], None, NEW)
    honest = _message(SWITCH, SHARES1[2], 1, NEW)
    async with trio.open_nursery() as nursery:
        await nursery.start(decryptor.run)
        decryptor.begin(SWITCH, BLOCKS[SWITCH], NEW)
        job = decryptor._jobs[SWITCH]
        with trio.fail_after(5):
            while 4 not in job.decryption.verified:  # its own, made in a worker thread
                await trio.sleep(0.01)
        await decryptor._consider(0, named_old)
        await decryptor._consider(1, unnamed)
        assert decryptor.refused == 2 and not job.decryption.refused
        await decryptor._consider(0, old_key_as_new)
        assert job.decryption.refused == {1} and set(job.decryption.verified) == {4}
        await decryptor._consider(2, honest)
        assert set(job.decryption.verified) == {3, 4}
        with trio.fail_after(5):
            await job.done.wait()
        nursery.cancel_scope.cancel()
    assert job.opened is not None
    assert [p[32:] for p in job.opened.plaintexts] == NEW_PLAIN  # type: ignore[index]


def opened(e: Envelope) -> bytes:
    """What t shares of e's own epoch's key open it to."""
    label = label_of(e)
    shares = [decryption_share(s, e.ciphertext, label) for s in SHARES1[:2]]
    result = combine(e.ciphertext, label, shares, KEYSET1)
    assert isinstance(result, bytes)
    return result


def _resolved(envelopes: list[Envelope]) -> list[ResolvedTransaction]:
    return [
        ResolvedTransaction(
            encode_encrypted(e),
            FailedReveal(keccak256(encode_encrypted(e)), e.sender, e.max_fee, "not_decrypted"),
            e,
        )
        for e in envelopes
    ]


def test_commit_refuses_an_old_epochs_envelope_undecrypted_at_no_fee() -> None:
    """An epoch-0 envelope committed at the first epoch-1 height is left out of
    what the block opens (so no share is made for it) and becomes
    FailedReveal("key_epoch_mismatch", fee 0); a function of the block alone,
    so every node gets the same."""
    order = [OLD[0], NEW[0], OLD[1], NEW[1]]
    resolved = _resolved(order)
    batches = [
        carrying_batch(DOMAIN, author=0, sequence=0, transactions=[r.encoded for r in resolved])
    ]
    live = block_envelopes(SWITCH, batches, lambda h, e: True, key_epoch=1)
    assert [e for _, e in live] == NEW
    # Without a key epoch (a chain without a key) nothing is filtered by epoch.
    assert len(block_envelopes(SWITCH, batches, lambda h, e: True)) == 4
    plaintexts = [opened(e) for e in NEW]
    out = reveal_envelopes(SWITCH, resolved, live, plaintexts, DOMAIN, key_epoch=1)
    reasons = [r.sequenced.reason if isinstance(r.sequenced, FailedReveal) else "tx" for r in out]
    assert reasons == [KEY_EPOCH_MISMATCH, "tx", KEY_EPOCH_MISMATCH, "tx"]
    assert [r.sequenced.fee for r in out[0::2]] == [0, 0]
    assert [r.sequenced.tx_hash for r in out] == [r.sequenced.tx_hash for r in resolved]
    assert out == reveal_envelopes(SWITCH, resolved, live, plaintexts, DOMAIN, key_epoch=1)
    # An expired envelope of another epoch is expired first (the same rule everywhere).
    stale = msgspec.structs.replace(OLD[0], expiry_height=LAST0)
    (expired,) = reveal_envelopes(SWITCH, _resolved([stale]), [], None, DOMAIN, key_epoch=1)
    assert isinstance(expired.sequenced, FailedReveal)
    assert expired.sequenced.reason == "expired"


async def test_the_commit_pipeline_shares_only_its_heights_epoch(net: Net) -> None:
    """The first epoch-1 block holds two epoch-0 envelopes (batched before the
    switch) and two epoch-1 ones: validator 0's stored and sent share message
    covers the two epoch-1 ciphertexts only, and the epoch-0 envelopes are
    refused undecrypted at no fee."""
    from sequencer_net.node.commit import CommitPipeline

    order = [OLD[0], NEW[0], OLD[1], NEW[1]]
    resolved = _resolved(order)

    class Pool:  # senders remembered from batch verification
        def sender_of(self, h: bytes) -> tuple[bytes, int]:
            return next(e.sender for e in order if keccak256(encode_encrypted(e)) == h), -1

    pipeline = CommitPipeline.__new__(CommitPipeline)
    pipeline.domain = DOMAIN
    pipeline.decryptor = net.decryptors[0]
    pipeline.pool = Pool()  # type: ignore[assignment]
    batches = [
        carrying_batch(DOMAIN, author=0, sequence=0, transactions=[r.encoded for r in resolved])
    ]
    net.stores[4].save_own_shares(SWITCH, _message(SWITCH, SHARES1[3], 1, NEW))
    net.down = {1, 2, 3}  # validator 4 answers when asked
    with trio.fail_after(10):
        out, order_seed = await pipeline.open_block(SWITCH, BLOCKS[SWITCH], resolved, batches)
    assert order_seed == seed(SWITCH, KEYSET1, [SHARES1[0], SHARES1[3]])
    reasons = [r.sequenced.reason if isinstance(r.sequenced, FailedReveal) else "tx" for r in out]
    assert reasons == [KEY_EPOCH_MISMATCH, "tx", KEY_EPOCH_MISMATCH, "tx"]
    assert [r.sequenced.fee for r in out[0::2]] == [0, 0]
    stored = net.stores[0].own_shares(SWITCH)
    assert stored is not None
    message, shares, _ = decode_shares_message(stored)
    assert message.key_epoch == 1 and shares is not None and len(shares.values) == len(NEW)
    assert [m for _, m in net.sent] == [message]
