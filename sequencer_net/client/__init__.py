"""Python client SDK for a seqnet validator's HTTP API.

Example:

    from sequencer_net.client import SeqnetClient
    with SeqnetClient("http://127.0.0.1:26700") as node:
        tx_hash = node.submit(encoded_tx)
        print(node.transaction(tx_hash)["status"])

`AsyncSeqnetClient` has the same methods as coroutines (trio or asyncio).
Every failure, an unreachable node included, raises `SeqnetApiError`.
`dex_transaction` and `signed_transaction` build what `submit` sends: one
signature per transaction, the required fee offered (`FeeSchedule`).
"""

from sequencer_net.client.errors import SeqnetApiError
from sequencer_net.client.http import AsyncSeqnetClient, SeqnetClient, SubmitResult
from sequencer_net.client.transactions import (
    DEFAULT_FEES,
    FeeSchedule,
    dex_transaction,
    signed_transaction,
)

__all__ = [
    "DEFAULT_FEES",
    "AsyncSeqnetClient",
    "FeeSchedule",
    "SeqnetApiError",
    "SeqnetClient",
    "SubmitResult",
    "dex_transaction",
    "signed_transaction",
]
