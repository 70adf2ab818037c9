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
"""

from __future__ import annotations

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
