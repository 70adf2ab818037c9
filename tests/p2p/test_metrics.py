"""The p2p layer's counters reach /metrics, read live at scrape time."""

from __future__ import annotations

from sequencer_net.metrics import Metrics
from sequencer_net.p2p.stats import DropReason, P2PStats, RefusalReason


def _samples(metrics: Metrics) -> dict[str, float]:
    out = {}
    for line in metrics.render().decode().splitlines():
        if line.startswith("seqnet_p2p_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_refusals_and_drops_are_exported_by_reason_and_follow_the_stats() -> None:
    stats = P2PStats()
    metrics = Metrics()
    metrics.watch_p2p(stats)
    stats.connections_refused[RefusalReason.NOT_A_VALIDATOR] += 310
    stats.dropped[DropReason.RATE_LIMITED] += 2
    stats.frames_sent = 7
    first = _samples(metrics)
    assert first['seqnet_p2p_connections_refused_total{reason="not_a_validator"}'] == 310
    assert first['seqnet_p2p_connections_refused_total{reason="self"}'] == 0
    assert first['seqnet_p2p_frames_dropped_total{reason="rate_limited"}'] == 2
    assert first["seqnet_p2p_frames_sent_total"] == 7
    stats.connections_refused[RefusalReason.NOT_A_VALIDATOR] += 1
    refused = _samples(metrics)['seqnet_p2p_connections_refused_total{reason="not_a_validator"}']
    assert refused == 311


def test_yamux_protocol_errors_are_exported() -> None:
    stats = P2PStats()
    metrics = Metrics()
    metrics.watch_p2p(stats)
    assert _samples(metrics)["seqnet_p2p_protocol_errors_total"] == 0
    stats.protocol_errors += 2
    assert _samples(metrics)["seqnet_p2p_protocol_errors_total"] == 2
