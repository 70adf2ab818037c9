"""HTTP clients for a validator's API (`/v1/...`), sync and async.

`SeqnetClient` uses a blocking `httpx.Client`; `AsyncSeqnetClient` uses
`httpx.AsyncClient`, which runs under trio (and asyncio). Both speak the same
endpoints and raise `SeqnetApiError` for every failure, including a node that
cannot be reached (status 0), so callers handle one exception type.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import httpx
import sniffio

from sequencer_net.client.errors import SeqnetApiError
from sequencer_net.client.proofs import (
    StateProof,
    WithdrawalProof,
    parse_state_proof,
    withdrawal_proof,
)
from sequencer_net.execution.state import withdrawal_tree_key
from sequencer_net.json_input import loads_bounded

DEFAULT_TIMEOUT_S = 10.0
WAIT_POLL_S = 0.2
"""How often `wait_committed` asks whether a transaction is still pending."""


class TransactionTimeout(TimeoutError):
    """A submitted transaction was still pending when the wait ran out."""

    def __init__(self, tx_hash: bytes | str, timeout_s: float) -> None:
        super().__init__(f"{hash_text(tx_hash)} not committed after {timeout_s:g}s (still pending)")
        self.tx_hash = hash_text(tx_hash)


async def _sleep(seconds: float) -> None:
    """Sleep under whichever async library is running this (trio or asyncio)."""
    if sniffio.current_async_library() == "trio":
        import trio

        await trio.sleep(seconds)
    else:
        import asyncio

        await asyncio.sleep(seconds)


SubmitResult = dict[str, str]  # {"hash": "0x.."} or {"error": "...", "code": "..."}


def hex_bytes(data: bytes) -> str:
    return "0x" + data.hex()


def hash_text(tx_hash: bytes | str) -> str:
    """A transaction hash as the API spells it in paths: `0x` + lowercase hex."""
    if isinstance(tx_hash, bytes):
        return hex_bytes(tx_hash)
    return tx_hash if tx_hash.startswith("0x") else "0x" + tx_hash


def address_text(address: bytes | str) -> str:
    """An account address as the API spells it in paths: `0x` + hex."""
    if isinstance(address, bytes):
        return hex_bytes(address)
    return address if address.startswith("0x") else "0x" + address


def _json_body(response: httpx.Response) -> Any:
    """The answer's JSON, or None if it is not JSON (or nests too deep to read
    safely: json_input.py); a node is not trusted to answer sanely."""
    try:
        return loads_bounded(response.content)
    except (ValueError, RecursionError):
        return None


def _raise_for_failure(response: httpx.Response) -> None:
    if response.is_success:
        return
    body = _json_body(response)
    if isinstance(body, dict):
        message = str(body.get("error", response.reason_phrase))
        code = str(body.get("code", ""))
    else:
        message = response.text[:200] or response.reason_phrase
        code = ""
    raise SeqnetApiError(response.status_code, code, message)


def _withdrawal_query(
    recipient: bytes | None, before: int | None, limit: int | None
) -> dict[str, str]:
    params = {}
    if recipient is not None:
        params["recipient"] = "0x" + recipient.hex()
    if before is not None:
        params["before"] = str(before)
    if limit is not None:
        params["limit"] = str(limit)
    return params


def _proof_path(key: bytes, state_height: int | None) -> str:
    path = f"/v1/proofs/{hex_bytes(key)}"
    return path if state_height is None else f"{path}?state_height={state_height}"


def _json_object(response: httpx.Response) -> dict[str, Any]:
    _raise_for_failure(response)
    body = _json_body(response)
    if not isinstance(body, dict):
        raise SeqnetApiError(response.status_code, "bad_response", "expected a JSON object")
    return body


def _submitted_hash(response: httpx.Response) -> str:
    body = _json_object(response)
    tx_hash = body.get("hash")
    if not isinstance(tx_hash, str):
        raise SeqnetApiError(response.status_code, "bad_response", "no hash in the answer")
    return tx_hash


def _batch_results(response: httpx.Response, expected: int) -> list[SubmitResult]:
    body = _json_object(response)
    results = body.get("results")
    if not isinstance(results, list) or len(results) != expected:
        raise SeqnetApiError(
            response.status_code, "bad_response", f"expected {expected} results in the answer"
        )
    return [{str(k): str(v) for k, v in item.items()} for item in results]


def _unreachable(exc: httpx.HTTPError) -> SeqnetApiError:
    return SeqnetApiError(0, "unreachable", f"{type(exc).__name__}: {exc}")


def _admin_headers(admin_token: str | None) -> dict[str, str]:
    return {} if admin_token is None else {"authorization": f"Bearer {admin_token}"}


def _batch_body(encoded: Sequence[bytes]) -> dict[str, list[str]]:
    return {"transactions": [hex_bytes(tx) for tx in encoded]}


_OCTETS = {"content-type": "application/octet-stream"}


class SeqnetClient:
    """Blocking client for one node: `SeqnetClient("http://127.0.0.1:26700")`."""

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def __enter__(self) -> SeqnetClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from exc

    def submit(self, encoded: bytes) -> str:
        """Submit one encoded signed transaction; returns its hash once accepted."""
        return _submitted_hash(
            self._request("POST", "/v1/transactions", content=encoded, headers=_OCTETS)
        )

    def submit_many(self, encoded: Sequence[bytes]) -> list[SubmitResult]:
        """Submit a batch; one result per transaction, in order."""
        response = self._request("POST", "/v1/transactions/batch", json=_batch_body(encoded))
        return _batch_results(response, len(encoded))

    def status(self) -> dict[str, Any]:
        return _json_object(self._request("GET", "/v1/status"))

    def transaction(self, tx_hash: bytes | str) -> dict[str, Any]:
        """`{"hash", "status": "pending"|"committed", "height"?, "index"?}`; 404 raises."""
        return _json_object(self._request("GET", f"/v1/transactions/{hash_text(tx_hash)}"))

    def wait_committed(
        self, tx_hash: bytes | str, timeout_s: float = 30.0, poll_s: float = WAIT_POLL_S
    ) -> dict[str, Any]:
        """Poll until the transaction is no longer pending; return its answer
        (`status` "committed" with `height` and the engine's `receipt`, or
        "dropped"). Raises TransactionTimeout after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.transaction(tx_hash)
            if found.get("status") != "pending":
                return found
            if time.monotonic() >= deadline:
                raise TransactionTimeout(tx_hash, timeout_s)
            time.sleep(poll_s)

    def block(self, height: int) -> dict[str, Any]:
        return _json_object(self._request("GET", f"/v1/blocks/{height}"))

    def validators(self) -> dict[str, Any]:
        """`{"validators": [{"address", "weight"}, ...]}`: the node's own claim."""
        return _json_object(self._request("GET", "/v1/validators"))

    def markets(self) -> dict[str, Any]:
        """`{"height", "timestamp", "counted_since_height", "markets": [...]}` (docs/api.md)."""
        return _json_object(self._request("GET", "/v1/markets"))

    def account(self, address: bytes | str) -> dict[str, Any]:
        """An address's subaccounts, positions, orders and margin; 404 raises."""
        return _json_object(self._request("GET", f"/v1/accounts/{address_text(address)}"))

    def state_proof(self, key: bytes, state_height: int | None = None) -> StateProof:
        """The entry under state `key` and its proof, checked (client/proofs.py),
        in the latest executed state or the one at `state_height`."""
        answer = _json_object(self._request("GET", _proof_path(key, state_height)))
        return parse_state_proof(answer, key, state_height)

    def withdrawal_proof(
        self, withdrawal_id: int, state_height: int | None = None
    ) -> WithdrawalProof:
        """L1 withdrawal record `withdrawal_id` with its checked proof: what the
        L1 bridge's `withdraw` takes. Ask at a state height the L1 posted (the
        Commitments contract's posts). 404 while the state holds no
        such record."""
        key = withdrawal_tree_key(withdrawal_id)
        return withdrawal_proof(self.state_proof(key, state_height), withdrawal_id)

    def withdrawals(
        self,
        recipient: bytes | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """L1 withdrawal records, newest first (GET /v1/withdrawals)."""
        return _json_object(
            self._request(
                "GET", "/v1/withdrawals", params=_withdrawal_query(recipient, before, limit)
            )
        )

    def metrics(self) -> str:
        response = self._request("GET", "/metrics")
        _raise_for_failure(response)
        return response.text

    def set_network_connected(
        self, connected: bool, admin_token: str | None = None
    ) -> dict[str, Any]:
        """Cut (False) or restore (True) this node's validator links (admin API,
        which needs the node's admin token)."""
        return _json_object(
            self._request(
                "POST",
                "/v1/admin/network",
                json={"connected": connected},
                headers=_admin_headers(admin_token),
            )
        )


class AsyncSeqnetClient:
    """Async client for one node; works under trio. Use `async with` or `aclose()`."""

    def __init__(
        self,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_connections: int = 100,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, limits=limits)

    async def __aenter__(self) -> AsyncSeqnetClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from exc

    async def submit(self, encoded: bytes) -> str:
        response = await self._request("POST", "/v1/transactions", content=encoded, headers=_OCTETS)
        return _submitted_hash(response)

    async def submit_many(self, encoded: Sequence[bytes]) -> list[SubmitResult]:
        response = await self._request("POST", "/v1/transactions/batch", json=_batch_body(encoded))
        return _batch_results(response, len(encoded))

    async def status(self) -> dict[str, Any]:
        return _json_object(await self._request("GET", "/v1/status"))

    async def transaction(self, tx_hash: bytes | str) -> dict[str, Any]:
        return _json_object(await self._request("GET", f"/v1/transactions/{hash_text(tx_hash)}"))

    async def wait_committed(
        self, tx_hash: bytes | str, timeout_s: float = 30.0, poll_s: float = WAIT_POLL_S
    ) -> dict[str, Any]:
        """`SeqnetClient.wait_committed` for trio or asyncio (whichever runs it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = await self.transaction(tx_hash)
            if found.get("status") != "pending":
                return found
            if time.monotonic() >= deadline:
                raise TransactionTimeout(tx_hash, timeout_s)
            await _sleep(poll_s)

    async def block(self, height: int) -> dict[str, Any]:
        return _json_object(await self._request("GET", f"/v1/blocks/{height}"))

    async def validators(self) -> dict[str, Any]:
        return _json_object(await self._request("GET", "/v1/validators"))

    async def markets(self) -> dict[str, Any]:
        return _json_object(await self._request("GET", "/v1/markets"))

    async def account(self, address: bytes | str) -> dict[str, Any]:
        return _json_object(await self._request("GET", f"/v1/accounts/{address_text(address)}"))

    async def state_proof(self, key: bytes, state_height: int | None = None) -> StateProof:
        answer = _json_object(await self._request("GET", _proof_path(key, state_height)))
        return parse_state_proof(answer, key, state_height)

    async def withdrawal_proof(
        self, withdrawal_id: int, state_height: int | None = None
    ) -> WithdrawalProof:
        answer = await self.state_proof(withdrawal_tree_key(withdrawal_id), state_height)
        return withdrawal_proof(answer, withdrawal_id)

    async def withdrawals(
        self,
        recipient: bytes | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        params = _withdrawal_query(recipient, before, limit)
        return _json_object(await self._request("GET", "/v1/withdrawals", params=params))

    async def metrics(self) -> str:
        response = await self._request("GET", "/metrics")
        _raise_for_failure(response)
        return response.text

    async def set_network_connected(
        self, connected: bool, admin_token: str | None = None
    ) -> dict[str, Any]:
        return _json_object(
            await self._request(
                "POST",
                "/v1/admin/network",
                json={"connected": connected},
                headers=_admin_headers(admin_token),
            )
        )
