"""Encrypted transactions: sealing a signed transaction to the network's key.

An encrypted transaction hides a signed transaction's contents until the
block that orders it has committed (docs/fairness.md). The client signs the
transaction as usual, then seals it: encrypts it to the network's threshold
key, bound to its sender, chain, namespace, key epoch and expiry height, and
signs the envelope. The node answers with the envelope's hash, and the
receipt (of the inner transaction, or `FailedDecryption`) is found by it.

    from sequencer_net.client import SeqnetClient, dex_transaction
    from sequencer_net.client.encrypted import NetworkKey, seal_transaction
    with SeqnetClient(url) as node:
        network = NetworkKey.from_validators(node.validators())
        inner = dex_transaction(key, domain, nonce=0, action=order)
        wire = seal_transaction(key, domain, inner, network, expiry_height=height + 100)
        print(node.wait_committed(node.submit(wire))["receipt"])

Pin the key from a genesis file you trust where you can (`NetworkKey.from_genesis`):
a node that lies about it can read what you seal to a key of its own.

A chain with validator-set epochs has a key per epoch, and a node accepts only
envelopes sealed to the key of the epoch its next block is in; one that
commits in another epoch is refused undecrypted (docs/fairness.md, "A key per
validator-set epoch"). `NetworkKeys` holds every epoch's key and picks the one
for a height:

    keys = NetworkKeys.from_genesis(genesis)          # or .from_validators(...)
    height = node.status()["height"] + 1
    wire = seal_transaction(key, domain, inner, keys.at(height),
                            expiry_height=keys.clamp_expiry(height, height + 100))
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from consensus.crypto import PrivateKey
from consensus.encoding import Domain
from sequencer_net.fairness.envelope import seal
from sequencer_net.fairness.group import Point, RandomBytes, decode_point
from sequencer_net.home.genesis import Genesis
from sequencer_net.mempool.encrypted import encode_encrypted
from sequencer_net.mempool.transaction import decode_transaction


class NoNetworkKey(ValueError):
    """The chain has no threshold key: encryption is off."""


@dataclass(frozen=True, slots=True)
class NetworkKey:
    public_key: Point
    key_epoch: int

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> NetworkKey:
        if genesis.threshold is None:
            raise NoNetworkKey("the genesis has no threshold section: encryption is off")
        return cls(decode_point(genesis.threshold.public_key), genesis.threshold.key_epoch)

    @classmethod
    def from_validators(cls, document: dict[str, Any]) -> NetworkKey:
        """From a GET /v1/validators answer."""
        threshold = document.get("threshold")
        if not isinstance(threshold, dict):
            raise NoNetworkKey("the node reports no threshold key: encryption is off")
        public_key = bytes.fromhex(str(threshold["public_key"]).removeprefix("0x"))
        return cls(decode_point(public_key), int(threshold["key_epoch"]))


@dataclass(frozen=True, slots=True)
class EpochKey:
    """The network key of the validator-set epoch starting at `first_height`."""

    first_height: int
    key: NetworkKey


class NetworkKeys:
    """Every validator-set epoch's network key, by first height (the first from
    height 1). A chain whose set never changes has one."""

    def __init__(self, epochs: Sequence[EpochKey]) -> None:
        if not epochs or epochs[0].first_height != 1:
            raise ValueError("the first epoch's key starts at height 1")
        for before, after in itertools.pairwise(epochs):
            if after.first_height <= before.first_height:
                raise ValueError("epoch keys must start at increasing heights")
        self.epochs: tuple[EpochKey, ...] = tuple(epochs)

    def at(self, height: int) -> NetworkKey:
        """The key an envelope ordered at `height` must be sealed to."""
        found = self.epochs[0].key
        for epoch in self.epochs[1:]:
            if epoch.first_height > height:
                break
            found = epoch.key
        return found

    def last_height(self, height: int) -> int | None:
        """The last height of the epoch holding `height` (None: the last epoch)."""
        for epoch in self.epochs:
            if epoch.first_height > height:
                return epoch.first_height - 1
        return None

    def clamp_expiry(self, height: int, expiry_height: int) -> int:
        """`expiry_height`, but no later than the end of `height`'s epoch: past it
        the envelope could only be refused undecrypted, so it may as well expire
        (neither costs a fee)."""
        last = self.last_height(height)
        return expiry_height if last is None else min(expiry_height, last)

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> NetworkKeys:
        if genesis.threshold is None:
            raise NoNetworkKey("the genesis has no threshold section: encryption is off")
        epochs = [EpochKey(1, NetworkKey.from_genesis(genesis))]
        for later in genesis.epochs:
            assert later.threshold is not None  # every epoch has a key when epoch 0 does
            key = NetworkKey(decode_point(later.threshold.public_key), later.threshold.key_epoch)
            epochs.append(EpochKey(later.first_height, key))
        return cls(epochs)

    @classmethod
    def from_validators(cls, document: dict[str, Any]) -> NetworkKeys:
        """From a GET /v1/validators answer: its `threshold` (epoch 0's key, from
        height 1) and, on a chain with epochs, each entry of `epochs` that has
        a `first_height` and a `threshold` of the same shape."""
        first = NetworkKey.from_validators(document)
        epochs = [EpochKey(1, first)]
        for entry in document.get("epochs") or ():
            if not isinstance(entry, dict) or not isinstance(entry.get("threshold"), dict):
                continue
            first_height = int(entry["first_height"])
            if first_height <= 1:
                continue  # epoch 0, already the top-level key
            key = NetworkKey.from_validators({"threshold": entry["threshold"]})
            epochs.append(EpochKey(first_height, key))
        return cls(sorted(epochs, key=lambda e: e.first_height))


def seal_transaction(
    key: PrivateKey,
    domain: Domain,
    encoded_tx: bytes,
    network: NetworkKey,
    *,
    expiry_height: int,
    max_fee: int | None = None,
    rng: RandomBytes | None = None,
) -> bytes:
    """The wire form of `encoded_tx` (signed by `key`) sealed to `network`'s key,
    orderable up to `expiry_height`; `max_fee` (default: the transaction's fee)
    is what the sender pays if the contents turn out invalid."""
    tx = decode_transaction(encoded_tx)
    envelope = seal(
        key,
        domain,
        network.public_key,
        network.key_epoch,
        expiry_height,
        tx.fee if max_fee is None else max_fee,
        tx,
        rng,
    )
    return encode_encrypted(envelope)
