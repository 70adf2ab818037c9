"""A full node following a chain of two epochs: each block's finalization is
checked in its epoch's domain against its epoch's set, and the last block of an
epoch, committed under a tail block's finalization, is proven by the end proof
a validator serves (EPOCH_END)."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.epochs import epoch_domain_separator
from consensus.messages import Block, Certificate, EpochEndProof, VoteKind
from consensus.verifier import SignatureVerifier
from sequencer_net.home.genesis import Genesis
from sequencer_net.node.follow import (
    FollowBlocksAnswer,
    FollowEpochs,
    FollowServer,
    ForgedAnswer,
    decode_epoch_end_answer,
    encode_epoch_end_request,
    verify_blocks,
)
from sequencer_net.storage.node_store import NodeStore
from tests.node.test_driver_epochs import KEYS, LAST_OF_EPOCH_0, _genesis

EPOCH_1_SIGNERS = [0, 1, 2]  # peers 3, 2, 1 in epoch 1's order: weight 4 of 5


def _epochs(genesis: Genesis) -> FollowEpochs:
    separator = genesis.domain().separator()
    return FollowEpochs(
        genesis.schedule(),
        tuple(SignatureVerifier(epoch_domain_separator(separator, e)) for e in range(2)),
    )


def _finalization(genesis: Genesis, epoch: int, block: Block, signers: list[int]) -> Certificate:
    verifier = _epochs(genesis).verifiers[epoch]
    validators = genesis.schedule().epoch(epoch).validators
    digest = verifier.vote_digest(VoteKind.FINALIZE, block.view, block.height, block.digest())
    signatures: list[bytes] = []
    for index in signers:
        key = next(k for k in KEYS if k.address == validators.address(index))  # type: ignore[arg-type]
        signatures.append(key.sign_digest(digest))
    return Certificate(
        VoteKind.FINALIZE, block.view, block.height, block.digest(), signers, signatures
    )


def _chain(genesis: Genesis) -> tuple[list[Block], Block]:
    """Blocks 1..12 (epoch 0 ends at 9, epoch 1 starts on it at view 1) and the
    empty tail block of epoch 0 at height 10."""
    parent = genesis.genesis_block().digest()
    chain = []
    for height in range(1, 13):
        view = height if height <= LAST_OF_EPOCH_0 else height - LAST_OF_EPOCH_0
        block = Block(view, height, parent, 0, b"p%d" % height)
        chain.append(block)
        parent = block.digest()
    tail = Block(
        LAST_OF_EPOCH_0 + 1, LAST_OF_EPOCH_0 + 1, chain[LAST_OF_EPOCH_0 - 1].digest(), 0, b""
    )
    return chain, tail


def _answer(genesis: Genesis, chain: list[Block], tail: Block) -> FollowBlocksAnswer:
    certs = []
    for block in chain:
        if block.height < LAST_OF_EPOCH_0:
            certs.append(_finalization(genesis, 0, block, [0, 1, 2]))
        elif block.height == LAST_OF_EPOCH_0:
            certs.append(_finalization(genesis, 0, tail, [0, 1, 2]))  # committed under the tail
        else:
            certs.append(_finalization(genesis, 1, block, EPOCH_1_SIGNERS))
    return FollowBlocksAnswer(len(chain), chain, certs)


def _verify(genesis: Genesis, answer: FollowBlocksAnswer, **kwargs: object) -> list[int]:
    verified = verify_blocks(
        answer,
        validators=genesis.validator_set(),
        verifier=_epochs(genesis).verifiers[0],
        next_height=1,
        parent=genesis.genesis_block().digest(),
        epochs=_epochs(genesis),
        **kwargs,  # type: ignore[arg-type]
    )
    return [block.height for block, _ in verified]


def test_blocks_verify_in_their_epochs_domain_and_the_last_block_by_the_proof() -> None:
    genesis = _genesis()
    chain, tail = _chain(genesis)
    proof = EpochEndProof(0, LAST_OF_EPOCH_0, _finalization(genesis, 0, tail, [0, 1, 2]), [tail])
    # Up to the epoch's end: block 9 waits for a proof (no validator commits the tail).
    up_to_end = _answer(genesis, chain[:LAST_OF_EPOCH_0], tail)
    assert _verify(genesis, up_to_end) == list(range(1, LAST_OF_EPOCH_0))
    assert _verify(genesis, up_to_end, proofs={0: proof}) == list(range(1, LAST_OF_EPOCH_0 + 1))
    # Across the boundary: epoch 1's finalizations (its domain, its set) verify.
    assert _verify(genesis, _answer(genesis, chain, tail), proofs={0: proof}) == list(range(1, 13))


def test_a_certificate_in_the_wrong_domain_or_a_proof_of_another_block_is_refused() -> None:
    genesis = _genesis()
    chain, tail = _chain(genesis)
    answer = _answer(genesis, chain, tail)
    wrong_domain = list(answer.finalizations)
    wrong_domain[10] = _finalization(genesis, 0, chain[10], [0, 1, 2])  # epoch 0's signers
    with pytest.raises(ForgedAnswer, match="height 11 does not verify"):
        _verify(genesis, FollowBlocksAnswer(12, chain, wrong_domain))
    other = Block(LAST_OF_EPOCH_0 + 1, LAST_OF_EPOCH_0 + 1, b"\x07" * 32, 0, b"")
    forged = EpochEndProof(0, LAST_OF_EPOCH_0, _finalization(genesis, 0, other, [0, 1, 2]), [other])
    with pytest.raises(ForgedAnswer, match="epoch 0 ended with another block"):
        _verify(genesis, answer, proofs={0: forged})


async def test_validators_serve_end_proofs_to_full_nodes(tmp_path: Path) -> None:
    genesis = _genesis()
    _, tail = _chain(genesis)
    proof = EpochEndProof(0, LAST_OF_EPOCH_0, _finalization(genesis, 0, tail, [0, 1, 2]), [tail])

    async def submit(raw: bytes, client: str) -> object:
        raise AssertionError("not a submission")

    with NodeStore(tmp_path / "db", sync=False) as store:
        server = FollowServer(store=store, pool=None, submit=submit)  # type: ignore[arg-type]
        assert await server.answer("peer", encode_epoch_end_request(0)) == b""
        store.save_epoch_end(proof)
        answer = await server.answer("peer", encode_epoch_end_request(0))
        assert decode_epoch_end_answer(answer) == proof
        assert await server.answer("peer", encode_epoch_end_request(0)[:1] + b"\xff") == b""
    with pytest.raises(ForgedAnswer):
        decode_epoch_end_answer(b"\x01\x02")


def test_a_full_node_keeps_the_end_proof_that_proved_an_epochs_last_block(
    tmp_path: Path,
) -> None:
    """Its API proves that block to subscribers from the stored proof (no own
    certificate exists); a proof is kept only when it proved the epoch's last block."""
    import trio

    from sequencer_net.node.full import Follower

    genesis = _genesis()
    chain, tail = _chain(genesis)
    proof = EpochEndProof(0, LAST_OF_EPOCH_0, _finalization(genesis, 0, tail, [0, 1, 2]), [tail])
    send, _ = trio.open_memory_channel[object](1)
    with NodeStore(tmp_path / "db", sync=False) as store:
        follower = Follower(
            p2p=None,  # type: ignore[arg-type]
            store=store,
            pool=None,  # type: ignore[arg-type]
            fetcher=None,  # type: ignore[arg-type]
            validators=genesis.validator_set(),
            verifier=_epochs(genesis).verifiers[0],
            commits=send,  # type: ignore[arg-type]
            epochs=_epochs(genesis),
        )
        follower._keep_epoch_end(chain[LAST_OF_EPOCH_0 - 1])
        assert store.epoch_end(0) is None  # no proof fetched: the block had its own certificate
        follower.proofs[0] = proof
        follower._keep_epoch_end(chain[LAST_OF_EPOCH_0 - 2])  # not the last height
        follower._keep_epoch_end(chain[LAST_OF_EPOCH_0])  # epoch 1's first block
        assert store.epoch_end(0) is None
        follower._keep_epoch_end(chain[LAST_OF_EPOCH_0 - 1])
        assert store.epoch_end(0) == proof
