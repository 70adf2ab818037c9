"""Signature checks off the event loop, in parallel: the verifier pool.

Checking a transaction costs about 53 us, most of it the sender's recovery
inside libsecp256k1, which its cffi binding calls with the GIL released, so
worker threads recover signatures in parallel while the event loop keeps
serving consensus (docs/performance.md has the measurement behind threads
rather than processes). A transaction is recovered at most once per node, and only by
the f+1 validators designated to verify its batch (its author at intake, then
the next by index; sequencer_net/batches/certificate.py): the others store
the batch unverified and, once it is committed, take the senders it carries.

    pool = VerifierPool(domain, threads=4)
    checked = await pool.check_many(encoded_txs)   # CheckedTx or the InvalidTransaction, in order

Encrypted transactions are checked here too (mempool/encrypted.py: the
envelope's signature and its ciphertext's proof, about 0.2 ms), on the same
path for the API's intake and for peers' batches, so no validator stores or
acknowledges a batch with an envelope it would refuse. Only intake passes an
`ordering_height` for the expiry check: a batch is checked without it (a
validator ahead of the others would otherwise refuse an honest batch), and
execution applies expiry at the block's height.

Work is cut into chunks, so a 10,000-transaction submission is many short
thread jobs, at most `threads` at a time, and the loop runs between them.
The jobs run on the pool's own long-lived worker threads (worker_thread.py),
`threads` of them, not on trio's thread cache: a validator hands a job over
for every peer batch, many times a second, and a cache thread costs each job
a naming of the thread through the OS, a copy of the task's context and a
limiter round trip on top of the hand-over itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import trio

from consensus.encoding import Domain
from sequencer_net.mempool.encrypted import EnvelopeRules, is_encrypted
from sequencer_net.mempool.mempool import CheckedTx, check_transaction
from sequencer_net.mempool.transaction import InvalidTransaction
from sequencer_net.worker_thread import WorkerThread

CHUNK = 128
"""Transactions per thread job: ~8 ms of work, long enough to amortize the hop
to a worker thread (~50 us), short enough to keep jobs interleaved."""

INLINE_BELOW = 4
"""Fewer plain transactions than this are checked on the event loop: a thread
hop would cost about as much as the check."""

INLINE_ENCRYPTED_AT_MOST = 2
"""A submission or peer batch holding one or two encrypted transactions (and nothing
else) is checked on the event loop too: about 0.25 ms (a signature and a
ciphertext proof), where a worker thread hop in a busy node took 10 to 15 ms
at the median, on the way to every acknowledgement of the batch and so to
its certificate (docs/fairness.md, "Where the added latency goes"). More go
to a thread: a validator receives a batch from every peer many times a
second, and checking several envelopes each on the loop held it for a large
share of its time."""


def _inline(encoded: Sequence[bytes]) -> bool:
    """Whether checking `encoded` costs less than a worker thread hop. A batch
    too long for either bound goes to a thread without a look at its
    transactions (this runs on the event loop for every peer batch)."""
    if len(encoded) >= INLINE_BELOW and len(encoded) > INLINE_ENCRYPTED_AT_MOST:
        return False
    encrypted = sum(1 for tx in encoded if is_encrypted(tx))
    if encrypted == 0:
        return len(encoded) < INLINE_BELOW
    return len(encoded) == encrypted <= INLINE_ENCRYPTED_AT_MOST


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def check_chunk(
    encoded: Sequence[bytes],
    domain: Domain,
    envelopes: EnvelopeRules | None = None,
    ordering_height: int = 0,
    hashes: Sequence[bytes] | None = None,
) -> list[CheckedTx | InvalidTransaction]:
    """`hashes`: each transaction's `tx_hash`, if the caller has them (else computed)."""
    out: list[CheckedTx | InvalidTransaction] = []
    for i, item in enumerate(encoded):
        try:
            hash_ = None if hashes is None else hashes[i]
            out.append(check_transaction(item, domain, envelopes, ordering_height, hash_))
        except InvalidTransaction as exc:
            out.append(exc)
    return out


class VerifierPool:
    def __init__(
        self,
        domain: Domain,
        *,
        threads: int | None = None,
        envelopes: EnvelopeRules | None = None,
    ) -> None:
        self.domain = domain
        self.envelopes = envelopes
        self.threads = threads or default_threads()
        self._limiter = trio.CapacityLimiter(self.threads)
        self._workers = [WorkerThread(f"seqnet-verify-{i}") for i in range(self.threads)]
        self._idle = list(self._workers)
        """Workers not running a job; the limiter lets at most `threads` jobs in,
        so one is always idle for a job that holds it."""
        self.checked = 0

    @property
    def threads_started(self) -> int:
        """OS threads started for this pool's jobs (a worker idle for long ends;
        its next job starts it again)."""
        return sum(w.threads_started for w in self._workers)

    async def check(self, encoded: bytes) -> CheckedTx:
        """One transaction; raises its InvalidTransaction."""
        (result,) = await self.check_many([encoded])
        if isinstance(result, InvalidTransaction):
            raise result
        return result

    async def check_many(
        self,
        encoded: Sequence[bytes],
        *,
        ordering_height: int = 0,
        hashes: Sequence[bytes] | None = None,
    ) -> list[CheckedTx | InvalidTransaction]:
        """Check every transaction; results in input order. `ordering_height`:
        the height envelopes would be ordered at (0: skip the expiry check).
        `hashes`: `tx_hash` of each of `encoded`, if the caller computed them
        (intake does, for its duplicate check), so none is hashed twice."""
        if hashes is not None and len(hashes) != len(encoded):
            raise ValueError("one hash per transaction")
        self.checked += len(encoded)
        envelopes = self.envelopes
        if _inline(encoded):
            return check_chunk(encoded, self.domain, envelopes, ordering_height, hashes)
        chunks = [encoded[i : i + CHUNK] for i in range(0, len(encoded), CHUNK)]
        hash_chunks = [
            None if hashes is None else hashes[i : i + CHUNK] for i in range(0, len(encoded), CHUNK)
        ]
        results: list[list[CheckedTx | InvalidTransaction]] = [[] for _ in chunks]

        async def run(index: int) -> None:
            async with self._limiter:
                worker = self._idle.pop()
                try:
                    results[index] = await worker.run(
                        check_chunk,
                        chunks[index],
                        self.domain,
                        envelopes,
                        ordering_height,
                        hash_chunks[index],
                    )
                finally:
                    self._idle.append(worker)

        async with trio.open_nursery() as nursery:
            for index in range(len(chunks)):
                nursery.start_soon(run, index)
        return [item for chunk in results for item in chunk]
