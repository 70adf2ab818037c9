"""The API's error answers: one JSON shape, one named exception, no tracebacks.

Every refusal is `{"error": "<message>", "code": "<code>"}` with a 4xx/5xx
status. Handlers and helpers raise ApiError; the middleware and the exception
handlers below turn it (and Starlette's own 404/405) into that JSON. An
unexpected exception is logged with its traceback on the server and answered
500 `internal` without one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger("seqnet.api")

_HTTP_CODES: Mapping[int, str] = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


class ApiError(Exception):
    """A request this API refuses: the status, a stable code and a message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.headers)

    async def send(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer with this error from ASGI middleware (before any routing)."""
        await self.response()(scope, receive, send)


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message, "code": code}, status_code=status, headers=headers)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (unknown path, wrong method) in our JSON shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """A bug, not a bad request: tell the client nothing about it. Starlette re-raises
    the exception after this answer, and hypercorn logs its traceback."""
    log.error("event=api_internal_error path=%s error=%s", request.url.path, type(exc).__name__)
    return error_response(500, "internal", "internal error")
