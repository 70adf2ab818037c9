"""The collector timing behind `seqnet_gc_pause_seconds`."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from sequencer_net.node.gc_pauses import PAUSE_BUCKETS_S, GcPauseCollector, GcPauses
from sequencer_net.testnet.bench.drive import gc_pause_delta, parse_gc_pauses


@pytest.fixture
def pauses() -> Iterator[GcPauses]:
    recorder = GcPauses()
    recorder.install()
    recorder.install()  # idempotent: one hook
    try:
        yield recorder
    finally:
        recorder.uninstall()


def test_a_full_collection_is_counted_and_timed(pauses: GcPauses) -> None:
    assert pauses.collections(2) == 0
    gc.collect()
    assert pauses.collections(2) == 1
    assert pauses.seconds[2] > 0 and pauses.cpu_seconds[2] > 0
    gc.collect(0)
    assert pauses.collections(0) >= 1


def test_uninstall_stops_the_counting(pauses: GcPauses) -> None:
    pauses.uninstall()
    gc.collect()
    assert pauses.collections(2) == 0


def test_the_histogram_is_exported_cumulatively_and_read_back(pauses: GcPauses) -> None:
    registry = CollectorRegistry()
    registry.register(GcPauseCollector(pauses))
    before = parse_gc_pauses(generate_latest(registry).decode())
    gc.collect()
    gc.collect()
    after = parse_gc_pauses(generate_latest(registry).decode())
    assert before is not None and after is not None
    buckets, seconds, cpu = after["2"]
    assert sorted(buckets) == [*PAUSE_BUCKETS_S, float("inf")]
    counts = [buckets[b] for b in sorted(buckets)]
    assert counts == sorted(counts) and counts[-1] == 2
    assert seconds == pytest.approx(pauses.seconds[2])
    assert cpu == pytest.approx(pauses.cpu_seconds[2]) and cpu > 0
    delta = gc_pause_delta([before, before], [after, before])
    assert delta is not None
    assert delta["gen2"]["count"] == [2, 0]
    assert delta["gen2"]["total_ms"][0] > 0 and delta["gen2"]["total_ms"][1] == 0
    assert delta["gen2"]["cpu_ms"][0] > 0 and delta["gen2"]["cpu_ms"][1] == 0
    # A node that does not export the histogram: no numbers rather than partial ones.
    assert gc_pause_delta([before, None], [after, before]) is None
    assert parse_gc_pauses("seqnet_height 3\n") is None
