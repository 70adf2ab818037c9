"""Bridge: deposits, withdrawals proven with real state-tree proofs, and the
escape hatch over real `sub/` and `l1bal/` leaves."""

from __future__ import annotations

import dataclasses

from eth_abi.abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from consensus.crypto import keccak256
from sequencer_net.execution.encoding import BIG_INT_EXT, encode
from sequencer_net.execution.limits import MAX_AMOUNT
from sequencer_net.execution.records import NonceWindow, Subaccount
from sequencer_net.execution.state import account_entry
from sequencer_net.execution.state_tree import MemoryNodeStore, StateTree
from sequencer_net.l1.posts import NO_POST, PostRef
from tests.l1.l1_chain import CHALLENGE_WINDOW, ESCAPE_DELAY, L1Chain, expect_revert

WAD = 10**18
ETH = Web3.to_checksum_address("0x" + "00" * 20)
STATE_HEIGHT = 40
HUGE = 2**120 + 5  # a collateral whose BIG_INT_EXT payload is exactly 16 bytes


def wd_key(withdrawal_id: int) -> bytes:
    return b"wd/" + withdrawal_id.to_bytes(8, "big")


def wd_value(withdrawal_id: int, recipient: str, token: str, amount: int) -> bytes:
    return abi_encode(
        ["uint64", "address", "address", "uint256"], [withdrawal_id, recipient, token, amount]
    )


def sub_key(owner: str, number: int) -> bytes:
    return b"sub/" + bytes.fromhex(owner[2:]) + bytes([number])


def l1bal_key(owner: str, token: str) -> bytes:
    return b"l1bal/" + bytes.fromhex(owner[2:]) + bytes.fromhex(token[2:])


def build_state(entries: dict[bytes, bytes]) -> StateTree:
    tree = StateTree(MemoryNodeStore())
    filler = {b"acct/" + keccak256(b"filler %d" % i)[:20]: b"\x01" * (i + 1) for i in range(12)}
    tree.apply({**filler, **entries})
    return tree


def post_root(
    chain: L1Chain, root: bytes, height: int = 1, state_height: int = STATE_HEIGHT
) -> PostRef:
    """Post `root` and return the post's ref (from its Committed event)."""
    receipt = chain.post(chain.header(height, state_height=state_height, state_root=root))
    args = chain.events(chain.commitments, "Committed", receipt)[0]["args"]
    return PostRef(args["postIndex"], bytes(args["stateRoot"]), args["stateHeight"], height)


def test_deposits_count_up_over_both_kinds(chain: L1Chain) -> None:
    user = chain.users[0]
    sub = bytes.fromhex(user.address[2:]) + b"\x00"
    token = chain.addresses.checksum("collateral_token")
    chain.send(chain.token.functions.mint(user.address, 10 * WAD), user)
    chain.send(chain.token.functions.approve(chain.addresses.checksum("bridge"), 10 * WAD), user)
    receipts = [
        chain.send(chain.bridge.functions.depositEth(sub), user, value=3 * WAD),
        chain.send(chain.bridge.functions.depositToken(sub, 4 * WAD), user),
        chain.send(chain.bridge.functions.depositEth(sub), user, value=1),
    ]
    events = [chain.events(chain.bridge, "Deposited", r)[0]["args"] for r in receipts]
    assert [e["nonce"] for e in events] == [0, 1, 2]
    assert [(e["token"], e["amount"]) for e in events] == [
        (ETH, 3 * WAD),
        (token, 4 * WAD),
        (ETH, 1),
    ]
    assert all(e["from"] == user.address and e["subaccount"] == sub for e in events)
    assert chain.token.functions.balanceOf(chain.addresses.checksum("bridge")).call() == 4 * WAD
    assert chain.w3.eth.get_balance(chain.addresses.checksum("bridge")) == 3 * WAD + 1
    expect_revert("ZeroAmount", lambda: chain.send(chain.bridge.functions.depositEth(sub), user))
    expect_revert(
        "ZeroAmount", lambda: chain.send(chain.bridge.functions.depositToken(sub, 0), user)
    )
    expect_revert(
        "TokenTransferFailed",
        lambda: chain.send(chain.bridge.functions.depositToken(sub, 7 * WAD), user),
    )
    # Above what the chain credits (its MAX_AMOUNT, 10**40): refused, not locked.
    expect_revert(
        "DepositTooLarge",
        lambda: chain.send(chain.bridge.functions.depositToken(sub, 10**40 + 1), user),
    )
    assert chain.bridge.functions.MAX_DEPOSIT().call() == MAX_AMOUNT


def test_withdrawal_with_a_real_proof_pays_once(chain: L1Chain) -> None:
    recipient = chain.users[1].address
    token = chain.addresses.checksum("collateral_token")
    bridge = chain.addresses.checksum("bridge")
    chain.send(chain.bridge.functions.depositEth(b"\x00" * 21), chain.users[0], value=5 * WAD)
    chain.send(chain.token.functions.mint(bridge, 1_000 * WAD))
    withdrawals = {
        7: (recipient, ETH, 2 * WAD),
        8: (recipient, token, 300 * WAD),
    }
    tree = build_state({wd_key(i): wd_value(i, *w) for i, w in withdrawals.items()})
    posted = post_root(chain, tree.root)

    def prove(withdrawal_id: int, amount: int, proof: bytes, post: PostRef = posted) -> TxReceipt:
        who, asset, _ = withdrawals[withdrawal_id]
        call = chain.bridge.functions.proveWithdrawal(
            post.as_abi(), withdrawal_id, who, asset, amount, proof
        )
        return chain.send(call, chain.users[2])

    def finalize(withdrawal_id: int) -> TxReceipt:
        return chain.send(chain.bridge.functions.finalizeWithdrawal(withdrawal_id), chain.users[0])

    proof7 = tree.prove(wd_key(7)).encode()
    proof8 = tree.prove(wd_key(8)).encode()
    expect_revert("ProofMismatch", lambda: prove(7, 3 * WAD, proof7))  # wrong amount
    expect_revert("ProofMismatch", lambda: prove(7, 2 * WAD, proof8))  # another leaf's proof
    wrong = dataclasses.replace(posted, state_height=STATE_HEIGHT - 1)
    expect_revert("PostMismatch", lambda: prove(7, 2 * WAD, proof7, wrong))
    expect_revert("MalformedProof", lambda: prove(7, 2 * WAD, proof7 + b"\x00"))
    expect_revert("MalformedProof", lambda: prove(7, 2 * WAD, b"\x00" + proof7[1:]))
    expect_revert("ProofTooLarge", lambda: prove(7, 2 * WAD, bytes(9000)))
    expect_revert("NotProven", lambda: finalize(7))

    receipt = prove(7, 2 * WAD, proof7)
    proven = chain.events(chain.bridge, "WithdrawalProven", receipt)[0]["args"]
    assert proven["payableAt"] == receipt["blockNumber"] + CHALLENGE_WINDOW
    assert (proven["id"], proven["amount"], proven["stateHeight"]) == (7, 2 * WAD, STATE_HEIGHT)
    expect_revert("AlreadyProven", lambda: prove(7, 2 * WAD, proof7))
    prove(8, 300 * WAD, proof8)
    # the challenge window: nothing is paid while block.number < payableAt (web3 estimates
    # gas, and so meets the revert, at the latest block)
    chain.mine(proven["payableAt"] - 1 - chain.w3.eth.block_number)
    expect_revert("ChallengeWindowOpen", lambda: finalize(7))
    chain.mine(1)
    before = chain.w3.eth.get_balance(recipient)
    receipt = finalize(7)
    event = chain.events(chain.bridge, "Withdrawn", receipt)[0]["args"]
    assert (event["id"], event["recipient"], event["token"], event["amount"]) == (
        7,
        recipient,
        ETH,
        2 * WAD,
    )
    assert chain.w3.eth.get_balance(recipient) == before + 2 * WAD
    chain.mine(1)
    finalize(8)
    assert chain.token.functions.balanceOf(recipient).call() == 300 * WAD
    expect_revert("AlreadyWithdrawn", lambda: prove(7, 2 * WAD, proof7))
    expect_revert("AlreadyWithdrawn", lambda: finalize(8))


def test_escape_hatch(chain: L1Chain) -> None:
    alice, bob = chain.users[0], chain.users[1]
    bridge = chain.addresses.checksum("bridge")
    token = chain.addresses.checksum("collateral_token")
    chain.send(chain.token.functions.mint(bridge, 1_000 * WAD + HUGE))
    chain.send(chain.bridge.functions.depositEth(b"\x00" * 21), chain.users[2], value=4 * WAD)
    small = Subaccount(collateral=7 * WAD // 10, markets=(), open_orders=0)  # msgpack uint64
    big = Subaccount(collateral=250 * WAD + 1, markets=(), open_orders=0)  # BIG_INT_EXT
    trading = Subaccount(collateral=90 * WAD, markets=(3,), open_orders=1)
    negative = Subaccount(collateral=-(30 * WAD), markets=(), open_orders=0)
    huge = Subaccount(collateral=HUGE, markets=(), open_orders=0)  # 16 bytes: fixext 16
    assert encode(small)[1] == 0xCF and encode(big)[1:4] == bytes([0xC7, 9, BIG_INT_EXT])
    assert encode(huge)[1:3] == bytes([0xD8, BIG_INT_EXT])
    carol, dave = chain.users[2], chain.deployer
    window = NonceWindow(highest=41, used=0b1011)
    values = {  # subaccount 0 is an Account: the Subaccount fields, then the nonce window
        sub_key(alice.address, 0): account_entry(small, window),
        sub_key(alice.address, 1): encode(big),
        sub_key(alice.address, 2): encode(huge),
        sub_key(bob.address, 0): account_entry(trading, None),
        sub_key(bob.address, 1): encode(negative),
        sub_key(carol.address, 0): account_entry(None, window),  # the window alone
        sub_key(carol.address, 1): account_entry(small, None),  # an Account off subaccount 0
        sub_key(dave.address, 0): encode(small),  # a Subaccount on subaccount 0
        l1bal_key(bob.address, ETH): abi_encode(["uint256"], [3 * WAD]),
    }
    assert values[sub_key(alice.address, 0)][0] == 0x95
    tree = build_state(values)
    posted = post_root(chain, tree.root).as_abi()
    functions = chain.bridge.functions

    def escape(account: LocalAccount, number: int) -> TxReceipt:
        key = sub_key(account.address, number)
        proof = tree.prove(key).encode()
        call = functions.escapeCollateral(number, values[key], proof, posted, NO_POST.as_abi())
        return chain.send(call, account)

    assert not functions.escapeOpen().call()
    expect_revert("EscapeNotOpen", lambda: escape(alice, 0))
    chain.mine(ESCAPE_DELAY)  # latest block = the post's block + escapeDelay: not yet
    assert not functions.escapeOpen().call()
    chain.mine(1)
    assert functions.escapeOpen().call()

    before = chain.token.functions.balanceOf(alice.address).call()
    receipt = escape(alice, 0)
    event = chain.events(chain.bridge, "Escaped", receipt)[0]["args"]
    assert (event["owner"], event["token"], event["amount"]) == (
        alice.address,
        token,
        7 * WAD // 10,
    )
    escape(alice, 1)
    escape(alice, 2)
    assert (
        chain.token.functions.balanceOf(alice.address).call()
        == before + 7 * WAD // 10 + 250 * WAD + 1 + HUGE
    )
    expect_revert("AlreadyEscaped", lambda: escape(alice, 0))
    expect_revert("OpenMarkets", lambda: escape(bob, 0))
    expect_revert("NothingToEscape", lambda: escape(bob, 1))
    expect_revert("MalformedSubaccount", lambda: escape(carol, 0))
    expect_revert("MalformedSubaccount", lambda: escape(carol, 1))
    expect_revert("MalformedSubaccount", lambda: escape(dave, 0))
    # a value that is not the proven one
    key = sub_key(bob.address, 0)
    expect_revert(
        "ProofMismatch",
        lambda: chain.send(
            functions.escapeCollateral(
                0, account_entry(small, None), tree.prove(key).encode(), posted, NO_POST.as_abi()
            ),
            bob,
        ),
    )

    proof = tree.prove(l1bal_key(bob.address, ETH)).encode()
    before_eth = chain.w3.eth.get_balance(bob.address)
    escape_balance = functions.escapeBalance(ETH, 3 * WAD, proof, posted, NO_POST.as_abi())
    receipt = chain.send(escape_balance, bob)
    fee = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.w3.eth.get_balance(bob.address) == before_eth + 3 * WAD - fee
    expect_revert("AlreadyEscaped", lambda: chain.send(escape_balance, bob))

    # the bridge is frozen on the escaped state: later posts do not reopen it
    assert functions.frozenStateRoot().call() == tree.root
    expect_revert(
        "BridgeFrozen", lambda: chain.send(functions.depositEth(b"\x00" * 21), bob, value=1)
    )
    chain.post(chain.header(2, state_height=STATE_HEIGHT + 1))
    assert functions.escapeOpen().call()


def test_escape_needs_a_posted_state(chain: L1Chain) -> None:
    chain.mine(ESCAPE_DELAY + 1)
    no_post = NO_POST.as_abi()
    value = b"\x95\x01\x90\x00\xff\x00"
    call = chain.bridge.functions.escapeCollateral(0, value, b"\x01", no_post, no_post)
    expect_revert("PostNotMade", lambda: chain.send(call, chain.users[0]))


def test_checksum_helper_matches_web3(chain: L1Chain) -> None:
    assert chain.addresses.checksum("bridge") == Web3.to_checksum_address(chain.addresses.bridge)
