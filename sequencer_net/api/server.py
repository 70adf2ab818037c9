"""The validator's HTTP API (Starlette on hypercorn's HTTP code, trio).

Endpoints (docs/api.md has the full reference):
- POST /v1/transactions           one raw encoded signed transaction
- POST /v1/transactions/batch     {"transactions": ["0x..", ...]}
- GET  /v1/transactions/{hash}    pending / committed (height, index)
- GET  /v1/status                 height, last hash, view, state root, peers, ...
- GET  /v1/blocks/{height}        a committed block with its transactions
- GET  /v1/evidence               equivocation evidence this node has seen (signed votes)
- GET  /metrics                   Prometheus text
- POST /v1/admin/network          {"connected": bool}: cut or restore validator links
                                  (needs the admin token; off without one)

A transaction is acknowledged (200 with its hash) only after it is durably
stored: a crash right after the answer loses nothing.

The handlers are thin: what a request may cost (body size, body time, bodies
in flight) is bounded before they run by request_guard.RequestGuard, admin
authentication is admin_auth.AdminAuth, connections are capped in
http_server, parsing of inputs is in inputs.py and every error answer is
errors.ApiError's JSON.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from consensus.messages import Vote, VoteKind
from sequencer_net.api.admin_auth import ADMIN_PREFIX, AdminAuth
from sequencer_net.api.errors import (
    ApiError,
    api_error_handler,
    bad_request,
    error_response,
    http_exception_handler,
    internal_error_handler,
)
from sequencer_net.api.http_server import serve_api
from sequencer_net.api.inputs import (
    parse_height,
    parse_hex,
    parse_json_object,
    parse_tx_hash,
    require,
)
from sequencer_net.api.limits import (
    MAX_BATCH_BODY_BYTES,
    MAX_BATCH_SUBMISSION,
    MAX_SMALL_BODY_BYTES,
    MAX_TX_BODY_BYTES,
    UNBUDGETED_BODY_BYTES,
)
from sequencer_net.api.options import ApiOptions
from sequencer_net.api.request_guard import BodyCaps, GuardLimits, RequestGuard
from sequencer_net.mempool.mempool import AddResult, Mempool
from sequencer_net.mempool.transaction import InvalidTransaction
from sequencer_net.metrics import Metrics
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

_REJECT_STATUS = {
    AddResult.DUPLICATE: 409,
    AddResult.NONCE_TOO_LOW: 400,
    AddResult.NONCE_TOO_HIGH: 400,
    AddResult.NONCE_TAKEN: 409,
    AddResult.FULL: 503,
}
_BATCH_SHAPE = '{"transactions": ["0x..", ...]}'
_NETWORK_SHAPE = '{"connected": true|false}'


@dataclass
class ApiContext:
    """What the API reads and calls; node.py fills it in."""

    mempool: Mempool
    store: NodeStore
    metrics: Metrics
    status: Callable[[], dict[str, Any]]
    accepted_at: dict[bytes, float]
    set_connected: Callable[[bool], None]
    validator_address: Callable[[int], bytes | None] = lambda index: None
    """The address of validator `index` (for evidence answers)."""


MAX_EVIDENCE_ANSWER = 1000
"""Evidence records in one /v1/evidence answer (the store keeps up to 10,000)."""


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


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
    record: EvidenceRecord, address_of: Callable[[int], bytes | None]
) -> dict[str, Any]:
    """Both signed votes, so anyone can check them against the validator's key."""
    address = address_of(record.offender)
    return {
        "offender": record.offender,
        "offender_address": None if address is None else _hex(address),
        "view": record.first.view,
        "reason": record.reason,
        "first": _vote_json(record.first),
        "second": _vote_json(record.second),
    }


def build_app(ctx: ApiContext, options: ApiOptions | None = None) -> Starlette:
    options = options or ApiOptions()

    def admit(encoded: bytes) -> bytes:
        """Check and add one transaction to the mempool; raise ApiError."""
        try:
            checked = ctx.mempool.check(encoded)
        except InvalidTransaction as exc:
            ctx.metrics.rejected_txs.labels(code=type(exc).__name__).inc()
            raise ApiError(400, "invalid_transaction", str(exc)) from None
        result = ctx.mempool.add(checked, now_ms=time.monotonic_ns() // 1_000_000)
        if result is not AddResult.ACCEPTED:
            ctx.metrics.rejected_txs.labels(code=result.name.lower()).inc()
            raise ApiError(_REJECT_STATUS[result], result.name.lower(), result.value)
        return checked.hash

    def persist_then_ack(hashes: list[bytes], encoded: list[bytes]) -> None:
        # Persist before you promise: the answer goes out only after this returns.
        ctx.store.save_pending_transactions(encoded)
        now = time.monotonic()
        for h in hashes:
            ctx.accepted_at[h] = now
        ctx.metrics.accepted_txs.inc(len(hashes))

    async def submit(request: Request) -> Response:
        body = await request.body()  # bounded by RequestGuard
        if not body:
            raise bad_request("empty body: send the encoded transaction")
        h = admit(body)
        persist_then_ack([h], [body])
        return JSONResponse({"hash": _hex(h)})

    async def submit_batch(request: Request) -> Response:
        document = parse_json_object(await request.body(), _BATCH_SHAPE)
        items = require(document, "transactions", list, _BATCH_SHAPE)
        if len(items) > MAX_BATCH_SUBMISSION:
            raise ApiError(413, "too_large", f"at most {MAX_BATCH_SUBMISSION} per request")
        results: list[dict[str, str]] = []
        accepted: list[bytes] = []
        encoded_ok: list[bytes] = []
        for item in items:
            try:
                encoded = parse_hex(item, "transaction")
                h = admit(encoded)
            except ApiError as exc:
                results.append({"error": exc.message, "code": exc.code})
                continue
            accepted.append(h)
            encoded_ok.append(encoded)
            results.append({"hash": _hex(h)})
        if accepted:
            persist_then_ack(accepted, encoded_ok)
        return JSONResponse({"results": results})

    async def transaction(request: Request) -> Response:
        h = parse_tx_hash(request.path_params["hash"])
        found = ctx.store.find_transaction(h)
        if found is not None:
            height, index = found
            return JSONResponse(
                {"hash": _hex(h), "status": "committed", "height": height, "index": index}
            )
        if h in ctx.mempool:
            return JSONResponse({"hash": _hex(h), "status": "pending"})
        return error_response(404, "not_found", "unknown transaction")

    async def status(request: Request) -> Response:
        return JSONResponse(ctx.status())

    async def block(request: Request) -> Response:
        height = parse_height(request.path_params["height"])
        found = ctx.store.block_at(height) if height >= 1 else None
        if found is None:
            return error_response(404, "not_found", f"no committed block at height {height}")
        txs = ctx.store.transactions_at(height)
        root = ctx.store.state_root_at(height)
        return JSONResponse(
            {
                "height": found.height,
                "view": found.view,
                "hash": _hex(found.digest()),
                "parent": _hex(found.parent),
                "proposer": found.proposer,
                "payload": _hex(found.payload),
                "state_root": _hex(root) if root else None,
                "transactions": [_hex(t) for t in txs],
            }
        )

    async def evidence(request: Request) -> Response:
        records = ctx.store.load_evidence(limit=MAX_EVIDENCE_ANSWER)
        answer = [_evidence_json(r, ctx.validator_address) for r in records]
        return JSONResponse({"evidence": answer})

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
        Route("/v1/transactions/{hash}", transaction, methods=["GET"]),
        Route("/v1/status", status, methods=["GET"]),
        Route("/v1/blocks/{height}", block, methods=["GET"]),
        Route("/v1/evidence", evidence, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
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
