"""Shared helpers: deterministic keys (so failures replay) and cheap scrypt."""

from __future__ import annotations

import hashlib

import pytest

from sequencer_net.home.genesis import Genesis, make_local_genesis

FAST_SCRYPT_N = 2**4
"""Tests encrypt with a tiny scrypt cost; one test covers the default cost."""

GENESIS_TIME_MS = 1_700_000_000_123


def secret_for(index: int) -> bytes:
    """A fixed, valid secp256k1 secret per index."""
    return hashlib.sha256(f"seqnet-test-key-{index}".encode()).digest()


@pytest.fixture
def secrets() -> list[bytes]:
    return [secret_for(i) for i in range(4)]


@pytest.fixture
def genesis(secrets: list[bytes]) -> Genesis:
    return make_local_genesis(
        secrets,
        chain_id=31337,
        base_p2p_port=36600,
        base_api_port=36700,
        genesis_time_ms=GENESIS_TIME_MS,
        funded_accounts=[bytes([0xAB]) * 20],
    )


@pytest.fixture
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Encrypt with FAST_SCRYPT_N wherever the default cost would apply."""
    monkeypatch.setattr("sequencer_net.home.keystore.DEFAULT_SCRYPT_N", FAST_SCRYPT_N)
