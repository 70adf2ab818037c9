"""The committed contract artifacts are what the sources compile to; the
Python helpers agree with the EVM's rules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import rlp
from web3.exceptions import ContractCustomError

from consensus.crypto import keccak256
from sequencer_net.l1.artifacts import (
    BUILD_DIR,
    CONTRACT_NAMES,
    REPO_ROOT,
    UnknownCustomError,
    custom_error_name,
    custom_errors,
    load_artifact,
)
from sequencer_net.l1.deploy import create_address, predict_addresses

COMPILER = REPO_ROOT / "scripts" / "compile_contracts.js"


def test_committed_artifacts_match_the_sources(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot recompile the contracts")
    if not (REPO_ROOT / "node_modules" / "solc").is_dir():
        pytest.skip("npm solc is not installed (run scripts/setup.sh)")
    subprocess.run(
        [node, str(COMPILER), "--out", str(tmp_path)], check=True, capture_output=True, timeout=120
    )
    for name in CONTRACT_NAMES:
        rebuilt = (tmp_path / f"{name}.json").read_bytes()
        committed = (BUILD_DIR / f"{name}.json").read_bytes()
        assert rebuilt == committed, (
            f"contracts/build/{name}.json is stale: run scripts/compile_contracts.js"
        )


def test_artifacts_load() -> None:
    for name in CONTRACT_NAMES:
        artifact = load_artifact(name)
        assert artifact.bytecode, name
        assert any(entry.get("type") == "function" for entry in artifact.abi), name


def test_custom_error_names_from_selectors() -> None:
    errors = custom_errors()
    assert errors[keccak256(b"StaleHeight(uint64,uint64)")[:4]] == "StaleHeight"
    assert errors[keccak256(b"ProofMismatch()")[:4]] == "ProofMismatch"
    data = "0x" + keccak256(b"AlreadyWithdrawn(uint64)")[:4].hex() + "00" * 31 + "07"
    assert custom_error_name(ContractCustomError(data, data=data)) == "AlreadyWithdrawn"
    with pytest.raises(UnknownCustomError):
        custom_error_name(ContractCustomError("0xdeadbeef", data="0xdeadbeef"))
    with pytest.raises(UnknownCustomError):
        custom_error_name(ValueError("no data"))


def test_create_address_matches_rlp() -> None:
    sender = bytes.fromhex("f39fd6e51aad88f6f4ce6ab8827279cfffb92266")
    for nonce in (0, 1, 0x7F, 0x80, 0xFF, 0x100, 2**32, 2**64 - 1):
        assert create_address(sender, nonce) == keccak256(rlp.encode([sender, nonce]))[12:]
    # anvil's first dev account deploys its first contract here (a widely known address)
    assert create_address(sender, 0).hex() == "5fbdb2315678afecb367f032d93f642f64180aa3"
    addresses = predict_addresses(sender, 5)
    assert addresses.commitments == create_address(sender, 6)
    assert addresses.bridge == create_address(sender, 8)
