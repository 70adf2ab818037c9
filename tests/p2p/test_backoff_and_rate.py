"""Pure pieces: reconnect backoff schedule and the inbound token bucket."""

from __future__ import annotations

import pytest

from sequencer_net.p2p.backoff import ReconnectBackoff, link_seed
from sequencer_net.p2p.limits import P2PLimits
from sequencer_net.p2p.token_bucket import TokenBucket


def test_backoff_grows_exponentially_within_jitter_and_caps() -> None:
    backoff = ReconnectBackoff(min_s=0.2, max_s=5.0, seed=1)
    delays = [backoff.next_delay() for _ in range(10)]
    for k, delay in enumerate(delays):
        base = min(5.0, 0.2 * 2**k)
        assert base <= delay <= min(5.0, base * 1.5)
    assert delays[-1] == pytest.approx(5.0)
    backoff.reset()
    assert 0.2 <= backoff.next_delay() <= 0.3


def test_backoff_is_deterministic_per_seed() -> None:
    def schedule(seed: int) -> list[float]:
        backoff = ReconnectBackoff(min_s=0.2, max_s=5.0, seed=seed)
        return [backoff.next_delay() for _ in range(6)]

    assert schedule(7) == schedule(7)
    assert schedule(link_seed(0, 1)) != schedule(link_seed(1, 0))


def test_token_bucket_allows_burst_then_rate() -> None:
    bucket = TokenBucket(rate=10, burst=10, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(15)) == 10
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert sum(bucket.take(100.0) for _ in range(15)) == 10  # refill caps at burst


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        P2PLimits(send_queue_frames=0)
    with pytest.raises(ValueError):
        P2PLimits(reconnect_min_s=2.0, reconnect_max_s=1.0)
    with pytest.raises(ValueError):
        P2PLimits(max_frame_bytes=2**32)
