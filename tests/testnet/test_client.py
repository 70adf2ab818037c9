"""The client SDK against a fake node: results, and one error type for every failure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from consensus.crypto import PrivateKey
from consensus.encoding import Domain
from sequencer_net.client import AsyncSeqnetClient, SeqnetApiError, SeqnetClient
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction, tx_hash

from .fake_node import FakeChain, FakeNode

DOMAIN = Domain(31337, bytes(20), bytes(32))
KEY = PrivateKey(b"\x07" * 32)
ADMIN_TOKEN = "t" * 40


def _tx(nonce: int) -> bytes:
    return encode_transaction(sign_transaction(KEY, DOMAIN, nonce, 1, 0, b"payload"))


@pytest.fixture
def node() -> Iterator[FakeNode]:
    chain = FakeChain(name="node0", index=0, block_interval_s=3600, admin_token=ADMIN_TOKEN)
    fake = FakeNode(chain).serve_in_thread()
    yield fake
    fake.close()


def test_sync_client(node: FakeNode) -> None:
    with SeqnetClient(node.url, timeout=5) as client:
        encoded = _tx(0)
        assert client.submit(encoded) == "0x" + tx_hash(encoded).hex()
        assert client.transaction(tx_hash(encoded))["status"] == "pending"
        results = client.submit_many([_tx(1), b"\x00garbage"])
        assert "hash" in results[0] and results[1]["code"] == "invalid_transaction"
        assert client.status()["mempool_size"] == 2
        node.chain.commit_block()
        committed = client.transaction("0x" + tx_hash(encoded).hex())
        assert committed == {
            "hash": "0x" + tx_hash(encoded).hex(),
            "status": "committed",
            "height": 1,
            "index": 0,
        }
        assert client.block(1)["height"] == 1
        assert "seqnet_height 1" in client.metrics()
        with pytest.raises(SeqnetApiError) as missing:
            client.transaction(b"\x00" * 32)
        assert (missing.value.status, missing.value.code) == (404, "not_found")
        with pytest.raises(SeqnetApiError) as bad:
            client.submit(b"\x01")
        assert bad.value.status == 400 and not bad.value.retryable


def test_unreachable_node_is_status_zero() -> None:
    with (
        SeqnetClient("http://127.0.0.1:9", timeout=2) as client,
        pytest.raises(SeqnetApiError) as raised,
    ):
        client.status()
    assert raised.value.status == 0 and raised.value.code == "unreachable"
    assert raised.value.retryable


async def test_async_client_under_trio(node: FakeNode) -> None:
    async with AsyncSeqnetClient(node.url, timeout=5) as client:
        encoded = _tx(0)
        assert await client.submit(encoded) == "0x" + tx_hash(encoded).hex()
        assert len(await client.submit_many([_tx(1), _tx(2)])) == 2
        assert (await client.status())["name"] == "node0"
        with pytest.raises(SeqnetApiError) as refused:
            await client.set_network_connected(False)
        assert refused.value.status == 401
        connected = await client.set_network_connected(False, admin_token=ADMIN_TOKEN)
        assert connected == {"connected": False}
        assert (await client.status())["peers"] == []
        with pytest.raises(SeqnetApiError):
            await client.block(99)
