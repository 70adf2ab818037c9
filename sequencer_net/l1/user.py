"""What a user does on the L1: deposit, claim a withdrawal, escape.

Each function sends locally signed transactions (sequencer_net.l1.transact)
and returns what the contract emitted. Claims and escapes prove a state entry
against the root of a post the Commitments contract keeps, named by a PostRef
(sequencer_net.l1.posts), so they read the proof from a seqnet node (any node:
the proof is checked against the root, the node is not trusted) at that post's
state height.

A withdrawal is claimed in two steps: `prove_withdrawal` records it on the
Bridge, and `finalize_withdrawal` pays it once the Bridge's challenge window
(L1 blocks) has passed, unless equivocation evidence disputed the post it was
proven on. `claim_withdrawal` does both, waiting out the window in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from sequencer_net.client import SeqnetApiError, SeqnetClient
from sequencer_net.execution.state import (
    PREFIX_L1_BALANCE,
    PREFIX_SUBACCOUNT,
    decode_account,
    l1_balance_key,
)
from sequencer_net.l1.artifacts import load_artifact
from sequencer_net.l1.posts import NO_POST, PostNotFound, PostRef, escape_posts, latest_post
from sequencer_net.l1.transact import transact

ETH = bytes(20)
"""The token address of ether in Deposited/Withdrawn events and `l1bal/` keys."""
L1_BLOCK_POLL_S: Final = 1.0
"""How often `wait_for_l1_block` reads the L1 head (an L1 block takes about 12 s)."""


class NotPostedYet(RuntimeError):
    """The entry a claim needs is not in the state the L1 has a root for yet."""


class WaitTimedOut(TimeoutError):
    """The L1 did not reach the awaited block in time."""


@dataclass(frozen=True, slots=True)
class ProvenWithdrawal:
    """A withdrawal recorded on the Bridge, payable from L1 block `payable_at`."""

    withdrawal_id: int
    recipient: bytes
    token: bytes
    amount: int
    state_height: int
    payable_at: int
    l1_block: int


@dataclass(frozen=True, slots=True)
class Deposit:
    nonce: int
    subaccount: bytes
    token: bytes
    amount: int
    l1_block: int


@dataclass(frozen=True, slots=True)
class Payout:
    """A payment the Bridge made: a withdrawal claim or an escape."""

    recipient: bytes
    token: bytes
    amount: int
    state_height: int
    l1_block: int


def contract(w3: Web3, name: str, address: bytes | str) -> Contract:
    """A web3 contract object for one of the project's contracts at `address`."""
    checksum = Web3.to_checksum_address(
        address if isinstance(address, str) else "0x" + address.hex()
    )
    return w3.eth.contract(address=checksum, abi=load_artifact(name).abi_list)


def _address(value: str) -> bytes:
    return bytes.fromhex(value[2:])


def _deposit_of(bridge: Contract, receipt: Any) -> Deposit:
    (event,) = bridge.events.Deposited().process_receipt(receipt)
    args = event["args"]
    return Deposit(
        nonce=args["nonce"],
        subaccount=bytes(args["subaccount"]),
        token=_address(args["token"]),
        amount=args["amount"],
        l1_block=receipt["blockNumber"],
    )


def deposit_eth(
    w3: Web3, account: LocalAccount, bridge: Contract, subaccount: bytes, amount: int
) -> Deposit:
    """Lock `amount` wei for `subaccount` (21 bytes: owner + number); the chain
    credits the owner's L1 ether balance once a validator quorum reported it."""
    _check_subaccount(subaccount)
    receipt = transact(w3, account, bridge.functions.depositEth(subaccount), value=amount)
    return _deposit_of(bridge, receipt)


def deposit_token(
    w3: Web3, account: LocalAccount, bridge: Contract, subaccount: bytes, amount: int
) -> Deposit:
    """Approve and lock `amount` of the collateral token for `subaccount`; the
    chain credits it as collateral (1:1 wad) once a validator quorum reported it."""
    _check_subaccount(subaccount)
    token = contract(w3, "CollateralToken", bridge.functions.token().call())
    transact(w3, account, token.functions.approve(bridge.address, amount))
    receipt = transact(w3, account, bridge.functions.depositToken(subaccount, amount))
    return _deposit_of(bridge, receipt)


def posted_state_height(commitments: Contract) -> int:
    """The state height of the latest posted header (0: nothing posted yet)."""
    return int(commitments.functions.latestStateHeight().call())


def prove_withdrawal(
    w3: Web3,
    account: LocalAccount,
    bridge: Contract,
    commitments: Contract,
    node: SeqnetClient,
    withdrawal_id: int,
) -> ProvenWithdrawal:
    """Record withdrawal `withdrawal_id` on the Bridge, proven in the latest posted state
    (once the escape hatch froze the Bridge: in the state it froze on).

    Raises NotPostedYet while that state does not hold it yet (posting trails
    execution by a few seconds; try again).
    """
    post = _provable_post(bridge, commitments)
    if post is None:
        raise NotPostedYet("no state is posted on the L1 yet")
    height = post.state_height
    try:
        proof = node.withdrawal_proof(withdrawal_id, state_height=height)
    except SeqnetApiError as exc:
        if exc.status == 404:
            raise NotPostedYet(
                f"withdrawal {withdrawal_id} is not in the posted state (height {height}) yet"
            ) from exc
        raise
    receipt = transact(
        w3,
        account,
        bridge.functions.proveWithdrawal(
            post.as_abi(),
            withdrawal_id,
            Web3.to_checksum_address(proof.recipient),
            Web3.to_checksum_address(proof.token),
            proof.amount,
            proof.proof,
        ),
    )
    (event,) = bridge.events.WithdrawalProven().process_receipt(receipt, errors=DISCARD)
    return ProvenWithdrawal(
        withdrawal_id=withdrawal_id,
        recipient=proof.recipient,
        token=proof.token,
        amount=proof.amount,
        state_height=height,
        payable_at=int(event["args"]["payableAt"]),
        l1_block=receipt["blockNumber"],
    )


def finalize_withdrawal(
    w3: Web3, account: LocalAccount, bridge: Contract, withdrawal_id: int
) -> Payout:
    """Pay a proven withdrawal whose challenge window has passed (anyone may send it;
    the Bridge pays the recipient the proof named). Reverts ChallengeWindowOpen
    before its `payable_at` block and WithdrawalDisputed if its post was disputed."""
    pending = bridge.functions.pendingWithdrawals(withdrawal_id).call()
    receipt = transact(w3, account, bridge.functions.finalizeWithdrawal(withdrawal_id))
    (event,) = bridge.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
    args = event["args"]
    return Payout(
        recipient=_address(args["recipient"]),
        token=_address(args["token"]),
        amount=args["amount"],
        state_height=int(pending[5]),
        l1_block=receipt["blockNumber"],
    )


def wait_for_l1_block(
    w3: Web3, block: int, timeout_s: float = 3_600.0, poll_s: float = L1_BLOCK_POLL_S
) -> None:
    """Return once the L1 head is at `block` or later; WaitTimedOut after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while w3.eth.block_number < block:
        if time.monotonic() >= deadline:
            raise WaitTimedOut(f"the L1 did not reach block {block} in {timeout_s:.0f} s")
        time.sleep(poll_s)


def claim_withdrawal(
    w3: Web3,
    account: LocalAccount,
    bridge: Contract,
    commitments: Contract,
    node: SeqnetClient,
    withdrawal_id: int,
    *,
    wait: Callable[[int], None] | None = None,
) -> Payout:
    """Prove withdrawal `withdrawal_id`, wait out the challenge window, and pay it.

    `wait(block)` returns once the L1 is at `block` (default: `wait_for_l1_block`,
    polling for up to an hour). Raises what `prove_withdrawal` and
    `finalize_withdrawal` raise.
    """
    proven = prove_withdrawal(w3, account, bridge, commitments, node, withdrawal_id)
    (wait or (lambda block: wait_for_l1_block(w3, block)))(proven.payable_at)
    return finalize_withdrawal(w3, account, bridge, withdrawal_id)


def escape_collateral(
    w3: Web3,
    account: LocalAccount,
    bridge: Contract,
    commitments: Contract,
    node: SeqnetClient,
    number: int = 0,
) -> Payout:
    """Take subaccount `number`'s collateral out through the escape hatch (open
    only when no header was posted for the Bridge's `escapeDelay` L1 blocks;
    the subaccount must hold no positions in the last posted state)."""
    height, post, after = _escape_posts(bridge, commitments)
    owner = _address(account.address)
    key = PREFIX_SUBACCOUNT + owner + bytes([number])
    entry = node.state_proof(key, state_height=height)
    if entry.value is None or (number == 0 and decode_account(entry.value)[0] is None):
        # Subaccount 0's entry may hold only the owner's nonce window: no collateral.
        raise NotPostedYet(f"subaccount {number} holds nothing in the posted state")
    call = bridge.functions.escapeCollateral(
        number, entry.value, entry.proof, post.as_abi(), after.as_abi()
    )
    receipt = transact(w3, account, call)
    (event,) = bridge.events.Escaped().process_receipt(receipt)
    token = _address(event["args"]["token"])
    return Payout(owner, token, event["args"]["amount"], height, receipt["blockNumber"])


def escape_balance(
    w3: Web3,
    account: LocalAccount,
    bridge: Contract,
    commitments: Contract,
    node: SeqnetClient,
    token: bytes = ETH,
) -> Payout:
    """Take the caller's L1 asset balance (ether by default) out through the escape hatch."""
    height, post, after = _escape_posts(bridge, commitments)
    owner = _address(account.address)
    entry = node.state_proof(PREFIX_L1_BALANCE + l1_balance_key(owner, token), state_height=height)
    if entry.value is None:
        raise NotPostedYet("no such L1 balance in the posted state")
    amount = int.from_bytes(entry.value, "big")
    receipt = transact(
        w3,
        account,
        bridge.functions.escapeBalance(
            Web3.to_checksum_address(token), amount, entry.proof, post.as_abi(), after.as_abi()
        ),
    )
    return Payout(owner, token, amount, height, receipt["blockNumber"])


def _frozen_post(bridge: Contract) -> tuple[PostRef, bool] | None:
    """The post the Bridge's escape hatch froze it on and whether it is
    disputed now (None: not frozen)."""
    (index, root, state_height, height), _, disputed = bridge.functions.frozenPost().call()
    if bytes(root) == bytes(32):
        return None
    return PostRef(int(index), bytes(root), int(state_height), int(height)), bool(disputed)


def _provable_post(bridge: Contract, commitments: Contract) -> PostRef | None:
    """The post a withdrawal proves against: the frozen one once the Bridge is
    frozen, else the latest post (None: nothing posted)."""
    frozen = _frozen_post(bridge)
    return frozen[0] if frozen is not None else latest_post(commitments)


def _escape_posts(bridge: Contract, commitments: Contract) -> tuple[int, PostRef, PostRef]:
    """(state height, post, next) of an escape: the frozen state while the
    Bridge is frozen on an undisputed root (the refs are then not read), else
    the post the first escape freezes on: the last undisputed post (the latest
    one unless equivocation evidence froze the Commitments contract) and the
    post after it."""
    frozen = _frozen_post(bridge)
    if frozen is not None and not frozen[1]:
        return frozen[0].state_height, NO_POST, NO_POST
    try:
        post, after = escape_posts(commitments)
    except PostNotFound as exc:
        raise NotPostedYet(f"no undisputed state to escape from: {exc}") from exc
    return post.state_height, post, after


def _check_subaccount(subaccount: bytes) -> None:
    if len(subaccount) != 21:
        raise ValueError("a subaccount is 21 bytes: the owner's address and a number")
