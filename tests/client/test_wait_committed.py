"""Submit and wait: the SDK polls a transaction until it is no longer pending."""

from __future__ import annotations

import httpx
import pytest

from sequencer_net.client import AsyncSeqnetClient, SeqnetClient, TransactionTimeout

HASH = "0x" + "ab" * 32
RECEIPT = {"success": True, "error": "", "reason": "", "fee": "0.001"}


def answers(pending: int) -> httpx.MockTransport:
    """`pending` pending answers, then the committed one with its receipt."""
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/v1/transactions/{HASH}"
        calls["n"] += 1
        if calls["n"] <= pending:
            return httpx.Response(200, json={"hash": HASH, "status": "pending"})
        return httpx.Response(
            200, json={"hash": HASH, "status": "committed", "height": 9, "receipt": RECEIPT}
        )

    return httpx.MockTransport(handler)


def test_the_blocking_client_waits_through_pending_answers() -> None:
    with SeqnetClient("http://127.0.0.1:9") as node:
        node._http = httpx.Client(base_url=node.base_url, transport=answers(pending=2))
        found = node.wait_committed(HASH, timeout_s=5, poll_s=0.001)
    assert found["status"] == "committed" and found["receipt"] == RECEIPT


def test_a_transaction_still_pending_at_the_deadline_raises() -> None:
    with SeqnetClient("http://127.0.0.1:9") as node:
        node._http = httpx.Client(base_url=node.base_url, transport=answers(pending=10**6))
        with pytest.raises(TransactionTimeout, match=r"not committed after 0\.05s"):
            node.wait_committed(HASH, timeout_s=0.05, poll_s=0.001)


async def test_the_async_client_waits_under_trio() -> None:
    async with AsyncSeqnetClient("http://127.0.0.1:9") as node:
        await node._http.aclose()
        node._http = httpx.AsyncClient(base_url=node.base_url, transport=answers(pending=3))
        found = await node.wait_committed(HASH, timeout_s=5, poll_s=0.001)
    assert found["height"] == 9
