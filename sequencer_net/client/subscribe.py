"""Verified block subscriptions: `async for block in subscribe(urls, ...)`.

    from sequencer_net.client import subscribe
    async for block in subscribe(
        ["http://127.0.0.1:26700", "http://127.0.0.1:26701"],
        namespace=7, from_height=1, genesis="genesis.json",
    ):
        apply(block.height, block.transactions)   # every field verified

Each message of a node's `/v1/subscribe/blocks` WebSocket goes through
`BlockVerifier` (sequencer_net.client.verify) before it is yielded: the
finalization certificate against the validator set of the block's epoch, as
the genesis file you trust schedules it, in that epoch's signing domain (the
block's own certificate, or a descendant's with the header chain linking the
two, through the epoch's empty tail for its last blocks), the block digest,
the payload's namespace root and the proof that the transactions are exactly
the namespace's. A lying node raises
`SubscriptionVerificationError`; it is never yielded.

Order. On a chain with a threshold key a block's execution order needs its
order seed, drawn by a round of coin shares after the block commits. By
default (`order=True`) a block is yielded once its order is verified too, with
`ordered_transactions`: the node sends each block with its order as soon as
the seed is known, before it has executed the block. With `order=False` the
node sends each block as soon as it commits it (`order=later`), and the
iterator yields it as soon as its inclusion verifies (`order_pending` True,
`ordered_transactions` None), then the same block again, with its order, once
the order message that follows verifies (a block whose order came with it is
yielded once). Nothing unverified is ever yielded either way.

Resumption: every block is yielded once, in height order (with `order=False`,
each block's inclusion once and its order once, each in height order). When a
connection drops, or the node closes it with 4008 (this subscriber fell too
far behind), the iterator reconnects with `from` = the lowest height not yet
verified whole (block and order): to the same node after progress, to the
next URL of `urls` when a node cannot be reached or fails without progress.
A block sent again from there must be the one verified before, and is not
yielded twice. After `RetryPolicy.max_failures`
consecutive attempts without a new block it raises `SubscriptionFailed`.

Two thin transports share the sans-I/O `SubscriptionSession`: a wsproto
client on trio streams (no background task, so the iterator may be abandoned
with `break`) and the `websockets` client on asyncio. `subscribe` picks the
one of the running event loop; `subscribe_trio` and `subscribe_asyncio` name
them directly.

Validator-set rotations are fixed in the genesis (its `epochs`), so a
subscription that trusts the genesis follows every rotation with no further
input: `verifier_from_genesis` takes the whole schedule, and can check the
file against a genesis digest you pin (`genesis_hash=`).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from consensus.crypto import Address
from consensus.encoding import Domain
from consensus.epochs import Epoch, EpochSchedule, InvalidSchedule, epoch_domain_separator
from consensus.limits import MAX_VALIDATORS
from consensus.types import Height, Validator, ValidatorSet
from sequencer_net.client.verify import (
    BlockVerifier,
    SubscriptionVerificationError,
    VerifiedBlock,
)
from sequencer_net.json_input import JsonTooDeep, loads_bounded

SUBSCRIBE_PATH: Final = "/v1/subscribe/blocks"
DEFAULT_MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024
"""One block message: its namespace's transactions as hex (twice their size).
A namespace carrying more than ~7 MiB in one block needs a larger cap. The cap
also bounds what a hostile node can make the client parse and hold at once."""
DEFAULT_IDLE_TIMEOUT_S: Final = 60.0
"""A node sends every finalized block (and may ping every 15 s when idle):
this long without a message means the connection is dead."""
DEFAULT_CONNECT_TIMEOUT_S: Final = 10.0
MAX_SCHEDULE_EPOCHS: Final = 1025
"""Epochs a `/v1/validators` answer may list: epoch 0 and the at most 1,024
later ones a genesis may schedule (sequencer_net.home.genesis.MAX_EPOCHS)."""

log = logging.getLogger(__name__)

CLOSE_TOO_SLOW: Final = 4008
CLOSE_BAD_REQUEST: Final = 4400
CLOSE_SERVER_FULL: Final = 4429
CLOSE_NO_CERTIFICATE: Final = 4410
"""The node committed the next block under a later block's certificate and holds
no certificate to prove it with (its own, or a descendant's at most
MAX_FINALITY_CHAIN heights above it): another node may; resume there."""


class SubscriptionFailed(Exception):
    """The subscription gave up: too many consecutive failed attempts, or the
    node refused the request itself (a bad namespace or height)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Consecutive attempts without a new block before giving up, and the
    backoff between them (doubling from `initial_backoff_s` up to
    `max_backoff_s`)."""

    max_failures: int = 8
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 8.0

    def backoff(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** (failures - 1)))


@dataclass(frozen=True, slots=True)
class Ended:
    """How one connection attempt ended.

    `kind`: "unreachable" (no connection), "rejected" (HTTP answer instead of
    a WebSocket; `code` is the status), "closed" (a close frame; `code` is its
    code), "dropped" (the stream ended without one), "idle" (no message for
    the idle timeout)."""

    kind: str
    code: int = 0
    detail: str = ""

    def describe(self) -> str:
        text = self.kind + (f" {self.code}" if self.code else "")
        return text + (f": {self.detail}" if self.detail else "")


class SubscriptionSession:
    """The transport-free state of one subscription: which node to dial with
    which `from`, the verifier, and what to do after a connection ends."""

    def __init__(
        self,
        urls: Sequence[str],
        verifier: BlockVerifier,
        retry: RetryPolicy | None = None,
        *,
        order: bool = True,
    ) -> None:
        """`order=True`: a block is handed on once its order is verified too,
        in height order. `order=False`: a block is handed on as soon as its
        inclusion is verified (`order_pending` when its order is still to
        come), and again, completed, when its order message is verified."""
        if not urls:
            raise ValueError("give at least one node URL")
        self.urls = [websocket_base(u) for u in urls]
        self.verifier = verifier
        verifier.order_later = True  # the node may send a block before its order
        self.order = order
        self._held: deque[VerifiedBlock] = deque()
        """With `order`: blocks verified, not handed on yet, in height order."""
        self._handed_early: set[int] = set()
        """Without `order`: pending heights already handed on once."""
        self.retry = retry or RetryPolicy()
        self.node = 0
        self.failures = 0
        self.progressed = False  # a block was yielded on the current connection

    def url(self) -> str:
        """The WebSocket URL of the next attempt, resuming at the next height."""
        self.progressed = False
        self.verifier.rewind()
        self._held.clear()  # sent again from the resume height
        query = urlencode(
            {"namespace": self.verifier.namespace, "from": self.verifier.next_height}
            | ({} if self.order else {"order": "later"})
        )
        return f"{self.urls[self.node]}{SUBSCRIBE_PATH}?{query}"

    def on_text(self, text: str) -> list[VerifiedBlock]:
        """A text message: the verified blocks it hands on (none for a ping, or
        for a block still waiting for its order); raises
        SubscriptionVerificationError for anything else."""
        try:
            message = loads_bounded(text)
        except JsonTooDeep as exc:
            raise SubscriptionVerificationError(None, f"a message is refused: {exc}") from None
        except (ValueError, RecursionError):
            raise SubscriptionVerificationError(None, "a message is not JSON") from None
        if isinstance(message, dict) and message.get("type") == "ping":
            return []
        block = self.verifier.verify(message)
        self.progressed = True
        self.failures = 0
        if not self.order:
            if block.order_pending:
                if block.height in self._handed_early:
                    return []  # sent again after a reconnect: handed on before
                self._handed_early.add(block.height)
            else:
                self._handed_early.discard(block.height)
            return [block]
        if block.order_pending:
            self._held.append(block)
        elif self._held and self._held[0].height == block.height:
            self._held[0] = block  # its order message
        else:
            self._held.append(block)
        out: list[VerifiedBlock] = []
        while self._held and not self._held[0].order_pending:
            out.append(self._held.popleft())
        return out

    def on_end(self, ended: Ended) -> float:
        """Seconds to wait before the next attempt; raises SubscriptionFailed
        when the node refused the request or the retries are spent."""
        bad_request = (ended.kind == "closed" and ended.code == CLOSE_BAD_REQUEST) or (
            ended.kind == "rejected" and ended.code == 400
        )
        if bad_request:
            raise SubscriptionFailed(
                f"{self.urls[self.node]} refused the subscription: {ended.describe()}"
            )
        url = self.urls[self.node]
        elsewhere = ended.kind == "closed" and ended.code == CLOSE_NO_CERTIFICATE
        if self.progressed and ended.kind in ("closed", "dropped") and not elsewhere:
            log.info("%s: %s; resuming from height %d", url, ended.describe(), self.next_height)
            return 0.0  # resume at once on the same node; if it is gone, that attempt fails
        self.failures += 1
        if self.failures >= self.retry.max_failures:
            raise SubscriptionFailed(
                f"{self.failures} consecutive attempts failed; last, to {url}: {ended.describe()}"
            )
        self.node = (self.node + 1) % len(self.urls)
        delay = self.retry.backoff(self.failures)
        log.warning(
            "%s: %s; retrying on %s in %.2f s (attempt %d of %d)",
            url,
            ended.describe(),
            self.urls[self.node],
            delay,
            self.failures + 1,
            self.retry.max_failures,
        )
        return delay

    @property
    def next_height(self) -> int:
        """Where the next connection resumes: the lowest height not verified
        whole."""
        return self.verifier.resume_height()


def websocket_base(url: str) -> str:
    """`http(s)://host:port` (a node's API URL) or `ws(s)://...` as a WebSocket base."""
    parts = urlsplit(url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ValueError(f"not an http(s) or ws(s) URL: {url!r}")
    return f"{scheme}://{parts.netloc}{parts.path}"


# --- trust ----------------------------------------------------------------------------


def verifier_from_genesis(
    genesis: Any, namespace: int, from_height: int, genesis_hash: bytes | None = None
) -> BlockVerifier:
    """A verifier trusting a genesis: a path to a genesis file, its JSON document
    (already decoded) or a loaded `Genesis`. Its whole validator-set schedule is
    trusted, so the verifier follows every rotation it schedules.

    `genesis_hash` (32 bytes: the digest of the genesis block, what nodes report
    as `genesis_hash`), when given, must be the genesis's own: a file obtained
    from a source you do not fully trust is then as good as the digest you
    pinned. A mismatch raises GenesisError."""
    from sequencer_net.home.genesis import GenesisError, genesis_from_json, load_genesis

    if isinstance(genesis, (str, Path)):
        genesis = load_genesis(Path(genesis))
    elif isinstance(genesis, dict):
        genesis = genesis_from_json(genesis)
    if genesis_hash is not None:
        actual = genesis.genesis_block().digest()
        if actual != genesis_hash:
            raise GenesisError(
                f"the genesis digest is 0x{actual.hex()}, not the pinned 0x{genesis_hash.hex()}"
            )
    return BlockVerifier.from_genesis(genesis, namespace, from_height)


async def verifier_from_node(url: str, namespace: int, from_height: int) -> BlockVerifier:
    """UNSAFE unless you trust this node: takes the validator set from its
    `GET /v1/validators` and the signing domain from its `GET /v1/status`.

    A node that lies about the validator set can then certify any block it
    likes with keys of its own, and every check downstream passes. Use it for
    a local testnet or a node you run; otherwise pass a genesis file obtained
    from a source you trust.
    """
    from sequencer_net.client.errors import SeqnetApiError
    from sequencer_net.client.http import AsyncSeqnetClient

    try:
        async with AsyncSeqnetClient(url, timeout=DEFAULT_CONNECT_TIMEOUT_S) as node:
            status = await node.status()
            validators = await node.validators()
    except SeqnetApiError as exc:
        raise SubscriptionFailed(f"cannot read the validator set from {url}: {exc}") from exc
    return verifier_from_answers(status, validators, namespace, from_height)


def verifier_from_answers(
    status: Any, validators: Any, namespace: int, from_height: int
) -> BlockVerifier:
    """A verifier from a node's `/v1/status` and `/v1/validators` answers
    (`{"validators": [{"address": "0x..", "weight": N}, ...]}`, and for a chain
    that rotates its set, `"epochs": [{"number", "first_height",
    "domain_separator", "validators"}, ...]`; each epoch's separator must be
    the one derived from the domain)."""
    try:
        domain = Domain(
            int(status["chain_id"]),
            bytes.fromhex(str(status["verifying_contract"]).removeprefix("0x")),
            bytes.fromhex(str(status["genesis_hash"]).removeprefix("0x")),
        )
        epochs = validators.get("epochs")
        if epochs is None:
            schedule = EpochSchedule([Epoch(0, Height(1), _validator_set(validators))])
        else:
            schedule = _schedule(epochs, domain)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SubscriptionFailed(f"no usable validator set or domain: {exc}") from exc
    return BlockVerifier(schedule, domain, namespace, from_height)


def _validator_set(answer: Any) -> ValidatorSet:
    members = answer["validators"]
    if not isinstance(members, list) or not 1 <= len(members) <= MAX_VALIDATORS:
        raise ValueError(f"between 1 and {MAX_VALIDATORS} validators expected")
    return ValidatorSet(
        [
            Validator(
                Address(bytes.fromhex(str(v["address"]).removeprefix("0x"))),
                int(v["weight"]),
            )
            for v in members
        ]
    )


def _schedule(epochs: Any, domain: Domain) -> EpochSchedule:
    """The schedule a `/v1/validators` answer lists; ValueError if it is malformed,
    breaks a schedule rule or names a separator that is not the epoch's."""
    if not isinstance(epochs, list) or not 1 <= len(epochs) <= MAX_SCHEDULE_EPOCHS:
        raise ValueError(f"between 1 and {MAX_SCHEDULE_EPOCHS} epochs expected")
    separator = domain.separator()
    out: list[Epoch] = []
    for entry in epochs:
        number = int(entry["number"])
        if not 0 <= number < MAX_SCHEDULE_EPOCHS:
            raise ValueError(f"epoch number {number} out of range")
        claimed = bytes.fromhex(str(entry["domain_separator"]).removeprefix("0x"))
        if claimed != epoch_domain_separator(separator, number):
            raise ValueError(f"epoch {number}'s domain separator is not derived from the domain")
        out.append(Epoch(number, Height(int(entry["first_height"])), _validator_set(entry)))
    try:
        return EpochSchedule(out)
    except InvalidSchedule as exc:
        raise ValueError(str(exc)) from exc


async def _verifier(
    urls: Sequence[str],
    namespace: int,
    from_height: int,
    genesis: Any,
    verifier: BlockVerifier | None,
    trust_node_for_validator_set: bool,
    genesis_hash: bytes | None = None,
) -> BlockVerifier:
    if verifier is not None:
        return verifier
    if genesis is not None:
        return verifier_from_genesis(genesis, namespace, from_height, genesis_hash)
    if trust_node_for_validator_set:
        return await verifier_from_node(urls[0], namespace, from_height)
    raise ValueError(
        "give genesis= (a genesis file you trust), or trust_node_for_validator_set=True"
    )


# --- front ends ------------------------------------------------------------------------


def subscribe(
    urls: Sequence[str] | str,
    *,
    namespace: int,
    from_height: int,
    genesis: Any = None,
    verifier: BlockVerifier | None = None,
    trust_node_for_validator_set: bool = False,
    retry: RetryPolicy | None = None,
    genesis_hash: bytes | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    order: bool = True,
) -> AsyncIterator[VerifiedBlock]:
    """Verified blocks of `namespace` from `from_height` on, under trio or asyncio.

    Trust comes from `genesis` (a path to, or a loaded, genesis file you
    trust; with `genesis_hash`, one that must have that pinned digest) or a
    ready `verifier`. The genesis's whole validator-set schedule is trusted,
    so the subscription follows every rotation it schedules.
    `trust_node_for_validator_set=True` instead believes the first node's own
    answer about who the validators are: DO NOT
    use it against a node you do not control, since a lying node then passes
    every check (see `verifier_from_node`).

    `order=True` yields each block once its execution order is verified too;
    `order=False` yields it as soon as its inclusion is verified
    (`order_pending`), and again with its order (module docstring, "Order").
    """
    import sniffio

    library = sniffio.current_async_library()
    front = subscribe_asyncio if library == "asyncio" else subscribe_trio
    return front(
        urls,
        namespace=namespace,
        from_height=from_height,
        genesis=genesis,
        verifier=verifier,
        trust_node_for_validator_set=trust_node_for_validator_set,
        retry=retry,
        genesis_hash=genesis_hash,
        max_message_bytes=max_message_bytes,
        idle_timeout_s=idle_timeout_s,
        order=order,
    )


async def _open_session(
    urls: Sequence[str] | str,
    namespace: int,
    from_height: int,
    genesis: Any,
    verifier: BlockVerifier | None,
    trust_node_for_validator_set: bool,
    retry: RetryPolicy | None,
    genesis_hash: bytes | None = None,
    order: bool = True,
) -> SubscriptionSession:
    """The transport-free session both front ends drive: the URL list, and the
    verifier from the trusted genesis (or the node, if the caller opted in)."""
    url_list = [urls] if isinstance(urls, str) else list(urls)
    checked = await _verifier(
        url_list,
        namespace,
        from_height,
        genesis,
        verifier,
        trust_node_for_validator_set,
        genesis_hash,
    )
    return SubscriptionSession(url_list, checked, retry, order=order)


async def subscribe_trio(
    urls: Sequence[str] | str,
    *,
    namespace: int,
    from_height: int,
    genesis: Any = None,
    verifier: BlockVerifier | None = None,
    trust_node_for_validator_set: bool = False,
    retry: RetryPolicy | None = None,
    genesis_hash: bytes | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    order: bool = True,
) -> AsyncIterator[VerifiedBlock]:
    """`subscribe` for trio (see there)."""
    import trio

    from sequencer_net.client.websocket_trio import TrioWebSocket, WebSocketEnded

    session = await _open_session(
        urls,
        namespace,
        from_height,
        genesis,
        verifier,
        trust_node_for_validator_set,
        retry,
        genesis_hash,
        order,
    )
    while True:
        try:
            socket = await TrioWebSocket.connect(
                session.url(), DEFAULT_CONNECT_TIMEOUT_S, max_message_bytes
            )
        except WebSocketEnded as exc:
            await trio.sleep(session.on_end(exc.ended))
            continue
        try:
            while True:
                try:
                    text = await socket.receive_text(idle_timeout_s)
                except WebSocketEnded as exc:
                    ended = exc.ended
                    break
                for block in session.on_text(text):
                    yield block
        finally:
            await socket.close()
        await trio.sleep(session.on_end(ended))


async def subscribe_asyncio(
    urls: Sequence[str] | str,
    *,
    namespace: int,
    from_height: int,
    genesis: Any = None,
    verifier: BlockVerifier | None = None,
    trust_node_for_validator_set: bool = False,
    retry: RetryPolicy | None = None,
    genesis_hash: bytes | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    order: bool = True,
) -> AsyncIterator[VerifiedBlock]:
    """`subscribe` for asyncio (the `websockets` client; see `subscribe`)."""
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

    session = await _open_session(
        urls,
        namespace,
        from_height,
        genesis,
        verifier,
        trust_node_for_validator_set,
        retry,
        genesis_hash,
        order,
    )
    while True:
        url = session.url()
        try:
            socket = await connect(
                url,
                open_timeout=DEFAULT_CONNECT_TIMEOUT_S,
                max_size=max_message_bytes,
                compression=None,
                proxy=None,
                ping_interval=None,
            )
        except InvalidStatus as exc:
            await asyncio.sleep(session.on_end(Ended("rejected", exc.response.status_code)))
            continue
        except (OSError, TimeoutError, WebSocketException) as exc:
            await asyncio.sleep(session.on_end(Ended("unreachable", detail=str(exc))))
            continue
        try:
            while True:
                try:
                    message = await asyncio.wait_for(socket.recv(), idle_timeout_s)
                except ConnectionClosed as exc:
                    if exc.rcvd is not None:
                        ended = Ended("closed", exc.rcvd.code, exc.rcvd.reason)
                    else:
                        ended = Ended("dropped", detail=str(exc))
                    break
                except TimeoutError:
                    ended = Ended("idle")
                    break
                if not isinstance(message, str):
                    raise SubscriptionVerificationError(None, "a binary message; expected text")
                for block in session.on_text(message):
                    yield block
        finally:
            await socket.close()
        await asyncio.sleep(session.on_end(ended))
