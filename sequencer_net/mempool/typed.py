"""EIP-712 typed data for DEX actions: a wallet shows the order, not bytes.

A transaction in namespace 0 whose payload is one of the trader actions below
is signed over a typed structure of that action's own fields, so a standard
wallet (`eth_signTypedData_v4`, eth-account's `sign_typed_data`) shows a
person what they sign: the market, side, price and size of an order, the
amount and recipient of a withdrawal. The transaction's envelope (nonce and
fee) is part of the same structure; the chain is the domain. For an order:

    PlaceOrder(uint64 nonce,uint256 fee,int256 subaccountNumber,int256 marketId,
               int256 side,int256 limitPrice,int256 quantity,int256 timeInForce,
               bool postOnly,bool reduceOnly,int256 clientId,int256 goodTil,
               int256 trigger,int256 triggerPrice)
    digest = keccak(0x19 0x01 || domainSeparator || hashStruct(PlaceOrder))

The primary type is the action's name, its fields the action's fields in
camelCase, in order, after `nonce` and `fee`. Types follow the fields: every
integer is an int256 (the engine's payload integers are bounded to int256),
a 32-byte field is bytes32, other byte strings are `bytes`, flags are bool.
The payload bytes stay the canonical encoding of the action, and the node
rebuilds the typed structure from them, so one signature covers exactly what
the engine executes. Everything else (other namespaces, payloads that do not
decode, governance and price reports, whose fields nest, and L1 deposit
reports, whose `nonce` field would collide with the envelope's) is signed
over the generic `Transaction` structure (transaction.py). Those are sent by
the admin or by validators' own software, not by a person at a wallet.

A withdrawal's type includes its optional `token` (bytes: empty for the
collateral, else the 20-byte L1 token, 20 zero bytes for ETH):

    Withdraw(uint64 nonce,uint256 fee,int256 subaccountNumber,int256 amount,
             bytes recipient,bytes token)
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

import msgspec
import sha3

from consensus.crypto import keccak256
from consensus.encoding import Domain, word
from sequencer_net.execution.exceptions import MalformedTransaction
from sequencer_net.execution.transactions import (
    CancelOrder,
    CancelOrderByClientId,
    Deposit,
    PlaceOrder,
    SetMarketPaused,
    Transfer,
    TxPayload,
    Withdraw,
    decode_payload,
)

TYPED_ACTIONS: Final[tuple[type, ...]] = (
    PlaceOrder,
    CancelOrder,
    CancelOrderByClientId,
    Withdraw,
    Transfer,
    Deposit,
    SetMarketPaused,
)
"""DEX actions signed as their own typed structure (flat fields only)."""

_keccak: Final = sha3.keccak_256


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _field_type(info: Any) -> str:
    if isinstance(info, msgspec.inspect.BoolType):
        return "bool"
    if isinstance(info, (msgspec.inspect.IntType, msgspec.inspect.EnumType)):
        return "int256"
    if isinstance(info, msgspec.inspect.BytesType):
        return "bytes32" if info.min_length == info.max_length == 32 else "bytes"
    raise TypeError(f"no EIP-712 type for {info!r}")


@cache
def action_fields(kind: type) -> tuple[tuple[str, str, str], ...]:
    """(python field name, EIP-712 name, EIP-712 type) of an action, in order."""
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return tuple((f.name, _camel(f.name), _field_type(f.type)) for f in info.fields)


@cache
def type_string(kind: type) -> str:
    fields = ",".join(f"{kind_} {name}" for _, name, kind_ in action_fields(kind))
    return f"{kind.__name__}(uint64 nonce,uint256 fee,{fields})"


@cache
def type_hash(kind: type) -> bytes:
    return keccak256(type_string(kind).encode())


_INT256, _BOOL, _BYTES32, _BYTES = range(4)
_CODES: Final = {"int256": _INT256, "bool": _BOOL, "bytes32": _BYTES32, "bytes": _BYTES}
_FALSE_WORD: Final = word(0)
_TRUE_WORD: Final = word(1)


@cache
def _field_codes(kind: type) -> tuple[int, ...]:
    """How each field of an action is encoded, in order (one small int per field)."""
    return tuple(_CODES[eip712_type] for _, _, eip712_type in action_fields(kind))


def struct_hash(nonce: int, fee: int, action: TxPayload) -> bytes:
    """hashStruct of an action: keccak(typeHash || word(nonce) || word(fee) ||
    its fields, each one 32-byte word): an int256 as its two's complement
    (`to_bytes(signed=True)` writes it and refuses a value outside int256,
    which raises ValueError), a bool as 0 or 1, a bytes32 as itself, other
    bytes as their keccak. A field's error is raised before the nonce's and
    the fee's. Inlined, one pass over the fields: this runs for every DEX
    transaction a validator checks."""
    kind = type(action)
    parts = [type_hash(kind), b"", b""]  # nonce and fee words after the fields
    append = parts.append
    for value, code in zip(msgspec.structs.astuple(action), _field_codes(kind), strict=True):
        if code == _INT256:
            number = int(value)
            try:
                append(number.to_bytes(32, "big", signed=True))
            except OverflowError:
                raise ValueError("an integer field does not fit int256") from None
        elif code == _BOOL:
            append(_TRUE_WORD if value else _FALSE_WORD)
        elif code == _BYTES32:
            append(bytes(value))
        else:
            append(_keccak(bytes(value)).digest())
    parts[1] = word(nonce)
    parts[2] = word(fee)
    return _keccak(b"".join(parts)).digest()  # type: ignore[no-any-return]


def typed_action(payload: bytes) -> TxPayload | None:
    """The action a namespace-0 payload carries, if it is signed as typed data."""
    try:
        action = decode_payload(payload)
    except MalformedTransaction:
        return None
    return action if isinstance(action, TYPED_ACTIONS) else None


def typed_digest(separator: bytes, nonce: int, fee: int, action: TxPayload) -> bytes:
    return keccak256(b"\x19\x01" + separator + struct_hash(nonce, fee, action))


def _json_value(value: Any, eip712_type: str) -> Any:
    if eip712_type == "bool":
        return bool(value)
    if eip712_type == "int256":
        return int(value)
    return "0x" + bytes(value).hex()


def typed_data(domain: Domain, nonce: int, fee: int, action: TxPayload) -> dict[str, Any]:
    """The `eth_signTypedData_v4` document of a typed DEX action: what a wallet
    shows and signs. Raises TypeError for an action that is not typed."""
    kind = type(action)
    if kind not in TYPED_ACTIONS:
        raise TypeError(f"{kind.__name__} is signed as a plain Transaction, not typed data")
    fields = action_fields(kind)
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
                {"name": "salt", "type": "bytes32"},
            ],
            kind.__name__: [
                {"name": "nonce", "type": "uint64"},
                {"name": "fee", "type": "uint256"},
                *({"name": name, "type": eip712_type} for _, name, eip712_type in fields),
            ],
        },
        "primaryType": kind.__name__,
        "domain": {
            "name": "seqnet",
            "version": "1",
            "chainId": domain.chain_id,
            "verifyingContract": "0x" + domain.verifying_contract.hex(),
            "salt": "0x" + domain.genesis_hash.hex(),
        },
        "message": {
            "nonce": nonce,
            "fee": fee,
            **{
                name: _json_value(getattr(action, field), eip712_type)
                for field, name, eip712_type in fields
            },
        },
    }
