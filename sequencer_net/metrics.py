"""Prometheus metrics of one validator, served at `/metrics` on the API port.

Every metric is listed in docs/operator.md ("Metrics").
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from sequencer_net.node.gc_pauses import GC_PAUSES, GcPauseCollector
from sequencer_net.p2p.stats import DropReason, P2PStats, RefusalReason


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("seqnet_height", "Height of the last committed block", registry=r)
        self.view = Gauge("seqnet_view", "Current consensus view", registry=r)
        self.committed_blocks = Counter(
            "seqnet_committed_blocks", "Blocks committed by this node", registry=r
        )
        self.committed_txs = Counter(
            "seqnet_committed_transactions", "Transactions in committed blocks", registry=r
        )
        self.accepted_txs = Counter(
            "seqnet_accepted_transactions", "Transactions accepted by the API", registry=r
        )
        self.forwarded_txs = Counter(
            "seqnet_forwarded_transactions",
            "Acknowledged transactions handed to the set's members while this node was outside it",
            registry=r,
        )
        self.rejected_txs = Counter(
            "seqnet_rejected_transactions",
            "Transactions refused by the API",
            ["code"],
            registry=r,
        )
        self.mempool_size = Gauge("seqnet_mempool_size", "Pending transactions", registry=r)
        self.evicted_txs = Counter(
            "seqnet_evicted_transactions",
            "Pending transactions evicted by better-paying ones when the pool was full",
            registry=r,
        )
        self.peers = Gauge("seqnet_peers", "Connected validator peers", registry=r)
        self.evidence = Counter(
            "seqnet_equivocation_evidence", "Equivocations detected", registry=r
        )
        self.malformed_messages = Counter(
            "seqnet_malformed_messages", "Consensus messages refused by the decoder", registry=r
        )
        self.dropped_events = Counter(
            "seqnet_dropped_events", "Peer events dropped because the core was busy", registry=r
        )
        self.late_finalizations = Counter(
            "seqnet_late_finalizations",
            "Finalization certificates kept for blocks committed under a descendant's",
            registry=r,
        )
        self.batches_created = Counter(
            "seqnet_batches_created", "Batches this validator cut", registry=r
        )
        self.dropped_batches = Counter(
            "seqnet_dropped_batches",
            "Peer batches dropped because the verification queue was full",
            registry=r,
        )
        self.batch_acks_sent = Counter(
            "seqnet_batch_acks_sent",
            "Acknowledgements of peers' batches this validator signed and sent",
            registry=r,
        )
        self.batch_certificates_formed = Counter(
            "seqnet_batch_certificates_formed",
            "Availability certificates this validator formed for its own batches",
            registry=r,
        )
        self.batch_certificates_held = Counter(
            "seqnet_batch_certificates_held",
            "Verified availability certificates this validator started holding",
            registry=r,
        )
        self.inclusion_refusals = Counter(
            "seqnet_inclusion_refusals",
            "Proposals refused for leaving out a certificate held for the inclusion delay",
            registry=r,
        )
        self.group_commit_writes = Histogram(
            "seqnet_group_commit_writes",
            "Writes (acknowledgements, batches) covered by one fsync",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000),
            registry=r,
        )
        self.group_commit_seconds = Histogram(
            "seqnet_group_commit_seconds",
            "Time of one group's synced write",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1),
            registry=r,
        )
        self.consensus_event_delay = Histogram(
            "seqnet_consensus_event_delay_seconds",
            "From a consensus message's arrival to the core handling it",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r,
        )
        self.views_nullified = Counter(
            "seqnet_views_nullified",
            "Views that ended in a nullification (view changes by timeout)",
            registry=r,
        )
        self.state_root_mismatches = Counter(
            "seqnet_state_root_mismatches",
            "Committed blocks vouching for a state root this node's execution disagrees with",
            registry=r,
        )
        self.order_seed_skipped = Counter(
            "seqnet_order_seed_skipped",
            "Committed blocks executed without an order coin round: their order is the "
            "same for every seed (no envelope, at most one non-forced sender)",
            registry=r,
        )
        self.commit_latency = Histogram(
            "seqnet_commit_latency_seconds",
            "From a transaction's acceptance at this node to its block's commit here",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=r,
        )
        self.execute_seconds = Histogram(
            "seqnet_execute_seconds",
            "Time to execute and store one committed block",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
            registry=r,
        )
        r.register(GcPauseCollector(GC_PAUSES))

    def observe_group_commit(self, writes: int, seconds: float) -> None:
        self.group_commit_writes.observe(writes)
        self.group_commit_seconds.observe(seconds)

    def watch_p2p(self, stats: P2PStats) -> None:
        """Export the p2p layer's counters, read at scrape time."""
        self.registry.register(_P2PCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _P2PCollector(Collector):
    def __init__(self, stats: P2PStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        refused = CounterMetricFamily(
            "seqnet_p2p_connections_refused",
            "Inbound connections closed at the door (not a validator, slots full, ...)",
            labels=["reason"],
        )
        for reason in RefusalReason:
            refused.add_metric([reason.value], s.connections_refused[reason])
        yield refused
        dropped = CounterMetricFamily(
            "seqnet_p2p_frames_dropped", "Frames or streams discarded, by reason", labels=["reason"]
        )
        for drop in DropReason:
            dropped.add_metric([drop.value], s.dropped[drop])
        yield dropped
        for name, value, doc in (
            ("frames_sent", s.frames_sent, "Frames written to validator links"),
            ("writes", s.writes, "Stream writes on validator links (frames coalesce into them)"),
            ("frames_received", s.frames_received, "Frames accepted from validators"),
            ("bytes_sent", s.bytes_sent, "Payload bytes written to validator links"),
            ("bytes_received", s.bytes_received, "Payload bytes accepted from validators"),
            ("reconnects", s.reconnects, "Validator links re-established after a failure"),
            ("requests_sent", s.requests_sent, "Requests made to validators (fetches)"),
            ("requests_served", s.requests_served, "Requests from validators answered"),
            ("log_lines_suppressed", s.log_lines_suppressed, "Peer log events not written"),
            (
                "protocol_errors",
                s.protocol_errors,
                "Connections closed for breaking yamux's rules (window overrun, stalled frame)",
            ),
        ):
            yield CounterMetricFamily(f"seqnet_p2p_{name}", doc, value=value)
