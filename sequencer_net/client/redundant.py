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
`/v1/validators`, which trusts that node). Nodes are tried in turn, starting
one further along at each call so that the load spreads; a node that is down
or overloaded is skipped, one that already holds the transaction (409
`duplicate`, a retried call) counts as having taken it, and a refusal that no
node would answer differently (an invalid transaction, a used nonce) ends the
call at once with that error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sequencer_net.client.errors import SeqnetApiError
from sequencer_net.client.http import DEFAULT_TIMEOUT_S, SeqnetClient, hash_text
from sequencer_net.mempool.transaction import tx_hash as tx_hash_of

if TYPE_CHECKING:
    from sequencer_net.home.genesis import Genesis


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


class RedundantSubmitter:
    """Blocking; one `SeqnetClient` per URL (pass `clients` to supply them)."""

    def __init__(
        self,
        urls: Sequence[str] = (),
        *,
        genesis: Genesis | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        clients: Sequence[SeqnetClient] | None = None,
    ) -> None:
        self.clients = (
            list(clients)
            if clients is not None
            else [SeqnetClient(url, timeout=timeout) for url in urls]
        )
        if not self.clients:
            raise ValueError("no node to submit to")
        self._genesis = genesis
        self._powers: list[int] | None = None
        self._index_of: dict[int, int | None] = {}
        self._next = 0

    def __enter__(self) -> RedundantSubmitter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def _weights(self) -> list[int]:
        if self._powers is None:
            if self._genesis is not None:
                self._powers = [v.weight for v in self._genesis.validators]
            else:
                self._powers = _weights_of(self._first_answer(lambda c: c.validators()))
        return self._powers

    def _first_answer(self, ask: Any) -> Any:
        errors = []
        for client in self.clients:
            try:
                return ask(client)
            except SeqnetApiError as exc:
                errors.append(f"{client.base_url}: {exc}")
        raise SeqnetApiError(0, "unreachable", "; ".join(errors))

    def _power_of(self, position: int) -> int:
        """The power of the validator behind client `position` (0 for a full node)."""
        if position not in self._index_of:
            status = self.clients[position].status()
            index = status.get("validator_index")
            valid = isinstance(index, int) and not isinstance(index, bool)
            self._index_of[position] = index if valid else None
        index = self._index_of[position]
        weights = self._weights()
        return weights[index] if index is not None and 0 <= index < len(weights) else 0

    def submit(self, encoded: bytes) -> RedundantResult:
        """Submit to nodes in turn until validators holding more than a third of
        the power acknowledged it; NotEnoughValidators if all were tried first."""
        needed = needed_power(sum(self._weights()))
        start, count = self._next, len(self.clients)
        self._next = (self._next + 1) % count
        accepted: list[str] = []
        power = 0
        tx_hash: str | None = None
        errors: list[str] = []
        for step in range(count):
            position = (start + step) % count
            client = self.clients[position]
            try:
                node_power = self._power_of(position)  # 0 for a full node: it only relays
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
            accepted.append(client.base_url)
            power += node_power
            if power >= needed:
                return RedundantResult(tx_hash, tuple(accepted), power)
        raise NotEnoughValidators(tx_hash, power, needed, errors)


def _weights_of(answer: dict[str, Any]) -> list[int]:
    listed = answer.get("validators")
    if not isinstance(listed, list) or not listed:
        raise SeqnetApiError(200, "bad_response", "/v1/validators lists no validators")
    weights = []
    for position, item in enumerate(listed):
        weight = item.get("weight") if isinstance(item, dict) else None
        index = item.get("index") if isinstance(item, dict) else None
        if index != position or not isinstance(weight, int) or isinstance(weight, bool):
            raise SeqnetApiError(200, "bad_response", "/v1/validators has a malformed entry")
        if weight <= 0:
            raise SeqnetApiError(200, "bad_response", "/v1/validators has a weight below 1")
        weights.append(weight)
    return weights
