"""Malformed requests get 400 with a code and change nothing; never a 500.

Regressions from issue 13: deeply nested JSON (RecursionError) and a huge
block height (OverflowError) answered 500 with a traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from consensus.crypto import keccak256
from sequencer_net.api.limits import MAX_HEIGHT
from tests.api.conftest import COMMITTED_TX, ApiWorld, json_error
from tests.mempool.factories import signed


@pytest.fixture
async def client(world: ApiWorld) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=world.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as c:
        yield c


def assert_bad_request(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert json_error(response)["code"] == "bad_request"


async def test_deeply_nested_json_is_a_bad_request(client: httpx.AsyncClient) -> None:
    nested = b"[" * 100_000 + b"]" * 100_000
    assert_bad_request(await client.post("/v1/transactions/batch", content=nested))
    deep_value = b'{"transactions": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    assert_bad_request(await client.post("/v1/transactions/batch", content=deep_value))


@pytest.mark.parametrize(
    "height",
    [
        str(2**64),
        str(MAX_HEIGHT + 1),
        "9" * 20,
        "9" * 5000,  # past Python's int-from-string digit limit
        "-1",
        "+1",
        " 1",
        "1_000",
        "١٢",  # Arabic-Indic digits: int() accepts them
        "0x10",
        "1.0",
    ],
)
async def test_out_of_range_or_odd_heights_are_bad_requests(
    client: httpx.AsyncClient, height: str
) -> None:
    assert_bad_request(await client.get(f"/v1/blocks/{height}"))


async def test_heights_in_range(client: httpx.AsyncClient) -> None:
    found = await client.get("/v1/blocks/1")
    assert found.status_code == 200 and found.json()["transactions"] == ["0x" + COMMITTED_TX.hex()]
    for missing in ("0", "2", str(MAX_HEIGHT)):
        response = await client.get(f"/v1/blocks/{missing}")
        assert response.status_code == 404 and json_error(response)["code"] == "not_found"


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00garbage",  # not UTF-8
        b'{"transactions": "\xff"}',  # invalid UTF-8 inside a JSON string
        b"not json",
        b"",
        b"[]",
        b"null",
        b'"transactions"',
        b'{"transactions": null}',
        b'{"transactions": "0xabcd"}',
        b'{"transactions": {"0": "0xabcd"}}',
        b'{"transactions": 1' + b"0" * 5000 + b"}",  # an int too long to convert
        b'{"txs": []}',
    ],
)
async def test_batch_bodies_of_the_wrong_shape_are_bad_requests(
    client: httpx.AsyncClient, world: ApiWorld, body: bytes
) -> None:
    assert_bad_request(await client.post("/v1/transactions/batch", content=body))
    assert len(world.mempool) == 0


async def test_batch_items_of_the_wrong_type_are_refused_one_by_one(
    client: httpx.AsyncClient, world: ApiWorld
) -> None:
    good = signed(sender=1, nonce=0)
    items = [1, None, True, ["0x00"], {"a": 1}, "0xzz", "0x0", "0x 00", "0x" + good.hex()]
    response = await client.post("/v1/transactions/batch", json={"transactions": items})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r.get("code") for r in results[:-1]] == ["bad_request"] * (len(items) - 1)
    assert results[-1] == {"hash": "0x" + keccak256(good).hex()}
    assert len(world.mempool) == 1


@pytest.mark.parametrize(
    "text",
    ["nothex", "0x", "0x" + "ab" * 31, "0x" + "ab" * 33, "ab" * 32 + "0", "0x" + "g" * 64,
     " " + "ab" * 32, "0x" + "ab" * 16 + " " + "ab" * 16],
)  # fmt: skip
async def test_malformed_transaction_hashes_are_bad_requests(
    client: httpx.AsyncClient, text: str
) -> None:
    assert_bad_request(await client.get(f"/v1/transactions/{text}"))


async def test_transaction_lookup(client: httpx.AsyncClient) -> None:
    committed = await client.get("/v1/transactions/0x" + keccak256(COMMITTED_TX).hex())
    assert committed.json() == {
        "hash": "0x" + keccak256(COMMITTED_TX).hex(),
        "status": "committed",
        "height": 1,
        "index": 0,
    }
    unknown = await client.get("/v1/transactions/" + "00" * 32)
    assert unknown.status_code == 404 and json_error(unknown)["code"] == "not_found"


async def test_unknown_paths_and_methods_answer_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v2/nothing")
    assert missing.status_code == 404 and json_error(missing)["code"] == "not_found"
    wrong = await client.delete("/v1/status")
    assert wrong.status_code == 405 and json_error(wrong)["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["allow"]


def test_nesting_is_refused_whatever_the_recursion_limit() -> None:
    # With a raised recursion limit (hypothesis raises it while it runs) the JSON
    # parser would run out of C stack and crash the process (a segfault no handler
    # catches); the bracket bound refuses the body before it is parsed. A child
    # process, so a regression fails this test instead of killing the test run.
    import subprocess
    import sys

    code = (
        "import sys; sys.setrecursionlimit(10**6)\n"
        "from sequencer_net.api.errors import ApiError\n"
        "from sequencer_net.api.inputs import parse_json_object\n"
        "body = b'{\"transactions\": ' + b'[' * 200_000 + b']' * 200_000 + b'}'\n"
        "try:\n"
        "    parse_json_object(body, 'x')\n"
        "except ApiError as exc:\n"
        "    print(exc.status, exc.code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["400", "bad_request"]
