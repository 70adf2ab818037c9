"""This machine's signature-recovery limit: what N validators on it could verify.

Each transaction's sender is recovered by the f+1 validators designated to
verify its batch (its author at intake, then the next by index until their
weight exceeds f = floor((N - 1) / 3) for N equal validators; the others
trust the batch's certificate, sequencer_net/batches/certificate.py), so on
one machine running N validators the network can commit at most

    verify_limit_tps = (recoveries per second, all cores together) / (f + 1)

transactions per second, whatever else the nodes do. It is measured with the
node's own code (decode, EIP-712 digest, secp256k1 recovery) on real signed
transactions, one worker process per core, all recovering at once over the
same window of the system-wide monotonic clock.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.encoding import Domain
from sequencer_net.mempool.transaction import decode_transaction, recover_sender
from sequencer_net.testnet.bench.limits import VERIFY_SECONDS

START_DELAY_S = 0.3
"""Workers start recovering together this long after the measurement begins,
so every process has forked and imported before the window opens."""


@dataclass(frozen=True, slots=True)
class VerifyLimit:
    processes: int
    per_process_per_s: tuple[float, ...]
    seconds: float
    validators: int

    @property
    def total_per_s(self) -> float:
        return sum(self.per_process_per_s)

    @property
    def tps(self) -> float:
        return verify_limit_tps(self.per_process_per_s, self.validators)


def recoveries_per_transaction(validators: int) -> int:
    """How many of N equal validators recover each transaction: f + 1, the
    designated verifiers of its batch (certificate.designated_verifiers)."""
    if validators < 1:
        raise ValueError("validators must be >= 1")
    return (validators - 1) // 3 + 1


def verify_limit_tps(per_process_per_s: Sequence[float], validators: int) -> float:
    """All cores' recoveries per second divided by the recoveries each
    transaction costs the network (f + 1 of N validators)."""
    return sum(per_process_per_s) / recoveries_per_transaction(validators)


def _recover_during(
    transactions: Sequence[bytes], domain: Domain, start_at: float, end_at: float
) -> tuple[int, float]:
    """Recover senders in a loop from `start_at` to `end_at` (monotonic clock);
    (recoveries, seconds measured)."""
    while time.monotonic() < start_at:
        time.sleep(0.001)
    began = time.monotonic()
    count = 0
    while True:
        for encoded in transactions:
            recover_sender(decode_transaction(encoded), domain)
            count += 1
        now = time.monotonic()
        if now >= end_at:
            return count, now - began


def quiet_worker_signals() -> None:
    """Pool workers leave Ctrl-C to the parent (which terminates the pool) and die
    quietly on the pool's SIGTERM, whatever handlers the parent had installed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _worker(args: tuple[Sequence[bytes], Domain, float, float]) -> tuple[int, float]:
    return _recover_during(*args)


def measure_verify_limit(
    transactions: Sequence[bytes],
    domain: Domain,
    validators: int,
    *,
    seconds: float = VERIFY_SECONDS,
    processes: int | None = None,
) -> VerifyLimit:
    """Recover `transactions` (signed for `domain`) for `seconds` in `processes`
    worker processes at once (default: one per core)."""
    if not transactions:
        raise ValueError("need signed transactions to recover")
    count = processes or os.cpu_count() or 1
    start_at = time.monotonic() + START_DELAY_S
    end_at = start_at + seconds
    jobs = [(list(transactions), domain, start_at, end_at)] * count
    context = multiprocessing.get_context("fork")
    with context.Pool(count, initializer=quiet_worker_signals) as pool:
        results = pool.map(_worker, jobs)
    rates = tuple(done / elapsed if elapsed > 0 else 0.0 for done, elapsed in results)
    return VerifyLimit(
        processes=count, per_process_per_s=rates, seconds=seconds, validators=validators
    )
