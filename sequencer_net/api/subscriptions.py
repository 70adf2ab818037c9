"""Subscriptions: a rollup follows its namespace block by block over a WebSocket.

    WS  /v1/subscribe/blocks?namespace=N&from=H     every finalized height >= H,
                                                    in order, once each
    WS  /v1/subscribe/transactions/{hash}           a transaction's status changes
    WS  /v1/subscribe/executed                      the executed height as it advances
    GET /v1/blocks/{height}/namespaces/{namespace}  one block's message, for polling

A block message carries what a subscriber needs to check it without trusting
this node: the block header and raw payload (so it recomputes the digest), the
block's finalization, the namespace's transactions and the namespace proof
against the payload's `namespace_root` (docs/api.md, "Subscriptions"), and,
on a chain with a threshold key, the block's `order`: its order seed and the
t coin shares that prove it, from which the subscriber derives the
namespace's execution order (docs/rollups.md, "Execution order"), or `null`
for a block that draws no seed (fairness/order.py `needs_order_seed`: its
order is the same for every seed). The
finalization is the block's own certificate when this node holds it; a block
committed under a descendant's certificate (implicit finalization) carries
`finalized_by` instead: the nearest descendant's own certificate and the
headers from that descendant down to the block's child, which link it parent
by parent (`finality_of`).

With validator-set epochs (the genesis's schedule), a proof never leaves the
block's epoch: the descendants searched stop at the epoch's last height, and
a block with no certificate up to there is proven by the epoch's end
(`EpochEndProof`, from an injected `epoch_end_proof(epoch)` source the node
fills): its finalization, with the epoch's empty tail blocks on top of the
chain. The next epoch's blocks never vouch for an earlier epoch's.

The commit pipeline tells a `CommitFeed` three things of each height (never
waiting): decided (consensus committed the block here and its batches are
held), ordered (its order seed and proof are known) and stored (executed and
written). A block message goes out as soon as the block is decided, with its
order once that is known (`order=inline`, the default) or, for a subscriber
that asked for `order=later`, at once, the order following in an order
message of its own (`{"type":"order","height":..,"order":{..}}`) when it was
not known at send time. Each subscriber is one task that reads what it sends
from the store or, above the stored tip, from the feed's decided blocks, so
history and live blocks are one loop over heights: no gap, no duplicate,
whichever side of the tip a subscriber starts, and each order message in
height order. Its queue is the heights committed but not yet handed to
its socket; at each height decided or stored, one pass over the subscribers stops every
caught-up one whose queue exceeds the limit (a stalled or slow reader), which
is then closed with 4008 and the height to resume from. Nothing a subscriber
does slows the commit pipeline or another subscriber.

A caught-up subscriber's task that has nothing to send is parked: at each
change of the feed, one pass over the subscribers (`_push`, called by the
feed, never waiting) writes what each parked one can be sent at once, by the
same rules and in the same order as its task would, straight to its socket
(`FramedSender.send_at_once`: one non-blocking write of the ready frame; a
part the socket does not take is sent first by the connection's next
write). Its task is not woken for that. Only a subscriber that needs a wait
has its task woken: a height built in a worker thread, a block not provable
yet, a socket that took nothing or part of a frame, a connection without the
direct path. So a live height costs one system call per subscriber and no
scheduler round trip between the commit and the writes.

A client that stops reading altogether: each socket write is shielded from
cancellation (the web server's, and the block stream's own, framed_send.py),
so a send to it cannot be cut short here; once its socket buffers are full,
the connection's write deadline
(api/http_server.py `ConnectionStream`, limits.SEND_TIMEOUT_S) closes the
connection and cancels its handler, this subscriber's task with it, which
frees its slot (tests/api/test_subscription_stalled_socket.py).

What a height costs is paid once (`HeightMessages`): its batches decoded and
hashed once, one namespace table for every namespace's proof, the JSON of the
block and certificate once; large heights are built in a worker thread. Each
(height, namespace) message is built and framed as a WebSocket message once
from that, and the same bytes are written to every subscriber of it, straight
to its connection's socket (framed_send.py: not through the ASGI interface,
which would frame it again for each one).
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from consensus.encoding import payload_hash
from consensus.epochs import EpochSchedule
from consensus.limits import MAX_FINALITY_CHAIN
from consensus.messages import Block, Certificate, EpochEndProof
from sequencer_net.api.framed_send import FramedSender, TextFrame, sender_for
from sequencer_net.batches.batch import InvalidBatch, decode_batch
from sequencer_net.fairness.order_proof import MalformedOrderProof, decode_order_proof
from sequencer_net.mempool.encrypted import transaction_namespace
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.transaction import InvalidTransaction, tx_hash
from sequencer_net.node.status import CommitFeed
from sequencer_net.payload import MalformedPayload, decode_payload
from sequencer_net.payload.namespaces import MAX_NAMESPACE, EntryProof, NamespaceTable
from sequencer_net.storage.node_store import NodeStore

__all__ = ["CommitFeed", "EpochEndProofSource", "SubscriptionLimits", "Subscriptions"]

log = logging.getLogger("seqnet.api.subscriptions")

CLOSE_BAD_QUERY = 4400
CLOSE_TOO_SLOW = 4008
CLOSE_FULL = 4429
CLOSE_NO_CERTIFICATE = 4410
PING_INTERVAL_S = 15.0
CERTIFICATE_POLL_S = 1.0
"""How often a subscriber waiting for a block's finalization looks again."""
LATE_CERTIFICATE_WAIT_S = 10.0
"""How long a subscriber waits for a provable finalization of a block committed
under a descendant's certificate held more than MAX_FINALITY_CHAIN heights
above it (peers forward a block's own within a round trip when they have one)
before it is closed with 4410."""
CACHED_HEADERS = 2 * MAX_FINALITY_CHAIN
"""Committed block headers (the JSON of a descendant proof's chain and the
digest) kept, so proving a run of implicitly finalized heights reads each
block once."""
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
BUILD_IN_THREAD_MIN_BYTES = 64 * 1024
"""A height whose batches hold at least this many bytes has its messages' shared
part (decoding, hashing, the namespace table, the JSON of block and
certificate) built in a worker thread, so the event loop, which also runs
consensus, keeps serving meanwhile."""
PING_TEXT = '{"type":"ping"}'
PING = TextFrame.of(PING_TEXT)


@dataclass(frozen=True)
class SubscriptionLimits:
    queue: int = 256
    """Heights one subscriber may trail the tip by before it is closed (4008)."""
    max_subscribers: int = 256
    """Open subscriptions (every kind) at once; beyond it 4429."""
    max_per_client: int = 32
    """Open subscriptions (every kind) from one remote address; beyond it 4429."""


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


class NoOwnCertificate(LookupError):
    """The block was committed under a descendant's finalization (which finalizes
    a chain of ancestors at once) and this node holds no certificate it can
    prove it with: none of its own, none of a descendant at most
    MAX_FINALITY_CHAIN heights above it (yet: a late one a peer forwards is
    kept, node/driver.py)."""


def header_json(block: Block) -> dict[str, Any]:
    """A block as a descendant proof's chain carries it: what its digest is
    computed from (`consensus.encoding.block_header_hash`), the payload as its
    hash."""
    return {
        "view": block.view,
        "height": block.height,
        "parent": _hex(block.parent),
        "proposer": block.proposer,
        "payload_hash": _hex(payload_hash(block.payload)),
    }


@dataclass(frozen=True)
class DescendantFinality:
    """A block finalized under a descendant's certificate, provably: `certificate`
    is the own finalization of the block at `certificate.height`, and `chain`
    the headers from that block down to the proven block's child (descendant
    first), each one's parent the digest of the next."""

    certificate: Certificate
    chain: tuple[dict[str, Any], ...]

    def json(self) -> dict[str, Any]:
        return {"certificate": certificate_json(self.certificate), "chain": list(self.chain)}


Finality = Certificate | DescendantFinality

EpochEndProofSource = Callable[[int], EpochEndProof | None]
"""`epoch_end_proof(epoch)`: the stored proof that `epoch` ended, or None."""


def no_epoch_end_proof(epoch: int) -> EpochEndProof | None:
    """The source of a node that keeps no epoch-end proofs."""
    return None


def finality_of(
    store: NodeStore,
    block: Block,
    digest: bytes,
    header_at: Callable[[int], tuple[dict[str, Any], bytes] | None] | None = None,
    *,
    schedule: EpochSchedule | None = None,
    epoch_end_proof: EpochEndProofSource = no_epoch_end_proof,
) -> Finality | None:
    """How `block` (committed at its height) is shown final: its own finalization
    certificate when this node holds one, else the nearest descendant holding
    its own, with the headers linking the two. None while the block's commit
    record, or a block of the chain, is not stored yet (the descendant's commit
    follows the block's); NoOwnCertificate when no own certificate is held
    within MAX_FINALITY_CHAIN heights above it.

    With a `schedule`, descendants are searched only up to the last height of
    the block's epoch; past it, the epoch's end proves the block (the proof's
    finalization, the chain topped by its tail blocks) when the last height
    is at most MAX_FINALITY_CHAIN above the block, and NoOwnCertificate is
    raised while the proof is not held.

    `header_at(height)` gives a committed block's (header JSON, digest); by
    default it reads the store."""
    stored = store.finalization_at(block.height)
    if stored is None:
        return None
    own = store.own_finalization(block.height, digest)
    if own is not None:
        return own
    read = header_at if header_at is not None else functools.partial(_read_header, store)
    epoch, last_height = 0, None
    if schedule is not None:
        epoch = schedule.epoch_of(block.height).number
        last_height = schedule.last_height(epoch)
    top = block.height + MAX_FINALITY_CHAIN
    if last_height is not None:
        top = min(top, last_height)
    chain: list[dict[str, Any]] = []
    below = digest  # the digest of the highest block read
    for height in range(block.height + 1, top + 1):
        found = read(height)
        if found is None:
            return None  # committed under a descendant not stored yet: it follows
        header, below = found
        chain.append(header)
        certificate = store.own_finalization(height, below)
        if certificate is not None:
            chain.reverse()
            return DescendantFinality(certificate, tuple(chain))
    if last_height is not None and top == last_height:
        proof = epoch_end_proof(epoch)
        if proof is not None and _proves_end(proof, epoch, last_height, below):
            chain.reverse()
            tail = [header_json(b) for b in proof.tail]  # newest first, like `chain`
            if not tail and not chain:
                return proof.finalization  # the last block's own
            return DescendantFinality(proof.finalization, tuple(tail + chain))
        raise NoOwnCertificate(
            f"height {block.height} was finalized by the certificate of height "
            f"{stored.height}; this node holds no certificate of its own or of a descendant "
            f"up to epoch {epoch}'s last height {last_height}, nor the proof of the epoch's end"
        )
    raise NoOwnCertificate(
        f"height {block.height} was finalized by the certificate of height "
        f"{stored.height}; this node holds no certificate of its own or of a "
        f"descendant at most {MAX_FINALITY_CHAIN} heights above it"
    )


def _proves_end(proof: EpochEndProof, epoch: int, last_height: int, last_digest: bytes) -> bool:
    """Whether a stored epoch-end proof is the one of this epoch and ends on the
    committed block `last_digest`: its tail links from the certified block down
    to it. Its signatures are the subscriber's to check."""
    if proof.epoch != epoch or proof.last_height != last_height:
        log.warning("event=epoch_end_proof_mismatch epoch=%d proof_epoch=%d", epoch, proof.epoch)
        return False
    final = proof.finalization
    expected, height = final.block, final.height
    for block in proof.tail:
        if block.height != height or block.digest() != expected:
            log.warning("event=epoch_end_proof_unlinked epoch=%d height=%d", epoch, height)
            return False
        expected, height = block.parent, height - 1
    if height != last_height or expected != last_digest:
        log.warning("event=epoch_end_proof_other_block epoch=%d", epoch)
        return False
    return True


def _read_header(store: NodeStore, height: int) -> tuple[dict[str, Any], bytes] | None:
    block = store.block_at(height)
    if block is None:
        return None
    return header_json(block), block.digest()


def _batch_bytes(batches: Sequence[bytes]) -> int:
    return sum(len(b) for b in batches)


def _batch_digests(block: Block) -> list[bytes]:
    try:
        return list(decode_payload(block.payload).batches)
    except MalformedPayload:
        return []


def _stored_batches(store: NodeStore, block: Block) -> list[bytes] | None:
    """The encoded batches the block's payload names, in order; None if one is
    not held here."""
    batches: list[bytes] = []
    for digest in _batch_digests(block):
        encoded = store.get_batch(digest)
        if encoded is None:
            return None
        batches.append(encoded)
    return batches


def namespaced_transactions(batches: list[bytes]) -> list[tuple[int, bytes, bytes]] | None:
    """(namespace, tx hash, encoded) of what a block's namespace root covers: its
    batches' transactions in payload order, each once (payload.checks.
    block_namespace_pairs). None if a batch does not decode."""
    out: list[tuple[int, bytes, bytes]] = []
    seen: set[bytes] = set()
    for encoded in batches:
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
            out.append((namespace, h, tx))
    return out


def block_transactions(store: NodeStore, block: Block) -> list[tuple[int, bytes]] | None:
    """(namespace, encoded) of what the block's namespace root covers, in order;
    None if a batch is not held here."""
    batches = _stored_batches(store, block)
    found = None if batches is None else namespaced_transactions(batches)
    return None if found is None else [(ns, tx) for ns, _, tx in found]


@dataclass(frozen=True)
class HeightMessages:
    """What every namespace's message of one committed height shares, built once:
    the JSON up to the namespace, the transactions grouped by namespace and the
    namespace table (every namespace's proof comes from it)."""

    height: int
    head: bytes
    """`{"type":"block","height":..,"block":{..},"certificate":{..},` (no order)"""
    by_namespace: dict[int, list[bytes]]
    table: NamespaceTable
    size: int
    """Bytes held: the transactions and the head."""

    def message(self, namespace: int, order: bytes | None = None) -> str:
        """The message for `namespace`, with `order` (the JSON of the block's
        `order` field) when given: the same JSON, key for key, as encoding
        `block_document` would give."""
        transactions = [_hex(tx) for tx in self.by_namespace.get(namespace, ())]
        proof = self.table.proof(namespace)
        tail = msgspec.json.encode(
            {
                "transactions": transactions,
                "proof": {
                    "namespace": proof.namespace,
                    "size": proof.size,
                    "present": _entry_json(proof.present),
                    "below": _entry_json(proof.below),
                    "above": _entry_json(proof.above),
                },
            }
        )
        # tail is `{"transactions":..,"proof":..}`: spliced after the namespace.
        middle = b"" if order is None else b'"order":' + order + b","
        return (self.head + middle + b'"namespace":%d,' % namespace + tail[1:]).decode()


def order_json(seed: bytes, proof: bytes) -> dict[str, Any] | None:
    """A block's `order` field: its order seed and the t coin shares it was
    combined from (fairness/order_proof.py); None if the stored proof does
    not decode (a damaged store: the message then carries no order)."""
    try:
        shares = decode_order_proof(proof)
    except MalformedOrderProof:
        log.error("event=order_proof_unreadable seed=%s", seed.hex()[:12])
        return None
    return {
        "seed": _hex(seed),
        "shares": [
            {"index": s.index, "value": _hex(s.value), "e": _hex(s.e), "f": _hex(s.f)}
            for s in shares
        ],
    }


NO_ORDER = b"null"
"""The `order` field of a block that draws no order seed on a chain with a
threshold key: its order is the same for every seed (no envelope, at most one
non-forced sender), so the block has no seed and no proof. A block message
sent before that was known is completed by an order message with this
`order`."""


def order_message(height: int, order: bytes) -> str:
    """The message that completes a block message sent without its order:
    `{"type":"order","height":..,"order":{"seed":..,"shares":[..]}}`, or
    `"order":null` for a block that draws no seed."""
    return (b'{"type":"order","height":%d,"order":' % height + order + b"}").decode()


def build_height_messages(
    block: Block,
    digest: bytes,
    finality: Finality,
    batches: Sequence[bytes],
) -> HeightMessages | None:
    """Pure (no store, no loop): run in a worker thread for large blocks. None
    if a batch does not decode. The block's order, on a chain with a threshold
    key, is spliced in per message (`HeightMessages.message`)."""
    found = namespaced_transactions(list(batches))
    if found is None:
        return None
    by_namespace: dict[int, list[bytes]] = {}
    for namespace, _, tx in found:
        by_namespace.setdefault(namespace, []).append(tx)
    table = NamespaceTable((namespace, h) for namespace, h, _ in found)
    document: dict[str, Any] = {
        "type": "block",
        "height": block.height,
        "block": {
            "view": block.view,
            "height": block.height,
            "parent": _hex(block.parent),
            "proposer": block.proposer,
            "payload": _hex(block.payload),
            "hash": _hex(digest),
        },
    }
    if isinstance(finality, DescendantFinality):
        document["certificate"] = None
        document["finalized_by"] = finality.json()
    else:
        document["certificate"] = certificate_json(finality)
    head = msgspec.json.encode(document)[:-1] + b","  # the namespace and the rest follow
    size = len(head) + sum(len(tx) for _, _, tx in found)
    return HeightMessages(block.height, head, by_namespace, table, size)


class BlockMessages:
    """Builds (and caches) the messages of committed heights: each height's
    shared part once, each (height, namespace) message once, shared by every
    subscriber of it.

    A height is buildable once it is stored, or, with a `feed`, as soon as it
    is decided there with its batches (`DecidedBlock`) and the certificate
    that committed it can prove it (`_decided_finality`): inclusion is
    provable then, before the block executes. Its order comes from the feed
    (known before the block executes) or the store."""

    def __init__(
        self,
        store: NodeStore,
        schedule: EpochSchedule | None = None,
        epoch_end_proof: EpochEndProofSource = no_epoch_end_proof,
        feed: CommitFeed | None = None,
    ) -> None:
        self.store = store
        self.schedule = schedule
        self.epoch_end_proof = epoch_end_proof
        self.feed = feed
        self._heights: OrderedDict[int, HeightMessages] = OrderedDict()
        self._height_bytes = 0
        self._building: dict[int, trio.Event] = {}
        self._orders: OrderedDict[int, bytes] = OrderedDict()
        self._order_frames: OrderedDict[int, TextFrame] = OrderedDict()
        self._messages: OrderedDict[tuple[int, int, bool], TextFrame] = OrderedDict()
        self._message_bytes = 0
        self._headers: OrderedDict[int, tuple[dict[str, Any], bytes]] = OrderedDict()
        self.heights_built = 0

    async def _height(self, height: int) -> HeightMessages | None:
        while True:
            cached = self._heights.get(height)
            if cached is not None:
                return cached
            pending = self._building.get(height)
            if pending is None:
                break
            await pending.wait()  # another subscriber is building it: share that
        done = self._building[height] = trio.Event()
        try:
            built = await self._build(height)
        finally:
            del self._building[height]
            done.set()
        if built is not None:
            self._keep_height(built)
        return built

    def height_now(self, height: int) -> HeightMessages | None:
        """The shared part of a height if it can be had without waiting: cached,
        or built here and now when provable and smaller than
        BUILD_IN_THREAD_MIN_BYTES; None otherwise (`_height` gets it then);
        NoOwnCertificate as `finality_of`."""
        cached = self._heights.get(height)
        if cached is not None or height in self._building:
            return cached
        inputs = self._inputs(height)
        if inputs is None or _batch_bytes(inputs[3]) >= BUILD_IN_THREAD_MIN_BYTES:
            return None
        built = build_height_messages(*inputs)
        if built is not None:
            self._keep_height(built)
        return built

    def _keep_height(self, built: HeightMessages) -> None:
        self.heights_built += 1
        self._heights[built.height] = built
        self._height_bytes += built.size
        while len(self._heights) > 1 and (
            len(self._heights) > CACHED_BLOCKS or self._height_bytes > CACHED_BLOCK_TX_BYTES
        ):
            self._height_bytes -= self._heights.popitem(last=False)[1].size

    async def _build(self, height: int) -> HeightMessages | None:
        inputs = self._inputs(height)
        if inputs is None:
            return None
        return await self._build_from(*inputs)

    def _inputs(self, height: int) -> tuple[Block, bytes, Finality, Sequence[bytes]] | None:
        """What a height's shared part is built from (`build_height_messages`):
        None while it cannot be proven here yet."""
        block = self.store.block_at(height)
        if block is None:
            decided = None if self.feed is None else self.feed.decided_blocks.get(height)
            if decided is None:
                return None
            digest = decided.block.digest()
            early = self._decided_finality(decided.block, digest, decided.certificate)
            if early is None:
                return None
            return decided.block, digest, early, decided.batches
        digest = block.digest()
        finality = finality_of(
            self.store,
            block,
            digest,
            self._header,
            schedule=self.schedule,
            epoch_end_proof=self.epoch_end_proof,
        )
        if finality is None:
            return None
        batches = _stored_batches(self.store, block)
        if batches is None:
            return None
        return block, digest, finality, batches

    def _decided_finality(
        self, block: Block, digest: bytes, certificate: Certificate
    ) -> Finality | None:
        """How a decided block not stored yet is shown final: the certificate
        that committed it, its own, or a descendant's with the headers of the
        decided (or stored) blocks in between, each the parent of the next.
        None while one of them is not decided here yet, and for a descendant
        beyond the block's epoch or MAX_FINALITY_CHAIN above it (the block is
        proven from the store once stored, `finality_of`)."""
        if certificate.height == block.height:
            return certificate if certificate.block == digest else None
        top = certificate.height
        if not block.height < top <= block.height + MAX_FINALITY_CHAIN:
            return None
        if self.schedule is not None:
            last_height = self.schedule.last_height(self.schedule.epoch_of(block.height).number)
            if last_height is not None and top > last_height:
                return None
        assert self.feed is not None
        chain: list[dict[str, Any]] = []
        below = digest
        for height in range(block.height + 1, top + 1):
            decided = self.feed.decided_blocks.get(height)
            above = decided.block if decided is not None else self.store.block_at(height)
            if above is None or above.parent != below:
                return None
            below = above.digest()
            chain.append(header_json(above))
        if below != certificate.block:
            return None
        chain.reverse()
        return DescendantFinality(certificate, tuple(chain))

    async def _build_from(
        self, block: Block, digest: bytes, finality: Finality, batches: Sequence[bytes]
    ) -> HeightMessages | None:
        if _batch_bytes(batches) >= BUILD_IN_THREAD_MIN_BYTES:
            return await trio.to_thread.run_sync(
                build_height_messages, block, digest, finality, batches
            )
        return build_height_messages(block, digest, finality, batches)

    def order(self, height: int) -> tuple[bytes | None, bool]:
        """The JSON of a height's `order` field, and whether the height is done
        waiting for it: (order, True) once known; (`null`, True) for a block
        that draws no seed on a chain with a threshold key (its order is the
        same for every seed: fairness/order.py `needs_order_seed`); (None,
        True) for a stored height without one on a chain without a threshold
        key; (None, False) while a decided height's order is not known yet (on
        a chain without a threshold key, the feed expects none and says done)."""
        cached = self._orders.get(height)
        if cached is not None:
            return cached, True
        keyed = self.feed is not None and self.feed.orders_expected
        if self.feed is not None and height > self.feed.height:  # not stored yet
            if height not in self.feed.orders:
                return None, not keyed
            found = self.feed.orders[height]
            if found is None:
                return NO_ORDER, True
        else:
            seed, proof = self.store.order_seed_at(height), self.store.order_proof_at(height)
            if seed is None:
                # Stored without one: a block that drew no seed, or a chain
                # without a threshold key (the message then has no `order`).
                return (NO_ORDER if keyed else None), True
            if proof is None:
                return None, True  # committed before proofs were kept: no `order`
            found = (seed, proof)
        document = order_json(*found)
        if document is None:
            return None, True  # unreadable in the store: the message carries none
        encoded = msgspec.json.encode(document)
        self._orders[height] = encoded
        while len(self._orders) > CACHED_BLOCKS:
            self._orders.popitem(last=False)
        return encoded, True

    def _header(self, height: int) -> tuple[dict[str, Any], bytes] | None:
        """A committed block's (header JSON, digest), kept for the next height's
        descendant proof (committed blocks never change)."""
        cached = self._headers.get(height)
        if cached is not None:
            self._headers.move_to_end(height)
            return cached
        found = _read_header(self.store, height)
        if found is not None:
            self._headers[height] = found
            while len(self._headers) > CACHED_HEADERS:
                self._headers.popitem(last=False)
        return found

    async def message(self, height: int, namespace: int) -> str | None:
        """The JSON text for (height, namespace), its order included: None
        while the block is not stored here (or a batch of it, or the
        descendant proving it, is not held); NoOwnCertificate for a block
        committed under a descendant's certificate held too far above it
        (`finality_of`)."""
        if self.store.block_at(height) is None:
            return None
        found = await self.early_message(height, namespace)
        return None if found is None else found[0].text

    async def early_message(self, height: int, namespace: int) -> tuple[TextFrame, bool] | None:
        """(message, complete) for (height, namespace) as soon as its inclusion is
        provable: stored, or decided here (`BlockMessages`). `complete` is
        False when the text lacks an order the height will have
        (`order_message` follows); None and NoOwnCertificate as `message`."""
        order, done = self.order(height)
        key = (height, namespace, order is not None)
        cached = self._messages.get(key)
        if cached is not None:
            return cached, done
        shared = await self._height(height)
        if shared is None:
            return None
        if order is None:
            order, done = self.order(height)  # known meanwhile: inline it
            key = (height, namespace, order is not None)
        return self._framed(shared, namespace, order, done)

    def message_now(self, height: int, namespace: int) -> tuple[TextFrame, bool] | None:
        """`early_message` without waiting: None also when the height's shared
        part cannot be had at once (`height_now`)."""
        order, done = self.order(height)
        cached = self._messages.get((height, namespace, order is not None))
        if cached is not None:
            return cached, done
        shared = self.height_now(height)
        if shared is None:
            return None
        return self._framed(shared, namespace, order, done)

    def _framed(
        self, shared: HeightMessages, namespace: int, order: bytes | None, done: bool
    ) -> tuple[TextFrame, bool]:
        key = (shared.height, namespace, order is not None)
        cached = self._messages.get(key)  # built by another task meanwhile
        if cached is not None:
            return cached, done
        built = TextFrame.of(shared.message(namespace, order))
        self._messages[key] = built
        self._message_bytes += len(built.frame)
        while len(self._messages) > 1 and (
            len(self._messages) > CACHED_MESSAGES or self._message_bytes > CACHED_MESSAGE_BYTES
        ):
            self._message_bytes -= len(self._messages.popitem(last=False)[1].frame)
        return built, done

    def order_message(self, height: int) -> str | None:
        """The order message of a height sent without its order; None while
        unknown."""
        found = self.order_frame(height)
        return None if found is None else found.text

    def order_frame(self, height: int) -> TextFrame | None:
        """`order_message` framed, once per height for every subscriber."""
        cached = self._order_frames.get(height)
        if cached is not None:
            return cached
        order, _ = self.order(height)
        if order is None:
            return None
        built = TextFrame.of(order_message(height, order))
        self._order_frames[height] = built
        while len(self._order_frames) > CACHED_BLOCKS:
            self._order_frames.popitem(last=False)
        return built


@dataclass(eq=False)
class _BlockSubscriber:
    """One open block subscription, as the lag check and the feed's push see it."""

    next_height: int
    live: bool
    """Caught up once: only then does trailing the tip count against the queue."""
    sending: trio.CancelScope
    sender: FramedSender
    namespace: int
    sent_at: float
    """When its last message went out (trio clock): a ping follows only
    PING_INTERVAL_S without one."""
    too_slow: bool = False
    order_later: bool = False
    """The subscriber asked for each block as soon as its inclusion is provable
    (`order=later`), its order in a message of its own when not known yet."""
    owed: deque[int] = field(default_factory=deque)
    """Heights sent without their order, lowest first: each one's order
    message is sent, in this order, as soon as it is known."""
    parked: bool = False
    """Its task waits, idle, with nothing it could send when it last looked:
    the feed's changes are then pushed to it without waking the task
    (`Subscriptions._push`)."""
    changed: trio.Event = field(default_factory=trio.Event)
    """Set when its task must look again (`wake`)."""

    def resume_height(self) -> int:
        """Where a reconnect picks up: the lowest height not delivered whole."""
        return self.owed[0] if self.owed else self.next_height

    def may_send(self, complete: bool) -> bool:
        """Whether a height's message may go: with its order, or to a subscriber
        that asked for `order=later`."""
        return complete or self.order_later

    def sent_height(self, height: int, complete: bool) -> None:
        """Its message for `height` went out; without its order, the order is owed."""
        self.next_height = height + 1
        if not complete:
            self.owed.append(height)

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


def parse_namespace(raw: str | None) -> int:
    if raw is None:
        raise BadQuery("namespace is required (a uint32)")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise BadQuery("namespace must be a decimal uint32")
    value = int(raw)
    if value > MAX_NAMESPACE:
        raise BadQuery("namespace must be a decimal uint32")
    return value


def parse_order(raw: str | None) -> bool:
    """`order=later`: a block goes out before its order is known; `inline` (the
    default): each block message waits for its order and carries it."""
    if raw is None or raw == "inline":
        return False
    if raw == "later":
        return True
    raise BadQuery("order must be inline or later")


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
        schedule: EpochSchedule | None = None,
        epoch_end_proof: EpochEndProofSource = no_epoch_end_proof,
    ) -> None:
        """`schedule`: the genesis's validator-set epochs (None: one set for
        the whole chain); `epoch_end_proof`: the node's stored epoch-end proofs
        (`finality_of`)."""
        self.store = store
        self.mempool = mempool
        self.feed = feed
        self.limits = limits
        self.receipt = receipt
        self.messages = BlockMessages(store, schedule, epoch_end_proof, feed)
        self.open = 0
        self.open_by_client: dict[str, int] = {}
        self.dropped_slow = 0
        self._block_subscribers: set[_BlockSubscriber] = set()
        feed.on_announce(self._drop_laggards)
        feed.on_change(self._feed_changed)
        self.pushed = 0
        """Messages written by `_push` (without waking a subscriber's task)."""

    def _tip(self) -> int:
        """The highest height decided here (stored, or decided and not yet executed)."""
        return max(self.feed.decided_height, self.store.tip()[0])

    def _drop_laggards(self, tip: int) -> None:
        queue = self.limits.queue
        for subscriber in self._block_subscribers:
            if subscriber.live and tip - subscriber.next_height + 1 > queue:
                subscriber.too_slow = True
                subscriber.sending.cancel()

    def _feed_changed(self) -> None:
        """At each change of the feed (never waits): what a parked subscriber
        can be sent now is written to its socket here, in one pass over the
        subscribers, with no task woken; every other subscriber's task is
        woken to look for itself."""
        failed = False
        for subscriber in self._block_subscribers:
            if subscriber.parked and not subscriber.too_slow:
                try:
                    if self._push(subscriber):
                        continue
                except Exception:  # never into the commit pipeline: the task looks
                    if not failed:
                        log.exception("event=subscriber_push_failed")
                    failed = True
            subscriber.wake()

    def _push(self, subscriber: _BlockSubscriber) -> bool:
        """Send a parked subscriber what it is owed and can be sent at once, as its
        task would (its order messages first, then its next heights, in order),
        each message written whole to the socket without waiting. True if that
        leaves nothing for its task to do now; False when its task must run: a
        message the socket did not take whole, a height whose message needs a
        wait (built in a worker thread, or not provable yet), a connection
        without the direct path or gone."""
        sender = subscriber.sender
        tip = self._tip()
        try:
            while True:
                due = self._due(subscriber, tip)
                if due is None:
                    return True
                if isinstance(due, TextFrame):
                    if not sender.send_at_once(due):
                        return False
                    subscriber.owed.popleft()
                else:
                    found = self.messages.message_now(due, subscriber.namespace)
                    if found is None:
                        return False
                    message, complete = found
                    if not subscriber.may_send(complete):
                        return True  # the message waits for its order: a change of the feed
                    if not sender.send_at_once(message):
                        return False
                    subscriber.sent_height(due, complete)
                self._pushed(subscriber)
                if sender.has_pending():
                    return False  # its task writes the rest
        except (NoOwnCertificate, WebSocketDisconnect):
            return False

    def _due(self, subscriber: _BlockSubscriber, tip: int) -> TextFrame | int | None:
        """What a subscriber is sent next, the one rule its task and `_push`
        follow: the order message of its lowest owed height once that order is
        known (owed orders first, in height order), else its next height if
        decided here (at most `tip`), else nothing yet (None)."""
        owed = subscriber.owed
        if owed:
            order = self.messages.order_frame(owed[0])
            if order is not None:
                return order
        height = subscriber.next_height
        return height if height <= tip else None

    def _pushed(self, subscriber: _BlockSubscriber) -> None:
        subscriber.sent_at = trio.current_time()
        self.pushed += 1

    async def refuse(self, websocket: WebSocket, code: int, reason: str) -> None:
        """Accept, then close with `code`: a close before the handshake completes
        would reach the client as a bare HTTP 403, without the code."""
        try:
            await websocket.accept()
            with trio.move_on_after(SEND_TIMEOUT_S):
                await websocket.close(code=code, reason=reason)
        except WebSocketDisconnect:
            pass

    def _admit(self, websocket: WebSocket) -> str | None:
        """Count a new subscription in; the reason to refuse it (4429) if a cap is
        reached: the node's or its remote address's."""
        if self.open >= self.limits.max_subscribers:
            return "too many subscribers; retry later"
        client = websocket.client.host if websocket.client is not None else ""
        if self.open_by_client.get(client, 0) >= self.limits.max_per_client:
            return (
                f"too many subscriptions from this address (at most "
                f"{self.limits.max_per_client}); retry later"
            )
        self.open += 1
        self.open_by_client[client] = self.open_by_client.get(client, 0) + 1
        return None

    def _release(self, websocket: WebSocket) -> None:
        client = websocket.client.host if websocket.client is not None else ""
        self.open -= 1
        left = self.open_by_client[client] - 1
        if left:
            self.open_by_client[client] = left
        else:
            del self.open_by_client[client]

    async def blocks(self, websocket: WebSocket) -> None:
        try:
            namespace = parse_namespace(websocket.query_params.get("namespace"))
            start = parse_from(websocket.query_params.get("from"), self._tip() + 1)
            order_later = parse_order(websocket.query_params.get("order"))
        except BadQuery as exc:
            await self.refuse(websocket, CLOSE_BAD_QUERY, str(exc))
            return
        await self._admitted(
            websocket,
            lambda: self._serve_blocks(sender_for(websocket), namespace, start, order_later),
        )

    async def _admitted(self, websocket: WebSocket, serve: Callable[[], Awaitable[None]]) -> None:
        """Admit a subscription (4429 beyond the limits), accept it, run `serve`
        until it returns or the client goes away, and release its place."""
        refusal = self._admit(websocket)
        if refusal is not None:
            await self.refuse(websocket, CLOSE_FULL, refusal)
            return
        try:
            await websocket.accept()
            await serve()
        except WebSocketDisconnect:
            pass
        finally:
            self._release(websocket)

    async def _serve_blocks(
        self, sender: FramedSender, namespace: int, start: int, order_later: bool = False
    ) -> None:
        """One task per subscriber: send each height from `start` on as soon as
        it is decided here and its order known, or with `order_later` as soon as
        its inclusion is provable, and then each height sent without its order
        the order message once known (in height order, before anything else
        ready); wait for the feed's next change when nothing is ready.
        `_drop_laggards` cancels its sending when it falls too far behind."""
        # History first: the queue counts once caught up.
        subscriber = _BlockSubscriber(
            start,
            start > self._tip(),
            trio.CancelScope(),
            sender,
            namespace,
            trio.current_time(),
            order_later=order_later,
        )
        no_certificate = ""
        waiting_since: float | None = None
        self._block_subscribers.add(subscriber)
        try:
            with subscriber.sending:
                while True:
                    subscriber.parked = False
                    await sender.flush()  # the rest of a message `_push` began
                    # Taken before looking: a change meanwhile wakes this task,
                    # which is not parked.
                    changed = subscriber.changed
                    due = self._due(subscriber, self._tip())
                    if isinstance(due, TextFrame):
                        await sender.send(due)
                        subscriber.owed.popleft()
                        subscriber.sent_at = trio.current_time()
                        continue
                    if due is None:
                        subscriber.live = True
                        # Nothing to send: what the feed brings next is pushed
                        # without waking this task, unless it needs it.
                        subscriber.parked = True
                        with trio.move_on_at(subscriber.sent_at + PING_INTERVAL_S):
                            await changed.wait()
                        subscriber.parked = False
                        if trio.current_time() - subscriber.sent_at >= PING_INTERVAL_S:
                            await sender.send(PING)
                            subscriber.sent_at = trio.current_time()
                        continue
                    height = due
                    try:
                        found = await self.messages.early_message(height, namespace)
                    except NoOwnCertificate as exc:
                        now = trio.current_time()
                        if waiting_since is None:
                            waiting_since = now
                        if now - waiting_since >= LATE_CERTIFICATE_WAIT_S:
                            no_certificate = str(exc)
                            log.info("event=subscription_no_certificate %s", exc)
                            break
                        found = None
                    if found is not None and not subscriber.may_send(found[1]):
                        found = None  # the whole message waits for the block's order
                    if found is None:
                        # Not provable yet (a batch, a descendant's commit, the
                        # order): look again at the next change of the feed or
                        # after a while.
                        with trio.move_on_after(CERTIFICATE_POLL_S):
                            await changed.wait()
                        continue
                    waiting_since = None
                    message, complete = found
                    await sender.send(message)
                    subscriber.sent_at = trio.current_time()
                    subscriber.sent_height(height, complete)
        finally:
            self._block_subscribers.discard(subscriber)
        websocket = sender.websocket
        next_height = subscriber.next_height
        if no_certificate:
            await websocket.close(
                code=CLOSE_NO_CERTIFICATE,
                reason=(
                    f"no finalization certificate of height {next_height} here; "
                    f"resume elsewhere from height {next_height}"
                ),
            )
            return
        if subscriber.too_slow:
            self.dropped_slow += 1
            resume = subscriber.resume_height()
            log.info("event=subscriber_too_slow namespace=%d resume_height=%d", namespace, resume)
            with trio.move_on_after(SEND_TIMEOUT_S):
                await websocket.close(
                    code=CLOSE_TOO_SLOW, reason=f"too slow; resume from height {resume}"
                )

    async def block_document(self, height: int, namespace: int) -> dict[str, Any] | None:
        """One block's message; None if not committed here; NoOwnCertificate."""
        text = await self.messages.message(height, namespace)
        return None if text is None else msgspec.json.decode(text)

    # ---- executed height ----------------------------------------------------------

    def executed_height(self) -> int:
        """The highest height executed and stored here (what `/v1/status` reports
        as `height`)."""
        return max(self.feed.height, self.store.tip()[0])

    async def executed(self, websocket: WebSocket) -> None:
        """`WS /v1/subscribe/executed`: `{"type":"executed","height":H}` at once,
        then whenever the executed height advances (the feed's `announce`, which
        follows execution and storage), the newest height only: a reader that
        falls behind is sent the latest height, never a backlog. A ping after
        PING_INTERVAL_S without a message. Written as block messages are
        (framed_send.py): whole frames straight to the connection, under its
        write deadline, and a connection found gone ends the subscription."""
        await self._admitted(websocket, lambda: self._serve_executed(sender_for(websocket)))

    async def _serve_executed(self, sender: FramedSender) -> None:
        sent = -1
        sent_at = trio.current_time()
        while True:
            # Taken before looking: a change after the look sets it.
            changed = self.feed.changed()
            height = self.executed_height()
            if height > sent:
                await sender.send(TextFrame.of(f'{{"type":"executed","height":{height}}}'))
                sent, sent_at = height, trio.current_time()
                continue
            # CERTIFICATE_POLL_S: a store nobody announces to is looked at again.
            now = trio.current_time()
            with trio.move_on_at(min(sent_at + PING_INTERVAL_S, now + CERTIFICATE_POLL_S)):
                await changed.wait()
            if trio.current_time() - sent_at >= PING_INTERVAL_S:
                await sender.send(PING)
                sent_at = trio.current_time()

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
        await self._admitted(websocket, lambda: self._serve_transaction(websocket, h))

    async def _serve_transaction(self, websocket: WebSocket, h: bytes) -> None:
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
