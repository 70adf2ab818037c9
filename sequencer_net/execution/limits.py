"""Every bound the execution engine enforces, in one place, with its reason.

A bound protects the engine's cost per block: each one caps the work a single
signed transaction (or a block of them) can make every validator do.
"""

from __future__ import annotations

from typing import Final

MAX_TRANSACTIONS_PER_BLOCK: Final = 100_000
"""Transactions a block executes (all namespaces): one pass on every validator
must stay inside the consensus timeout. The engine never refuses a longer block
(it is total): the transactions past this many, in block order, get a
`BlockFull` receipt and change nothing (docs/execution.md, "Totality")."""

MAX_DEX_PAYLOAD_BYTES: Final = 4096
"""The largest DEX payload (an oracle update with MAX_ORACLE_PRICES prices, or a
market listing) is well under 4 KiB; a longer one is refused before decoding."""

MAX_ORACLE_PRICES: Final = 64
"""Prices in one oracle update: one update can refresh a full options chain."""

MAX_SUBACCOUNT_NUMBER: Final = 255
"""Subaccount numbers are one byte, so a subaccount id is 21 bytes."""

MAX_OPEN_ORDERS_PER_SUBACCOUNT: Final = 256
"""Resting plus pending orders per subaccount: bounds the worst-case margin
check (it walks the subaccount's markets) and the book a spammer can grow."""

MAX_MARKETS_PER_SUBACCOUNT: Final = 32
"""Markets a subaccount may hold positions or orders in: every margin check and
liquidation check walks them all."""

MAX_MARKET_ID: Final = 2**32 - 1
"""Market ids are 4 bytes big-endian in state keys."""

MAX_NONCE: Final = 2**64 - 1
"""Nonces are uint64, as in the sequencer's transaction format."""

MAX_NAMESPACE: Final = 2**32 - 1
"""Namespaces are uint32, as in the sequencer's transaction format."""

MAX_FEE: Final = 2**64 - 1
"""Offered fees are uint64 wad (up to 18.4 units of quote), as in the
sequencer's transaction format."""

MAX_PAYLOAD_BYTES: Final = 32 * 1024
"""A sequencer transaction carries at most 32 KiB of payload (the mempool's
MAX_TX_PAYLOAD_BYTES); the engine refuses a longer one as malformed."""

NONCE_WINDOW: Final = 64
"""A sender may use any unused nonce in (highest used - 64, highest used + 64]:
enough for a client that spreads its transactions over several validators to
see them included out of order, small enough to keep in one 64-bit bitmap."""

MAX_WIRE_INT_BYTES: Final = 32
"""Every integer of a DEX payload decodes only if it fits int256: MessagePack's
own integers stop at 64 bits, and `decode_canonical(bounded_ints=True)` refuses
a big-integer extension longer than 32 bytes. The handler then applies the
field's own rule (MAX_AMOUNT, positivity...). This keeps a 4 KiB integer from
ever reaching arithmetic."""

ORDER_ID_BYTES: Final = 32
"""An order id is the 32-byte hash of the transaction that placed it."""

MAX_OPTION_TENOR_SECONDS: Final = 10 * 365 * 86_400
"""An option may expire at most ten 365-day years after it is listed. With
|r| <= 1 this keeps |r T| <= 10, far inside the pricing domain (exp(-r T) is
defined up to |r T| = 1000); marks clamp the time to this too, so a longer
tenor in state could never make pricing raise."""

MAX_SETTLEMENT_WINDOW_SECONDS: Final = 86_400
"""An option's settlement average covers at most the last day before expiry."""

MAX_LIQUIDATION_MISSES: Final = 100
"""A market lets a below-maintenance account's liquidation orders miss at most
100 auctions in a row before the insurance fund takes over: an account
cannot be left to sit below maintenance indefinitely."""

MAX_VOLATILITY: Final = 100 * 10**18
"""Largest implied volatility an oracle may post (10,000% per sqrt year)."""

MAX_AMOUNT: Final = 10**40
"""Largest collateral amount, price or quantity accepted in a transaction (wad,
so 10**22 whole units): keeps every product of two values far below the sizes
where integer arithmetic slows down, and rules out overflow games."""

MAX_FUNDING_INTERVAL_SECONDS: Final = 7 * 24 * 3600
"""A week; longer intervals make the premium average meaningless."""

MAX_REASON_LENGTH: Final = 200
"""Failure reasons in receipts are short human-readable strings."""

MAX_PHASE_FAILURES: Final = 8
"""Times one block is re-executed with a failing block-level unit skipped
(engine.execute_block) before every block-level phase is skipped."""

MAX_CLIENT_ID: Final = 2**64 - 1
"""Client order ids are uint64; 0 means "none"."""

MAX_GOOD_TIL_SECONDS: Final = 90 * 86_400
"""A good-til order expires at most 90 days after the block that places it:
every live expiry is in the state's expiry index, so the horizon bounds how
long an entry can sit there."""

MAX_CONDITIONAL_ORDERS_PER_SUBACCOUNT: Final = 32
"""Stop and take-profit orders waiting per subaccount (each also counts against
MAX_OPEN_ORDERS_PER_SUBACCOUNT): every block checks every waiting trigger
against its market's mark, so this caps the work one subaccount adds."""

MAX_OPEN_DEPOSITS: Final = 1024
"""L1 deposit nonces the engine tallies at once: a report is accepted only for
a nonce in [resolved_below, resolved_below + 1024) (l1_bridge.py). This bounds
the open tallies (and the markers of nonces resolved out of order) whatever a
reporter sends; the L1 assigns nonces in order and reporters report them in
order, so honest reports never wait long for the window to move."""

MAX_L1_AMOUNT: Final = 2**256 - 1
"""An L1 amount is a uint256: the largest L1 asset balance or withdrawal record."""

BLACK_SCHOLES_MEMO_ENTRIES: Final = 8_192
"""Black-Scholes prices remembered across blocks (options.black_scholes_price):
a block values each option market at about 50 argument sets (the mark and the
initial grid's 45 scenarios), so this keeps every value of 16 option markets
for 10 distinct oracle inputs or seconds, at a few hundred bytes an entry."""
