"""Submit a transaction to enough validators that one honest validator holds it.

One validator can leave a client's transaction out of its batches for as long
as it likes; the consensus only stops a leader from leaving out batches other
validators certified. A client that hands its transaction to validators
holding more than a third of the voting power (f + 1 of 3f + 1 equal
validators) has given it to at least one honest validator, whose batch the
chain must take in (docs/consensus.md). The copies cost nothing at execution:
a block executes each transaction hash once, however many batches carry it.

    with RedundantSubmitter(urls, genesis=load_genesis(path)) as submitter:
        result = submitter.submit(encoded)   # result.hash, result.accepted_by

Each node's validator index comes from its own `/v1/status`; the powers come
from the genesis the caller pins (or, without one, from the first node's
`/v1/validators`, which trusts that node). On a chain whose validator set
changes (genesis `epochs`), power is counted in the newest epoch any node's
status names: a validator outside that epoch's set counts nothing (it still
takes the transaction and hands it to a member), and "more than a third" is
of that epoch's total. A node's status is read again after STATUS_REFRESH_S,
so a long-lived submitter follows the chain into later epochs. Nodes are tried in turn, starting
one further along at each call so that the load spreads; a node that is down
or overloaded is skipped, one that already holds the transaction (409
`duplicate`, a retried call) counts as having taken it, and a refusal that no
node would answer differently (an invalid transaction, a used nonce) ends the
call at once with that error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sequencer_net.client.errors import SeqnetApiError
from sequencer_net.client.http import DEFAULT_TIMEOUT_S, SeqnetClient, hash_text
from sequencer_net.mempool.transaction import tx_hash as tx_hash_of

if TYPE_CHECKING:
    from sequencer_net.home.genesis import Genesis


STATUS_REFRESH_S: Final = 10.0
"""How long a node's status (its validator index and epoch) is trusted before
it is read again."""


class NotEnoughValidators(SeqnetApiError):
    """Fewer than more-than-a-third of the power took the transaction."""

    def __init__(self, tx_hash: str | None, power: int, needed: int, errors: list[str]) -> None:
        detail = "; ".join(errors) if errors else "no node refused it"
        super().__init__(
            0,
            "not_enough_validators",
            f"validators holding {power} of the power took it, more than {needed - 1} is "
            f"needed ({detail})",
        )
        self.tx_hash = tx_hash
        self.power = power
        self.needed = needed


@dataclass(frozen=True, slots=True)
class RedundantResult:
    hash: str
    accepted_by: tuple[str, ...]
    """The URLs of the nodes that acknowledged it (stored durably there)."""
    power: int
    """The voting power of the validators among them."""


def needed_power(total: int) -> int:
    """The least power that includes an honest validator: f + 1, f = (total - 1) // 3."""
    return (total - 1) // 3 + 1


@dataclass(frozen=True, slots=True)
class PowerTable:
    """Who holds how much power in each epoch, by validator index (the index a
    node's `/v1/status` reports: its place among every member of any epoch)."""

    members: tuple[Hashable, ...]
    """Each index's validator (its address; its index on a chain with one set)."""
    epochs: tuple[dict[Hashable, int], ...]
    """Epoch number -> the weight of each validator in that epoch's set."""

    @classmethod
    def of_genesis(cls, genesis: Genesis) -> PowerTable:
        epochs: tuple[dict[Hashable, int], ...] = tuple(
            {v.address: v.weight for v in genesis.epoch_validators(number)}
            for number in range(len(genesis.epochs) + 1)
        )
        return cls(tuple(v.address for v in genesis.members()), epochs)

    def last_epoch(self) -> int:
        return len(self.epochs) - 1

    def total(self, epoch: int) -> int:
        return sum(self.epochs[min(epoch, self.last_epoch())].values())

    def power(self, index: int | None, epoch: int) -> int:
        """The power of validator `index` in `epoch` (0: a full node, or a
        validator outside that epoch's set)."""
        if index is None or not 0 <= index < len(self.members):
            return 0
        return self.epochs[min(epoch, self.last_epoch())].get(self.members[index], 0)


@dataclass(slots=True)
class _NodeStatus:
    index: int | None
    epoch: int
    read_at: float


class RedundantSubmitter:
    """Blocking; one `SeqnetClient` per URL (pass `clients` to supply them)."""

    def __init__(
        self,
        urls: Sequence[str] = (),
        *,
        genesis: Genesis | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        clients: Sequence[SeqnetClient] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = (
            list(clients)
            if clients is not None
            else [SeqnetClient(url, timeout=timeout) for url in urls]
        )
        if not self.clients:
            raise ValueError("no node to submit to")
        self._table = PowerTable.of_genesis(genesis) if genesis is not None else None
        self._status: dict[int, _NodeStatus] = {}
        self._epoch = 0
        """The newest epoch any node's status named."""
        self._clock = clock
        self._next = 0

    def __enter__(self) -> RedundantSubmitter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def _powers(self) -> PowerTable:
        if self._table is None:
            self._table = _table_of(self._first_answer(lambda c: c.validators()))
        return self._table

    def _first_answer(self, ask: Any) -> Any:
        errors = []
        for client in self.clients:
            try:
                return ask(client)
            except SeqnetApiError as exc:
                errors.append(f"{client.base_url}: {exc}")
        raise SeqnetApiError(0, "unreachable", "; ".join(errors))

    def _index_of(self, position: int) -> int | None:
        """The validator index behind client `position` (None for a full node),
        from its status, read again once STATUS_REFRESH_S old; the epoch it
        names raises the submitter's."""
        now = self._clock()
        known = self._status.get(position)
        if known is None or now - known.read_at >= STATUS_REFRESH_S:
            status = self.clients[position].status()
            index = status.get("validator_index")
            epoch = status.get("epoch", 0)
            known = _NodeStatus(
                index if _is_uint(index) else None, epoch if _is_uint(epoch) else 0, now
            )
            self._status[position] = known
            self._epoch = max(self._epoch, known.epoch)
        return known.index

    def submit(self, encoded: bytes) -> RedundantResult:
        """Submit to nodes in turn until validators holding more than a third of
        the current epoch's power acknowledged it; NotEnoughValidators if all
        were tried first."""
        table = self._powers()
        start, count = self._next, len(self.clients)
        self._next = (self._next + 1) % count
        accepted: list[tuple[str, int | None]] = []
        tx_hash: str | None = None
        errors: list[str] = []

        def power() -> int:  # counted in the newest epoch known now
            return sum(table.power(index, self._epoch) for _, index in accepted)

        for step in range(count):
            position = (start + step) % count
            client = self.clients[position]
            try:
                index = self._index_of(position)  # a full node: None, it only relays
                answered = client.submit(encoded)
            except SeqnetApiError as exc:
                if exc.code == "duplicate":  # the node holds it already (an earlier call)
                    answered = hash_text(tx_hash_of(encoded))
                elif exc.retryable:
                    errors.append(f"{client.base_url}: {exc}")
                    continue
                else:
                    raise
            tx_hash = tx_hash or answered
            accepted.append((client.base_url, index))
            if power() >= needed_power(table.total(self._epoch)):
                return RedundantResult(tx_hash, tuple(url for url, _ in accepted), power())
        raise NotEnoughValidators(tx_hash, power(), needed_power(table.total(self._epoch)), errors)


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _weights_of(listed: object) -> list[tuple[str | None, int]]:
    """(address, weight) of each entry of a /v1/validators list, checked."""
    if not isinstance(listed, list) or not listed:
        raise SeqnetApiError(200, "bad_response", "/v1/validators lists no validators")
    out: list[tuple[str | None, int]] = []
    for position, item in enumerate(listed):
        weight = item.get("weight") if isinstance(item, dict) else None
        index = item.get("index") if isinstance(item, dict) else None
        if index != position or not isinstance(weight, int) or isinstance(weight, bool):
            raise SeqnetApiError(200, "bad_response", "/v1/validators has a malformed entry")
        if weight <= 0:
            raise SeqnetApiError(200, "bad_response", "/v1/validators has a weight below 1")
        address = item.get("address")
        out.append((address.lower() if isinstance(address, str) else None, weight))
    return out


def _table_of(answer: dict[str, Any]) -> PowerTable:
    """The power table a /v1/validators answer describes: epoch 0's list alone,
    or, with `epochs`, every epoch's set, members numbered by first appearance."""
    epochs = answer.get("epochs")
    if epochs is None:
        weights = _weights_of(answer.get("validators"))
        return PowerTable(tuple(range(len(weights))), ({i: w for i, (_, w) in enumerate(weights)},))
    if not isinstance(epochs, list) or not epochs:
        raise SeqnetApiError(200, "bad_response", "/v1/validators has malformed epochs")
    members: dict[Hashable, None] = {}
    sets: list[dict[Hashable, int]] = []
    for number, epoch in enumerate(epochs):
        if not isinstance(epoch, dict) or epoch.get("number") != number:
            raise SeqnetApiError(200, "bad_response", "/v1/validators has malformed epochs")
        weights = _weights_of(epoch.get("validators"))
        if any(address is None for address, _ in weights):
            raise SeqnetApiError(200, "bad_response", "/v1/validators names no address")
        sets.append({address: w for address, w in weights})
        members.update((address, None) for address, _ in weights)
    return PowerTable(tuple(members), tuple(sets))
