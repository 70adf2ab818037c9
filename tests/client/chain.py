"""A hand-built chain of finalized blocks and their subscription messages.

Real keys sign real finalization certificates; each block's payload carries
the namespace root of its transactions, laid out as the node writes it
(timestamp, state height, state root, batch digests, namespace root).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import msgspec

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain, block_hash, payload_hash
from consensus.messages import VoteKind
from consensus.types import Digest, Height, Validator, ValidatorIndex, ValidatorSet, View
from consensus.verifier import SignatureVerifier
from sequencer_net.mempool.transaction import (
    decode_transaction,
    encode_transaction,
    sign_transaction,
)
from sequencer_net.payload import namespaces as ns

NAMESPACE = 7
OTHER = 9


def hx(data: bytes) -> str:
    return "0x" + data.hex()


def validator_keys(n: int, seed: int = 1) -> list[PrivateKey]:
    return [PrivateKey(keccak256(b"subscribe-test" + bytes([seed, i]))) for i in range(n)]


def encode_payload_with_root(
    timestamp_ms: int, state_height: int, state_root: bytes, root: bytes
) -> bytes:
    return msgspec.msgpack.encode([timestamp_ms, state_height, state_root, [], root])


def render_entry(proof: ns.EntryProof | None) -> dict[str, Any] | None:
    if proof is None:
        return None
    e = proof.entry
    return {
        "index": proof.index,
        "entry": {"namespace": e.namespace, "count": e.count, "root": hx(e.root)},
        "path": [hx(h) for h in proof.path],
    }


def render_proof(proof: ns.NamespaceProof) -> dict[str, Any]:
    return {
        "namespace": proof.namespace,
        "size": proof.size,
        "present": render_entry(proof.present),
        "below": render_entry(proof.below),
        "above": render_entry(proof.above),
    }


@dataclass
class Chain:
    """n validators with equal weight; `block(txs)` appends a finalized block."""

    n: int = 4
    keys: list[PrivateKey] = field(default_factory=list)
    domain: Domain = field(default_factory=lambda: Domain(31337, bytes(20), keccak256(b"g")))
    parent: bytes = bytes(32)
    height: int = 0
    sender: PrivateKey = field(default_factory=lambda: PrivateKey(keccak256(b"sender")))
    nonce: int = 0

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = validator_keys(self.n)
        self.validators = ValidatorSet([Validator(k.address, 1) for k in self.keys])
        self.signatures = SignatureVerifier(self.domain.separator())

    def tx(self, namespace: int = NAMESPACE, data: bytes | None = None) -> bytes:
        body = data if data is not None else f"tx-{self.nonce}".encode()
        tx = sign_transaction(self.sender, self.domain, self.nonce, namespace, 1, body)
        self.nonce += 1
        return encode_transaction(tx)

    def certificate(
        self,
        digest: bytes,
        view: int,
        height: int,
        signers: list[int] | None = None,
        keys: list[PrivateKey] | None = None,
        kind: int = VoteKind.FINALIZE,
    ) -> dict[str, Any]:
        signers = sorted(signers if signers is not None else range(self.n))
        keys = keys or self.keys
        vote = self.signatures.vote_digest(kind, view, height, digest)
        return {
            "kind": int(kind),
            "view": view,
            "height": height,
            "block": hx(digest),
            "signers": signers,
            "signatures": [hx(keys[i].sign_digest(vote)) for i in signers],
        }

    def block(self, txs: list[bytes], namespace: int = NAMESPACE) -> dict[str, Any]:
        """The subscription message for a new block holding `txs` (any namespaces)."""
        self.height += 1
        height, view, proposer, parent = (
            self.height,
            self.height + 2,
            self.height % self.n,
            self.parent,
        )
        pairs = [(decode_transaction(t).namespace, keccak256(t)) for t in txs]
        state_root = keccak256(b"state" + height.to_bytes(8, "big"))
        payload = encode_payload_with_root(
            1_700_000_000_000 + height, height - 1, state_root, ns.namespace_root(pairs)
        )
        digest = block_hash(
            View(view), Height(height), Digest(parent), payload, ValidatorIndex(proposer)
        )
        self.parent = digest
        mine = [t for t in txs if decode_transaction(t).namespace == namespace]
        return {
            "type": "block",
            "height": height,
            "block": {
                "view": view,
                "height": height,
                "parent": hx(parent),
                "proposer": proposer,
                "payload": hx(payload),
                "hash": hx(digest),
            },
            "certificate": self.certificate(digest, view, height, signers=[0, 1, 2]),
            "namespace": namespace,
            "transactions": [hx(t) for t in mine],
            "proof": render_proof(ns.namespace_proof(pairs, namespace)),
        }


def clone(message: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(message)


def header(message: dict[str, Any]) -> dict[str, Any]:
    """A block message's block as a descendant proof's chain carries it."""
    block = message["block"]
    return {
        "view": block["view"],
        "height": block["height"],
        "parent": block["parent"],
        "proposer": block["proposer"],
        "payload_hash": hx(payload_hash(bytes.fromhex(block["payload"][2:]))),
    }


def finalized_under_last(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages of a run of blocks committed under the last one's certificate,
    as a node holding only that one sends them: each earlier block carries the
    last one's certificate and the headers from it down to the block's child."""
    out = [clone(m) for m in messages]
    top = messages[-1]
    for index, message in enumerate(out[:-1]):
        above = messages[index + 1 :]
        message["certificate"] = None
        message["finalized_by"] = {
            "certificate": clone(top["certificate"]),
            "chain": [header(m) for m in reversed(above)],
        }
    return out
