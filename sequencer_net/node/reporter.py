"""The validator's price reporter: read the price source, sign, submit to itself.

Every `[oracle] interval_ms` the reporter reads its source (sequencer_net.
pricefeed) for the markets the committed state lists (expired options left
out), and submits one `OracleUpdate` per MAX_ORACLE_PRICES markets, signed with
the validator's key, to its own intake: the report pays the usual fee, from
the validator's subaccount 0 (fund it), and heads this validator's next batch
(its own key is a priority sender of its mempool: no per-sender cap, no
eviction, admitted when the pool is full; mempool.py). Every round the
reporter checks that subaccount's fee balance in the committed state against
the fees of the next hour of reports (one round per `interval_s`, at most one
per second) and logs `oracle_fee_balance_low` (at most every ten minutes while
it lasts) when it falls short: without reports the validator's power no longer
counts toward the oracle quorum. The engine keeps each validator's latest report per
market and takes the power-weighted median (sequencer_net.execution.oracle).

`published_at` is the local clock minus `[oracle] lag_s`, in whole seconds, and
strictly increases (the engine refuses a report not newer than the previous
one), so a second's report is sent at most once.

Nonces come from `OwnNonces` (own_nonces.py), the counter the validator's L1
deposit reports share: a reused nonce is refused without a fee, a report gap
of one interval.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from consensus.crypto import PrivateKey
from consensus.encoding import Domain
from sequencer_net.api.intake import Accepted, Outcome
from sequencer_net.client.transactions import signed_transaction
from sequencer_net.execution.fees import committed_fee_balance, required_fee
from sequencer_net.execution.limits import MAX_ORACLE_PRICES
from sequencer_net.execution.markets import is_expired
from sequencer_net.execution.state import ExecutionState
from sequencer_net.execution.transactions import (
    DEX_NAMESPACE,
    OraclePrice,
    OracleUpdate,
    encode_payload,
)
from sequencer_net.logging_limits import RepeatedProblem
from sequencer_net.node.own_nonces import OwnNonces
from sequencer_net.pricefeed.sources import PriceSource, PriceSourceError

log = logging.getLogger("seqnet.oracle")

ERROR_LOG_INTERVAL_S = 60.0
"""The same source error is logged at most once a minute."""

FEE_RUNWAY_S = 3_600
"""Warn when the reporting subaccount cannot pay for this many seconds of reports."""

LOW_BALANCE_LOG_INTERVAL_S = 600.0
"""The low fee balance warning repeats at most every ten minutes."""


@dataclass
class ReporterStatus:
    """What /v1/status shows under "oracle"."""

    source: str
    last_published_at: int | None = None
    last_markets: int = 0
    reports_sent: int = 0
    reports_refused: int = 0
    last_error: str | None = None
    fee_balance: int | None = None
    """The reporting subaccount's fee balance in the committed state (wad)."""
    hour_of_fees: int | None = None
    """What the next FEE_RUNWAY_S of reports cost at the current fee and market count."""

    @property
    def fee_balance_low(self) -> bool:
        if self.fee_balance is None or self.hour_of_fees is None:
            return False
        return self.fee_balance < self.hour_of_fees

    def document(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "last_published_at": self.last_published_at,
            "last_markets": self.last_markets,
            "reports_sent": self.reports_sent,
            "reports_refused": self.reports_refused,
            "last_error": self.last_error,
            "fee_balance": None if self.fee_balance is None else str(self.fee_balance),
            "hour_of_fees": None if self.hour_of_fees is None else str(self.hour_of_fees),
            "fee_balance_low": self.fee_balance_low,
        }


class PriceReporter:
    def __init__(
        self,
        *,
        key: PrivateKey,
        domain: Domain,
        source: PriceSource,
        source_name: str,
        state: Callable[[], ExecutionState],
        submit: Callable[[bytes], Awaitable[Outcome]],
        interval_s: float,
        lag_s: int,
        clock: Callable[[], float] = time.time,
        nonces: OwnNonces | None = None,
    ) -> None:
        self.key = key
        self.domain = domain
        self.source = source
        self.state = state
        self.submit = submit
        self.interval_s = interval_s
        self.lag_s = lag_s
        self.clock = clock
        self.status = ReporterStatus(source_name)
        self.nonces = nonces or OwnNonces(key.address, state)
        self._problem = RepeatedProblem(log, "oracle_report_problem", ERROR_LOG_INTERVAL_S)
        self._low_balance = RepeatedProblem(
            log, "oracle_fee_balance_low", LOW_BALANCE_LOG_INTERVAL_S
        )

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                await self.report_once()
                now = self.clock()
                await trio.sleep(self.interval_s - now % self.interval_s)
        finally:
            with trio.CancelScope(shield=True):
                await self.source.aclose()

    async def report_once(self) -> int:
        """Read and submit one round of reports; return how many were accepted."""
        published_at = int(self.clock()) - self.lag_s
        last = self.status.last_published_at
        if last is not None and published_at <= last:
            return 0
        state = self.state()
        markets = {
            market_id: params
            for market_id, params in state.market_params.items()
            if not is_expired(params, published_at)
        }
        if not markets:
            return 0
        try:
            quotes = await self.source.read(markets, published_at)
        except PriceSourceError as exc:
            self._error(str(exc))
            return 0
        problems = getattr(self.source, "problems", None)
        if problems:
            self._error("; ".join(problems[:3]))
        if not quotes:
            return 0
        prices = [OraclePrice(m, q.price, q.volatility) for m, q in sorted(quotes.items())]
        payloads = [
            encode_payload(OracleUpdate(published_at, tuple(prices[i : i + MAX_ORACLE_PRICES])))
            for i in range(0, len(prices), MAX_ORACLE_PRICES)
        ]
        fees = [required_fee(state.config, len(payload)) for payload in payloads]
        self.check_fee_runway(state, sum(fees))
        accepted = 0
        for payload, fee in zip(payloads, fees, strict=True):
            raw = signed_transaction(
                self.key,
                self.domain,
                self.nonces.next_nonce(state),
                DEX_NAMESPACE,
                payload,
                fee=fee,
            )
            outcome = await self.submit(raw)
            if isinstance(outcome, Accepted):
                accepted += 1
                self.status.reports_sent += 1
            else:
                self.status.reports_refused += 1
                self.nonces.recount()
                self._error(f"own report refused: {outcome.code}: {outcome.message}")
        self.status.last_published_at = published_at
        self.status.last_markets = len(prices)
        if accepted and not problems:
            self.status.last_error = None
        return accepted

    def check_fee_runway(self, state: ExecutionState, round_fees: int) -> None:
        """Warn when subaccount 0 cannot pay the next FEE_RUNWAY_S of rounds
        costing `round_fees` each (whole seconds: at most one round a second)."""
        rounds = min(math.ceil(FEE_RUNWAY_S / self.interval_s), FEE_RUNWAY_S)
        self.status.fee_balance = committed_fee_balance(state, self.key.address)
        self.status.hour_of_fees = rounds * round_fees
        if self.status.fee_balance_low:
            self._low_balance.report(
                f"subaccount 0 of {self.key.address.hex()} holds {self.status.fee_balance}"
                f" wei of fees; the next hour of reports costs {self.status.hour_of_fees}"
            )

    def _error(self, message: str) -> None:
        self.status.last_error = message
        self._problem.report(message)


def build_source(config: Any) -> PriceSource | None:
    """The price source a node config names ([oracle]); None for "none"."""
    from sequencer_net.pricefeed.sources import (
        FileSource,
        HttpSource,
        local_simulated_source,
        parse_mapping,
    )

    oracle = config.oracle
    if oracle.source == "none":
        return None
    if oracle.source == "simulated":
        return local_simulated_source(oracle.seed)
    mapping = parse_mapping(oracle.prices, oracle.volatilities)
    if oracle.source == "file":
        assert config.oracle_file_path is not None  # the config check requires it
        return FileSource(config.oracle_file_path, mapping)
    assert oracle.url is not None
    return HttpSource(oracle.url, mapping)
