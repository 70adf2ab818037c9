"""A full node verifies what validators answer on the follow protocol: every
block must extend its chain and carry a finalization of itself by a quorum of
the genesis validator set. Anything else is refused, counted, and the next
validator is asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from consensus.core import genesis_block
from consensus.crypto import PrivateKey
from consensus.encoding import Domain
from consensus.io import Commit
from consensus.messages import Block, Certificate, VoteKind
from consensus.sim.simulator import validator_key
from consensus.types import Validator, ValidatorSet
from consensus.verifier import SignatureVerifier
from sequencer_net.api.intake import Accepted, Outcome, Refused
from sequencer_net.node.follow import (
    MAX_SUBMIT_BYTES,
    FollowBlocksAnswer,
    FollowBlocksRequest,
    Follower,
    FollowServer,
    ForgedAnswer,
    answer_blocks,
    decode_blocks_answer,
    decode_outcome,
    encode_submit_request,
    verify_blocks,
)
from sequencer_net.node.requests import RequestKind
from sequencer_net.storage.node_store import NodeStore

KEYS = [validator_key(i) for i in range(4)]
OUTSIDERS = [PrivateKey(bytes([0x42 + i]) * 32) for i in range(4)]
VALIDATORS = ValidatorSet([Validator(k.address, 1) for k in KEYS])
GENESIS = genesis_block(b"follow-test")
VERIFIER = SignatureVerifier(
    Domain(chain_id=31337, verifying_contract=bytes(20), genesis_hash=GENESIS.digest()).separator()
)
_encoder = msgspec.msgpack.Encoder()


def certificate(
    block: Block,
    *,
    keys: list[PrivateKey] = KEYS,
    signers: tuple[int, ...] = (0, 1, 2),
    kind: VoteKind = VoteKind.FINALIZE,
    digest: bytes | None = None,
) -> Certificate:
    target = block.digest() if digest is None else digest
    vote = VERIFIER.vote_digest(kind, block.view, block.height, target)
    signatures = [keys[i].sign_digest(vote) for i in signers]
    return Certificate(kind, block.view, block.height, target, list(signers), signatures)


def chain(n: int) -> list[Block]:
    blocks: list[Block] = []
    parent = GENESIS.digest()
    for h in range(1, n + 1):
        block = Block(h + 1, h, parent, h % 4, b"not-a-payload-%d" % h)
        blocks.append(block)
        parent = block.digest()
    return blocks


def answer(blocks: list[Block], certs: list[Certificate]) -> FollowBlocksAnswer:
    return FollowBlocksAnswer(len(blocks), blocks, certs)


def verify(a: FollowBlocksAnswer) -> list[tuple[Block, Certificate]]:
    return verify_blocks(
        a, validators=VALIDATORS, verifier=VERIFIER, next_height=1, parent=GENESIS.digest()
    )


def test_a_chain_with_its_own_finalizations_verifies() -> None:
    blocks = chain(3)
    verified = verify(answer(blocks, [certificate(b) for b in blocks]))
    assert [b.height for b, _ in verified] == [1, 2, 3]


def forged_answers() -> dict[str, FollowBlocksAnswer]:
    blocks = chain(3)
    good = [certificate(b) for b in blocks]
    other = Block(9, 2, b"\x01" * 32, 1, b"another block")  # not a child of block 1
    return {
        "signed by keys outside the set": answer(
            blocks, [good[0], certificate(blocks[1], keys=OUTSIDERS), good[2]]
        ),
        "no quorum": answer(blocks, [good[0], certificate(blocks[1], signers=(0, 1)), good[2]]),
        "a notarization, not a finalization": answer(
            blocks, [good[0], certificate(blocks[1], kind=VoteKind.NOTARIZE), good[2]]
        ),
        "certifies another block": answer(
            blocks, [good[0], certificate(blocks[1], digest=other.digest()), good[2]]
        ),
        "a validly certified block off the chain": answer(
            [blocks[0], other], [good[0], certificate(other)]
        ),
        "a gap": answer([blocks[0], blocks[2]], [good[0], good[2]]),
        "a signature swapped": answer(
            blocks,
            [
                good[0],
                msgspec.structs.replace(
                    good[1], signatures=[good[1].signatures[0], *good[1].signatures[:2]]
                ),
                good[2],
            ],
        ),
    }


@pytest.mark.parametrize("case", list(forged_answers()))
def test_a_forged_or_wrong_answer_is_refused(case: str) -> None:
    with pytest.raises(ForgedAnswer):
        verify(forged_answers()[case])


def test_an_answer_that_does_not_decode_or_pairs_badly_is_refused() -> None:
    blocks = chain(2)
    with pytest.raises(ForgedAnswer):
        decode_blocks_answer(b"\x93garbage")
    with pytest.raises(ForgedAnswer):
        decode_blocks_answer(_encoder.encode(answer(blocks, [certificate(blocks[0])])))


class _Store:
    def tip(self) -> tuple[int, bytes, int]:
        return 0, GENESIS.digest(), 0


class _Validators:
    """Fake follow peers: validator 0 lies, validator 1 tells the truth."""

    def __init__(self, lie: bytes, truth: bytes) -> None:
        self.answers = {0: lie, 1: truth}
        self.asked: list[tuple[int, FollowBlocksRequest]] = []

    def connected_peers(self) -> list[int]:
        return [0, 1]

    async def request(self, peer: int, data: bytes, timeout: float | None = None) -> bytes:
        self.asked.append((peer, msgspec.msgpack.decode(data[1:], type=FollowBlocksRequest)))
        return self.answers[peer]


async def test_the_follower_drops_a_forged_answer_and_takes_the_next_validators() -> None:
    blocks = chain(3)
    good = [certificate(b) for b in blocks]
    forged = [good[0], certificate(blocks[1], keys=OUTSIDERS), good[2]]
    peers = _Validators(
        lie=_encoder.encode(answer(blocks, forged)),
        truth=_encoder.encode(answer(blocks, good)),
    )
    commits_in, commits_out = trio.open_memory_channel[Commit](10)
    follower = Follower(
        p2p=peers,  # type: ignore[arg-type]
        store=_Store(),  # type: ignore[arg-type]
        pool=None,  # type: ignore[arg-type]  # payloads here are not batches: nothing fetched
        fetcher=None,  # type: ignore[arg-type]
        validators=VALIDATORS,
        verifier=VERIFIER,
        commits=commits_in,
    )
    follower._rotation = iter([0, 0, 0])  # type: ignore[assignment]  # the liar first
    assert await follower.step()
    assert [peer for peer, _ in peers.asked] == [0, 1]
    assert follower.stats.forged_answers == 1
    got: list[Any] = [commits_out.receive_nowait() for _ in range(3)]
    assert [(c.block, c.finalization) for c in got] == list(zip(blocks, good, strict=True))
    assert follower.next_height == 4 and follower.parent == blocks[2].digest()
    # Caught up: an empty answer passes nothing on.
    peers.answers = {0: _encoder.encode(answer([], [])), 1: _encoder.encode(answer([], []))}
    assert not await follower.step()
    assert peers.asked[-1][1].from_height == 4
    assert peers.asked[2][0] == 1  # the validator that lied is asked last for a while


# ---- validator side -------------------------------------------------------------------


def test_validators_answer_each_block_with_its_own_finalization_or_a_descendants(
    tmp_path: Path,
) -> None:
    store = NodeStore(tmp_path / "chain", genesis_digest=GENESIS.digest(), sync=False)
    b1, b2, b3 = chain(3)
    try:
        store.commit_block(b1, certificate(b1), [], bytes(32))
        store.commit_block(b2, certificate(b3), [], bytes(32))  # under its child's
        store.commit_block(b3, certificate(b3), [], bytes(32))
        got = answer_blocks(store, FollowBlocksRequest(1, 10))
        assert got.tip == 3 and got.blocks == [b1, b2, b3]
        assert got.finalizations == [certificate(b1), certificate(b3), certificate(b3)]
        # Block 2 is proven by block 3's certificate, and only once it comes.
        assert verify(got) == [
            (b1, certificate(b1)),
            (b2, certificate(b3)),
            (b3, certificate(b3)),
        ]
        assert verify(answer_blocks(store, FollowBlocksRequest(1, 2))) == [(b1, certificate(b1))]
        # Its own certificate, once kept, is preferred.
        store.save_late_finalization(certificate(b2))
        assert answer_blocks(store, FollowBlocksRequest(2, 1)).finalizations == [certificate(b2)]
        assert answer_blocks(store, FollowBlocksRequest(4, 10)).blocks == []
    finally:
        store.close()


def test_a_descendants_certificate_that_is_forged_proves_nothing() -> None:
    b1, b2, b3 = chain(3)
    forged = certificate(b3, keys=OUTSIDERS)
    with pytest.raises(ForgedAnswer):
        verify(answer([b1, b2, b3], [certificate(b1), forged, forged]))
    # A claimed descendant's certificate never proves the block it comes with.
    assert verify(answer([b1, b2], [certificate(b1), certificate(b3)])) == [(b1, certificate(b1))]


async def test_the_follow_server_answers_no_consensus_request_and_bounds_submissions(
    tmp_path: Path,
) -> None:
    store = NodeStore(tmp_path / "chain", genesis_digest=GENESIS.digest(), sync=False)
    submitted: list[tuple[bytes, str]] = []

    async def submit(raw: bytes, client: str) -> Outcome:
        submitted.append((raw, client))
        return Accepted(b"\x11" * 32)

    server = FollowServer(store=store, pool=None, submit=submit)  # type: ignore[arg-type]
    try:
        assert await server.answer("fn", RequestKind.CONSENSUS.value + b"\x92\x05\x01") == b""
        assert await server.answer("fn", RequestKind.FOLLOW_BLOCKS.value + b"junk") == b""
        assert decode_outcome(await server.answer("fn", encode_submit_request(b"tx"))) == Accepted(
            b"\x11" * 32
        )
        assert submitted == [(b"tx", "full-node:fn")]  # the intake's allowance is per full node
        big = encode_submit_request(b"x" * (MAX_SUBMIT_BYTES + 1))
        refused = decode_outcome(await server.answer("fn", big))
        assert isinstance(refused, Refused) and refused.status == 413
        assert len(submitted) == 1
    finally:
        store.close()
