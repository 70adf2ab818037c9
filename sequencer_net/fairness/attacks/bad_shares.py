"""bad-shares: the f Byzantine validators send wrong share values, first.

Every Byzantine validator sends each honest validator, before any honest
message arrives, one of (drawn per recipient, so two honest validators get
different wrong values):

    shifted         its real message with some values moved by a random point
    reproved        wrong values with an aggregated proof made over them
    random-proof    wrong values with random (e, f)
    other-block     its real shares of another block's ciphertexts
    borrowed        an honest validator's real message, under its own index
                    and under the honest one's
    malformed       a truncated message

and answers requests the same way. Honest validators run the real checks
(exchange.py: decode_shares_message, the index check, accept_block_shares
through BlockOpening.offer) and open with combine_verified. A second,
per-ciphertext check feeds `combine` the Byzantine validators' wrong
DecryptionShares (a genuine proof, a shifted value) ahead of the honest ones.
Success: a wrong plaintext at any honest validator, or two honest validators
with different results, or a block not opened.
"""

from __future__ import annotations

import random

from sequencer_net.fairness import tdh2
from sequencer_net.fairness.group import (
    GENERATOR,
    add,
    decode_point,
    encode_point,
    encode_scalar,
    mul_base,
    random_scalar,
)
from sequencer_net.fairness.tdh2 import BlockShares
from sequencer_net.node.decryption import (
    SharesMessage,
    decode_shares_message,
    encode_shares_message,
)

from .committee import Committee
from .exchange import (
    ByzantineShares,
    EncryptedBlock,
    ShareExchange,
    check_results,
    encrypted_block,
    own_coin,
    own_message,
)
from .report import SeedOutcome

BLOCKS = 3
ENVELOPES = 3
STRATEGIES = ("shifted", "reproved", "random-proof", "other-block", "borrowed", "malformed")


def _shift(value: bytes, rng: random.Random) -> bytes:
    return encode_point(add(decode_point(value), mul_base(random_scalar(rng.randbytes))))


def _wrap(block: EncryptedBlock, shares: BlockShares, coin: bytes) -> bytes:
    """A share message carrying `shares` and the sender's genuine coin share, so
    only the decryption shares are wrong."""
    return encode_shares_message(
        SharesMessage(block.height, block.digest, tdh2.encode(shares), coin)
    )


def _reproved(committee: Committee, bad: int, block: EncryptedBlock, values: list[bytes]) -> bytes:
    """Wrong values with the aggregated proof a prover computes over them with
    its real secret (the statement is false, so the proof cannot hold)."""
    key = committee.key_shares[bad]
    us = [decode_point(ct.u) for ct in block.ciphertexts]
    rho = tdh2._block_coefficients(
        key.index, key.verification_key, [ct.u for ct in block.ciphertexts], values
    )
    e, f = tdh2._prove_dleq(
        tdh2.BLOCK_SHARES_TAG,
        key.secret,
        GENERATOR,
        key.verification_key,
        tdh2._linear_combination(us, rho),
        tdh2._linear_combination([decode_point(v) for v in values], rho),
        tdh2._share_context(key.index),
    )
    return _wrap(block, BlockShares(key.index, values, e, f), own_coin(committee, block, bad))


def _bad_message(
    committee: Committee, block: EncryptedBlock, other: EncryptedBlock, bad: int, rng: random.Random
) -> tuple[str, bytes]:
    _, real_shares, _ = decode_shares_message(own_message(committee, block, bad))
    assert real_shares is not None
    real = real_shares
    coin = own_coin(committee, block, bad)
    strategy = rng.choice(STRATEGIES)
    wrong = [_shift(v, rng) if j == 0 or rng.randrange(2) else v for j, v in enumerate(real.values)]
    if strategy == "shifted":
        return strategy, _wrap(block, BlockShares(real.index, wrong, real.e, real.f), coin)
    if strategy == "reproved":
        return strategy, _reproved(committee, bad, block, wrong)
    if strategy == "random-proof":
        e, f = (encode_scalar(random_scalar(rng.randbytes)) for _ in range(2))
        return strategy, _wrap(block, BlockShares(real.index, wrong, e, f), coin)
    if strategy == "other-block":
        _, foreign, _ = decode_shares_message(own_message(committee, other, bad))
        assert foreign is not None
        return strategy, _wrap(block, foreign, coin)
    if strategy == "borrowed":
        honest = rng.choice(committee.honest)
        _, theirs, _ = decode_shares_message(own_message(committee, block, honest))
        assert theirs is not None
        if rng.randrange(2):
            return strategy, _wrap(block, theirs, coin)  # under the honest index
        return strategy, _wrap(
            block, BlockShares(real.index, theirs.values, theirs.e, theirs.f), coin
        )
    data = own_message(committee, block, bad)
    return strategy, data[: rng.randrange(1, len(data))]


def _sender(chosen: dict[tuple[int, int], bytes]) -> ByzantineShares:
    def send(bad: int, recipient: int) -> list[bytes]:
        return [chosen[bad, recipient]]

    return send


def _combine_check(committee: Committee, block: EncryptedBlock, rng: random.Random) -> bool:
    """`combine` of the first ciphertext with wrong shares first: True if it
    gives the sealed plaintext's transaction."""
    ct, label = block.ciphertexts[0], block.labels[0]
    shares: list[tdh2.DecryptionShare] = []
    for bad in sorted(committee.byzantine):
        real = tdh2.decryption_share(committee.key_shares[bad], ct, label)
        shares.append(tdh2.DecryptionShare(real.index, _shift(real.value, rng), real.e, real.f))
    honest = list(committee.honest)
    rng.shuffle(honest)
    shares += [tdh2.decryption_share(committee.key_shares[i], ct, label) for i in honest]
    result = tdh2.combine(ct, label, shares, committee.threshold_keys)
    reference = tdh2.combine_verified(
        ct,
        label,
        [
            tdh2.VerifiedShare(s.index, decode_point(s.value))
            for s in shares[len(committee.byzantine) :]
        ],
        committee.t,
    )
    return isinstance(result, bytes) and result == reference


def run(committee: Committee) -> SeedOutcome:
    outcome = SeedOutcome()
    for height in range(1, BLOCKS + 1):
        block = encrypted_block(committee, height, ENVELOPES)
        other = encrypted_block(committee, height + 1000, ENVELOPES)
        rng = committee.rng(f"bad-shares/{height}")
        chosen: dict[tuple[int, int], bytes] = {}
        for bad in sorted(committee.byzantine):
            for recipient in committee.honest:
                strategy, data = _bad_message(committee, block, other, bad, rng)
                chosen[bad, recipient] = data
                outcome.note(f"sent_{strategy}")

        result = ShareExchange(committee, block, _sender(chosen), rng=rng).run()
        outcome.attempts += 1
        outcome.note("refused_messages", result.refused)
        wrong, identical = check_results(block, result)
        outcome.identical = outcome.identical and identical
        problems = [] if identical else ["honest validators opened different results"]
        problems += wrong
        never = [i for i, r in result.rounds.items() if r is None]
        if never:
            problems.append(f"never opened at validators {never}")
        if problems:
            outcome.succeed(f"block {height}: {'; '.join(problems[:3])}")
        outcome.delays.extend(r for r in result.rounds.values() if r is not None)
        outcome.attempts += 1
        if not _combine_check(committee, block, rng):
            outcome.succeed(f"block {height}: combine gave a wrong plaintext")
    return outcome
