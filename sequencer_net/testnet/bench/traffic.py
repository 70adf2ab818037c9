"""The benchmark's load, built before the step starts: accounts, the mixes,
signatures and the request bodies.

The load generator of `seqnet load` signs on the fly, which costs about as
much CPU as a validator's verification; here every transaction of a step is
generated (seeded), signed (in parallel worker processes when there are many)
and packed into its request body before the step's clock starts, so during the
step the client only sends bytes and reads answers.

Mixes:

- `rollup`: opaque payloads of 100-300 random bytes in namespaces 1..4,
  ordered and charged a fee but not executed (the rollups' own data);
- `dex`: namespace 0, executed by the engine: the trader traffic of
  sequencer_net.testnet.market (orders placed, amended, cancelled and taken on
  the testnet's perpetuals and options, deposits, withdrawals,
  leveraged positions), continued from step to step on one network;
- `mixed`: the same stream with one item in five a rollup blob (market.py's
  definition).

Each account is pinned to one node (account index mod N) so its nonces reach
one mempool in order. Rollup steps use max(32, R / 16) accounts, so each sends
at most ACCOUNT_TX_PER_S; the market stream uses all funded accounts.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from consensus.crypto import SIGNATURE_LENGTH, PrivateKey
from consensus.encoding import Domain
from sequencer_net.client import DEFAULT_FEES, FeeSchedule, signed_transaction
from sequencer_net.execution.transactions import DEX_NAMESPACE
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.testnet.accounts import load_account_secret
from sequencer_net.testnet.bench.limits import (
    ACCOUNT_TX_PER_S,
    MAX_TXS_PER_REQUEST,
    MIN_ACCOUNTS_PER_STEP,
    PARALLEL_SIGN_MIN_TXS,
    PAYLOAD_BYTES,
    ROLLUP_NAMESPACES,
    TICK_S,
)
from sequencer_net.testnet.bench.verify_limit import quiet_worker_signals
from sequencer_net.testnet.market import (
    MarketTraffic,
    TrafficConfig,
    TrafficSigner,
    dex_load_payload,
    traffic_keys,
)


class Mix(StrEnum):
    ROLLUP = "rollup"
    DEX = "dex"
    MIXED = "mixed"


class WireFormat(StrEnum):
    JSON = "json"  # POST {"transactions": ["0x..", ...]}
    MSGPACK = "msgpack"  # POST a msgpack array of binary transactions
    STREAM = "stream"  # the same arrays as messages of WS /v1/transactions/stream


class AccountPoolExhausted(RuntimeError):
    """Every funded account has been used up by earlier steps."""


@dataclass(slots=True)
class BenchAccount:
    index: int
    secret: bytes
    next_nonce: int = 0
    retired: bool = False

    @property
    def address(self) -> bytes:
        return bytes(PrivateKey(self.secret).address)


class AccountPool:
    """The funded load accounts (seed-derived, as `testnet up` funds them)."""

    def __init__(self, seed: int, count: int) -> None:
        self.accounts = [
            BenchAccount(index, load_account_secret(seed, index)) for index in range(count)
        ]

    def take(self, count: int) -> list[BenchAccount]:
        """The first `count` accounts not retired."""
        usable = [account for account in self.accounts if not account.retired]
        if len(usable) < count:
            raise AccountPoolExhausted(
                f"need {count} accounts, {len(usable)} of {len(self.accounts)} left "
                "(the others have a refused or uncommitted nonce)"
            )
        return usable[:count]

    def retire(self, accounts: Sequence[BenchAccount]) -> None:
        for account in accounts:
            account.retired = True


def accounts_for_rate(rate: float) -> int:
    """Accounts a step of `rate` tx/s uses: each sends at most ACCOUNT_TX_PER_S."""
    return max(MIN_ACCOUNTS_PER_STEP, math.ceil(rate / ACCOUNT_TX_PER_S))


@dataclass(frozen=True, slots=True)
class TxItem:
    """One transaction to sign: which account (position in the step's list),
    its nonce, namespace and payload."""

    account: int
    nonce: int
    namespace: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class PreparedLoad:
    """A step's transactions before signing: `secrets[item.account]` signs an
    item, whose account is pinned to node `homes[item.account] % N`."""

    items: list[TxItem]
    secrets: list[bytes]
    homes: list[int]


def rollup_payload(rng: random.Random) -> tuple[int, bytes]:
    low, high = PAYLOAD_BYTES
    return 1 + rng.randrange(ROLLUP_NAMESPACES), rng.randbytes(rng.randint(low, high))


def generate_items(
    mix: Mix, accounts: Sequence[BenchAccount], count: int, seed: int
) -> list[TxItem]:
    """`count` transactions, accounts in turn, nonces from each account's next one
    (advanced here); rollup blobs, or (any other mix) the 1-wei DEX transfer.
    Same seed and accounts, same items."""
    rng = random.Random(seed)
    items = []
    for i in range(count):
        position = i % len(accounts)
        account = accounts[position]
        if mix is Mix.ROLLUP:
            namespace, payload = rollup_payload(rng)
        else:
            namespace, payload = DEX_NAMESPACE, dex_load_payload(account.address)
        items.append(TxItem(position, account.next_nonce, namespace, payload))
        account.next_nonce += 1
    return items


class RollupLoad:
    """Rollup blobs from the account pool; accounts left with a nonce gap retire."""

    def __init__(self, seed: int, accounts: int) -> None:
        self.pool = AccountPool(seed, accounts)
        self._step: list[BenchAccount] = []

    def prepare(self, rate: float, count: int, seed: int) -> PreparedLoad:
        self._step = self.pool.take(accounts_for_rate(rate))
        items = generate_items(Mix.ROLLUP, self._step, count, seed)
        return PreparedLoad(items, [a.secret for a in self._step], [a.index for a in self._step])

    def unfinished(self, positions: set[int]) -> None:
        self.pool.retire([self._step[p] for p in positions])


class MarketLoad:
    """market.py's trader traffic over all funded accounts (and the market
    operator), its nonces continued from one step to the next."""

    def __init__(
        self,
        seed: int,
        accounts: int,
        mix: Mix,
        domain: Domain,
        fees: FeeSchedule,
        genesis_time_s: int,
    ) -> None:
        self.seed, self.accounts, self.mix = seed, accounts, mix
        self.keys = traffic_keys(seed, accounts)
        self.secrets = [key.secret for key in self.keys]
        self.domain, self.fees = domain, fees
        self.genesis_time_s = genesis_time_s
        self.nonces = [0] * accounts
        self.operator_nonce = 0

    def _sign(self, key: PrivateKey, nonce: int, namespace: int, payload: bytes) -> bytes:
        return signed_transaction(key, self.domain, nonce, namespace, payload, fees=self.fees)

    def prepare(self, rate: float, count: int, seed: int) -> PreparedLoad:
        config = TrafficConfig(
            seed=self.seed,
            accounts=self.accounts,
            mix=str(self.mix),  # type: ignore[arg-type]
            rate=rate,
            start_time_s=int(time.time()),
            genesis_time_s=self.genesis_time_s,
            first_nonces=tuple(self.nonces),
            operator_nonce=self.operator_nonce,
        )
        signer = TrafficSigner(self.keys, self._sign)
        stream = MarketTraffic(config, signer.order_id)
        items = [TxItem(*item) for item in itertools.islice(stream, count)]
        self.nonces = stream.next_nonces()
        self.operator_nonce = stream.next_operator_nonce()
        return PreparedLoad(items, self.secrets, list(range(len(self.keys))))

    def unfinished(self, positions: set[int]) -> None:
        """Nothing to retire: a step that leaves gaps ends its network (run.py)."""


TrafficSource = RollupLoad | MarketLoad


_SignJob = tuple[Sequence[bytes], Sequence[TxItem], Domain, FeeSchedule]


def _sign_chunk(job: _SignJob) -> list[bytes]:
    secrets, items, domain, fees = job
    keys: dict[int, PrivateKey] = {}
    signed = []
    for item in items:
        key = keys.get(item.account)
        if key is None:
            key = keys[item.account] = PrivateKey(secrets[item.account])
        signed.append(
            signed_transaction(key, domain, item.nonce, item.namespace, item.payload, fees=fees)
        )
    return signed


def sign_items(
    items: Sequence[TxItem],
    secrets: Sequence[bytes],
    domain: Domain,
    fees: FeeSchedule = DEFAULT_FEES,
    processes: int | None = None,
) -> list[bytes]:
    """Encoded signed transactions, in order (`secrets[item.account]` signs an
    item); in one worker per core when there are many."""
    workers = processes or os.cpu_count() or 1
    if len(items) < PARALLEL_SIGN_MIN_TXS or workers == 1:
        return _sign_chunk((secrets, items, domain, fees))
    size = math.ceil(len(items) / workers)
    jobs: list[_SignJob] = [
        (secrets, items[first : first + size], domain, fees) for first in range(0, len(items), size)
    ]
    context = multiprocessing.get_context("fork")
    with context.Pool(workers, initializer=quiet_worker_signals) as pool:
        chunks = pool.map(_sign_chunk, jobs)
    return [encoded for chunk in chunks for encoded in chunk]


def encode_body(transactions: Sequence[bytes], wire: WireFormat) -> bytes:
    if wire is not WireFormat.JSON:
        return msgspec.msgpack.encode(list(transactions))
    hexes = b'","0x'.join(tx.hex().encode() for tx in transactions)
    return b'{"transactions":["0x' + hexes + b'"]}'


@dataclass(frozen=True, slots=True)
class Request:
    """One submission: to node `node`, the plan's transactions [first, first + count)."""

    node: int
    first: int
    count: int
    body: bytes


@dataclass(slots=True)
class StepPlan:
    """Everything a step sends, in send order.

    `ticks[k]` are the requests due at `k * tick_s` after the step starts; the
    transactions of all requests, in order, are `hashes` (0x-hex, as the API
    spells them) with the account position of each in `account_of` and its
    signature (the last SIGNATURE_LENGTH bytes of the encoded transaction,
    lowercase hex without 0x) in `signatures`.
    """

    rate: float
    duration_s: float
    tick_s: float
    wire: WireFormat
    accounts: int
    ticks: list[list[Request]] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    account_of: list[int] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.hashes)


def due_by(rate: float, at_s: float, total: int) -> int:
    """Transactions due by `at_s` seconds into a step of `rate` tx/s."""
    return min(total, math.floor(rate * at_s + 1e-9))


def build_plan(
    rate: float,
    duration_s: float,
    *,
    source: TrafficSource,
    nodes: int,
    domain: Domain,
    fees: FeeSchedule,
    wire: WireFormat,
    seed: int,
    tick_s: float = TICK_S,
) -> StepPlan:
    """Generate, sign and pack a step of `rate` tx/s for `duration_s` seconds."""
    total = math.floor(rate * duration_s + 1e-9)
    load = source.prepare(rate, total, seed)
    items = load.items
    signed = sign_items(items, load.secrets, domain, fees)
    plan = StepPlan(rate, duration_s, tick_s, wire, len({item.account for item in items}))
    ticks = math.ceil(duration_s / tick_s - 1e-9)
    sent = 0
    for k in range(1, ticks + 1):
        due = due_by(rate, min(k * tick_s, duration_s), total)
        per_node: dict[int, list[int]] = {}
        for i in range(sent, due):
            per_node.setdefault(load.homes[items[i].account] % nodes, []).append(i)
        sent = due
        requests = []
        for node, indices in sorted(per_node.items()):
            for start in range(0, len(indices), MAX_TXS_PER_REQUEST):
                chunk = indices[start : start + MAX_TXS_PER_REQUEST]
                first = len(plan.hashes)
                plan.hashes.extend("0x" + tx_hash(signed[i]).hex() for i in chunk)
                plan.account_of.extend(items[i].account for i in chunk)
                plan.signatures.extend(signed[i][-SIGNATURE_LENGTH:].hex() for i in chunk)
                body = encode_body([signed[i] for i in chunk], wire)
                requests.append(Request(node, first, len(chunk), body))
        plan.ticks.append(requests)
    return plan
