"""Keys, a domain and signed transactions for mempool and storage tests."""

from __future__ import annotations

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.batches.batch import Batch
from sequencer_net.mempool.encrypted import decode_encrypted, is_encrypted
from sequencer_net.mempool.mempool import CheckedTx, check_transaction
from sequencer_net.mempool.transaction import (
    InvalidTransaction,
    decode_transaction,
    encode_transaction,
    recover_sender,
    sign_transaction,
)

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


def carrying_batch(domain: Domain, author: int, sequence: int, transactions: list[bytes]) -> Batch:
    """A batch of `transactions` carrying their senders, as an honest author
    fills them: the signer each recovers under `domain` (an encrypted one's
    envelope signer); 20 zero bytes for one that does not decode or recover."""
    senders: list[bytes] = []
    for encoded in transactions:
        try:
            if is_encrypted(encoded):
                senders.append(bytes(decode_encrypted(encoded).sender))
            else:
                senders.append(bytes(recover_sender(decode_transaction(encoded), domain)))
        except InvalidTransaction:
            senders.append(bytes(20))
    return Batch(author, sequence, list(transactions), senders)
