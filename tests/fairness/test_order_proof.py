"""The proof of a block's order seed (fairness/order_proof.py): t verified coin
shares prove the seed, and every other set of shares is refused by name."""

from __future__ import annotations

import random
import time

import pytest

from consensus.crypto import keccak256
from sequencer_net.fairness.group import encode_point, mul_base
from sequencer_net.fairness.limits import MAX_SHAREHOLDERS
from sequencer_net.fairness.order import order_seed_tag
from sequencer_net.fairness.order_proof import (
    COIN_SHARE_BYTES,
    MAX_ORDER_PROOF_BYTES,
    DuplicateShareIndex,
    InvalidCoinShare,
    MalformedOrderProof,
    UnknownShareIndex,
    WrongShareCount,
    decode_order_proof,
    encode_order_proof,
    verify_order_seed,
)
from sequencer_net.fairness.tdh2 import CoinShare, coin_share, combine_coin, deal, encode

SEED = 11
KEYS, SHARES = deal(4, 2, random.Random(SEED).randbytes)
TAG = order_seed_tag(31337, 5, keccak256(b"block 5"))
OTHER_TAG = order_seed_tag(31337, 6, keccak256(b"block 6"))


def shares_on(tag: bytes, indices: tuple[int, ...] = (0, 1)) -> list[CoinShare]:
    return [coin_share(SHARES[i], tag) for i in indices]


def test_any_t_verified_shares_prove_the_combined_seed() -> None:
    seed = combine_coin(TAG, shares_on(TAG, (0, 1, 2, 3)), KEYS)
    assert isinstance(seed, bytes)
    for indices in ((0, 1), (2, 3), (3, 0)):
        assert verify_order_seed(TAG, shares_on(TAG, indices), KEYS) == seed


def test_proof_round_trips_through_its_stored_form() -> None:
    shares = shares_on(TAG, (1, 3))
    encoded = encode_order_proof(shares)
    assert len(encoded) == 1 + 2 * 105  # two shares of an index below 128
    decoded = decode_order_proof(encoded)
    assert decoded == tuple(shares)
    assert verify_order_seed(TAG, decoded, KEYS) == combine_coin(TAG, shares, KEYS)


def test_the_widest_legal_proof_meets_the_limit_exactly() -> None:
    share = shares_on(TAG, (0,))[0]
    widest = CoinShare(MAX_SHAREHOLDERS, share.value, share.e, share.f)
    assert len(encode(widest)) == COIN_SHARE_BYTES
    encoded = encode_order_proof([widest] * MAX_SHAREHOLDERS)
    assert len(encoded) == MAX_ORDER_PROOF_BYTES
    assert len(decode_order_proof(encoded)) == MAX_SHAREHOLDERS
    with pytest.raises(MalformedOrderProof, match="exceeds"):
        decode_order_proof(encoded + b"\x00")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x91", b"\x90\x00", b"\x91\x94\x01", b"\xc1", b"\xdc\x00\x00"],
)
def test_malformed_stored_proofs_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedOrderProof):
        decode_order_proof(data)


def test_a_forged_share_value_is_refused() -> None:
    shares = shares_on(TAG)
    forged = CoinShare(shares[1].index, encode_point(mul_base(7)), shares[1].e, shares[1].f)
    with pytest.raises(InvalidCoinShare, match="share 1"):
        verify_order_seed(TAG, [shares[0], forged], KEYS)


def test_a_share_under_another_index_is_refused() -> None:
    shares = shares_on(TAG)
    moved = CoinShare(3, shares[1].value, shares[1].e, shares[1].f)  # validator 2's, as 3
    with pytest.raises(InvalidCoinShare, match="shareholder 3"):
        verify_order_seed(TAG, [shares[0], moved], KEYS)


def test_an_index_outside_the_key_is_refused() -> None:
    shares = shares_on(TAG)
    outside = CoinShare(5, shares[1].value, shares[1].e, shares[1].f)
    with pytest.raises(UnknownShareIndex, match="shareholder 5 of 4"):
        verify_order_seed(TAG, [shares[0], outside], KEYS)


def test_too_few_or_too_many_shares_are_refused() -> None:
    with pytest.raises(WrongShareCount, match="exactly 2 coin shares, not 1"):
        verify_order_seed(TAG, shares_on(TAG, (0,)), KEYS)
    with pytest.raises(WrongShareCount, match="not 3"):
        verify_order_seed(TAG, shares_on(TAG, (0, 1, 2)), KEYS)
    with pytest.raises(WrongShareCount):
        verify_order_seed(TAG, [], KEYS)


def test_a_repeated_shareholder_is_refused() -> None:
    share = shares_on(TAG, (0,))[0]
    with pytest.raises(DuplicateShareIndex, match="repeats shareholder 1"):
        verify_order_seed(TAG, [share, share], KEYS)


def test_another_blocks_coin_is_refused() -> None:
    with pytest.raises(InvalidCoinShare):
        verify_order_seed(TAG, shares_on(OTHER_TAG), KEYS)


def test_another_keys_shares_are_refused() -> None:
    other_keys, other_shares = deal(4, 2, random.Random(SEED + 1).randbytes)
    shares = [coin_share(s, TAG) for s in other_shares[:2]]
    assert isinstance(combine_coin(TAG, shares, other_keys), bytes)
    with pytest.raises(InvalidCoinShare):
        verify_order_seed(TAG, shares, KEYS)


def test_a_proof_of_six_shares_verifies_and_prints_its_cost() -> None:
    """Not a timing assertion: prints what a subscriber pays per block."""
    keys, key_shares = deal(16, 6, random.Random(SEED + 2).randbytes)
    shares = [coin_share(s, TAG) for s in key_shares[:6]]
    started = time.perf_counter()
    rounds = 5
    for _ in range(rounds):
        verify_order_seed(TAG, shares, keys)
    per_block = (time.perf_counter() - started) / rounds
    print(f"verify_order_seed t=6: {per_block * 1000:.2f} ms per block")
    assert verify_order_seed(TAG, shares, keys) == combine_coin(TAG, shares, keys)
