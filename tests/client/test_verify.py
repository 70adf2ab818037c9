"""The subscription verifier accepts honest blocks and catches each lie."""

from __future__ import annotations

from typing import Any

import pytest

from consensus.crypto import keccak256
from consensus.messages import VoteKind
from sequencer_net.client.verify import BlockVerifier, SubscriptionVerificationError
from sequencer_net.payload import namespaces as ns
from tests.client.chain import NAMESPACE, OTHER, Chain, clone, hx, render_proof, validator_keys


def honest_chain() -> tuple[Chain, list[dict[str, Any]]]:
    chain = Chain()
    messages = [
        chain.block([chain.tx(), chain.tx(OTHER), chain.tx()]),
        chain.block([]),
        chain.block([chain.tx(OTHER)]),
        chain.block([chain.tx(1), chain.tx(), chain.tx(12), chain.tx()]),
    ]
    return chain, messages


def verifier(chain: Chain, from_height: int = 1) -> BlockVerifier:
    return BlockVerifier(chain.validators, chain.domain, NAMESPACE, from_height)


def test_honest_blocks_pass_with_their_transactions() -> None:
    chain, messages = honest_chain()
    v = verifier(chain)
    blocks = [v.verify(m) for m in messages]
    assert [b.height for b in blocks] == [1, 2, 3, 4]
    assert [len(b.transactions) for b in blocks] == [2, 0, 0, 2]
    first = blocks[0]
    assert first.transactions[0] == bytes.fromhex(messages[0]["transactions"][0][2:])
    assert first.tx_hashes == tuple(keccak256(t) for t in first.transactions)
    assert first.hash == bytes.fromhex(messages[0]["block"]["hash"][2:])
    assert first.state_height == 0 and first.timestamp_ms == 1_700_000_000_001
    assert first.state_root == keccak256(b"state" + (1).to_bytes(8, "big"))
    assert blocks[1].parent == first.hash
    assert v.next_height == 5


def test_starts_at_from_height() -> None:
    chain, messages = honest_chain()
    v = verifier(chain, from_height=3)
    assert v.verify(messages[2]).height == 3
    with pytest.raises(SubscriptionVerificationError, match="expected height 3"):
        verifier(chain, from_height=3).verify(messages[0])


def expect_lie(message: dict[str, Any], match: str, *, height: int = 1) -> None:
    chain, _ = honest_chain()
    with pytest.raises(SubscriptionVerificationError, match=match) as info:
        verifier(chain).verify(message)
    assert info.value.height == height


def first_message() -> tuple[Chain, dict[str, Any]]:
    chain, messages = honest_chain()
    return chain, clone(messages[0])


def test_an_altered_transaction_is_caught() -> None:
    chain, message = first_message()
    other = chain.tx(NAMESPACE, b"forged")
    message["transactions"][1] = hx(other)
    expect_lie(message, "namespace proof")


def test_a_dropped_transaction_is_caught() -> None:
    _, message = first_message()
    del message["transactions"][0]
    expect_lie(message, "holds 2 transactions")


def test_an_added_transaction_is_caught() -> None:
    chain, message = first_message()
    message["transactions"].append(hx(chain.tx()))
    expect_lie(message, "holds 2 transactions")


def test_reordered_transactions_are_caught() -> None:
    _, message = first_message()
    message["transactions"].reverse()
    expect_lie(message, "do not hash to the namespace's root")


def test_a_transaction_of_another_namespace_is_caught() -> None:
    c2 = Chain()
    message = c2.block([c2.tx(OTHER)], namespace=OTHER)
    message["namespace"] = NAMESPACE
    message["proof"] = render_proof(ns.namespace_proof([], NAMESPACE))
    with pytest.raises(SubscriptionVerificationError, match="in namespace 9"):
        verifier(c2).verify(message)


def test_an_empty_answer_for_a_namespace_with_transactions_is_caught() -> None:
    _, message = first_message()
    message["transactions"] = []
    expect_lie(message, "holds 2 transactions")


def test_a_proof_for_another_namespace_is_caught() -> None:
    chain = Chain()
    txs = [chain.tx(), chain.tx(OTHER)]
    message = chain.block(txs)
    pairs = [(NAMESPACE, keccak256(txs[0])), (OTHER, keccak256(txs[1]))]
    message["proof"] = render_proof(ns.namespace_proof(pairs, OTHER))
    with pytest.raises(SubscriptionVerificationError, match="another namespace"):
        verifier(chain).verify(message)


def test_an_absence_claim_for_a_present_namespace_is_caught() -> None:
    chain = Chain()
    txs = [chain.tx(), chain.tx(OTHER)]
    message = chain.block(txs)
    message["transactions"] = []
    # A proof of absence built over a table without the namespace's entry.
    fake_pairs = [(OTHER, keccak256(txs[1]))]
    message["proof"] = render_proof(ns.namespace_proof(fake_pairs, NAMESPACE))
    with pytest.raises(SubscriptionVerificationError, match="namespace proof"):
        verifier(chain).verify(message)


def test_a_payload_root_mismatch_is_caught() -> None:
    # The node lies consistently: proof and transactions agree with each other but
    # not with the namespace root the certified payload commits to.
    chain = Chain()
    message = chain.block([chain.tx(), chain.tx()])
    forged = chain.tx()
    message["transactions"] = [hx(forged)]
    message["proof"] = render_proof(ns.namespace_proof([(NAMESPACE, keccak256(forged))], NAMESPACE))
    with pytest.raises(SubscriptionVerificationError, match="not under the root"):
        verifier(chain).verify(message)


def test_an_altered_payload_breaks_the_digest() -> None:
    chain = Chain()
    message = chain.block([chain.tx()])
    payload = bytearray.fromhex(message["block"]["payload"][2:])
    payload[-1] ^= 1  # the namespace root's last byte
    message["block"]["payload"] = hx(bytes(payload))
    with pytest.raises(SubscriptionVerificationError, match="block hash sent"):
        verifier(chain).verify(message)
    del message["block"]["hash"]  # without the claimed hash: the certificate fails
    with pytest.raises(SubscriptionVerificationError, match="another block"):
        verifier(chain).verify(message)


def test_a_certificate_with_a_wrong_signer_is_caught() -> None:
    chain, message = first_message()
    outsider = validator_keys(4, seed=2)
    keys = [chain.keys[0], chain.keys[1], outsider[2], chain.keys[3]]
    block = message["block"]
    digest = bytes.fromhex(block["hash"][2:])
    message["certificate"] = chain.certificate(digest, block["view"], 1, [0, 1, 2], keys=keys)
    expect_lie(message, "not a quorum of valid validator signatures")


def test_a_certificate_with_too_few_signers_is_caught() -> None:
    chain, message = first_message()
    block = message["block"]
    digest = bytes.fromhex(block["hash"][2:])
    message["certificate"] = chain.certificate(digest, block["view"], 1, [0, 3])
    expect_lie(message, "not a quorum")


def test_a_certificate_for_another_block_is_caught() -> None:
    chain, message = first_message()
    block = message["block"]
    message["certificate"] = chain.certificate(keccak256(b"other"), block["view"], 1)
    expect_lie(message, "another block")


def test_a_notarization_is_not_a_finalization() -> None:
    chain, message = first_message()
    block = message["block"]
    digest = bytes.fromhex(block["hash"][2:])
    message["certificate"] = chain.certificate(digest, block["view"], 1, kind=VoteKind.NOTARIZE)
    expect_lie(message, "not a finalization")


def test_a_certificate_of_another_height_is_caught() -> None:
    chain, message = first_message()
    block = message["block"]
    digest = bytes.fromhex(block["hash"][2:])
    message["certificate"] = chain.certificate(digest, block["view"], 2)
    expect_lie(message, "height or view")


def test_a_certificate_under_another_domain_is_caught() -> None:
    from consensus.encoding import Domain

    chain, messages = honest_chain()
    other = Domain(31337, bytes(20), keccak256(b"another genesis"))
    with pytest.raises(SubscriptionVerificationError, match="not a quorum"):
        BlockVerifier(chain.validators, other, NAMESPACE).verify(messages[0])


def test_wrong_height_sequences_are_caught() -> None:
    chain, messages = honest_chain()
    v = verifier(chain)
    v.verify(messages[0])
    with pytest.raises(SubscriptionVerificationError, match="expected height 2"):
        v.verify(messages[2])  # a gap
    with pytest.raises(SubscriptionVerificationError, match="expected height 2"):
        v.verify(messages[0])  # a repeat
    v.verify(messages[1])  # the right one still passes after the lies


def test_a_block_off_the_verified_chain_is_caught() -> None:
    chain, messages = honest_chain()
    fork = Chain()
    fork.block([])
    fork_two = fork.block([fork.tx()])  # height 2 on another parent, same validators
    v = verifier(chain)
    v.verify(messages[0])
    with pytest.raises(SubscriptionVerificationError, match="parent"):
        v.verify(fork_two)


def test_a_message_for_another_namespace_is_caught() -> None:
    _, message = first_message()
    message["namespace"] = OTHER
    expect_lie(message, "namespace 9, not 7")


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("type",), "ping", "not 'block'"),
        (("height",), -1, "integer"),
        (("height",), True, "integer"),
        (("block", "parent"), "0x" + "00" * 31, "32 bytes"),
        (("block", "parent"), "0x" + " 0" * 32, "hex digits"),
        (("block", "payload"), "0x" + "00" * (1024 * 1024 + 1), "at most"),
        (("block", "payload"), "0xabc", "even number"),
        (("block", "view"), 2**64, "integer"),
        (("certificate", "signers"), list(range(2000)), "at most 1024"),
        (("certificate", "signatures"), ["0x00"], "65 bytes"),
        (("certificate",), [], "not a JSON object"),
        (("transactions",), "0x00", "list"),
        (("transactions",), ["0x" + "00" * 40_000], "at most"),
        (("proof", "size"), "3", "integer"),
        (("proof", "present", "path"), ["0x00"] * 65, "at most 64"),
    ],
)
def test_malformed_messages_are_refused(path: tuple[str, ...], value: Any, match: str) -> None:
    _, message = first_message()
    target = message
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(SubscriptionVerificationError, match=match):
        honest = honest_chain()[0]
        verifier(honest).verify(message)


def test_missing_fields_and_non_objects_are_refused() -> None:
    chain, message = first_message()
    del message["proof"]
    with pytest.raises(SubscriptionVerificationError, match="missing field 'proof'"):
        verifier(chain).verify(message)
    with pytest.raises(SubscriptionVerificationError, match="not a JSON object"):
        verifier(chain).verify(["block"])


def test_an_undecodable_certified_payload_is_caught() -> None:
    chain = Chain()
    payload = b"\x93\x01\x02\x03"  # certified, but not a block payload
    from consensus.encoding import block_hash
    from consensus.types import Digest, Height, ValidatorIndex, View

    digest = block_hash(View(3), Height(1), Digest(bytes(32)), payload, ValidatorIndex(1))
    message = chain.block([])
    message["block"].update(payload=hx(payload), hash=hx(digest), view=3, proposer=1)
    message["certificate"] = chain.certificate(digest, 3, 1)
    with pytest.raises(SubscriptionVerificationError, match="does not decode"):
        verifier(chain).verify(message)
