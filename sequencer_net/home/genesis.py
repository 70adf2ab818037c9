"""The genesis file: the validator set, the signing domain and the initial state.

Every validator of a network holds the same `genesis.json`. It is plain JSON so
an operator can read and review it: byte strings are `0x` hex, integers are
JSON numbers, and integers beyond 2**53 - 1 (wad amounts, which JavaScript
tools would round) are decimal strings. Nothing hashes the JSON: the genesis
block commits to `Genesis.canonical_bytes()`, a domain-tagged msgspec
encoding (see "Canonical bytes" below and STYLE.md item 5).

Canonical bytes cover what defines the chain: chain id, genesis time, L1
verifying contract, each validator's address, public key and weight, the
execution engine's genesis and, when present, the threshold encryption key
(`threshold`: key epoch, t, the network key Y and each validator's
verification key Y_i in validator order; docs/fairness.md). A genesis without
a `threshold` section runs with encryption off and keeps the digest it had
before the section existed. A validator's name, its network addresses and the
default view timeout are operational hints: they may differ between copies of
the file (an operator who moves a validator to a new host edits them, or
overrides them with `[p2p] peers` in config.toml) without changing the chain.

`Genesis` checks itself on construction and raises GenesisError at the first
rule it breaks, so a `Genesis` value is always valid.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
import secrets as secrets_module
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import coincurve
import msgspec
import msgspec.inspect as mi

from consensus.core import genesis_block
from consensus.crypto import ADDRESS_LENGTH, Address, PrivateKey, keccak256
from consensus.encoding import Domain
from consensus.epochs import Epoch, EpochSchedule
from consensus.limits import MAX_PAYLOAD_BYTES, MAX_VALIDATORS
from consensus.messages import Block
from consensus.types import Height, Validator, ValidatorSet
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.exceptions import ExecutionError
from sequencer_net.execution.genesis import (
    GenesisConfig,
    GenesisDeposit,
    GenesisMarket,
    genesis_state,
)
from sequencer_net.execution.records import OracleReporter
from sequencer_net.fairness.group import InvalidGroupElement, decode_point, encode_point
from sequencer_net.fairness.tdh2 import PublicKeySet, ThresholdError, check_threshold

GENESIS_TAG: Final = b"seqnet/genesis/v1\x00"
"""Prefix of the canonical bytes, so they never collide with another encoded thing."""

MAX_CHAIN_ID: Final = 2**63 - 1
"""Chain ids travel as signed 64-bit integers on the wire (msgspec int64)."""

MAX_WEIGHT: Final = 2**48
"""Bounds the total voting weight (1024 validators) far below 2**64."""

MAX_VIEW_TIMEOUT_MS: Final = 3_600_000
MAX_EPOCHS: Final = 1024
"""Later epochs a genesis may schedule (the canonical size cap binds first for large sets)."""
MAX_JSON_SAFE_INT: Final = 2**53 - 1
"""Integers above this are written as decimal strings (JavaScript's Number limit)."""

PUBLIC_KEY_LENGTH: Final = 65

LOCAL_FUNDED_AMOUNT: Final = 1_000_000 * 10**18
"""Collateral (wad) that `make_local_genesis` deposits for each funded account."""
LOCAL_INSURANCE_FUND: Final = 1_000_000 * 10**18

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class GenesisError(ValueError):
    """A genesis file or value breaks a rule; the message says which and where."""


@dataclass(frozen=True)
class GenesisValidator:
    name: str  # a label for logs and status output, e.g. "node0"
    address: bytes  # 20 bytes: keccak256(public_key[1:])[12:]
    public_key: bytes  # 65 bytes, uncompressed secp256k1 (0x04 || x || y)
    weight: int  # voting power, > 0
    p2p_host: str
    p2p_port: int
    api_host: str
    api_port: int


@dataclass(frozen=True)
class GenesisThreshold:
    """The network's threshold encryption key (docs/fairness.md).

    `threshold` is t (f+1..n-f, `check_threshold`); `public_key` is Y and
    `verification_keys[i]` is validator i's Y_i (its key share has index
    i + 1), all 33-byte compressed points."""

    key_epoch: int
    threshold: int
    public_key: bytes
    verification_keys: tuple[bytes, ...]

    def key_set(self) -> PublicKeySet:
        return PublicKeySet(
            public_key=decode_point(self.public_key),
            verification_keys=tuple(decode_point(k) for k in self.verification_keys),
            threshold=self.threshold,
        )


@dataclass(frozen=True)
class GenesisEpoch:
    """A later validator-set epoch (docs/consensus.md, "Validator-set epochs"):
    from `first_height` on, `validators` sign in the epoch's own domain; their
    threshold key is `threshold` (present exactly when the chain encrypts, with
    `key_epoch` equal to the epoch's number)."""

    first_height: int
    validators: tuple[GenesisValidator, ...]
    threshold: GenesisThreshold | None = None


@dataclass(frozen=True)
class Genesis:
    chain_id: int
    genesis_time_ms: int  # unix milliseconds; the execution genesis holds the same in seconds
    verifying_contract: bytes  # 20-byte L1 contract address; zero until the L1 is deployed
    view_timeout_ms: int  # default consensus view timeout; a node's config may override it
    validators: tuple[GenesisValidator, ...]
    execution: GenesisConfig
    threshold: GenesisThreshold | None = None  # None: encryption off
    epochs: tuple[GenesisEpoch, ...] = ()
    """Epochs 1, 2, ... in order; `validators` and `threshold` above are epoch 0's
    (from height 1). Empty: the set never changes."""

    def __post_init__(self) -> None:
        check_genesis(self)

    def validator_set(self) -> ValidatorSet:
        """Epoch 0's set (the only one of a chain without later epochs)."""
        return _validator_set(self.validators)

    def epoch_validators(self, epoch: int) -> tuple[GenesisValidator, ...]:
        if epoch == 0:
            return self.validators
        if not 1 <= epoch <= len(self.epochs):
            raise KeyError(f"no epoch {epoch}")
        return self.epochs[epoch - 1].validators

    def epoch_threshold(self, epoch: int) -> GenesisThreshold | None:
        if epoch == 0:
            return self.threshold
        if not 1 <= epoch <= len(self.epochs):
            raise KeyError(f"no epoch {epoch}")
        return self.epochs[epoch - 1].threshold

    def schedule(self) -> EpochSchedule:
        """Which set signs for which heights: epoch 0 from height 1, then `epochs`."""
        return EpochSchedule(
            [Epoch(0, Height(1), self.validator_set())]
            + [
                Epoch(number, Height(e.first_height), _validator_set(e.validators))
                for number, e in enumerate(self.epochs, start=1)
            ]
        )

    def members(self) -> tuple[GenesisValidator, ...]:
        """Every validator of any epoch, once (by address), in order of first
        appearance: epoch 0's in validator order, then each later epoch's newcomers.
        A member's entry is its first appearance (network hints included)."""
        seen: dict[bytes, GenesisValidator] = {}
        for epoch in range(len(self.epochs) + 1):
            for v in self.epoch_validators(epoch):
                seen.setdefault(v.address, v)
        return tuple(seen.values())

    def epoch_index(self, epoch: int, address: bytes) -> int | None:
        """The index of `address` in `epoch`'s set, or None when it is not a member."""
        for index, validator in enumerate(self.epoch_validators(epoch)):
            if validator.address == address:
                return index
        return None

    def domain(self) -> Domain:
        return Domain(
            chain_id=self.chain_id,
            verifying_contract=self.verifying_contract,
            genesis_hash=self.genesis_block().digest(),
        )

    def genesis_block(self) -> Block:
        return genesis_block(self.canonical_bytes())

    def canonical_bytes(self) -> bytes:
        return _canonical_bytes(self)

    def validator_index(self, address: bytes) -> int | None:
        """The index of the validator with `address`, or None for a non-validator."""
        for index, validator in enumerate(self.validators):
            if validator.address == address:
                return index
        return None


def _validator_set(validators: Sequence[GenesisValidator]) -> ValidatorSet:
    return ValidatorSet([Validator(Address(v.address), v.weight) for v in validators])


# --- Canonical bytes -----------------------------------------------------------------


class _CanonicalValidator(msgspec.Struct, frozen=True, array_like=True):
    address: bytes
    public_key: bytes
    weight: int


class _CanonicalThreshold(msgspec.Struct, frozen=True, array_like=True):
    key_epoch: int
    threshold: int
    public_key: bytes
    verification_keys: tuple[bytes, ...]


class _CanonicalEpoch(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    first_height: int
    validators: tuple[_CanonicalValidator, ...]
    threshold: _CanonicalThreshold | None = None


class _CanonicalGenesis(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """`execution` is the execution genesis's fields up to `fee_per_byte` (the
    encoding of a GenesisConfig from before `collateral_token` existed);
    `collateral_token` follows on its own and is omitted when empty, so a
    genesis without one keeps its digest; `threshold` likewise (omitted when
    encryption is off), and `epochs` (omitted for a chain whose set never
    changes)."""

    chain_id: int
    genesis_time_ms: int
    verifying_contract: bytes
    validators: tuple[_CanonicalValidator, ...]
    execution: tuple[Any, ...]
    collateral_token: bytes = b""
    threshold: _CanonicalThreshold | None = None
    epochs: tuple[_CanonicalEpoch, ...] = ()


_APPENDED_EXECUTION_FIELDS: Final = ("collateral_token",)
"""GenesisConfig fields the canonical document carries outside `execution`."""


def _canonical_validators(
    validators: Sequence[GenesisValidator],
) -> tuple[_CanonicalValidator, ...]:
    return tuple(_CanonicalValidator(v.address, v.public_key, v.weight) for v in validators)


def _canonical_threshold(section: GenesisThreshold | None) -> _CanonicalThreshold | None:
    if section is None:
        return None
    return _CanonicalThreshold(
        section.key_epoch,
        section.threshold,
        section.public_key,
        tuple(section.verification_keys),
    )


def _canonical_bytes(genesis: Genesis) -> bytes:
    execution = genesis.execution
    names = [n for n in execution.__struct_fields__ if n not in _APPENDED_EXECUTION_FIELDS]
    document = _CanonicalGenesis(
        chain_id=genesis.chain_id,
        genesis_time_ms=genesis.genesis_time_ms,
        verifying_contract=genesis.verifying_contract,
        validators=_canonical_validators(genesis.validators),
        execution=tuple(getattr(execution, name) for name in names),
        collateral_token=execution.collateral_token,
        threshold=_canonical_threshold(genesis.threshold),
        epochs=tuple(
            _CanonicalEpoch(
                e.first_height,
                _canonical_validators(e.validators),
                _canonical_threshold(e.threshold),
            )
            for e in genesis.epochs
        ),
    )
    return GENESIS_TAG + encode(document)


# --- Validation ----------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_genesis(genesis: Genesis) -> None:
    """Raise GenesisError at the first rule `genesis` breaks."""
    if not _is_int(genesis.chain_id) or not 1 <= genesis.chain_id <= MAX_CHAIN_ID:
        raise GenesisError(f"chain_id: must be an integer in 1..{MAX_CHAIN_ID}")
    if not _is_int(genesis.genesis_time_ms) or not 0 <= genesis.genesis_time_ms < 2**63:
        raise GenesisError("genesis_time_ms: must be a non-negative unix time in milliseconds")
    if (
        not isinstance(genesis.verifying_contract, bytes)
        or len(genesis.verifying_contract) != ADDRESS_LENGTH
    ):
        raise GenesisError("verifying_contract: must be a 20-byte address")
    if (
        not _is_int(genesis.view_timeout_ms)
        or not 1 <= genesis.view_timeout_ms <= MAX_VIEW_TIMEOUT_MS
    ):
        raise GenesisError(f"view_timeout_ms: must be in 1..{MAX_VIEW_TIMEOUT_MS}")
    if not isinstance(genesis.validators, tuple):
        raise GenesisError("validators: must be a tuple of GenesisValidator")
    if not genesis.validators:
        raise GenesisError("validators: at least one validator is needed")
    if len(genesis.validators) > MAX_VALIDATORS:
        raise GenesisError(f"validators: at most {MAX_VALIDATORS} validators")
    for index, validator in enumerate(genesis.validators):
        _check_validator(f"validators[{index}]", validator)
    _check_unique(genesis.validators)
    if not isinstance(genesis.execution, GenesisConfig):
        raise GenesisError("execution: must be an execution GenesisConfig")
    if genesis.threshold is not None:
        _check_threshold_section("threshold", genesis.threshold, len(genesis.validators))
    _check_epochs(genesis)
    size = len(genesis.canonical_bytes())
    if size > MAX_PAYLOAD_BYTES:
        raise GenesisError(
            f"the genesis encodes to {size} bytes, above the block payload cap {MAX_PAYLOAD_BYTES}"
        )
    _check_execution(genesis)


def _check_validator(where: str, v: GenesisValidator) -> None:
    if not isinstance(v.name, str) or not _NAME.match(v.name):
        raise GenesisError(
            f"{where}.name: {v.name!r} must be 1-64 letters, digits, '_', '.' or '-'"
        )
    where = f"{where} ({v.name})"
    if not isinstance(v.public_key, bytes) or len(v.public_key) != PUBLIC_KEY_LENGTH:
        raise GenesisError(f"{where}.public_key: must be 65 bytes (uncompressed, 0x04...)")
    if v.public_key[0] != 4:
        raise GenesisError(f"{where}.public_key: must be uncompressed (start with 0x04)")
    try:
        coincurve.PublicKey(v.public_key)
    except Exception as exc:  # coincurve raises plain Exception for a bad point
        raise GenesisError(f"{where}.public_key: not a point on secp256k1") from exc
    if not isinstance(v.address, bytes) or len(v.address) != ADDRESS_LENGTH:
        raise GenesisError(f"{where}.address: must be a 20-byte address")
    expected = keccak256(v.public_key[1:])[12:]
    if v.address != expected:
        raise GenesisError(
            f"{where}.address: 0x{v.address.hex()} is not the public key's address "
            f"0x{expected.hex()} (keccak256(public_key)[12:])"
        )
    if not _is_int(v.weight) or not 1 <= v.weight <= MAX_WEIGHT:
        raise GenesisError(f"{where}.weight: must be an integer in 1..{MAX_WEIGHT}")
    for field in ("p2p", "api"):
        host, port = getattr(v, f"{field}_host"), getattr(v, f"{field}_port")
        if not isinstance(host, str) or not host or any(c.isspace() for c in host):
            raise GenesisError(f"{where}.{field}_host: must be a host name or IP address")
        if not _is_int(port) or not 1 <= port <= 65535:
            raise GenesisError(f"{where}.{field}_port: must be in 1..65535")


def _check_threshold_section(where: str, section: GenesisThreshold, validators: int) -> None:
    """The threshold key: t safe for n = the validator count, one verification
    key per validator, every key a canonical compressed point."""
    if not isinstance(section, GenesisThreshold):
        raise GenesisError(f"{where}: must be a GenesisThreshold")
    if not _is_int(section.key_epoch) or not 0 <= section.key_epoch < 2**63:
        raise GenesisError(f"{where}.key_epoch: must be an integer in 0..2**63-1")
    if not _is_int(section.threshold):
        raise GenesisError(f"{where}.threshold: must be an integer")
    try:
        check_threshold(validators, section.threshold)
    except ThresholdError as exc:
        raise GenesisError(f"{where}.threshold: {exc}") from None
    if not isinstance(section.verification_keys, tuple):
        raise GenesisError(f"{where}.verification_keys: must be a tuple")
    if len(section.verification_keys) != validators:
        raise GenesisError(
            f"{where}.verification_keys: {len(section.verification_keys)} keys for "
            f"{validators} validators (one per validator, in validator order)"
        )
    points = [(f"{where}.public_key", section.public_key)] + [
        (f"{where}.verification_keys[{i}]", k) for i, k in enumerate(section.verification_keys)
    ]
    for where, value in points:
        try:
            if not isinstance(value, bytes):
                raise InvalidGroupElement("not bytes")
            decode_point(value)
        except InvalidGroupElement:
            raise GenesisError(f"{where}: must be a 33-byte compressed secp256k1 point") from None


def _check_epochs(genesis: Genesis) -> None:
    """Later epochs: first heights strictly above the previous epoch's (epoch 1
    above height 1), each set valid on its own, one public key and name per
    address across epochs, and a threshold key in every epoch exactly when
    epoch 0 has one (epoch e's numbered e; epoch 0's then numbered 0)."""
    if not isinstance(genesis.epochs, tuple):
        raise GenesisError("epochs: must be a tuple of GenesisEpoch")
    if len(genesis.epochs) > MAX_EPOCHS:
        raise GenesisError(f"epochs: at most {MAX_EPOCHS} later epochs")
    if genesis.epochs and genesis.threshold is not None and genesis.threshold.key_epoch != 0:
        raise GenesisError("threshold.key_epoch: must be 0 when the genesis has later epochs")
    previous = 1
    known: dict[bytes, GenesisValidator] = {v.address: v for v in genesis.validators}
    for number, epoch in enumerate(genesis.epochs, start=1):
        where = f"epochs[{number - 1}]"
        if not isinstance(epoch, GenesisEpoch):
            raise GenesisError(f"{where}: must be a GenesisEpoch")
        if not _is_int(epoch.first_height) or not previous < epoch.first_height < 2**63 - 1:
            raise GenesisError(
                f"{where}.first_height: must be an integer above {previous} (the previous "
                "epoch's first height) and below 2**63-1"
            )
        previous = epoch.first_height
        if not isinstance(epoch.validators, tuple) or not epoch.validators:
            raise GenesisError(f"{where}.validators: at least one validator is needed")
        if len(epoch.validators) > MAX_VALIDATORS:
            raise GenesisError(f"{where}.validators: at most {MAX_VALIDATORS} validators")
        for index, validator in enumerate(epoch.validators):
            _check_validator(f"{where}.validators[{index}]", validator)
        _check_unique(epoch.validators, f"{where}.validators")
        for index, v in enumerate(epoch.validators):
            first = known.setdefault(v.address, v)
            if (first.public_key, first.name) != (v.public_key, v.name):
                raise GenesisError(
                    f"{where}.validators[{index}] ({v.name}): address 0x{v.address.hex()} "
                    f"appears in an earlier epoch as {first.name!r}; a member keeps its name "
                    "and key in every epoch"
                )
        if (epoch.threshold is None) != (genesis.threshold is None):
            raise GenesisError(
                f"{where}.threshold: every epoch has a threshold key exactly when epoch 0 does"
            )
        if epoch.threshold is not None:
            _check_threshold_section(f"{where}.threshold", epoch.threshold, len(epoch.validators))
            if epoch.threshold.key_epoch != number:
                raise GenesisError(f"{where}.threshold.key_epoch: must be {number}")


def _check_unique(validators: tuple[GenesisValidator, ...], prefix: str = "validators") -> None:
    names: set[str] = set()
    addresses: set[bytes] = set()
    endpoints: dict[tuple[str, int], str] = {}
    for index, v in enumerate(validators):
        where = f"{prefix}[{index}] ({v.name})"
        if v.name in names:
            raise GenesisError(f"{where}.name: duplicate name {v.name!r}")
        names.add(v.name)
        if v.address in addresses:
            raise GenesisError(f"{where}.address: duplicate address 0x{v.address.hex()}")
        addresses.add(v.address)
        for field in ("p2p", "api"):
            endpoint = (getattr(v, f"{field}_host"), getattr(v, f"{field}_port"))
            if endpoint in endpoints:
                raise GenesisError(
                    f"{where}.{field}_port: {endpoint[0]}:{endpoint[1]} is already "
                    f"used by {endpoints[endpoint]}"
                )
            endpoints[endpoint] = f"{v.name}'s {field} port"


def _check_execution(genesis: Genesis) -> None:
    execution = genesis.execution
    if execution.chain_id != genesis.chain_id:
        raise GenesisError(
            f"execution.chain_id: {execution.chain_id} differs from chain_id {genesis.chain_id}"
        )
    if execution.genesis_time != genesis.genesis_time_ms // 1000:
        raise GenesisError(
            f"execution.genesis_time: must be genesis_time_ms // 1000 = "
            f"{genesis.genesis_time_ms // 1000} (seconds), got {execution.genesis_time}"
        )
    if tuple(execution.oracles) != oracle_reporters(genesis.validators):
        raise GenesisError(
            "execution.oracles: must be the validators with their weights "
            "(address and power of each, sorted by address)"
        )
    try:
        genesis_state(execution)  # builds the height-0 state in memory: every engine check
    except (ValueError, ExecutionError, TypeError) as exc:
        raise GenesisError(f"execution: {exc}") from exc


# --- JSON ----------------------------------------------------------------------------

_REQUIRED_TOP_KEYS = (
    "chain_id",
    "genesis_time_ms",
    "verifying_contract",
    "view_timeout_ms",
    "validators",
    "execution",
)
_TOP_KEYS = (*_REQUIRED_TOP_KEYS, "threshold", "epochs")
_EPOCH_KEYS = ("first_height", "validators", "threshold")
_THRESHOLD_KEYS = ("key_epoch", "threshold", "public_key", "verification_keys")
_VALIDATOR_KEYS = (
    "name",
    "address",
    "public_key",
    "weight",
    "p2p_host",
    "p2p_port",
    "api_host",
    "api_port",
)


def _json_int(value: int) -> int | str:
    return value if abs(value) <= MAX_JSON_SAFE_INT else str(value)


def _to_json(value: Any) -> Any:
    """A msgspec Struct tree as readable JSON values (field names, hex, enum names)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, int):
        return _json_int(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, msgspec.Struct):
        return {f: _to_json(getattr(value, f)) for f in value.__struct_fields__}
    if isinstance(value, tuple | list):
        return [_to_json(item) for item in value]
    raise TypeError(f"no JSON form for {type(value).__name__}")


def genesis_to_json(genesis: Genesis) -> dict[str, Any]:
    document = _genesis_json_core(genesis)
    if genesis.threshold is not None:
        document["threshold"] = _threshold_json(genesis.threshold)
    if genesis.epochs:
        document["epochs"] = [
            {
                "first_height": _json_int(e.first_height),
                "validators": _validators_json(e.validators),
                **({} if e.threshold is None else {"threshold": _threshold_json(e.threshold)}),
            }
            for e in genesis.epochs
        ]
    return document


def _threshold_json(section: GenesisThreshold) -> dict[str, Any]:
    return {
        "key_epoch": _json_int(section.key_epoch),
        "threshold": section.threshold,
        "public_key": "0x" + section.public_key.hex(),
        "verification_keys": ["0x" + k.hex() for k in section.verification_keys],
    }


def _validators_json(validators: Sequence[GenesisValidator]) -> list[dict[str, Any]]:
    return [
        {
            "name": v.name,
            "address": "0x" + v.address.hex(),
            "public_key": "0x" + v.public_key.hex(),
            "weight": _json_int(v.weight),
            "p2p_host": v.p2p_host,
            "p2p_port": v.p2p_port,
            "api_host": v.api_host,
            "api_port": v.api_port,
        }
        for v in validators
    ]


def _genesis_json_core(genesis: Genesis) -> dict[str, Any]:
    return {
        "chain_id": _json_int(genesis.chain_id),
        "genesis_time_ms": _json_int(genesis.genesis_time_ms),
        "verifying_contract": "0x" + genesis.verifying_contract.hex(),
        "view_timeout_ms": genesis.view_timeout_ms,
        "validators": _validators_json(genesis.validators),
        "execution": _to_json(genesis.execution),
    }


def _object(value: Any, where: str, keys: Sequence[str], required: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise GenesisError(f"{where}: must be a JSON object")
    for key in value:
        if key not in keys:
            raise GenesisError(f"{_join(where, key)}: unknown key")
    for key in required:
        if key not in value:
            raise GenesisError(f"{_join(where, key)}: missing")
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _int(value: Any, where: str) -> int:
    if _is_int(value):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        return int(value)
    raise GenesisError(f"{where}: must be an integer (a JSON number or a decimal string)")


def _bytes(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise GenesisError(f"{where}: must be a 0x-prefixed hex string")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise GenesisError(f"{where}: {value!r} is not valid hex") from None


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise GenesisError(f"{where}: must be a string")
    return value


def _from_json(value: Any, info: mi.Type, where: str) -> Any:
    """Read a JSON value as the msgspec type `info` describes (the inverse of `_to_json`)."""
    if isinstance(info, mi.IntType):
        return _int(value, where)
    if isinstance(info, mi.BytesType):
        return _bytes(value, where)
    if isinstance(info, mi.StrType):
        return _str(value, where)
    if isinstance(info, mi.BoolType):
        if not isinstance(value, bool):
            raise GenesisError(f"{where}: must be true or false")
        return value
    if isinstance(info, mi.EnumType):
        members: dict[str, Any] = {m.name.lower(): m for m in info.cls}
        if isinstance(value, str) and value.lower() in members:
            return members[value.lower()]
        raise GenesisError(f"{where}: must be one of {', '.join(members)}")
    if isinstance(info, mi.VarTupleType | mi.ListType):
        if not isinstance(value, list):
            raise GenesisError(f"{where}: must be a JSON array")
        return tuple(
            _from_json(item, info.item_type, f"{where}[{i}]") for i, item in enumerate(value)
        )
    if isinstance(info, mi.UnionType):
        if value is None and any(isinstance(t, mi.NoneType) for t in info.types):
            return None
        others = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(others) != 1:
            raise TypeError(f"{where}: unsupported union in the execution genesis")
        return _from_json(value, others[0], where)
    if isinstance(info, mi.StructType):
        names = [f.name for f in info.fields]
        required = [f.name for f in info.fields if f.required]
        obj = _object(value, where, names, required)
        kwargs = {
            f.name: _from_json(obj[f.name], f.type, _join(where, f.name))
            for f in info.fields
            if f.name in obj
        }
        return info.cls(**kwargs)
    raise TypeError(f"{where}: unsupported type {info!r} in the execution genesis")


_EXECUTION_TYPE: Final = mi.type_info(GenesisConfig)


def genesis_from_json(document: Any) -> Genesis:
    """Build (and so check) a Genesis from parsed JSON; raise GenesisError naming the key."""
    top = _object(document, "", _TOP_KEYS, _REQUIRED_TOP_KEYS)
    validators = _validators_from_json(top["validators"], "validators")
    execution = _from_json(top["execution"], _EXECUTION_TYPE, "execution")
    threshold = None
    if "threshold" in top:
        threshold = _threshold_from_json(top["threshold"], "threshold")
    epochs = []
    if "epochs" in top:
        if not isinstance(top["epochs"], list):
            raise GenesisError("epochs: must be a JSON array")
        if len(top["epochs"]) > MAX_EPOCHS:
            raise GenesisError(f"epochs: at most {MAX_EPOCHS} later epochs")
        for index, item in enumerate(top["epochs"]):
            where = f"epochs[{index}]"
            e = _object(item, where, _EPOCH_KEYS, ("first_height", "validators"))
            epochs.append(
                GenesisEpoch(
                    first_height=_int(e["first_height"], f"{where}.first_height"),
                    validators=_validators_from_json(e["validators"], f"{where}.validators"),
                    threshold=(
                        _threshold_from_json(e["threshold"], f"{where}.threshold")
                        if "threshold" in e
                        else None
                    ),
                )
            )
    return Genesis(
        chain_id=_int(top["chain_id"], "chain_id"),
        genesis_time_ms=_int(top["genesis_time_ms"], "genesis_time_ms"),
        verifying_contract=_bytes(top["verifying_contract"], "verifying_contract"),
        view_timeout_ms=_int(top["view_timeout_ms"], "view_timeout_ms"),
        validators=tuple(validators),
        execution=execution,
        threshold=threshold,
        epochs=tuple(epochs),
    )


def _validators_from_json(value: Any, where: str) -> tuple[GenesisValidator, ...]:
    if not isinstance(value, list):
        raise GenesisError(f"{where}: must be a JSON array")
    if len(value) > MAX_VALIDATORS:
        raise GenesisError(f"{where}: at most {MAX_VALIDATORS} validators")
    validators = []
    for index, item in enumerate(value):
        at = f"{where}[{index}]"
        v = _object(item, at, _VALIDATOR_KEYS, _VALIDATOR_KEYS)
        validators.append(
            GenesisValidator(
                name=_str(v["name"], f"{at}.name"),
                address=_bytes(v["address"], f"{at}.address"),
                public_key=_bytes(v["public_key"], f"{at}.public_key"),
                weight=_int(v["weight"], f"{at}.weight"),
                p2p_host=_str(v["p2p_host"], f"{at}.p2p_host"),
                p2p_port=_int(v["p2p_port"], f"{at}.p2p_port"),
                api_host=_str(v["api_host"], f"{at}.api_host"),
                api_port=_int(v["api_port"], f"{at}.api_port"),
            )
        )
    return tuple(validators)


def _threshold_from_json(value: Any, where: str) -> GenesisThreshold:
    section = _object(value, where, _THRESHOLD_KEYS, _THRESHOLD_KEYS)
    keys = section["verification_keys"]
    if not isinstance(keys, list):
        raise GenesisError(f"{where}.verification_keys: must be a JSON array")
    return GenesisThreshold(
        key_epoch=_int(section["key_epoch"], f"{where}.key_epoch"),
        threshold=_int(section["threshold"], f"{where}.threshold"),
        public_key=_bytes(section["public_key"], f"{where}.public_key"),
        verification_keys=tuple(
            _bytes(k, f"{where}.verification_keys[{i}]") for i, k in enumerate(keys)
        ),
    )


def load_genesis(path: Path) -> Genesis:
    """Read and check a genesis file; GenesisError messages start with the path."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise GenesisError(f"{path}: cannot read the genesis file: {exc.strerror}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GenesisError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    try:
        return genesis_from_json(document)
    except GenesisError as exc:
        raise GenesisError(f"{path}: {exc}") from exc


def genesis_json_text(genesis: Genesis) -> str:
    return json.dumps(genesis_to_json(genesis), indent=2) + "\n"


def write_genesis(path: Path, genesis: Genesis) -> None:
    """Write `genesis` as readable JSON, atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    try:
        with open(tmp, "x") as file:
            file.write(genesis_json_text(genesis))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- Local networks ------------------------------------------------------------------


def oracle_reporters(validators: Sequence[GenesisValidator]) -> tuple[OracleReporter, ...]:
    """The execution oracle set of a network: its validators, weighted by voting power."""
    return tuple(
        sorted(
            (OracleReporter(address=v.address, power=v.weight) for v in validators),
            key=lambda reporter: reporter.address,
        )
    )


def default_execution_genesis(
    admin: bytes,
    *,
    chain_id: int,
    genesis_time_ms: int,
    reporters: Sequence[OracleReporter],
    funded_accounts: Sequence[bytes] = (),
    markets: Sequence[GenesisMarket] = (),
    operator: bytes | None = None,
    fund_admin: bool = False,
) -> GenesisConfig:
    """An execution genesis governed by `admin` (also the bridge), with
    `reporters` (the validators, `oracle_reporters`) as its oracle, listing
    `markets`, with LOCAL_FUNDED_AMOUNT for each funded account (a 20-byte
    address, meaning its subaccount 0, or a 21-byte subaccount id), for each
    reporter (its price reports pay fees), for the admin if `fund_admin`, and
    LOCAL_INSURANCE_FUND.

    `operator`, if given, is a market operator key (a testnet's load posts
    bridge deposits with it): it becomes the bridge and is funded. Every sender
    pays its fees from its subaccount 0, so each key that sends from height 1
    on needs collateral there.
    """
    funded = [
        *funded_accounts,
        *([admin] if fund_admin else []),
        *(reporter.address for reporter in reporters),
        *([operator] if operator is not None else []),
    ]
    deposits = []
    seen: set[bytes] = set()
    for account in funded:
        if len(account) not in (ADDRESS_LENGTH, ADDRESS_LENGTH + 1):
            raise GenesisError(
                f"funded_accounts: 0x{account.hex()} is neither an address nor a subaccount id"
            )
        subaccount = account if len(account) == ADDRESS_LENGTH + 1 else account + b"\x00"
        if subaccount in seen:
            continue
        seen.add(subaccount)
        deposits.append(GenesisDeposit(subaccount=subaccount, amount=LOCAL_FUNDED_AMOUNT))
    return GenesisConfig(
        chain_id=chain_id,
        admin=admin,
        bridge=admin if operator is None else operator,
        oracles=tuple(reporters),
        genesis_time=genesis_time_ms // 1000,
        deposits=tuple(deposits),
        insurance_fund=LOCAL_INSURANCE_FUND,
        markets=tuple(markets),
    )


LOCAL_CHAIN_ID_RANGE = (2**40, 2**48)
"""Where a fresh local genesis draws its chain id when none is given: far above
the ids public chains register, and below 2**53 so JavaScript wallets and
tools hold it exactly. Two dev networks then never share a chain id, so a
transaction signed for one is refused by the other."""


def random_chain_id() -> int:
    """A fresh chain id in LOCAL_CHAIN_ID_RANGE (not for consensus: for genesis)."""
    low, high = LOCAL_CHAIN_ID_RANGE
    return low + secrets_module.randbelow(high - low)


def make_local_genesis(
    secrets: Sequence[bytes],
    *,
    chain_id: int | None = None,
    host: str = "127.0.0.1",
    base_p2p_port: int,
    base_api_port: int,
    weights: Sequence[int] | None = None,
    view_timeout_ms: int = 1000,
    genesis_time_ms: int | None = None,
    funded_accounts: Sequence[bytes] = (),
    markets: Sequence[GenesisMarket] = (),
    market_operator: bytes | None = None,
    fund_admin: bool = False,
    threshold_keys: PublicKeySet | None = None,
    key_epoch: int = 0,
    initial: Sequence[int] | None = None,
    epochs: Sequence[LocalEpoch] = (),
) -> Genesis:
    """A genesis for a network on one machine, one validator per secret.

    Validator i is named `node{i}` and listens on `base_p2p_port + i` (p2p) and
    `base_api_port + i` (API). Validator 0's address is the execution admin
    and bridge; the validators are the oracle reporters. Each funded account
    (a 20-byte address, meaning its subaccount 0, or a 21-byte subaccount id),
    each validator, and the admin if `fund_admin`, starts with
    LOCAL_FUNDED_AMOUNT of collateral; the insurance fund starts with
    LOCAL_INSURANCE_FUND. `markets` are listed at genesis; `market_operator`
    becomes the bridge and is funded (`default_execution_genesis`). Without
    `chain_id` a random one is drawn (`random_chain_id`). `threshold_keys`
    (dealt by `sequencer_net.home.threshold.deal_network_key`) become the
    `threshold` section under `key_epoch`; without them encryption is off.

    With `epochs`, the secrets are every member of any epoch: epoch 0's set is
    the validators at `initial` (indices into `secrets`; all of them by
    default), and each `LocalEpoch` names its members the same way. Member i is
    `node{i}` with the same ports in every epoch.
    """
    if not secrets:
        raise GenesisError("validators: at least one validator is needed")
    if weights is not None and len(weights) != len(secrets):
        raise GenesisError(f"weights: {len(weights)} weights for {len(secrets)} validators")
    keys = [PrivateKey(secret) for secret in secrets]
    if chain_id is None:
        chain_id = random_chain_id()
    if genesis_time_ms is None:
        genesis_time_ms = int(time.time() * 1000)
    validators = tuple(
        GenesisValidator(
            name=f"node{i}",
            address=key.address,
            public_key=key.public_key,
            weight=1 if weights is None else weights[i],
            p2p_host=host,
            p2p_port=base_p2p_port + i,
            api_host=host,
            api_port=base_api_port + i,
        )
        for i, key in enumerate(keys)
    )
    members = validators
    if initial is not None:
        validators = tuple(members[i] for i in initial)
    execution = default_execution_genesis(
        validators[0].address,
        chain_id=chain_id,
        genesis_time_ms=genesis_time_ms,
        reporters=oracle_reporters(validators),
        funded_accounts=funded_accounts,
        markets=markets,
        operator=market_operator,
        fund_admin=fund_admin,
    )
    return Genesis(
        chain_id=chain_id,
        genesis_time_ms=genesis_time_ms,
        verifying_contract=bytes(ADDRESS_LENGTH),
        view_timeout_ms=view_timeout_ms,
        validators=validators,
        execution=execution,
        threshold=None if threshold_keys is None else threshold_section(threshold_keys, key_epoch),
        epochs=tuple(
            GenesisEpoch(
                first_height=e.first_height,
                validators=tuple(
                    dataclasses.replace(members[i], weight=w)
                    for i, w in zip(e.members, e.weights or [1] * len(e.members), strict=True)
                ),
                threshold=(
                    None
                    if e.threshold_keys is None
                    else threshold_section(e.threshold_keys, number)
                ),
            )
            for number, e in enumerate(epochs, start=1)
        ),
    )


@dataclass(frozen=True)
class LocalEpoch:
    """A later epoch of `make_local_genesis`: from `first_height`, the members at
    these indices (into its secrets) with these weights (1 each by default), and
    the epoch's dealt threshold key when the chain encrypts."""

    first_height: int
    members: tuple[int, ...]
    weights: tuple[int, ...] | None = None
    threshold_keys: PublicKeySet | None = None


def threshold_section(keys: PublicKeySet, key_epoch: int = 0) -> GenesisThreshold:
    """The genesis `threshold` section of a dealt key set."""
    return GenesisThreshold(
        key_epoch=key_epoch,
        threshold=keys.threshold,
        public_key=encode_point(keys.public_key),
        verification_keys=tuple(encode_point(k) for k in keys.verification_keys),
    )
