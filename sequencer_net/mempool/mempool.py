"""The pool of signed transactions a validator has accepted but not seen committed.

Pure: no I/O and no clock (the caller passes `now_ms`). The shell around it:

    checked = pool.check(encoded)        # decode + signature: raises InvalidTransaction
    result  = pool.add(checked, now_ms)  # pool rules: ACCEPTED or why not
    store.save_pending_transactions(...) # persist (fsync) ...
    answer the client                    # ... then acknowledge

Rules (docs/storage-and-mempool.md, "Mempool"):
- one entry per transaction hash, and none whose hash was recently committed;
- a sender has at most one pending transaction per nonce, and only nonces in
  [next, next + nonce_window), where `next` is the sender's next nonce as last
  reported by `on_committed` (or the node's lookup for senders it never saw);
- the pool holds at most `max_txs` transactions and `max_bytes` encoded bytes;
- `take_batch` returns untaken transactions in arrival order, except that a
  sender's transactions come out in nonce order; they stay pending (marked
  batched) until `on_committed` removes them, and `requeue` returns them to
  the untaken queue if their batch is lost.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum

from consensus.crypto import Address
from consensus.encoding import Domain

from .limits import MempoolLimits
from .transaction import Transaction, WrongChain, decode_transaction, recover_sender, tx_hash


class AddResult(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # same hash pending or recently committed
    NONCE_TOO_LOW = "nonce too low"  # below the sender's next nonce
    NONCE_TOO_HIGH = "nonce too high"  # at or beyond next + nonce_window
    NONCE_TAKEN = "nonce taken"  # another transaction of the sender holds this nonce
    FULL = "mempool full"  # count or byte bound reached


@dataclass(frozen=True, slots=True)
class CheckedTx:
    """A decoded transaction whose chain id and signature were checked."""

    tx: Transaction
    encoded: bytes
    hash: bytes
    sender: Address

    @property
    def nonce(self) -> int:
        return self.tx.nonce


def check_transaction(encoded: bytes, domain: Domain) -> CheckedTx:
    """Decode `encoded` and recover its sender; raise an InvalidTransaction subclass."""
    tx = decode_transaction(encoded)
    if tx.chain_id != domain.chain_id:
        raise WrongChain(f"transaction is for chain {tx.chain_id}, not {domain.chain_id}")
    sender = recover_sender(tx, domain)
    return CheckedTx(tx=tx, encoded=encoded, hash=tx_hash(encoded), sender=sender)


@dataclass(slots=True)
class _Entry:
    checked: CheckedTx
    arrival: int  # position in arrival order (a counter, not a time)
    received_ms: int
    batched: bool = False


class Mempool:
    def __init__(
        self,
        domain: Domain,
        limits: MempoolLimits | None = None,
        *,
        next_nonce: Callable[[Address], int] | None = None,
    ) -> None:
        """`next_nonce` gives the committed next nonce of a sender the pool has no
        record of (the node reads it from committed state); default 0."""
        self.domain = domain
        self.limits = limits or MempoolLimits()
        self._lookup_next_nonce = next_nonce or (lambda _sender: 0)
        self._entries: dict[bytes, _Entry] = {}
        self._untaken: dict[bytes, None] = {}  # insertion order is arrival order
        self._by_sender: dict[Address, dict[int, bytes]] = {}  # nonce -> hash
        self._untaken_nonces: dict[Address, list[int]] = {}  # sorted
        self._next_nonce: OrderedDict[Address, int] = OrderedDict()
        self._recent_committed: OrderedDict[bytes, None] = OrderedDict()
        self._bytes = 0
        self._untaken_bytes = 0
        self._arrivals = 0

    # ---- intake ----------------------------------------------------------------------

    def check(self, encoded: bytes) -> CheckedTx:
        """Decode and verify one transaction (the CPU-heavy step: signature recovery)."""
        return check_transaction(encoded, self.domain)

    def seen(self, hash_: bytes) -> bool:
        """Whether `hash_` is pending or recently committed: lets the shell skip
        signature recovery for re-submissions."""
        return hash_ in self._entries or hash_ in self._recent_committed

    def next_nonce(self, sender: Address) -> int:
        known = self._next_nonce.get(sender)
        return known if known is not None else self._lookup_next_nonce(sender)

    def add(self, checked: CheckedTx, now_ms: int = 0, *, restoring: bool = False) -> AddResult:
        """Admit a checked transaction, or say which rule refuses it.

        `restoring`: the node re-admits a transaction it acknowledged before a
        restart; the nonce window is not applied again (an acknowledged transaction
        is never dropped for a nonce rule it passed when it was accepted)."""
        if self.seen(checked.hash):
            return AddResult.DUPLICATE
        next_nonce = self.next_nonce(checked.sender)
        if not restoring and checked.nonce < next_nonce:
            return AddResult.NONCE_TOO_LOW
        if not restoring and checked.nonce >= next_nonce + self.limits.nonce_window:
            return AddResult.NONCE_TOO_HIGH
        by_nonce = self._by_sender.get(checked.sender)
        if by_nonce is not None and checked.nonce in by_nonce:
            return AddResult.NONCE_TAKEN
        size = len(checked.encoded)
        if len(self._entries) >= self.limits.max_txs or self._bytes + size > self.limits.max_bytes:
            return AddResult.FULL
        self._entries[checked.hash] = _Entry(checked, self._arrivals, now_ms)
        self._arrivals += 1
        self._untaken[checked.hash] = None
        insort(self._untaken_nonces.setdefault(checked.sender, []), checked.nonce)
        self._by_sender.setdefault(checked.sender, {})[checked.nonce] = checked.hash
        self._bytes += size
        self._untaken_bytes += size
        return AddResult.ACCEPTED

    # ---- batching --------------------------------------------------------------------

    def take_batch(self, max_txs: int, max_bytes: int) -> list[CheckedTx]:
        """The next untaken transactions for a batch, without marking them.

        Arrival order, except that before a sender's transaction come its untaken
        ones with lower nonces. Stops at the first transaction that would pass
        `max_txs` or `max_bytes`, so nothing overtakes an earlier arrival; the
        first one always fits (MAX_TX_BYTES <= BatchLimits.max_bytes), so a
        non-empty queue always yields a non-empty batch.
        """
        chosen: list[CheckedTx] = []
        total = 0
        # A sender's chosen transactions are always a prefix of its untaken nonces
        # (lower nonces go first), so a count per sender says which are chosen.
        taken_per_sender: dict[Address, int] = {}
        for hash_ in self._untaken:
            checked = self._entries[hash_].checked
            nonces = self._untaken_nonces[checked.sender]
            start = taken_per_sender.get(checked.sender, 0)
            end = bisect_left(nonces, checked.nonce) + 1
            if end <= start:
                continue  # already chosen ahead of its arrival
            by_nonce = self._by_sender[checked.sender]
            for position in range(start, end):
                member = self._entries[by_nonce[nonces[position]]].checked
                if len(chosen) >= max_txs or total + len(member.encoded) > max_bytes:
                    return chosen
                chosen.append(member)
                total += len(member.encoded)
                taken_per_sender[checked.sender] = position + 1
        return chosen

    def mark_batched(self, hashes: Iterable[bytes]) -> None:
        """Take these transactions out of the untaken queue (they stay pending)."""
        for hash_ in hashes:
            entry = self._entries.get(hash_)
            if entry is None or entry.batched:
                continue
            entry.batched = True
            self._forget_untaken(entry.checked)

    def requeue(self, hashes: Iterable[bytes]) -> None:
        """Return batched, uncommitted transactions to the untaken queue in their
        original arrival order (their batch was lost or never certified)."""
        returned = False
        for hash_ in hashes:
            entry = self._entries.get(hash_)
            if entry is None or not entry.batched:
                continue
            entry.batched = False
            self._untaken[hash_] = None
            self._untaken_bytes += len(entry.checked.encoded)
            insort(self._untaken_nonces.setdefault(entry.checked.sender, []), entry.checked.nonce)
            returned = True
        if returned:
            order = sorted(self._untaken, key=lambda h: self._entries[h].arrival)
            self._untaken = dict.fromkeys(order)

    def _forget_untaken(self, checked: CheckedTx) -> None:
        del self._untaken[checked.hash]
        self._untaken_bytes -= len(checked.encoded)
        nonces = self._untaken_nonces[checked.sender]
        del nonces[bisect_left(nonces, checked.nonce)]
        if not nonces:
            del self._untaken_nonces[checked.sender]

    def untaken_count(self) -> int:
        return len(self._untaken)

    def untaken_bytes(self) -> int:
        return self._untaken_bytes

    def oldest_untaken_ms(self) -> int | None:
        """When the oldest untaken transaction arrived (it heads the queue)."""
        for hash_ in self._untaken:
            return self._entries[hash_].received_ms
        return None

    # ---- commits ---------------------------------------------------------------------

    def on_committed(
        self, tx_hashes: Iterable[bytes], sender_nonces: dict[Address, int]
    ) -> list[bytes]:
        """Forget committed transactions and raise the senders' next nonces (the
        admission window's floor); return the hashes removed from the pool.

        Pending transactions with a lower nonce than a committed one stay: they
        were acknowledged, and the sequencer orders a sender's transactions by
        inclusion, not by nonce (docs/storage-and-mempool.md, "Nonces").
        """
        removed: list[bytes] = []
        for hash_ in tx_hashes:
            self._remember_committed(hash_)
            if self._remove(hash_):
                removed.append(hash_)
        for sender, next_nonce in sender_nonces.items():
            self._next_nonce[sender] = max(next_nonce, self._next_nonce.get(sender, 0))
            self._next_nonce.move_to_end(sender)
        while len(self._next_nonce) > self.limits.tracked_senders:
            self._next_nonce.popitem(last=False)
        return removed

    def _remember_committed(self, hash_: bytes) -> None:
        self._recent_committed[hash_] = None
        self._recent_committed.move_to_end(hash_)
        while len(self._recent_committed) > self.limits.recent_committed:
            self._recent_committed.popitem(last=False)

    def _remove(self, hash_: bytes) -> bool:
        entry = self._entries.pop(hash_, None)
        if entry is None:
            return False
        checked = entry.checked
        size = len(checked.encoded)
        self._bytes -= size
        if not entry.batched:
            self._forget_untaken(checked)
        by_nonce = self._by_sender[checked.sender]
        del by_nonce[checked.nonce]
        if not by_nonce:
            del self._by_sender[checked.sender]
        return True

    # ---- inspection ------------------------------------------------------------------

    def pending(self) -> list[bytes]:
        """Encoded pending transactions (batched or not) in arrival order."""
        return [e.checked.encoded for e in self._entries.values()]

    def get(self, hash_: bytes) -> CheckedTx | None:
        entry = self._entries.get(hash_)
        return entry.checked if entry is not None else None

    def __contains__(self, hash_: object) -> bool:
        return hash_ in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        return self._bytes
