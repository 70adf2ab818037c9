"""crash: validators crash between commit and share release, and restart.

In each block one honest validator is a laggard (every broadcast to it is
lost, so it must ask for shares), the f Byzantine validators withhold theirs,
and every other honest validator crashes once at a drawn point:

    before_persist   before its message is made (nothing stored, nothing sent)
    after_persist    stored, not sent
    mid_send         stored, sent to some validators
    after_open       it opened and executed the block, then went down: after
                     the restart it is past that height and only serves what
                     it stored

and restarts one to four rounds later with its memory lost and its store
kept (node/decryption.py: persist, then send; a restarted validator serves
its stored message, decoded with the real decode_shares_message). Success: a
block some honest validator never opens. The delay is compared with the
same block, laggard and withholding without crashes. Also checked: a restarted
validator's message is byte for byte the one it sent before (no second,
different share message for the same block).
"""

from __future__ import annotations

from .committee import Committee
from .exchange import CRASH_POINTS, Crash, ShareExchange, check_results, encrypted_block
from .report import SeedOutcome

BLOCKS = 3
ENVELOPES = 2


def run(committee: Committee) -> SeedOutcome:
    outcome = SeedOutcome()
    for height in range(1, BLOCKS + 1):
        rng = committee.rng(f"crash/{height}")
        block = encrypted_block(committee, height, ENVELOPES)
        laggard = rng.choice(committee.honest)
        crashes = {}
        for index in committee.honest:
            if index == laggard:
                continue
            point = rng.choice(CRASH_POINTS)
            crashes[index] = Crash(at=0, restart=rng.randint(1, 4), point=point)
            outcome.note(f"crash_{point}")
        deaf = frozenset({laggard})
        calm = ShareExchange(committee, block, rng=committee.rng(f"calm/{height}"), deaf=deaf)
        outcome.baseline_delays.extend(r for r in calm.run().rounds.values() if r is not None)
        result = ShareExchange(committee, block, rng=rng, crashes=crashes, deaf=deaf).run()
        outcome.attempts += 1
        wrong, identical = check_results(block, result)
        outcome.identical = outcome.identical and identical
        never = [i for i, r in result.rounds.items() if r is None]
        problems = [f"never opened at validators {never}"] if never else []
        problems += wrong
        if not result.resent_identical:
            problems.append("a restarted validator sent a different share message")
        if problems:
            outcome.succeed(f"block {height}: {'; '.join(problems[:3])}")
        outcome.delays.extend(r for r in result.rounds.values() if r is not None)
    return outcome
