"""The transport-free subscription session: URLs, retries, trust from a node."""

from __future__ import annotations

import pytest

from sequencer_net.client import BlockVerifier, RetryPolicy, SubscriptionFailed
from sequencer_net.client.subscribe import (
    Ended,
    SubscriptionSession,
    verifier_from_answers,
    websocket_base,
)
from tests.client.chain import NAMESPACE, Chain

POLICY = RetryPolicy(max_failures=3, initial_backoff_s=1.0, max_backoff_s=3.0)


def session(urls: list[str], from_height: int = 5) -> tuple[Chain, SubscriptionSession]:
    chain = Chain()
    verifier = BlockVerifier(chain.validators, chain.domain, NAMESPACE, from_height)
    return chain, SubscriptionSession(urls, verifier, POLICY)


def test_urls_become_websocket_urls_with_namespace_and_from() -> None:
    assert websocket_base("http://127.0.0.1:26700/") == "ws://127.0.0.1:26700"
    assert websocket_base("https://node.example/api") == "wss://node.example/api"
    assert websocket_base("ws://h:1") == "ws://h:1"
    with pytest.raises(ValueError, match="not an http"):
        websocket_base("ftp://h")
    _, s = session(["http://a:1", "http://b:2"])
    assert s.url() == "ws://a:1/v1/subscribe/blocks?namespace=7&from=5"


def test_failures_move_to_the_next_node_with_backoff_then_give_up() -> None:
    _, s = session(["http://a:1", "http://b:2"])
    s.url()
    assert s.on_end(Ended("unreachable")) == 1.0
    assert s.url().startswith("ws://b:2/")
    assert s.on_end(Ended("rejected", 503)) == 2.0
    assert s.url().startswith("ws://a:1/")
    with pytest.raises(SubscriptionFailed, match="3 consecutive attempts failed"):
        s.on_end(Ended("idle"))


def test_after_progress_a_drop_or_4008_resumes_at_once_on_the_same_node() -> None:
    chain, s = session(["http://a:1", "http://b:2"], from_height=1)
    import json

    s.url()
    assert s.on_text(json.dumps(chain.block([]))) is not None
    assert s.on_end(Ended("closed", 4008, "too slow; resume from height 2")) == 0.0
    assert s.url() == "ws://a:1/v1/subscribe/blocks?namespace=7&from=2"
    assert s.on_end(Ended("dropped")) == 1.0  # no progress on this connection: a failure
    assert s.url().startswith("ws://b:2/")


def test_a_node_without_the_blocks_own_certificate_sends_us_to_the_next_node() -> None:
    chain, s = session(["http://a:1", "http://b:2"], from_height=1)
    import json

    s.url()
    assert s.on_text(json.dumps(chain.block([]))) is not None
    closed = Ended("closed", 4410, "no finalization certificate of height 2 here")
    assert s.on_end(closed) > 0.0
    assert s.url() == "ws://b:2/v1/subscribe/blocks?namespace=7&from=2"


def test_a_block_resets_the_failure_count() -> None:
    chain, s = session(["http://a:1"], from_height=1)
    import json

    for _ in range(2):
        s.url()
        s.on_end(Ended("unreachable"))
    s.url()
    s.on_text(json.dumps(chain.block([])))
    s.on_end(Ended("dropped"))
    s.url()
    assert s.on_end(Ended("unreachable")) == 1.0  # counting starts over


def test_a_refused_request_is_final() -> None:
    _, s = session(["http://a:1"])
    s.url()
    with pytest.raises(SubscriptionFailed, match="refused"):
        s.on_end(Ended("closed", 4400, "namespace: not a uint32"))
    with pytest.raises(SubscriptionFailed, match="refused"):
        s.on_end(Ended("rejected", 400))


def test_pings_are_skipped_and_junk_is_refused() -> None:
    from sequencer_net.client import SubscriptionVerificationError

    _, s = session(["http://a:1"])
    assert s.on_text('{"type": "ping"}') == []
    # Deep nesting is refused before the parser sees it (a C-stack overflow would
    # crash the process: a dependency raises Python's recursion limit to 100,000).
    with pytest.raises(SubscriptionVerificationError, match="nested 100000 deep"):
        s.on_text("[" * 100_000)
    with pytest.raises(SubscriptionVerificationError, match="not JSON"):
        s.on_text("{")
    with pytest.raises(SubscriptionVerificationError, match="not 'block'"):
        s.on_text('{"type": "gossip"}')


def test_trusting_a_node_reads_its_status_and_validator_set() -> None:
    chain = Chain()
    status = {
        "chain_id": chain.domain.chain_id,
        "verifying_contract": "0x" + chain.domain.verifying_contract.hex(),
        "genesis_hash": "0x" + chain.domain.genesis_hash.hex(),
    }
    answer = {"validators": [{"address": "0x" + k.address.hex(), "weight": 1} for k in chain.keys]}
    verifier = verifier_from_answers(status, answer, NAMESPACE, 1)
    assert verifier.verify(chain.block([chain.tx()])).height == 1
    with pytest.raises(SubscriptionFailed, match="no usable validator set"):
        verifier_from_answers(status, {"validators": []}, NAMESPACE, 1)
    with pytest.raises(SubscriptionFailed, match="no usable validator set"):
        verifier_from_answers({}, answer, NAMESPACE, 1)
