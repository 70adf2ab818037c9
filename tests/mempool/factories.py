"""Keys, a domain and signed transactions for mempool and storage tests."""

from __future__ import annotations

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.mempool.mempool import CheckedTx, check_transaction
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction

DOMAIN = Domain(
    chain_id=31337,
    verifying_contract=bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"),
    genesis_hash=keccak256(b"test genesis"),
)
OTHER_DOMAIN = Domain(
    chain_id=1, verifying_contract=DOMAIN.verifying_contract, genesis_hash=DOMAIN.genesis_hash
)


def key(i: int) -> PrivateKey:
    return PrivateKey(keccak256(b"test sender %d" % i))


KEYS = [key(i) for i in range(8)]


def signed(
    sender: int = 0,
    nonce: int = 0,
    *,
    namespace: int = 1,
    fee: int = 0,
    payload: bytes = b"hello rollup",
    domain: Domain = DOMAIN,
) -> bytes:
    tx = sign_transaction(KEYS[sender], domain, nonce, namespace, fee, payload)
    return encode_transaction(tx)


def checked(sender: int = 0, nonce: int = 0, **kwargs: object) -> CheckedTx:
    return check_transaction(signed(sender, nonce, **kwargs), DOMAIN)  # type: ignore[arg-type]
