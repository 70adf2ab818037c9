"""The state transition: `apply_block(state, block) -> (new_state, receipts)`.

Reads top-down (docs/execution.md, "Block execution"):

    execute_block                        total: re-runs the block without a block-level
                                         unit that raised (PhaseSkipped event)
      validate_header                    height = previous + 1, time never goes back
      admit_transactions                 every namespace: the first MAX_TRANSACTIONS_PER_BLOCK
                                         (the rest: BlockFull), field ranges, per sender in
                                         nonce order the nonce window and the fee; then
                                         the sender's failed encrypted transactions
                                         (FailedReveal: their max fee, no nonce)
      decode_dex_payloads                namespace 0: payload bytes -> one engine action
      apply_account_transactions         governance, price reports, L1 deposit
                                         reports (credit on a reporter quorum),
                                         faucet deposits, withdrawals (L1
                                         records), transfers: in block order, a
                                         sender's own transactions in nonce order
      aggregate_prices                   each market's oracle price: the weighted
                                         median of the validators' fresh reports
      advance_market_clock               funding due, option settlement-price
                                         samples, options at expiry, good-til
                                         orders due
      place_triggered_orders             stops / take-profits triggered last block
      place_orders                       order and cancel transactions, by sender
                                         address then nonce (block position ignored)
      run_auctions                       one uniform-price auction per market
      sample_premiums                    perpetual impact prices, marks, premium samples
      liquidate_undermargined            bankrupt: insurance fund, else deleveraging;
                                         missed max_liquidation_misses auctions: the
                                         fund takes the slice still needed; below
                                         maintenance: liquidation orders into the
                                         next block's auction
      evaluate_triggers                  marks against stop / take-profit triggers
      commit                             next snapshot + state tree root

The engine receives the committed sequencer transactions of all namespaces with
their senders already recovered (block.py); it does no signature recovery.
What a rejection costs (docs/execution.md, "Nonces" and "Fees"):

    rejected as                         nonce consumed   fee paid
    BlockFull, MalformedTransaction     no               no      (fields out of range)
    NonceUsed, NonceTooHigh             no               no
    FeeTooLow, InsufficientFeeBalance   yes              no
    anything after the fee is paid      yes              yes     (undecodable DEX
                                                                  payload, any handler
                                                                  rejection)
    FailedDecryption                    no               max fee (what the balance
                                                                  still covers; 0 if
                                                                  expired or of another
                                                                  key epoch)

A failed DEX action has all its changes rolled back (its fee stays paid). The
input state is never modified: running the same block on the same state twice
gives identical bytes and roots.

Totality (docs/execution.md, "Totality"): whatever the transactions hold,
`execute_block` returns one receipt per transaction and a state. The only
exception it raises is InvalidBlock for a header the caller got wrong (height
not previous + 1, time going backwards): those two come from consensus, never
from a transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgspec

from consensus.crypto import keccak256

from . import limits
from .accounts import apply_deposit, apply_transfer, apply_withdraw
from .block import (
    ExecutionBlock,
    FailedReveal,
    SequencedTransaction,
    check_failed_reveal,
    check_transaction,
    hash_of,
    sender_of,
)
from .encoding import encode
from .exceptions import (
    BlockFailed,
    BlockFull,
    FeeTooLow,
    HandlerFailed,
    InsufficientFeeBalance,
    InvalidBlock,
    MalformedTransaction,
    TransactionRejected,
)
from .expiry import settle_expired_options
from .fees import collect_fees, fee_account, fee_balance, required_fee
from .funding import apply_due_funding, sample_premiums
from .l1_bridge import apply_deposit_report
from .limits import MAX_DEX_PAYLOAD_BYTES, MAX_PHASE_FAILURES, MAX_REASON_LENGTH
from .liquidation import liquidate_undermargined
from .margin import MaintenanceCheck
from .margin_bound import MarginBound
from .markets import apply_list_market, apply_set_paused, apply_update_market
from .matching import run_auctions
from .nonces import nonce_rejection, use_nonce
from .oracle import aggregate_prices, apply_price_report
from .orders import apply_cancel_by_client_id, apply_cancel_order, apply_place_order
from .positions import credit
from .receipts import Event, PhaseSkipped, Receipt
from .state import ExecutionState, PhaseFailed, PhaseKey, StateWriter
from .timed_orders import evaluate_triggers, expire_good_til_orders, place_triggered_orders
from .transactions import (
    DEX_NAMESPACE,
    ORDER_PAYLOADS,
    CancelOrder,
    CancelOrderByClientId,
    Deposit,
    L1DepositReport,
    ListMarket,
    OracleUpdate,
    PlaceOrder,
    SetMarketPaused,
    Transfer,
    TxPayload,
    UpdateMarketParams,
    Withdraw,
    decode_payload,
)

__all__ = [
    "BlockResult",
    "ExecutionBlock",
    "FailedReveal",
    "SequencedTransaction",
    "apply_block",
    "encode_outcome",
    "execute_block",
]


class BlockResult(msgspec.Struct, frozen=True):
    state: ExecutionState
    receipts: tuple[Receipt, ...]
    events: tuple[Event, ...]

    @property
    def state_root(self) -> bytes:
        return self.state.state_root


class DexAction(NamedTuple):
    """An admitted namespace-0 transaction whose payload decoded."""

    tx_hash: bytes
    sender: bytes
    nonce: int
    fee: int
    payload: TxPayload


def apply_block(
    state: ExecutionState, block: ExecutionBlock
) -> tuple[ExecutionState, tuple[Receipt, ...]]:
    """Execute `block` on `state`; return the next state and one receipt per tx."""
    result = execute_block(state, block)
    return result.state, result.receipts


def execute_block(state: ExecutionState, block: ExecutionBlock) -> BlockResult:
    """Like `apply_block`, and also return the block's events (fills, liquidations...).

    Total: a block-level unit (one market's funding, expiry, auction or premium
    sample, one subaccount's liquidation) that raises is skipped and the block
    is executed again from the same input state; after MAX_PHASE_FAILURES such
    retries every block-level phase is skipped, and if even that raises the
    block commits as empty (`_refused_block`)."""
    validate_header(state, block)
    skipped: dict[PhaseKey, str] = {}
    for _ in range(MAX_PHASE_FAILURES):
        try:
            return _execute(state, block, skipped, skip_all=False)
        except PhaseFailed as failure:
            skipped[failure.key] = failure.error
        except Exception:  # outside any block-level unit: try without them all
            break
    try:
        return _execute(state, block, skipped, skip_all=True)
    except Exception as exc:
        return _refused_block(state, block, type(exc).__name__)


def _execute(
    state: ExecutionState, block: ExecutionBlock, skipped: dict[PhaseKey, str], *, skip_all: bool
) -> BlockResult:
    w = StateWriter(state, block.height, block.timestamp_seconds)
    w.skipped = skipped
    w.skip_all_phases = skip_all
    w.tie_salt = block_salt(block)
    receipts: list[Receipt | None] = [None] * len(block.transactions)
    actions = decode_dex_payloads(admit_transactions(w, block, receipts), receipts)
    account = [(i, a) for i, a in actions if not isinstance(a.payload, ORDER_PAYLOADS)]
    orders = [(i, a) for i, a in actions if isinstance(a.payload, ORDER_PAYLOADS)]
    for i, action in in_sender_nonce_order(account):
        receipts[i] = _run(w, action)
    aggregate_prices(w)
    advance_market_clock(w)
    place_triggered_orders(w)
    for i, action in sorted(orders, key=lambda item: (item[1].sender, item[1].nonce)):
        receipts[i] = _run(w, action)
    run_auctions(w)
    sample_premiums(w)
    liquidate_undermargined(w)
    evaluate_triggers(w)
    events = tuple(w.events)
    new_state = w.commit()
    assert all(receipt is not None for receipt in receipts)
    return BlockResult(new_state, tuple(r for r in receipts if r is not None), events)  # type: ignore[arg-type]


def validate_header(state: ExecutionState, block: ExecutionBlock) -> None:
    """The caller's contract (consensus fixed both): the next height, time not going back."""
    if block.height != state.height + 1:
        raise InvalidBlock(f"expected height {state.height + 1}, got {block.height}")
    if block.timestamp_seconds < state.block.timestamp:
        raise InvalidBlock("block timestamp is before the previous block's")


def block_salt(block: ExecutionBlock) -> bytes:
    """keccak256 over the height and every transaction's hash, in ascending
    order: the salt of the auctions' last remainder tie-break. A sender fixes
    its order id before it can know which other transactions share its block,
    so it cannot grind a position in that tie (matching.py); and the hashes are
    sorted so that, like every other outcome, it depends on which transactions
    the block carries, never on where in the block they sit."""
    hashes = b"".join(sorted(hash_of(tx) for tx in block.transactions))
    return keccak256(b"seqnet/auction-tie/v2" + encode(block.height) + hashes)


def _refused_block(state: ExecutionState, block: ExecutionBlock, error: str) -> BlockResult:
    """The last resort of totality: the block changes nothing but the height and
    time, and every transaction gets a failed receipt (nonces stay unused)."""
    w = StateWriter(state, block.height, block.timestamp_seconds)
    refused = BlockFailed(f"the block could not be executed ({error})")
    receipts = tuple(_failed(hash_of(tx), sender_of(tx), refused) for tx in block.transactions)
    return BlockResult(w.commit(), receipts, (PhaseSkipped("all", 0, b"", error),))


def _failed(tx_hash: bytes, sender: bytes, error: TransactionRejected, fee: int = 0) -> Receipt:
    reason = str(error)[:MAX_REASON_LENGTH]
    return Receipt(tx_hash, sender, False, type(error).__name__, reason, fee)


def admit_transactions(
    w: StateWriter, block: ExecutionBlock, receipts: list[Receipt | None]
) -> list[tuple[int, SequencedTransaction]]:
    """Check fields, then per sender (in address order) its transactions in nonce
    order (ties: by hash): the nonce window, the fee, and debit the fee.

    Every namespace goes through here; a rollup transaction (namespace != 0)
    that pays its fee is done and gets its success receipt. The outcome does
    not depend on where in the block a transaction sits.
    """
    by_sender: dict[bytes, list[tuple[int, bytes, int, SequencedTransaction]]] = {}
    failed_reveals: dict[bytes, list[tuple[int, FailedReveal]]] = {}
    limit = limits.MAX_TRANSACTIONS_PER_BLOCK
    for i, raw in enumerate(block.transactions):
        if i >= limit:
            full = BlockFull(f"past the first {limit} transactions of the block")
            receipts[i] = _failed(hash_of(raw), sender_of(raw), full)
            continue
        try:
            if isinstance(raw, FailedReveal):
                failed = check_failed_reveal(raw)
                failed_reveals.setdefault(failed.sender, []).append((i, failed))
                continue
            tx = check_transaction(raw)
        except MalformedTransaction as error:
            receipts[i] = _failed(hash_of(raw), sender_of(raw), error)
            continue
        by_sender.setdefault(tx.sender, []).append((tx.nonce, tx.tx_hash, i, tx))
    admitted: list[tuple[int, SequencedTransaction]] = []
    collected = 0
    # Admission writes nonces, subaccounts 0 and the ledger, never a market:
    # one check reads each market's inputs once for every sender, and one
    # bound (margin_bound.py) serves every sender's recorded slack.
    check = MaintenanceCheck(w)
    bound = MarginBound(w)
    for sender in sorted(by_sender.keys() | failed_reveals.keys()):
        window = w.nonces.get(sender)
        balance: int | None = None  # computed once per sender, when first needed
        # At most the balance, known without computing it (None: not known).
        floor = _fee_balance_floor(w, sender, bound)
        paid = 0
        for nonce, tx_hash, i, tx in sorted(by_sender.get(sender, ()), key=lambda t: t[:3]):
            rejected = nonce_rejection(window, nonce)
            if rejected is not None:
                receipts[i] = _failed(tx_hash, sender, rejected)
                continue
            window = use_nonce(window, nonce)
            required = required_fee(w.config, len(tx.payload))
            if tx.fee < required:
                low = FeeTooLow(f"offered {tx.fee}, required {required}")
                receipts[i] = _failed(tx_hash, sender, low)
                continue
            if balance is None:
                if floor is not None and tx.fee <= floor - paid:
                    paid += tx.fee  # within the balance: what follows below, as is
                    if tx.namespace == DEX_NAMESPACE:
                        admitted.append((i, tx))
                    else:
                        receipts[i] = Receipt(tx_hash, sender, True, "", "", tx.fee)
                    continue
                balance = fee_balance(w, sender, check)
            if tx.fee > balance - paid:
                short = InsufficientFeeBalance(f"fee {tx.fee} exceeds {max(balance - paid, 0)}")
                receipts[i] = _failed(tx_hash, sender, short)
                continue
            paid += tx.fee
            if tx.namespace == DEX_NAMESPACE:
                admitted.append((i, tx))
            else:
                receipts[i] = Receipt(tx_hash, sender, True, "", "", tx.fee)
        for i, failed in failed_reveals.get(sender, ()):
            # After the sender's transactions, in block order: the max fee, or
            # what the fee balance still covers.
            if balance is None and (floor is None or failed.fee > floor - paid):
                balance = fee_balance(w, sender, check)
            charged = failed.fee if balance is None else min(failed.fee, max(balance - paid, 0))
            paid += charged
            receipts[i] = Receipt(
                failed.tx_hash,
                sender,
                False,
                "FailedDecryption",
                failed.reason[:MAX_REASON_LENGTH],
                charged,
            )
        if window is not None and window is not w.nonces.get(sender):
            w.nonces.put(sender, window)
        if paid:
            credit(w, fee_account(sender), -paid)
            collected += paid
    collect_fees(w, collected)
    w.release()
    admitted.sort(key=lambda item: item[0])
    return admitted


def _fee_balance_floor(w: StateWriter, sender: bytes, bound: MarginBound) -> int | None:
    """A value the sender's `fee_balance` is at least, found without its margin
    computation: the collateral of a subaccount 0 with no position (which is
    the balance), or its recorded slack less how far it can have fallen since
    (margin_bound.py; admission has written no subaccount 0 of this sender
    yet). None when neither is known."""
    sid = fee_account(sender)
    sub = w.subaccount(sid)
    if not sub.markets:
        return sub.collateral
    entry = w.base.margin_slack.get(sid)
    if entry is None:
        return None
    fell = bound.decrease_bound(entry)
    return None if fell is None else entry[0] - fell


def decode_dex_payloads(
    admitted: list[tuple[int, SequencedTransaction]], receipts: list[Receipt | None]
) -> list[tuple[int, DexAction]]:
    """Decode each admitted DEX payload; one that does not decode is a failed
    receipt (its nonce is used and its fee paid)."""
    actions: list[tuple[int, DexAction]] = []
    for i, tx in admitted:
        try:
            if len(tx.payload) > MAX_DEX_PAYLOAD_BYTES:
                raise MalformedTransaction(
                    f"a DEX payload is at most {MAX_DEX_PAYLOAD_BYTES} bytes"
                )
            payload = decode_payload(tx.payload)
        except MalformedTransaction as error:
            receipts[i] = _failed(tx.tx_hash, tx.sender, error, tx.fee)
            continue
        actions.append((i, DexAction(tx.tx_hash, tx.sender, tx.nonce, tx.fee, payload)))
    return actions


def in_sender_nonce_order(txs: list[tuple[int, DexAction]]) -> list[tuple[int, DexAction]]:
    """Block order, except that each sender's transactions fill that sender's slots
    in nonce order (so a sender's own sequence is what its nonces say)."""
    slots: dict[bytes, list[int]] = {}
    queued: dict[bytes, list[tuple[int, DexAction]]] = {}
    for position, (i, tx) in enumerate(txs):
        slots.setdefault(tx.sender, []).append(position)
        queued.setdefault(tx.sender, []).append((i, tx))
    ordered: list[tuple[int, DexAction] | None] = [None] * len(txs)
    for sender, positions in slots.items():
        mine = sorted(queued[sender], key=lambda item: item[1].nonce)
        for position, item in zip(positions, mine, strict=True):
            ordered[position] = item
    return [item for item in ordered if item is not None]


def advance_market_clock(w: StateWriter) -> None:
    """Time-driven market events at the block timestamp: funding, option
    settlement-price samples and expiry, good-til orders due."""
    apply_due_funding(w)
    settle_expired_options(w)
    expire_good_til_orders(w)
    w.release()


_Handler = Callable[[StateWriter, DexAction, Any], None]

_HANDLERS: dict[type, _Handler] = {
    Deposit: lambda w, tx, p: apply_deposit(w, tx.sender, p),
    Withdraw: lambda w, tx, p: apply_withdraw(w, tx.sender, p),
    Transfer: lambda w, tx, p: apply_transfer(w, tx.sender, p),
    OracleUpdate: lambda w, tx, p: apply_price_report(w, tx.sender, p),
    L1DepositReport: lambda w, tx, p: apply_deposit_report(w, tx.sender, p),
    ListMarket: lambda w, tx, p: apply_list_market(w, tx.sender, p),
    UpdateMarketParams: lambda w, tx, p: apply_update_market(w, tx.sender, p),
    SetMarketPaused: lambda w, tx, p: apply_set_paused(w, tx.sender, p),
    PlaceOrder: lambda w, tx, p: apply_place_order(w, tx.sender, tx.nonce, tx.tx_hash, p),
    CancelOrder: lambda w, tx, p: apply_cancel_order(w, tx.sender, p),
    CancelOrderByClientId: lambda w, tx, p: apply_cancel_by_client_id(w, tx.sender, p),
}


def _run(w: StateWriter, tx: DexAction) -> Receipt:
    """Apply one DEX action; roll it back if it is rejected (its fee stays paid)."""
    mark = w.checkpoint()
    try:
        _HANDLERS[type(tx.payload)](w, tx, tx.payload)
    except TransactionRejected as error:
        w.rollback(mark)
        return _failed(tx.tx_hash, tx.sender, error, tx.fee)
    except Exception as exc:  # a bug, not an input: still one failed receipt, no crash
        w.rollback(mark)
        unexpected = HandlerFailed(f"unexpected {type(exc).__name__} in the handler")
        return _failed(tx.tx_hash, tx.sender, unexpected, tx.fee)
    w.release()
    return Receipt(tx.tx_hash, tx.sender, True, "", "", tx.fee)


def encode_outcome(result: BlockResult) -> bytes:
    """Canonical bytes of (state root, receipts, events): compare outcomes across nodes."""
    return encode((result.state.state_root, result.receipts, result.events))
