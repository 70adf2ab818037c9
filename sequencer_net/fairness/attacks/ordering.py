"""The execution order of a committed block's transactions, as the attacks see it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def execution_order(seed: bytes, forced: Sequence[T], transactions: Sequence[T]) -> list[T]:
    """The order in which execution applies a committed block's transactions:
    its forced transactions, then the others.

    This must be the node's execution order. Today the node executes a block
    in the order its payload names them (batches in payload order, each
    batch's transactions in order), so this returns exactly that and ignores
    `seed`; a content-blind order (senders ordered by keccak(seed || sender)
    with the seed from the threshold coin released after commit) replaces it
    here, in one place, when the node adopts one."""
    del seed
    return [*forced, *transactions]
