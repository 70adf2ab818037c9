"""Every bound the execution engine enforces, in one place, with its reason.

A bound protects the engine's cost per block: each one caps the work a single
signed transaction (or a block of them) can make every validator do.
"""

from __future__ import annotations

from typing import Final

MAX_TRANSACTIONS_PER_BLOCK: Final = 100_000
"""A block is executed in one pass on every validator; this keeps one block
(about 3-4 s of signature recovery at ~27k/s) inside the consensus timeout."""

MAX_ENCODED_TRANSACTION_BYTES: Final = 4096
"""The largest transaction (an oracle update with MAX_ORACLE_PRICES prices, or a
market listing) is well under 4 KiB; anything longer is spam."""

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

MAX_AMOUNT: Final = 10**40
"""Largest collateral amount, price or quantity accepted in a transaction (wad,
so 10**22 whole units): keeps every product of two values far below the sizes
where integer arithmetic slows down, and rules out overflow games."""

MAX_FUNDING_INTERVAL_SECONDS: Final = 7 * 24 * 3600
"""A week; longer intervals make the premium average meaningless."""

MAX_REASON_LENGTH: Final = 200
"""Failure reasons in receipts are short human-readable strings."""
