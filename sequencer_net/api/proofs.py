"""GET /v1/proofs/{key}: one state entry and its Merkle proof, from the latest executed state.

What the L1 bridge needs to pay a withdrawal (key b"wd/" + id) or an escape
(b"sub/..." or b"l1bal/..."): the value stored under the key in the latest
executed state, the height and root of that state, and the proof
(`state_tree.Proof.encode()`, the bytes the contract parses). A key with no
entry answers its non-membership proof and a null value. The proof verifies
against `state_root` with `state_tree.verify_proof`; the L1 accepts it once a
posted header carries that root at `state_height` (docs/api.md, "State proofs").

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
from sequencer_net.api.inputs import parse_hex
from sequencer_net.api.limits import MAX_PROOF_KEY_BYTES
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


def proof_document(state: ExecutionState, key: bytes) -> dict[str, Any]:
    """The entry under `key` in `state`, with its proof against `state.state_root`."""
    tree = state.tree()
    value = tree.get(key)
    proof = tree.prove(key)
    return {
        "key": _hex(key),
        "state_height": state.height,
        "state_root": _hex(state.state_root),
        "value": None if value is None else _hex(value),
        "proof": _hex(proof.encode()),
    }


def proof_routes(state: Callable[[], ExecutionState] | None) -> list[Route]:
    """The route; without an executed state behind the API it answers 503."""

    async def prove(request: Request) -> Response:
        key = parse_state_key(request.path_params["key"])
        if state is None:
            raise ApiError(503, "unavailable", "this API serves no execution state")
        try:
            document = proof_document(state(), key)
        except (MissingNode, CorruptNode) as exc:
            raise ApiError(503, "unavailable", f"the state tree cannot be read: {exc}") from exc
        return JSONResponse(document)

    return [Route("/v1/proofs/{key}", prove, methods=["GET"])]
