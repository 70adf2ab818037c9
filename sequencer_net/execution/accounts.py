"""Collateral movements: faucet deposits, withdrawals, transfers.

A subaccount is (owner address, number 0..255). Withdrawals and outgoing
transfers need equity afterwards at or above the initial requirement including
open orders (collateral itself may be negative: a long is bought on credit, so
unrealized profit is withdrawable as long as the margin holds). A subaccount
with no position needs the cash itself (InsufficientCollateral).

A withdrawal also writes the L1 record the bridge contract pays against
(l1_bridge.py); a withdrawal of an L1 asset (a `token` other than the
collateral) debits the owner's L1 asset balance instead of a subaccount.
`Deposit` is the faucet of local testnets (admin or the genesis `bridge` key);
L1 deposits are credited by reporter quorum (l1_bridge.apply_deposit_report).
"""

from __future__ import annotations

from .exceptions import InsufficientCollateral, InsufficientMargin, InvalidAmount, Unauthorized
from .l1_bridge import ADDRESS_BYTES, debit_l1_balance, is_collateral_token, record_withdrawal
from .limits import MAX_AMOUNT, MAX_SUBACCOUNT_NUMBER
from .margin import meets_initial_with_orders
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
    if not meets_initial_with_orders(w, sid):
        raise InsufficientMargin("would fall below the initial margin requirement")


def apply_deposit(w: StateWriter, sender: bytes, tx: Deposit) -> None:
    # A faucet deposit mints collateral no L1 bridge holds. On a chain whose
    # collateral comes from the L1 (collateral_token set) the admin may not
    # mint: only a `bridge` key genesis names explicitly (a local testnet's
    # market operator; a production genesis names an address nobody holds).
    if w.config.collateral_token:
        if sender != w.config.bridge:
            raise Unauthorized(
                "on an L1-bridged chain only the bridge key may send faucet deposits"
            )
    elif sender not in (w.config.bridge, w.config.admin):
        raise Unauthorized("faucet deposits come from the admin or the bridge key")
    check_amount(tx.amount)
    if len(tx.subaccount) != 21:
        raise InvalidAmount("a subaccount id is 21 bytes")
    credit(w, tx.subaccount, tx.amount)
    ledger = w.ledger
    w.ledger = Ledger(ledger.fee_pool, ledger.net_deposits + tx.amount)


def apply_withdraw(w: StateWriter, sender: bytes, tx: Withdraw) -> None:
    check_amount(tx.amount)
    if len(tx.recipient) != ADDRESS_BYTES:
        raise InvalidAmount("the recipient is a 20-byte address")
    if tx.token and len(tx.token) != ADDRESS_BYTES:
        raise InvalidAmount("the token is a 20-byte address (or omitted: the collateral)")
    if not tx.token or is_collateral_token(w, tx.token):
        _withdraw_collateral(w, sender, tx)
    else:
        _withdraw_l1_asset(w, sender, tx)


def _withdraw_collateral(w: StateWriter, sender: bytes, tx: Withdraw) -> None:
    """Debit quote collateral; on a chain with a collateral token, write the L1
    record paying it in that token (without one, nothing on L1 pays it)."""
    sid = own_subaccount(sender, tx.subaccount_number)
    _debit_checked(w, sid, tx.amount)
    ledger = w.ledger
    w.ledger = Ledger(ledger.fee_pool, ledger.net_deposits - tx.amount)
    token = w.config.collateral_token
    withdrawal_id = record_withdrawal(w, tx.recipient, token, tx.amount) if token else None
    w.events.append(Withdrawn(sid, tx.recipient, tx.amount, token, withdrawal_id))


def _withdraw_l1_asset(w: StateWriter, sender: bytes, tx: Withdraw) -> None:
    """Debit the sender's L1 asset balance of `tx.token` and write its L1 record."""
    if tx.subaccount_number != 0:
        raise InvalidAmount("an L1 asset balance belongs to the owner: subaccount_number is 0")
    debit_l1_balance(w, sender, tx.token, tx.amount)
    withdrawal_id = record_withdrawal(w, tx.recipient, tx.token, tx.amount)
    w.events.append(Withdrawn(sender, tx.recipient, tx.amount, tx.token, withdrawal_id))


def apply_transfer(w: StateWriter, sender: bytes, tx: Transfer) -> None:
    check_amount(tx.amount)
    if len(tx.to_subaccount) != 21:
        raise InvalidAmount("a subaccount id is 21 bytes")
    sid = own_subaccount(sender, tx.subaccount_number)
    if tx.to_subaccount == sid:
        raise InvalidAmount("transfer to the same subaccount")
    _debit_checked(w, sid, tx.amount)
    credit(w, tx.to_subaccount, tx.amount)
