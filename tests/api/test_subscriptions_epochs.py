"""The subscription server across a validator-set epoch boundary: a block is
proven only within its epoch; an epoch's last blocks committed under its
tail's finalization are sent with the epoch-end proof's tail; /v1/validators
lists the schedule (and nothing new for a chain that never rotates)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from starlette.testclient import TestClient

from consensus.crypto import keccak256
from consensus.encoding import vote_digest
from consensus.epochs import Epoch, EpochSchedule, epoch_domain_separator
from consensus.messages import Block, Certificate, EpochEndProof, VoteKind
from consensus.types import Digest, Height, View
from sequencer_net.api.server import ApiOptions, build_app
from sequencer_net.api.subscriptions import (
    NoOwnCertificate,
    SubscriptionLimits,
    Subscriptions,
    finality_of,
    header_json,
)
from sequencer_net.api.validators import validators_document
from sequencer_net.client.verify import BlockVerifier, SubscriptionVerificationError
from sequencer_net.home.genesis import make_local_genesis
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.payload import decode_payload
from sequencer_net.storage.node_store import NodeStore
from tests.api.conftest import GENESIS, ApiWorld
from tests.api.test_subscriptions import Chain, FakeSocket, until
from tests.client.epoch_chain import LAST, MEMBERS, epoch_genesis
from tests.mempool.factories import DOMAIN, signed

NS = 7
EPOCH_GENESIS, ALL_KEYS = epoch_genesis()
SCHEDULE = EPOCH_GENESIS.schedule()
SIGNING = EPOCH_GENESIS.domain()
EPOCH_KEYS = [[ALL_KEYS[i] for i in members] for members in MEMBERS]


def finalization(block: Block, epoch: int) -> Certificate:
    """A quorum of `epoch`'s keys finalizing `block`, in `epoch`'s domain."""
    separator = epoch_domain_separator(SIGNING.separator(), epoch)
    vote = vote_digest(
        separator, VoteKind.FINALIZE, View(block.view), Height(block.height), Digest(block.digest())
    )
    signers = [0, 1, 2]
    return Certificate(
        VoteKind.FINALIZE,
        block.view,
        block.height,
        block.digest(),
        signers,
        [EPOCH_KEYS[epoch][i].sign_digest(vote) for i in signers],
    )


class Boundary:
    """Heights 1..LAST + 1 in a store: 1 finalized itself; 2..LAST (epoch 0's
    last blocks) committed under the finalization of an empty tail of two
    blocks above LAST; LAST + 1, epoch 1's first block, finalized itself in
    epoch 1 on top of block LAST."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.blocks: list[Block] = []
        self.txs: list[list[bytes]] = []
        parent = chain.store.tip()[1]
        for height in range(1, LAST + 2):
            self.txs.append([signed(sender=1, nonce=height, namespace=NS, payload=b"b%d" % height)])
            block = chain.block(self.txs[-1], height, parent)
            self.blocks.append(block)
            parent = block.digest()
        last = self.blocks[LAST - 1]
        low = Block(view=LAST + 1, height=LAST + 1, parent=last.digest(), proposer=0, payload=b"")
        high = Block(view=LAST + 2, height=LAST + 2, parent=low.digest(), proposer=0, payload=b"")
        self.tail = [high, low]  # newest first, as an EpochEndProof holds it
        self.tail_finalization = finalization(high, 0)
        self.proof = EpochEndProof(0, LAST, self.tail_finalization, self.tail)
        for block, txs in zip(self.blocks, self.txs, strict=True):
            epoch = SCHEDULE.epoch_of(block.height).number
            own = block.height == 1 or epoch == 1
            certificate = finalization(block, epoch) if own else self.tail_finalization
            chain.store.commit_block(
                block, certificate, txs, keccak256(b"root"), batch_digests=_batch_digests(block)
            )
            chain.feed.announce(block.height)

    def proofs(self, epoch: int) -> EpochEndProof | None:
        return self.proof if epoch == 0 else None


def _batch_digests(block: Block) -> list[bytes]:
    return list(decode_payload(block.payload).batches)


@pytest.fixture
def boundary(tmp_path: Path) -> Iterator[Boundary]:
    store = NodeStore(tmp_path / "chain", genesis_digest=GENESIS, sync=False)
    try:
        yield Boundary(Chain(store))
    finally:
        store.close()


def subscriptions(boundary: Boundary, *, with_proofs: bool = True) -> Subscriptions:
    if with_proofs:
        return Subscriptions(
            store=boundary.chain.store,
            mempool=Mempool(DOMAIN),
            feed=boundary.chain.feed,
            limits=SubscriptionLimits(),
            receipt=lambda height, index: None,
            schedule=SCHEDULE,
            epoch_end_proof=boundary.proofs,
        )
    return Subscriptions(
        store=boundary.chain.store,
        mempool=Mempool(DOMAIN),
        feed=boundary.chain.feed,
        limits=SubscriptionLimits(),
        receipt=lambda height, index: None,
        schedule=SCHEDULE,
    )


def verifier(from_height: int = 1) -> BlockVerifier:
    return BlockVerifier.from_genesis(EPOCH_GENESIS, NS, from_height)


async def test_an_epochs_last_blocks_are_sent_with_its_tail_and_verify(boundary: Boundary) -> None:
    subs = subscriptions(boundary)
    socket = FakeSocket({"namespace": str(NS), "from": "1"})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subs.blocks, socket)
        await until(lambda: len(socket.messages) == LAST + 1)
        nursery.cancel_scope.cancel()
    messages = socket.messages
    assert [m["height"] for m in messages] == [1, 2, 3, 4]
    assert [m["certificate"] is None for m in messages] == [False, True, True, False]
    assert [h["height"] for h in messages[1]["finalized_by"]["chain"]] == [5, 4, 3]
    assert messages[2]["finalized_by"]["chain"][:2] == [header_json(b) for b in boundary.tail]
    assert messages[2]["finalized_by"]["certificate"]["height"] == LAST + 2
    v = verifier()
    verified = [v.verify(m) for m in messages]
    assert [b.epoch for b in verified] == [0, 0, 0, 1]
    assert [b.finalized_by for b in verified] == [None, LAST + 2, LAST + 2, None]


async def test_without_the_epoch_end_proof_the_next_epochs_block_is_not_used(
    boundary: Boundary,
) -> None:
    """Block LAST + 1 is block LAST's child and holds its own certificate, but it
    is epoch 1's: it proves nothing about epoch 0's last block."""
    subs = subscriptions(boundary, with_proofs=False)
    for height in (2, LAST):
        with pytest.raises(NoOwnCertificate, match="nor the proof of the epoch's end"):
            await subs.block_document(height, NS)
    assert (await subs.block_document(LAST + 1, NS)) is not None


def test_a_server_unaware_of_epochs_would_cross_the_boundary_and_is_refused(
    boundary: Boundary,
) -> None:
    store = boundary.chain.store
    last = boundary.blocks[LAST - 1]
    crossing = finality_of(store, last, last.digest())  # no schedule: the old walk
    assert crossing is not None and not isinstance(crossing, Certificate)
    assert crossing.certificate.height == LAST + 1  # epoch 1's certificate
    proven = finality_of(
        store, last, last.digest(), schedule=SCHEDULE, epoch_end_proof=boundary.proofs
    )
    assert proven is not None and not isinstance(proven, Certificate)
    assert proven.certificate == boundary.tail_finalization
    with TestClient(_app(boundary, schedule=None), backend="trio") as client:
        document = client.get(f"/v1/blocks/{LAST}/namespaces/{NS}").json()
    with pytest.raises(SubscriptionVerificationError, match="crosses out of epoch 0"):
        verifier(LAST).verify(document)


def test_a_stored_proof_of_another_block_is_not_sent(boundary: Boundary) -> None:
    store = boundary.chain.store
    last = boundary.blocks[LAST - 1]
    other_low = Block(LAST + 1, LAST + 1, keccak256(b"another last block"), 0, b"")
    unlinked = EpochEndProof(0, LAST, finalization(other_low, 0), [other_low])
    wrong_epoch = EpochEndProof(1, LAST, boundary.tail_finalization, boundary.tail)
    for proof in (unlinked, wrong_epoch):

        def stored(epoch: int, proof: EpochEndProof = proof) -> EpochEndProof:
            return proof

        with pytest.raises(NoOwnCertificate):
            finality_of(store, last, last.digest(), schedule=SCHEDULE, epoch_end_proof=stored)


def test_a_last_block_finalized_itself_in_the_proof_is_its_own_certificate(
    boundary: Boundary,
) -> None:
    last = boundary.blocks[LAST - 1]
    own = finalization(last, 0)
    proof = EpochEndProof(0, LAST, own, [])
    found = finality_of(
        boundary.chain.store,
        last,
        last.digest(),
        schedule=SCHEDULE,
        epoch_end_proof=lambda epoch: proof,
    )
    assert found == own


def _app(boundary: Boundary, **context: Any) -> Any:
    world = ApiWorld(store=boundary.chain.store, mempool=Mempool(DOMAIN))
    api = world.context()
    api.commit_feed = boundary.chain.feed
    for key, value in context.items():
        setattr(api, key, value)
    return build_app(api, ApiOptions())


def test_the_http_api_serves_the_tail_proof_and_the_schedule(boundary: Boundary) -> None:
    app = _app(
        boundary,
        schedule=SCHEDULE,
        epoch_end_proof=boundary.proofs,
        validators=lambda: validators_document(EPOCH_GENESIS),
    )
    with TestClient(app, backend="trio") as client:
        document = client.get(f"/v1/blocks/2/namespaces/{NS}").json()
        answer = client.get("/v1/validators").json()
    assert verifier(2).verify(document).finalized_by == LAST + 2
    epochs = answer["epochs"]
    assert [(e["number"], e["first_height"], e["last_height"]) for e in epochs] == [
        (0, 1, LAST),
        (1, LAST + 1, None),
    ]
    assert epochs[0]["domain_separator"] == "0x" + SIGNING.separator().hex()
    assert epochs[1]["domain_separator"] == (
        "0x" + epoch_domain_separator(SIGNING.separator(), 1).hex()
    )
    assert [v["address"] for v in epochs[1]["validators"]] == [
        "0x" + ALL_KEYS[i].address.hex() for i in MEMBERS[1]
    ]


def test_a_chain_that_never_rotates_answers_validators_as_before() -> None:
    keys = [k.secret for k in ALL_KEYS[:4]]
    genesis = make_local_genesis(keys, chain_id=5, base_p2p_port=1, base_api_port=101)
    domain = genesis.domain()
    assert validators_document(genesis) == {
        "threshold": None,
        "chain_id": 5,
        "verifying_contract": "0x" + bytes(20).hex(),
        "genesis_hash": "0x" + domain.genesis_hash.hex(),
        "validators": [
            {"index": i, "name": f"node{i}", "address": "0x" + k.address.hex(), "weight": 1}
            for i, k in enumerate(ALL_KEYS[:4])
        ],
    }


def test_a_single_epoch_schedule_proves_as_without_one(boundary: Boundary) -> None:
    """A chain that never rotates: its one-epoch schedule has no last height, so
    every proof is the one the server gave before epochs existed."""
    store = boundary.chain.store
    one_epoch = EpochSchedule([Epoch(0, Height(1), SCHEDULE.epoch(0).validators)])
    for block in boundary.blocks:
        with_schedule = finality_of(store, block, block.digest(), schedule=one_epoch)
        assert with_schedule is not None
        assert with_schedule == finality_of(store, block, block.digest())
