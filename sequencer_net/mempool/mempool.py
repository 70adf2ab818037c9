"""The pool of signed transactions a validator has accepted but not seen committed.

Pure: no I/O and no clock (the caller passes `now_ms`). The shell around it:

    checked = pool.check(encoded)        # decode + signature: raises InvalidTransaction
    result  = pool.add(checked, now_ms)  # pool rules: ACCEPTED or why not
    persist (group commit, fsync) ...
    answer the client                    # ... then acknowledge

Admission rules (docs/storage-and-mempool.md, "Mempool"), in this order, so a
transaction is accepted only if the engine would execute it now:
- one entry per transaction hash, and none whose hash was recently committed;
- the fee it offers covers the chain's required fee for its payload;
- its nonce passes the engine's nonce rule against the sender's committed
  nonce window (not used, not too far ahead), and no other pending
  transaction of the sender holds it;
- the sender's fee balance in the committed state covers the fees of all its
  pending transactions plus this one (so spam needs money: every transaction
  that reaches a block pays);
- a sender has at most `max_per_sender` pending transactions;
- the pool holds at most `max_txs` transactions and `max_bytes` encoded bytes;
  when full, a new transaction that pays a higher fee per byte evicts the
  untaken ones paying the least (the evicted are reported, the store forgets
  them, and their status becomes "dropped").

Encrypted transactions (encrypted.py) have no public nonce: they are
admitted by sender, with the same per-sender cap, their max fee counted
against the sender's fee balance and (as a floor) against the required fee of
the shortest payload their ciphertext can hold, and one pending envelope per ciphertext (its U).

Priority senders (`priority_senders`: a validator's own key, which signs its
price and L1 deposit reports) are exempt from the pool's pressure: no
per-sender cap, admitted when the pool is full (the engine's nonce window,
NONCE_WINDOW above the sender's highest used nonce, bounds how many can be
pending), never evicted; and their untaken transactions head every batch. So
a flood of traffic, cheap or expensive, cannot delay a validator's own
reports (docs/storage-and-mempool.md, "Mempool").

`take_batch` returns a priority sender's untaken transactions first (nonce
order), then the others in arrival order, except that a sender's
transactions come out in nonce order; they stay pending (marked
batched) until `on_committed` removes them, and `requeue` returns them to the
untaken queue if their batch is lost.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from itertools import repeat

from consensus.crypto import Address
from consensus.encoding import Domain
from sequencer_net.execution.exceptions import NonceUsed
from sequencer_net.execution.nonces import nonce_rejection
from sequencer_net.execution.records import NonceWindow
from sequencer_net.fairness.envelope import Envelope

from .encrypted import EnvelopeRules, is_encrypted, open_encrypted, payload_length_floor
from .limits import MempoolLimits
from .transaction import Transaction, WrongChain, decode_transaction, recover_sender, tx_hash


class AddResult(Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # same hash pending or recently committed
    FEE_TOO_LOW = "fee below the required fee"
    NONCE_USED = "nonce already used"  # by a committed transaction of the sender
    NONCE_TOO_HIGH = "nonce too far above the sender's highest used nonce"
    NONCE_TAKEN = "nonce taken"  # another pending transaction of the sender holds it
    INSUFFICIENT_BALANCE = "fee balance does not cover the sender's pending fees"
    SENDER_LIMIT = "too many pending transactions from this sender"
    FULL = "mempool full"  # count or byte bound reached, nothing cheaper to evict


@dataclass(frozen=True, slots=True)
class CheckedTx:
    """A decoded transaction whose chain id and signature were checked: a plain
    one (`tx`) or an encrypted one (`envelope`, its ciphertext proof checked too)."""

    tx: Transaction | None
    encoded: bytes
    hash: bytes
    sender: Address
    envelope: Envelope | None = None

    @property
    def nonce(self) -> int:
        """The plain transaction's nonce; -1 for an envelope (its nonce is secret)."""
        return -1 if self.tx is None else self.tx.nonce

    @property
    def fee(self) -> int:
        """The fee offered: a plain transaction's fee, an envelope's max fee."""
        if self.tx is not None:
            return self.tx.fee
        assert self.envelope is not None
        return self.envelope.max_fee

    @property
    def namespace(self) -> int:
        if self.tx is not None:
            return self.tx.namespace
        assert self.envelope is not None
        return self.envelope.namespace


def check_transaction(
    encoded: bytes,
    domain: Domain,
    envelopes: EnvelopeRules | None = None,
    ordering_height: int = 0,
    hash_: bytes | None = None,
) -> CheckedTx:
    """Decode `encoded` and recover its sender; raise an InvalidTransaction subclass.

    An encrypted transaction is checked by `open_encrypted` against `envelopes`
    (None: encryption is off) for ordering at `ordering_height` (0: no expiry check).
    `hash_`: `tx_hash(encoded)` if the caller computed it already (intake does,
    for its duplicate check), so it is not computed twice."""
    if is_encrypted(encoded):
        envelope = open_encrypted(encoded, domain, envelopes, ordering_height)
        return CheckedTx(
            tx=None,
            encoded=encoded,
            hash=tx_hash(encoded) if hash_ is None else hash_,
            sender=Address(envelope.sender),
            envelope=envelope,
        )
    tx = decode_transaction(encoded)
    if tx.chain_id != domain.chain_id:
        raise WrongChain(f"transaction is for chain {tx.chain_id}, not {domain.chain_id}")
    sender = recover_sender(tx, domain)
    hash_ = tx_hash(encoded) if hash_ is None else hash_
    return CheckedTx(tx=tx, encoded=encoded, hash=hash_, sender=sender)


@dataclass(frozen=True, slots=True)
class Accounts:
    """What the pool reads from the latest committed execution state."""

    nonce_window: Callable[[Address], NonceWindow | None]
    fee_balance: Callable[[Address], int]
    required_fee: Callable[[int], int]
    """payload length -> the least fee a transaction must offer."""


OPEN_ACCOUNTS = Accounts(
    nonce_window=lambda sender: None,
    fee_balance=lambda sender: 2**255,
    required_fee=lambda length: 0,
)
"""No fees, unlimited balances, fresh nonce windows: for tests and tools only."""

FEE_RATE_SCALE = 10**9
"""Fee per byte is compared as fee * FEE_RATE_SCALE // encoded size (integers)."""


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
        accounts: Accounts = OPEN_ACCOUNTS,
        envelopes: EnvelopeRules | None = None,
        priority_senders: frozenset[Address] = frozenset(),
    ) -> None:
        self.domain = domain
        self.envelopes = envelopes
        self.priority_senders = priority_senders
        """Senders whose plain transactions skip the pool's pressure and head batches."""
        self.limits = limits or MempoolLimits()
        self.accounts = accounts
        self._entries: dict[bytes, _Entry] = {}
        self._untaken: dict[bytes, None] = {}  # insertion order is arrival order
        self._by_sender: dict[Address, dict[int, bytes]] = {}  # nonce -> hash
        self._untaken_nonces: dict[Address, list[int]] = {}  # sorted
        self._pending_fees: dict[Address, int] = {}
        self._envelopes_by_sender: dict[Address, int] = {}  # pending envelopes per sender
        self._envelope_us: dict[bytes, bytes] = {}  # ciphertext U -> hash, pending only
        self._cheapest: list[tuple[int, int, bytes]] = []  # (fee rate, -arrival, hash), lazy
        self._recent_committed: OrderedDict[bytes, None] = OrderedDict()
        self.dropped: OrderedDict[bytes, str] = OrderedDict()
        """Hashes evicted or invalidated while pending, with why (bounded)."""
        self._bytes = 0
        self._untaken_bytes = 0
        self._arrivals = 0

    # ---- intake ----------------------------------------------------------------------

    def check(self, encoded: bytes) -> CheckedTx:
        """Decode and verify one transaction (the CPU-heavy step: signature recovery)."""
        return check_transaction(encoded, self.domain, self.envelopes)

    def seen(self, hash_: bytes) -> bool:
        """Whether `hash_` is pending or recently committed: lets the shell skip
        signature recovery for re-submissions."""
        return hash_ in self._entries or hash_ in self._recent_committed

    def add(
        self, checked: CheckedTx, now_ms: int = 0, *, restoring: bool = False
    ) -> tuple[AddResult, list[bytes]]:
        """Admit a checked transaction, or say which rule refuses it; also the
        hashes it evicted (their store entries must go too).

        `restoring`: the node re-admits a transaction it acknowledged before a
        restart; the fee, nonce and balance rules are not applied again (an
        acknowledged transaction is never dropped for a rule it passed when it
        was accepted; the engine has the last word anyway)."""
        if self.seen(checked.hash):
            return AddResult.DUPLICATE, []
        if checked.envelope is not None:
            return self._add_envelope(checked, checked.envelope, now_ms, restoring)
        sender, tx = checked.sender, checked.tx
        assert tx is not None
        by_nonce = self._by_sender.get(sender)
        priority = sender in self.priority_senders
        if not restoring:
            if tx.fee < self.accounts.required_fee(len(tx.payload)):
                return AddResult.FEE_TOO_LOW, []
            rejection = nonce_rejection(self.accounts.nonce_window(sender), tx.nonce)
            if rejection is not None:
                used = isinstance(rejection, NonceUsed)
                return (AddResult.NONCE_USED if used else AddResult.NONCE_TOO_HIGH), []
        if by_nonce is not None and tx.nonce in by_nonce:
            return AddResult.NONCE_TAKEN, []
        if not restoring:
            pending = self._pending_fees.get(sender, 0)
            if pending + tx.fee > self.accounts.fee_balance(sender):
                return AddResult.INSUFFICIENT_BALANCE, []
            if (
                not priority
                and by_nonce is not None
                and len(by_nonce) >= self.limits.max_per_sender
            ):
                return AddResult.SENDER_LIMIT, []
        evicted = [] if priority else self._make_room(checked)
        if evicted is None:
            return AddResult.FULL, []
        self._insert(checked, now_ms)
        return AddResult.ACCEPTED, evicted

    def _add_envelope(
        self, checked: CheckedTx, envelope: Envelope, now_ms: int, restoring: bool
    ) -> tuple[AddResult, list[bytes]]:
        """Admission of an encrypted transaction: no nonce to check; one pending
        envelope per ciphertext; the max fee must cover the required fee of the
        shortest payload the ciphertext can hold (`payload_length_floor`) and, with the
        sender's other pending fees, its fee balance; the per-sender cap."""
        sender = checked.sender
        if envelope.ciphertext.u in self._envelope_us:
            return AddResult.DUPLICATE, []
        if not restoring:
            if envelope.max_fee < self.accounts.required_fee(payload_length_floor(envelope)):
                return AddResult.FEE_TOO_LOW, []
            pending = self._pending_fees.get(sender, 0)
            if pending + envelope.max_fee > self.accounts.fee_balance(sender):
                return AddResult.INSUFFICIENT_BALANCE, []
            if self._envelopes_by_sender.get(sender, 0) >= self.limits.max_per_sender:
                return AddResult.SENDER_LIMIT, []
        evicted = self._make_room(checked)
        if evicted is None:
            return AddResult.FULL, []
        self._insert(checked, now_ms)
        return AddResult.ACCEPTED, evicted

    def _fee_rate(self, checked: CheckedTx) -> int:
        return checked.fee * FEE_RATE_SCALE // max(1, len(checked.encoded))

    def _full_with(self, size: int) -> bool:
        return len(self._entries) + 1 > self.limits.max_txs or (
            self._bytes + size > self.limits.max_bytes
        )

    def _make_room(self, checked: CheckedTx) -> list[bytes] | None:
        """Evict the cheapest untaken transactions (strictly cheaper per byte than
        `checked`) until it fits; None (and nothing evicted) if it cannot."""
        size = len(checked.encoded)
        if not self._full_with(size):
            return []
        rate = self._fee_rate(checked)
        popped: list[tuple[int, int, bytes]] = []
        victims: list[bytes] = []
        freed_txs = freed_bytes = 0
        fits = False
        # Cheapest first; batched entries cannot be evicted and stay in the index.
        while self._cheapest and len(popped) < 4 * self.limits.max_evictions_per_add:
            item = heapq.heappop(self._cheapest)
            entry = self._entries.get(item[2])
            if entry is None:
                continue  # a stale index entry: the transaction left the pool
            popped.append(item)
            if item[0] >= rate:
                break
            if entry.batched or entry.checked.sender in self.priority_senders:
                continue
            victims.append(item[2])
            freed_txs += 1
            freed_bytes += len(entry.checked.encoded)
            if (
                len(self._entries) - freed_txs + 1 <= self.limits.max_txs
                and self._bytes - freed_bytes + size <= self.limits.max_bytes
            ):
                fits = True
                break
            if len(victims) >= self.limits.max_evictions_per_add:
                break
        for item in popped:
            if not fits or item[2] not in victims:
                heapq.heappush(self._cheapest, item)
        if not fits:
            return None
        for victim in victims:
            self._drop(victim, "evicted by transactions paying a higher fee per byte")
        return victims

    def _insert(self, checked: CheckedTx, now_ms: int) -> None:
        sender = checked.sender
        self._entries[checked.hash] = _Entry(checked, self._arrivals, now_ms)
        heapq.heappush(self._cheapest, (self._fee_rate(checked), -self._arrivals, checked.hash))
        self._arrivals += 1
        self._untaken[checked.hash] = None
        if checked.envelope is not None:
            self._envelopes_by_sender[sender] = self._envelopes_by_sender.get(sender, 0) + 1
            self._envelope_us[checked.envelope.ciphertext.u] = checked.hash
        else:
            insort(self._untaken_nonces.setdefault(sender, []), checked.nonce)
            self._by_sender.setdefault(sender, {})[checked.nonce] = checked.hash
        self._pending_fees[sender] = self._pending_fees.get(sender, 0) + checked.fee
        size = len(checked.encoded)
        self._bytes += size
        self._untaken_bytes += size
        self._compact_cheapest()

    def _compact_cheapest(self) -> None:
        """Keep the lazy fee index within twice the live entries."""
        if len(self._cheapest) > 2 * len(self._entries) + 64:
            self._cheapest = [c for c in self._cheapest if c[2] in self._entries]
            heapq.heapify(self._cheapest)

    # ---- batching --------------------------------------------------------------------

    def take_batch(self, max_txs: int, max_bytes: int) -> list[CheckedTx]:
        """The next untaken transactions for a batch, without marking them.

        First every untaken plain transaction of the priority senders (in nonce
        order); then arrival order, except that before a sender's transaction
        come its untaken ones with lower nonces. Stops at the first transaction that would pass
        `max_txs` or `max_bytes`, so nothing overtakes an earlier arrival; the
        first one always fits (MAX_TX_BYTES <= BatchLimits.max_bytes), so a
        non-empty queue always yields a non-empty batch.
        """
        chosen: list[CheckedTx] = []
        total = 0
        # A sender's chosen transactions are always a prefix of its untaken nonces
        # (lower nonces go first), so a count per sender says which are chosen.
        taken_per_sender: dict[Address, int] = {}
        for sender in sorted(self.priority_senders):
            by_nonce = self._by_sender.get(sender, {})
            for position, nonce in enumerate(self._untaken_nonces.get(sender, ())):
                member = self._entries[by_nonce[nonce]].checked
                if len(chosen) >= max_txs or total + len(member.encoded) > max_bytes:
                    return chosen
                chosen.append(member)
                total += len(member.encoded)
                taken_per_sender[sender] = position + 1
        for hash_ in self._untaken:
            checked = self._entries[hash_].checked
            if checked.envelope is not None:  # no nonce order: arrival order
                if len(chosen) >= max_txs or total + len(checked.encoded) > max_bytes:
                    return chosen
                chosen.append(checked)
                total += len(checked.encoded)
                continue
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
            if entry.checked.envelope is None:
                insort(
                    self._untaken_nonces.setdefault(entry.checked.sender, []), entry.checked.nonce
                )
            returned = True
        if returned:
            order = sorted(self._untaken, key=lambda h: self._entries[h].arrival)
            self._untaken = dict.fromkeys(order)

    def _forget_untaken(self, checked: CheckedTx) -> None:
        del self._untaken[checked.hash]
        self._untaken_bytes -= len(checked.encoded)
        if checked.envelope is not None:
            return
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

    def on_committed(self, tx_hashes: Iterable[bytes], senders: Iterable[Address]) -> list[bytes]:
        """Forget committed transactions; then drop pending transactions of the
        blocks' senders whose nonce the committed state now refuses (another
        transaction with that nonce committed, or the window moved past it).
        Returns every hash removed from the pool (the store forgets them too)."""
        hashes = tx_hashes if isinstance(tx_hashes, list) else list(tx_hashes)
        self._remember_all_committed(hashes)
        entries, remove = self._entries, self._remove
        removed = [hash_ for hash_ in hashes if hash_ in entries and remove(hash_)]
        by_sender = self._by_sender
        # Most senders of a block have nothing else pending here: skipped at once.
        for sender in [s for s in set(senders) if s in by_sender]:
            by_nonce = by_sender.get(sender)
            if not by_nonce:
                continue
            window = self.accounts.nonce_window(sender)
            for nonce, hash_ in list(by_nonce.items()):
                if isinstance(nonce_rejection(window, nonce), NonceUsed):
                    self._drop(hash_, "its nonce was used by another committed transaction")
                    removed.append(hash_)
        return removed

    def discard(self, hashes: Iterable[bytes]) -> None:
        """Forget transactions that were never acknowledged (their write failed)."""
        for hash_ in hashes:
            self._remove(hash_)

    def _remember_all_committed(self, hashes: list[bytes]) -> None:
        """`_remember_committed` of each of `hashes` in turn, in one update and
        one trim: the same hashes remembered, in the same order, within the
        same bound (the most recent `recent_committed`)."""
        fresh = dict.fromkeys(hashes)
        if len(fresh) != len(hashes):  # a hash twice: its last time counts
            for hash_ in hashes:
                self._remember_committed(hash_)
            return
        recent = self._recent_committed
        if not recent.keys().isdisjoint(fresh):
            for hash_ in hashes:  # remembered again: moves to the newest end
                recent.pop(hash_, None)
        recent.update(fresh)
        excess = len(recent) - self.limits.recent_committed
        if excess > 0:  # the oldest go, as one at a time would have dropped them
            deque(map(recent.popitem, repeat(False, excess)), maxlen=0)

    def _remember_committed(self, hash_: bytes) -> None:
        self._recent_committed[hash_] = None
        self._recent_committed.move_to_end(hash_)
        while len(self._recent_committed) > self.limits.recent_committed:
            self._recent_committed.popitem(last=False)

    def _drop(self, hash_: bytes, why: str) -> None:
        if self._remove(hash_):
            self.dropped[hash_] = why
            while len(self.dropped) > self.limits.recent_committed:
                self.dropped.popitem(last=False)

    def _remove(self, hash_: bytes) -> bool:
        entry = self._entries.pop(hash_, None)
        if entry is None:
            return False
        checked = entry.checked
        size = len(checked.encoded)
        self._bytes -= size
        if not entry.batched:
            self._forget_untaken(checked)
        if checked.envelope is not None:
            count = self._envelopes_by_sender[checked.sender] - 1
            if count:
                self._envelopes_by_sender[checked.sender] = count
            else:
                del self._envelopes_by_sender[checked.sender]
            del self._envelope_us[checked.envelope.ciphertext.u]
        else:
            by_nonce = self._by_sender[checked.sender]
            del by_nonce[checked.nonce]
            if not by_nonce:
                del self._by_sender[checked.sender]
        fees = self._pending_fees.get(checked.sender, 0) - checked.fee
        if fees > 0:
            self._pending_fees[checked.sender] = fees
        else:
            self._pending_fees.pop(checked.sender, None)
        return True

    # ---- inspection ------------------------------------------------------------------

    def pending(self) -> list[bytes]:
        """Encoded pending transactions (batched or not) in arrival order."""
        return [e.checked.encoded for e in self._entries.values()]

    def pending_fees(self, sender: Address) -> int:
        return self._pending_fees.get(sender, 0)

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
