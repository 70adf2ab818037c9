"""TDH2 threshold encryption and the threshold coin: correctness, robustness, bad input."""

from __future__ import annotations

import random
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sequencer_net.fairness import tdh2
from sequencer_net.fairness.group import (
    GENERATOR,
    ORDER,
    RandomBytes,
    add,
    decode_point,
    encode_point,
    encode_scalar,
    hash_to_curve,
    mul,
    mul_base,
    neg,
)
from sequencer_net.fairness.limits import MAX_CIPHERTEXT_BYTES, MAX_SHARE_BYTES
from sequencer_net.fairness.tdh2 import (
    BlockShares,
    Ciphertext,
    DecryptionFailed,
    DecryptionShare,
    KeyShare,
    NotEnoughShares,
    PublicKeySet,
    ThresholdError,
)

SEED = 20261202
LABEL = b"label: chain 1, namespace 7, epoch 0"


def seeded(seed: int) -> RandomBytes:
    return random.Random(seed).randbytes


@cache
def dealt(n: int, t: int) -> tuple[PublicKeySet, tuple[KeyShare, ...]]:
    keys, shares = tdh2.deal(n, t, seeded(SEED + n * 100 + t))
    return keys, tuple(shares)


def wrong_value(share: DecryptionShare) -> DecryptionShare:
    """The same index and proof with another value: what a faulty shareholder sends."""
    return DecryptionShare(
        index=share.index, value=encode_point(mul_base(12345)), e=share.e, f=share.f
    )


@pytest.mark.parametrize(("n", "t"), [(4, 2), (7, 3), (16, 6)])
def test_round_trip_with_any_t_shares(n: int, t: int) -> None:
    keys, shares = dealt(n, t)
    plaintext = b"an order that must stay hidden until commit" * 3
    ct = tdh2.encrypt(keys.public_key, plaintext, LABEL, seeded(n))
    assert tdh2.verify_ciphertext(keys.public_key, ct, LABEL)
    all_shares = [tdh2.decryption_share(s, ct, LABEL) for s in shares]
    for i, share in enumerate(all_shares):
        assert tdh2.verify_share(keys.verification_keys[i], ct, share)
    rng = random.Random(SEED)
    for _ in range(3):
        subset = rng.sample(all_shares, t)
        assert tdh2.combine(ct, LABEL, subset, keys) == plaintext
    assert tdh2.combine(ct, LABEL, all_shares[: t - 1], keys) == NotEnoughShares(t - 1, t)


def test_deal_is_a_function_of_its_randomness() -> None:
    a, _ = tdh2.deal(4, 2, seeded(1))
    b, _ = tdh2.deal(4, 2, seeded(1))
    c, _ = tdh2.deal(4, 2, seeded(2))
    assert encode_point(a.public_key) == encode_point(b.public_key)
    assert encode_point(a.public_key) != encode_point(c.public_key)


@pytest.mark.parametrize(
    ("n", "t"), [(4, 1), (4, 4), (7, 2), (7, 6), (16, 5), (16, 12), (0, 1), (1, 0), (4, -1)]
)
def test_unsafe_thresholds_are_refused(n: int, t: int) -> None:
    with pytest.raises(ThresholdError):
        tdh2.check_threshold(n, t)
    with pytest.raises(ThresholdError):
        tdh2.deal(n, t, seeded(0))


@pytest.mark.parametrize(("n", "t"), [(1, 1), (4, 2), (4, 3), (7, 3), (7, 5), (16, 6), (16, 11)])
def test_safe_thresholds_pass(n: int, t: int) -> None:
    tdh2.check_threshold(n, t)


def test_ciphertext_moved_to_another_label_or_key_fails_its_proof() -> None:
    keys, shares = dealt(4, 2)
    other_keys, _ = dealt(7, 3)
    ct = tdh2.encrypt(keys.public_key, b"secret", LABEL, seeded(3))
    assert not tdh2.verify_ciphertext(keys.public_key, ct, LABEL + b"x")
    assert not tdh2.verify_ciphertext(other_keys.public_key, ct, LABEL)
    with pytest.raises(tdh2.InvalidCiphertext):
        tdh2.decryption_share(shares[0], ct, LABEL + b"x")
    # the same U and Ubar around another body, or a changed proof, fail too
    mauled = [
        Ciphertext(u=ct.u, u_bar=ct.u_bar, e=ct.e, f=ct.f, body=ct.body[:-1] + b"\x00"),
        Ciphertext(u=ct.u, u_bar=ct.u_bar, e=ct.f, f=ct.e, body=ct.body),
        Ciphertext(u=ct.u_bar, u_bar=ct.u, e=ct.e, f=ct.f, body=ct.body),
        Ciphertext(
            u=ct.u,
            u_bar=encode_point(mul(hash_to_curve(b"x", b""), 5)),
            e=ct.e,
            f=ct.f,
            body=ct.body,
        ),
    ]
    for bad in mauled:
        assert not tdh2.verify_ciphertext(keys.public_key, bad, LABEL)


def test_wrong_share_values_arriving_first_are_skipped() -> None:
    keys, shares = dealt(7, 3)
    ct = tdh2.encrypt(keys.public_key, b"robust", LABEL, seeded(4))
    good = [tdh2.decryption_share(s, ct, LABEL) for s in shares]
    bad = [wrong_value(good[0]), wrong_value(good[1])]
    assert not tdh2.verify_share(keys.verification_keys[0], ct, bad[0])
    # a faulty shareholder's share under another's index is refused too
    assert not tdh2.verify_share(keys.verification_keys[3], ct, good[0])
    out_of_range = DecryptionShare(index=8, value=good[0].value, e=good[0].e, f=good[0].f)
    arriving = [*bad, out_of_range, good[1], good[1], good[5], good[6]]
    assert tdh2.combine(ct, LABEL, arriving, keys) == b"robust"
    # only two valid distinct shares among the first five: not enough
    assert tdh2.combine(ct, LABEL, arriving[:5], keys) == NotEnoughShares(valid=1, needed=3)
    assert tdh2.combine(ct, LABEL, [*bad, good[2], good[2]], keys) == NotEnoughShares(1, 3)


def test_verified_shares_of_a_garbage_body_fail_the_same_way_for_everyone() -> None:
    """A ciphertext with a valid proof around a body not encrypted to the key
    (its author skipped the KEM): every t verified shares give DecryptionFailed."""
    keys, shares = dealt(4, 2)
    r, s = 1234567, 7654321
    u, u_bar = mul_base(r), mul(tdh2.GBAR, r)
    body = bytes(range(40))
    e, f = tdh2._prove_dleq(
        tdh2.CIPHERTEXT_PROOF_TAG,
        r,
        GENERATOR,
        u,
        tdh2.GBAR,
        u_bar,
        tdh2._ciphertext_context(keys.public_key, body, LABEL),
        nonce=s,
    )
    ct = Ciphertext(u=encode_point(u), u_bar=encode_point(u_bar), e=e, f=f, body=body)
    assert tdh2.verify_ciphertext(keys.public_key, ct, LABEL)
    all_shares = [tdh2.decryption_share(k, ct, LABEL) for k in shares]
    results = {tdh2.combine(ct, LABEL, pair, keys) for pair in (all_shares[:2], all_shares[2:])}
    assert results == {DecryptionFailed("aead")}


def test_block_shares_open_every_ciphertext() -> None:
    keys, shares = dealt(4, 2)
    plaintexts = [b"tx %d" % i for i in range(20)]
    labels = [LABEL + bytes([i]) for i in range(20)]
    rng = seeded(5)
    cts = [
        tdh2.encrypt(keys.public_key, p, lab, rng)
        for p, lab in zip(plaintexts, labels, strict=True)
    ]
    messages = [tdh2.block_shares(k, cts, labels) for k in shares[1:3]]
    per_validator = []
    for message in messages:
        decoded = tdh2.decode_block_shares(tdh2.encode(message))
        verified = tdh2.accept_block_shares(keys.verification_keys[message.index - 1], cts, decoded)
        assert verified is not None
        per_validator.append(verified)
    for j, ct in enumerate(cts):
        shares_j = [verified[j] for verified in per_validator]
        assert tdh2.combine_verified(ct, labels[j], shares_j, keys.threshold) == plaintexts[j]
    # the aggregated shares equal the per-ciphertext ones
    single = tdh2.decryption_share(shares[1], cts[7], labels[7])
    assert messages[0].values[7] == single.value


def test_aggregated_proof_rejects_one_bad_share_among_many() -> None:
    keys, shares = dealt(4, 2)
    rng = seeded(6)
    labels = [LABEL + bytes([i]) for i in range(50)]
    cts = [tdh2.encrypt(keys.public_key, b"x", lab, rng) for lab in labels]
    message = tdh2.block_shares(shares[0], cts, labels)
    key = keys.verification_keys[0]
    assert tdh2.verify_block_shares(key, cts, message)
    for position in (0, 23, 49):
        values = list(message.values)
        values[position] = encode_point(mul_base(position + 1))
        bad = BlockShares(index=message.index, values=values, e=message.e, f=message.f)
        assert not tdh2.verify_block_shares(key, cts, bad)
    # two swapped values, a reordered block, a shorter block, another shareholder's key
    swapped = list(message.values)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    assert not tdh2.verify_block_shares(
        key, cts, BlockShares(index=1, values=swapped, e=message.e, f=message.f)
    )
    assert not tdh2.verify_block_shares(key, cts[::-1], message)
    assert not tdh2.verify_block_shares(key, cts[:-1], message)
    assert not tdh2.verify_block_shares(keys.verification_keys[1], cts, message)
    # shares that cancel out under a fixed pair of coefficients are still caught
    delta = mul_base(99)
    values = list(message.values)
    values[0] = encode_point(add(decode_point(values[0]), delta))
    values[1] = encode_point(add(decode_point(values[1]), neg(delta)))
    cancelling = BlockShares(index=1, values=values, e=message.e, f=message.f)
    assert not tdh2.verify_block_shares(key, cts, cancelling)


def test_block_shares_refuse_an_unverified_ciphertext() -> None:
    keys, shares = dealt(4, 2)
    ct = tdh2.encrypt(keys.public_key, b"x", LABEL, seeded(7))
    with pytest.raises(tdh2.InvalidCiphertext, match="ciphertext 1"):
        tdh2.block_shares(shares[0], [ct, ct], [LABEL, LABEL + b"!"])


@pytest.mark.parametrize(("n", "t"), [(4, 2), (16, 6)])
def test_coin_is_the_same_from_every_subset(n: int, t: int) -> None:
    keys, shares = dealt(n, t)
    tag = (1000).to_bytes(8, "big")
    coin = [tdh2.coin_share(k, tag) for k in shares]
    for i, share in enumerate(coin):
        assert tdh2.verify_coin_share(keys.verification_keys[i], tag, share)
        assert not tdh2.verify_coin_share(keys.verification_keys[i], tag + b"x", share)
    rng = random.Random(SEED)
    seeds = {tdh2.combine_coin(tag, rng.sample(coin, t), keys) for _ in range(4)}
    assert len(seeds) == 1
    (seed,) = seeds
    assert isinstance(seed, bytes) and len(seed) == 32
    next_tag = tag + b"\x01"
    other = tdh2.combine_coin(next_tag, [tdh2.coin_share(k, next_tag) for k in shares], keys)
    assert other != seed
    assert tdh2.combine_coin(tag, coin[: t - 1], keys) == NotEnoughShares(t - 1, t)
    forged = tdh2.CoinShare(
        index=coin[0].index, value=encode_point(mul_base(5)), e=coin[0].e, f=coin[0].f
    )
    assert tdh2.combine_coin(tag, [forged, *coin[1 : t + 1]], keys) == seed


def test_shares_and_proofs_are_deterministic() -> None:
    keys, shares = dealt(4, 2)
    ct = tdh2.encrypt(keys.public_key, b"x", LABEL, seeded(8))
    assert tdh2.decryption_share(shares[0], ct, LABEL) == tdh2.decryption_share(
        shares[0], ct, LABEL
    )
    assert tdh2.encrypt(keys.public_key, b"x", LABEL, seeded(8)) == ct


def test_out_of_range_proof_scalars_fail_verification() -> None:
    keys, shares = dealt(4, 2)
    ct = tdh2.encrypt(keys.public_key, b"x", LABEL, seeded(9))
    share = tdh2.decryption_share(shares[0], ct, LABEL)
    high = ORDER.to_bytes(32, "big")
    assert not tdh2.verify_share(
        keys.verification_keys[0],
        ct,
        DecryptionShare(index=1, value=share.value, e=high, f=share.f),
    )
    zero = encode_scalar(0)
    assert not tdh2.verify_ciphertext(
        keys.public_key, Ciphertext(u=ct.u, u_bar=ct.u_bar, e=zero, f=zero, body=ct.body), LABEL
    )


# -- decoders on hostile bytes ---------------------------------------------------------

_KEYS, _SHARES = dealt(4, 2)
_CT = tdh2.encrypt(_KEYS.public_key, b"fuzz", LABEL, seeded(10))
_SHARE = tdh2.decryption_share(_SHARES[0], _CT, LABEL)
_BLOCK = tdh2.block_shares(_SHARES[0], [_CT], [LABEL])
_COIN = tdh2.coin_share(_SHARES[0], b"tag")
VALID = [tdh2.encode(m) for m in (_CT, _SHARE, _BLOCK, _COIN)]


def _exercise(data: bytes) -> None:
    key = _KEYS.verification_keys[0]
    try:
        ct = tdh2.decode_ciphertext(data)
    except tdh2.MalformedCiphertext:
        pass
    else:
        assert isinstance(tdh2.verify_ciphertext(_KEYS.public_key, ct, LABEL), bool)
        # a share is for U alone: it stays valid exactly while U is unchanged
        assert (tdh2.accept_share(key, ct, _SHARE) is None) == (ct.u != _CT.u)
    try:
        share = tdh2.decode_share(data)
    except tdh2.MalformedShare:
        pass
    else:
        assert isinstance(tdh2.verify_share(key, _CT, share), bool)
    try:
        block = tdh2.decode_block_shares(data)
    except tdh2.MalformedBlockShares:
        pass
    else:
        assert isinstance(tdh2.verify_block_shares(key, [_CT], block), bool)
    try:
        coin = tdh2.decode_coin_share(data)
    except tdh2.MalformedShare:
        pass
    else:
        assert isinstance(tdh2.verify_coin_share(key, b"tag", coin), bool)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decoders_on_random_bytes_raise_only_named_errors(data: bytes) -> None:
    _exercise(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(VALID), st.integers(min_value=0, max_value=400), st.binary(max_size=4))
def test_decoders_on_mutated_messages_raise_only_named_errors(
    valid: bytes, position: int, patch: bytes
) -> None:
    position %= len(valid)
    _exercise(valid[:position] + patch + valid[position + len(patch) :])


def test_decoders_refuse_oversized_and_non_canonical_input() -> None:
    with pytest.raises(tdh2.MalformedCiphertext, match="limit"):
        tdh2.decode_ciphertext(b"\x00" * (MAX_CIPHERTEXT_BYTES + 1))
    with pytest.raises(tdh2.MalformedShare, match="limit"):
        tdh2.decode_share(b"\x00" * (MAX_SHARE_BYTES + 1))
    encoded = tdh2.encode(_SHARE)
    # index 1 as a two-byte msgpack uint8 instead of a positive fixint
    non_canonical = encoded[:1] + b"\xcc\x01" + encoded[2:]
    with pytest.raises(tdh2.MalformedShare, match="canonical"):
        tdh2.decode_share(non_canonical)
    assert tdh2.decode_share(encoded) == _SHARE


def test_widest_share_messages_fit_their_limits() -> None:
    """Every field at its widest still decodes: the caps derive from the fields."""
    from sequencer_net.fairness.limits import (
        MAX_BLOCK_CIPHERTEXTS,
        MAX_BLOCK_SHARES_BYTES,
        MAX_SHAREHOLDERS,
    )

    point, scalar = b"\x03" + b"\xff" * 32, b"\xff" * 32
    share = DecryptionShare(index=MAX_SHAREHOLDERS, value=point, e=scalar, f=scalar)
    assert len(tdh2.encode(share)) <= MAX_SHARE_BYTES
    assert tdh2.decode_share(tdh2.encode(share)) == share
    coin = tdh2.CoinShare(index=MAX_SHAREHOLDERS, value=point, e=scalar, f=scalar)
    assert tdh2.decode_coin_share(tdh2.encode(coin)) == coin
    block = BlockShares(
        index=MAX_SHAREHOLDERS, values=[point] * MAX_BLOCK_CIPHERTEXTS, e=scalar, f=scalar
    )
    encoded = tdh2.encode(block)
    assert len(encoded) <= MAX_BLOCK_SHARES_BYTES
    assert tdh2.decode_block_shares(encoded) == block
    too_many = BlockShares(
        index=1, values=[point] * (MAX_BLOCK_CIPHERTEXTS + 1), e=scalar, f=scalar
    )
    with pytest.raises(tdh2.MalformedBlockShares):
        tdh2.decode_block_shares(tdh2.encode(too_many))
    with pytest.raises(tdh2.MalformedShare):
        tdh2.decode_share(tdh2.encode(DecryptionShare(0, point, scalar, scalar)))


# -- checked-proof cache and own shares -------------------------------------------------


def _counting_checks(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Record every ciphertext proof actually checked (by its label)."""
    calls: list[bytes] = []
    real = tdh2._check_ciphertext

    def check(public_key: object, ct: Ciphertext, label: bytes) -> bool:
        calls.append(label)
        return real(public_key, ct, label)  # type: ignore[arg-type]

    monkeypatch.setattr(tdh2, "_check_ciphertext", check)
    return calls


def test_proof_cache_skips_a_second_check_and_never_remembers_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys, _ = dealt(4, 2)
    ct = tdh2.encrypt(keys.public_key, b"x", LABEL, seeded(11))
    calls = _counting_checks(monkeypatch)
    cache = tdh2.CiphertextProofCache()
    assert tdh2.verify_ciphertext(keys.public_key, ct, LABEL, cache)
    assert tdh2.verify_ciphertext(keys.public_key, ct, LABEL, cache)
    assert calls == [LABEL] and cache.hits == 1
    # another label, another key, another body: each a miss, each checked and refused
    other_key = dealt(7, 3)[0].public_key
    tampered = Ciphertext(u=ct.u, u_bar=ct.u_bar, e=ct.e, f=ct.f, body=ct.body[:-1] + b"!")
    for key, c, label in (
        (keys.public_key, ct, LABEL + b"!"),
        (other_key, ct, LABEL),
        (keys.public_key, tampered, LABEL),
    ):
        assert not tdh2.verify_ciphertext(key, c, label, cache)
        assert not tdh2.verify_ciphertext(key, c, label, cache)
    assert len(calls) == 7 and len(cache) == 1


def test_proof_cache_drops_the_least_recently_used_entry_first() -> None:
    keys, _ = dealt(4, 2)
    rng = seeded(12)
    cts = [tdh2.encrypt(keys.public_key, b"x", LABEL, rng) for _ in range(3)]
    cache = tdh2.CiphertextProofCache(capacity=2)
    key = [tdh2.CiphertextProofCache.key(keys.public_key, ct, LABEL) for ct in cts]
    assert tdh2.verify_ciphertext(keys.public_key, cts[0], LABEL, cache)
    assert tdh2.verify_ciphertext(keys.public_key, cts[1], LABEL, cache)
    assert cache.holds(key[0])  # 0 is now the most recently used
    assert tdh2.verify_ciphertext(keys.public_key, cts[2], LABEL, cache)
    assert len(cache) == 2 and cache.holds(key[0]) and cache.holds(key[2])
    assert not cache.holds(key[1])
    with pytest.raises(ValueError):
        tdh2.CiphertextProofCache(capacity=0)


def test_block_shares_with_a_warm_cache_check_no_proof_and_equal_the_cold_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys, shares = dealt(4, 2)
    rng = seeded(13)
    labels = [LABEL + bytes([i]) for i in range(5)]
    cts = [tdh2.encrypt(keys.public_key, b"tx", lab, rng) for lab in labels]
    cold = tdh2.block_shares(shares[0], cts, labels)
    cache = tdh2.CiphertextProofCache()
    for ct, lab in zip(cts, labels, strict=True):  # what intake does
        assert tdh2.verify_ciphertext(keys.public_key, ct, lab, cache)
    calls = _counting_checks(monkeypatch)
    assert tdh2.block_shares(shares[0], cts, labels, cache) == cold
    assert calls == []
    # a ciphertext the cache does not hold is still checked, and refused if bad
    with pytest.raises(tdh2.InvalidCiphertext, match="ciphertext 1"):
        tdh2.block_shares(shares[0], [cts[0], cts[0]], [labels[0], labels[1]], cache)
    assert calls == [labels[1]]


def test_own_shares_are_the_ones_verification_accepts() -> None:
    keys, shares = dealt(4, 2)
    rng = seeded(14)
    labels = [LABEL + bytes([i]) for i in range(4)]
    cts = [tdh2.encrypt(keys.public_key, b"tx", lab, rng) for lab in labels]
    message = tdh2.block_shares(shares[2], cts, labels)
    accepted = tdh2.accept_block_shares(keys.verification_keys[2], cts, message)
    assert tdh2.own_block_shares(shares[2], message) == accepted
    with pytest.raises(ValueError, match="shareholder 3, not 1"):
        tdh2.own_block_shares(shares[0], message)
    coin = tdh2.coin_share(shares[2], b"tag")
    assert tdh2.own_coin_share(shares[2], coin) == tdh2.accept_coin_share(
        keys.verification_keys[2], b"tag", coin
    )
    with pytest.raises(ValueError):
        tdh2.own_coin_share(shares[1], coin)


def test_an_aggregated_proof_over_a_wrong_value_is_refused_even_from_the_key_holder() -> None:
    """Shareholder 1 knows x_1 and proves the aggregated statement honestly,
    but over claimed values one of which is wrong: the statement is false,
    so its proof fails; so does a proof with made-up scalars."""
    keys, shares = dealt(4, 2)
    rng = seeded(15)
    labels = [LABEL + bytes([i]) for i in range(6)]
    cts = [tdh2.encrypt(keys.public_key, b"tx", lab, rng) for lab in labels]
    honest = tdh2.block_shares(shares[0], cts, labels)
    values = list(honest.values)
    values[2] = encode_point(mul_base(777))
    us = [decode_point(ct.u) for ct in cts]
    key = keys.verification_keys[0]
    rho = tdh2._block_coefficients(1, key, [ct.u for ct in cts], values)
    e, f = tdh2._prove_dleq(
        tdh2.BLOCK_SHARES_TAG,
        shares[0].secret,
        GENERATOR,
        key,
        tdh2._linear_combination(us, rho),
        tdh2._linear_combination([decode_point(v) for v in values], rho),
        tdh2._share_context(1),
    )
    forged = BlockShares(index=1, values=values, e=e, f=f)
    assert tdh2.accept_block_shares(key, cts, forged) is None
    made_up = BlockShares(index=1, values=values, e=encode_scalar(12345), f=encode_scalar(67890))
    assert tdh2.accept_block_shares(key, cts, made_up) is None
    assert tdh2.accept_block_shares(key, cts, honest) is not None
