"""The load generator against in-process fake nodes: counts, nonces, spread, bounds.

Assertions are on counts, never on wall-clock time, except generous upper bounds.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pytest
import trio

from consensus.encoding import Domain
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.testnet.accounts import (
    load_account_addresses,
    read_next_nonces,
    write_next_nonces,
)
from sequencer_net.testnet.load import (
    LoadAccount,
    LoadConfig,
    LoadGenerator,
    is_retryable_rejection,
    percentile,
    transaction_signer,
)
from sequencer_net.testnet.market import market_traffic, presign

from .fake_node import FakeChain, FakeNode

DOMAIN = Domain(31337, bytes(20), bytes(32))


@pytest.fixture
def fake_nodes() -> Iterator[list[FakeNode]]:
    nodes = [FakeNode(FakeChain(name=f"node{i}", index=i)).serve_in_thread() for i in range(2)]
    yield nodes
    for node in nodes:
        node.close()


def _accepted_by_sender(nodes: list[FakeNode]) -> dict[bytes, list[int]]:
    nonces: dict[bytes, list[int]] = defaultdict(list)
    for node in nodes:
        for tx in node.chain.txs.values():
            nonces[tx.sender].append(tx.nonce)
    return nonces


async def test_sends_exactly_rate_times_duration_signed_txs(fake_nodes: list[FakeNode]) -> None:
    config = LoadConfig(rate=200, duration_s=1.0, accounts=10, seed=7, namespace=5, mix="rollup")
    generator = LoadGenerator(
        [n.url for n in fake_nodes], config, transaction_signer(DOMAIN), first_nonces=[3] * 10
    )
    with trio.fail_after(30):
        stats = await generator.run()
    assert stats.sent == 200 and stats.accepted == 200 and stats.rejected == 0
    assert sum(len(n.chain.txs) for n in fake_nodes) == 200
    # Spread evenly: each account is pinned to one node.
    assert [len(n.chain.txs) for n in fake_nodes] == [100, 100]
    # Senders are the seed's accounts (the ones genesis funds), nonces consecutive from 3.
    by_sender = _accepted_by_sender(fake_nodes)
    assert set(by_sender) == set(load_account_addresses(7, 10))
    assert all(sorted(n) == list(range(3, 23)) for n in by_sender.values())
    assert generator.next_nonces() == [23] * 10
    for node in fake_nodes:
        for tx in node.chain.txs.values():
            assert tx.namespace == 5 and 100 <= tx.payload_len <= 300
    summary = stats.summary()
    assert summary["latency_ms"]["samples"] >= 1
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"]


async def test_in_flight_requests_are_bounded_per_node(fake_nodes: list[FakeNode]) -> None:
    config = LoadConfig(
        rate=2000, duration_s=0.5, accounts=50, max_in_flight_per_node=2, max_batch=4
    )
    generator = LoadGenerator([n.url for n in fake_nodes], config, transaction_signer(DOMAIN))
    with trio.fail_after(30):
        stats = await generator.run()
    assert stats.sent == 1000 and stats.accepted == 1000
    # The bound is the point; how the load spreads depends on how fast each fake
    # node answers on a busy machine (a slow one may see its accounts fail over).
    assert all(n.chain.max_in_flight <= 2 for n in fake_nodes)
    assert max(n.chain.max_in_flight for n in fake_nodes) >= 1
    assert stats.requests >= 1000 // 4  # chunks of at most max_batch


async def test_rejected_nonces_are_sent_again_so_no_gap_is_left() -> None:
    chain = FakeChain(name="node0", index=0, mempool_capacity=40, block_interval_s=3600)
    node = FakeNode(chain).serve_in_thread()
    try:
        config = LoadConfig(
            rate=400, duration_s=0.5, accounts=4, latency_samples_per_s=0.01, mix="rollup"
        )
        generator = LoadGenerator([node.url], config, transaction_signer(DOMAIN))
        with trio.fail_after(30):
            stats = await generator.run()
    finally:
        node.close()
    assert stats.sent == 200 and stats.accepted == 40 and stats.rejected == 160
    assert stats.errors == {"mempool_full": 160}
    resume = generator.next_nonces()
    for account, sent in zip(generator.accounts, resume, strict=True):
        accepted = sorted(_accepted_by_sender([node])[account.key.address])
        # Every nonce below the resume point was accepted: the next run starts at the gap.
        assert accepted == list(range(sent)) == list(range(10))


async def test_an_unreachable_node_fails_over_to_the_others(fake_nodes: list[FakeNode]) -> None:
    dead = "http://127.0.0.1:9"  # discard port: connection refused
    config = LoadConfig(rate=200, duration_s=1.0, accounts=9)
    generator = LoadGenerator(
        [fake_nodes[0].url, dead, fake_nodes[1].url], config, transaction_signer(DOMAIN)
    )
    with trio.fail_after(30):
        stats = await generator.run()
    assert stats.sent == 200
    assert stats.accepted + stats.rejected == 200
    assert set(stats.errors) <= {"unreachable"}
    assert stats.accepted >= 150  # only the first tries of the dead node's accounts fail
    assert stats.sent_per_node[dead] < 50


def test_account_nonces_give_back_and_resume() -> None:
    from consensus.crypto import PrivateKey

    account = LoadAccount(PrivateKey(b"\x01" * 32), next_nonce=5, home_node=0)
    for nonce in (5, 6, 7):
        account.generated(nonce)
    assert account.resume_nonce() == 8
    account.give_back(7)
    account.give_back(6)
    assert account.resume_nonce() == 6
    account.resent(6)
    account.generated(8)
    assert account.resume_nonce() == 7
    account.resent(7)
    assert account.resume_nonce() == 9


def test_retryable_rejections() -> None:
    assert is_retryable_rejection(0, "unreachable", "ConnectError")
    assert is_retryable_rejection(503, "", "mempool full")
    assert is_retryable_rejection(200, "nonce_too_high", "")
    assert is_retryable_rejection(200, "", "nonce too high")
    assert not is_retryable_rejection(400, "nonce_too_low", "nonce too low")
    assert not is_retryable_rejection(400, "bad_signature", "")


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0


def test_nonce_file_round_trip(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "load-nonces.json"
    assert read_next_nonces(path, 0, 3) == [0, 0, 0]
    write_next_nonces(path, 0, [4, 5, 6])
    write_next_nonces(path, 1, [9])
    assert read_next_nonces(path, 0, 4) == [4, 5, 6, 0]
    assert read_next_nonces(path, 1, 1) == [9]


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        LoadConfig(rate=-1)
    with pytest.raises(ValueError):
        LoadConfig(rate=1, accounts=0)
    assert LoadConfig(rate=200, duration_s=2.5).total == 500
    assert LoadConfig(rate=3, duration_s=1.0).tick_s == pytest.approx(1 / 3)


async def test_the_load_sends_exactly_the_pregenerated_stream(
    fake_nodes: list[FakeNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live and pre-signed traffic are the same transactions: the stream depends
    on its config (and the start time it is given), not on what nodes answer."""
    monkeypatch.setattr("sequencer_net.testnet.load.time.time", lambda: 1_800_000_000.5)
    config = LoadConfig(rate=200, duration_s=1.0, accounts=12, seed=5, mix="dex")
    generator = LoadGenerator(
        [n.url for n in fake_nodes], config, transaction_signer(DOMAIN), first_nonces=[2] * 12
    )
    with trio.fail_after(30):
        stats = await generator.run()
    assert stats.accepted == 200
    traffic, signer = market_traffic(
        config.traffic(1_800_000_000, [2] * 12, 0), transaction_signer(DOMAIN)
    )
    expected = {tx_hash(encoded) for _, encoded in presign(traffic, signer, 200)}
    sent = {tx.hash for node in fake_nodes for tx in node.chain.txs.values()}
    assert sent == expected
    assert generator.next_nonces() == traffic.next_nonces()
    assert generator.next_operator_nonce() == traffic.next_operator_nonce() > 0
