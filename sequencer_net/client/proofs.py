"""State proofs as the client reads them: GET /v1/proofs/{key}, checked and decoded.

A node's answer is not trusted: `parse_state_proof` checks every field's shape
and that the proof verifies against the answer's own `state_root`
(`state_tree.verify_proof`). Whether that root is final is a separate
question: the L1 bridge accepts the proof only for a root the Commitments
contract holds (the root of one of its last posts, named by a PostRef), so a
caller compares the root with the L1 (or with a verified block) before relying
on it.

`withdrawal_proof` adds the L1 withdrawal record's decoding: the id, recipient,
token and amount the bridge's `withdraw(stateHeight, id, recipient, token,
amount, proof)` takes (docs/execution.md, "L1 bridge").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sequencer_net.client.errors import SeqnetApiError
from sequencer_net.execution.l1_bridge import decode_withdrawal_record
from sequencer_net.execution.state import withdrawal_tree_key
from sequencer_net.execution.state_tree import MAX_PROOF_BYTES, MalformedProof, Proof, verify_proof

MAX_VALUE_HEX_BYTES = 64 * 1024
"""The longest value a proof answer may carry here (a subaccount record is far
smaller); anything longer is refused before decoding the hex."""


@dataclass(frozen=True, slots=True)
class StateProof:
    """One state entry (`value` None: absent) and its proof against `state_root`."""

    key: bytes
    state_height: int
    state_root: bytes
    value: bytes | None
    proof: bytes


@dataclass(frozen=True, slots=True)
class WithdrawalProof:
    """What the L1 bridge's `withdraw` takes, read from a verified proof."""

    withdrawal_id: int
    recipient: bytes
    token: bytes
    amount: int
    state_height: int
    state_root: bytes
    proof: bytes


def _bad(message: str) -> SeqnetApiError:
    return SeqnetApiError(200, "bad_response", message)


def _hex_field(document: dict[str, Any], name: str, limit: int) -> bytes:
    text = document.get(name)
    if not isinstance(text, str) or not text.startswith("0x") or len(text) > 2 + 2 * limit:
        raise _bad(f"{name}: expected 0x-hex of at most {limit} bytes")
    try:
        return bytes.fromhex(text[2:])
    except ValueError:
        raise _bad(f"{name}: not hex") from None


def parse_state_proof(
    document: dict[str, Any], key: bytes, state_height: int | None = None
) -> StateProof:
    """Check an answer of GET /v1/proofs/{key}; raise SeqnetApiError unless it is
    well formed, about `key` (at `state_height` when one was asked for), and its
    proof verifies against its root."""
    height = document.get("state_height")
    if not isinstance(height, int) or isinstance(height, bool) or height < 0:
        raise _bad("state_height: expected a non-negative integer")
    if state_height is not None and height != state_height:
        raise _bad(f"the answer is about state height {height}, not {state_height}")
    if _hex_field(document, "key", len(key)) != key:
        raise _bad("the answer is about another key")
    root = _hex_field(document, "state_root", 32)
    if len(root) != 32:
        raise _bad("state_root: expected 32 bytes")
    value = None
    if document.get("value") is not None:
        value = _hex_field(document, "value", MAX_VALUE_HEX_BYTES)
    proof = _hex_field(document, "proof", MAX_PROOF_BYTES)
    try:
        verified = verify_proof(root, key, value, Proof.decode(proof))
    except MalformedProof as exc:
        raise _bad(f"proof: {exc}") from exc
    if not verified:
        raise _bad("the proof does not verify against the answer's state_root")
    return StateProof(key, height, root, value, proof)


def withdrawal_proof(answer: StateProof, withdrawal_id: int) -> WithdrawalProof:
    """Decode the verified entry of withdrawal `withdrawal_id`; raise
    SeqnetApiError if the state holds no such record (yet)."""
    if answer.key != withdrawal_tree_key(withdrawal_id):
        raise _bad("the answer is about another key")
    if answer.value is None:
        raise SeqnetApiError(
            404, "not_found", f"no withdrawal {withdrawal_id} at height {answer.state_height}"
        )
    try:
        record_id, recipient, token, amount = decode_withdrawal_record(answer.value)
    except ValueError as exc:
        raise _bad(f"withdrawal record: {exc}") from exc
    if record_id != withdrawal_id:
        raise _bad("the withdrawal record names another id")
    return WithdrawalProof(
        record_id, recipient, token, amount, answer.state_height, answer.state_root, answer.proof
    )
