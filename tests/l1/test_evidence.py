"""Accountable safety on L1: a fork by 2 equivocating validators of 4 is proven
with their signed votes, the contracts freeze, the fork's withdrawal is never
paid and the escape hatch pays from the last undisputed root; forged evidence
is refused with one error per forgery; only the timelocked admin resumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import msgspec
import pytest
from web3 import Web3
from web3.types import TxReceipt

from consensus.crypto import SECP256K1_N, PrivateKey, keccak256
from consensus.encoding import Domain, vote_digest
from consensus.epochs import epoch_domain_separator
from consensus.messages import Vote, VoteKind
from consensus.types import ZERO_DIGEST, Digest, Height, View
from sequencer_net.execution.records import Subaccount
from sequencer_net.execution.state import account_entry
from sequencer_net.l1.artifacts import load_artifact
from sequencer_net.l1.evidence import (
    EvidenceRejected,
    NotEquivocation,
    check_evidence,
    evidence_args,
    submit_evidence,
)
from sequencer_net.l1.header import L1Header
from sequencer_net.l1.link import read_tip
from sequencer_net.l1.posts import NO_POST, PostNotFound, PostRef, escape_posts
from sequencer_net.l1.transact import transact
from sequencer_net.storage.node_store import EvidenceRecord
from tests.l1.l1_chain import (
    CHALLENGE_WINDOW,
    GENESIS_HASH,
    RESUME_DELAY,
    SEQ_CHAIN_ID,
    L1Chain,
    expect_revert,
    validator_keys,
)
from tests.l1.test_bridge import build_state, sub_key, wd_key, wd_value

WAD = 10**18
ETH = Web3.to_checksum_address("0x" + "00" * 20)


def vote(
    key: PrivateKey,
    domain: Domain,
    kind: VoteKind,
    view: int,
    height: int,
    block: bytes,
    signer: int = 0,
    epoch: int = 0,
) -> Vote:
    """`key`'s vote, signed in `epoch`'s separator of `domain`."""
    separator = epoch_domain_separator(domain.separator(), epoch)
    digest = vote_digest(separator, kind, View(view), Height(height), Digest(block))
    return Vote(
        kind=kind,
        view=view,
        height=height,
        block=block,
        signer=signer,
        signature=key.sign_digest(digest),
    )


def finalize_vote(key: PrivateKey, domain: Domain, header: L1Header, epoch: int = 0) -> Vote:
    return vote(
        key,
        domain,
        VoteKind.FINALIZE,
        header.view,
        header.height,
        header.block_hash(),
        epoch=epoch,
    )


def nullify_vote(key: PrivateKey, domain: Domain, view: int, epoch: int = 0) -> Vote:
    return vote(key, domain, VoteKind.NULLIFY, view, 0, ZERO_DIGEST, epoch=epoch)


def submit(chain: L1Chain, first: Vote, second: Vote) -> TxReceipt:
    return chain.send(chain.commitments.functions.submitEvidence(*evidence_args(first, second)))


def post_signed(chain: L1Chain, header: L1Header, signers: Sequence[PrivateKey]) -> TxReceipt:
    return chain.post(header, signers=signers)


def test_a_proven_fork_freezes_and_pays_only_from_undisputed_state(chain: L1Chain) -> None:
    keys, domain = chain.keys, chain.domain
    liars, honest_a, honest_b = keys[:2], keys[2], keys[3]
    alice, attacker, honest = chain.users[0], chain.users[1], chain.users[2]
    bridge = chain.bridge.functions
    chain.send(bridge.depositEth(b"\x00" * 21), value=100 * WAD)
    chain.send(chain.token.functions.mint(chain.addresses.checksum("bridge"), 100 * WAD))

    # Height 1: an honest post holding alice's collateral and an honest withdrawal.
    alice_sub = Subaccount(collateral=7 * WAD, markets=(), open_orders=0)
    good = build_state(
        {
            sub_key(alice.address, 0): account_entry(alice_sub, None),
            wd_key(5): wd_value(5, honest.address, ETH, WAD),
        }
    )
    ref1 = chain.post_ref(
        post_signed(chain, chain.header(1, state_height=1, state_root=good.root), keys[:3])
    )
    chain.send(
        bridge.proveWithdrawal(
            ref1.as_abi(), 5, honest.address, ETH, WAD, good.prove(wd_key(5)).encode()
        )
    )

    # Height 2 forks: two blocks of one view, each finalized by the two liars and one
    # honest validator that saw only that block. Both certificates are valid quorums.
    fork = build_state({wd_key(9): wd_value(9, attacker.address, ETH, 50 * WAD)})
    block_a = chain.header(2, state_height=2, state_root=fork.root)
    block_b = dataclasses.replace(block_a, state_root=keccak256(b"the other side"))
    assert block_a.view == block_b.view and block_a.block_hash() != block_b.block_hash()
    with chain.snapshot():
        receipt = post_signed(chain, block_b, [*liars, honest_b])  # B would pass as well
        committed = chain.events(chain.commitments, "Committed", receipt)[0]["args"]
        assert committed["blockHash"] == block_b.block_hash()
    ref2 = chain.post_ref(post_signed(chain, block_a, [*liars, honest_a]))
    chain.send(
        bridge.proveWithdrawal(
            ref2.as_abi(), 9, attacker.address, ETH, 50 * WAD, fork.prove(wd_key(9)).encode()
        ),
        attacker,
    )

    # A watcher holding both finalize votes of each liar proves the equivocations in time.
    # One proven validator (power 1 of 4, within f) freezes nothing: it alone cannot fork.
    first, second = (finalize_vote(liars[0], domain, h) for h in (block_a, block_b))
    assert check_evidence(first, second, domain).validator == liars[0].address
    proven = submit_evidence(
        chain.w3, chain.deployer, chain.commitments, EvidenceRecord(0, first, second, "test")
    )
    assert (proven.validator, proven.height, proven.froze) == (liars[0].address, 2, False)
    commitments = chain.commitments.functions
    assert not commitments.frozen().call()
    assert commitments.offendingPower().call() == [1, False]
    other = submit_evidence(
        chain.w3,
        chain.deployer,
        chain.commitments,
        EvidenceRecord(
            1,
            finalize_vote(liars[1], domain, block_a),
            finalize_vote(liars[1], domain, block_b),
            "test",
        ),
    )
    assert (other.validator, other.height, other.froze) == (liars[1].address, 2, True)
    assert commitments.offendingPower().call() == [2, True]
    assert not bridge.escapeOpen().call()  # not before a challenge window has passed
    assert commitments.frozen().call()
    assert commitments.disputedHeight(0).call() == [True, 2]
    assert commitments.offenceOf(Web3.to_checksum_address(liars[0].address)).call() == [True, 2]
    assert commitments.isDisputed(0, 2).call() and not commitments.isDisputed(0, 1).call()
    assert escape_posts(chain.commitments) == (ref1, ref2)

    # Frozen: no new posts, and the fork's withdrawal is never paid.
    expect_revert("Frozen", lambda: post_signed(chain, chain.header(3), keys[:3]))
    chain.mine(CHALLENGE_WINDOW + 1)
    expect_revert("WithdrawalDisputed", lambda: chain.send(bridge.finalizeWithdrawal(9)))
    expect_revert(
        "WithdrawalDisputed",
        lambda: chain.send(
            bridge.proveWithdrawal(
                ref2.as_abi(), 9, attacker.address, ETH, 50 * WAD, fork.prove(wd_key(9)).encode()
            )
        ),
    )
    # The honest withdrawal proven on the undisputed root is paid.
    before = chain.w3.eth.get_balance(honest.address)
    chain.send(bridge.finalizeWithdrawal(5))
    assert chain.w3.eth.get_balance(honest.address) == before + WAD

    # The escape hatch opens a challenge window after the freeze, from the last undisputed root.
    assert bridge.escapeOpen().call()  # the window passed while waiting for the withdrawals
    proof = good.prove(sub_key(alice.address, 0)).encode()
    # Only the last undisputed post, shown by the disputed post after it.
    expect_revert(
        "NotNextPost",
        lambda: chain.send(
            bridge.escapeCollateral(
                0, account_entry(alice_sub, None), proof, ref1.as_abi(), ref1.as_abi()
            ),
            alice,
        ),
    )
    chain.send(
        bridge.escapeCollateral(
            0, account_entry(alice_sub, None), proof, ref1.as_abi(), ref2.as_abi()
        ),
        alice,
    )
    assert chain.token.functions.balanceOf(alice.address).call() == 7 * WAD
    assert bridge.frozenStateRoot().call() == good.root
    assert bridge.frozenStateHeight().call() == 1

    # A repeat is refused cheaply.
    with pytest.raises(EvidenceRejected) as again:
        submit_evidence(
            chain.w3, chain.deployer, chain.commitments, EvidenceRecord(0, first, second, "t")
        )
    assert again.value.reason == "EquivocationAlreadyProven"
    # the attacker got nothing
    assert not bridge.withdrawn(9).call()


def test_nullify_and_finalize_in_one_view_is_evidence(chain: L1Chain) -> None:
    key, domain = chain.keys[1], chain.domain
    ref1 = chain.post_ref(post_signed(chain, chain.header(1), chain.keys[:3]))
    header = chain.header(7)
    finalized = finalize_vote(key, domain, header)
    nullified = nullify_vote(key, domain, header.view)
    with chain.snapshot():
        receipt = submit(chain, nullified, finalized)  # either order
        event = chain.events(chain.commitments, "EquivocationProven", receipt)[0]["args"]
        assert (event["height"], event["firstKind"], event["secondKind"]) == (7, 2, 3)
    receipt = submit(chain, finalized, nullified)
    event = chain.events(chain.commitments, "EquivocationProven", receipt)[0]["args"]
    assert (event["validator"], event["height"], event["viewNumber"]) == (
        Web3.to_checksum_address(key.address),
        7,
        header.view,
    )
    assert not chain.commitments.functions.frozen().call()  # one validator: within f
    accomplice = chain.keys[2]
    submit(
        chain,
        finalize_vote(accomplice, domain, header),
        nullify_vote(accomplice, domain, header.view),
    )
    assert chain.commitments.functions.frozen().call()
    # posts below the disputed height stay undisputed: height 1 is the last one
    assert escape_posts(chain.commitments) == (ref1, NO_POST)
    # the same validator again, disputing a lower height: accepted, and the height drops
    lower = chain.header(1)
    receipt = submit(
        chain, finalize_vote(key, domain, lower), nullify_vote(key, domain, lower.view)
    )
    assert chain.events(chain.commitments, "FrozenAt", receipt)[0]["args"]["disputedHeight"] == 1
    with pytest.raises(PostNotFound):
        escape_posts(chain.commitments)

    def escape() -> TxReceipt:
        call = chain.bridge.functions.escapeBalance(
            ETH, 1, b"\x01", ref1.as_abi(), NO_POST.as_abi()
        )
        return chain.send(call, chain.users[0])

    expect_revert("EscapeNotOpen", escape)  # a challenge window after the freeze first
    chain.mine(CHALLENGE_WINDOW)
    expect_revert("PostDisputed", escape)


def test_forged_evidence_is_refused_with_its_own_error(chain: L1Chain) -> None:
    keys, domain = chain.keys, chain.domain
    a, b = chain.header(4), dataclasses.replace(chain.header(4), state_root=keccak256(b"x"))
    first, second = finalize_vote(keys[0], domain, a), finalize_vote(keys[0], domain, b)

    def refused(name: str, x: Vote, y: Vote) -> None:
        expect_revert(name, lambda: submit(chain, x, y))

    # bad signatures: recovers nothing, v outside {27, 28}, a high-s twin, wrong length
    sig = second.signature
    s = int.from_bytes(sig[32:64], "big")
    twin = sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])
    for forged in (bytes(65), sig[:64] + b"\x1d", twin, sig[:64]):
        refused("BadEvidenceSignature", first, msgspec.structs.replace(second, signature=forged))
    refused("BadEvidenceSignature", msgspec.structs.replace(first, signature=bytes(65)), second)
    # signed by a key outside the set
    outsider = validator_keys(1, tag=b"outsider")[0]
    refused(
        "EvidenceSignerNotInSet",
        finalize_vote(outsider, domain, a),
        finalize_vote(outsider, domain, b),
    )
    # signed for another chain id, contract or genesis: recovers to an unrelated address
    for other in (
        Domain(SEQ_CHAIN_ID + 1, chain.addresses.commitments, GENESIS_HASH),
        Domain(SEQ_CHAIN_ID, chain.addresses.bridge, GENESIS_HASH),
        Domain(SEQ_CHAIN_ID, chain.addresses.commitments, keccak256(b"another genesis")),
    ):
        refused(
            "EvidenceSignerNotInSet",
            finalize_vote(keys[0], other, a),
            finalize_vote(keys[0], other, b),
        )
    # two validators' votes
    refused("EvidenceSignersDiffer", first, finalize_vote(keys[1], domain, b))
    # votes that do not conflict
    refused("VotesDoNotConflict", first, first)
    later = dataclasses.replace(b, view=b.view + 1)
    refused("VotesDoNotConflict", first, finalize_vote(keys[0], domain, later))
    notarize = [
        vote(keys[0], domain, VoteKind.NOTARIZE, h.view, h.height, h.block_hash()) for h in (a, b)
    ]
    refused("VotesDoNotConflict", *notarize)
    refused("VotesDoNotConflict", notarize[0], first)
    nullify = nullify_vote(keys[0], domain, a.view)
    refused("VotesDoNotConflict", nullify, nullify_vote(keys[0], domain, a.view))
    refused("VotesDoNotConflict", first, nullify_vote(keys[0], domain, a.view + 1))
    with pytest.raises(NotEquivocation):
        check_evidence(notarize[0], notarize[1], domain)
    with pytest.raises(NotEquivocation):
        record = EvidenceRecord(0, notarize[0], notarize[1], "notarized two blocks in one view")
        submit_evidence(chain.w3, chain.deployer, chain.commitments, record)
    # nothing was recorded; the real evidence still goes through, once
    assert not chain.commitments.functions.frozen().call()
    submit(chain, first, second)
    refused("EquivocationAlreadyProven", first, second)
    refused("EquivocationAlreadyProven", second, first)


def test_resume_only_by_the_timelocked_admin(chain: L1Chain) -> None:
    keys, domain = chain.keys, chain.domain
    functions = chain.commitments.functions
    new = sorted(validator_keys(4, tag=b"after the fork"), key=lambda key: key.address)
    new_set = [Web3.to_checksum_address(key.address) for key in new]
    root = keccak256(b"recovered state")

    def resume(account_index: int | None = None) -> TxReceipt:
        call = functions.resume(3, keccak256(b"block 3"), 3, root, new_set, [1] * 4)
        account = chain.deployer if account_index is None else chain.users[account_index]
        return chain.send(call, account)

    ref1 = chain.post_ref(post_signed(chain, chain.header(1), keys[:3]))
    expect_revert("NotFrozen", resume)
    a = chain.header(2)
    b = dataclasses.replace(a, state_root=keccak256(b"b"))
    submit(chain, finalize_vote(keys[0], domain, a), finalize_vote(keys[0], domain, b))
    assert functions.frozenAtBlock().call() == 0  # one proven validator freezes nothing
    receipt = submit(chain, finalize_vote(keys[1], domain, a), finalize_vote(keys[1], domain, b))
    assert functions.frozenAtBlock().call() == receipt["blockNumber"]
    tip = read_tip(chain.commitments)
    assert (tip.frozen, tip.era, tip.disputed_height, tip.post_count) == (True, 0, 2, 1)
    expect_revert("NotAdmin", lambda: resume(0))
    chain.mine(RESUME_DELAY - 1)  # web3 estimates at the latest block: frozenAt + delay - 1
    expect_revert("ResumeTooEarly", resume)
    chain.mine(1)
    receipt = resume()
    event = chain.events(chain.commitments, "Resumed", receipt)[0]["args"]
    assert (event["era"], event["fromHeight"], event["stateRoot"]) == (1, 3, root)
    assert not functions.frozen().call()
    assert (functions.era().call(), functions.epoch().call()) == (1, 1)
    assert (functions.latestHeight().call(), functions.latestStateRoot().call()) == (3, root)
    assert event["blockHash"] == keccak256(b"block 3")
    # the resume is the new era's first post; the frozen era's posts are no longer named
    resumed = PostRef(event["postIndex"], root, 3, 3)
    assert resumed.index == ref1.index + 1 == functions.eraFirstPost().call()
    assert functions.checkPost(resumed.as_abi()).call() == [1, False, True]
    tip = read_tip(chain.commitments)
    assert (tip.frozen, tip.era, tip.epoch, tip.disputed_height) == (False, 1, 1, None)
    assert (tip.era_first_post, tip.post_count) == (resumed.index, resumed.index + 1)
    assert tip.last_post_block == receipt["blockNumber"]
    expect_revert("PostOfEndedEra", lambda: functions.checkPost(ref1.as_abi()).call())
    # the frozen era's dispute stands; the new era starts undisputed
    assert functions.isDisputed(0, 2).call() and not functions.isDisputed(1, 2).call()
    assert escape_posts(chain.commitments) == (resumed, NO_POST)
    # the new set posts, as epoch 1 in its own separator; the old set cannot, in either
    assert functions.lastEpoch().call() == 1
    h = chain.header(4)
    expect_revert("SignerNotInSet", lambda: post_signed(chain, h, keys[:3]))
    expect_revert("SignerNotInSet", lambda: chain.post(h, signers=keys[:3], epoch=1))
    expect_revert("SignerNotInSet", lambda: post_signed(chain, h, new[:3]))
    chain.post(h, signers=new[:3], epoch=1)
    assert functions.latestHeight().call() == 4
    expect_revert("NotFrozen", resume)


def test_no_admin_means_no_resume(chain: L1Chain) -> None:
    artifact = load_artifact("Commitments")
    factory = chain.w3.eth.contract(abi=artifact.abi_list, bytecode=artifact.bytecode)
    keys = chain.keys
    receipt = transact(
        chain.w3,
        chain.deployer,
        factory.constructor(
            SEQ_CHAIN_ID,
            GENESIS_HASH,
            [Web3.to_checksum_address(k.address) for k in keys],
            [1] * len(keys),
            ETH,
            0,
            [],
            [],
        ),
    )
    address = receipt["contractAddress"]
    assert address is not None
    commitments = chain.w3.eth.contract(address=address, abi=artifact.abi_list)
    domain = Domain(SEQ_CHAIN_ID, bytes.fromhex(address[2:]), GENESIS_HASH)
    a = chain.header(2)
    b = dataclasses.replace(a, state_root=keccak256(b"b"))
    for liar in keys[2:]:
        first, second = (finalize_vote(liar, domain, h) for h in (a, b))
        chain.send(commitments.functions.submitEvidence(*evidence_args(first, second)))
    assert commitments.functions.frozen().call()
    call = commitments.functions.resume(
        1, keccak256(b"x"), 1, keccak256(b"y"), [chain.deployer.address], [1]
    )
    expect_revert("NotAdmin", lambda: chain.send(call))


def test_liars_cannot_escape_from_their_fork_by_disputing_above_it(chain: L1Chain) -> None:
    """More than f liars post a fork block at height 2, then prove their own
    offences at height 3 so that the fork looks undisputed and escape from it.
    Escapes open only a challenge window after a freeze (time for honest
    evidence at height 2), and a root escapes had already frozen on moves down
    once later evidence disputes it."""
    keys, domain = chain.keys, chain.domain
    liars, honest_a = keys[:2], keys[2]
    alice, bob, attacker = chain.users[0], chain.users[2], chain.users[1]
    bridge = chain.bridge.functions
    chain.send(chain.token.functions.mint(chain.addresses.checksum("bridge"), 100 * WAD))
    flat = Subaccount(collateral=5 * WAD, markets=(), open_orders=0)
    good = build_state(
        {
            sub_key(alice.address, 0): account_entry(flat, None),
            sub_key(bob.address, 0): account_entry(flat, None),
        }
    )
    ref1 = chain.post_ref(
        post_signed(chain, chain.header(1, state_height=1, state_root=good.root), keys[:3])
    )
    rich = Subaccount(collateral=90 * WAD, markets=(), open_orders=0)
    fork_state = build_state(
        {
            sub_key(attacker.address, 0): account_entry(rich, None),
            sub_key(bob.address, 0): account_entry(flat, None),
        }
    )
    fork = chain.header(2, state_height=2, state_root=fork_state.root)
    twin = dataclasses.replace(fork, state_root=keccak256(b"the honest side"))
    ref2 = chain.post_ref(post_signed(chain, fork, [*liars, honest_a]))

    # The liars prove themselves at height 3: frozen, and height 2 (the fork) undisputed.
    above = chain.header(3)
    for liar in liars:
        submit(chain, finalize_vote(liar, domain, above), nullify_vote(liar, domain, above.view))
    commitments = chain.commitments.functions
    assert commitments.frozen().call()
    assert escape_posts(chain.commitments) == (ref2, NO_POST)
    attacker_proof = fork_state.prove(sub_key(attacker.address, 0)).encode()

    def attacker_escape(post: PostRef = ref2, after: PostRef = NO_POST) -> TxReceipt:
        call = bridge.escapeCollateral(
            0, account_entry(rich, None), attacker_proof, post.as_abi(), after.as_abi()
        )
        return chain.send(call, attacker)

    expect_revert("EscapeNotOpen", attacker_escape)  # the challenge window runs first

    # Had no honest evidence arrived within the window: bob escapes from the fork root
    # (still undisputed), freezing the bridge on it; then an honest watcher proves a liar
    # at height 2 (it finalized both fork blocks).
    chain.mine(CHALLENGE_WINDOW)
    bob_proof = fork_state.prove(sub_key(bob.address, 0)).encode()
    chain.send(
        bridge.escapeCollateral(
            0, account_entry(flat, None), bob_proof, ref2.as_abi(), NO_POST.as_abi()
        ),
        bob,
    )
    assert bridge.frozenStateRoot().call() == fork_state.root
    submit(chain, finalize_vote(liars[0], domain, fork), finalize_vote(liars[0], domain, twin))
    assert commitments.disputedHeight(0).call() == [True, 2]
    # The fork's root is disputed now: nothing more is paid from it (the attacker's
    # proof is against the fork root, and escapes moved below it)...
    expect_revert("PostDisputed", attacker_escape)
    expect_revert("ProofMismatch", lambda: attacker_escape(ref1, ref2))
    assert chain.token.functions.balanceOf(attacker.address).call() == 0
    # ...and escapes move to the last undisputed root, where alice is paid.
    alice_proof = good.prove(sub_key(alice.address, 0)).encode()
    chain.send(
        bridge.escapeCollateral(
            0, account_entry(flat, None), alice_proof, ref1.as_abi(), ref2.as_abi()
        ),
        alice,
    )
    assert bridge.frozenStateRoot().call() == good.root
    assert chain.token.functions.balanceOf(alice.address).call() == 5 * WAD
