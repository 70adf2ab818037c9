"""Attacks on fair ordering, simulated round by round against the real checks.

`seqnet sim --attack NAME` (sequencer_net/cli/attack.py) runs them through

    runner.run_attack      one attack at one committee size over seeds
      committee            the seed's validators, threshold key, Byzantine set, users
      <attack>.run         one seed: censor, reorder, frontrun, withhold,
                           bad_shares, maul, replay, crash (one module each)
        exchange           decryption shares after commit, round by round
                           (withhold, bad_shares, crash)
        ordering           the execution order of a committed block (reorder)
      report               attempts, successes, delays, identical results

Only the network and the round clock are simulated; what an honest validator
decides is decided by the node's own functions (docs/fairness.md, "Attacks").
"""
