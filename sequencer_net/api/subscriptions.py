"""Subscriptions: a rollup follows its namespace block by block over a WebSocket.

    WS  /v1/subscribe/blocks?namespace=N&from=H     every finalized height >= H,
                                                    in order, once each
    WS  /v1/subscribe/transactions/{hash}           a transaction's status changes
    GET /v1/blocks/{height}/namespaces/{namespace}  one block's message, for polling

A block message carries what a subscriber needs to check it without trusting
this node: the block header and raw payload (so it recomputes the digest), the
block's own finalization certificate, the namespace's transactions and the
namespace proof against the payload's `namespace_root` (docs/api.md,
"Subscriptions").

The commit pipeline announces each committed height to a `CommitFeed` (a
counter and an event: announcing never waits). Each subscriber's task reads
what it sends from the store, so history and live blocks are one loop over
heights: no gap, no duplicate, whichever side of the tip a subscriber starts.
Its queue is the heights committed but not yet handed to its socket; one whose
queue exceeds the limit (a stalled or slow reader) is closed with 4008 and the
height to resume from. Nothing a subscriber does slows the commit pipeline or
another subscriber. Messages are built once per (height, namespace) and shared.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from consensus.messages import Block, Certificate
from sequencer_net.batches.batch import InvalidBatch, decode_batch
from sequencer_net.mempool.encrypted import transaction_namespace
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.transaction import InvalidTransaction, tx_hash
from sequencer_net.node.status import CommitFeed
from sequencer_net.payload import MalformedPayload, decode_payload
from sequencer_net.payload.namespaces import MAX_NAMESPACE, EntryProof, namespace_proof
from sequencer_net.storage.node_store import NodeStore

__all__ = ["CommitFeed", "SubscriptionLimits", "Subscriptions"]

log = logging.getLogger("seqnet.api.subscriptions")

CLOSE_BAD_QUERY = 4400
CLOSE_TOO_SLOW = 4008
CLOSE_FULL = 4429
CLOSE_NO_CERTIFICATE = 4410
PING_INTERVAL_S = 15.0
CERTIFICATE_POLL_S = 1.0
"""How often a subscriber waiting for a block's own finalization looks again."""
LATE_CERTIFICATE_WAIT_S = 10.0
"""How long a subscriber waits for the own finalization of a block committed
under a descendant's (peers forward theirs within a round trip when they have
one) before it is closed with 4410."""
CACHED_MESSAGES = 1024
CACHED_MESSAGE_BYTES = 64 * 1024 * 1024
"""(height, namespace) messages kept, shared by every subscriber of them: at
most this many, and this many bytes (the latest one always)."""
CACHED_BLOCKS = 64
CACHED_BLOCK_TX_BYTES = 128 * 1024 * 1024
"""Blocks whose transactions are kept grouped for building messages (the recent
ones subscribers read): at most this many, and this many transaction bytes."""
SEND_TIMEOUT_S = 10.0
"""A close frame to a stalled subscriber is given up after this long."""


@dataclass(frozen=True)
class SubscriptionLimits:
    queue: int = 256
    """Heights one subscriber may trail the tip by before it is closed (4008)."""
    max_subscribers: int = 256
    """Open subscriptions (both kinds) at once; beyond it 4429."""


class BadQuery(ValueError):
    pass


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _entry_json(proof: EntryProof | None) -> dict[str, Any] | None:
    if proof is None:
        return None
    return {
        "index": proof.index,
        "entry": {
            "namespace": proof.entry.namespace,
            "count": proof.entry.count,
            "root": _hex(proof.entry.root),
        },
        "path": [_hex(h) for h in proof.path],
    }


def certificate_json(cert: Certificate) -> dict[str, Any]:
    return {
        "kind": int(cert.kind),
        "view": cert.view,
        "height": cert.height,
        "block": _hex(cert.block),
        "signers": list(cert.signers),
        "signatures": [_hex(s) for s in cert.signatures],
    }


@dataclass(frozen=True)
class _BlockData:
    block: Block
    digest: bytes
    certificate: Certificate
    pairs: list[tuple[int, bytes]]
    transactions: list[tuple[int, bytes]]  # (namespace, encoded) in block order


class NoOwnCertificate(LookupError):
    """The block was committed under a descendant's finalization (which finalizes
    a chain of ancestors at once) and this node holds no certificate of its own
    for it (yet: a late one a peer forwards is kept, node/driver.py)."""


def own_finalization(store: NodeStore, block: Block, digest: bytes) -> Certificate | None:
    """The finalization certificate of `block` itself; None if the block's commit
    record is not there; NoOwnCertificate if only a descendant's is held."""
    stored = store.finalization_at(block.height)
    if stored is None:
        return None
    own = store.own_finalization(block.height, digest)
    if own is None:
        raise NoOwnCertificate(
            f"height {block.height} was finalized by the certificate of height "
            f"{stored.height}; this node holds none of its own"
        )
    return own


def block_transactions(store: NodeStore, block: Block) -> list[tuple[int, bytes]] | None:
    """(namespace, encoded) of what the block's namespace root covers: its batches'
    transactions in payload order, each once (payload.checks.block_namespace_pairs).
    None if a batch is not held here."""
    try:
        digests = decode_payload(block.payload).batches
    except MalformedPayload:
        return []
    out: list[tuple[int, bytes]] = []
    seen: set[bytes] = set()
    for digest in digests:
        encoded = store.get_batch(digest)
        if encoded is None:
            return None
        try:
            batch = decode_batch(encoded)
        except InvalidBatch:
            return None
        for tx in batch.transactions:
            try:
                namespace = transaction_namespace(tx)
            except InvalidTransaction:
                continue
            h = tx_hash(tx)
            if h in seen:
                continue
            seen.add(h)
            out.append((namespace, tx))
    return out


class BlockMessages:
    """Builds (and caches) the message of a committed height for a namespace."""

    def __init__(self, store: NodeStore) -> None:
        self.store = store
        self._blocks: OrderedDict[int, tuple[_BlockData, int]] = OrderedDict()
        self._block_bytes = 0
        self._messages: OrderedDict[tuple[int, int], str] = OrderedDict()
        self._message_bytes = 0

    def _block_data(self, height: int) -> _BlockData | None:
        cached = self._blocks.get(height)
        if cached is not None:
            return cached[0]
        block = self.store.block_at(height)
        if block is None:
            return None
        digest = block.digest()
        cert = own_finalization(self.store, block, digest)
        if cert is None:
            return None
        transactions = block_transactions(self.store, block)
        if transactions is None:
            return None
        pairs = [(ns, tx_hash(tx)) for ns, tx in transactions]
        data = _BlockData(block, digest, cert, pairs, transactions)
        size = sum(len(tx) for _, tx in transactions)
        self._blocks[height] = (data, size)
        self._block_bytes += size
        while len(self._blocks) > 1 and (
            len(self._blocks) > CACHED_BLOCKS or self._block_bytes > CACHED_BLOCK_TX_BYTES
        ):
            self._block_bytes -= self._blocks.popitem(last=False)[1][1]
        return data

    def message(self, height: int, namespace: int) -> str | None:
        """The JSON text for (height, namespace); None while the block is not
        committed here (or a batch of it is not held); NoOwnCertificate for a
        block committed under a descendant's certificate."""
        key = (height, namespace)
        cached = self._messages.get(key)
        if cached is not None:
            return cached
        data = self._block_data(height)
        if data is None:
            return None
        text = msgspec.json.encode(self.document(data, namespace)).decode()
        self._messages[key] = text
        self._message_bytes += len(text)
        while len(self._messages) > 1 and (
            len(self._messages) > CACHED_MESSAGES or self._message_bytes > CACHED_MESSAGE_BYTES
        ):
            self._message_bytes -= len(self._messages.popitem(last=False)[1])
        return text

    def document(self, data: _BlockData, namespace: int) -> dict[str, Any]:
        block = data.block
        proof = namespace_proof(data.pairs, namespace)
        return {
            "type": "block",
            "height": block.height,
            "block": {
                "view": block.view,
                "height": block.height,
                "parent": _hex(block.parent),
                "proposer": block.proposer,
                "payload": _hex(block.payload),
                "hash": _hex(data.digest),
            },
            "certificate": certificate_json(data.certificate),
            "namespace": namespace,
            "transactions": [_hex(tx) for ns, tx in data.transactions if ns == namespace],
            "proof": {
                "namespace": proof.namespace,
                "size": proof.size,
                "present": _entry_json(proof.present),
                "below": _entry_json(proof.below),
                "above": _entry_json(proof.above),
            },
        }


def parse_namespace(raw: str | None) -> int:
    if raw is None:
        raise BadQuery("namespace is required (a uint32)")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise BadQuery("namespace must be a decimal uint32")
    value = int(raw)
    if value > MAX_NAMESPACE:
        raise BadQuery("namespace must be a decimal uint32")
    return value


def parse_from(raw: str | None, default: int) -> int:
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        raise BadQuery("from must be a decimal height >= 1")
    value = int(raw)
    if value < 1 or value > 2**63 - 1:
        raise BadQuery("from must be a decimal height >= 1")
    return value


class Subscriptions:
    """Both WebSocket handlers, their shared limits and message cache."""

    def __init__(
        self,
        *,
        store: NodeStore,
        mempool: Mempool,
        feed: CommitFeed,
        limits: SubscriptionLimits,
        receipt: Callable[[int, int], dict[str, Any] | None],
    ) -> None:
        self.store = store
        self.mempool = mempool
        self.feed = feed
        self.limits = limits
        self.receipt = receipt
        self.messages = BlockMessages(store)
        self.open = 0
        self.dropped_slow = 0

    def _tip(self) -> int:
        return max(self.feed.height, self.store.tip()[0])

    async def refuse(self, websocket: WebSocket, code: int, reason: str) -> None:
        """Accept, then close with `code`: a close before the handshake completes
        would reach the client as a bare HTTP 403, without the code."""
        try:
            await websocket.accept()
            with trio.move_on_after(SEND_TIMEOUT_S):
                await websocket.close(code=code, reason=reason)
        except WebSocketDisconnect:
            pass

    async def blocks(self, websocket: WebSocket) -> None:
        try:
            namespace = parse_namespace(websocket.query_params.get("namespace"))
            start = parse_from(websocket.query_params.get("from"), self._tip() + 1)
        except BadQuery as exc:
            await self.refuse(websocket, CLOSE_BAD_QUERY, str(exc))
            return
        if self.open >= self.limits.max_subscribers:
            await self.refuse(websocket, CLOSE_FULL, "too many subscribers; retry later")
            return
        self.open += 1
        try:
            await websocket.accept()
            await self._serve_blocks(websocket, namespace, start)
        except WebSocketDisconnect:
            pass
        finally:
            self.open -= 1

    async def _serve_blocks(self, websocket: WebSocket, namespace: int, start: int) -> None:
        next_height = start
        too_slow = False
        no_certificate = ""
        waiting_since: float | None = None

        async def watch(cancel: trio.CancelScope) -> None:
            """Close the subscription once it trails the tip by more than its queue."""
            nonlocal too_slow
            while True:
                if self._tip() - next_height + 1 > self.limits.queue and live:
                    too_slow = True
                    cancel.cancel()
                    return
                await self.feed.wait_change()

        live = start > self._tip()  # history first: the queue counts once caught up
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as sending:
                nursery.start_soon(watch, sending)
                while True:
                    if next_height > self._tip():
                        live = True
                        with trio.move_on_after(PING_INTERVAL_S) as idle:
                            await self.feed.wait_past(next_height - 1)
                        if idle.cancelled_caught:
                            await websocket.send_text('{"type":"ping"}')
                        continue
                    try:
                        text = self.messages.message(next_height, namespace)
                    except NoOwnCertificate as exc:
                        now = trio.current_time()
                        if waiting_since is None:
                            waiting_since = now
                        if now - waiting_since >= LATE_CERTIFICATE_WAIT_S:
                            no_certificate = str(exc)
                            log.info("event=subscription_no_certificate %s", exc)
                            break
                        text = None
                    if text is not None:
                        waiting_since = None
                    if text is None:
                        # Not stored yet (a batch, a commit racing the feed): look
                        # again on the next commit or after a while.
                        with trio.move_on_after(CERTIFICATE_POLL_S):
                            await self.feed.wait_change()
                        continue
                    await websocket.send_text(text)
                    next_height += 1
            nursery.cancel_scope.cancel()
        if no_certificate:
            await websocket.close(
                code=CLOSE_NO_CERTIFICATE,
                reason=(
                    f"no finalization certificate of height {next_height} here; "
                    f"resume elsewhere from height {next_height}"
                ),
            )
            return
        if too_slow:
            self.dropped_slow += 1
            log.info(
                "event=subscriber_too_slow namespace=%d resume_height=%d", namespace, next_height
            )
            with trio.move_on_after(SEND_TIMEOUT_S):
                await websocket.close(
                    code=CLOSE_TOO_SLOW, reason=f"too slow; resume from height {next_height}"
                )

    def block_document(self, height: int, namespace: int) -> dict[str, Any] | None:
        """One block's message; None if not committed here; NoOwnCertificate."""
        text = self.messages.message(height, namespace)
        return None if text is None else msgspec.json.decode(text)

    # ---- transaction status ----------------------------------------------------------

    def _status(self, h: bytes) -> dict[str, Any]:
        found = self.store.find_transaction(h)
        if found is not None:
            height, index = found
            return {
                "type": "status",
                "hash": _hex(h),
                "status": "committed",
                "height": height,
                "receipt": self.receipt(height, index),
            }
        status = "pending" if h in self.mempool else "unknown"
        return {
            "type": "status",
            "hash": _hex(h),
            "status": status,
            "height": None,
            "receipt": None,
        }

    async def transaction(self, websocket: WebSocket, h: bytes) -> None:
        if self.open >= self.limits.max_subscribers:
            await self.refuse(websocket, CLOSE_FULL, "too many subscribers; retry later")
            return
        self.open += 1
        try:
            await websocket.accept()
            last: dict[str, Any] | None = None
            while True:
                current = self._status(h)
                if current != last:
                    await websocket.send_json(current)
                    last = current
                if current["status"] == "committed":
                    await websocket.close(code=1000)
                    return
                with trio.move_on_after(CERTIFICATE_POLL_S):  # also catches unknown -> pending
                    await self.feed.wait_change()
        except WebSocketDisconnect:
            pass
        finally:
            self.open -= 1
