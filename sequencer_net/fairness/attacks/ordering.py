"""The execution order of a committed block's transactions, as the attacks see it."""

from __future__ import annotations

from collections.abc import Sequence

from sequencer_net.fairness.order import T, order_block


def execution_order(seed: bytes, forced: Sequence[T], transactions: Sequence[T]) -> list[T]:
    """The order in which execution applies a committed block's transactions:
    the node's own rule (`order_block`, docs/fairness.md, "Content-blind
    order"): forced transactions first, then senders ranked by
    keccak(seed || sender), each sender's transactions in their block order.
    `forced` is what the node passes: the transactions the block's payload
    marks as forced L1 inbox entries, in inbox order (`split_forced`), marks
    voters check against the L1, so no attacker's transaction is among them
    unless its sender paid for an Inbox entry like anyone else.
    The one place the attacks learn it, so a test can swap in another rule."""
    return order_block(seed, forced, transactions)
