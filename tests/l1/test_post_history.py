"""Commitments' post history: HISTORY posts named by PostRefs, one post per L1
block, and the Bridge's withdrawals and escapes against named posts, also after
a fork that went on for many posts before its evidence landed."""

from __future__ import annotations

import dataclasses
import functools

from hexbytes import HexBytes
from web3 import Web3
from web3.types import Nonce, TxParams

from consensus.crypto import keccak256
from sequencer_net.execution.records import Subaccount
from sequencer_net.execution.state import account_entry
from sequencer_net.l1.artifacts import load_artifact
from sequencer_net.l1.header import L1Header, sign_packed
from sequencer_net.l1.posts import HISTORY, NO_POST, PostRef, escape_posts
from tests.l1.l1_chain import CHALLENGE_WINDOW, ESCAPE_DELAY, L1Chain, expect_revert
from tests.l1.test_bridge import ETH, WAD, build_state, sub_key, wd_key, wd_value
from tests.l1.test_evidence import finalize_vote, submit

POST_GAS = 200_000


def ref_of(header: L1Header, index: int) -> PostRef:
    return PostRef(index, header.state_root, header.state_height, header.height)


def post_many(chain: L1Chain, heights: range) -> list[PostRef]:
    """Post chain.header(h) for each h, each mined in a block of its own."""
    account = chain.deployer
    provider = chain.w3.provider
    nonce = chain.w3.eth.get_transaction_count(account.address, "pending")
    chain_id = chain.w3.eth.chain_id
    gas_price = chain.w3.eth.gas_price * 2
    first = int(chain.commitments.functions.postCount().call())
    refs, last = [], HexBytes(b"")
    provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        for offset, height in enumerate(heights):
            header = chain.header(height)
            signatures = sign_packed(chain.keys[:3], header.finalize_digest(chain.domain))
            call = chain.commitments.functions.post(header.as_abi(), signatures)
            tx = {
                "to": chain.commitments.address,
                "data": call._encode_transaction_data(),
                "nonce": nonce + offset,
                "gas": POST_GAS,
                "gasPrice": gas_price,
                "chainId": chain_id,
                "value": 0,
            }
            signed = account.sign_transaction(tx)
            last = chain.w3.eth.send_raw_transaction(signed.raw_transaction)
            provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            refs.append(ref_of(header, first + offset))
    finally:
        provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    assert chain.w3.eth.get_transaction_receipt(last)["status"] == 1
    assert chain.commitments.functions.postCount().call() == first + len(refs)
    return refs


def test_the_silence_escape_takes_the_latest_post(chain: L1Chain) -> None:
    older = chain.post_ref(chain.post(chain.header(1)))
    latest = chain.post_ref(chain.post(chain.header(2)))
    chain.mine(ESCAPE_DELAY + 1)
    assert escape_posts(chain.commitments) == (latest, NO_POST)
    call = chain.bridge.functions.escapeBalance(ETH, 1, b"\x01", older.as_abi(), latest.as_abi())
    expect_revert("NotLatestPost", lambda: chain.send(call, chain.users[0]))


def test_one_post_per_l1_block(chain: L1Chain) -> None:
    provider = chain.w3.provider
    chain.post(chain.header(1))
    # Simulated in the block of that post (the latest): refused.
    late = chain.header(2)
    call = chain.commitments.functions.post(
        late.as_abi(), sign_packed(chain.keys[:3], late.finalize_digest(chain.domain))
    )
    expect_revert("AlreadyPostedThisBlock", lambda: call.call(block_identifier="latest"))
    call.call(block_identifier="pending")  # the next block takes it
    # Two posts mined in one block: the second reverts.
    provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        nonce = chain.w3.eth.get_transaction_count(chain.deployer.address, "pending")
        sent = []
        for offset, height in enumerate((2, 3)):
            header = chain.header(height)
            signatures = sign_packed(chain.keys[:3], header.finalize_digest(chain.domain))
            params: TxParams = {
                "from": chain.deployer.address,
                "nonce": Nonce(nonce + offset),
                "gas": POST_GAS,
                "chainId": chain.w3.eth.chain_id,
            }
            call = chain.commitments.functions.post(header.as_abi(), signatures)
            signed = chain.deployer.sign_transaction(call.build_transaction(params))  # type: ignore[arg-type]
            sent.append(chain.w3.eth.send_raw_transaction(signed.raw_transaction))
        provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    first, second = (chain.w3.eth.get_transaction_receipt(h) for h in sent)
    assert first["blockNumber"] == second["blockNumber"]
    assert (first["status"], second["status"]) == (1, 0)
    functions = chain.commitments.functions
    assert (functions.latestHeight().call(), functions.postCount().call()) == (2, 2)


def test_post_refs_are_checked_against_the_history(chain: L1Chain) -> None:
    functions = chain.commitments.functions
    recipient = chain.users[1].address
    chain.send(chain.bridge.functions.depositEth(b"\x00" * 21), chain.users[0], value=5 * WAD)
    tree = build_state({wd_key(i): wd_value(i, recipient, ETH, WAD) for i in (7, 8, 9)})
    header = chain.header(1, state_height=1, state_root=tree.root)
    oldest = chain.post_ref(chain.post(header))
    assert oldest == ref_of(header, 0)

    def prove(withdrawal_id: int, post: PostRef) -> object:
        call = chain.bridge.functions.proveWithdrawal(
            post.as_abi(),
            withdrawal_id,
            recipient,
            ETH,
            WAD,
            tree.prove(wd_key(withdrawal_id)).encode(),
        )
        return chain.send(call, chain.users[2])

    # Forgeries, each refused with its own error.
    for forged in (
        dataclasses.replace(oldest, state_root=keccak256(b"forged")),
        dataclasses.replace(oldest, state_height=2),
        dataclasses.replace(oldest, height=2),
    ):
        expect_revert("PostMismatch", functools.partial(prove, 7, forged))
    expect_revert("PostNotMade", lambda: prove(7, dataclasses.replace(oldest, index=1)))

    # 500 posts later the oldest post still proves a withdrawal.
    refs = post_many(chain, range(2, 502))
    assert functions.postCount().call() == 501
    expect_revert("PostMismatch", lambda: prove(7, dataclasses.replace(oldest, index=1)))
    prove(7, oldest)
    # Up to HISTORY - 1 posts after it, it is kept; one more evicts it.
    refs += post_many(chain, range(502, 502 + HISTORY - 501))
    assert functions.postCount().call() == HISTORY
    assert functions.checkPost(oldest.as_abi()).call() == [0, False, False]
    refs += post_many(chain, range(502 + HISTORY - 501, 503 + HISTORY - 501))
    expect_revert("PostEvicted", lambda: prove(8, oldest))
    assert functions.checkPost(refs[0].as_abi()).call() == [0, False, False]
    assert functions.checkPost(refs[-1].as_abi()).call() == [0, False, True]
    expect_revert("PostEvicted", lambda: functions.checkPost(oldest.as_abi()).call())


def test_a_long_fork_escapes_from_the_last_undisputed_post(chain: L1Chain) -> None:
    """Posts 0 and 1 are honest; the fork then posts 10 times before the
    evidence lands (far more than a ring of 4 posts would have kept). Escapes
    pay from post 1, the last undisputed one, and only from it."""
    keys, domain = chain.keys, chain.domain
    liars = keys[:2]
    alice = chain.users[0]
    bridge = chain.bridge.functions
    chain.send(chain.token.functions.mint(chain.addresses.checksum("bridge"), 100 * WAD))
    flat = Subaccount(collateral=5 * WAD, markets=(), open_orders=0)
    early = build_state({sub_key(alice.address, 0): account_entry(flat, None)})
    good = build_state({sub_key(alice.address, 0): account_entry(flat, None), wd_key(1): b"\x01"})
    first = chain.post_ref(chain.post(chain.header(1, state_height=1, state_root=early.root)))
    last_good = chain.post_ref(chain.post(chain.header(2, state_height=2, state_root=good.root)))
    fork = post_many(chain, range(3, 13))
    assert [ref.index for ref in fork] == list(range(2, 12))
    fork_block = chain.header(3)
    twin = dataclasses.replace(fork_block, state_root=keccak256(b"the honest side"))
    for liar in liars:
        submit(chain, finalize_vote(liar, domain, fork_block), finalize_vote(liar, domain, twin))
    commitments = chain.commitments.functions
    assert commitments.frozen().call() and commitments.disputedHeight(0).call() == [True, 3]
    # The escape posts found from the Committed logs: the last undisputed one and the next.
    assert escape_posts(chain.commitments) == (last_good, fork[0])
    chain.mine(CHALLENGE_WINDOW)

    def escape(tree_root: object, post: PostRef, after: PostRef) -> object:
        tree = early if tree_root is early else good
        proof = tree.prove(sub_key(alice.address, 0)).encode()
        call = bridge.escapeCollateral(
            0, account_entry(flat, None), proof, post.as_abi(), after.as_abi()
        )
        return chain.send(call, alice)

    # An older undisputed post is refused (a withdrawal may have been paid after it)...
    expect_revert("NotLastUndisputedPost", lambda: escape(early, first, last_good))
    expect_revert("NotNextPost", lambda: escape(good, last_good, fork[1]))
    expect_revert("NotNextPost", lambda: escape(good, last_good, NO_POST))
    expect_revert("PostDisputed", lambda: escape(good, fork[0], fork[1]))
    expect_revert("PostDisputed", lambda: escape(good, fork[-1], NO_POST))
    forged = dataclasses.replace(fork[0], height=2)
    expect_revert("PostMismatch", lambda: escape(good, last_good, forged))
    # ...and the last undisputed post pays.
    escape(good, last_good, fork[0])
    assert chain.token.functions.balanceOf(alice.address).call() == 5 * WAD
    (post, era, disputed) = bridge.frozenPost().call()
    assert (PostRef(*post), era, disputed) == (last_good, 0, False)
    # Withdrawals now prove against that post only.
    assert bridge.frozenStateRoot().call() == good.root


def test_the_challenge_window_fits_the_history(chain: L1Chain) -> None:
    artifact = load_artifact("Bridge")
    factory = chain.w3.eth.contract(abi=artifact.abi_list, bytecode=artifact.bytecode)
    maximum = chain.bridge.functions.MAX_CHALLENGE_WINDOW().call()
    assert maximum == chain.commitments.functions.HISTORY().call() - 2 == HISTORY - 2
    commitments = chain.addresses.checksum("commitments")
    token = chain.addresses.checksum("collateral_token")
    expect_revert(
        "ChallengeWindowTooLong",
        lambda: chain.send(factory.constructor(commitments, token, 2_000, maximum + 1)),
    )
    receipt = chain.send(factory.constructor(commitments, token, 2_000, maximum))
    deployed = chain.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi_list)
    assert deployed.functions.challengeWindow().call() == maximum
    assert Web3.is_checksum_address(receipt["contractAddress"])
