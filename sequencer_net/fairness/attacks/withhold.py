"""withhold-shares: the f Byzantine validators never send nor serve their shares.

Each seed commits BLOCKS blocks of ENVELOPES envelopes; every block's shares
are exchanged round by round (exchange.py) with the Byzantine validators
silent, and again with them honest (the baseline). t = f + 1 and n - f
honest validators remain, so every honest validator must open every block,
with the same results, revealing the sealed transactions. Success: a block
some honest validator never opens (within MAX_ROUNDS), or a wrong or
differing result. The delay is the round in which each honest validator
opened the block.
"""

from __future__ import annotations

from .committee import Committee
from .exchange import ShareExchange, check_results, encrypted_block, genuine
from .report import SeedOutcome

BLOCKS = 3
ENVELOPES = 3


def run(committee: Committee) -> SeedOutcome:
    outcome = SeedOutcome()
    for height in range(1, BLOCKS + 1):
        block = encrypted_block(committee, height, ENVELOPES)
        honest = ShareExchange(
            committee,
            block,
            genuine(committee, block),
            rng=committee.rng(f"b/{height}"),
            byzantine_first=False,
        ).run()
        outcome.baseline_delays.extend(r for r in honest.rounds.values() if r is not None)
        result = ShareExchange(committee, block, rng=committee.rng(f"w/{height}")).run()
        outcome.attempts += 1
        wrong, identical = check_results(block, result)
        outcome.identical = outcome.identical and identical
        never = [i for i, r in result.rounds.items() if r is None]
        problems = [f"never opened at validators {never}"] if never else []
        problems += wrong
        if problems:
            outcome.succeed(f"block {height}: {'; '.join(problems[:3])}")
        outcome.delays.extend(r for r in result.rounds.values() if r is not None)
    return outcome
