"""GET /v1/proofs/{key}[?state_height=N]: one state entry and its Merkle proof.

What the L1 bridge needs to pay a withdrawal (key b"wd/" + id) or an escape
(b"sub/..." or b"l1bal/..."): the value stored under the key in the latest
executed state, the height and root of that state, and the proof
(`state_tree.Proof.encode()`, the bytes the contract parses). A key with no
entry answers its non-membership proof and a null value. The proof verifies
against `state_root` with `state_tree.verify_proof`; the L1 accepts it once a
posted header carries that root at `state_height` (docs/api.md, "State proofs").

Without `state_height` the answer comes from the latest executed state. The
L1 only knows the roots of posted headers, which trail execution, so a client
proving a withdrawal asks for the state height the contract posted
(the posts it keeps, named by PostRefs): every executed root stays provable here (the node does not
prune the state tree), and a height this node has not executed is 404.

The key is hex in the path, at most MAX_PROOF_KEY_BYTES bytes; nothing is
read before that is checked. A lookup is O(tree depth) node reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sequencer_net.api.errors import ApiError, bad_request
from sequencer_net.api.inputs import parse_height, parse_hex
from sequencer_net.api.limits import MAX_PROOF_KEY_BYTES
from sequencer_net.execution.l1_bridge import decode_withdrawal_record
from sequencer_net.execution.state import ExecutionState
from sequencer_net.execution.state_tree import CorruptNode, MissingNode


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def parse_state_key(text: str) -> bytes:
    """A state key: 1..MAX_PROOF_KEY_BYTES bytes of hex (0x optional)."""
    if len(text) > 2 + 2 * MAX_PROOF_KEY_BYTES:
        raise bad_request(f"key must be at most {MAX_PROOF_KEY_BYTES} bytes of hex")
    key = parse_hex(text, "key")
    if not key:
        raise bad_request("key must not be empty")
    return key


def proof_document(
    state: ExecutionState, key: bytes, at: tuple[int, bytes] | None = None
) -> dict[str, Any]:
    """The entry under `key` in `state` (or in the earlier state `at` = (height,
    root)), with its proof against that state's root."""
    tree = state.tree()
    height, root = (state.height, state.state_root) if at is None else at
    value = tree.get(key, root=root)
    proof = tree.prove(key, root=root)
    return {
        "key": _hex(key),
        "state_height": height,
        "state_root": _hex(root),
        "value": None if value is None else _hex(value),
        "proof": _hex(proof.encode()),
    }


MAX_WITHDRAWALS_ANSWER = 100
"""Records in one GET /v1/withdrawals answer."""

MAX_WITHDRAWALS_SCANNED = 100_000
"""Most recent withdrawal ids one request examines (newest first): a request
costs at most this many dict lookups."""


def withdrawals_document(
    state: ExecutionState, recipient: bytes | None, before: int | None, limit: int
) -> dict[str, Any]:
    """The L1 withdrawal records of `state`, newest first (ids below `before`),
    to `recipient` if given: how a user finds the id its withdrawal got."""
    top = (
        state.bridge.next_withdrawal
        if before is None
        else min(before, state.bridge.next_withdrawal)
    )
    found: list[dict[str, Any]] = []
    wid = top - 1
    floor = max(-1, top - 1 - MAX_WITHDRAWALS_SCANNED)
    while wid > floor and len(found) < limit:
        value = state.withdrawals.get(wid)
        if value is not None:
            record_id, to, token, amount = decode_withdrawal_record(value)
            if recipient is None or to == recipient:
                found.append(
                    {
                        "id": record_id,
                        "recipient": _hex(to),
                        "token": _hex(token),
                        "amount": str(amount),
                    }
                )
        wid -= 1
    return {
        "state_height": state.height,
        "next_id": state.bridge.next_withdrawal,
        "withdrawals": found,
        "scanned_down_to": wid + 1,
    }


def proof_routes(
    state: Callable[[], ExecutionState] | None,
    root_at: Callable[[int], bytes | None] | None = None,
) -> list[Route]:
    """The route; without an executed state behind the API it answers 503.
    `root_at(height)` is the state root executed at a height (None if not)."""

    async def prove(request: Request) -> Response:
        key = parse_state_key(request.path_params["key"])
        wanted = request.query_params.get("state_height")
        height = None if wanted is None else parse_height(wanted)
        if state is None:
            raise ApiError(503, "unavailable", "this API serves no execution state")
        current = state()
        at: tuple[int, bytes] | None = None
        if height is not None and height != current.height:
            root = None if root_at is None or height > current.height else root_at(height)
            if root is None:
                raise ApiError(
                    404, "not_found", f"no executed state at height {height} on this node"
                )
            at = (height, root)
        try:
            document = proof_document(current, key, at)
        except (MissingNode, CorruptNode) as exc:
            raise ApiError(503, "unavailable", f"the state tree cannot be read: {exc}") from exc
        return JSONResponse(document)

    async def withdrawals(request: Request) -> Response:
        query = request.query_params
        recipient = None
        if "recipient" in query:
            recipient = parse_hex(query["recipient"], "recipient")
            if len(recipient) != 20:
                raise bad_request("recipient must be a 20-byte address")
        before = None if "before" not in query else parse_height(query["before"])
        limit = MAX_WITHDRAWALS_ANSWER
        if "limit" in query:
            limit = parse_height(query["limit"])
            if not 1 <= limit <= MAX_WITHDRAWALS_ANSWER:
                raise bad_request(f"limit must be 1..{MAX_WITHDRAWALS_ANSWER}")
        if state is None:
            raise ApiError(503, "unavailable", "this API serves no execution state")
        return JSONResponse(withdrawals_document(state(), recipient, before, limit))

    return [
        Route("/v1/proofs/{key}", prove, methods=["GET"]),
        Route("/v1/withdrawals", withdrawals, methods=["GET"]),
    ]
