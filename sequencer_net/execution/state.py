"""The execution state, its key layout in the state tree, and the block overlay.

`ExecutionState` is an immutable snapshot: `apply_block` never changes it. A
block runs against a `StateWriter`, a copy-on-write overlay over the snapshot
that journals every write so one transaction's changes can be rolled back, and
that at the end produces the next snapshot plus the key -> bytes changes for the
state tree (`StateTree.apply`, cost O(changes * log n)).

Key layout (docs/execution.md, "State model"); integers are big-endian:

    b"config"                              ChainConfig
    b"block"                               BlockInfo (last executed block)
    b"ledger"                              Ledger (fee pool, net deposits)
    b"sub/"    + owner(20) + b"\x00"       Account: subaccount 0 and the owner's NonceWindow
                                           (NonceWindow alone: no subaccount 0 yet)
    b"sub/"    + owner(20) + number(1)     Subaccount (numbers 1..255)
    b"pos/"    + subaccount(21) + mkt(4)   Position
    b"market/" + mkt(4)                    MarketParams
    b"mstate/" + mkt(4)                    MarketState
    b"order/"  + mkt(4) + order id(32)     RestingOrder
    b"report/" + mkt(4) + address(20)      PriceReport (a reporter's latest price)
    b"cid/"    + subaccount(21) + client id(8)   mkt(4) + order id(32) of that open order
    b"gtt/"    + good_til(8) + mkt(4) + order id(32)   b"\x01" (the expiry index)
    b"cond/"   + mkt(4) + order id(32)     ConditionalOrder (stop / take-profit)
    b"ncond/"  + subaccount(21)            its number of conditional orders (2 bytes)
    b"trg/"    + mkt(4) + direction(1) + trigger price(32) + order id(32)   b"\x01"
    b"armed/"  + mkt(4) + order id(32)     b"\x01": triggered, enters the next auction
    b"l1bridge"                            BridgeState (absent: nothing bridged yet)
    b"l1dep/"  + deposit nonce(8)          DepositTally (an L1 deposit being reported)
    b"l1bal/"  + owner(20) + token(20)     abi.encode(uint256 amount): an L1 asset balance
    b"wd/"     + withdrawal id(8)          abi.encode(uint64 id, address recipient,
                                           address token, uint256 amount): an L1 withdrawal

Subaccount 0 and the nonce window share one entry because every transaction
uses a nonce and pays its fee from subaccount 0: a sender's transactions in a
block then rewrite one key, not two (`account_entry`). In memory they stay
apart (`ExecutionState.nonces`, `.subaccounts`).

The last two are ABI, not msgpack: the L1 bridge contract reads them
(l1_bridge.py, docs/execution.md "L1 bridge").

The six from b"cid/" to b"armed/" are the order index (`ExecutionState.order_index`, one mapping
per prefix, keys without the prefix; order_index.py maintains them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Final, Generic, NamedTuple, TypeVar

from .book import Book
from .encoding import decode_canonical, encode
from .limits import MAX_OPTION_TENOR_SECONDS
from .receipts import PhaseSkipped
from .records import (
    Account,
    Address,
    BlockInfo,
    BridgeState,
    ChainConfig,
    DepositTally,
    Ledger,
    MarketParams,
    MarketState,
    NonceWindow,
    Position,
    PriceReport,
    RestingOrder,
    Subaccount,
    SubaccountId,
)
from .state_tree import NodeStore, StateTree

if TYPE_CHECKING:
    from .mark import MarkInputs
    from .option_margin import GroupOptionTerms

INSURANCE_FUND: Final = SubaccountId(bytes(21))
"""The insurance fund is subaccount 0 of the zero address: nobody holds its key.
It takes over liquidated positions and pays bankrupt accounts' deficits."""

KEY_CONFIG: Final = b"config"
KEY_BLOCK: Final = b"block"
KEY_LEDGER: Final = b"ledger"
PREFIX_SUBACCOUNT: Final = b"sub/"
PREFIX_POSITION: Final = b"pos/"
PREFIX_MARKET: Final = b"market/"
PREFIX_MARKET_STATE: Final = b"mstate/"
PREFIX_ORDER: Final = b"order/"
PREFIX_REPORT: Final = b"report/"
PREFIX_CLIENT_ID: Final = b"cid/"
PREFIX_GOOD_TIL: Final = b"gtt/"
PREFIX_CONDITIONAL: Final = b"cond/"
PREFIX_CONDITIONAL_COUNT: Final = b"ncond/"
PREFIX_TRIGGER: Final = b"trg/"
PREFIX_ARMED: Final = b"armed/"
KEY_BRIDGE: Final = b"l1bridge"
PREFIX_DEPOSIT: Final = b"l1dep/"
PREFIX_L1_BALANCE: Final = b"l1bal/"
PREFIX_WITHDRAWAL: Final = b"wd/"
NO_BRIDGE_ACTIVITY: Final = BridgeState(resolved_below=0, next_withdrawal=0)
ORDER_INDEX_PREFIXES: Final = (
    PREFIX_CLIENT_ID,
    PREFIX_GOOD_TIL,
    PREFIX_CONDITIONAL,
    PREFIX_CONDITIONAL_COUNT,
    PREFIX_TRIGGER,
    PREFIX_ARMED,
)


def subaccount_id(owner: bytes, number: int) -> SubaccountId:
    return SubaccountId(owner + bytes([number]))


_NO_NONCE: Final = NonceWindow(highest=-1, used=0)


def account_key(owner: bytes) -> bytes:
    """The state key of `owner`'s Account entry (subaccount 0 and its nonce window)."""
    return PREFIX_SUBACCOUNT + owner + b"\x00"


def account_entry(sub: Subaccount | None, window: NonceWindow | None) -> bytes:
    """The bytes of the entry under `account_key`: an Account, subaccount 0
    and the nonce window (highest -1, used 0 if none used yet); or, for an
    owner with a window but no subaccount 0, the NonceWindow alone."""
    if sub is None:
        assert window is not None, "an owner with neither has no entry"
        return encode(window)
    window = window or _NO_NONCE
    return encode(
        Account(sub.collateral, sub.markets, sub.open_orders, window.highest, window.used)
    )


def decode_account(value: bytes) -> tuple[Subaccount | None, NonceWindow | None]:
    """The subaccount 0 and nonce window an `account_entry` holds (None: absent).
    A NonceWindow is a 2-element array (0x92), an Account a 5-element one."""
    if value[:1] == b"\x92":
        return None, decode_canonical(value, NonceWindow)
    account = decode_canonical(value, Account)
    sub = Subaccount(account.collateral, account.markets, account.open_orders)
    if account.nonce_highest == -1 and account.nonce_used == 0:
        return sub, None
    return sub, NonceWindow(account.nonce_highest, account.nonce_used)


def owner_of(subaccount: bytes) -> Address:
    return Address(subaccount[:20])


def market_key(market_id: int) -> bytes:
    return market_id.to_bytes(4, "big")


def position_key(subaccount: bytes, market_id: int) -> bytes:
    return subaccount + market_id.to_bytes(4, "big")


def report_key(market_id: int, reporter: bytes) -> bytes:
    return market_key(market_id) + reporter


def order_key(market_id: int, order_id: bytes) -> bytes:
    return market_id.to_bytes(4, "big") + order_id


def l1_balance_key(owner: bytes, token: bytes) -> bytes:
    """The key of `owner`'s L1 asset balance of `token`, without the prefix."""
    return owner + token


def abi_uint256(amount: int) -> bytes:
    """abi.encode(uint256 amount): the value of an L1 asset balance entry."""
    return amount.to_bytes(32, "big")


def withdrawal_tree_key(withdrawal_id: int) -> bytes:
    """The state key of L1 withdrawal record `withdrawal_id` (what the L1 proves)."""
    return PREFIX_WITHDRAWAL + withdrawal_id.to_bytes(8, "big")


@dataclass(frozen=True, slots=True)
class ExecutionState:
    """All state after block `block.height`; treat every mapping as read-only.

    `positions` is keyed by `position_key`, `reports` by `report_key`; `books`
    maps a market id to its resting orders by order id (a `Book`, which also
    keeps the derived price-level aggregates the auction reads). `open_subaccounts`
    (derived, not in the tree) holds every subaccount with at least one
    Position record: the accounts the end-of-block liquidation check walks.
    """

    config: ChainConfig
    block: BlockInfo
    ledger: Ledger
    nonces: Mapping[bytes, NonceWindow]
    subaccounts: Mapping[bytes, Subaccount]
    positions: Mapping[bytes, Position]
    market_params: Mapping[int, MarketParams]
    market_states: Mapping[int, MarketState]
    books: Mapping[int, Book]
    open_subaccounts: frozenset[bytes]
    store: NodeStore
    state_root: bytes
    reports: Mapping[bytes, PriceReport] = field(default_factory=dict)
    order_index: Mapping[bytes, Mapping[bytes, bytes]] = field(default_factory=dict)
    """Per ORDER_INDEX_PREFIXES prefix: key (without the prefix) -> stored bytes."""
    bridge: BridgeState = NO_BRIDGE_ACTIVITY
    deposit_tallies: Mapping[int, DepositTally] = field(default_factory=dict)
    """Open (and out-of-order resolved) L1 deposit nonces -> their tally."""
    l1_balances: Mapping[bytes, int] = field(default_factory=dict)
    """owner(20) + token(20) -> a positive L1 asset balance."""
    withdrawals: Mapping[int, bytes] = field(default_factory=dict)
    """L1 withdrawal id -> its 128-byte ABI record (written once, never read
    back by the engine; kept so that `state_entries` is complete)."""
    margin_watch: frozenset[bytes] | None = None
    """Derived, not in the tree: the open subaccounts the next block's
    liquidation check must look at even if nothing of theirs changes (below
    maintenance, skipped, or written in this block). Every other open
    subaccount met maintenance at this state. None: unknown (genesis, a
    reloaded state, a refused block): the next block checks every one."""
    margin_slack: Mapping[bytes, MarginSlack] = field(default_factory=dict)
    """Derived, not in the tree: for open subaccounts the liquidation check
    found at or above maintenance and that no block has written since, by how
    much, and at which block's market inputs (`MarginSlack`). The check skips
    such a subaccount when an exact bound on how far its margin can have moved
    since is below that slack (margin_bound.py). Empty: nothing known."""
    margin_snapshots: Mapping[int, Mapping[int, MarketSnapshot]] = field(default_factory=dict)
    """Derived, not in the tree: per block height (the last
    MARGIN_SNAPSHOT_BLOCKS), each market's inputs as that block's liquidation
    check saw them, for the `margin_slack` entries recorded there."""

    @property
    def height(self) -> int:
        return self.block.height

    def tree(self) -> StateTree:
        """A read view of the committed tree at `state_root` (for proofs)."""
        return StateTree(self.store, self.state_root)


class MarketSnapshot(NamedTuple):
    """What a subaccount's equity and maintenance read of one market, as the
    liquidation check saw it: `price` the valuation price (a perpetual's index,
    an option's mark), and for an option its mark minus its value in every
    maintenance scenario (`deltas`) and its spot times the maintenance margin
    (`floor`); () and 0 for a perpetual."""

    params: MarketParams
    price: int
    long_index: int
    short_index: int
    deltas: tuple[int, ...]
    floor: int


MarginSlack = tuple[int, ...]
"""(equity - maintenance >= 0, the height of the check that found it, then
market id and size of each non-zero position, then the tolerated rate of
margin_bound.py's pre-test): a flat tuple of ints, which the garbage
collector stops tracking, as thousands are kept. An entry of even length (no
tolerated rate) gets only the exact bound."""

MARGIN_SNAPSHOT_BLOCKS: Final = 256
"""How many blocks' market snapshots a state keeps; an entry recorded earlier
than that no longer vouches for its subaccount, which is checked again."""


class MarginInputs(NamedTuple):
    """Everything margin.py reads of a market for a subaccount's equity and
    maintenance requirement: equal inputs give equal margin. A perpetual reads
    its params, index and funding indexes; an option also its volatility and
    the block time, as the time to expiry its Black-Scholes values use
    (`option_seconds_left`; 0 for a perpetual)."""

    params: MarketParams | None
    oracle_price: int
    long_index: int
    short_index: int
    oracle_volatility: int
    seconds_left: int


def option_seconds_left(params: MarketParams | None, timestamp: int) -> int:
    """The time to expiry an option is valued at at `timestamp`: expiry - now,
    at most MAX_OPTION_TENOR_SECONDS, at least 0 (at or after expiry the value
    is intrinsic and no longer moves with time). 0 for a perpetual."""
    if params is None or params.option is None:
        return 0
    return max(min(params.option.expiry - timestamp, MAX_OPTION_TENOR_SECONDS), 0)


def margin_inputs(params: MarketParams | None, state: MarketState, timestamp: int) -> MarginInputs:
    """One market's MarginInputs at block time `timestamp`."""
    return MarginInputs(
        params,
        state.oracle_price,
        state.long_index,
        state.short_index,
        state.oracle_volatility,
        option_seconds_left(params, timestamp),
    )


_EMPTY_BOOK: Final = Book()
"""The book of a market without orders (never written: writable_book copies)."""

K = TypeVar("K")
V = TypeVar("V")
_ABSENT: Final = object()

PhaseKey = tuple[str, int | bytes]
"""(phase name, market id or subaccount id): one unit of block-level work."""


class PhaseFailed(Exception):
    """A block-level phase raised for one market or subaccount. Never escapes
    `execute_block`: the block is executed again with that unit skipped."""

    def __init__(self, key: PhaseKey, error: str) -> None:
        super().__init__(f"{key[0]} failed: {error}")
        self.key = key
        self.error = error


class _Phase:
    """`StateWriter.phase`: a `with` block whose exception becomes PhaseFailed
    (a plain class: one of these wraps every subaccount's liquidation check)."""

    __slots__ = ("key", "phase")

    def __init__(self, phase: str, key: int | bytes) -> None:
        self.phase = phase
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, PhaseFailed) or not isinstance(exc, Exception):
            return
        raise PhaseFailed((self.phase, self.key), type(exc).__name__) from exc


class Journal:
    """Undo log shared by a writer's overlays: (overlay, key, previous write or _ABSENT)."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[tuple[Overlay[object, object], object, object]] = []


class Overlay(Generic[K, V]):
    """Copy-on-write view of a mapping: reads fall through, writes stay here.

    A write of None deletes the key. Every write is journaled so it can be undone.
    """

    __slots__ = ("_base", "_journal", "_writes")

    def __init__(self, base: Mapping[K, V], journal: Journal) -> None:
        self._base = base
        self._writes: dict[K, V | None] = {}
        self._journal = journal

    def get(self, key: K) -> V | None:
        writes = self._writes
        if key in writes:
            return writes[key]
        return self._base.get(key)

    def put(self, key: K, value: V | None) -> None:
        self._journal.entries.append((self, key, self._writes.get(key, _ABSENT)))  # type: ignore[arg-type]
        self._writes[key] = value

    def undo(self, key: K, previous: object) -> None:
        if previous is _ABSENT:
            del self._writes[key]
        else:
            self._writes[key] = previous  # type: ignore[assignment]

    def live_keys(self) -> set[K]:
        merged = set(self._base)
        for key, value in self._writes.items():
            if value is None:
                merged.discard(key)
            else:
                merged.add(key)
        return merged

    def changes(self) -> Iterator[tuple[K, V | None]]:
        return iter(self._writes.items())

    def writes(self) -> dict[K, V | None]:
        """A copy of the writes so far (for `changed_since`)."""
        return dict(self._writes)

    def changed_since(self, writes: dict[K, V | None]) -> Iterator[K]:
        """The keys whose value is not the very object it was at `writes`."""
        for key, value in self._writes.items():
            if writes.get(key, _ABSENT) is not value:
                yield key

    def merged(self) -> dict[K, V]:
        result = dict(self._base)
        for key, value in self._writes.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = value
        return result


class StateWriter:
    """The mutable overlay one block runs against (see module docstring)."""

    def __init__(self, base: ExecutionState, height: int, timestamp: int) -> None:
        self.base = base
        self.height = height
        self.timestamp = timestamp
        self.config = base.config
        self.journal = Journal()
        self.ledger_cell: Overlay[int, Ledger] = Overlay({0: base.ledger}, self.journal)
        self.nonces: Overlay[bytes, NonceWindow] = Overlay(base.nonces, self.journal)
        self.subaccounts: Overlay[bytes, Subaccount] = Overlay(base.subaccounts, self.journal)
        self.positions: Overlay[bytes, Position] = Overlay(base.positions, self.journal)
        self.market_params: Overlay[int, MarketParams] = Overlay(base.market_params, self.journal)
        self.market_states: Overlay[int, MarketState] = Overlay(base.market_states, self.journal)
        self.reports: Overlay[bytes, PriceReport] = Overlay(base.reports, self.journal)
        self.bridge_cell: Overlay[int, BridgeState] = Overlay({0: base.bridge}, self.journal)
        self.deposit_tallies: Overlay[int, DepositTally] = Overlay(
            base.deposit_tallies, self.journal
        )
        self.l1_balances: Overlay[bytes, int] = Overlay(base.l1_balances, self.journal)
        self.withdrawals: Overlay[int, bytes] = Overlay(base.withdrawals, self.journal)
        # Orders placed in this block, keyed by order_key; resting orders cancelled
        # in this block, keyed by order_key. Books are rebuilt per market at auction.
        self.pending_orders: Overlay[bytes, RestingOrder] = Overlay({}, self.journal)
        self.cancelled_orders: Overlay[bytes, bool] = Overlay({}, self.journal)
        self.order_index: dict[bytes, Overlay[bytes, bytes]] = {
            prefix: Overlay(base.order_index.get(prefix, {}), self.journal)
            for prefix in ORDER_INDEX_PREFIXES
        }
        # Books this block wrote to: copies of the committed ones (writable_book).
        self.books: dict[int, Book] = {}
        self.events: list[object] = []
        # Option values by (market, spot, vol, rate, time): marks and scenario revaluations.
        self.option_marks: dict[tuple[int, int, int, int, int], int] = {}
        # Per (market, spot, vol, rate, grid): the option's values over the grid's
        # scenarios (option_margin.scenario_values), in this block's time.
        self.scenario_values: dict[tuple[int, int, int, int, object], tuple[int, ...]] = {}
        # The same keys: (mark, mark - value per scenario, the largest and the
        # smallest of those), what a group's scenario loss needs
        # (option_margin.scenario_deltas).
        self.scenario_deltas: dict[
            tuple[int, int, int, int, object], tuple[int, tuple[int, ...], int, int]
        ] = {}
        # Per (grid tag, initial, market ids) of an option group: the market
        # records its size-independent terms were computed from, and those terms
        # (option_margin.cached_group_terms).
        self.group_terms: dict[
            tuple[object, ...],
            tuple[tuple[tuple[MarketParams, MarketState], ...], GroupOptionTerms],
        ] = {}
        # Per market that cleared this block: (price, volume).
        self.cleared_prices: dict[int, tuple[int, int]] = {}
        # Per perpetual that cleared this block: what its auction observed of the
        # book it left (mark.observe_perp) and from which inputs (params, index,
        # last trade, clearing); the premium sample reuses it (run_auctions and
        # sample_premiums run back to back, so the book is the same).
        self.observed: dict[int, tuple[MarketParams, int, int, tuple[int, int], MarkInputs]] = {}
        # Salt of the auctions' last remainder tie-break (engine.block_salt).
        self.tie_salt = b""
        # Subaccounts whose liquidation orders took part in a clearing this block
        # (with the misses those orders carried), and those of them with at least
        # one fill (liquidation.py's fallback rule).
        self.liquidation_attempted: dict[bytes, int] = {}
        self.liquidation_filled: set[bytes] = set()
        # Block-level units that failed in an earlier attempt at this block.
        self.skipped: dict[PhaseKey, str] = {}
        self.skip_all_phases = False
        # Set by the liquidation check: the subaccounts to watch next block (minus
        # those written after it, added at commit), and the margin inputs of every
        # market it saw (a change after it makes the watch list unknown).
        self.margin_watch: set[bytes] | None = None
        self.margin_inputs: dict[int, MarginInputs] = {}
        # Set by the liquidation check: the slack of the subaccounts it found at
        # or above maintenance (ExecutionState.margin_slack; those written after
        # it are dropped at commit).
        self.margin_slack: dict[bytes, MarginSlack] = {}
        self.margin_snapshot: Mapping[int, MarketSnapshot] | None = None
        # The subaccount and position writes when the slack was recorded: a
        # subaccount written after that keeps no entry (`_next_margin_slack`).
        self.margin_slack_writes: (
            tuple[dict[bytes, Subaccount | None], dict[bytes, Position | None]] | None
        ) = None

    # --- block-level phases ---------------------------------------------------------

    def phase_skipped(self, phase: str, key: int | bytes) -> bool:
        """True (and a PhaseSkipped event) if this unit failed in an earlier attempt."""
        error = "skipped" if self.skip_all_phases else self.skipped.get((phase, key))
        if error is None:
            return False
        market_id, subaccount = (key, b"") if isinstance(key, int) else (0, key)
        self.events.append(PhaseSkipped(phase, market_id, subaccount, error))
        return True

    def phase(self, phase: str, key: int | bytes) -> _Phase:
        """Run one unit of block-level work; any exception becomes PhaseFailed."""
        return _Phase(phase, key)

    # --- transaction boundaries ---------------------------------------------------

    def checkpoint(self) -> tuple[int, int]:
        return len(self.journal.entries), len(self.events)

    def rollback(self, mark: tuple[int, int]) -> None:
        entries = self.journal.entries
        while len(entries) > mark[0]:
            overlay, key, previous = entries.pop()
            overlay.undo(key, previous)
        del self.events[mark[1] :]

    def release(self) -> None:
        """Forget the undo log (after a transaction succeeded)."""
        self.journal.entries.clear()

    # --- typed accessors ------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        ledger = self.ledger_cell.get(0)
        assert ledger is not None
        return ledger

    @ledger.setter
    def ledger(self, value: Ledger) -> None:
        self.ledger_cell.put(0, value)

    @property
    def bridge(self) -> BridgeState:
        bridge = self.bridge_cell.get(0)
        assert bridge is not None
        return bridge

    @bridge.setter
    def bridge(self, value: BridgeState) -> None:
        self.bridge_cell.put(0, value)

    def l1_balance(self, owner: bytes, token: bytes) -> int:
        return self.l1_balances.get(l1_balance_key(owner, token)) or 0

    def subaccount(self, sid: bytes) -> Subaccount:
        found = self.subaccounts.get(sid)
        return found if found is not None else Subaccount(collateral=0, markets=(), open_orders=0)

    def position(self, sid: bytes, market_id: int) -> Position | None:
        return self.positions.get(position_key(sid, market_id))

    def params(self, market_id: int) -> MarketParams | None:
        return self.market_params.get(market_id)

    def market(self, market_id: int) -> MarketState | None:
        return self.market_states.get(market_id)

    def book(self, market_id: int) -> Book:
        """The market's resting orders as of now (read only: see writable_book)."""
        written = self.books.get(market_id)
        if written is not None:
            return written
        return self.base.books.get(market_id, _EMPTY_BOOK)

    def writable_book(self, market_id: int) -> Book:
        """The market's book for this block to change (copied on first write)."""
        written = self.books.get(market_id)
        if written is None:
            committed = self.base.books.get(market_id)
            written = Book() if committed is None else committed.copy()
            self.books[market_id] = written
        return written

    def open_subaccounts(self) -> set[bytes]:
        result = set(self.base.open_subaccounts)
        for sid, sub in self.subaccounts.changes():
            if sub is not None and sub.markets:
                result.add(sid)
            else:
                result.discard(sid)
        return result

    def written_subaccounts(self) -> set[bytes]:
        """Subaccounts whose record or any position record this block wrote."""
        written = {sid for sid, _ in self.subaccounts.changes()}
        written.update(pkey[:21] for pkey, _ in self.positions.changes())
        return written

    def margin_inputs_now(self) -> dict[int, MarginInputs]:
        """Per market, what a subaccount's equity and maintenance read of it
        now (this block's time)."""
        inputs: dict[int, MarginInputs] = {}
        for mid in self.market_states.live_keys():
            state = self.market_states.get(mid)
            assert state is not None
            inputs[mid] = margin_inputs(self.market_params.get(mid), state, self.timestamp)
        return inputs

    def _next_open_subaccounts(self) -> frozenset[bytes]:
        base = self.base.open_subaccounts
        opened: set[bytes] = set()
        closed: set[bytes] = set()
        for sid, sub in self.subaccounts.changes():
            is_open = sub is not None and bool(sub.markets)
            if is_open and sid not in base:
                opened.add(sid)
            elif not is_open and sid in base:
                closed.add(sid)
        if not opened and not closed:
            return base
        return (base | opened) - closed

    def _next_margin_watch(self) -> frozenset[bytes] | None:
        if self.margin_watch is None or self.margin_inputs_now() != self.margin_inputs:
            return None
        return frozenset(self.margin_watch | self.written_subaccounts())

    def _next_margin_slack(self) -> Mapping[bytes, MarginSlack]:
        """The base's entries and this block's, each only for a subaccount
        whose records are still those it describes: a base entry if this
        block did not write the subaccount, one of this block's if nothing
        wrote the subaccount after its slack was recorded. None for a
        subaccount on the watch list (below maintenance, or its check failed)."""
        written = self.written_subaccounts()
        watch = self.margin_watch or ()
        base = self.base.margin_slack
        if not self.margin_slack and not written and not watch:
            return base
        merged = dict(base)
        for sid in written:  # a subaccount closes only by a write: none left over
            merged.pop(sid, None)
        if self.margin_slack:
            assert self.margin_slack_writes is not None
            subs, positions = self.margin_slack_writes
            later = set(self.subaccounts.changed_since(subs))
            later.update(key[:21] for key in self.positions.changed_since(positions))
            for sid, entry in self.margin_slack.items():
                if sid not in later:
                    merged[sid] = entry
        for sid in watch:
            merged.pop(sid, None)
        return merged

    def _next_margin_snapshots(self) -> Mapping[int, Mapping[int, MarketSnapshot]]:
        base = self.base.margin_snapshots
        if self.margin_snapshot is None:
            return base
        kept = {h: snap for h, snap in base.items() if h > self.height - MARGIN_SNAPSHOT_BLOCKS}
        kept[self.height] = self.margin_snapshot
        return kept

    # --- the end of the block -----------------------------------------------------

    def commit(self) -> ExecutionState:
        """Build the next snapshot and write its changes into the state tree."""
        block = BlockInfo(height=self.height, timestamp=self.timestamp)
        changes: dict[bytes, bytes | None] = {
            KEY_BLOCK: encode(block),
            KEY_LEDGER: encode(self.ledger),
        }
        accounts = {address for address, _ in self.nonces.changes()}
        for sid, sub in self.subaccounts.changes():
            if sid[20] == 0:
                accounts.add(sid[:20])
            else:
                changes[PREFIX_SUBACCOUNT + sid] = None if sub is None else encode(sub)
        for owner in sorted(accounts):
            sub = self.subaccounts.get(owner + b"\x00")
            window = self.nonces.get(owner)
            changes[account_key(owner)] = (
                None if sub is None and window is None else account_entry(sub, window)
            )
        for pkey, pos in self.positions.changes():
            changes[PREFIX_POSITION + pkey] = None if pos is None else encode(pos)
        for mid, params in self.market_params.changes():
            changes[PREFIX_MARKET + market_key(mid)] = None if params is None else encode(params)
        for mid, mstate in self.market_states.changes():
            changes[PREFIX_MARKET_STATE + market_key(mid)] = (
                None if mstate is None else encode(mstate)
            )
        for rkey, report in self.reports.changes():
            changes[PREFIX_REPORT + rkey] = None if report is None else encode(report)
        bridge = self.bridge
        if bridge != self.base.bridge:
            changes[KEY_BRIDGE] = encode(bridge)
        for deposit, tally in self.deposit_tallies.changes():
            changes[PREFIX_DEPOSIT + deposit.to_bytes(8, "big")] = (
                None if tally is None else encode(tally)
            )
        for bkey, amount in self.l1_balances.changes():
            changes[PREFIX_L1_BALANCE + bkey] = None if not amount else abi_uint256(amount)
        for wid, record in self.withdrawals.changes():
            changes[withdrawal_tree_key(wid)] = record
        books: dict[int, Book] = dict(self.base.books)
        for mid, book in self.books.items():
            old = self.base.books.get(mid, _EMPTY_BOOK)
            prefix = PREFIX_ORDER + market_key(mid)
            for oid in book.changed:
                order = book.get(oid)
                if order is not None:
                    if old.get(oid) is not order:
                        changes[prefix + oid] = encode(order)
                elif oid in old:
                    changes[prefix + oid] = None
            if book:
                books[mid] = book
            else:
                books.pop(mid, None)
        order_index: dict[bytes, Mapping[bytes, bytes]] = dict(self.base.order_index)
        for prefix, overlay in self.order_index.items():
            written = False
            for ikey, value in overlay.changes():
                changes[prefix + ikey] = value
                written = True
            if written:
                order_index[prefix] = overlay.merged()
        root = StateTree(self.base.store, self.base.state_root).apply(changes)
        open_subaccounts = self._next_open_subaccounts()
        return ExecutionState(
            config=self.config,
            block=block,
            ledger=self.ledger,
            nonces=self.nonces.merged(),
            subaccounts=self.subaccounts.merged(),
            positions=self.positions.merged(),
            market_params=self.market_params.merged(),
            market_states=self.market_states.merged(),
            books=books,
            open_subaccounts=open_subaccounts,
            store=self.base.store,
            state_root=root,
            reports=self.reports.merged(),
            order_index=order_index,
            bridge=bridge,
            deposit_tallies=_merged_if_changed(self.deposit_tallies, self.base.deposit_tallies),
            l1_balances=_merged_if_changed(self.l1_balances, self.base.l1_balances),
            withdrawals=_merged_if_changed(self.withdrawals, self.base.withdrawals),
            margin_watch=self._next_margin_watch(),
            margin_slack=self._next_margin_slack(),
            margin_snapshots=self._next_margin_snapshots(),
        )


def _merged_if_changed(overlay: Overlay[K, V], base: Mapping[K, V]) -> Mapping[K, V]:
    """The overlay's mapping after the block; the base object itself when the
    block wrote nothing there (these mappings only grow with bridge traffic)."""
    if next(overlay.changes(), None) is None:
        return base
    return overlay.merged()


def state_entries(state: ExecutionState) -> dict[bytes, bytes]:
    """Every tree entry of `state`, encoded from scratch (for checks and rebuilds)."""
    entries: dict[bytes, bytes] = {
        KEY_CONFIG: encode(state.config),
        KEY_BLOCK: encode(state.block),
        KEY_LEDGER: encode(state.ledger),
    }
    for sid, sub in state.subaccounts.items():
        if sid[20] == 0:
            entries[PREFIX_SUBACCOUNT + sid] = account_entry(sub, state.nonces.get(sid[:20]))
        else:
            entries[PREFIX_SUBACCOUNT + sid] = encode(sub)
    for address, nonce in state.nonces.items():
        if address + b"\x00" not in state.subaccounts:
            entries[account_key(address)] = account_entry(None, nonce)
    for pkey, pos in state.positions.items():
        entries[PREFIX_POSITION + pkey] = encode(pos)
    for mid, params in state.market_params.items():
        entries[PREFIX_MARKET + market_key(mid)] = encode(params)
    for mid, mstate in state.market_states.items():
        entries[PREFIX_MARKET_STATE + market_key(mid)] = encode(mstate)
    for mid, book in state.books.items():
        for oid, order in book.items():
            entries[PREFIX_ORDER + order_key(mid, oid)] = encode(order)
    for rkey, report in state.reports.items():
        entries[PREFIX_REPORT + rkey] = encode(report)
    for prefix, index in state.order_index.items():
        for ikey, value in index.items():
            entries[prefix + ikey] = value
    if state.bridge != NO_BRIDGE_ACTIVITY:
        entries[KEY_BRIDGE] = encode(state.bridge)
    for deposit, tally in state.deposit_tallies.items():
        entries[PREFIX_DEPOSIT + deposit.to_bytes(8, "big")] = encode(tally)
    for bkey, amount in state.l1_balances.items():
        entries[PREFIX_L1_BALANCE + bkey] = abi_uint256(amount)
    for wid, record in state.withdrawals.items():
        entries[withdrawal_tree_key(wid)] = record
    return entries


def load_state(store: NodeStore, root: bytes) -> ExecutionState:
    """Rebuild the in-memory snapshot from the tree at `root` (a restarted node)."""
    tree = StateTree(store, root)
    config: ChainConfig | None = None
    block: BlockInfo | None = None
    ledger: Ledger | None = None
    nonces: dict[bytes, NonceWindow] = {}
    subaccounts: dict[bytes, Subaccount] = {}
    positions: dict[bytes, Position] = {}
    params: dict[int, MarketParams] = {}
    mstates: dict[int, MarketState] = {}
    books: dict[int, dict[bytes, RestingOrder]] = {}
    reports: dict[bytes, PriceReport] = {}
    order_index: dict[bytes, dict[bytes, bytes]] = {}
    bridge = NO_BRIDGE_ACTIVITY
    tallies: dict[int, DepositTally] = {}
    l1_balances: dict[bytes, int] = {}
    withdrawals: dict[int, bytes] = {}
    for key, value in tree.items():
        indexed = next((p for p in ORDER_INDEX_PREFIXES if key.startswith(p)), None)
        if indexed is not None:
            order_index.setdefault(indexed, {})[key[len(indexed) :]] = value
        elif key == KEY_CONFIG:
            config = decode_canonical(value, ChainConfig)
        elif key == KEY_BLOCK:
            block = decode_canonical(value, BlockInfo)
        elif key == KEY_LEDGER:
            ledger = decode_canonical(value, Ledger)
        elif key.startswith(PREFIX_SUBACCOUNT):
            sid = key[len(PREFIX_SUBACCOUNT) :]
            if sid[20:] == b"\x00":
                sub, window = decode_account(value)
                if sub is not None:
                    subaccounts[sid] = sub
                if window is not None:
                    nonces[sid[:20]] = window
            else:
                subaccounts[sid] = decode_canonical(value, Subaccount)
        elif key.startswith(PREFIX_POSITION):
            positions[key[len(PREFIX_POSITION) :]] = decode_canonical(value, Position)
        elif key.startswith(PREFIX_MARKET_STATE):
            mid = int.from_bytes(key[len(PREFIX_MARKET_STATE) :], "big")
            mstates[mid] = decode_canonical(value, MarketState)
        elif key.startswith(PREFIX_MARKET):
            params[int.from_bytes(key[len(PREFIX_MARKET) :], "big")] = decode_canonical(
                value, MarketParams
            )
        elif key.startswith(PREFIX_ORDER):
            rest = key[len(PREFIX_ORDER) :]
            mid = int.from_bytes(rest[:4], "big")
            books.setdefault(mid, {})[rest[4:]] = decode_canonical(value, RestingOrder)
        elif key.startswith(PREFIX_REPORT):
            reports[key[len(PREFIX_REPORT) :]] = decode_canonical(value, PriceReport)
        elif key == KEY_BRIDGE:
            bridge = decode_canonical(value, BridgeState)
        elif key.startswith(PREFIX_DEPOSIT):
            deposit = int.from_bytes(key[len(PREFIX_DEPOSIT) :], "big")
            tallies[deposit] = decode_canonical(value, DepositTally)
        elif key.startswith(PREFIX_L1_BALANCE):
            l1_balances[key[len(PREFIX_L1_BALANCE) :]] = int.from_bytes(value, "big")
        elif key.startswith(PREFIX_WITHDRAWAL):
            withdrawals[int.from_bytes(key[len(PREFIX_WITHDRAWAL) :], "big")] = value
    if config is None or block is None or ledger is None:
        raise ValueError("the tree at this root holds no execution state")
    return ExecutionState(
        config=config,
        block=block,
        ledger=ledger,
        nonces=nonces,
        subaccounts=subaccounts,
        positions=positions,
        market_params=params,
        market_states=mstates,
        books={mid: Book(orders) for mid, orders in books.items()},
        open_subaccounts=frozenset(sid for sid, sub in subaccounts.items() if sub.markets),
        store=store,
        state_root=root,
        reports=reports,
        order_index=order_index,
        bridge=bridge,
        deposit_tallies=tallies,
        l1_balances=l1_balances,
        withdrawals=withdrawals,
    )
