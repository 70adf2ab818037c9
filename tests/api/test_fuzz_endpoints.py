"""Property: whatever the method, path, headers and body, the API answers below
500, and every error is the documented JSON `{"error", "code"}`.

Requests go through the whole app (RequestGuard, admin authentication,
routing, handlers) in process, over a real mempool and store. Bodies are drawn
from: raw bytes, JSON of any shape (including nesting far past Python's
recursion limit and integers past its digit limit), batch documents with
items of every type, and valid transactions with flipped, cut or added bytes.

SEQNET_API_FUZZ_EXAMPLES sets the number of examples (default 400).
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from sequencer_net.api.limits import MAX_TX_BODY_BYTES
from sequencer_net.api.server import ApiOptions
from tests.api.conftest import ADMIN_TOKEN, ApiWorld, json_error
from tests.mempool.factories import signed

EXAMPLES = int(os.environ.get("SEQNET_API_FUZZ_EXAMPLES", "400"))

_segment_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
segments = st.one_of(
    _segment_text,
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
    st.binary(max_size=40).map(lambda b: "0x" + b.hex()),
    st.binary(min_size=32, max_size=32).map(bytes.hex),
    st.sampled_from(["0", "1", "2", "network", "batch", "..", "%00", "0x"]),
)
paths = st.one_of(
    st.sampled_from(
        ["/v1/transactions", "/v1/transactions/batch", "/v1/status", "/metrics",
         "/v1/admin/network", "/v1/admin", "/v1/admin/", "/", "/v1", "/v1/blocks/"]
    ),
    segments.map(lambda s: "/v1/blocks/" + quote(s, safe="")),
    segments.map(lambda s: "/v1/transactions/" + quote(s, safe="")),
    segments.map(lambda s: "/v1/admin/" + quote(s, safe="")),
    st.lists(segments, min_size=1, max_size=4).map(
        lambda parts: "/" + "/".join(quote(p, safe="") for p in parts)
    ),
)  # fmt: skip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@st.composite
def mutated_transactions(draw: st.DrawFn) -> bytes:
    tx = bytearray(
        signed(
            sender=draw(st.integers(0, 7)),
            nonce=draw(st.integers(0, 70)),
            namespace=draw(st.integers(0, 3)),
            payload=draw(st.binary(max_size=64)),
        )
    )
    how = draw(st.sampled_from(["keep", "flip", "cut", "append"]))
    if how == "flip":
        i = draw(st.integers(0, len(tx) - 1))
        tx[i] ^= draw(st.integers(1, 255))
    elif how == "cut":
        del tx[draw(st.integers(0, len(tx) - 1)) :]
    elif how == "append":
        tx += draw(st.binary(min_size=1, max_size=8))
    return bytes(tx)


batch_items = st.one_of(
    mutated_transactions().map(lambda b: "0x" + b.hex()),
    mutated_transactions().map(bytes.hex),
    json_values,
)
nested_json = st.one_of(
    st.integers(min_value=1, max_value=60_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=60_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(min_value=1, max_value=20_000).map(
        lambda n: b'{"transactions": [' + b"[" * n + b"]" * n + b"]}"
    ),
)
any_bodies = st.one_of(
    st.binary(max_size=256),
    mutated_transactions(),
    json_values.map(lambda v: json.dumps(v).encode()),
    nested_json,
    st.integers(min_value=4301, max_value=20_000).map(lambda n: b"1" * n),
    st.integers(min_value=MAX_TX_BODY_BYTES - 2, max_value=MAX_TX_BODY_BYTES + 2).map(bytes),
)
tx_bodies = st.one_of(mutated_transactions(), any_bodies)
batch_bodies = st.one_of(
    st.lists(batch_items, max_size=6).map(
        lambda items: json.dumps({"transactions": items}).encode()
    ),
    json_values.map(lambda v: json.dumps({"transactions": v}).encode()),
    any_bodies,
)
admin_bodies = st.one_of(
    st.sampled_from([b'{"connected": true}', b'{"connected": false}']),
    json_values.map(lambda v: json.dumps({"connected": v}).encode()),
    any_bodies,
)
authorizations = st.one_of(
    st.none(),
    st.just("Bearer " + ADMIN_TOKEN),
    st.just("bearer " + ADMIN_TOKEN),
    st.just("Bearer " + ADMIN_TOKEN[:-1]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=80),
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
no_body = st.just(b"") | st.binary(max_size=64)

Request = tuple[str, str, bytes, "str | None"]


def routed(method: str, path: st.SearchStrategy[str], body: st.SearchStrategy[bytes]) -> Any:
    return st.tuples(st.just(method), path, body, authorizations)


requests = st.one_of(
    routed("POST", st.just("/v1/transactions"), tx_bodies),
    routed("POST", st.just("/v1/transactions/batch"), batch_bodies),
    routed("POST", st.just("/v1/admin/network"), admin_bodies),
    routed("GET", segments.map(lambda s: "/v1/blocks/" + quote(s, safe="")), no_body),
    routed("GET", segments.map(lambda s: "/v1/transactions/" + quote(s, safe="")), no_body),
    routed("GET", st.sampled_from(["/v1/status", "/metrics"]), no_body),
    st.tuples(methods, paths, any_bodies | admin_bodies | batch_bodies, authorizations),
)
"""(method, path, body, Authorization): mostly well-aimed at one endpoint, with a
fuzzed parameter or body, and the rest anything at all."""


@pytest.fixture(scope="module")
def fuzz_app(shared_world: ApiWorld) -> Starlette:
    return shared_world.app(ApiOptions(admin_token=ADMIN_TOKEN))


def check_answer(method: str, path: str, response: httpx.Response) -> None:
    assert response.status_code < 500, (method, path, response.status_code, response.text[:300])
    assert not 300 <= response.status_code < 400, (method, path, response.status_code)
    if method == "HEAD":
        return  # no body by definition
    if response.status_code >= 400:
        json_error(response)
    elif not path.startswith("/metrics"):
        assert isinstance(response.json(), dict)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests)
async def test_every_request_gets_a_json_answer_below_500(
    fuzz_app: Starlette, request: Request
) -> None:
    method, path, body, authorization = request
    headers = {} if authorization is None else {b"authorization": authorization.encode("latin-1")}
    transport = httpx.ASGITransport(app=fuzz_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        response = await client.request(method, path, content=body, headers=headers)
    event(f"status {response.status_code} {response.headers.get('content-type', '')[:16]}")
    check_answer(method, path, response)
