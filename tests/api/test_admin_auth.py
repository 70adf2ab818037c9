"""The admin endpoints: off without a token, Bearer token when on, never by address."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sequencer_net.api.admin_auth import (
    ADMIN_TOKEN_ENV,
    AdminTokenError,
    bearer_matches,
    load_admin_token,
    new_admin_token,
    read_admin_token_file,
    write_admin_token_file,
)
from sequencer_net.api.server import ApiOptions
from sequencer_net.home.config import ConfigError, parse_config
from tests.api.conftest import ADMIN_TOKEN, ApiWorld, json_error

LOOPBACK = ("127.0.0.1", 40000)
REMOTE = ("203.0.113.9", 40000)


def client_for(world: ApiWorld, token: str | None, peer: tuple[str, int]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=world.app(ApiOptions(admin_token=token)), client=peer)
    return httpx.AsyncClient(transport=transport, base_url="http://api")


@pytest.fixture
async def guarded(world: ApiWorld) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(world, ADMIN_TOKEN, REMOTE) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_admin_is_off_without_a_token_even_on_loopback(world: ApiWorld) -> None:
    async with client_for(world, None, LOOPBACK) as client:
        for headers in ({}, bearer(ADMIN_TOKEN), bearer("")):
            response = await client.post(
                "/v1/admin/network", json={"connected": False}, headers=headers
            )
            assert response.status_code == 404, response.text
            assert json_error(response)["code"] == "admin_disabled"
    assert world.connected == []


async def test_loopback_is_not_authentication(world: ApiWorld) -> None:
    # Before: any client on 127.0.0.1 could cut the node's links with no credential.
    async with client_for(world, ADMIN_TOKEN, LOOPBACK) as client:
        response = await client.post("/v1/admin/network", json={"connected": False})
    assert response.status_code == 401 and json_error(response)["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert world.connected == []


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", f"Basic {ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN[:-1]}",
     f"Bearer {ADMIN_TOKEN}x", f"Bearer {ADMIN_TOKEN.upper()}", f"Token {ADMIN_TOKEN}",
     ADMIN_TOKEN],
)  # fmt: skip
async def test_a_wrong_or_missing_token_is_refused(
    guarded: httpx.AsyncClient, world: ApiWorld, authorization: str
) -> None:
    response = await guarded.post(
        "/v1/admin/network", json={"connected": False}, headers={"authorization": authorization}
    )
    assert response.status_code == 401 and json_error(response)["code"] == "unauthorized"
    assert world.connected == []


async def test_the_right_token_from_anywhere_is_accepted(
    guarded: httpx.AsyncClient, world: ApiWorld
) -> None:
    response = await guarded.post(
        "/v1/admin/network", json={"connected": False}, headers=bearer(ADMIN_TOKEN)
    )
    assert response.status_code == 200 and response.json() == {"connected": False}
    lower = {"authorization": f"bearer  {ADMIN_TOKEN} "}
    response = await guarded.post("/v1/admin/network", json={"connected": True}, headers=lower)
    assert response.status_code == 200
    assert world.connected == [False, True]


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[" * 400 + b"]" * 400, b'{"connected": 1}', b'{"connected": "false"}',
     b'{"connected": null}', b"{}", b"[true]", b'{"connected": true' + b" " * 1100 + b"}"],
)  # fmt: skip
async def test_bad_admin_bodies_with_the_right_token_are_refused(
    guarded: httpx.AsyncClient, world: ApiWorld, body: bytes
) -> None:
    response = await guarded.post("/v1/admin/network", content=body, headers=bearer(ADMIN_TOKEN))
    assert response.status_code in (400, 413), response.text
    assert json_error(response)["code"] in ("bad_request", "too_large")
    assert world.connected == []


async def test_unknown_admin_paths_reveal_nothing_without_the_token(
    guarded: httpx.AsyncClient,
) -> None:
    anonymous = await guarded.get("/v1/admin/secrets")
    assert anonymous.status_code == 401
    with_token = await guarded.get("/v1/admin/secrets", headers=bearer(ADMIN_TOKEN))
    assert with_token.status_code == 404 and json_error(with_token)["code"] == "not_found"


tokens = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=32)
headers_text = st.binary(max_size=120)


@given(token=tokens, header=headers_text)
def test_bearer_matches_only_the_exact_token(token: str, header: bytes) -> None:
    expected = header[:7].lower() == b"bearer " and header[7:].strip() == token.encode()
    assert bearer_matches([(b"authorization", header)], token) == expected
    assert bearer_matches([(b"authorization", b"Bearer " + token.encode())], token)


def test_two_authorization_headers_are_refused() -> None:
    value = b"Bearer " + ADMIN_TOKEN.encode()
    assert not bearer_matches([(b"authorization", value), (b"authorization", value)], ADMIN_TOKEN)


# --- Loading the token ----------------------------------------------------------------


def test_token_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    token = new_admin_token()
    write_admin_token_file(path, token)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_admin_token_file(path) == token
    assert load_admin_token(path, {}) == token


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (ADMIN_TOKEN, 0o644, "readable by others"),
        (ADMIN_TOKEN, 0o640, "readable by others"),
        ("short", 0o600, "must be 32..512 characters"),
        ("", 0o600, "must be 32..512 characters"),
        ("x" * 513, 0o600, "must be 32..512 characters"),
        ("é" * 40, 0o600, "printable ASCII"),
        ("a b" * 20, 0o600, "printable ASCII"),
    ],
)
def test_unusable_token_files_stop_the_node(
    tmp_path: Path, content: str, mode: int, message: str
) -> None:
    path = tmp_path / "admin.token"
    path.write_text(content + "\n")
    os.chmod(path, mode)
    with pytest.raises(AdminTokenError, match=message):
        read_admin_token_file(path)


def test_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(AdminTokenError, match="not found"):
        read_admin_token_file(tmp_path / "nope")


def test_token_from_the_environment(tmp_path: Path) -> None:
    assert load_admin_token(None, {ADMIN_TOKEN_ENV: ADMIN_TOKEN}) == ADMIN_TOKEN
    assert load_admin_token(None, {ADMIN_TOKEN_ENV: ""}) is None
    assert load_admin_token(None, {}) is None
    with pytest.raises(AdminTokenError, match="must be 32"):
        load_admin_token(None, {ADMIN_TOKEN_ENV: "weak"})
    path = tmp_path / "admin.token"
    write_admin_token_file(path, new_admin_token())
    with pytest.raises(AdminTokenError, match="both set"):
        load_admin_token(path, {ADMIN_TOKEN_ENV: ADMIN_TOKEN})


def test_options_read_the_configured_token_file(tmp_path: Path) -> None:
    write_admin_token_file(tmp_path / "admin.token", ADMIN_TOKEN)
    config = parse_config(
        tmp_path, {"name": "n", "api": {"admin_token_file": "admin.token"}}, "config.toml"
    )
    options = ApiOptions.from_config(config, environ={})
    assert options.admin_token == ADMIN_TOKEN
    assert ADMIN_TOKEN not in repr(options)
    assert (
        ApiOptions.from_config(parse_config(tmp_path, {"name": "n"}, "c"), {}).admin_token is None
    )


def test_token_errors_are_config_errors(tmp_path: Path) -> None:
    """So `node run` prints them as one line, like every other config problem."""
    config = parse_config(tmp_path, {"name": "n", "api": {"admin_token_file": "gone"}}, "c")
    with pytest.raises(ConfigError, match="gone: admin token file not found"):
        ApiOptions.from_config(config, environ={})
