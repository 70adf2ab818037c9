"""The engine side of the L1 bridge: deposits by reporter quorum, L1 withdrawal records.

Deposits (docs/execution.md, "L1 bridge"). The L1 bridge contract emits
`Deposited(nonce, from, subaccount, token, amount)`, nonces counting from 0.
No single key can credit one: every oracle reporter (the validators, with
their power: ChainConfig.oracles) watches the L1 and, once the event is at its
confirmation depth, sends `L1DepositReport(nonce, subaccount, token, amount)`.
`apply_deposit_report` tallies the reports of each nonce per content:

    window     resolved_below <= nonce < resolved_below + MAX_OPEN_DEPOSITS
    once       a reporter's first report of a nonce is its vote; a second one
               (same content or not) is refused, so it counts once and never
               backs two contents
    quorum     3 * power(reporters of one content) > 2 * power(all reporters)
               (the oracle's rule), counted over identical content only:
               conflicting reports of a nonce never combine
    resolve    the first content to reach the quorum settles the nonce, once:
               credited (Credited event) or, when the engine cannot hold it,
               refused (DepositRefused); either way its tally is pruned and
               the nonce is never credited again

Credit: token == ChainConfig.collateral_token -> quote collateral of the
subaccount, 1:1 in wad (Ledger.net_deposits grows by the amount); any other
token -> the owner's L1 asset balance b"l1bal/" + owner + token. A nonce
resolved out of order keeps a `resolved` marker until every nonce below it is
resolved, then `resolved_below` moves past it and the marker goes: with the
window, at most MAX_OPEN_DEPOSITS tallies and markers exist at any time.

Withdrawals. A successful `Withdraw` writes the record b"wd/" + id (8 bytes
big-endian) = abi.encode(uint64 id, address recipient, address token, uint256
amount), ids counting from 0 (BridgeState.next_withdrawal). The L1 bridge pays
it once against a posted state root that holds it. Records stay in state.
"""

from __future__ import annotations

from consensus.encoding import word

from .exceptions import (
    DepositAlreadyReported,
    DepositAlreadyResolved,
    InsufficientBalance,
    InvalidDepositReport,
    Unauthorized,
)
from .limits import MAX_AMOUNT, MAX_L1_AMOUNT, MAX_NONCE, MAX_OPEN_DEPOSITS
from .oracle import reporter_power
from .positions import credit
from .receipts import Credited, DepositRefused
from .records import BridgeState, DepositTally, DepositVote, Ledger
from .state import StateWriter, l1_balance_key, owner_of
from .transactions import L1DepositReport

ADDRESS_BYTES = 20
SUBACCOUNT_BYTES = 21
WITHDRAWAL_RECORD_BYTES = 128
"""abi.encode(uint64, address, address, uint256): four 32-byte words."""


def withdrawal_record(withdrawal_id: int, recipient: bytes, token: bytes, amount: int) -> bytes:
    """abi.encode(uint64 id, address recipient, address token, uint256 amount)."""
    assert len(recipient) == ADDRESS_BYTES and len(token) == ADDRESS_BYTES
    return word(withdrawal_id) + bytes(12) + recipient + bytes(12) + token + word(amount)


def decode_withdrawal_record(value: bytes) -> tuple[int, bytes, bytes, int]:
    """(id, recipient, token, amount) of a record; ValueError if it is not one."""
    if len(value) != WITHDRAWAL_RECORD_BYTES:
        raise ValueError(f"a withdrawal record is {WITHDRAWAL_RECORD_BYTES} bytes")
    words = [value[i : i + 32] for i in range(0, WITHDRAWAL_RECORD_BYTES, 32)]
    if words[0][:24] != bytes(24) or words[1][:12] != bytes(12) or words[2][:12] != bytes(12):
        raise ValueError("a withdrawal record's id or address word has high bytes set")
    return (
        int.from_bytes(words[0], "big"),
        words[1][12:],
        words[2][12:],
        int.from_bytes(words[3], "big"),
    )


def is_collateral_token(w: StateWriter, token: bytes) -> bool:
    collateral = w.config.collateral_token
    return bool(collateral) and token == collateral


# --- deposits -------------------------------------------------------------------------


def apply_deposit_report(w: StateWriter, sender: bytes, tx: L1DepositReport) -> None:
    """Count `sender`'s report of an L1 deposit; resolve the nonce on a quorum."""
    if reporter_power(w.config.oracles, sender) == 0:
        raise Unauthorized("L1 deposits are reported by the oracle reporters (the validators)")
    check_report_fields(tx)
    bridge = w.bridge
    if tx.nonce < bridge.resolved_below:
        raise DepositAlreadyResolved(f"deposit {tx.nonce} was already resolved")
    if tx.nonce >= bridge.resolved_below + MAX_OPEN_DEPOSITS:
        raise InvalidDepositReport(
            f"deposit {tx.nonce} is beyond the open window "
            f"[{bridge.resolved_below}, {bridge.resolved_below + MAX_OPEN_DEPOSITS})"
        )
    tally = w.deposit_tallies.get(tx.nonce) or DepositTally(votes=())
    if tally.resolved:
        raise DepositAlreadyResolved(f"deposit {tx.nonce} was already resolved")
    if any(sender in vote.reporters for vote in tally.votes):
        raise DepositAlreadyReported(f"this reporter already reported deposit {tx.nonce}")
    votes = list(tally.votes)
    content = (tx.subaccount, tx.token, tx.amount)
    index = next(
        (i for i, v in enumerate(votes) if (v.subaccount, v.token, v.amount) == content),
        None,
    )
    if index is None:
        votes.append(DepositVote(tx.subaccount, tx.token, tx.amount, (sender,)))
        index = len(votes) - 1
    else:
        vote = votes[index]
        votes[index] = DepositVote(
            vote.subaccount, vote.token, vote.amount, tuple(sorted((*vote.reporters, sender)))
        )
    vote = votes[index]
    if has_quorum(w, vote.reporters):
        resolve_deposit(w, tx.nonce, vote)
    else:
        w.deposit_tallies.put(tx.nonce, DepositTally(votes=tuple(votes)))


def check_report_fields(tx: L1DepositReport) -> None:
    if not 0 <= tx.nonce <= MAX_NONCE:
        raise InvalidDepositReport("a deposit nonce is a uint64")
    if len(tx.subaccount) != SUBACCOUNT_BYTES:
        raise InvalidDepositReport("a subaccount id is 21 bytes")
    if len(tx.token) != ADDRESS_BYTES:
        raise InvalidDepositReport("a token is a 20-byte address")
    if not 0 <= tx.amount <= MAX_L1_AMOUNT:
        raise InvalidDepositReport("an L1 amount is a uint256")


def has_quorum(w: StateWriter, reporters: tuple[bytes, ...]) -> bool:
    """More than 2/3 of all reporter power (the oracle quorum, oracle.quorum_time)."""
    total = sum(reporter.power for reporter in w.config.oracles)
    power = sum(reporter_power(w.config.oracles, address) for address in reporters)
    return 3 * power > 2 * total


def resolve_deposit(w: StateWriter, nonce: int, vote: DepositVote) -> None:
    """Credit (or refuse) the quorum's content and settle the nonce for good."""
    owner = owner_of(vote.subaccount)
    to_collateral = is_collateral_token(w, vote.token)
    if not 0 < vote.amount <= MAX_AMOUNT:
        w.events.append(DepositRefused(nonce, vote.subaccount, vote.token, vote.amount, "amount"))
    elif to_collateral:
        credit(w, vote.subaccount, vote.amount)
        ledger = w.ledger
        w.ledger = Ledger(ledger.fee_pool, ledger.net_deposits + vote.amount)
        w.events.append(Credited(nonce, vote.subaccount, vote.token, vote.amount, True))
    else:
        balance = w.l1_balance(owner, vote.token) + vote.amount
        if balance > MAX_L1_AMOUNT:
            w.events.append(
                DepositRefused(nonce, vote.subaccount, vote.token, vote.amount, "overflow")
            )
        else:
            w.l1_balances.put(l1_balance_key(owner, vote.token), balance)
            w.events.append(Credited(nonce, vote.subaccount, vote.token, vote.amount, False))
    _settle(w, nonce)


def _settle(w: StateWriter, nonce: int) -> None:
    """Mark `nonce` resolved: move `resolved_below` past every resolved nonce
    it now joins (deleting their markers), or leave a marker above a gap."""
    bridge = w.bridge
    if nonce != bridge.resolved_below:
        w.deposit_tallies.put(nonce, DepositTally(votes=(), resolved=True))
        return
    w.deposit_tallies.put(nonce, None)
    below = nonce + 1
    while True:  # bounded: markers exist only inside the window
        marker = w.deposit_tallies.get(below)
        if marker is None or not marker.resolved:
            break
        w.deposit_tallies.put(below, None)
        below += 1
    w.bridge = BridgeState(resolved_below=below, next_withdrawal=bridge.next_withdrawal)


# --- withdrawals ----------------------------------------------------------------------


def record_withdrawal(w: StateWriter, recipient: bytes, token: bytes, amount: int) -> int:
    """Write the next L1 withdrawal record; return its id."""
    bridge = w.bridge
    withdrawal_id = bridge.next_withdrawal
    w.withdrawals.put(withdrawal_id, withdrawal_record(withdrawal_id, recipient, token, amount))
    w.bridge = BridgeState(bridge.resolved_below, withdrawal_id + 1)
    return withdrawal_id


def debit_l1_balance(w: StateWriter, owner: bytes, token: bytes, amount: int) -> None:
    balance = w.l1_balance(owner, token)
    if balance < amount:
        raise InsufficientBalance(f"the L1 asset balance is {balance}")
    w.l1_balances.put(l1_balance_key(owner, token), balance - amount or None)
