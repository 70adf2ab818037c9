"""Named failures of the execution engine.

Inside the engine an invalid transaction raises a subclass of
`TransactionRejected`; `engine.execute_block` turns it into a failed receipt
carrying the exception's class name and message, and discards every change the
transaction made (what a rejection consumes and pays: docs/execution.md,
"Nonces" and "Fees"). A block that breaks a header rule raises
`InvalidBlock`, which the caller must treat as "do not execute".
"""

from __future__ import annotations


class ExecutionError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidBlock(ExecutionError):
    """The caller broke the header contract: wrong height or time going backwards.
    Transactions never cause it (execute_block is total)."""


class EngineInvariantBroken(ExecutionError):
    """An internal invariant failed (e.g. a fill notional is not exact). Never expected."""


class TransactionRejected(ExecutionError):
    """A transaction is invalid; it becomes a failed receipt and changes no state."""


class BlockFull(TransactionRejected):
    """The transaction sits past MAX_TRANSACTIONS_PER_BLOCK in its block: not executed."""


class BlockFailed(TransactionRejected):
    """The whole block could not be executed (the last resort of totality)."""


class HandlerFailed(TransactionRejected):
    """The handler raised something other than a rejection (an engine bug): rolled back."""


class MalformedTransaction(TransactionRejected):
    """The input's fields are out of range, or a DEX payload does not decode to
    exactly one canonical payload."""


class NonceUsed(TransactionRejected):
    """This (sender, nonce) was already executed, or is below the sender's window."""


class NonceTooHigh(TransactionRejected):
    """The nonce is more than NONCE_WINDOW above the sender's highest used nonce."""


class FeeTooLow(TransactionRejected):
    """The offered fee is below fee_base + fee_per_byte * payload length."""


class InsufficientFeeBalance(TransactionRejected):
    """The sender's subaccount 0 has less free collateral than the offered fee."""


class Unauthorized(TransactionRejected):
    """The sender may not send this transaction (not admin, reporter or bridge)."""


class InvalidAmount(TransactionRejected):
    """An amount, price or quantity is out of range or off its grid."""


class InsufficientCollateral(TransactionRejected):
    """The subaccount does not hold enough collateral for the transfer or withdrawal."""


class InsufficientMargin(TransactionRejected):
    """After the action the subaccount would be below its initial margin requirement."""


class UnknownMarket(TransactionRejected):
    """No market is listed under this id."""


class MarketExists(TransactionRejected):
    """A market with this id is already listed."""


class InvalidMarketParams(TransactionRejected):
    """Market parameters are inconsistent (e.g. maintenance above initial margin)."""


class MarketNotTrading(TransactionRejected):
    """The market is paused, expired or settled."""


class StaleOraclePrice(TransactionRejected):
    """The market's oracle price is missing or older than its staleness bound."""


class InvalidOracleUpdate(TransactionRejected):
    """An oracle update is older than the stored price, from the future, or malformed."""


class InvalidOrder(TransactionRejected):
    """An order's flags contradict each other or its market (e.g. reduce-only growing)."""


class UnknownOrder(TransactionRejected):
    """A cancel names an order that does not exist or belongs to someone else."""


class TooManyOrders(TransactionRejected):
    """The subaccount is at MAX_OPEN_ORDERS_PER_SUBACCOUNT or MAX_MARKETS_PER_SUBACCOUNT."""


class DuplicateClientId(TransactionRejected):
    """A new order reuses a client id an open order of the same subaccount holds."""


class InvalidDepositReport(TransactionRejected):
    """An L1 deposit report's fields are out of range, or its nonce is beyond
    the open window (limits.MAX_OPEN_DEPOSITS)."""


class DepositAlreadyResolved(TransactionRejected):
    """A reporter quorum already credited (or refused) this L1 deposit nonce."""


class DepositAlreadyReported(TransactionRejected):
    """This reporter already reported this L1 deposit nonce (its first report counts)."""


class InsufficientBalance(TransactionRejected):
    """The owner's L1 asset balance is smaller than the withdrawal."""
