"""A block finalized under a descendant's certificate: the verifier accepts the
descendant's certificate and the header chain down to the block, and catches
every break in it."""

from __future__ import annotations

from typing import Any

import pytest

from consensus.crypto import keccak256
from consensus.limits import MAX_FINALITY_CHAIN
from sequencer_net.client.verify import (
    BlockVerifier,
    SubscriptionVerificationError,
    UncertifiedBlockReader,
)
from tests.client.chain import (
    NAMESPACE,
    OTHER,
    Chain,
    clone,
    finalized_under_last,
    hx,
    validator_keys,
)


def run(chain: Chain, blocks: int = 4) -> list[dict[str, Any]]:
    """Messages of `blocks` heights, every one but the last finalized under the last's."""
    messages = [chain.block([chain.tx(), chain.tx(OTHER)]) for _ in range(blocks)]
    return finalized_under_last(messages)


def verifier(chain: Chain, from_height: int = 1) -> BlockVerifier:
    return BlockVerifier(chain.validators, chain.domain, NAMESPACE, from_height)


def expect_lie(chain: Chain, message: dict[str, Any], match: str, from_height: int = 1) -> None:
    with pytest.raises(SubscriptionVerificationError, match=match) as info:
        verifier(chain, from_height).verify(message)
    assert info.value.height == message["height"]


def test_a_run_finalized_by_its_last_block_verifies_in_order() -> None:
    chain = Chain()
    messages = run(chain)
    assert messages[0]["certificate"] is None and len(messages[0]["finalized_by"]["chain"]) == 3
    assert "finalized_by" not in messages[3]  # the certified block's own message
    v = verifier(chain)
    blocks = [v.verify(m) for m in messages]
    assert [b.height for b in blocks] == [1, 2, 3, 4]
    assert [b.finalized_by for b in blocks] == [4, 4, 4, None]
    assert all(b.certificate.height == 4 for b in blocks)
    assert [len(b.transactions) for b in blocks] == [1, 1, 1, 1]
    assert v.next_height == 5


def test_the_proof_alone_verifies_a_height_mid_run() -> None:
    chain = Chain()
    messages = run(chain)
    assert verifier(chain, from_height=2).verify(messages[1]).finalized_by == 4


def test_a_chain_of_the_widest_legal_length_verifies() -> None:
    chain = Chain()
    messages = run(chain, MAX_FINALITY_CHAIN + 1)
    assert len(messages[0]["finalized_by"]["chain"]) == MAX_FINALITY_CHAIN
    assert verifier(chain).verify(messages[0]).finalized_by == MAX_FINALITY_CHAIN + 1


def test_a_chain_too_long_is_refused_before_it_is_checked() -> None:
    chain = Chain()
    messages = run(chain, 3)
    message = messages[0]
    filler = message["finalized_by"]["chain"][0]
    message["finalized_by"]["chain"] = [filler] * (MAX_FINALITY_CHAIN + 1)
    expect_lie(chain, message, f"not a list of at most {MAX_FINALITY_CHAIN} items")


def test_a_broken_link_is_caught() -> None:
    chain = Chain()
    message = run(chain)[0]
    middle = message["finalized_by"]["chain"][1]  # height 3
    middle["parent"] = hx(keccak256(b"not block 2"))
    expect_lie(chain, message, "breaks at height 3")


def test_an_altered_header_breaks_the_link_above_it() -> None:
    chain = Chain()
    message = run(chain)[0]
    message["finalized_by"]["chain"][1]["payload_hash"] = hx(keccak256(b"other payload"))
    expect_lie(chain, message, "breaks at height 4")


def test_a_chain_ending_above_the_block_is_caught() -> None:
    chain = Chain()
    message = run(chain)[0]  # height 1: its chain is 4, 3, 2
    del message["finalized_by"]["chain"][-1]  # 4, 3: does not reach down to the block
    expect_lie(chain, message, "height 3 above height 1")


def test_a_chain_for_another_block_is_caught() -> None:
    chain = Chain()
    messages = run(chain)
    message = clone(messages[0])
    message["finalized_by"] = clone(messages[1]["finalized_by"])  # block 2's: 4, 3
    expect_lie(chain, message, "height 3 above height 1")


def test_a_chain_of_another_fork_is_caught() -> None:
    chain = Chain()
    messages = run(chain)
    fork = Chain()
    forked = finalized_under_last([fork.block([fork.tx(data=b"fork %d" % i)]) for i in range(4)])
    message = clone(messages[0])
    message["finalized_by"] = forked[0]["finalized_by"]  # heights 4, 3, 2 of the fork
    expect_lie(chain, message, "breaks at height 2")


def test_an_empty_chain_is_caught() -> None:
    chain = Chain()
    message = run(chain)[0]
    message["finalized_by"]["chain"] = []
    expect_lie(chain, message, "chain is empty")


def test_a_forged_certificate_is_caught() -> None:
    chain = Chain()
    messages = run(chain)
    top = messages[0]["finalized_by"]["chain"][0]
    top_digest = bytes.fromhex(messages[3]["block"]["hash"][2:])
    outsiders = Chain(keys=validator_keys(4, seed=2))
    forged = clone(messages[0])
    forged["finalized_by"]["certificate"] = outsiders.certificate(top_digest, top["view"], 4)
    expect_lie(chain, forged, "not a quorum of valid validator signatures")
    too_few = clone(messages[0])
    too_few["finalized_by"]["certificate"] = chain.certificate(top_digest, top["view"], 4, [0, 1])
    expect_lie(chain, too_few, "not a quorum")
    elsewhere = clone(messages[0])
    elsewhere["finalized_by"]["certificate"] = chain.certificate(
        keccak256(b"a block nobody voted for"), top["view"], 4
    )
    expect_lie(chain, elsewhere, "another block")


def test_a_certificate_of_a_lower_header_is_caught() -> None:
    chain = Chain()
    messages = run(chain)
    message = messages[0]
    # Block 3's certificate, but the chain runs up to block 4.
    block3 = messages[2]["block"]
    message["finalized_by"]["certificate"] = chain.certificate(
        bytes.fromhex(block3["hash"][2:]), block3["view"], 3
    )
    expect_lie(chain, message, "another block")


def test_a_missing_proof_is_refused() -> None:
    chain = Chain()
    message = run(chain)[0]
    del message["finalized_by"]
    expect_lie(chain, message, "missing field 'finalized_by'")
    message = run(Chain())[0]
    message["finalized_by"]["chain"][0]["payload_hash"] = "0x12"
    expect_lie(Chain(), message, "payload_hash is not 32 bytes")


def test_without_a_genesis_the_chain_links_are_still_checked() -> None:
    chain = Chain()
    message = run(chain)[0]
    reader = UncertifiedBlockReader(chain.validators, chain.domain, NAMESPACE)
    assert reader.verify(clone(message)).finalized_by == 4
    message["finalized_by"]["chain"][2]["parent"] = hx(bytes(32))
    with pytest.raises(SubscriptionVerificationError, match="breaks at height 2"):
        UncertifiedBlockReader(chain.validators, chain.domain, NAMESPACE).verify(message)
