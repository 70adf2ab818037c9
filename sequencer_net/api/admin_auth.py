"""Authentication of the admin endpoints (`/v1/admin/...`).

The admin endpoints are off unless the node has an admin token: from the file
named by `[api] admin_token_file`, or from the environment variable
SEQNET_ADMIN_TOKEN (never from the command line, where `ps` shows it). With a
token, every admin request must carry `Authorization: Bearer <token>`; the
comparison is constant-time. Where the client connects from does not matter:
an address is not a credential.

    off (no token)         -> 404 `admin_disabled`
    no or wrong token      -> 401 `unauthorized` (with WWW-Authenticate: Bearer)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from sequencer_net.api.errors import ApiError
from sequencer_net.api.limits import ADMIN_TOKEN_MAX_CHARS, ADMIN_TOKEN_MIN_CHARS
from sequencer_net.home.config import ConfigError

ADMIN_PREFIX = "/v1/admin"
ADMIN_TOKEN_ENV = "SEQNET_ADMIN_TOKEN"
_BEARER = b"bearer "


class AdminTokenError(ConfigError):
    """The admin token is configured but unusable (missing file, loose mode, too short)."""


def new_admin_token() -> str:
    """A fresh token: 32 random bytes as 64 hex characters."""
    return secrets.token_hex(32)


def write_admin_token_file(path: Path, token: str) -> None:
    """Write `token` to `path`, readable by the owner only (created 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    os.chmod(path, 0o600)


def check_admin_token(token: str, source: str) -> str:
    """`token` if it is usable; AdminTokenError naming `source` otherwise."""
    if not ADMIN_TOKEN_MIN_CHARS <= len(token) <= ADMIN_TOKEN_MAX_CHARS:
        raise AdminTokenError(
            f"{source}: the admin token must be {ADMIN_TOKEN_MIN_CHARS}.."
            f"{ADMIN_TOKEN_MAX_CHARS} characters (got {len(token)}); "
            "e.g. `openssl rand -hex 32`"
        )
    if not all("!" <= c <= "~" for c in token):
        raise AdminTokenError(f"{source}: the admin token must be printable ASCII, no spaces")
    return token


def read_admin_token_file(path: Path) -> str:
    """The token in `path` (its first line). The file must not be readable by
    group or others, like a key file."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AdminTokenError(f"{path}: admin token file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AdminTokenError(f"{path}: cannot read the admin token file: {exc}") from None
    if mode & 0o077:
        raise AdminTokenError(
            f"{path}: the admin token file is readable by others (mode {mode & 0o777:o}); "
            f"chmod 600 {path}"
        )
    lines = text.splitlines()
    return check_admin_token(lines[0].strip() if lines else "", str(path))


def load_admin_token(token_file: Path | None, environ: Mapping[str, str]) -> str | None:
    """The node's admin token, or None (admin endpoints off). Both sources set is
    an error rather than a guess."""
    from_env = environ.get(ADMIN_TOKEN_ENV)
    if token_file is not None and from_env:
        raise AdminTokenError(
            f"[api] admin_token_file and ${ADMIN_TOKEN_ENV} are both set: use one"
        )
    if token_file is not None:
        return read_admin_token_file(token_file)
    if from_env:
        return check_admin_token(from_env.strip(), f"${ADMIN_TOKEN_ENV}")
    return None


def bearer_matches(headers: list[tuple[bytes, bytes]], token: str) -> bool:
    """Whether the Authorization header is `Bearer <token>`, compared in constant
    time (both sides hashed first, so not even the length leaks)."""
    values = [v for k, v in headers if k.lower() == b"authorization"]
    if len(values) != 1 or values[0][: len(_BEARER)].lower() != _BEARER:
        return False
    given = hashlib.sha256(values[0][len(_BEARER) :].strip()).digest()
    return hmac.compare_digest(given, hashlib.sha256(token.encode()).digest())


class AdminAuth:
    """ASGI middleware around the admin routes (server.py mounts them at
    ADMIN_PREFIX with this in front): every request reaching them is checked,
    including ones for admin paths that do not exist."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal.send(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> ApiError | None:
        if self.token is None:
            return ApiError(
                404,
                "admin_disabled",
                "the admin API is off on this node (no [api] admin_token_file "
                f"or ${ADMIN_TOKEN_ENV})",
            )
        if not bearer_matches(list(scope.get("headers", ())), self.token):
            return ApiError(
                401,
                "unauthorized",
                "admin endpoints need Authorization: Bearer <admin token>",
                {"www-authenticate": "Bearer"},
            )
        return None
