"""GET /v1/evidence serves the equivocation evidence the node persisted: both
signed votes, so anyone can check them against the offender's key."""

from __future__ import annotations

import httpx

from consensus.crypto import recover_address
from consensus.encoding import Domain, vote_digest
from consensus.messages import Vote, VoteKind
from consensus.sim.simulator import validator_key
from consensus.types import Digest, Height, View
from sequencer_net.storage.node_store import MAX_STORED_EVIDENCE, EvidenceRecord
from tests.api.conftest import GENESIS, ApiWorld

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
    from sequencer_net.api.server import build_app

    transport = httpx.ASGITransport(app=build_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = (await client.get("/v1/evidence")).json()
    (item,) = answer["evidence"]
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
    from sequencer_net.api.server import build_app

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
