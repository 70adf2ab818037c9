"""Python client SDK for a seqnet validator's HTTP API.

Example:

    from sequencer_net.client import SeqnetClient
    with SeqnetClient("http://127.0.0.1:26700") as node:
        tx_hash = node.submit(encoded_tx)
        print(node.transaction(tx_hash)["status"])

`AsyncSeqnetClient` has the same methods as coroutines (trio or asyncio).
Every failure, an unreachable node included, raises `SeqnetApiError`.
"""

from sequencer_net.client.errors import SeqnetApiError
from sequencer_net.client.http import AsyncSeqnetClient, SeqnetClient, SubmitResult

__all__ = ["AsyncSeqnetClient", "SeqnetApiError", "SeqnetClient", "SubmitResult"]
