"""Benchmark of the encrypted mempool's threshold cryptography (sequencer_net/fairness).

`bench_tdh2(n, t, block_size, seed, repeat)` deals a t-of-n key from `seed`
and times each operation with time.perf_counter, reporting microseconds per
operation (best of `repeat` runs; setup is not timed):

    encrypt               one ciphertext of a 200-byte plaintext
    verify_ciphertext     its proof
    share                 decryption_share (checks the ciphertext's proof first)
    verify_share          one share's proof
    block_share_per_ct    block_shares over `block_size` ciphertexts, per ciphertext
                          (checks every ciphertext's proof first)
    block_share_cached_per_ct  the same with every proof in a warm CiphertextProofCache
                          (a validator's case: intake checked them)
    aggregated_verify_per_ct  accept_block_shares over `block_size`, per ciphertext
    combine               combine from t shares, verifying each
    combine_verified      interpolation and AEAD alone, from verified shares
    decrypt_per_ct        what one node spends per ciphertext to decrypt a block:
                          t - 1 aggregated verifications (its own message is not
                          verified) plus combine_verified
    coin_share, verify_coin_share, combine_coin
"""

from __future__ import annotations

import time
from collections.abc import Callable
from random import Random
from typing import Any

from sequencer_net.fairness import tdh2

PLAINTEXT_BYTES = 200


def _best_us(operation: Callable[[], object], iterations: int, repeat: int) -> float:
    best: float | None = None
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(iterations):
            operation()
        elapsed = (time.perf_counter() - started) / iterations
        if best is None or elapsed < best:
            best = elapsed
    assert best is not None
    return round(best * 1e6, 1)


def bench_tdh2(
    n: int, t: int, block_size: int = 100, seed: int = 1, repeat: int = 3
) -> dict[str, Any]:
    """Microseconds per operation for a t-of-n key (see the module docstring)."""
    rng = Random(seed).randbytes
    keys, shares = tdh2.deal(n, t, rng)
    label = b"bench label"
    plaintext = Random(seed).randbytes(PLAINTEXT_BYTES)
    ct = tdh2.encrypt(keys.public_key, plaintext, label, rng)
    share = tdh2.decryption_share(shares[0], ct, label)
    key = keys.verification_keys[0]
    t_shares = [tdh2.decryption_share(k, ct, label) for k in shares[:t]]
    verified = [tdh2.accept_share(keys.verification_keys[s.index - 1], ct, s) for s in t_shares]
    verified_shares = [v for v in verified if v is not None]
    assert tdh2.combine(ct, label, t_shares, keys) == plaintext
    labels = [label + i.to_bytes(4, "big") for i in range(block_size)]
    cts = [tdh2.encrypt(keys.public_key, plaintext, lab, rng) for lab in labels]
    message = tdh2.block_shares(shares[0], cts, labels)
    assert tdh2.verify_block_shares(key, cts, message)
    coin = [tdh2.coin_share(k, b"height 1") for k in shares[:t]]

    report: dict[str, Any] = {"n": n, "t": t, "block_size": block_size, "seed": seed}
    fast = 50
    report["encrypt_us"] = _best_us(
        lambda: tdh2.encrypt(keys.public_key, plaintext, label, rng), fast, repeat
    )
    report["verify_ciphertext_us"] = _best_us(
        lambda: tdh2.verify_ciphertext(keys.public_key, ct, label), fast, repeat
    )
    report["share_us"] = _best_us(lambda: tdh2.decryption_share(shares[0], ct, label), fast, repeat)
    report["verify_share_us"] = _best_us(lambda: tdh2.verify_share(key, ct, share), fast, repeat)
    report["block_share_per_ct_us"] = round(
        _best_us(lambda: tdh2.block_shares(shares[0], cts, labels), 1, repeat) / block_size, 1
    )
    cache = tdh2.CiphertextProofCache()
    for c, lab in zip(cts, labels, strict=True):
        tdh2.verify_ciphertext(keys.public_key, c, lab, cache)
    report["block_share_cached_per_ct_us"] = round(
        _best_us(lambda: tdh2.block_shares(shares[0], cts, labels, cache), 1, repeat) / block_size,
        1,
    )
    report["aggregated_verify_per_ct_us"] = round(
        _best_us(lambda: tdh2.accept_block_shares(key, cts, message), 1, repeat) / block_size, 1
    )
    report["combine_us"] = _best_us(lambda: tdh2.combine(ct, label, t_shares, keys), 10, repeat)
    report["combine_verified_us"] = _best_us(
        lambda: tdh2.combine_verified(ct, label, verified_shares, t), fast, repeat
    )
    report["decrypt_per_ct_us"] = round(
        (t - 1) * report["aggregated_verify_per_ct_us"] + report["combine_verified_us"], 1
    )
    report["coin_share_us"] = _best_us(
        lambda: tdh2.coin_share(shares[0], b"height 1"), fast, repeat
    )
    report["verify_coin_share_us"] = _best_us(
        lambda: tdh2.verify_coin_share(key, b"height 1", coin[0]), fast, repeat
    )
    report["combine_coin_us"] = _best_us(
        lambda: tdh2.combine_coin(b"height 1", coin, keys), 10, repeat
    )
    return report
