"""The load generator's accounts: secp256k1 keys derived from a seed.

`testnet up` funds exactly these addresses in genesis (`funded_accounts`), so
the same seed gives `seqnet load` (and later traders) keys the chain knows.
The derivation is public and therefore for local testnets only:

    secret_i = keccak256("seqnet/load-account/v1" || seed (8 bytes BE) || i (4 bytes BE))

re-hashed in the (never observed) case that it is not a valid secp256k1 secret.

The market operator of a seed (`market_operator_key`) posts the bridge
deposits of the DEX traffic (sequencer_net.testnet.market); `testnet up` lists
it in genesis as the bridge, and funds it:

    operator = keccak256("seqnet/market-operator/v1" || seed (8 bytes BE))
"""

from __future__ import annotations

import json
from pathlib import Path

from consensus.crypto import SECP256K1_N, Address, PrivateKey, keccak256

ACCOUNT_DERIVATION_TAG = b"seqnet/load-account/v1"
OPERATOR_DERIVATION_TAG = b"seqnet/market-operator/v1"
LOAD_NONCES_FILE = "load-nonces.json"
OPERATOR_SLOT = "operator"
"""The operator's next nonce is saved under "<seed>/operator" in the nonce file."""


def _valid_secret(secret: bytes) -> bytes:
    while not 0 < int.from_bytes(secret, "big") < SECP256K1_N:
        secret = keccak256(secret)
    return secret


def load_account_secret(seed: int, index: int) -> bytes:
    return _valid_secret(
        keccak256(ACCOUNT_DERIVATION_TAG + seed.to_bytes(8, "big") + index.to_bytes(4, "big"))
    )


def market_operator_key(seed: int) -> PrivateKey:
    """The key that posts the load's bridge deposits."""
    return PrivateKey(_valid_secret(keccak256(OPERATOR_DERIVATION_TAG + seed.to_bytes(8, "big"))))


def load_account_keys(seed: int, count: int) -> list[PrivateKey]:
    return [PrivateKey(load_account_secret(seed, i)) for i in range(count)]


def load_account_addresses(seed: int, count: int) -> list[Address]:
    return [key.address for key in load_account_keys(seed, count)]


def _key(seed: int, slot: str | None) -> str:
    return str(seed) if slot is None else f"{seed}/{slot}"


def read_next_nonces(path: Path, seed: int, count: int, slot: str | None = None) -> list[int]:
    """Next nonce per account from an earlier run with the same seed (zeros if none).

    Accounts keep their nonces on chain, so a second `seqnet load` against the
    same testnet must continue where the first stopped, not restart at 0.
    `slot` names another list of the same seed (OPERATOR_SLOT: the operator's).
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return [0] * count
    saved = data.get(_key(seed, slot), []) if isinstance(data, dict) else []
    nonces = [int(n) for n in saved if isinstance(n, int)][:count]
    return nonces + [0] * (count - len(nonces))


def write_next_nonces(path: Path, seed: int, nonces: list[int], slot: str | None = None) -> None:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    saved = data.get(_key(seed, slot), [])
    if not isinstance(saved, list):
        saved = []
    # Keep the higher nonce of accounts beyond this run's count, or from a parallel run.
    merged = [
        max(nonces[i] if i < len(nonces) else 0, saved[i] if i < len(saved) else 0)
        for i in range(max(len(nonces), len(saved)))
    ]
    data[_key(seed, slot)] = merged
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
