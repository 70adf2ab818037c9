"""A hand-built chain whose validator set rotates: epoch 0 signs heights
1..LAST in the chain's domain, epoch 1 from LAST + 1 in its own, with one
member replaced (indices shift). Real keys sign every certificate; tail blocks
(empty payloads above LAST, signed by epoch 0) prove epoch 0's last blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensus.crypto import PrivateKey
from consensus.encoding import block_hash, payload_hash, vote_digest
from consensus.epochs import EpochSchedule, epoch_domain_separator
from consensus.messages import Block, VoteKind
from consensus.types import Digest, Height, ValidatorIndex, View
from sequencer_net.home.genesis import Genesis, LocalEpoch, make_local_genesis
from tests.client.chain import Chain, clone, header, hx, validator_keys

LAST = 3
"""Epoch 0's last height; epoch 1 starts at LAST + 1."""

MEMBERS = (0, 1, 2, 3), (1, 2, 3, 4)
"""Each epoch's members, as indices into `epoch_genesis`'s keys."""


def epoch_genesis(last: int = LAST) -> tuple[Genesis, list[PrivateKey]]:
    """A genesis of two epochs: keys 0..3 up to `last`, keys 1..4 after it."""
    keys = validator_keys(5, seed=7)
    genesis = make_local_genesis(
        [k.secret for k in keys],
        chain_id=31337,
        base_p2p_port=1,
        base_api_port=101,
        genesis_time_ms=1_700_000_000_000,
        initial=MEMBERS[0],
        epochs=(LocalEpoch(last + 1, MEMBERS[1]),),
    )
    return genesis, keys


@dataclass
class EpochChain(Chain):
    """`Chain` whose certificates are signed by the set of the block's epoch, in
    its domain (`epoch=` overrides both, `keys=` the signing keys)."""

    genesis: Genesis | None = None

    def __post_init__(self) -> None:
        if self.genesis is None:
            self.genesis, all_keys = epoch_genesis()
        else:
            all_keys = validator_keys(5, seed=7)
        self.epoch_keys = [[all_keys[i] for i in members] for members in MEMBERS]
        self.keys = self.epoch_keys[0]
        self.domain = self.genesis.domain()
        super().__post_init__()
        self.schedule: EpochSchedule = self.genesis.schedule()

    def certificate(
        self,
        digest: bytes,
        view: int,
        height: int,
        signers: list[int] | None = None,
        keys: list[PrivateKey] | None = None,
        kind: int = VoteKind.FINALIZE,
        epoch: int | None = None,
    ) -> dict[str, Any]:
        number = self.schedule.epoch_of(height).number if epoch is None else epoch
        keys = keys or self.epoch_keys[number]
        signers = sorted(signers if signers is not None else range(len(keys)))
        separator = epoch_domain_separator(self.domain.separator(), number)
        vote = vote_digest(separator, kind, View(view), Height(height), Digest(digest))
        return {
            "kind": int(kind),
            "view": view,
            "height": height,
            "block": hx(digest),
            "signers": signers,
            "signatures": [hx(keys[i].sign_digest(vote)) for i in signers],
        }

    def tail(self, count: int, payload: bytes = b"") -> list[Block]:
        """`count` blocks of epoch 0's tail on top of the current tip (its last
        block), lowest first; the chain's tip does not move (epoch 1 builds on
        the last block, not on the tail)."""
        blocks: list[Block] = []
        parent = self.parent
        for height in range(self.height + 1, self.height + count + 1):
            block = Block(
                view=height + 2, height=height, parent=parent, proposer=0, payload=payload
            )
            blocks.append(block)
            parent = block.digest()
        return blocks

    def tail_certificate(self, tail: list[Block], epoch: int = 0) -> dict[str, Any]:
        top = tail[-1]
        return self.certificate(top.digest(), top.view, top.height, epoch=epoch)


def block_header(block: Block) -> dict[str, Any]:
    """A tail block as a `finalized_by` chain carries it."""
    return {
        "view": block.view,
        "height": block.height,
        "parent": hx(block.parent),
        "proposer": block.proposer,
        "payload_hash": hx(payload_hash(block.payload)),
    }


def proven_by_tail(
    messages: list[dict[str, Any]], tail: list[Block], certificate: dict[str, Any]
) -> list[dict[str, Any]]:
    """The messages of an epoch's last blocks (`messages`, up to its last
    height) committed under its tail's `certificate`: each carries the tail
    headers (newest first) and the headers of the blocks above it."""
    out = [clone(m) for m in messages]
    tail_headers = [block_header(b) for b in reversed(tail)]
    for index, message in enumerate(out):
        above = messages[index + 1 :]
        message["certificate"] = None
        message["finalized_by"] = {
            "certificate": clone(certificate),
            "chain": tail_headers + [header(m) for m in reversed(above)],
        }
    return out


def digest_of(message: dict[str, Any]) -> bytes:
    block = message["block"]
    return block_hash(
        View(block["view"]),
        Height(block["height"]),
        Digest(bytes.fromhex(block["parent"][2:])),
        bytes.fromhex(block["payload"][2:]),
        ValidatorIndex(block["proposer"]),
    )
