"""The proof of a block's order seed: the t coin shares it was combined from.

A block's order seed (fairness/order.py) is the threshold coin on
`order_seed_tag(chain_id, height, block digest)`. Whoever holds t coin shares
whose proofs verify can combine it, and any t verified shares give the same
seed (tdh2.py, "Threshold coin"). So the t shares a node combined are a proof
of the seed that anyone holding the epoch's public key set can check, with
no trust in the node that sends them:

    verify_order_seed(tag, shares, keys)
        exactly t shares                      else WrongShareCount
        indices distinct                      else DuplicateShareIndex
        each index a shareholder of `keys`    else UnknownShareIndex
        each share's Chaum-Pedersen proof     else InvalidCoinShare
          against Y_index on H(tag)             (a forged value, a share of
                                                 another index or of another
                                                 block's coin)
        -> combine_verified_coin(tag, ...)    the 32-byte seed

Stored form (`encode_order_proof`): a canonical msgpack array of the encoded
shares (each an array [index, value, e, f]), at most MAX_ORDER_PROOF_BYTES,
checked before decoding.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Final

import msgspec

from sequencer_net.canonical import decode_strict

from .group import Point
from .limits import MAX_SHAREHOLDERS
from .tdh2 import CoinShare, PublicKeySet, accept_coin_share, combine_verified_coin

COIN_SHARE_BYTES: Final = 107
"""One encoded CoinShare at most: the array header (1), the index (at most 3
bytes for MAX_SHAREHOLDERS), a 33-byte point and two 32-byte scalars with
their 2-byte prefixes (103); 105 bytes for an index below 128."""

MAX_ORDER_PROOF_BYTES: Final = 3 + MAX_SHAREHOLDERS * COIN_SHARE_BYTES
"""An encoded proof: the array header (3) and at most one share per
shareholder (t <= n <= MAX_SHAREHOLDERS): about 110 KB at the bound, 211
bytes for t = 2."""


class OrderProofError(ValueError):
    """Coin shares that do not prove an order seed; subclasses name why."""


class MalformedOrderProof(OrderProofError):
    """Bytes that are not a canonical encoding of a list of coin shares."""


class WrongShareCount(OrderProofError):
    """Not exactly t shares (fewer cannot combine; more are not what was combined)."""


class DuplicateShareIndex(OrderProofError):
    """Two shares of one shareholder."""


class UnknownShareIndex(OrderProofError):
    """A share index that names no shareholder of the key."""


class InvalidCoinShare(OrderProofError):
    """A share whose proof does not verify against its shareholder's key on
    this block's coin."""


_ShareList = Annotated[list[CoinShare], msgspec.Meta(max_length=MAX_SHAREHOLDERS)]
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_ShareList)


def encode_order_proof(shares: Sequence[CoinShare]) -> bytes:
    """The stored form of a seed's proof: the shares, in the given order."""
    if len(shares) > MAX_SHAREHOLDERS:
        raise ValueError(f"an order proof holds at most {MAX_SHAREHOLDERS} shares")
    return _encoder.encode(list(shares))


def decode_order_proof(data: bytes) -> tuple[CoinShare, ...]:
    """Size (before parsing), structure and canonical form; the shares' proofs
    are `verify_order_seed`'s."""
    if not isinstance(data, bytes):
        raise MalformedOrderProof("expected bytes")
    shares = decode_strict(
        data,
        _decoder,
        limit=MAX_ORDER_PROOF_BYTES,
        what="order proof",
        malformed=MalformedOrderProof,
    )
    return tuple(shares)


def verify_order_seed(tag: bytes, shares: Sequence[CoinShare], keys: PublicKeySet) -> bytes:
    """The seed `shares` prove for the coin named `tag` under `keys`; raises
    the OrderProofError subclass of the first check that fails (see the module
    docstring). Costs t proof checks (4 scalar multiplications each) and one
    hash to the curve."""
    if len(shares) != keys.threshold:
        raise WrongShareCount(
            f"an order proof holds exactly {keys.threshold} coin shares, not {len(shares)}"
        )
    values: dict[int, Point] = {}
    for position, share in enumerate(shares):
        if share.index in values:
            raise DuplicateShareIndex(f"share {position} repeats shareholder {share.index}")
        key = keys.verification_key(share.index)
        if key is None:
            raise UnknownShareIndex(
                f"share {position} names shareholder {share.index} of {keys.size}"
            )
        value = accept_coin_share(key, tag, share)
        if value is None:
            raise InvalidCoinShare(
                f"share {position} (shareholder {share.index}) does not verify on this coin"
            )
        values[share.index] = value
    return combine_verified_coin(tag, values, keys.threshold)
