"""Where a validator gets the prices it reports: a pluggable price source.

The engine takes the oracle price of every market as the power-weighted median
of the validators' reports (sequencer_net.execution.oracle). Each validator
reads its prices from the source its config names (`[oracle] source`):

- "simulated": a seeded random walk every validator of a testnet computes
  alike from the seed and the time alone (`walk.SharedPriceWalk`), for the
  markets of a local genesis; the default of `seqnet testnet up`;
- "file": a JSON document on disk, re-read every report;
- "http": a JSON document fetched from a URL (an exchange's public ticker, a
  price service) every report;
- "none": report nothing (a validator that is not an oracle).
"""
