"""The compiled L1 contracts (contracts/build/<Name>.json) and their custom errors.

Artifacts are written by `node scripts/compile_contracts.js` and committed, so
nothing here needs a compiler: `load_artifact("Commitments")` gives the ABI
and creation bytecode. web3 reports a custom-error revert as a bare selector
(`ContractCustomError` whose data is `0x<selector><arguments>`);
`custom_error_name` names it from the selectors of every artifact's ABI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

from consensus.crypto import keccak256

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
BUILD_DIR: Final = REPO_ROOT / "contracts" / "build"
CONTRACT_NAMES: Final = ("CollateralToken", "Commitments", "Inbox", "Bridge")


class ArtifactError(RuntimeError):
    """An artifact is missing or not the {"abi": [...], "bytecode": "0x..."} layout."""


class UnknownCustomError(LookupError):
    """Revert data whose selector no contract of ours declares."""


@dataclass(frozen=True, slots=True)
class Artifact:
    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes

    @property
    def abi_list(self) -> list[dict[str, Any]]:
        """The ABI as web3 takes it."""
        return list(self.abi)


@cache
def load_artifact(name: str, build_dir: Path = BUILD_DIR) -> Artifact:
    """The artifact of contract `name` (one of CONTRACT_NAMES) in `build_dir`."""
    path = build_dir / f"{name}.json"
    try:
        raw = json.loads(path.read_text())
        abi = raw["abi"]
        code = raw["bytecode"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: not a readable contract artifact ({exc})") from exc
    if not isinstance(abi, list) or not isinstance(code, str) or not code.startswith("0x"):
        raise ArtifactError(f"{path}: abi must be a list and bytecode a 0x-prefixed hex string")
    return Artifact(name=name, abi=tuple(abi), bytecode=bytes.fromhex(code[2:]))


def error_signature(entry: dict[str, Any]) -> str:
    """`Name(type,...)` of an ABI error entry (tuples spelled out as Solidity does)."""
    return f"{entry['name']}({','.join(_abi_type(p) for p in entry['inputs'])})"


def _abi_type(param: dict[str, Any]) -> str:
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in param["components"]) + ")" + kind[5:]
    return kind


@cache
def custom_errors() -> dict[bytes, str]:
    """Selector (4 bytes) -> error name, over every contract in CONTRACT_NAMES."""
    errors: dict[bytes, str] = {}
    for name in CONTRACT_NAMES:
        for entry in load_artifact(name).abi:
            if entry.get("type") == "error":
                selector = keccak256(error_signature(entry).encode())[:4]
                known = errors.setdefault(selector, entry["name"])
                if known != entry["name"]:
                    raise ArtifactError(f"selector clash: {known} and {entry['name']}")
    return errors


def revert_selector(exc: BaseException) -> bytes:
    """The 4-byte selector of a web3 `ContractCustomError` (or any error with `.data`)."""
    data = getattr(exc, "data", None)
    if isinstance(data, bytes):
        raw = data
    elif isinstance(data, str) and data.startswith("0x"):
        try:
            raw = bytes.fromhex(data[2:])
        except ValueError:
            raw = b""
    else:
        raw = b""
    if len(raw) < 4:
        raise UnknownCustomError(f"no revert selector in {exc!r:.200}")
    return raw[:4]


def custom_error_name(exc: BaseException) -> str:
    """The name of the custom error a contract call reverted with, e.g. "StaleHeight"."""
    selector = revert_selector(exc)
    try:
        return custom_errors()[selector]
    except KeyError:
        raise UnknownCustomError(f"selector 0x{selector.hex()} is not one of ours") from None
