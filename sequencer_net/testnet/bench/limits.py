"""Every bound and default of the network benchmark, with its reason."""

from __future__ import annotations

from typing import Final

# --- what "sustained" means ---------------------------------------------------------

DEFAULT_LATENCY_BOUND_MS: Final = 1_000.0
"""p99 submit-to-commit a sustained rate must stay under (`--latency-bound-ms`)."""

SUSTAIN_TOLERANCE: Final = 0.05
"""Committed tx/s within 5% of offered, at most 5% of the offered transactions
refused, and a backlog that grows by less than 5% of the offered rate: a few
percent absorbs block boundaries at the window's edges, not a real shortfall."""

WARMUP_FRACTION: Final = 0.25
"""The first quarter of each step is warm-up, outside the measurement window
(the first blocks of a step carry the transactions of a partial view)."""

MIN_WARMUP_S: Final = 1.0
MIN_STEP_S: Final = 2.0
"""Shorter steps measure block boundaries, not a rate."""

# --- the rate search ---------------------------------------------------------------

DEFAULT_MAX_STEPS: Final = 8
"""Ramp plus bisection steps per network; 8 steps of 10 s keep a search of one
network under about three minutes with signing and draining."""

RAMP_FACTOR: Final = 2.0
RAMP_START_FRACTION: Final = 8
"""The ramp starts at 1/8 of the verify limit: three doublings reach the limit."""

MIN_RATE: Final = 25.0
"""Below this a step of a few seconds holds too few transactions to judge."""

MAX_RATE: Final = 50_000.0
"""Pre-signed transactions live in memory (about 1 KB each with their request
bodies and hashes): 50,000 tx/s for 10 s is about 0.5 GB."""

BISECT_PRECISION: Final = 0.10
"""Bisection stops when the failing rate is within 10% of the sustained one."""

# --- load ---------------------------------------------------------------------------

TICK_S: Final = 0.05
"""The sender submits the transactions due every 50 ms, one request per node."""

MAX_IN_FLIGHT_PER_NODE: Final = 4
"""Concurrent submissions to one node: hides the round trip and the node's
fsync without queueing unboundedly at a saturated node."""

STREAMS_PER_NODE: Final = 1
"""Submission streams (WebSocket connections) the client keeps open to each
node; a node handles one connection's messages one after another."""

MAX_TXS_PER_REQUEST: Final = 2_000
"""Below the API's 10,000 transactions and 8 MiB per batch request."""

ACCOUNT_TX_PER_S: Final = 16.0
"""Each sending account sends at most 16 tx/s: with commit latency up to 2 s an
account has about 32 transactions pending, inside the engine's nonce window
(64) and the mempool's per-sender cap (128)."""

MIN_ACCOUNTS_PER_STEP: Final = 32
ACCOUNT_POOL: Final = 4_096
"""Funded in genesis. Accounts whose transactions all committed are reused in
the next step; the others (a refused or stuck nonce) are retired."""

PAYLOAD_BYTES: Final = (100, 300)
"""Rollup payloads: a realistic size for a compressed L2 transaction."""

ROLLUP_NAMESPACES: Final = 4
"""Rollup traffic is spread over namespaces 1..4."""

PARALLEL_SIGN_MIN_TXS: Final = 20_000
"""Below this, signing in this process is faster than starting workers."""

# --- observation ----------------------------------------------------------------------

OBSERVE_POLL_S: Final = 0.02
"""How often a step samples its backlog and checks whether it has drained, and
how long the observer waits before reconnecting to node 0 (it learns commits
by push, not at this period)."""

EXECUTED_SILENCE_S: Final = 25.0
"""A subscription to node 0's executed height that brings nothing, not even
its ping (every 15 s), for this long is taken as dropped and reopened."""

EXECUTED_QUIET_S: Final = 2.0
"""A subscription to node 0's executed height quiet this long (a healthy
network executes a block, empty or not, at least every empty-block interval,
500 ms by default) has the observer ask node 0's `/v1/status`: an answer says
node 0 is alive (a view change, say, holds the chain), and one ahead of the
subscription that the subscription is stale (it is reopened)."""

STATUS_PROBE_TIMEOUT_S: Final = 2.0
"""How long one of those status requests may take."""

NODE0_STALE_S: Final = 6.0
"""Node 0 neither pushing an executed height nor answering its status for this
long is stuck (paused, hung, gone): the observer gives up (ObserverError)."""

REQUEST_TIMEOUT_S: Final = 10.0
DRAIN_MAX_S: Final = 10.0
"""After a step's load, how long to wait for its accepted transactions to commit."""

DRAIN_IDLE_S: Final = 3.0
"""A drain also ends when nothing of ours committed for this long."""

BACKLOG_SAMPLE_S: Final = 0.5

# --- the verify limit ------------------------------------------------------------------

VERIFY_SECONDS: Final = 2.0
VERIFY_SAMPLE_TXS: Final = 512

# --- the network ------------------------------------------------------------------------

PORT_RANGE: Final = (21_000, 32_000)
"""Below Linux's ephemeral range (32768+): no outgoing connection can take one
of the nodes' ports between the check and the bind."""

READY_TIMEOUT_S: Final = 90.0
STOP_GRACE_S: Final = 10.0

# --- the recovery benchmark (recovery.py) -------------------------------------------------

RECOVERY_VALIDATORS: Final = 4
"""n = 4 tolerates one faulty validator: with one faulted the other three are
exactly a quorum, the tightest case for the recovery targets."""

RECOVERY_VIEW_TIMEOUT_MS: Final = 1_000
RECOVERY_REFERENCE_NODE: Final = 0
"""Never faulted: its height counts the run's commits and it serves the reference view."""

RECOVERY_WARMUP_S: Final = 5.0
"""Load runs this long with every node healthy before the first fault (also
the window of the baseline commit gap)."""

RECOVERY_CALM_S: Final = 3.0
"""Every node healthy between one fault's catch-up and the next fault."""

RECOVERY_CATCH_UP_TIMEOUT_S: Final = 30.0
"""After healing, wait at most this long for the node to catch up; twice the
worst catch-up measured before recovery was reworked (13-15 s)."""

RECOVERY_POLL_S: Final = 0.02
"""Every node's /v1/status every 20 ms: a commit or an answer is seen at most
20 ms (plus one loopback round trip) after it happens."""

RECOVERY_POLL_TIMEOUT_S: Final = 1.0
"""A SIGSTOPped node accepts TCP connections but never answers; after this the
poll is recorded as unanswered and the next one starts."""

RECOVERY_STATUS_TIMEOUT_S: Final = 5.0
"""Final statuses and block hashes (the agreement check), with every node up."""

MAX_RECOVERY_ROUNDS: Final = 10
MAX_RECOVERY_FAULT_S: Final = 60.0
MIN_RECOVERY_FAULT_S: Final = 0.5
"""Status samples are held in memory: 10 rounds of 3 faults of at most 60 s
(plus catch-up and calm) are about 150,000 samples per node, tens of MB."""

COMMIT_GAP_TARGET_VIEW_TIMEOUTS: Final = 2
"""With one validator faulted, no commit gap longer than 2 view timeouts."""

CATCH_UP_TARGET_MS: Final = 1_000
"""A restarted or reconnected validator is back at the network's
height within 1 s plus transfer time (on loopback the transfer of a few dozen
blocks takes milliseconds, so it is not added)."""
