"""Content-blind execution order inside a committed block (docs/fairness.md,
"Content-blind order").

A block's order seed is a threshold coin (tdh2.coin_share / combine_coin) on

    order_seed_tag(chain_id, height, block digest)
        = frame("seqnet/order-seed/v1", word(chain_id), u64(height), digest)

Validators release their coin shares only after the block commits, and any t
verified shares give the same 32-byte seed, so every node gets it and fewer
than t validators cannot know it before commit. `order_block` then fixes the
execution order from the seed and who sent each transaction, never from what
a transaction says nor from where the leader put it:

    forced transactions first, in their given order;
    then every other transaction grouped by sender, the senders ordered by
    keccak(seed || sender) (ties, which need a hash collision, by address),
    each sender's transactions kept in their relative block order (its nonces
    stay in order).

A block draws a seed only if it needs one (`needs_order_seed`): it opens an
envelope (its shares are a round of their own, the coin rides along), or
its non-forced transactions come from two senders or more. A block whose
non-forced transactions all come from one sender (or none) has one order
whatever the seed: forced first, then that sender's in block order, which
is also the order `order_block` gives without a seed. Such a block has no
seed, no coin round and no order proof.

Pure functions: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, Protocol, TypeVar

from consensus.crypto import keccak256
from consensus.encoding import word

from .group import frame
from .limits import MAX_COIN_TAG_BYTES

ORDER_SEED_TAG: Final = b"seqnet/order-seed/v1"

SEED_BYTES: Final = 32


class HasSender(Protocol):
    """A transaction as ordering sees it: who sent it (an envelope's sender is
    known before it is opened), nothing of what it says."""

    @property
    def sender(self) -> bytes: ...


T = TypeVar("T", bound=HasSender)


def order_seed_tag(chain_id: int, height: int, block: bytes) -> bytes:
    """What a block's order coin is named by: the domain, the chain, the height
    and the block's digest (a coin per committed block, never reused)."""
    if len(block) != 32:
        raise ValueError("a block digest is 32 bytes")
    if not 0 <= height < 2**64:
        raise ValueError("height out of range")
    tag = frame(ORDER_SEED_TAG, (word(chain_id), height.to_bytes(8, "big"), block))
    assert len(tag) <= MAX_COIN_TAG_BYTES
    return tag


def sender_rank(seed: bytes, sender: bytes) -> bytes:
    """Where `sender`'s transactions go in a block ordered with `seed`: lower first."""
    return keccak256(seed + sender)


def needs_order_seed(opens_envelopes: bool, transactions: Iterable[HasSender]) -> bool:
    """Whether a block draws an order seed: it opens an envelope, or its
    non-forced `transactions` come from at least two distinct senders.
    Otherwise `order_block` gives the same order for every seed and for
    none, so no seed is drawn (docs/fairness.md, "Content-blind order").
    Stops at the second sender."""
    if opens_envelopes:
        return True
    first: bytes | None = None
    for item in transactions:
        sender = bytes(item.sender)
        if first is None:
            first = sender
        elif sender != first:
            return True
    return False


def order_block(
    seed: bytes | None,
    forced: Sequence[T],
    transactions: Sequence[T],
) -> list[T]:
    """The execution order of a block: `forced` first, in their order, then
    `transactions` grouped by sender, senders by `sender_rank(seed, sender)`,
    each sender's own transactions in their given relative order.

    `seed` None (a chain without a threshold key): the given order, unchanged
    (`forced` then `transactions`): not content-blind."""
    if seed is None:
        return [*forced, *transactions]
    if len(seed) != SEED_BYTES:
        raise ValueError("an order seed is 32 bytes")
    by_sender: dict[bytes, list[T]] = {}
    for item in transactions:
        by_sender.setdefault(bytes(item.sender), []).append(item)
    # (sender_rank(seed, sender), sender) per sender, sorted: its rank, then
    # the address (senders are distinct, so no two entries tie).
    ranked = sorted([(keccak256(seed + sender), sender) for sender in by_sender])
    ordered = list(forced)
    for _, sender in ranked:
        ordered.extend(by_sender[sender])
    return ordered
