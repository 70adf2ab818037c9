"""Every fixed bound of the HTTP API, in one place, with its reason.

The tunable ones (connection cap, timeouts, the body buffer budget) are `[api]`
keys of config.toml (sequencer_net/home/config.py); their defaults live there.
"""

from __future__ import annotations

from typing import Final

from consensus.limits import U64_MAX
from sequencer_net.mempool.limits import MAX_TX_BYTES

KiB: Final = 1024
MiB: Final = 1024 * KiB

# --- Request bodies, per endpoint ------------------------------------------------------

MAX_TX_BODY_BYTES: Final = MAX_TX_BYTES
"""POST /v1/transactions: the body is one encoded transaction, so the
transaction cap is the body cap; a larger body is refused before it is read."""

MAX_BATCH_BODY_BYTES: Final = 8 * MiB
"""POST /v1/transactions/batch: a JSON list of 0x-hex transactions. 10,000
transactions of ~400 encoded bytes are ~8 MB of hex; a client with more, or
larger, transactions sends several requests."""

MAX_BATCH_SUBMISSION: Final = 10_000
"""Transactions in one /v1/transactions/batch request."""

MAX_SMALL_BODY_BYTES: Final = 1 * KiB
"""Every other request (the admin endpoint's `{"connected": false}`, and GETs,
which carry no body): anything larger is not a request this API understands."""

UNBUDGETED_BODY_BYTES: Final = MAX_TX_BODY_BYTES
"""A request whose body may be at most this large (every endpoint but the batch
one) counts only against the in-flight cap, not against the large-body budget
([api] max_body_buffer_bytes): uploads that fill the budget cannot starve
status queries or single transactions, and these bodies together stay under
max_connections * 32 KiB (8 MiB at the default 256)."""

MAX_HEADER_BYTES: Final = 16 * KiB
"""Request line plus headers (hypercorn's h11_max_incomplete_size): enough for
any client; a larger head is answered 431 and the connection closed."""

# --- Connections ----------------------------------------------------------------------

LISTEN_BACKLOG: Final = 128
"""Connections the kernel queues while the API is at its connection cap (the
accept loop waits for a free slot); beyond it new connections are refused."""

H2_MAX_STREAMS: Final = 16
"""Concurrent requests on one HTTP/2 connection (h2c). Every request also counts
against the API-wide in-flight cap ([api] max_connections), so one connection
cannot take every request slot."""

SEND_TIMEOUT_S: Final = 30.0
"""A response write (hypercorn hands each response body to the socket in one
write) that has not completed after this long closes the connection: a client
that stops reading its answer does not pin the answer in memory. 30 s leaves a
slow client time to fetch a large block."""

# --- Inputs ---------------------------------------------------------------------------

MAX_HEIGHT: Final = U64_MAX
"""Heights are stored as 8-byte keys and travel as int64 on the wire."""

TX_HASH_BYTES: Final = 32
"""A transaction hash (keccak-256 of the encoded transaction)."""

ADDRESS_BYTES: Final = 20
"""An account address (GET /v1/accounts/{address})."""

MAX_PROOF_KEY_BYTES: Final = 128
"""A state key in GET /v1/proofs/{key}: the longest key the engine writes is
73 bytes (a trigger-index entry); 128 leaves room and keeps the path short."""

# --- Answers --------------------------------------------------------------------------

MAX_ACCOUNT_ORDERS_ANSWER: Final = 1_000
"""Open orders one /v1/accounts answer lists (oldest first; each subaccount says
`orders_truncated` and keeps its exact `open_orders` count). The engine allows
256 per subaccount and 256 subaccounts per address, 65,536 orders: more than
one answer should carry or build on the event loop."""

# --- Admin authentication -------------------------------------------------------------

ADMIN_TOKEN_MIN_CHARS: Final = 32
"""A shorter token is refused at startup: 32 characters of hex are 128 bits."""

ADMIN_TOKEN_MAX_CHARS: Final = 512
"""The token travels in a header, which is capped at MAX_HEADER_BYTES."""
