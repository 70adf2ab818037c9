"""`seqnet bench subscribers`' arithmetic: the delivery check, the commit log
reader and the cost estimates (the run itself is a manual benchmark)."""

from __future__ import annotations

from pathlib import Path

from sequencer_net.cli.bench_subscribers import (
    _DECIDED,
    carries_order,
    client_address,
    commit_times,
    compare,
    delivery_check,
    latency_ms,
    live_heights,
)


def test_every_height_once_in_order_apart_from_the_4410_ones() -> None:
    ok = [(h, 0.0) for h in (3, 4, 6)]
    repeated = [(h, 0.0) for h in (3, 4, 4, 6)]
    gap = [(h, 0.0) for h in (3, 6)]
    swapped = [(h, 0.0) for h in (4, 3, 6)]
    assert delivery_check([ok], [[5]], 3, 6) == 0
    assert delivery_check([ok, repeated, gap, swapped], [[5]] * 4, 3, 6) == 3
    assert delivery_check([ok], [[]], 3, 6) == 1  # 5 missing without a 4410


def test_commit_times_read_text_and_json_log_lines(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_bytes(
        b"2026-12-02 15:14:56,123 INFO event=committed height=7 txs=3\n"
        b'{"ts": 1796195700.5, "msg": "event=committed height=8 txs=0"}\n'
        b"2026-12-02 15:14:57,000 INFO event=committed height=7 txs=3\n"  # first one counts
    )
    times = commit_times(log)
    assert set(times) == {7, 8} and times[8] == 1796195700.5
    assert abs(times[7] % 1 - 0.123) < 1e-6


def test_latencies_from_the_consensus_commit_and_from_execution(tmp_path: Path) -> None:
    log = tmp_path / "node.log"
    log.write_bytes(
        b"2026-12-02 15:14:56,100 INFO node0 seqnet.consensus event=decided height=7\n"
        b"2026-12-02 15:14:56,250 INFO node0 seqnet.commit event=committed height=7 txs=3\n"
        b"2026-12-02 15:14:56,300 INFO node0 seqnet.consensus event=decided height=70\n"
    )
    decided, executed = commit_times(log, _DECIDED), commit_times(log)
    assert set(decided) == {7, 70} and set(executed) == {7}
    at = decided[7] + 0.04  # the block arrived 40 ms after its commit, before its execution
    to_block = latency_ms([[(7, at)], [(7, at + 0.02)]], decided)
    assert to_block["messages"] == 2 and to_block["p50"] == 60.0 and to_block["max"] == 60.0
    assert latency_ms([[(7, at)]], executed)["p50"] == -110.0
    assert latency_ms([[(8, at)]], decided)["messages"] == 0


def test_heights_decided_before_the_subscribers_connected_are_not_timed() -> None:
    # Heights 5 and 6 were decided while the client process started; they
    # reach the subscribers as history on connect, seconds after decision.
    decided = {5: 100.0, 6: 100.5, 7: 102.0, 8: 102.4}
    live = live_heights(decided, connected_at=101.0)
    assert live == {7: 102.0, 8: 102.4}
    received = [[(5, 101.2), (6, 101.2), (7, 102.03), (8, 102.45)]]
    timed = latency_ms(received, live)
    assert timed["messages"] == 2 and timed["max"] == 50.0
    assert latency_ms(received, decided)["max"] == 1200.0  # what counting them would give


def test_a_block_that_draws_no_seed_carries_its_order_as_null() -> None:
    # No order message follows a block sent with `"order": null`.
    assert carries_order({"type": "block", "height": 3, "order": None})
    assert carries_order({"type": "block", "height": 3, "order": {"seed": "0x00", "shares": []}})
    assert not carries_order({"type": "block", "height": 3})  # its order message follows


def test_cost_per_message_against_the_other_validators() -> None:
    without = {
        "committed_tx_per_s": 500.0,
        "committed_tx": 1000,
        "node0_cpu_ms_per_committed_tx": 1.0,
        "validator_cpu_s": [1.0, 1.0, 1.0, 1.0],
    }
    with_subs = {
        "committed_tx_per_s": 450.0,
        "committed_tx": 1000,
        "messages_sent": 2000,
        "node0_cpu_ms_per_committed_tx": 1.5,
        "validator_cpu_s": [1.5, 1.0, 1.0, 1.0],
    }
    cost = compare(without, with_subs)
    assert cost["committed_tx_per_s_change_pct"] == -10.0
    assert cost["node0_cpu_ms_per_committed_tx_change_pct"] == 50.0
    assert cost["node0_extra_cpu_ms_per_message"] == 0.25  # 0.5 s over 2,000 messages
    assert cost["node0_cpu_ms_per_message_vs_other_validators"] == 0.25
    assert cost["node0_cpu_s_above_other_validators"] == [0.0, 0.5]


def test_subscribers_come_from_addresses_under_the_per_client_cap() -> None:
    addresses = [client_address(i) for i in range(100)]
    assert len(set(addresses)) == 4
    assert max(addresses.count(a) for a in set(addresses)) == 25


def test_rounds_report_each_figures_median() -> None:
    from sequencer_net.cli.bench_subscribers import median_cost

    costs = [
        {"committed_tx_per_s_change_pct": -20.0, "pair": [1.0, None], "per_message": None},
        {"committed_tx_per_s_change_pct": 2.0, "pair": [3.0, 4.0], "per_message": None},
        {"committed_tx_per_s_change_pct": -4.0, "pair": [2.0, 6.0], "per_message": 0.5},
    ]
    assert median_cost(costs) == {
        "committed_tx_per_s_change_pct": -4.0,  # one bad round does not set the figure
        "pair": [2.0, 5.0],
        "per_message": 0.5,
    }
    assert median_cost(costs[:2])["committed_tx_per_s_change_pct"] == -9.0
