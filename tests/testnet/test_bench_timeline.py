"""The idle timeline: each own batch followed through the node logs."""

from __future__ import annotations

from sequencer_net.testnet.bench.timeline import (
    HELD_STEP,
    batch_timelines,
    held_cuts,
    step_medians,
    step_summary,
)

T = "2026-12-03 18:00:00,"
NODE0 = [
    T + "100 INFO v0 seqnet.batches event=batch_cut digest=aaaa sequence=0 txs=1 waited_ms=40",
    T + "130 INFO v0 seqnet.certify event=batch_certified digest=aaaa round=0 certify_ms=30",
    T + "200 INFO v0 seqnet.consensus event=decided height=7",
    T + "230 INFO v0 seqnet.commit event=executed height=7 apply_ms=20 since_commit_ms=30",
    T + "231 INFO v0 seqnet.api something else",
]
NODE1 = [
    T + "140 INFO v1 seqnet.payload event=payload_built height=7 batches=bbbb,aaaa wait=3",
    T + "150 INFO v1 seqnet.payload event=payload_built height=8 batches=- candidate_wait_ms=500",
    T + "300 INFO v1 seqnet.consensus event=decided height=7",
]


def test_a_batch_is_followed_from_arrival_to_execution_at_node_0() -> None:
    batches = batch_timelines({0: NODE0, 1: NODE1})
    a = batches["aaaa"]
    assert a.cut is not None and a.arrival == a.cut - 40
    assert a.height == 7
    assert a.decided is not None and a.executed is not None
    steps = {name: (count, p50) for name, count, p50, _ in step_summary(batches)}
    assert steps["mempool wait before the cut"] == (1, 40)
    assert steps["cut to certified"] == (1, 30)
    assert steps["certified to proposed"] == (1, 10)
    assert steps["proposed to decided (node 0)"] == (2, 60)  # bbbb has no cut seen
    assert steps["decided to executed (node 0)"] == (2, 30)
    assert steps["arrival to executed (node 0)"] == (1, 170)


def test_the_hold_and_the_step_medians_are_read_from_the_cut() -> None:
    node0 = [
        NODE0[0].replace("waited_ms=40", "waited_ms=40 held_ms=25"),
        *NODE0[1:],
        T + "300 INFO v0 seqnet.batches event=batch_cut digest=cccc sequence=1 txs=2 "
        "waited_ms=10 held_ms=0",
    ]
    batches = batch_timelines({0: node0, 1: NODE1})
    assert batches["aaaa"].held_ms == 25 and batches["cccc"].held_ms == 0
    assert held_cuts(batches) == (1, 2)
    medians = step_medians({0: node0, 1: NODE1})
    assert medians["held_ms"] == 0  # nearest-rank p50 of (0, 25)
    assert medians["cut_to_certified_ms"] == 30
    assert medians["held_cuts"] == 1 and medians["batches"] == 3


def test_logs_without_the_hold_field_give_no_hold_row() -> None:
    rows = step_summary(batch_timelines({0: NODE0, 1: NODE1}))
    assert HELD_STEP not in [name for name, *_ in rows]
