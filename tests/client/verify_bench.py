"""Time the subscription verifier per block (prints figures; asserts nothing).

PYTHONPATH=. python tests/client/verify_bench.py
"""

from __future__ import annotations

import json
import time

from sequencer_net.client.subscribe import SubscriptionSession
from sequencer_net.client.verify import BlockVerifier
from tests.client.chain import NAMESPACE, Chain

BLOCKS = 50


def bench(validators: int, mine: int, others: int) -> None:
    chain = Chain(n=validators)
    quorum = (2 * validators) // 3 + 1
    texts = []
    for _ in range(BLOCKS):
        txs = [chain.tx() for _ in range(mine)] + [chain.tx(10 + i % 20) for i in range(others)]
        message = chain.block(txs)
        digest = bytes.fromhex(message["block"]["hash"][2:])
        view, height = message["block"]["view"], message["height"]
        message["certificate"] = chain.certificate(digest, view, height, list(range(quorum)))
        texts.append(json.dumps(message))
    session = SubscriptionSession(
        ["http://unused"], BlockVerifier(chain.validators, chain.domain, NAMESPACE)
    )
    start = time.perf_counter()
    for text in texts:
        session.on_text(text)
    per_block_ms = (time.perf_counter() - start) / BLOCKS * 1000
    print(
        f"validators {validators} (quorum {quorum}), {mine} txs of the namespace, "
        f"{others} of others: {per_block_ms:.2f} ms/block (JSON parse included), "
        f"message {len(texts[0]) / 1024:.0f} KiB"
    )


if __name__ == "__main__":
    bench(4, 0, 0)
    bench(4, 100, 100)
    bench(16, 100, 1000)
    bench(64, 1000, 0)
