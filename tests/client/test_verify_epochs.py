"""A subscription across validator-set epochs: each block's certificate is
checked against its epoch's set in its epoch's domain; an epoch's last blocks
are proven through its empty tail; certificates and chains of another epoch
are refused."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from consensus.crypto import keccak256
from consensus.limits import MAX_EPOCH_TAIL_BLOCKS, MAX_FINALITY_CHAIN
from consensus.messages import Block
from sequencer_net.api.validators import validators_document
from sequencer_net.client import RetryPolicy, subscribe
from sequencer_net.client.subscribe import (
    SubscriptionFailed,
    verifier_from_answers,
    verifier_from_genesis,
)
from sequencer_net.client.verify import BlockVerifier, SubscriptionVerificationError
from sequencer_net.home.genesis import GenesisError, genesis_to_json
from tests.client.chain import NAMESPACE, OTHER, clone, header
from tests.client.epoch_chain import (
    LAST,
    EpochChain,
    digest_of,
    epoch_genesis,
    proven_by_tail,
)
from tests.client.fake_node import Step, start_node


def blocks(chain: EpochChain, count: int) -> list[dict[str, Any]]:
    return [chain.block([chain.tx(), chain.tx(OTHER)]) for _ in range(count)]


def verifier(chain: EpochChain, from_height: int = 1) -> BlockVerifier:
    return BlockVerifier.from_genesis(chain.genesis, NAMESPACE, from_height)


def expect_lie(chain: EpochChain, message: dict[str, Any], match: str) -> None:
    with pytest.raises(SubscriptionVerificationError, match=match) as info:
        verifier(chain, message["height"]).verify(message)
    assert info.value.height == message["height"]


def tail_proven(chain: EpochChain, tail_length: int = 2) -> list[dict[str, Any]]:
    """Heights 1..LAST + 2: 1 certified itself, 2..LAST committed under a tail of
    `tail_length` empty blocks, then two blocks of epoch 1."""
    first = blocks(chain, 1)
    last_run = blocks(chain, LAST - 1)
    tail = chain.tail(tail_length)
    proven = proven_by_tail(last_run, tail, chain.tail_certificate(tail))
    return first + proven + blocks(chain, 2)


def test_a_subscription_verifies_across_a_boundary_with_a_changed_set() -> None:
    chain = EpochChain()
    messages = blocks(chain, LAST + 3)
    v = verifier(chain)
    verified = [v.verify(m) for m in messages]
    assert [b.height for b in verified] == [1, 2, 3, 4, 5, 6]
    assert [b.epoch for b in verified] == [0, 0, 0, 1, 1, 1]
    assert all(b.finalized_by is None for b in verified)
    assert verified[LAST].parent == verified[LAST - 1].hash  # epoch 1 builds on the last block
    assert v.next_height == LAST + 4


def test_a_subscription_may_start_in_a_later_epoch() -> None:
    chain = EpochChain()
    messages = blocks(chain, LAST + 2)
    assert verifier(chain, LAST + 2).verify(messages[LAST + 1]).epoch == 1


def test_the_last_blocks_of_an_epoch_are_proven_by_its_tail() -> None:
    chain = EpochChain()
    messages = tail_proven(chain)
    last = messages[LAST - 1]
    assert last["certificate"] is None
    assert [h["height"] for h in last["finalized_by"]["chain"]] == [LAST + 2, LAST + 1]
    v = verifier(chain)
    verified = [v.verify(m) for m in messages]
    assert [b.finalized_by for b in verified] == [None, LAST + 2, LAST + 2, None, None]
    assert [b.epoch for b in verified] == [0, 0, 0, 1, 1]
    assert verified[1].certificate.height == LAST + 2  # the tail's finalization
    assert v.next_height == LAST + 3


def test_a_last_block_proven_by_a_single_tail_block_verifies_alone() -> None:
    chain = EpochChain()
    messages = tail_proven(chain, tail_length=1)
    assert verifier(chain, LAST).verify(messages[LAST - 1]).finalized_by == LAST + 1


def test_epoch_0_signatures_on_an_epoch_1_block_are_refused() -> None:
    chain = EpochChain()
    messages = blocks(chain, LAST + 1)
    first = messages[LAST]
    view, height = first["block"]["view"], first["height"]
    digest = digest_of(first)
    in_own_domain = clone(first)  # epoch 0's set, in the chain's domain
    in_own_domain["certificate"] = chain.certificate(digest, view, height, epoch=0)
    expect_lie(chain, in_own_domain, "not a quorum of valid validator signatures of epoch 1")
    in_new_domain = clone(first)  # epoch 0's keys, signing as epoch 1
    in_new_domain["certificate"] = chain.certificate(
        digest, view, height, epoch=1, keys=chain.epoch_keys[0]
    )
    expect_lie(chain, in_new_domain, "of epoch 1")


def test_the_right_set_in_another_epochs_domain_is_refused() -> None:
    chain = EpochChain()
    first = blocks(chain, LAST + 1)[LAST]
    view, height, digest = first["block"]["view"], first["height"], digest_of(first)
    first["certificate"] = chain.certificate(
        digest, view, height, epoch=0, keys=chain.epoch_keys[1]
    )  # epoch 1's keys at epoch 1's indices, in epoch 0's (the chain's) domain
    expect_lie(chain, first, "not a quorum of valid validator signatures of epoch 1")


def test_the_epoch_1_set_signing_an_epoch_0_block_is_refused() -> None:
    chain = EpochChain()
    messages = blocks(chain, 2)
    second = messages[1]
    view, digest = second["block"]["view"], digest_of(second)
    in_new_domain = clone(second)
    in_new_domain["certificate"] = chain.certificate(digest, view, 2, epoch=1)
    expect_lie(chain, in_new_domain, "not a quorum of valid validator signatures of epoch 0")
    in_old_domain = clone(second)  # epoch 1's keys at epoch 1's indices, epoch 0's domain
    in_old_domain["certificate"] = chain.certificate(
        digest, view, 2, epoch=0, keys=chain.epoch_keys[1]
    )
    expect_lie(chain, in_old_domain, "of epoch 0")


def test_members_of_both_epochs_still_certify_an_epoch_0_block() -> None:
    """The refusal above is of the set and domain, not of the people: keys 1..3
    sign in both epochs, at their epoch 0 indices here."""
    chain = EpochChain()
    message = blocks(chain, 2)[1]
    message["certificate"] = chain.certificate(
        digest_of(message), message["block"]["view"], 2, signers=[1, 2, 3]
    )
    assert verifier(chain, 2).verify(message).epoch == 0


def test_a_tail_block_carrying_a_payload_is_refused() -> None:
    chain = EpochChain()
    run = blocks(chain, LAST)
    tail = chain.tail(2, payload=b"stuffed")
    # Signed by epoch 0 as it should be: the payload rule alone refuses it.
    message = proven_by_tail(run[LAST - 1 :], tail, chain.tail_certificate(tail))[0]
    expect_lie(chain, message, f"crosses out of epoch 0: height {LAST + 1} is above")


def test_one_stuffed_block_in_a_longer_tail_is_refused() -> None:
    chain = EpochChain()
    run = blocks(chain, LAST)
    empty = chain.tail(1)
    stuffed = Block(
        view=LAST + 4, height=LAST + 2, parent=empty[0].digest(), proposer=0, payload=b"x"
    )
    tail = [*empty, stuffed]
    message = proven_by_tail(run[LAST - 1 :], tail, chain.tail_certificate(tail))[0]
    expect_lie(chain, message, f"height {LAST + 2} is above its last height {LAST}")


def test_a_later_epochs_certificate_vouching_for_an_earlier_block_is_refused() -> None:
    chain = EpochChain()
    messages = blocks(chain, LAST + 1)
    last, first = messages[LAST - 1], messages[LAST]  # epoch 0's last, epoch 1's first
    crossing = clone(last)
    crossing["certificate"] = None
    crossing["finalized_by"] = {
        "certificate": clone(first["certificate"]),
        "chain": [header(first)],
    }
    expect_lie(chain, crossing, "crosses out of epoch 0")


def test_an_empty_first_block_of_the_next_epoch_is_not_a_tail() -> None:
    """Epoch 1's first block may be empty too; its certificate is then epoch 1's,
    which does not verify as epoch 0's."""
    chain = EpochChain()
    run = blocks(chain, LAST)
    empty_first = chain.tail(1)  # an empty block at LAST + 1 ...
    certificate = chain.tail_certificate(empty_first, epoch=1)  # ... certified by epoch 1
    message = proven_by_tail(run[LAST - 1 :], empty_first, certificate)[0]
    expect_lie(chain, message, "not a quorum of valid validator signatures of epoch 0")


def test_a_tail_block_sent_as_the_next_epochs_block_is_refused() -> None:
    chain = EpochChain()
    run = blocks(chain, LAST)
    tail = chain.tail(1)[0]
    message = clone(run[-1])
    message["height"] = tail.height
    message["block"] = {
        "view": tail.view,
        "height": tail.height,
        "parent": "0x" + tail.parent.hex(),
        "proposer": tail.proposer,
        "payload": "0x",
        "hash": "0x" + tail.digest().hex(),
    }
    message["certificate"] = chain.tail_certificate([tail])
    expect_lie(chain, message, "of epoch 1")


def test_the_chain_limit_grows_by_the_tail_only_near_an_epochs_end() -> None:
    chain = EpochChain()
    run = blocks(chain, LAST)
    tail = chain.tail(1)
    message = proven_by_tail(run[LAST - 1 :], tail, chain.tail_certificate(tail))[0]
    certificate = message["finalized_by"]["certificate"]
    filler = message["finalized_by"]["chain"][0]
    message["finalized_by"]["chain"] = [filler] * (MAX_EPOCH_TAIL_BLOCKS + 1)
    expect_lie(chain, message, f"not a list of at most {MAX_EPOCH_TAIL_BLOCKS} items")
    far = EpochChain(genesis=epoch_genesis(last=MAX_FINALITY_CHAIN + 10)[0])
    early = blocks(far, 1)[0]
    early["certificate"] = None
    early["finalized_by"] = {"certificate": clone(certificate), "chain": [filler] * 300}
    expect_lie(far, early, f"not a list of at most {MAX_FINALITY_CHAIN} items")


def test_a_long_tail_within_its_bound_verifies() -> None:
    chain = EpochChain()
    messages = tail_proven(chain, tail_length=300)  # above MAX_FINALITY_CHAIN headers
    assert len(messages[1]["finalized_by"]["chain"]) == 300 + LAST - 2
    assert verifier(chain, 2).verify(messages[1]).finalized_by == LAST + 300


def test_a_tail_header_altered_breaks_the_link() -> None:
    chain = EpochChain()
    message = tail_proven(chain)[LAST - 1]
    message["finalized_by"]["chain"][-1]["parent"] = "0x" + keccak256(b"other").hex()
    expect_lie(chain, message, f"breaks at height {LAST + 1}")


# --- where the schedule comes from ---------------------------------------------------


def test_a_pinned_genesis_digest_admits_the_genesis_and_refuses_another(tmp_path: Any) -> None:
    chain = EpochChain()
    assert chain.genesis is not None
    digest = chain.genesis.genesis_block().digest()
    document = genesis_to_json(chain.genesis)
    pinned = verifier_from_genesis(document, NAMESPACE, 1, genesis_hash=digest)
    assert len(pinned.schedule) == 2
    assert [pinned.verify(m).epoch for m in blocks(chain, LAST + 1)] == [0, 0, 0, 1]
    with pytest.raises(GenesisError, match="not the pinned"):
        verifier_from_genesis(document, NAMESPACE, 1, genesis_hash=keccak256(b"another"))


def test_the_validators_answer_gives_the_same_schedule() -> None:
    chain = EpochChain()
    assert chain.genesis is not None
    answer = validators_document(chain.genesis)
    status = {k: answer[k] for k in ("chain_id", "verifying_contract", "genesis_hash")}
    v = verifier_from_answers(status, answer, NAMESPACE, 1)
    assert [e.first_height for e in v.schedule.epochs] == [1, LAST + 1]
    assert [v.verify(m).epoch for m in tail_proven(chain)] == [0, 0, 0, 1, 1]
    forged = clone(answer)
    forged["epochs"][1]["domain_separator"] = answer["epochs"][0]["domain_separator"]
    with pytest.raises(SubscriptionFailed, match="not derived from the domain"):
        verifier_from_answers(status, forged, NAMESPACE, 1)
    unordered = clone(answer)
    unordered["epochs"][1]["first_height"] = 1
    with pytest.raises(SubscriptionFailed, match="not above"):
        verifier_from_answers(status, unordered, NAMESPACE, 1)
    assert [e["last_height"] for e in answer["epochs"]] == [LAST, None]
    assert answer["epochs"][0]["validators"] == answer["validators"]


# --- the subscription iterator across a boundary ------------------------------------


async def test_subscribe_follows_the_rotation_across_a_reconnect_at_the_boundary() -> None:
    chain = EpochChain()
    assert chain.genesis is not None
    messages = tail_proven(chain)
    pinned = chain.genesis.genesis_block().digest()
    heights: list[tuple[int, int]] = []
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, messages, [Step(LAST, "drop"), Step(100)])
        with trio.fail_after(20):
            async for block in subscribe(
                [node.url],
                namespace=NAMESPACE,
                from_height=1,
                genesis=genesis_to_json(chain.genesis),
                genesis_hash=pinned,
                retry=RetryPolicy(max_failures=4, initial_backoff_s=0.01, max_backoff_s=0.05),
            ):
                heights.append((block.height, block.epoch))
                if len(heights) == len(messages):
                    break
        nursery.cancel_scope.cancel()
    assert heights == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1)]
    assert [start for _, start in node.requests] == [1, LAST + 1]  # resumed in epoch 1
