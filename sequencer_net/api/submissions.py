"""Wire formats of batch submissions and their answers.

JSON (`Content-Type: application/json`, the default):

    {"transactions": ["0x..", ...]}  ->  {"results": [{"hash": "0x.."} | {"error", "code"}]}

msgpack (`Content-Type: application/msgpack`, also each WebSocket message),
for high-rate clients: no hex, no JSON:

    [bin, bin, ...]  ->  [bin32 | [code, message], ...]

an accepted transaction's answer is its 32-byte hash, a refused one's a
two-element array of strings. A request that is refused as a whole (too
large, malformed) is answered on the WebSocket with {"error", "code"} as a
msgpack map; over HTTP as the usual JSON error.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from sequencer_net.api.errors import ApiError, bad_request
from sequencer_net.api.inputs import parse_hex, parse_json_object, require
from sequencer_net.api.intake import Accepted, Outcome, Refused
from sequencer_net.api.limits import MAX_BATCH_SUBMISSION
from sequencer_net.mempool.limits import MAX_TX_BYTES

MSGPACK = "application/msgpack"
BATCH_SHAPE = '{"transactions": ["0x..", ...]}'

_batch_decoder = msgspec.msgpack.Decoder(
    Annotated[
        list[Annotated[bytes, msgspec.Meta(max_length=MAX_TX_BYTES)]],
        msgspec.Meta(max_length=MAX_BATCH_SUBMISSION),
    ]
)
_encoder = msgspec.msgpack.Encoder()


def parse_json_batch(body: bytes) -> list[bytes | Refused]:
    """The hex items, each decoded or refused on its own (a bad item does not
    spoil the others)."""
    document = parse_json_object(body, BATCH_SHAPE)
    items = require(document, "transactions", list, BATCH_SHAPE)
    if len(items) > MAX_BATCH_SUBMISSION:
        raise ApiError(413, "too_large", f"at most {MAX_BATCH_SUBMISSION} per request")
    out: list[bytes | Refused] = []
    for item in items:
        try:
            out.append(parse_hex(item, "transaction"))
        except ApiError as exc:
            out.append(Refused(exc.status, exc.code, exc.message))
    return out


def parse_msgpack_batch(body: bytes) -> list[bytes]:
    """A msgpack array of binary transactions; its length and each item's size are
    bounded while decoding (msgspec checks them before building the list)."""
    try:
        return _batch_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise bad_request(f"expected a msgpack array of binary transactions: {exc}") from None
    except (msgspec.DecodeError, RecursionError):
        raise bad_request("body is not msgpack: expected an array of binary transactions") from None


def json_outcome(outcome: Outcome) -> dict[str, str]:
    if isinstance(outcome, Accepted):
        return {"hash": "0x" + outcome.hash.hex()}
    return {"error": outcome.message, "code": outcome.code}


def encode_msgpack_outcomes(outcomes: list[Outcome]) -> bytes:
    answer: list[Any] = [
        o.hash if isinstance(o, Accepted) else [o.code, o.message] for o in outcomes
    ]
    return _encoder.encode(answer)


def encode_msgpack_error(error: ApiError) -> bytes:
    return _encoder.encode({"error": error.message, "code": error.code})
