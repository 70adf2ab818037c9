"""Python client SDK for a seqnet validator's HTTP API and block subscriptions.

Example:

    from sequencer_net.client import SeqnetClient
    with SeqnetClient("http://127.0.0.1:26700") as node:
        tx_hash = node.submit(encoded_tx)
        print(node.wait_committed(tx_hash)["receipt"])  # polls until committed

`AsyncSeqnetClient` has the same methods as coroutines (trio or asyncio).
Every failure, an unreachable node included, raises `SeqnetApiError`.
`dex_transaction` and `signed_transaction` build what `submit` sends: one
signature per transaction, the required fee offered (`FeeSchedule`).

`RedundantSubmitter(urls, genesis=...)` hands each transaction to validators
holding more than a third of the power, so an honest one holds it
(sequencer_net.client.redundant).

`subscribe(urls, namespace=N, from_height=H, genesis=path)` yields a rollup's
verified blocks (sequencer_net.client.subscribe; docs/rollups.md).
"""

from sequencer_net.client.errors import SeqnetApiError
from sequencer_net.client.http import (
    AsyncSeqnetClient,
    SeqnetClient,
    SubmitResult,
    TransactionTimeout,
)
from sequencer_net.client.proofs import StateProof, WithdrawalProof
from sequencer_net.client.redundant import (
    NotEnoughValidators,
    RedundantResult,
    RedundantSubmitter,
)
from sequencer_net.client.subscribe import (
    RetryPolicy,
    SubscriptionFailed,
    subscribe,
    subscribe_asyncio,
    subscribe_trio,
)
from sequencer_net.client.transactions import (
    DEFAULT_FEES,
    FeeSchedule,
    deposit_report_transaction,
    dex_transaction,
    signed_transaction,
    withdraw_transaction,
)
from sequencer_net.client.verify import (
    BlockVerifier,
    SubscriptionVerificationError,
    VerifiedBlock,
)

__all__ = [
    "DEFAULT_FEES",
    "AsyncSeqnetClient",
    "BlockVerifier",
    "FeeSchedule",
    "NotEnoughValidators",
    "RedundantResult",
    "RedundantSubmitter",
    "RetryPolicy",
    "SeqnetApiError",
    "SeqnetClient",
    "StateProof",
    "SubmitResult",
    "SubscriptionFailed",
    "SubscriptionVerificationError",
    "TransactionTimeout",
    "VerifiedBlock",
    "WithdrawalProof",
    "deposit_report_transaction",
    "dex_transaction",
    "signed_transaction",
    "subscribe",
    "subscribe_asyncio",
    "subscribe_trio",
    "withdraw_transaction",
]
