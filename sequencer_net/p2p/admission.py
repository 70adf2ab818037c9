"""Who may keep an inbound connection, decided the moment its handshake names it.

py-libp2p accepts established connections from any key and checks nothing
until a stream opens; 310 connections from random keys once held every slot
(the default resource manager allows 256 established inbound) and locked a
validator out. `GatedSwarm` (host.py) asks `InboundAdmission` right after the
Noise handshake, before the muxer starts, so a refused dialer never holds an
established slot, never gets a stream and costs one handshake.

The policy, pure and independent of libp2p:
- validators of the configured set are always admitted (libp2p trims a peer
  to `CONNECTIONS_PER_PEER` connections after its 20 s grace period);
- peers outside the set share `max_non_validator_connections` slots, one
  connection each (0 today: all refused);
- a connection presenting this node's own key is refused.

`PendingHandshakes` bounds the connections still in their handshake, when
nobody can tell who is dialing: when full, the oldest is dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

from sequencer_net.p2p.stats import RefusalReason

PeerT = TypeVar("PeerT", bound=Hashable)


@dataclass(frozen=True)
class Admitted(Generic[PeerT]):
    """A ticket for one admitted connection; give it back with `release`."""

    peer: PeerT
    validator: bool


class InboundAdmission(Generic[PeerT]):
    """Counts admitted connections and refuses the ones the policy does not allow."""

    def __init__(
        self, *, me: PeerT, validators: Collection[PeerT], non_validator_slots: int
    ) -> None:
        if non_validator_slots < 0:
            raise ValueError("non_validator_slots must be >= 0")
        self._me = me
        self._validators = frozenset(validators) - {me}
        self._slots = non_validator_slots
        self._non_validators: set[PeerT] = set()

    @property
    def non_validators_admitted(self) -> int:
        return len(self._non_validators)

    def is_validator(self, peer: PeerT) -> bool:
        return peer in self._validators

    def admit(self, peer: PeerT) -> Admitted[PeerT] | RefusalReason:
        """Admit a connection from `peer` (counted until `release`), or say why not."""
        if peer == self._me:
            return RefusalReason.SELF
        if peer in self._validators:
            return Admitted(peer, validator=True)
        if self._slots == 0:
            return RefusalReason.NOT_A_VALIDATOR
        if peer in self._non_validators:
            return RefusalReason.DUPLICATE_NON_VALIDATOR
        if len(self._non_validators) >= self._slots:
            return RefusalReason.NON_VALIDATOR_SLOTS_FULL
        self._non_validators.add(peer)
        return Admitted(peer, validator=False)

    def release(self, ticket: Admitted[PeerT]) -> None:
        """The admitted connection has closed."""
        if not ticket.validator:
            self._non_validators.discard(ticket.peer)


class PendingHandshakes:
    """At most `capacity` inbound handshakes at once; a new one evicts the oldest.

    Each handshake runs inside the cancel scope `slot()` yields; eviction
    cancels the oldest scope, which makes that handshake's task close its
    socket and return.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("PendingHandshakes capacity must be at least 1")
        self._capacity = capacity
        self._scopes: OrderedDict[int, trio.CancelScope] = OrderedDict()
        self._next = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._scopes)

    @contextmanager
    def slot(self) -> Iterator[trio.CancelScope]:
        """Reserve a place (evicting the oldest if full); yields the scope to run in."""
        while len(self._scopes) >= self._capacity:
            _, oldest = self._scopes.popitem(last=False)
            oldest.cancel()
            self.evicted += 1
        key = self._next
        self._next += 1
        scope = trio.CancelScope()
        self._scopes[key] = scope
        try:
            yield scope
        finally:
            self._scopes.pop(key, None)
