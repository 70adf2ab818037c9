"""GET /v1/openapi.json: a valid OpenAPI 3.1 document that describes exactly
the routes the app serves, and that the app's real answers conform to."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute

from consensus.crypto import keccak256
from consensus.messages import Vote, VoteKind
from sequencer_net.api.markets import MarketSource
from sequencer_net.api.openapi import OPENAPI, openapi_json
from sequencer_net.api.server import ApiContext, ApiOptions, build_app
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.receipts import Receipt
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.storage.node_store import EvidenceRecord, NodeStore
from tests.api.conftest import ADMIN_TOKEN, GENESIS, ApiWorld
from tests.api.test_markets_api import MAKER, trading_day
from tests.api.test_subscriptions import NS, Chain, commit_certified, run_under_last
from tests.client.epoch_chain import epoch_genesis
from tests.mempool.factories import DOMAIN, signed


def _jsonschema() -> Any:
    """jsonschema (a dev dependency): the tests that need it skip without it."""
    return pytest.importorskip("jsonschema")


# ---- the document itself ---------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_document_is_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(json.loads(openapi_json()))


def test_the_document_hangs_together() -> None:
    """What the validator checks that matters most, without it: every reference
    resolves, every path parameter is declared, every operation answers JSON
    errors in the shared shape."""
    document = json.loads(openapi_json())
    assert document == OPENAPI and document["openapi"].startswith("3.1.")
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    for path, item in document["paths"].items():
        named = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == named, (method, path)
            assert operation["responses"] and operation["operationId"]
            for status, response in operation["responses"].items():
                if int(status) >= 400 and path != "/v1/health":
                    content = response["content"]["application/json"]
                    assert content["schema"] == {"$ref": "#/components/schemas/Error"}
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_every_schema_is_valid_json_schema_2020_12() -> None:
    for schema in OPENAPI["components"]["schemas"].values():
        _jsonschema().Draft202012Validator.check_schema(schema)


def _served(app: Starlette) -> tuple[set[tuple[str, str]], set[str]]:
    """(method, path) of every HTTP route and the path of every WebSocket route."""
    http: set[tuple[str, str]] = set()
    websockets: set[str] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(route.routes, prefix + route.path)
            elif isinstance(route, WebSocketRoute):
                websockets.add(prefix + route.path)
            elif isinstance(route, Route):
                methods = (route.methods or set()) - {"HEAD"}
                http.update((m.lower(), prefix + route.path) for m in methods)
            else:
                raise AssertionError(f"a route of an unknown kind: {route!r}")

    walk(app.routes, "")
    return http, websockets


def test_every_route_is_documented_and_nothing_else(world: ApiWorld) -> None:
    context = world.context()
    context.markets = MarketSource(lambda: trading_day().state, trading_day().activity)
    http, websockets = _served(build_app(context, ApiOptions(admin_token=ADMIN_TOKEN)))
    documented = {(m, p) for p, item in OPENAPI["paths"].items() for m in item}
    assert http == documented
    assert websockets == set(OPENAPI["x-websocket"])
    for path in websockets:
        assert f"`{path}" in OPENAPI["info"]["description"]


def test_docs_name_every_endpoint() -> None:
    """docs/api.md, the prose reference, covers the same endpoints."""
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    assert "/v1/openapi.json" in text
    for path in [*OPENAPI["paths"], *OPENAPI["x-websocket"]]:
        assert path in text, path


# ---- real answers against the document --------------------------------------------------


class Checker:
    """Validates an answer against the document's schema for its operation and status."""

    def __init__(self) -> None:
        self.checked: set[tuple[str, str, int]] = set()

    def __call__(self, method: str, template: str, response: httpx.Response) -> Any:
        operation = OPENAPI["paths"][template][method]
        status = str(response.status_code)
        assert status in operation["responses"], (method, template, status, response.text)
        content = operation["responses"][status]["content"]
        media = response.headers["content-type"].split(";")[0]
        assert media in content, (template, status, media)
        if media != "application/json":
            return response.content
        body = response.json()
        validate(body, content[media]["schema"])
        self.checked.add((method, template, response.status_code))
        return body


def validate(instance: Any, schema: dict[str, Any]) -> None:
    root = {**schema, "components": OPENAPI["components"]}
    validator = _jsonschema().Draft202012Validator(root)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    store = NodeStore(tmp_path / "chain", genesis_digest=GENESIS, sync=False)
    try:
        yield Chain(store)
    finally:
        store.close()


def _context(chain: Chain) -> ApiContext:
    world = ApiWorld(store=chain.store, mempool=Mempool(DOMAIN))
    context = world.context()
    day = trading_day()
    context.markets = MarketSource(lambda: day.state, day.activity)
    context.commit_feed = chain.feed
    context.validator_address = lambda index: bytes([index + 1]) * 20
    context.validators = lambda: {
        "chain_id": DOMAIN.chain_id,
        "verifying_contract": "0x" + DOMAIN.verifying_contract.hex(),
        "genesis_hash": "0x" + GENESIS.hex(),
        "validators": [
            {
                "index": i,
                "name": f"node{i}",
                "address": "0x" + bytes([i + 1]).hex() * 20,
                "weight": 1,
            }
            for i in range(4)
        ],
    }
    context.status = lambda: {
        "name": "node0", "validator_index": 0, "chain_id": DOMAIN.chain_id,
        "verifying_contract": "0x" + DOMAIN.verifying_contract.hex(),
        "genesis_hash": "0x" + GENESIS.hex(), "height": chain.store.tip()[0],
        "last_hash": "0x" + chain.store.tip()[1].hex(), "consensus_height": 2, "view": 3,
        "state_root": "0x" + bytes(32).hex(), "peers": [1, 2], "connected": True,
        "mempool_size": 0, "committed_txs": 4, "commit_latency_ms": {"p50": 3.5, "p99": None},
        "oracle": {"source": "none"}, "uptime_s": 1.5,
    }  # fmt: skip
    return context


@pytest.fixture
async def client(chain: Chain) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(_context(chain), ApiOptions(admin_token=ADMIN_TOKEN))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


async def test_real_answers_conform_to_the_document(
    chain: Chain, client: httpx.AsyncClient
) -> None:
    check = Checker()
    executed = signed(sender=3, nonce=0, namespace=0, payload=b"executed")
    receipt = encode((Receipt(tx_hash(executed), b"\x01" * 20, False, "NonceUsed", "used"),))
    chain.commit_txs([executed], receipt)
    chain.commit()  # namespaces 7, 3, 7
    vote = Vote(VoteKind.NOTARIZE, 9, 4, keccak256(b"a"), 2, b"\x05" * 65)
    other = Vote(VoteKind.NOTARIZE, 9, 4, keccak256(b"b"), 2, b"\x06" * 65)
    chain.store.save_evidence(EvidenceRecord(2, vote, other, "notarized two blocks in one view"))

    openapi = await client.get("/v1/openapi.json")
    assert check("get", "/v1/openapi.json", openapi) == OPENAPI
    check("get", "/v1/status", await client.get("/v1/status"))
    check("get", "/v1/health", await client.get("/v1/health"))
    for height in (1, 2):
        block = check("get", "/v1/blocks/{height}", await client.get(f"/v1/blocks/{height}"))
        assert block["namespace_root"] is not None
        by_hash = await client.get(f"/v1/blocks/by-hash/{block['hash']}")
        assert check("get", "/v1/blocks/by-hash/{hash}", by_hash) == block
    for namespace in (NS, 3, 0, 5, 2**32 - 1):
        answer = await client.get(f"/v1/blocks/2/namespaces/{namespace}")
        check("get", "/v1/blocks/{height}/namespaces/{namespace}", answer)
    run = run_under_last(chain, 2)  # height 3 finalized under 4's certificate
    commit_certified(chain, run[-1])
    implicit = await client.get(f"/v1/blocks/3/namespaces/{NS}")
    assert check("get", "/v1/blocks/{height}/namespaces/{namespace}", implicit)["finalized_by"]
    check("get", "/v1/validators", await client.get("/v1/validators"))
    evidence = check("get", "/v1/evidence", await client.get("/v1/evidence"))
    assert len(evidence["evidence"]) == 1
    first = check("get", "/v1/blocks/{height}", await client.get("/v1/blocks/1"))
    views = await client.get(f"/v1/views/{first['view']}")
    assert check("get", "/v1/views/{view}", views)["certificates"][0]["height"] == 1
    markets = check("get", "/v1/markets", await client.get("/v1/markets"))
    assert {m["kind"] for m in markets["markets"]} == {"perp", "option"}
    account = await client.get(f"/v1/accounts/0x{MAKER.address.hex()}")
    assert check("get", "/v1/accounts/{address}", account)["subaccounts"]
    subaccount_key = "0x" + (b"sub/" + MAKER.address + b"\x00").hex()
    proof = check("get", "/v1/proofs/{key}", await client.get(f"/v1/proofs/{subaccount_key}"))
    assert proof["value"] is not None
    absent = check("get", "/v1/proofs/{key}", await client.get("/v1/proofs/0x77642f" + "00" * 8))
    assert absent["value"] is None
    listed = check("get", "/v1/withdrawals", await client.get("/v1/withdrawals?limit=5"))
    assert listed["withdrawals"] == []
    check("get", "/v1/withdrawals", await client.get("/v1/withdrawals?limit=0"))
    check("get", "/metrics", await client.get("/metrics"))

    committed = await client.get(f"/v1/transactions/0x{tx_hash(executed).hex()}")
    assert "receipt" in check("get", "/v1/transactions/{hash}", committed)
    fresh = signed(sender=4, nonce=0, payload=b"fresh")
    accepted = await client.post("/v1/transactions", content=fresh)
    assert check("post", "/v1/transactions", accepted)["hash"] == "0x" + tx_hash(fresh).hex()
    pending = await client.get(f"/v1/transactions/0x{tx_hash(fresh).hex()}")
    assert check("get", "/v1/transactions/{hash}", pending)["status"] == "pending"
    batch = {"transactions": ["0x" + signed(sender=4, nonce=1, payload=b"b").hex(), "zz", "0x"]}
    answer = check(
        "post", "/v1/transactions/batch", await client.post("/v1/transactions/batch", json=batch)
    )
    assert [("hash" in r) for r in answer["results"]] == [True, False, False]
    msgpacked = await client.post(
        "/v1/transactions/batch", content=b"\x90", headers={"content-type": "application/msgpack"}
    )
    check("post", "/v1/transactions/batch", msgpacked)
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    cut = await client.post("/v1/admin/network", json={"connected": False}, headers=admin)
    assert check("post", "/v1/admin/network", cut) == {"connected": False}

    # Errors, in the shared shape and under a documented status.
    check("post", "/v1/transactions", await client.post("/v1/transactions", content=b""))
    check("post", "/v1/transactions", await client.post("/v1/transactions", content=b"\x01\x02"))
    check("post", "/v1/transactions", await client.post("/v1/transactions", content=fresh))
    too_big = await client.post("/v1/transactions", content=b"\x00" * 40_000)
    check("post", "/v1/transactions", too_big)
    not_json = await client.post("/v1/transactions/batch", content=b"{")
    check("post", "/v1/transactions/batch", not_json)
    unknown = await client.get(f"/v1/transactions/0x{keccak256(b'x').hex()}")
    check("get", "/v1/transactions/{hash}", unknown)
    check("get", "/v1/transactions/{hash}", await client.get("/v1/transactions/0x12"))
    check("get", "/v1/blocks/{height}", await client.get("/v1/blocks/99"))
    check("get", "/v1/blocks/{height}", await client.get("/v1/blocks/x"))
    missing = await client.get(f"/v1/blocks/by-hash/{keccak256(b'y').hex()}")
    check("get", "/v1/blocks/by-hash/{hash}", missing)
    check(
        "get",
        "/v1/blocks/{height}/namespaces/{namespace}",
        await client.get("/v1/blocks/9/namespaces/1"),
    )
    check(
        "get",
        "/v1/blocks/{height}/namespaces/{namespace}",
        await client.get("/v1/blocks/1/namespaces/-1"),
    )
    check("get", "/v1/accounts/{address}", await client.get("/v1/accounts/0x12"))
    check("get", "/v1/accounts/{address}", await client.get("/v1/accounts/" + "ab" * 20))
    check("get", "/v1/proofs/{key}", await client.get("/v1/proofs/0x"))
    check("get", "/v1/proofs/{key}", await client.get("/v1/proofs/" + "ab" * 129))
    no_token = await client.post("/v1/admin/network", json={"connected": True})
    check("post", "/v1/admin/network", no_token)
    bad_shape = await client.post("/v1/admin/network", json={"connected": 1}, headers=admin)
    check("post", "/v1/admin/network", bad_shape)
    assert len({(m, t) for m, t, _ in check.checked}) == len(OPENAPI["paths"]) - 1  # not /metrics
    assert {s for _, _, s in check.checked} >= {200, 400, 401, 404, 409, 413}


async def test_evidence_of_a_chain_that_rotates_its_set_conforms(world: ApiWorld) -> None:
    """Each record names its epoch, an optional key of the documented record."""
    genesis, _ = epoch_genesis()
    vote = Vote(VoteKind.NOTARIZE, 9, 4, keccak256(b"a"), 2, b"\x05" * 65)
    other = Vote(VoteKind.NOTARIZE, 9, 4, keccak256(b"b"), 2, b"\x06" * 65)
    record = EvidenceRecord(2, vote, other, "notarized two blocks in one view")
    assert world.store.save_evidence(record) and world.store.save_evidence(record, epoch=1)
    context = world.context()
    context.schedule = genesis.schedule()
    transport = httpx.ASGITransport(app=build_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        answer = Checker()("get", "/v1/evidence", await client.get("/v1/evidence"))
    assert [item["epoch"] for item in answer["evidence"]] == [0, 1]


async def test_stalled_health_and_absent_sources_conform(world: ApiWorld) -> None:
    check = Checker()
    context = world.context()
    app = build_app(context, ApiOptions(health_stall_s=-1.0))  # a bound already passed
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        assert check("get", "/v1/health", await client.get("/v1/health"))["status"] == "stalled"
        check("get", "/v1/validators", await client.get("/v1/validators"))
        check("get", "/v1/markets", await client.get("/v1/markets"))
        check("get", "/v1/accounts/{address}", await client.get("/v1/accounts/" + "ab" * 20))
        check("get", "/v1/proofs/{key}", await client.get("/v1/proofs/0x6c31"))
        disabled = await client.post("/v1/admin/network", json={"connected": True})
        check("post", "/v1/admin/network", disabled)
    assert {s for _, _, s in check.checked} == {503, 404}


_segments = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"(0x)?[0-9a-fA-F]{0,70}", fullmatch=True),
    st.integers(min_value=-5, max_value=2**70).map(str),
)
_TEMPLATES = [
    "/v1/blocks/{height}",
    "/v1/blocks/by-hash/{hash}",
    "/v1/transactions/{hash}",
    "/v1/accounts/{address}",
    "/v1/proofs/{key}",
]


@pytest.fixture(scope="module")
def fuzz_app(shared_world: ApiWorld) -> Starlette:
    return shared_world.app()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(template=st.sampled_from(_TEMPLATES), segment=_segments)
def test_any_path_parameter_gets_a_documented_answer(
    fuzz_app: Starlette, template: str, segment: str
) -> None:
    """Hostile path parameters: whatever comes back is under a status the
    document lists for the operation and has its schema."""
    prefix = template.split("{")[0]
    if segment in ("", ".", "..") or "/" in segment:
        return  # another route, or none
    path = prefix + quote(segment, safe="")

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=fuzz_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get(path)

    response = trio.run(ask)
    Checker()("get", template, response)
