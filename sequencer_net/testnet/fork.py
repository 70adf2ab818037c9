"""The fork-attack scenario of a testnet whose manifest names equivocators.

Real validators, real L1 (anvil), the users of sequencer_net/l1/user.py:

    1. user A deposits 2 collateral and user B 1 on the L1 Bridge; both are
       credited on the chain; A withdraws 0.5 to an L1 address (executed at
       height w)
    2. wait until the L1 holds a posted state at or above every one of those
       heights: the last undisputed history
    3. arm the equivocators (SIGUSR1: `[consensus] test_fault`), wait until two
       honest validators hold different blocks at one height h: the fork
    4. as soon as a post at a block height >= h holds the withdrawal, prove
       it on the Bridge (a withdrawal in a posted root of the fork)
    5. wait for the watchers to freeze Commitments with equivocation evidence
    6. try to finalize the withdrawal once its challenge window passed: the
       Bridge refuses a withdrawal proven on a disputed post
    7. user B takes its collateral out through the escape hatch (open a
       challenge window after the freeze), proven
       against the last undisputed root

`run_fork_attack` returns the summary (`frozen`, `evidence_submitted`,
`fork_withdrawals_paid`, `escape_hatch_paid`, and how each step went); it
never raises for a step that fails, it reports it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from sequencer_net.client import SeqnetApiError, SeqnetClient, withdraw_transaction
from sequencer_net.testnet.network import GENESIS_FILE, Testnet

T = TypeVar("T")

WAD: Final = 10**18
DEPOSIT_A: Final = 2 * WAD
DEPOSIT_B: Final = 1 * WAD
WITHDRAWAL: Final = WAD // 2
USER_A_KEY: Final = 1
"""Indices into anvil's dev keys: A deposits and withdraws, B escapes, C receives."""
USER_B_KEY: Final = 3
RECIPIENT_KEY: Final = 2
STEP_TIMEOUT_S: Final = 60.0
POLL_S: Final = 0.25
PROVE_ATTEMPTS: Final = 2
"""Rounds over the nodes to prove the withdrawal (a node may lack the posted state)."""
MARGIN_HEIGHTS: Final = 3
"""Heights committed after the withdrawal before the fault is armed, so the
fork's blocks vouch for a state that holds the withdrawal."""


class ScenarioStopped(RuntimeError):
    """The session ended (or a step timed out) before the scenario finished."""


@dataclass
class ForkReport:
    steps: list[str] = field(default_factory=list)
    fork_height: int | None = None
    withdrawal_id: int | None = None
    withdrawal_height: int | None = None
    withdrawal_proven: bool = False
    withdrawal_refused: str | None = None
    fork_withdrawals_paid: int = 0
    frozen: bool = False
    disputed_height: int | None = None
    evidence_submitted: int = 0
    escape_hatch_paid: int = 0
    escape_state_height: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_fork_attack(
    net: Testnet,
    *,
    log: Callable[[str], None] = lambda text: None,
    stop: threading.Event | None = None,
) -> ForkReport:
    """Run the scenario on a started testnet with an L1 and equivocators (blocking)."""
    report = ForkReport()
    stop = stop or threading.Event()

    def say(text: str) -> None:
        report.steps.append(text)
        log(f"[fork] {text}")

    try:
        _run(net, report, say, stop)
    except ScenarioStopped as exc:
        report.error = str(exc)
        say(f"stopped: {exc}")
    except Exception as exc:  # a report, never a crash of the session
        report.error = f"{type(exc).__name__}: {exc}"
        say(f"failed: {report.error}")
    return report


def _until(stop: threading.Event, check: Callable[[], T | None], what: str, timeout_s: float) -> T:
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise ScenarioStopped(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(POLL_S)
    raise ScenarioStopped(f"the session ended while waiting for {what}")


def _run(
    net: Testnet, report: ForkReport, say: Callable[[str], None], stop: threading.Event
) -> None:
    from eth_account import Account
    from web3 import Web3
    from web3.exceptions import ContractCustomError, ContractLogicError

    from consensus.crypto import PrivateKey
    from sequencer_net.home.genesis import load_genesis
    from sequencer_net.l1.anvil import DEV_PRIVATE_KEYS
    from sequencer_net.l1.artifacts import UnknownCustomError, custom_error_name
    from sequencer_net.l1.link import read_tip
    from sequencer_net.l1.transact import TransactionFailed, transact
    from sequencer_net.l1.user import (
        NotPostedYet,
        contract,
        deposit_token,
        escape_collateral,
        finalize_withdrawal,
        prove_withdrawal,
    )

    assert net.l1 is not None, "the fork attack needs the testnet's L1"
    equivocators = set(net.manifest.network.equivocators)
    honest = [node for node in net.nodes if node.spec.index not in equivocators]
    if len(honest) < 2:
        raise ScenarioStopped("a fork needs two honest validators")
    domain = load_genesis(net.directory / GENESIS_FILE).domain()
    w3 = Web3(Web3.HTTPProvider(net.l1.rpc_url, request_kwargs={"timeout": 10}))
    addresses = net.l1.addresses
    commitments = contract(w3, "Commitments", addresses.commitments)
    bridge = contract(w3, "Bridge", addresses.bridge)
    token = contract(w3, "CollateralToken", addresses.collateral_token)
    clients = {node.spec.index: SeqnetClient(node.api_url, timeout=5.0) for node in net.nodes}
    first_honest = clients[honest[0].spec.index]

    def reason_of(exc: Exception) -> str:
        if isinstance(exc, ContractCustomError):
            try:
                return custom_error_name(exc)
            except UnknownCustomError:
                pass
        return f"{type(exc).__name__}: {exc}"

    # 1. Deposits, then the withdrawal executed on the chain.
    user_a, user_b = (
        Account.from_key(DEV_PRIVATE_KEYS[USER_A_KEY]),
        Account.from_key(DEV_PRIVATE_KEYS[USER_B_KEY]),
    )
    key_a, key_b = (
        PrivateKey(DEV_PRIVATE_KEYS[USER_A_KEY]),
        PrivateKey(DEV_PRIVATE_KEYS[USER_B_KEY]),
    )
    for account, key, amount in ((user_a, key_a, DEPOSIT_A), (user_b, key_b, DEPOSIT_B)):
        transact(w3, account, token.functions.mint(account.address, amount))
        deposit_token(w3, account, bridge, key.address + b"\x00", amount)
    say("deposited 2 (A) and 1 (B) collateral on the L1 Bridge")

    def credited(owner: bytes, amount: int) -> int | None:
        try:
            account = first_honest.account(owner)
        except SeqnetApiError:
            return None
        for sub in account.get("subaccounts", []):
            if sub.get("number") == 0 and _wei(sub.get("collateral")) >= amount:
                return int(account.get("height") or first_honest.status()["height"])
        return None

    credit_a = _until(stop, lambda: credited(key_a.address, DEPOSIT_A), "A's deposit", 90.0)
    credit_b = _until(stop, lambda: credited(key_b.address, DEPOSIT_B), "B's deposit", 90.0)
    recipient = Account.from_key(DEV_PRIVATE_KEYS[RECIPIENT_KEY])
    to = bytes.fromhex(recipient.address[2:])
    raw = withdraw_transaction(key_a, domain, 0, amount=WITHDRAWAL, recipient=to)
    tx = first_honest.submit(raw)
    found = first_honest.wait_committed(tx, timeout_s=STEP_TIMEOUT_S)
    if found.get("status") != "committed" or not found.get("receipt", {}).get("success", True):
        raise ScenarioStopped(f"the withdrawal did not execute: {found}")
    report.withdrawal_height = int(found["height"])
    (record,) = first_honest.withdrawals(recipient=to)["withdrawals"]
    report.withdrawal_id = int(record["id"])
    say(f"withdrawal {report.withdrawal_id} of 0.5 executed at height {report.withdrawal_height}")

    # 2. An undisputed posted state holding all of it.
    floor = max(credit_a, credit_b, report.withdrawal_height)
    _until(
        stop,
        lambda: int(commitments.functions.latestStateHeight().call()) >= floor,
        f"a posted state at height >= {floor}",
        STEP_TIMEOUT_S,
    )
    arm_at = floor + MARGIN_HEIGHTS
    _until(
        stop,
        lambda: all(_height(c) >= arm_at for c in clients.values()),
        f"every node at height {arm_at}",
        STEP_TIMEOUT_S,
    )

    # 3. The attack.
    armed_height = max(_height(c) for c in clients.values())
    for index in sorted(equivocators):
        net.arm_fault(index)
    say(f"armed the equivocators {sorted(equivocators)} at height {armed_height}")
    a, b = (clients[node.spec.index] for node in honest[:2])
    urls = (honest[0].api_url, honest[1].api_url)
    report.fork_height = _until(
        stop,
        lambda: _first_difference(a, b, urls, armed_height),
        "two honest validators finalizing different blocks",
        STEP_TIMEOUT_S,
    )
    say(f"fork: {honest[0].name} and {honest[1].name} differ from height {report.fork_height}")

    # 4. Prove the withdrawal on a post of the fork, before the freeze if we can.
    def fork_posted() -> bool:
        tip = read_tip(commitments)
        return tip.latest_height >= (report.fork_height or 0) or tip.frozen

    _until(stop, fork_posted, "a posted block of the fork (or the freeze)", STEP_TIMEOUT_S)
    proven = None
    nodes = [*honest, *(n for n in net.nodes if n not in honest)]
    for node in nodes * PROVE_ATTEMPTS:
        try:
            proven = prove_withdrawal(
                w3, user_a, bridge, commitments, clients[node.spec.index], report.withdrawal_id
            )
            break
        except (NotPostedYet, SeqnetApiError, ValueError, TransactionFailed) as exc:
            # TransactionFailed: the L1 moved between the estimate and the block.
            report.withdrawal_refused = reason_of(exc)
        except (ContractCustomError, ContractLogicError) as exc:
            report.withdrawal_refused = reason_of(exc)
            if "Disputed" in report.withdrawal_refused:
                break
    if proven is not None:
        report.withdrawal_proven = True
        report.withdrawal_refused = None
        say(
            f"proved withdrawal {report.withdrawal_id} on the post of state height "
            f"{proven.state_height} (payable from L1 block {proven.payable_at})"
        )
    else:
        say(f"could not prove the withdrawal: {report.withdrawal_refused}")

    # 5. The freeze.
    _until(
        stop,
        lambda: bool(commitments.functions.frozen().call()),
        "Commitments frozen by equivocation evidence",
        STEP_TIMEOUT_S,
    )
    report.frozen = True
    report.disputed_height = read_tip(commitments).disputed_height
    report.evidence_submitted = len(commitments.events.EquivocationProven().get_logs(from_block=0))
    say(
        f"Commitments frozen at disputed height {report.disputed_height} "
        f"({report.evidence_submitted} equivocation proofs)"
    )

    # 6. The withdrawal of the fork is never paid.
    if proven is not None:
        _until(
            stop,
            lambda: w3.eth.block_number >= proven.payable_at,
            "the end of the challenge window",
            STEP_TIMEOUT_S,
        )
        try:
            finalize_withdrawal(w3, user_a, bridge, report.withdrawal_id)
            report.fork_withdrawals_paid += 1
            say("the fork's withdrawal was PAID")
        except (ContractCustomError, ContractLogicError, TransactionFailed) as exc:
            report.withdrawal_refused = reason_of(exc)
            say(f"finalizing the fork's withdrawal reverted: {report.withdrawal_refused}")

    # 7. The escape hatch, from the last undisputed root: it opens a challenge window
    # after the freeze (time for evidence of a lower height to arrive first).
    _until(
        stop,
        lambda: bool(bridge.functions.escapeOpen().call()),
        "the escape hatch to open",
        STEP_TIMEOUT_S,
    )
    payout = None
    for client in clients.values():  # a node that holds the undisputed state
        try:
            payout = escape_collateral(w3, user_b, bridge, commitments, client)
            break
        except SeqnetApiError as exc:
            say(f"{client.base_url}: no proof of the undisputed state ({exc})")
    if payout is None:
        raise ScenarioStopped("no node could prove B's collateral in the undisputed state")
    report.escape_hatch_paid = int(payout.amount)
    report.escape_state_height = payout.state_height
    say(f"B escaped {payout.amount} wei of collateral from state height {payout.state_height}")
    for client in clients.values():
        client.close()


def _wei(value: Any) -> int:
    """A collateral amount of the API (a decimal string in whole units) in wei."""
    from decimal import Decimal, InvalidOperation

    try:
        return int(Decimal(str(value)) * WAD)
    except (InvalidOperation, ValueError):
        return 0


def _height(client: SeqnetClient) -> int:
    try:
        return int(client.status().get("height") or 0)
    except SeqnetApiError:
        return 0


def _first_difference(
    a: SeqnetClient, b: SeqnetClient, urls: tuple[str, str], since: int
) -> int | None:
    """The lowest height above `since` where the two nodes hold different blocks."""
    from sequencer_net.testnet.session import block_hash_at

    top = min(_height(a), _height(b))
    for height in range(since + 1, top + 1):
        first, second = block_hash_at(urls[0], height), block_hash_at(urls[1], height)
        if first is not None and second is not None and first != second:
            return height
    return None
