"""The state transition: `apply_block(state, block) -> (new_state, receipts)`.

Reads top-down (docs/execution.md, "Block execution"):

    execute_block
      validate_header                    height = previous + 1, time never goes back
      admit_transactions                 signatures, chain id, per-sender nonces
      apply_account_transactions         governance, oracle, deposits, withdrawals,
                                         transfers: in block order, a sender's own
                                         transactions in nonce order
      advance_market_clock               funding due, options at expiry
      place_orders                       order and cancel transactions, by sender
                                         address then nonce (block position ignored)
      run_auctions                       one uniform-price auction per market
      sample_premiums                    perpetual marks and premium samples
      liquidate_undermargined            insurance fund, socialized loss
      commit                             next snapshot + state tree root

A failed transaction (any TransactionRejected) gets a failed receipt and all its
changes are rolled back; it still consumes its nonce, as on Ethereum, so that
admission depends only on signatures and nonces and a rejected order cannot be
replayed later. The input state is never modified: running the same block on
the same state twice gives identical bytes and roots.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from .accounts import apply_deposit, apply_transfer, apply_withdraw
from .encoding import encode
from .exceptions import BadNonce, InvalidBlock, TransactionRejected, WrongChain
from .expiry import settle_expired_options
from .funding import apply_due_funding, sample_premiums
from .limits import MAX_REASON_LENGTH, MAX_TRANSACTIONS_PER_BLOCK
from .liquidation import liquidate_undermargined
from .markets import apply_list_market, apply_oracle_update, apply_set_paused, apply_update_market
from .matching import run_auctions
from .orders import apply_cancel_order, apply_place_order
from .receipts import Event, Receipt
from .state import ExecutionState, StateWriter
from .transactions import (
    ORDER_PAYLOADS,
    CancelOrder,
    Deposit,
    ListMarket,
    OracleUpdate,
    PlaceOrder,
    RecoveredTransaction,
    SetMarketPaused,
    SignedTransaction,
    Transfer,
    UpdateMarketParams,
    Withdraw,
    recover_transaction,
    transaction_hash,
)


class ExecutionBlock(msgspec.Struct, frozen=True, array_like=True):
    """A committed block as the engine sees it: consensus fixed height, time and order."""

    height: int
    timestamp_seconds: int
    transactions: tuple[SignedTransaction, ...]


class BlockResult(msgspec.Struct, frozen=True):
    state: ExecutionState
    receipts: tuple[Receipt, ...]
    events: tuple[Event, ...]

    @property
    def state_root(self) -> bytes:
        return self.state.state_root


def apply_block(
    state: ExecutionState, block: ExecutionBlock
) -> tuple[ExecutionState, tuple[Receipt, ...]]:
    """Execute `block` on `state`; return the next state and one receipt per tx."""
    result = execute_block(state, block)
    return result.state, result.receipts


def execute_block(state: ExecutionState, block: ExecutionBlock) -> BlockResult:
    """Like `apply_block`, and also return the block's events (fills, liquidations...)."""
    validate_header(state, block)
    w = StateWriter(state, block.height, block.timestamp_seconds)
    receipts: list[Receipt | None] = [None] * len(block.transactions)
    admitted = admit_transactions(w, block, receipts)
    account_txs = [
        (i, tx) for i, tx in admitted if not isinstance(tx.envelope.payload, ORDER_PAYLOADS)
    ]
    order_txs = [(i, tx) for i, tx in admitted if isinstance(tx.envelope.payload, ORDER_PAYLOADS)]
    for i, tx in in_sender_nonce_order(account_txs):
        receipts[i] = _run(w, tx)
    advance_market_clock(w)
    for i, tx in sorted(order_txs, key=lambda item: (item[1].sender, item[1].envelope.nonce)):
        receipts[i] = _run(w, tx)
    run_auctions(w)
    sample_premiums(w)
    liquidate_undermargined(w)
    events = tuple(w.events)
    new_state = w.commit()
    assert all(receipt is not None for receipt in receipts)
    return BlockResult(new_state, tuple(r for r in receipts if r is not None), events)  # type: ignore[arg-type]


def validate_header(state: ExecutionState, block: ExecutionBlock) -> None:
    if block.height != state.height + 1:
        raise InvalidBlock(f"expected height {state.height + 1}, got {block.height}")
    if block.timestamp_seconds < state.block.timestamp:
        raise InvalidBlock("block timestamp is before the previous block's")
    if len(block.transactions) > MAX_TRANSACTIONS_PER_BLOCK:
        raise InvalidBlock("too many transactions")


def _failed(tx_hash: bytes, sender: bytes, error: TransactionRejected) -> Receipt:
    return Receipt(tx_hash, sender, False, type(error).__name__, str(error)[:MAX_REASON_LENGTH])


def admit_transactions(
    w: StateWriter, block: ExecutionBlock, receipts: list[Receipt | None]
) -> list[tuple[int, RecoveredTransaction]]:
    """Recover senders, check the chain id, then each sender's nonces.

    A sender's transactions are taken in nonce order (ties: by hash); each must
    carry exactly the next nonce. Anything else fails with BadNonce. The outcome
    does not depend on where in the block a transaction sits.
    """
    by_sender: dict[bytes, list[tuple[int, bytes, int, RecoveredTransaction]]] = {}
    for i, signed in enumerate(block.transactions):
        try:
            tx = recover_transaction(signed)
            if tx.envelope.chain_id != w.config.chain_id:
                raise WrongChain(f"signed for chain {tx.envelope.chain_id}")
        except TransactionRejected as error:
            receipts[i] = _failed(transaction_hash(signed), b"", error)
            continue
        by_sender.setdefault(tx.sender, []).append((tx.envelope.nonce, tx.tx_hash, i, tx))
    admitted: list[tuple[int, RecoveredTransaction]] = []
    for sender in sorted(by_sender):
        expected = w.nonces.get(sender) or 0
        for nonce, tx_hash, i, tx in sorted(by_sender[sender], key=lambda t: t[:3]):
            if nonce == expected:
                admitted.append((i, tx))
                expected += 1
            else:
                why = (
                    "nonce already used" if nonce < expected else f"nonce gap: expected {expected}"
                )
                receipts[i] = _failed(tx_hash, sender, BadNonce(why))
        w.nonces.put(sender, expected)
    w.release()
    admitted.sort(key=lambda item: item[0])
    return admitted


def in_sender_nonce_order(
    txs: list[tuple[int, RecoveredTransaction]],
) -> list[tuple[int, RecoveredTransaction]]:
    """Block order, except that each sender's transactions fill that sender's slots
    in nonce order (so a sender's own sequence is what its nonces say)."""
    slots: dict[bytes, list[int]] = {}
    queued: dict[bytes, list[tuple[int, RecoveredTransaction]]] = {}
    for position, (i, tx) in enumerate(txs):
        slots.setdefault(tx.sender, []).append(position)
        queued.setdefault(tx.sender, []).append((i, tx))
    ordered: list[tuple[int, RecoveredTransaction] | None] = [None] * len(txs)
    for sender, positions in slots.items():
        mine = sorted(queued[sender], key=lambda item: item[1].envelope.nonce)
        for position, item in zip(positions, mine, strict=True):
            ordered[position] = item
    return [item for item in ordered if item is not None]


def advance_market_clock(w: StateWriter) -> None:
    """Time-driven market events at the block timestamp: funding, option expiry."""
    apply_due_funding(w)
    settle_expired_options(w)
    w.release()


_Handler = Callable[[StateWriter, RecoveredTransaction, Any], None]

_HANDLERS: dict[type, _Handler] = {
    Deposit: lambda w, tx, p: apply_deposit(w, tx.sender, p),
    Withdraw: lambda w, tx, p: apply_withdraw(w, tx.sender, p),
    Transfer: lambda w, tx, p: apply_transfer(w, tx.sender, p),
    OracleUpdate: lambda w, tx, p: apply_oracle_update(w, tx.sender, p),
    ListMarket: lambda w, tx, p: apply_list_market(w, tx.sender, p),
    UpdateMarketParams: lambda w, tx, p: apply_update_market(w, tx.sender, p),
    SetMarketPaused: lambda w, tx, p: apply_set_paused(w, tx.sender, p),
    PlaceOrder: lambda w, tx, p: apply_place_order(w, tx.sender, tx.envelope.nonce, tx.tx_hash, p),
    CancelOrder: lambda w, tx, p: apply_cancel_order(w, tx.sender, p),
}


def _run(w: StateWriter, tx: RecoveredTransaction) -> Receipt:
    """Apply one admitted transaction; roll it back if it is rejected."""
    mark = w.checkpoint()
    payload = tx.envelope.payload
    try:
        _HANDLERS[type(payload)](w, tx, payload)
    except TransactionRejected as error:
        w.rollback(mark)
        return _failed(tx.tx_hash, tx.sender, error)
    w.release()
    return Receipt(tx.tx_hash, tx.sender, True, "", "")


def encode_outcome(result: BlockResult) -> bytes:
    """Canonical bytes of (state root, receipts, events): compare outcomes across nodes."""
    return encode((result.state.state_root, result.receipts, result.events))
