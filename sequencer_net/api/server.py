"""The validator's HTTP API (Starlette on Hypercorn's trio worker).

Endpoints (docs/api.md has the full reference):
- POST /v1/transactions           one raw encoded signed transaction
- POST /v1/transactions/batch     {"transactions": ["0x..", ...]}
- GET  /v1/transactions/{hash}    pending / committed (height, index)
- GET  /v1/status                 height, last hash, view, state root, peers, ...
- GET  /v1/blocks/{height}        a committed block with its transactions
- GET  /metrics                   Prometheus text
- POST /v1/admin/network          {"connected": bool}: cut or restore validator links

A transaction is acknowledged (200 with its hash) only after it is durably
stored: a crash right after the answer loses nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sequencer_net.mempool.mempool import AddResult, Mempool
from sequencer_net.mempool.transaction import InvalidTransaction
from sequencer_net.metrics import Metrics
from sequencer_net.storage.node_store import NodeStore

log = logging.getLogger("seqnet.api")

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Largest request body read; a batch submission of ~30k small transactions."""
MAX_BATCH_SUBMISSION = 10_000
"""Transactions in one /v1/transactions/batch request."""

_REJECT_STATUS = {
    AddResult.DUPLICATE: 409,
    AddResult.NONCE_TOO_LOW: 400,
    AddResult.NONCE_TOO_HIGH: 400,
    AddResult.NONCE_TAKEN: 409,
    AddResult.FULL: 503,
}


@dataclass
class ApiContext:
    """What the API reads and calls; node.py fills it in."""

    mempool: Mempool
    store: NodeStore
    metrics: Metrics
    status: Callable[[], dict[str, Any]]
    accepted_at: dict[bytes, float]
    set_connected: Callable[[bool], None]


class _Rejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status)


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _unhex(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise _Rejected(400, "bad_request", f"{what} must be a 0x-hex string")
    try:
        return bytes.fromhex(text[2:] if text.startswith("0x") else text)
    except ValueError:
        raise _Rejected(400, "bad_request", f"{what} is not valid hex") from None


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _Rejected(413, "too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _Rejected(413, "too_large", f"body exceeds {MAX_BODY_BYTES} bytes")
    return bytes(body)


def build_app(ctx: ApiContext) -> Starlette:
    def admit(encoded: bytes) -> bytes:
        """Check and add one transaction to the mempool; raise _Rejected."""
        try:
            checked = ctx.mempool.check(encoded)
        except InvalidTransaction as exc:
            ctx.metrics.rejected_txs.labels(code=type(exc).__name__).inc()
            raise _Rejected(400, "invalid_transaction", str(exc)) from None
        result = ctx.mempool.add(checked, now_ms=time.monotonic_ns() // 1_000_000)
        if result is not AddResult.ACCEPTED:
            ctx.metrics.rejected_txs.labels(code=result.name.lower()).inc()
            raise _Rejected(_REJECT_STATUS[result], result.name.lower(), result.value)
        return checked.hash

    def persist_then_ack(hashes: list[bytes], encoded: list[bytes]) -> None:
        # Persist before you promise: the answer goes out only after this returns.
        ctx.store.save_pending_transactions(encoded)
        now = time.monotonic()
        for h in hashes:
            ctx.accepted_at[h] = now
        ctx.metrics.accepted_txs.inc(len(hashes))

    async def submit(request: Request) -> Response:
        try:
            body = await _read_body(request)
            if not body:
                raise _Rejected(400, "bad_request", "empty body: send the encoded transaction")
            h = admit(body)
        except _Rejected as exc:
            return _error(exc.status, exc.code, exc.message)
        persist_then_ack([h], [body])
        return JSONResponse({"hash": _hex(h)})

    async def submit_batch(request: Request) -> Response:
        try:
            body = await _read_body(request)
            try:
                document = json.loads(body)
            except ValueError:
                raise _Rejected(400, "bad_request", "body is not JSON") from None
            items = document.get("transactions") if isinstance(document, dict) else None
            if not isinstance(items, list):
                raise _Rejected(400, "bad_request", 'expected {"transactions": ["0x..", ...]}')
            if len(items) > MAX_BATCH_SUBMISSION:
                raise _Rejected(413, "too_large", f"at most {MAX_BATCH_SUBMISSION} per request")
        except _Rejected as exc:
            return _error(exc.status, exc.code, exc.message)
        results: list[dict[str, str]] = []
        accepted: list[bytes] = []
        encoded_ok: list[bytes] = []
        for item in items:
            try:
                encoded = _unhex(item, "transaction")
                h = admit(encoded)
            except _Rejected as exc:
                results.append({"error": exc.message, "code": exc.code})
                continue
            accepted.append(h)
            encoded_ok.append(encoded)
            results.append({"hash": _hex(h)})
        if accepted:
            persist_then_ack(accepted, encoded_ok)
        return JSONResponse({"results": results})

    async def transaction(request: Request) -> Response:
        try:
            h = _unhex(request.path_params["hash"], "hash")
        except _Rejected as exc:
            return _error(exc.status, exc.code, exc.message)
        found = ctx.store.find_transaction(h)
        if found is not None:
            height, index = found
            return JSONResponse(
                {"hash": _hex(h), "status": "committed", "height": height, "index": index}
            )
        if h in ctx.mempool:
            return JSONResponse({"hash": _hex(h), "status": "pending"})
        return _error(404, "not_found", "unknown transaction")

    async def status(request: Request) -> Response:
        return JSONResponse(ctx.status())

    async def block(request: Request) -> Response:
        try:
            height = int(request.path_params["height"])
        except ValueError:
            return _error(400, "bad_request", "height must be an integer")
        found = ctx.store.block_at(height) if height >= 1 else None
        if found is None:
            return _error(404, "not_found", f"no committed block at height {height}")
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

    async def metrics(request: Request) -> Response:
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")

    async def admin_network(request: Request) -> Response:
        client = request.client
        if client is None or client.host not in ("127.0.0.1", "::1"):
            return _error(403, "forbidden", "admin endpoints answer loopback clients only")
        try:
            document = json.loads(await _read_body(request))
            connected = document["connected"]
            if not isinstance(connected, bool):
                raise ValueError
        except (ValueError, KeyError, TypeError, _Rejected):
            return _error(400, "bad_request", 'expected {"connected": true|false}')
        ctx.set_connected(connected)
        return JSONResponse({"connected": connected})

    routes = [
        Route("/v1/transactions", submit, methods=["POST"]),
        Route("/v1/transactions/batch", submit_batch, methods=["POST"]),
        Route("/v1/transactions/{hash}", transaction, methods=["GET"]),
        Route("/v1/status", status, methods=["GET"]),
        Route("/v1/blocks/{height}", block, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/admin/network", admin_network, methods=["POST"]),
    ]
    return Starlette(routes=routes)


async def serve_api(
    app: Starlette,
    host: str,
    port: int,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("seqnet.api.server")
    config.graceful_timeout = 1.0
    shutdown: Callable[[], Awaitable[None]] = trio.sleep_forever
    log.info("event=api_listening host=%s port=%d", host, port)
    await serve(app, config, shutdown_trigger=shutdown, task_status=task_status)  # type: ignore[arg-type]
