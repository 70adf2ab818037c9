"""End-to-end: every committed block carries the namespace root of its
transactions, certified by its finalization; a WebSocket subscriber gets every
height of its namespace once, in order, each one checkable."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import trio
from trio_websocket import open_websocket_url

from consensus.crypto import keccak256
from consensus.messages import Block, Certificate
from consensus.verifier import SignatureVerifier
from sequencer_net.mempool.transaction import decode_transaction
from sequencer_net.payload import decode_payload
from sequencer_net.payload.namespaces import (
    EntryProof,
    NamespaceProof,
    TableEntry,
    namespace_root,
    verify_namespace,
)
from tests.node.harness import LocalNetwork

pytestmark = pytest.mark.slow

NAMESPACES = (0, 3, 7, 9)  # 0: the validators' own price reports


def _bytes(text: str) -> bytes:
    return bytes.fromhex(text[2:])


def _entry(raw: dict[str, Any] | None) -> EntryProof | None:
    if raw is None:
        return None
    e = raw["entry"]
    entry = TableEntry(e["namespace"], e["count"], _bytes(e["root"]))
    return EntryProof(raw["index"], entry, [_bytes(h) for h in raw["path"]])


def check_message(network: LocalNetwork, message: dict[str, Any]) -> bytes:
    """What a subscriber checks; returns the certified namespace root."""
    b = message["block"]
    block = Block(b["view"], b["height"], _bytes(b["parent"]), b["proposer"], _bytes(b["payload"]))
    c = message["certificate"]
    cert = Certificate(
        c["kind"], c["view"], c["height"], _bytes(c["block"]), c["signers"],
        [_bytes(s) for s in c["signatures"]],
    )  # fmt: skip
    assert cert.block == block.digest() and cert.height == block.height == message["height"]
    verifier = SignatureVerifier(network.genesis.domain().separator())
    assert verifier.check_certificate(network.genesis.validator_set(), cert)
    root = decode_payload(block.payload).namespace_root
    p = message["proof"]
    proof = NamespaceProof(
        p["namespace"], p["size"], _entry(p["present"]), _entry(p["below"]), _entry(p["above"])
    )
    hashes = [keccak256(_bytes(t)) for t in message["transactions"]]
    verify_namespace(root, message["namespace"], hashes, proof)
    return root


async def _subscribe(url: str, count: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    with trio.fail_after(60):
        async with open_websocket_url(url) as ws:
            while len(messages) < count:
                message = msgspec.json.decode(await ws.get_message())
                if message["type"] == "block":
                    messages.append(message)
    return messages


def test_committed_blocks_carry_a_certified_namespace_root(network: LocalNetwork) -> None:
    network.start_all()
    network.wait_height(list(range(4)), 2)
    user = network.user("alice")
    hashes = []
    for nonce in range(12):
        tx = network.signed(user, nonce, b"ns-%d" % nonce, namespace=(3, 7, 9)[nonce % 3])
        response = network.client.post(network.url(nonce % 4) + "/v1/transactions", content=tx)
        assert response.status_code == 200, response.text
        hashes.append(response.json()["hash"])

    def committed(h: str) -> bool:
        answer = network.client.get(f"{network.url(0)}/v1/transactions/{h}")
        return answer.status_code == 200 and answer.json()["status"] == "committed"

    network.wait_for("every transaction committed", lambda: all(committed(h) for h in hashes))
    validators = network.client.get(f"{network.url(3)}/v1/validators").json()
    domain = network.genesis.domain()
    assert validators["chain_id"] == domain.chain_id
    assert validators["genesis_hash"] == "0x" + domain.genesis_hash.hex()
    assert validators["verifying_contract"] == "0x" + domain.verifying_contract.hex()
    assert [(v["index"], v["address"], v["weight"]) for v in validators["validators"]] == [
        (i, "0x" + v.address.hex(), v.weight) for i, v in enumerate(network.genesis.validators)
    ]
    top = network.height(0)
    ws_url = network.url(1).replace("http://", "ws://") + "/v1/subscribe/blocks?namespace=7&from=1"
    pushed = trio.run(_subscribe, ws_url, top)
    assert [m["height"] for m in pushed] == list(range(1, top + 1))
    seen_in_7 = 0
    for height in range(1, top + 1):
        block = network.client.get(f"{network.url(0)}/v1/blocks/{height}").json()
        root = decode_payload(_bytes(block["payload"])).namespace_root
        assert block["namespace_root"] == "0x" + root.hex()
        covered: list[tuple[int, bytes]] = []
        sizes = set()
        for ns in NAMESPACES:
            answer = network.client.get(f"{network.url(2)}/v1/blocks/{height}/namespaces/{ns}")
            assert answer.status_code == 200, answer.text
            message = answer.json()
            assert check_message(network, message) == root
            covered += [(ns, keccak256(_bytes(t))) for t in message["transactions"]]
            sizes.add(message["proof"]["size"])
            if ns == 7:
                assert message["transactions"] == pushed[height - 1]["transactions"]
                seen_in_7 += len(message["transactions"])
        assert sizes == {len({ns for ns, _ in covered})}  # no namespace left out
        executed = [_bytes(t) for t in block["transactions"]]
        pairs = [(decode_transaction(t).namespace, keccak256(t)) for t in executed]
        assert set(pairs) <= set(covered)
        if len(pairs) == len(covered):  # nothing re-included from an earlier block
            assert root == namespace_root(pairs), f"height {height}"
        assert namespace_root(sorted(covered, key=lambda p: p[0])) == root
    assert seen_in_7 >= 4
