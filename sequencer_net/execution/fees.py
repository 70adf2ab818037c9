"""Sequencing fees: every transaction, in every namespace, pays for its place.

    required = fee_base + fee_per_byte * len(payload)        (ChainConfig, wad)

A transaction offering less than `required` is rejected (FeeTooLow). Otherwise
the fee it offers is debited from its sender's subaccount 0 when the block is
admitted, only from what the account holds above its maintenance requirement
(its collateral when it has no positions or orders), so paying a fee never
makes an account liquidatable; if that does not cover it:
InsufficientFeeBalance. Maintenance, not the initial requirement with open
orders, is the bound on purpose: an account between the two must still be
able to pay for the cancel or the reduce-only order that brings it back.
Collected fees go to the ledger's fee pool, which the conservation check
counts (docs/execution.md, "Fees").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from .limits import MAX_FEE, MAX_PAYLOAD_BYTES
from .margin import MaintenanceCheck, maintenance_risk
from .records import ChainConfig, Ledger
from .state import ExecutionState, StateWriter, subaccount_id

DEFAULT_FEE_BASE: Final = 10**15
"""0.001 unit of quote per transaction."""

DEFAULT_FEE_PER_BYTE: Final = 10**12
"""0.000001 unit of quote per payload byte: a 200-byte order pays 0.0012 in
all, a full 32 KiB rollup blob about 0.034 (both far below MAX_FEE, 18.4)."""


def required_fee(config: ChainConfig, payload_length: int) -> int:
    """The least fee a transaction with a payload of `payload_length` bytes must offer."""
    return config.fee_base + config.fee_per_byte * payload_length


def check_fee_schedule(fee_base: int, fee_per_byte: int) -> None:
    """Raise ValueError unless every payload size has a payable fee."""
    if fee_base < 0 or fee_per_byte < 0:
        raise ValueError("fee_base and fee_per_byte must not be negative")
    if fee_base + fee_per_byte * MAX_PAYLOAD_BYTES > MAX_FEE:
        raise ValueError("the fee for a full payload would exceed MAX_FEE (uint64)")


def fee_account(sender: bytes) -> bytes:
    """Fees come from the sender's subaccount 0."""
    return subaccount_id(sender, 0)


def fee_balance(w: StateWriter, sender: bytes, check: MaintenanceCheck | None = None) -> int:
    """What `sender` can pay in fees now: the equity of its subaccount 0 above
    the maintenance requirement (its collateral if it holds no position).
    `check`, a `MaintenanceCheck` of `w`, computes the same from markets read once."""
    sid = fee_account(sender)
    sub = w.subaccount(sid)
    if not sub.markets:
        return sub.collateral
    risk = maintenance_risk(w, sid) if check is None else check(sid)
    return risk.equity - risk.maintenance


def committed_fee_balance(
    state: ExecutionState, sender: bytes, reader: StateWriter | None = None
) -> int:
    """`fee_balance` read from a committed state (the mempool's admission check):
    the same rule, without a block to run in. `reader`, a writer over `state`
    that nothing writes to, may be shared between calls: its option values are
    then computed once for all senders."""
    sub = state.subaccounts.get(fee_account(sender))
    if sub is None:
        return 0
    if not sub.markets:
        return sub.collateral
    if reader is None:
        reader = committed_reader(state)
    return fee_balance(reader, sender)


def committed_reader(state: ExecutionState) -> StateWriter:
    """A writer over a committed state at its own height and time, for reads."""
    return StateWriter(state, state.height, state.block.timestamp)


class CommittedFeeBalances:
    """`committed_fee_balance` remembered per committed state. The mempool asks
    once per submitted transaction, and a sender holding options costs a
    margin-grid evaluation (Black-Scholes at every scenario) each time; the
    answer changes only when a new block's state is committed. At most `limit`
    senders are remembered per state. One reader serves every sender of a
    state, so each option is revalued once per scenario, not once per sender."""

    def __init__(self, state: Callable[[], ExecutionState], limit: int = 100_000) -> None:
        self.state = state
        self.limit = limit
        self._for: ExecutionState | None = None
        self._balances: dict[bytes, int] = {}
        self._reader: StateWriter | None = None

    def __call__(self, sender: bytes) -> int:
        state = self.state()
        if state is not self._for:
            self._for = state
            self._balances = {}
            self._reader = None
        balance = self._balances.get(sender)
        if balance is None:
            if self._reader is None:
                self._reader = committed_reader(state)
            balance = committed_fee_balance(state, sender, self._reader)
            if len(self._balances) < self.limit:
                self._balances[sender] = balance
        return balance


def collect_fees(w: StateWriter, total: int) -> None:
    """Add what the block's transactions paid to the fee pool."""
    if total:
        ledger = w.ledger
        w.ledger = Ledger(ledger.fee_pool + total, ledger.net_deposits)
