"""Every bound of transaction intake and batching, in one place, with its reason.

Wire caps are checked on raw bytes before any decoding; pool bounds cap the
memory one node spends on transactions it has not yet seen committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consensus.limits import MAX_VALIDATORS, U64_MAX

MAX_TX_PAYLOAD_BYTES: Final = 32 * 1024
"""The opaque rollup payload of one transaction. A derivatives transaction is
under 4 KiB (sequencer_net.execution.limits); other rollups get room for a
compressed bundle, while one transaction still costs well under a millisecond
to move and hash."""

MAX_TX_BYTES: Final = MAX_TX_PAYLOAD_BYTES + 128
"""A whole encoded signed transaction: the payload plus the fixed fields (array
header, chain id, nonce, namespace and fee of at most 9 bytes each, the
payload's 5-byte length prefix and the 65-byte signature with its 2-byte
prefix: 106 bytes) rounded up."""

MAX_NONCE: Final = U64_MAX
MAX_FEE: Final = U64_MAX
"""Nonces and fees are signed as uint64/uint256 words, but msgpack integers
(and msgspec's bounds) stop at int64, so the wire caps both at 2**63 - 1."""

MAX_NAMESPACE: Final = 2**32 - 1
"""A namespace is a rollup id: uint32."""

MAX_BATCH_TXS: Final = 8192
"""Transactions in one batch. A validator cuts a batch every max_delay_ms
(default 50 ms); 8192 per batch is far above a validator's share of the
throughput target and bounds the signature checks one batch can demand."""

MAX_BATCH_TX_BYTES: Final = 2 * 1024 * 1024
"""Sum of the encoded transactions of one batch. Batches travel on direct
streams; one yamux stream moves ~130 MB/s with 100 KB writes (measured), so
2 MiB is ~15 ms of one link at worst."""

BATCH_SENDER_BYTES: Final = 20 + 2
"""One carried sender in an encoded batch: a 20-byte address and its 2-byte
msgpack bin prefix."""

MAX_BATCH_BYTES: Final = MAX_BATCH_TX_BYTES + (5 + BATCH_SENDER_BYTES) * MAX_BATCH_TXS + 64
"""A whole encoded batch: the transactions, at most 5 bytes of length prefix
each, one carried sender per transaction, and the header (author, sequence,
two list lengths)."""

MAX_BATCH_AUTHOR: Final = MAX_VALIDATORS - 1


MAX_PER_SENDER_BOUND: Final = 1024
"""The most `max_per_sender` may be set to (the engine accepts nonces at most
64 above a sender's highest used one, so more pending than that only waits)."""


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    """The tunable bounds of one node's pool (config `[mempool]`). The config
    reads its defaults and ranges from here: one source for both."""

    max_txs: int = 200_000
    """Pending transactions held at once: ~40 s of the 5,000 tx/s target."""

    max_bytes: int = 256 * 1024 * 1024
    """Total encoded bytes of pending transactions."""

    max_per_sender: int = 128
    """Pending transactions of one sender: twice the engine's nonce window, so a
    busy client can keep a full window in flight while the next one queues."""

    max_evictions_per_add: int = 64
    """A full pool evicts at most this many cheaper transactions for one new one
    (bounds the work of one admission)."""

    recent_committed: int = 200_000
    """Committed (and dropped) transaction hashes remembered, to refuse
    re-submissions and answer status queries."""

    def __post_init__(self) -> None:
        for name in ("max_txs", "max_bytes", "max_evictions_per_add", "recent_committed"):
            if getattr(self, name) < 1:
                raise ValueError(f"mempool limit {name} must be at least 1")
        if not 1 <= self.max_per_sender <= MAX_PER_SENDER_BOUND:
            raise ValueError(f"mempool max_per_sender must be in [1, {MAX_PER_SENDER_BOUND}]")


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """When a validator cuts a batch (config `[mempool] batch_*`). The config
    reads its defaults and ranges from here."""

    max_txs: int = 2048
    max_bytes: int = 512 * 1024
    """Batches of 20-100 KB at 50 per second per node crossed loopback links with
    no loss in measurements; 512 KiB keeps a full batch a few milliseconds of
    one link."""

    max_delay_ms: int = 50
    """The longest a received transaction waits before it is batched: a small
    share of the 250 ms p50 submit-to-commit target."""

    max_uncertified: int = 1
    """Own batches broadcast and still gathering acknowledgements beyond which a
    batch that is not full waits (up to `hold_ms`) for one of them to be
    certified. While certificates come back within `max_delay_ms` nothing
    waits; under load certificates take longer, the transactions meanwhile go
    into one larger batch, and every validator verifies, stores, acknowledges
    and certifies fewer batches a second (each costs all of them signatures,
    frames and a synced write, whatever its size). 0: never wait."""

    hold_ms: int = 250
    """The longest a transaction waits for its batch while own batches are
    uncertified: a certificate that does not form (a peer down, a broadcast
    lost) only slows batching to this, never stops it. Below `max_delay_ms` it
    is `max_delay_ms`."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_txs <= MAX_BATCH_TXS:
            raise ValueError(f"batch max_txs must be in [1, {MAX_BATCH_TXS}]")
        if not MAX_TX_BYTES <= self.max_bytes <= MAX_BATCH_TX_BYTES:
            raise ValueError(f"batch max_bytes must be in [{MAX_TX_BYTES}, {MAX_BATCH_TX_BYTES}]")
        if self.max_delay_ms < 0:
            raise ValueError("batch max_delay_ms must not be negative")
        if self.max_uncertified < 0:
            raise ValueError("batch max_uncertified must not be negative")
        if self.hold_ms < 0:
            raise ValueError("batch hold_ms must not be negative")
