"""GET /v1/evidence serves the equivocation evidence the node persisted: both
signed votes, so anyone can check them against the offender's key; on a chain
that rotates its set, every epoch's, each naming its epoch."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import pytest

from consensus.crypto import PrivateKey, recover_address
from consensus.encoding import Domain, vote_digest
from consensus.epochs import epoch_domain_separator
from consensus.messages import Vote, VoteKind
from consensus.sim.simulator import validator_key
from consensus.types import Digest, Height, View
from sequencer_net.api.server import ApiContext, build_app
from sequencer_net.api.validators import epoch_validator_address
from sequencer_net.l1.evidence_watch import SourceUnavailable
from sequencer_net.l1.node_api import NodeApiSource
from sequencer_net.storage.node_store import MAX_STORED_EVIDENCE, EvidenceRecord
from tests.api.conftest import GENESIS, ApiWorld
from tests.client.epoch_chain import MEMBERS, epoch_genesis
from tests.l1.l1_chain import node_api

DOMAIN = Domain(31337, bytes(20), GENESIS)


def _vote(kind: VoteKind, view: int, height: int, block: bytes) -> Vote:
    digest = vote_digest(DOMAIN.separator(), kind, View(view), Height(height), Digest(block))
    return Vote(kind, view, height, block, 2, bytes(validator_key(2).sign_digest(digest)))


async def test_persisted_evidence_is_served_with_both_signed_votes(world: ApiWorld) -> None:
    first = _vote(VoteKind.NOTARIZE, 9, 4, b"\x0a" * 32)
    second = _vote(VoteKind.NOTARIZE, 9, 4, b"\x0b" * 32)
    record = EvidenceRecord(2, first, second, "notarized two blocks in one view")
    assert world.store.save_evidence(record)
    assert not world.store.save_evidence(record)  # one record per offence
    context = world.context()
    context.validator_address = lambda i: validator_key(i).address
    transport = httpx.ASGITransport(app=build_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = (await client.get("/v1/evidence")).json()
    (item,) = answer["evidence"]
    # A chain of one epoch: no record names an epoch (the answer is as before epochs).
    assert set(item) == {"offender", "offender_address", "view", "reason", "first", "second"}
    assert item["offender"] == 2 and item["view"] == 9
    assert item["offender_address"] == "0x" + validator_key(2).address.hex()
    for key in ("first", "second"):
        vote = item[key]
        digest = vote_digest(
            DOMAIN.separator(),
            VoteKind.NOTARIZE,
            View(vote["view"]),
            Height(vote["height"]),
            Digest(bytes.fromhex(vote["block"][2:])),
        )
        assert recover_address(digest, bytes.fromhex(vote["signature"][2:])) == (
            validator_key(2).address
        )
    assert item["first"]["block"] != item["second"]["block"]


def test_stored_evidence_is_bounded(world: ApiWorld) -> None:
    vote = _vote(VoteKind.NULLIFY, 1, 0, bytes(32))
    world.store._evidence_count = MAX_STORED_EVIDENCE  # as if the store were full
    assert not world.store.save_evidence(EvidenceRecord(1, vote, vote, "x"))
    assert world.store.load_evidence() == []


async def test_a_views_certificates_are_served(world: ApiWorld) -> None:
    """GET /v1/views/{v}: the committed block's finalization in its view, a kept
    nullification in its own, nothing in a view this node has no certificate of."""
    from consensus.messages import Certificate

    nullification = Certificate(
        kind=VoteKind.NULLIFY, view=2, height=0, block=bytes(32), signers=[0, 1, 3],
        signatures=[bytes([i]) * 65 for i in (0, 1, 3)],
    )  # fmt: skip
    world.store.save_certificate(nullification)
    transport = httpx.ASGITransport(app=build_app(world.context()))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        one = (await client.get("/v1/views/1")).json()
        two = (await client.get("/v1/views/2")).json()
        none = (await client.get("/v1/views/7")).json()
        bad = await client.get("/v1/views/-1")
    (final,) = one["certificates"]
    assert (one["view"], final["kind"], final["height"]) == (1, int(VoteKind.FINALIZE), 1)
    assert final["block"] == "0x" + world.store.block_at(1).digest().hex()  # type: ignore[union-attr]
    assert [c["kind"] for c in two["certificates"]] == [int(VoteKind.NULLIFY)]
    assert two["certificates"][0]["signers"] == [0, 1, 3]
    assert none == {"view": 7, "certificates": []}
    assert bad.status_code == 400


def _epoch_vote(
    key: PrivateKey, separator: bytes, kind: VoteKind, view: int, height: int, signer: int
) -> Vote:
    block = bytes([height, kind]) * 16
    digest = vote_digest(separator, kind, View(view), Height(height), Digest(block))
    return Vote(kind, view, height, block, signer, bytes(key.sign_digest(digest)))


async def _evidence_of(context: ApiContext) -> list[dict[str, Any]]:
    transport = httpx.ASGITransport(app=build_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = await client.get("/v1/evidence")
    assert answer.status_code == 200
    evidence: list[dict[str, Any]] = answer.json()["evidence"]
    return evidence


async def test_every_epochs_evidence_is_served_naming_its_epoch(world: ApiWorld) -> None:
    """Epoch 0's member 2 and epoch 1's member 0 (key 1: indices shift) each
    finalized and nullified in one view; epoch 1's votes are in its separator and
    its offender is an index in its set."""
    genesis, keys = epoch_genesis()
    separator = genesis.domain().separator()
    offences = {0: (2, keys[MEMBERS[0][2]]), 1: (0, keys[MEMBERS[1][0]])}
    for epoch, (index, key) in offences.items():
        signing = epoch_domain_separator(separator, epoch)
        height = 2 if epoch == 0 else 6
        first = _epoch_vote(key, signing, VoteKind.FINALIZE, 3, height, index)
        second = _epoch_vote(key, signing, VoteKind.NULLIFY, 3, 0, index)
        assert world.store.save_evidence(EvidenceRecord(index, first, second, "x"), epoch=epoch)
    context = world.context()
    context.schedule = genesis.schedule()
    context.epoch_validator_address = functools.partial(epoch_validator_address, genesis)

    served = await _evidence_of(context)
    assert [(item["epoch"], item["offender"]) for item in served] == [(0, 2), (1, 0)]
    for item in served:
        address = offences[item["epoch"]][1].address
        assert item["offender_address"] == "0x" + address.hex()
        signing = epoch_domain_separator(separator, item["epoch"])
        for name in ("first", "second"):
            vote = item[name]
            digest = vote_digest(
                signing,
                VoteKind[vote["kind"].upper()],
                View(vote["view"]),
                Height(vote["height"]),
                Digest(bytes.fromhex(vote["block"][2:])),
            )
            assert recover_address(digest, bytes.fromhex(vote["signature"][2:])) == address

    # What a watcher reads from node APIs (`seqnet watch`): each record with its epoch.
    with node_api({"/v1/evidence": {"evidence": served}}) as url:
        source = NodeApiSource([url])
        try:
            read = await source.evidence()
        finally:
            source.close()
    stored = world.store.load_every_epoch_evidence()
    assert [(found.epoch, found.record.first, found.record.second) for found in read] == [
        (epoch, record.first, record.second) for epoch, record in stored
    ]
    for bad in (-1, True, "1", 2**32):
        with node_api({"/v1/evidence": {"evidence": [{**served[1], "epoch": bad}]}}) as url:
            source = NodeApiSource([url])
            try:
                with pytest.raises(SourceUnavailable, match="malformed evidence"):
                    await source.evidence()
            finally:
                source.close()

    # Without a lookup of later epochs' sets, only epoch 0's offender is named.
    context.epoch_validator_address = None
    context.validator_address = lambda i: keys[MEMBERS[0][i]].address
    served = await _evidence_of(context)
    assert [item["offender_address"] is None for item in served] == [False, True]


def test_an_offender_outside_its_epochs_set_has_no_address() -> None:
    genesis, keys = epoch_genesis()
    assert epoch_validator_address(genesis, 1, 3) == keys[MEMBERS[1][3]].address
    assert epoch_validator_address(genesis, 1, 4) is None
    assert epoch_validator_address(genesis, 2, 0) is None
