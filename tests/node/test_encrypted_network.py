"""End-to-end on four real validators with a threshold key: an encrypted
transaction is committed and executed at its position with a receipt like the
plain one's; an envelope with bad contents gets FailedDecryption and pays its
max fee; a full node opens the same block with shares it asks validators
for; a validator restarted after the commit serves its stored shares to a
late validator that can open the block only with them. Every block has an
order seed, the same on every node (the restarted one and the full node
included), and the block executed its transactions senders by that seed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consensus.crypto import PrivateKey, keccak256
from sequencer_net.client.encrypted import NetworkKey, seal_transaction
from sequencer_net.client.verify import transaction_sender
from sequencer_net.fairness.envelope import (
    ENVELOPE_VERSION,
    Envelope,
    envelope_digest,
    envelope_label,
)
from sequencer_net.fairness.order import sender_rank
from sequencer_net.fairness.tdh2 import encrypt
from sequencer_net.mempool.encrypted import encode_encrypted, is_encrypted
from tests.node.harness import LocalNetwork

pytestmark = pytest.mark.slow

SEED = 2026
NAMESPACE = 7


@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork.create(tmp_path, n=4, full_nodes=1, encryption=True)
    try:
        yield net
    finally:
        net.close()


def bad_content(net: LocalNetwork, key: PrivateKey, max_fee: int, expiry: int) -> bytes:
    """A well-formed, correctly signed envelope whose plaintext is no transaction:
    intake cannot tell, decryption after commit can."""
    domain = net.genesis.domain()
    network = NetworkKey.from_genesis(net.genesis)
    label = envelope_label(domain.chain_id, NAMESPACE, network.key_epoch, key.address, expiry)
    rng = random.Random(SEED).randbytes
    ciphertext = encrypt(network.public_key, bytes(32) + b"not a transaction" * 8, label, rng)
    payload_hash = keccak256(b"commits to nothing")
    digest = envelope_digest(
        domain, ENVELOPE_VERSION, NAMESPACE, network.key_epoch, key.address, expiry,
        max_fee, ciphertext, payload_hash,
    )  # fmt: skip
    envelope = Envelope(
        ENVELOPE_VERSION, domain.chain_id, NAMESPACE, network.key_epoch, key.address, expiry,
        max_fee, ciphertext, payload_hash, bytes(key.sign_digest(digest)),
    )  # fmt: skip
    return encode_encrypted(envelope)


def submit(net: LocalNetwork, node: int, wire: bytes) -> str:
    response = net.client.post(f"{net.url(node)}/v1/transactions", content=wire)
    assert response.status_code == 200, response.text
    return str(response.json()["hash"])


def committed(net: LocalNetwork, node: int, tx_hash: str) -> dict[str, Any] | None:
    response = net.client.get(f"{net.url(node)}/v1/transactions/{tx_hash}")
    if response.status_code != 200 or response.json()["status"] != "committed":
        return None
    return dict(response.json())


def block_answer(net: LocalNetwork, node: int, height: int) -> dict[str, Any]:
    response = net.client.get(f"{net.url(node)}/v1/blocks/{height}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_same_execution(net: LocalNetwork, nodes: list[int], up_to: int) -> None:
    """At every height 1..up_to, every listed node has the same order seed,
    state root and executed order. The chain has a threshold key: a seed is
    null only for a block whose order no seed changes (no envelope, at most
    one sender; these blocks mark no forced transaction)."""
    domain = net.genesis.domain()
    for h in range(1, up_to + 1):
        answers = [block_answer(net, i, h) for i in nodes]
        seeds = {a["order_seed"] for a in answers}
        assert len(seeds) == 1, f"order seeds at {h}: {seeds}"
        if None in seeds:
            executed = [bytes.fromhex(t[2:]) for t in answers[0]["transactions"]]
            assert not any(is_encrypted(t) for t in executed), f"no seed at {h}"
            assert len({transaction_sender(t, domain) for t in executed}) <= 1, f"no seed at {h}"
        assert len({a["state_root"] for a in answers}) == 1, f"state roots differ at {h}"
        assert len({tuple(a["transactions"]) for a in answers}) == 1, f"orders differ at {h}"


def assert_ordered_by_seed(net: LocalNetwork, node: int, senders: dict[str, bytes]) -> None:
    """Transactions (hash -> sender) committed in one block executed in the
    order of their senders' ranks under that block's seed."""
    heights: dict[int, list[str]] = {}
    for h in senders:
        found = committed(net, node, h)
        assert found is not None
        heights.setdefault(int(found["height"]), []).append(h)
    for height, hashes in heights.items():
        answer = block_answer(net, node, height)
        if answer["order_seed"] is None:  # one sender (assert_same_execution checks it)
            assert len({senders[h] for h in hashes}) == 1
            continue
        seed = bytes.fromhex(answer["order_seed"][2:])
        executed = ["0x" + keccak256(bytes.fromhex(t[2:])).hex() for t in answer["transactions"]]
        positions = sorted(hashes, key=executed.index)
        by_rank = sorted(hashes, key=lambda h: sender_rank(seed, senders[h]))
        assert positions == by_rank


def test_encrypted_transactions_end_to_end(network: LocalNetwork) -> None:
    net = network
    net.start_all()
    net.start(4)  # a full node: opens encrypted blocks with shares it asks for
    net.wait_height([0, 1, 2, 3], 2, timeout=40)
    net.kill(3)  # node 3 misses everything below and catches up at the end
    validators = net.client.get(f"{net.url(0)}/v1/validators").json()
    key = NetworkKey.from_validators(validators)
    assert validators["threshold"]["threshold"] == 2
    domain = net.genesis.domain()
    alice, bob, mallory = net.user("alice"), net.user("bob"), net.user("mallory")
    expiry = net.height(0) + 200
    payload = b"encrypted rollup order"
    plain_hash = submit(net, 0, net.signed(bob, 0, payload, namespace=NAMESPACE))
    inner = net.signed(alice, 0, payload, namespace=NAMESPACE)
    sealed = seal_transaction(
        alice, domain, inner, key, expiry_height=expiry, rng=random.Random(SEED).randbytes
    )
    encrypted_hash = submit(net, 1, sealed)
    assert encrypted_hash == "0x" + keccak256(sealed).hex()
    max_fee = 10**18
    bad_hash = submit(net, 2, bad_content(net, mallory, max_fee, expiry))
    net.wait_for(
        "all three committed on nodes 0-2",
        lambda: all(
            committed(net, i, h) for i in (0, 1, 2) for h in (plain_hash, encrypted_hash, bad_hash)
        ),
        timeout=30,
    )
    plain = committed(net, 0, plain_hash)
    encrypted = committed(net, 0, encrypted_hash)
    bad = committed(net, 0, bad_hash)
    assert plain is not None and encrypted is not None and bad is not None
    # Executed as if submitted in plain: the same receipt as bob's, same fee.
    assert encrypted["receipt"]["success"] is True
    assert encrypted["receipt"] == plain["receipt"]
    assert bad["receipt"]["success"] is False
    assert bad["receipt"]["error"] == "FailedDecryption"
    assert bad["receipt"]["reason"] == "malformed_inner_tx"
    assert bad["receipt"]["fee"] == "1"  # the max fee, 1 collateral unit (wad)
    top = max(int(found["height"]) for found in (plain, encrypted, bad))
    net.wait_height([0, 1, 2, 4], top)
    net.assert_agree([0, 1, 2, 4], top)
    assert_same_execution(net, [0, 1, 2, 4], top)
    senders = {plain_hash: bob.address, encrypted_hash: alice.address, bad_hash: mallory.address}
    assert_ordered_by_seed(net, 0, {h: bytes(a) for h, a in senders.items()})
    for h in (plain_hash, encrypted_hash, bad_hash):
        assert committed(net, 4, h) == committed(net, 0, h)
    reference = {i: block_answer(net, 0, i)["order_seed"] for i in range(1, top + 1)}
    net.stop(4)
    # Node 1 restarts after the commit; then only it and node 3 run: node 3 can
    # open the block with its own share and node 1's stored one only.
    net.kill(1)
    net.start(1)
    net.wait_for("node 1 back", lambda: net.height(1) >= top, timeout=30)
    net.stop(0)
    net.stop(2)
    net.start(3)
    net.wait_height([3], top, timeout=40)
    for h in (plain_hash, encrypted_hash, bad_hash):
        assert committed(net, 3, h) == committed(net, 1, h)
    net.assert_agree([1, 3], top)
    # The restarted validator and the one that caught up (with node 1's stored
    # share messages) have the seeds, roots and orders the others had.
    assert_same_execution(net, [1, 3], top)
    for height in range(1, top + 1):
        assert block_answer(net, 3, height)["order_seed"] == reference[height]
