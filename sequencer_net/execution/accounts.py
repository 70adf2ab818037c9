"""Collateral movements: deposits, withdrawals, transfers.

A subaccount is (owner address, number 0..255). Withdrawals and outgoing
transfers need equity afterwards at or above the initial requirement including
open orders (collateral itself may be negative: a long is bought on credit, so
unrealized profit is withdrawable as long as the margin holds). A subaccount
with no position needs the cash itself (InsufficientCollateral).
"""

from __future__ import annotations

from .exceptions import InsufficientCollateral, InsufficientMargin, InvalidAmount, Unauthorized
from .limits import MAX_AMOUNT, MAX_SUBACCOUNT_NUMBER
from .margin import subaccount_risk
from .positions import credit, pending_charge
from .receipts import Withdrawn
from .records import Ledger
from .state import INSURANCE_FUND, StateWriter, subaccount_id
from .transactions import Deposit, Transfer, Withdraw


def check_amount(amount: int) -> None:
    if not 0 < amount <= MAX_AMOUNT:
        raise InvalidAmount("amount must be positive and at most MAX_AMOUNT")


def check_subaccount_number(number: int) -> None:
    if not 0 <= number <= MAX_SUBACCOUNT_NUMBER:
        raise InvalidAmount("subaccount number must be 0..255")


def own_subaccount(sender: bytes, number: int) -> bytes:
    check_subaccount_number(number)
    sid = subaccount_id(sender, number)
    if sid == INSURANCE_FUND:
        raise Unauthorized("nobody signs for the insurance fund")
    return sid


def cash(w: StateWriter, sid: bytes) -> int:
    """Collateral after paying every unsettled charge."""
    total = w.subaccount(sid).collateral
    for market_id in w.subaccount(sid).markets:
        position = w.position(sid, market_id)
        params = w.params(market_id)
        state = w.market(market_id)
        assert position is not None and params is not None and state is not None
        total -= pending_charge(params, state, position)
    return total


def _debit_checked(w: StateWriter, sid: bytes, amount: int) -> None:
    if cash(w, sid) < amount and not w.subaccount(sid).markets:
        raise InsufficientCollateral("not enough collateral")
    credit(w, sid, -amount)
    risk = subaccount_risk(w, sid)
    if risk.equity < risk.initial_with_orders:
        raise InsufficientMargin("would fall below the initial margin requirement")


def apply_deposit(w: StateWriter, sender: bytes, tx: Deposit) -> None:
    if sender not in (w.config.bridge, w.config.admin):
        raise Unauthorized("deposits come from the bridge key")
    check_amount(tx.amount)
    if len(tx.subaccount) != 21:
        raise InvalidAmount("a subaccount id is 21 bytes")
    credit(w, tx.subaccount, tx.amount)
    ledger = w.ledger
    w.ledger = Ledger(ledger.fee_pool, ledger.net_deposits + tx.amount)


def apply_withdraw(w: StateWriter, sender: bytes, tx: Withdraw) -> None:
    check_amount(tx.amount)
    if len(tx.recipient) != 20:
        raise InvalidAmount("the recipient is a 20-byte address")
    sid = own_subaccount(sender, tx.subaccount_number)
    _debit_checked(w, sid, tx.amount)
    ledger = w.ledger
    w.ledger = Ledger(ledger.fee_pool, ledger.net_deposits - tx.amount)
    w.events.append(Withdrawn(subaccount=sid, recipient=tx.recipient, amount=tx.amount))


def apply_transfer(w: StateWriter, sender: bytes, tx: Transfer) -> None:
    check_amount(tx.amount)
    if len(tx.to_subaccount) != 21:
        raise InvalidAmount("a subaccount id is 21 bytes")
    sid = own_subaccount(sender, tx.subaccount_number)
    if tx.to_subaccount == sid:
        raise InvalidAmount("transfer to the same subaccount")
    _debit_checked(w, sid, tx.amount)
    credit(w, tx.to_subaccount, tx.amount)
