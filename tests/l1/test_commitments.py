"""Commitments: a header is accepted only with a quorum of its epoch's set's
FINALIZE signatures over the digest consensus/encoding.py defines; every
refusal names its reason."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

from eth_typing import ChecksumAddress
from web3 import Web3

from consensus.crypto import SECP256K1_N, keccak256
from consensus.encoding import Domain, payload_struct_hash
from consensus.messages import Block
from consensus.payload import BlockPayload, ForcedEntry, encode_payload
from sequencer_net.l1.header import L1Header, sign_packed
from tests.l1.l1_chain import GENESIS_HASH, SEQ_CHAIN_ID, L1Chain, expect_revert, validator_keys


def test_header_digest_matches_consensus_encoding(chain: L1Chain) -> None:
    batches = [keccak256(b"a"), keccak256(b"b")]
    header = chain.header(7)
    header = dataclasses.replace(header, batches_hash=L1Header.hash_batches(batches))
    assert header.payload_hash() == payload_struct_hash(
        header.timestamp_ms, header.state_height, header.state_root, batches, header.namespace_root
    )
    assert chain.commitments.functions.blockHashOf(header.as_abi()).call() == header.block_hash()
    assert chain.commitments.functions.domainSeparator().call() == chain.domain.separator()


def test_the_contract_rebuilds_a_consensus_block_digest(chain: L1Chain) -> None:
    payload = BlockPayload(
        timestamp_ms=1_700_000_000_000,
        state_height=3,
        state_root=keccak256(b"state"),
        batches=[keccak256(b"x"), keccak256(b"y")],
        namespace_root=keccak256(b"namespaces"),
    )
    block = Block(
        view=9, height=4, parent=keccak256(b"parent"), proposer=2, payload=encode_payload(payload)
    )
    header = L1Header.of_block(block)
    assert header.block_hash() == block.digest()
    assert chain.commitments.functions.blockHashOf(header.as_abi()).call() == block.digest()


def _forced_block() -> Block:
    payload = BlockPayload(
        timestamp_ms=1_700_000_000_000,
        state_height=3,
        state_root=keccak256(b"state"),
        batches=[keccak256(b"x"), keccak256(b"y")],
        namespace_root=keccak256(b"namespaces"),
        forced=[ForcedEntry(4, keccak256(b"forced tx"))],
    )
    return Block(
        view=9, height=4, parent=keccak256(b"parent"), proposer=2, payload=encode_payload(payload)
    )


def test_the_header_of_a_block_marking_forced_entries_has_its_digest() -> None:
    block = _forced_block()
    header = L1Header.of_block(block)
    assert header.block_hash() == block.digest()
    assert header.batches_hash != L1Header.hash_batches([keccak256(b"x"), keccak256(b"y")])


def test_the_contract_rebuilds_the_digest_of_a_block_marking_forced_entries(
    chain: L1Chain,
) -> None:
    block = _forced_block()
    header = L1Header.of_block(block)
    assert chain.commitments.functions.blockHashOf(header.as_abi()).call() == block.digest()


def test_post_with_quorum_is_accepted(chain: L1Chain) -> None:
    header = chain.header(5, state_height=4)
    receipt = chain.post(header)
    event = chain.events(chain.commitments, "Committed", receipt)[0]["args"]
    assert (event["fromHeight"], event["toHeight"]) == (1, 5)
    assert event["blockHash"] == header.block_hash()
    assert (event["stateHeight"], event["stateRoot"]) == (4, header.state_root)
    views = chain.commitments.functions
    assert event["postIndex"] == 0
    assert views.latestHeight().call() == 5
    assert views.latestStateHeight().call() == 4
    assert views.latestStateRoot().call() == header.state_root
    assert views.lastPostBlock().call() == receipt["blockNumber"]
    assert views.postCount().call() == 1
    ref = (0, header.state_root, 4, 5)
    assert views.checkPost(ref).call() == [0, False, True]
    assert views.postRecord(header.state_root, 4, 5).call() == keccak256(
        header.state_root + (4).to_bytes(32, "big") + (5).to_bytes(32, "big")
    )
    # the next post covers the heights after the last one
    receipt = chain.post(chain.header(9, state_height=8))
    event = chain.events(chain.commitments, "Committed", receipt)[0]["args"]
    assert (event["fromHeight"], event["toHeight"], event["postIndex"]) == (6, 9, 1)
    assert views.checkPost(ref).call() == [0, False, False]


def test_refusals(chain: L1Chain) -> None:
    chain.post(chain.header(5))
    post = chain.post
    keys = chain.keys
    h = chain.header(6)
    digest = h.finalize_digest(chain.domain)
    good = sign_packed(keys[:3], digest)

    # forged signatures: bytes that recover nothing, v outside {27, 28}, a high-s twin
    expect_revert("InvalidSignature", lambda: post(h, signatures=bytes(65) + good[65:]))
    expect_revert("InvalidSignature", lambda: post(h, signatures=good[:64] + b"\x1d" + good[65:]))
    s = int.from_bytes(good[32:64], "big")
    twin = good[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - good[64]]) + good[65:]
    expect_revert("MalleableSignature", lambda: post(h, signatures=twin))
    expect_revert("MalformedSignatures", lambda: post(h, signatures=good[:-1]))
    expect_revert("MalformedSignatures", lambda: post(h, signatures=b""))
    # too few signers: 2 of 4 equal powers is below the quorum of 3
    expect_revert("InsufficientQuorum", lambda: post(h, signers=keys[:2]))
    # a signer outside the set
    outsider = validator_keys(1, tag=b"outsider")
    expect_revert("SignerNotInSet", lambda: post(h, signers=[*keys[:2], *outsider]))
    # duplicate and unsorted signers
    first = keys[0].sign_digest(digest)
    expect_revert("DuplicateSigner", lambda: post(h, signatures=first + good))
    expect_revert(
        "SignersNotAscending", lambda: post(h, signatures=good[65:130] + good[:65] + good[130:])
    )
    # replayed and old heights; a state height that goes back
    expect_revert("StaleHeight", lambda: post(chain.header(5)))
    expect_revert("StaleHeight", lambda: post(chain.header(4)))
    expect_revert("StateHeightRegressed", lambda: post(chain.header(6, state_height=4)))
    expect_revert("HeightOutOfRange", lambda: post(chain.header(2**48)))
    # signed for another sequencer chain id, or for another contract address
    for domain in (
        Domain(SEQ_CHAIN_ID + 1, chain.addresses.commitments, GENESIS_HASH),
        Domain(SEQ_CHAIN_ID, chain.addresses.bridge, GENESIS_HASH),
        Domain(SEQ_CHAIN_ID, chain.addresses.commitments, keccak256(b"another genesis")),
    ):
        wrong = sign_packed(keys[:3], h.finalize_digest(domain))
        expect_revert("SignerNotInSet", functools.partial(post, h, signatures=wrong))
    # signed in the separator of an epoch 1 this chain does not have
    wrong = sign_packed(keys[:3], h.finalize_digest(chain.domain, epoch=1))
    expect_revert("SignerNotInSet", functools.partial(post, h, signatures=wrong))
    # nothing changed, and the honest signatures still go through
    assert chain.commitments.functions.latestHeight().call() == 5
    post(h, signatures=good)
    assert chain.commitments.functions.latestHeight().call() == 6


def _checksums(addresses: Sequence[bytes]) -> list[ChecksumAddress]:
    return [Web3.to_checksum_address(address) for address in addresses]
