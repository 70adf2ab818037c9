"""The validator's HTTP API (Starlette on hypercorn's HTTP code, trio).

Endpoints (docs/api.md has the full reference):
- POST /v1/transactions           one raw encoded signed transaction
- POST /v1/transactions/batch     {"transactions": ["0x..", ...]}, or a msgpack array
                                  of binary transactions (Content-Type: application/msgpack)
- WS   /v1/transactions/stream    msgpack batches over one WebSocket, answered in order
- GET  /v1/transactions/{hash}    pending / committed (height, index, receipt) / dropped
- GET  /v1/status                 height, last hash, view, state root, peers, ...
- GET  /v1/health                 200 while the node commits blocks, 503 once it stalls
- GET  /v1/blocks/{height}        a committed block with its transactions
- GET  /v1/blocks/by-hash/{hash}  the same, found by the block's hash
- GET  /v1/blocks/{height}/namespaces/{namespace}
                                  one namespace of a block, with certificate and proof
- WS   /v1/subscribe/blocks       ?namespace=N&from=H: every finalized block's namespace
- WS   /v1/subscribe/transactions/{hash}   a transaction's status until committed
- WS   /v1/subscribe/executed     the executed height, at once and as it advances
- GET  /v1/validators             the validator set and the signing domain (and, on a
                                  chain that rotates its set, every epoch's)
- GET  /v1/evidence               equivocation evidence this node has seen (signed votes;
                                  on a chain that rotates its set, each names its epoch)
- GET  /v1/views/{view}           the certificates of one consensus view held here
- GET  /v1/markets                every market: prices, last auction, open interest, funding
- GET  /v1/accounts/{address}     an address's subaccounts: collateral, positions, orders, margin
- GET  /v1/proofs/{key}           a state entry and its Merkle proof (the L1 bridge's input)
- GET  /v1/openapi.json           this reference as an OpenAPI 3.1 document (openapi.py)
- GET  /metrics                   Prometheus text
- POST /v1/admin/network          {"connected": bool}: cut or restore validator links
                                  (needs the admin token; off without one)

Every submission goes through intake.Intake (signatures checked off the loop,
admission, group commit): a transaction is acknowledged (200 with its hash)
only after it is durably stored, so a crash right after the answer loses
nothing.

The handlers are thin: what a request may cost (body size, body time, bodies
in flight) is bounded before they run by request_guard.RequestGuard, admin
authentication is admin_auth.AdminAuth, connections are capped in
http_server, parsing of inputs is in inputs.py and every error answer is
errors.ApiError's JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from consensus.epochs import EpochSchedule
from consensus.messages import Block, Vote, VoteKind
from sequencer_net.api.admin_auth import ADMIN_PREFIX, AdminAuth
from sequencer_net.api.errors import (
    ApiError,
    api_error_handler,
    bad_request,
    error_response,
    http_exception_handler,
    internal_error_handler,
)
from sequencer_net.api.health import Health
from sequencer_net.api.http_server import serve_api
from sequencer_net.api.inputs import (
    parse_height,
    parse_json_object,
    parse_tx_hash,
    require,
)
from sequencer_net.api.intake import Intake, Outcome, Refused
from sequencer_net.api.limits import (
    MAX_BATCH_BODY_BYTES,
    MAX_SMALL_BODY_BYTES,
    MAX_TX_BODY_BYTES,
    UNBUDGETED_BODY_BYTES,
)
from sequencer_net.api.markets import MarketSource, market_routes
from sequencer_net.api.openapi import openapi_json
from sequencer_net.api.options import ApiOptions
from sequencer_net.api.proofs import proof_routes
from sequencer_net.api.request_guard import BodyCaps, GuardLimits, RequestGuard
from sequencer_net.api.submission_stream import SubmissionStream
from sequencer_net.api.submissions import (
    MSGPACK,
    encode_msgpack_outcomes,
    json_outcome,
    parse_json_batch,
    parse_msgpack_batch,
)
from sequencer_net.api.subscriptions import (
    CLOSE_BAD_QUERY,
    CommitFeed,
    EpochEndProofSource,
    NoOwnCertificate,
    SubscriptionLimits,
    Subscriptions,
    certificate_json,
    no_epoch_end_proof,
    parse_namespace,
)
from sequencer_net.execution.encoding import NonCanonicalEncoding, decode_canonical
from sequencer_net.execution.fixed_point import format_decimal
from sequencer_net.execution.receipts import Receipt
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.metrics import Metrics
from sequencer_net.payload import MalformedPayload, decode_payload
from sequencer_net.storage.node_store import EvidenceRecord, NodeStore

__all__ = ["BODY_CAPS", "ApiContext", "ApiOptions", "build_app", "serve_api"]

log = logging.getLogger("seqnet.api")

BODY_CAPS = BodyCaps(
    by_route={
        ("POST", "/v1/transactions"): MAX_TX_BODY_BYTES,
        ("POST", "/v1/transactions/batch"): MAX_BATCH_BODY_BYTES,
    },
    default=MAX_SMALL_BODY_BYTES,
)
"""The body cap of each endpoint (limits.py gives the reasons)."""

_NETWORK_SHAPE = '{"connected": true|false}'


@dataclass
class ApiContext:
    """What the API reads and calls; node.py fills it in."""

    mempool: Mempool
    intake: Intake
    store: NodeStore
    metrics: Metrics
    status: Callable[[], dict[str, Any]]
    set_connected: Callable[[bool], None]
    validator_address: Callable[[int], bytes | None] = lambda index: None
    """The address of validator `index` of epoch 0 (for evidence answers)."""
    epoch_validator_address: Callable[[int, int], bytes | None] | None = None
    """The address of validator `index` of epoch `epoch` (arguments: epoch, index),
    for evidence of any epoch; None: `validator_address` for epoch 0, and no
    address for a later epoch's offender."""
    markets: MarketSource | None = None
    """The executed engine state and market counters behind /v1/markets and
    /v1/accounts (markets.py); None answers those 503."""
    commit_feed: CommitFeed | None = None
    """Committed heights, announced by the commit pipeline (subscriptions.py);
    None: a feed nobody announces to (subscribers see only what is stored)."""
    validators: Callable[[], dict[str, Any]] | None = None
    """The /v1/validators document; None answers it 503."""
    schedule: EpochSchedule | None = None
    """The genesis's validator-set epochs (subscriptions prove a block only
    within its epoch); None: one set for the whole chain."""
    epoch_end_proof: EpochEndProofSource = no_epoch_end_proof
    """The stored proof that an epoch ended, by epoch: what proves an epoch's
    last blocks when only its tail's finalization committed them."""


MAX_EVIDENCE_ANSWER = 1000
"""Evidence records in one /v1/evidence answer, of all epochs together (the store
keeps up to 10,000)."""


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def receipt_json(executed: bytes, index: int) -> dict[str, Any] | None:
    """The engine's receipt of the block's `index`-th transaction, from the
    block's stored execution output (a msgpack array of Receipts); None when
    the node stored none. Only that one receipt is decoded."""
    try:
        raws = msgspec.msgpack.decode(executed, type=list[msgspec.Raw])
        if not 0 <= index < len(raws):
            return None
        receipt = decode_canonical(bytes(raws[index]), Receipt)
    except (msgspec.DecodeError, msgspec.ValidationError, NonCanonicalEncoding):
        return None
    return {
        "success": receipt.success,
        "error": receipt.error or None,
        "reason": receipt.reason or None,
        "fee": format_decimal(receipt.fee, trim=True),
    }


def _vote_json(vote: Vote) -> dict[str, Any]:
    return {
        "kind": VoteKind(vote.kind).name.lower(),
        "view": vote.view,
        "height": vote.height,
        "block": _hex(vote.block),
        "signer": vote.signer,
        "signature": _hex(vote.signature),
    }


def _evidence_json(
    record: EvidenceRecord, address: bytes | None, epoch: int | None
) -> dict[str, Any]:
    """Both signed votes, so anyone can check them against the validator's key
    (in the separator of `epoch`; None: a chain of one epoch, whose answer names
    none)."""
    answer: dict[str, Any] = {
        "offender": record.offender,
        "offender_address": None if address is None else _hex(address),
        "view": record.first.view,
        "reason": record.reason,
        "first": _vote_json(record.first),
        "second": _vote_json(record.second),
    }
    if epoch is not None:
        answer["epoch"] = epoch
    return answer


def evidence_answer(ctx: ApiContext) -> dict[str, Any]:
    """The /v1/evidence document: the stored evidence of every epoch, epoch 0's
    first. Each record names its epoch (an index in that epoch's set, votes in its
    separator) exactly when the chain rotates its set; a chain of one epoch
    answers as it did before epochs existed."""
    rotating = ctx.schedule is not None and len(ctx.schedule) > 1

    def address_of(epoch: int, index: int) -> bytes | None:
        if ctx.epoch_validator_address is not None:
            return ctx.epoch_validator_address(epoch, index)
        return ctx.validator_address(index) if epoch == 0 else None

    records = ctx.store.load_every_epoch_evidence(limit=MAX_EVIDENCE_ANSWER)
    return {
        "evidence": [
            _evidence_json(record, address_of(epoch, record.offender), epoch if rotating else None)
            for epoch, record in records
        ]
    }


def build_app(ctx: ApiContext, options: ApiOptions | None = None) -> Starlette:
    options = options or ApiOptions()

    def client_of(request: Request) -> str:
        return request.client.host if request.client is not None else "unknown"

    def single_answer(outcome: Outcome) -> Response:
        if isinstance(outcome, Refused):
            raise ApiError(outcome.status, outcome.code, outcome.message)
        return JSONResponse({"hash": _hex(outcome.hash)})

    async def submit(request: Request) -> Response:
        body = await request.body()  # bounded by RequestGuard
        if not body:
            raise bad_request("empty body: send the encoded transaction")
        (outcome,) = await ctx.intake.submit([body], client_of(request))
        return single_answer(outcome)

    async def submit_batch(request: Request) -> Response:
        body = await request.body()
        binary = request.headers.get("content-type", "").startswith(MSGPACK)
        items: list[bytes | Refused]
        items = list(parse_msgpack_batch(body)) if binary else parse_json_batch(body)
        outcomes = await ctx.intake.submit(items, client_of(request))
        if binary:
            return Response(encode_msgpack_outcomes(outcomes), media_type=MSGPACK)
        return JSONResponse({"results": [json_outcome(o) for o in outcomes]})

    async def submit_stream(websocket: WebSocket) -> None:
        """A WebSocket of msgpack batches, each answered in order with its outcomes
        (submission_stream.py)."""
        await websocket.accept()
        client = websocket.client.host if websocket.client is not None else "unknown"

        async def submit(batch: list[bytes | Refused]) -> list[Outcome]:
            return await ctx.intake.submit(batch, client)

        try:
            await SubmissionStream(websocket, submit).run()
        except* WebSocketDisconnect:  # the client left (raised inside the stream's nursery)
            pass

    async def transaction(request: Request) -> Response:
        h = parse_tx_hash(request.path_params["hash"])
        found = ctx.store.find_transaction(h)
        if found is not None:
            height, index = found
            answer: dict[str, Any] = {
                "hash": _hex(h),
                "status": "committed",
                "height": height,
                "index": index,
            }
            receipt = receipt_json(ctx.store.executed_at(height), index)
            if receipt is not None:
                answer["receipt"] = receipt
            return JSONResponse(answer)
        if h in ctx.mempool:
            return JSONResponse({"hash": _hex(h), "status": "pending"})
        dropped = ctx.mempool.dropped.get(h)
        if dropped is not None:
            return JSONResponse({"hash": _hex(h), "status": "dropped", "reason": dropped})
        return error_response(404, "not_found", "unknown transaction")

    async def status(request: Request) -> Response:
        return JSONResponse(ctx.status())

    async def block(request: Request) -> Response:
        height = parse_height(request.path_params["height"])
        found = ctx.store.block_at(height) if height >= 1 else None
        if found is None:
            return error_response(404, "not_found", f"no committed block at height {height}")
        return block_answer(found)

    async def block_by_hash(request: Request) -> Response:
        digest = parse_tx_hash(request.path_params["hash"])
        found = ctx.store.block_by_digest(digest)  # committed, or only voted for
        committed = None
        if found is not None and found.height >= 1:
            committed = ctx.store.block_at(found.height)
        if committed is None or committed.digest() != digest:
            return error_response(404, "not_found", f"no committed block with hash {_hex(digest)}")
        return block_answer(committed)

    def block_answer(found: Block) -> Response:
        height = found.height
        txs = ctx.store.transactions_at(height)
        root = ctx.store.state_root_at(height)
        seed = ctx.store.order_seed_at(height)
        forced: list[dict[str, Any]] = []
        try:
            payload = decode_payload(found.payload)
            namespace_root: str | None = _hex(payload.namespace_root)
            forced = [{"index": e.index, "tx_hash": _hex(e.tx_hash)} for e in payload.forced]
        except MalformedPayload:
            namespace_root = None
        return JSONResponse(
            {
                "height": found.height,
                "view": found.view,
                "hash": _hex(found.digest()),
                "parent": _hex(found.parent),
                "proposer": found.proposer,
                "payload": _hex(found.payload),
                "state_root": _hex(root) if root else None,
                "namespace_root": namespace_root,
                "order_seed": _hex(seed) if seed is not None else None,
                "forced": forced,
                "transactions": [_hex(t) for t in txs],
            }
        )

    subscriptions = Subscriptions(
        store=ctx.store,
        mempool=ctx.mempool,
        feed=ctx.commit_feed or CommitFeed(ctx.store.tip()[0]),
        limits=SubscriptionLimits(
            options.subscriber_queue,
            options.max_subscribers,
            options.max_subscriptions_per_client,
        ),
        receipt=lambda height, index: receipt_json(ctx.store.executed_at(height), index),
        schedule=ctx.schedule,
        epoch_end_proof=ctx.epoch_end_proof,
    )

    async def block_namespace(request: Request) -> Response:
        height = parse_height(request.path_params["height"])
        try:
            namespace = parse_namespace(request.path_params["namespace"])
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        try:
            document = (
                await subscriptions.block_document(height, namespace) if height >= 1 else None
            )
        except NoOwnCertificate as exc:
            return error_response(404, "no_certificate", str(exc))
        if document is None:
            return error_response(
                404, "not_found", f"no finalized block at height {height} held here yet"
            )
        return JSONResponse(document)

    async def subscribe_blocks(websocket: WebSocket) -> None:
        await subscriptions.blocks(websocket)

    async def subscribe_executed(websocket: WebSocket) -> None:
        await subscriptions.executed(websocket)

    async def subscribe_transaction(websocket: WebSocket) -> None:
        try:
            h = parse_tx_hash(websocket.path_params["hash"])
        except ApiError as exc:
            await subscriptions.refuse(websocket, CLOSE_BAD_QUERY, exc.message)
            return
        await subscriptions.transaction(websocket, h)

    health_check = Health(height=lambda: ctx.store.tip()[0], stall_s=options.health_stall_s)

    async def health(request: Request) -> Response:
        code, body = health_check.check()
        return JSONResponse(body, status_code=code, headers={"Cache-Control": "no-store"})

    async def validators(request: Request) -> Response:
        if ctx.validators is None:
            return error_response(503, "unavailable", "no validator set behind this API")
        return JSONResponse(ctx.validators())

    async def evidence(request: Request) -> Response:
        return JSONResponse(evidence_answer(ctx))

    async def view_certificates(request: Request) -> Response:
        view = parse_height(request.path_params["view"])
        certs = ctx.store.view_certificates(view)
        return JSONResponse({"view": view, "certificates": [certificate_json(c) for c in certs]})

    async def openapi(request: Request) -> Response:
        return Response(openapi_json(), media_type="application/json")

    async def metrics(request: Request) -> Response:
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    async def admin_network(request: Request) -> Response:
        document = parse_json_object(await request.body(), _NETWORK_SHAPE)
        connected = require(document, "connected", bool, _NETWORK_SHAPE)
        ctx.set_connected(connected)
        return JSONResponse({"connected": connected})

    admin_routes = [Route("/network", admin_network, methods=["POST"])]
    routes = [
        Route("/v1/transactions", submit, methods=["POST"]),
        Route("/v1/transactions/batch", submit_batch, methods=["POST"]),
        WebSocketRoute("/v1/transactions/stream", submit_stream),
        Route("/v1/transactions/{hash}", transaction, methods=["GET"]),
        Route("/v1/status", status, methods=["GET"]),
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/blocks/{height}", block, methods=["GET"]),
        Route("/v1/blocks/by-hash/{hash}", block_by_hash, methods=["GET"]),
        Route("/v1/blocks/{height}/namespaces/{namespace}", block_namespace, methods=["GET"]),
        WebSocketRoute("/v1/subscribe/blocks", subscribe_blocks),
        WebSocketRoute("/v1/subscribe/transactions/{hash}", subscribe_transaction),
        WebSocketRoute("/v1/subscribe/executed", subscribe_executed),
        Route("/v1/validators", validators, methods=["GET"]),
        Route("/v1/evidence", evidence, methods=["GET"]),
        Route("/v1/views/{view}", view_certificates, methods=["GET"]),
        Route("/v1/openapi.json", openapi, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *market_routes(ctx.markets),
        *proof_routes(None if ctx.markets is None else ctx.markets.state, ctx.store.state_root_at),
        Mount(
            ADMIN_PREFIX,
            routes=admin_routes,
            middleware=[Middleware(AdminAuth, token=options.admin_token)],
        ),
    ]
    guard_limits = GuardLimits(
        max_requests=options.max_connections,
        body_budget=options.max_body_buffer_bytes,
        body_timeout_s=options.body_timeout_s,
        small_body=UNBUDGETED_BODY_BYTES,
    )
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestGuard, caps=BODY_CAPS, limits=guard_limits),
        ],
        exception_handlers={
            ApiError: api_error_handler,
            HTTPException: http_exception_handler,
            Exception: internal_error_handler,
        },
    )
    app.router.redirect_slashes = False  # "/v1/status/" is a 404 with a JSON body, not a 307
    return app
