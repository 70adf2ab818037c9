"""Content-blind order (fairness/order.py): forced first, senders by the seed,
each sender's own order kept, and nothing the leader chose about the order of
batches survives."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import keccak256
from sequencer_net.fairness.order import (
    ORDER_SEED_TAG,
    order_block,
    order_seed_tag,
    sender_rank,
)
from sequencer_net.fairness.tdh2 import coin_share, combine_coin, deal

SEED_A = keccak256(b"seed a")
SEED_B = keccak256(b"seed b")


@dataclass(frozen=True)
class Tx:
    sender: bytes
    nonce: int


def sender(i: int) -> bytes:
    return bytes([i]) * 20


def test_forced_first_then_senders_by_rank_each_in_its_own_order() -> None:
    forced = [Tx(sender(9), 0), Tx(sender(1), 5)]
    txs = [Tx(sender(i % 3), i // 3) for i in range(9)]  # senders 0,1,2 interleaved
    ordered = order_block(SEED_A, forced, txs)
    assert ordered[:2] == forced  # in their order, even though sender 1 also sends later
    rest = ordered[2:]
    assert sorted(rest, key=lambda t: (t.sender, t.nonce)) == sorted(
        txs, key=lambda t: (t.sender, t.nonce)
    )
    senders = [t.sender for t in rest]
    groups = list(dict.fromkeys(senders))
    assert groups == sorted(groups, key=lambda s: sender_rank(SEED_A, s))
    for s in groups:  # contiguous, nonces rising
        mine = [t.nonce for t in rest if t.sender == s]
        assert mine == [0, 1, 2]
        first = senders.index(s)
        assert senders[first : first + 3] == [s] * 3


def test_a_different_seed_reorders_senders() -> None:
    txs = [Tx(sender(i), 0) for i in range(16)]
    a = [t.sender for t in order_block(SEED_A, [], txs)]
    b = [t.sender for t in order_block(SEED_B, [], txs)]
    assert sorted(a) == sorted(b) and a != b
    assert a != [t.sender for t in txs]  # nor the given order


def test_without_a_seed_the_block_order_stands() -> None:
    forced = [Tx(sender(5), 0)]
    txs = [Tx(sender(3), 0), Tx(sender(1), 0), Tx(sender(3), 1)]
    assert order_block(None, forced, txs) == forced + txs


def test_the_seed_is_checked() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        order_block(b"short", [], [Tx(sender(1), 0)])


def test_the_tag_binds_domain_chain_height_and_block() -> None:
    block = keccak256(b"block")
    tag = order_seed_tag(31337, 7, block)
    assert ORDER_SEED_TAG in tag and block in tag
    others = {
        order_seed_tag(31338, 7, block),
        order_seed_tag(31337, 8, block),
        order_seed_tag(31337, 7, keccak256(b"other")),
    }
    assert tag not in others and len(others) == 3
    with pytest.raises(ValueError):
        order_seed_tag(31337, 7, b"short")


def test_the_seed_is_a_threshold_coin_any_t_shares_agree() -> None:
    keys, shares = deal(4, 2, random.Random(11).randbytes)
    tag = order_seed_tag(1, 3, keccak256(b"block"))
    coins = [coin_share(s, tag) for s in shares]
    seeds = {
        combine_coin(tag, [coins[i], coins[j]], keys) for i in range(4) for j in range(4) if i != j
    }
    assert len(seeds) == 1
    (seed,) = seeds
    assert isinstance(seed, bytes) and len(seed) == 32
    # One share alone gives nothing (fewer than t).
    assert not isinstance(combine_coin(tag, coins[:1], keys), bytes)


@st.composite
def blocks(draw: st.DrawFn) -> tuple[list[list[Tx]], random.Random]:
    """Batches of transactions from a few senders, each sender's nonces rising
    through the block, and a seeded Random to reshuffle them."""
    n_senders = draw(st.integers(1, 6))
    counts = draw(st.lists(st.integers(0, 5), min_size=n_senders, max_size=n_senders))
    flat = [Tx(sender(s), k) for s in range(n_senders) for k in range(counts[s])]
    rng = random.Random(draw(st.integers(0, 2**32)))
    rng.shuffle(flat)
    per_sender_order = {s: iter(range(counts[s])) for s in range(n_senders)}
    ordered = [Tx(t.sender, next(per_sender_order[t.sender[0]])) for t in flat]
    cuts = sorted(draw(st.lists(st.integers(0, len(ordered)), max_size=4)))
    batches = [ordered[a:b] for a, b in zip([0, *cuts], [*cuts, len(ordered)], strict=True)]
    return batches, rng


def reinterleave(batches: list[list[Tx]], rng: random.Random) -> list[list[Tx]]:
    """Another leader's layout of the same transactions: interleaved anew and
    cut into other batches, each sender's relative order kept."""
    by_sender: dict[bytes, list[Tx]] = {}
    for tx in (t for b in batches for t in b):
        by_sender.setdefault(tx.sender, []).append(tx)
    queues = {s: list(txs) for s, txs in by_sender.items()}
    flat: list[Tx] = []
    while queues:
        s = rng.choice(sorted(queues))
        flat.append(queues[s].pop(0))
        if not queues[s]:
            del queues[s]
    cuts = sorted(rng.randint(0, len(flat)) for _ in range(rng.randint(0, 4)))
    return [flat[a:b] for a, b in zip([0, *cuts], [*cuts, len(flat)], strict=True)]


@settings(max_examples=200, deadline=None)
@given(blocks(), st.binary(min_size=32, max_size=32))
def test_the_order_does_not_depend_on_the_leaders_layout(
    block: tuple[list[list[Tx]], random.Random], seed: bytes
) -> None:
    batches, rng = block
    relaid = reinterleave(batches, rng)
    first = order_block(seed, [], [t for b in batches for t in b])
    second = order_block(seed, [], [t for b in relaid for t in b])
    assert first == second
    for s in {t.sender for t in first}:  # each sender's nonces in order
        nonces = [t.nonce for t in first if t.sender == s]
        assert nonces == sorted(nonces)
