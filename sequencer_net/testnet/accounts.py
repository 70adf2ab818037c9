"""The load generator's accounts: secp256k1 keys derived from a seed.

`testnet up` funds exactly these addresses in genesis (`funded_accounts`), so
the same seed gives `seqnet load` (and later traders) keys the chain knows.
The derivation is public and therefore for local testnets only:

    secret_i = keccak256("seqnet/load-account/v1" || seed (8 bytes BE) || i (4 bytes BE))

re-hashed in the (never observed) case that it is not a valid secp256k1 secret.
"""

from __future__ import annotations

import json
from pathlib import Path

from consensus.crypto import SECP256K1_N, Address, PrivateKey, keccak256

ACCOUNT_DERIVATION_TAG = b"seqnet/load-account/v1"
LOAD_NONCES_FILE = "load-nonces.json"


def load_account_secret(seed: int, index: int) -> bytes:
    secret = keccak256(ACCOUNT_DERIVATION_TAG + seed.to_bytes(8, "big") + index.to_bytes(4, "big"))
    while not 0 < int.from_bytes(secret, "big") < SECP256K1_N:
        secret = keccak256(secret)
    return secret


def load_account_keys(seed: int, count: int) -> list[PrivateKey]:
    return [PrivateKey(load_account_secret(seed, i)) for i in range(count)]


def load_account_addresses(seed: int, count: int) -> list[Address]:
    return [key.address for key in load_account_keys(seed, count)]


def read_next_nonces(path: Path, seed: int, count: int) -> list[int]:
    """Next nonce per account from an earlier run with the same seed (zeros if none).

    Accounts keep their nonces on chain, so a second `seqnet load` against the
    same testnet must continue where the first stopped, not restart at 0.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return [0] * count
    saved = data.get(str(seed), []) if isinstance(data, dict) else []
    nonces = [int(n) for n in saved if isinstance(n, int)][:count]
    return nonces + [0] * (count - len(nonces))


def write_next_nonces(path: Path, seed: int, nonces: list[int]) -> None:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    saved = data.get(str(seed), [])
    if not isinstance(saved, list):
        saved = []
    # Keep the higher nonce of accounts beyond this run's count, or from a parallel run.
    merged = [
        max(nonces[i] if i < len(nonces) else 0, saved[i] if i < len(saved) else 0)
        for i in range(max(len(nonces), len(saved)))
    ]
    data[str(seed)] = merged
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
