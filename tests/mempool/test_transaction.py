"""Transaction signing and the codec's rejections."""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from consensus.crypto import SECP256K1_N, keccak256
from sequencer_net.mempool.limits import MAX_TX_BYTES, MAX_TX_PAYLOAD_BYTES
from sequencer_net.mempool.transaction import (
    TX_TYPEHASH,
    BadSignature,
    InvalidTransaction,
    MalformedTransaction,
    OversizedTransaction,
    Transaction,
    WrongChain,
    decode_transaction,
    decode_transaction_or_none,
    encode_transaction,
    recover_sender,
    sign_transaction,
    transaction_digest,
    tx_hash,
)
from tests.mempool.factories import DOMAIN, KEYS, OTHER_DOMAIN, signed


def test_round_trip_and_sender() -> None:
    encoded = signed(sender=3, nonce=9, namespace=77, fee=12345, payload=b"\x00\x01")
    tx = decode_transaction(encoded)
    assert (tx.chain_id, tx.nonce, tx.namespace, tx.fee, tx.payload) == (
        DOMAIN.chain_id,
        9,
        77,
        12345,
        b"\x00\x01",
    )
    assert encode_transaction(tx) == encoded
    assert recover_sender(tx, DOMAIN) == KEYS[3].address
    assert tx_hash(encoded) == keccak256(encoded)


def test_typehash_is_the_documented_string() -> None:
    assert (
        keccak256(b"Transaction(uint64 nonce,uint32 namespace,uint256 fee,bytes32 payloadHash)")
        == TX_TYPEHASH
    )


def test_digest_matches_an_ethereum_wallets_eip712_signature() -> None:
    """A wallet signing the typed data (eth-account) produces a signature our
    recovery accepts for the same sender: the digest is standard EIP-712."""
    payload = b"order: buy 1 ETH-PERP"
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
                {"name": "salt", "type": "bytes32"},
            ],
            "Transaction": [
                {"name": "nonce", "type": "uint64"},
                {"name": "namespace", "type": "uint32"},
                {"name": "fee", "type": "uint256"},
                {"name": "payloadHash", "type": "bytes32"},
            ],
        },
        "primaryType": "Transaction",
        "domain": {
            "name": "seqnet",
            "version": "1",
            "chainId": DOMAIN.chain_id,
            "verifyingContract": "0x" + DOMAIN.verifying_contract.hex(),
            "salt": DOMAIN.genesis_hash,
        },
        "message": {"nonce": 5, "namespace": 2, "fee": 10**6, "payloadHash": keccak256(payload)},
    }
    wallet_signed = Account.sign_message(encode_typed_data(full_message=typed), KEYS[1].secret)
    assert wallet_signed.message_hash == transaction_digest(DOMAIN, 5, 2, 10**6, payload)
    tx = Transaction(DOMAIN.chain_id, 5, 2, 10**6, payload, bytes(wallet_signed.signature))
    assert recover_sender(tx, DOMAIN) == KEYS[1].address


def test_oversized_rejected_before_decoding() -> None:
    with pytest.raises(OversizedTransaction):
        decode_transaction(b"\xff" * (MAX_TX_BYTES + 1))


def test_largest_payload_fits_the_wire_cap() -> None:
    encoded = signed(payload=b"x" * MAX_TX_PAYLOAD_BYTES, nonce=2**63 - 1, fee=2**63 - 1)
    assert len(encoded) <= MAX_TX_BYTES
    assert decode_transaction(encoded).payload == b"x" * MAX_TX_PAYLOAD_BYTES


def test_payload_over_the_cap_rejected() -> None:
    tx = Transaction(DOMAIN.chain_id, 0, 1, 0, b"x" * (MAX_TX_PAYLOAD_BYTES + 1), bytes(65))
    with pytest.raises(MalformedTransaction):
        decode_transaction(msgspec.msgpack.encode(tx))
    with pytest.raises(ValueError):
        sign_transaction(KEYS[0], DOMAIN, 0, 1, 0, b"x" * (MAX_TX_PAYLOAD_BYTES + 1))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        msgspec.msgpack.encode([1, 2, 3]),
        msgspec.msgpack.encode({"chain_id": 1}),
        msgspec.msgpack.encode([31337, -1, 1, 0, b"", bytes(65)]),  # negative nonce
        msgspec.msgpack.encode([31337, 0, 2**32, 0, b"", bytes(65)]),  # namespace > u32
        msgspec.msgpack.encode([31337, 0, 1, -5, b"", bytes(65)]),  # negative fee
        msgspec.msgpack.encode([31337, 0, 1, 0, b"", bytes(64)]),  # short signature
        msgspec.msgpack.encode([31337, 0, 1, 0, "text", bytes(65)]),  # payload not bytes
    ],
)
def test_garbage_rejected(data: bytes) -> None:
    with pytest.raises(MalformedTransaction):
        decode_transaction(data)


def test_non_canonical_encoding_rejected() -> None:
    """The same signed transaction with a wider integer encoding would get a second
    hash; only the canonical bytes are accepted."""
    encoded = signed(nonce=1)
    # msgpack: positive fixint 0x01 for nonce -> uint8 0xcc 0x01. Array header is 1
    # byte, chain id 31337 is uint16 (3 bytes), so the nonce is at offset 4.
    assert encoded[4] == 0x01
    widened = encoded[:4] + b"\xcc\x01" + encoded[5:]
    assert msgspec.msgpack.decode(widened) == msgspec.msgpack.decode(encoded)
    with pytest.raises(MalformedTransaction, match="canonical"):
        decode_transaction(widened)


def test_wrong_chain_rejected() -> None:
    tx = decode_transaction(signed(domain=OTHER_DOMAIN))
    with pytest.raises(WrongChain):
        recover_sender(tx, DOMAIN)


def test_tampered_field_recovers_someone_else_or_fails() -> None:
    tx = decode_transaction(signed(sender=0, fee=1))
    tampered = Transaction(tx.chain_id, tx.nonce, tx.namespace, 2, tx.payload, tx.signature)
    with contextlib.suppress(BadSignature):
        assert recover_sender(tampered, DOMAIN) != KEYS[0].address


def test_high_s_twin_rejected() -> None:
    tx = decode_transaction(signed())
    r, s, v = tx.signature[:32], int.from_bytes(tx.signature[32:64], "big"), tx.signature[64]
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    high = Transaction(tx.chain_id, tx.nonce, tx.namespace, tx.fee, tx.payload, twin)
    with pytest.raises(BadSignature, match="high s"):
        recover_sender(high, DOMAIN)


@pytest.mark.parametrize(
    "signature",
    [
        bytes(65),  # r = s = 0
        b"\x01" * 64 + b"\x00",  # v outside {27, 28}
        b"\xff" * 32 + b"\x01" * 32 + b"\x1b",  # r >= n
    ],
    ids=["zero", "bad-v", "r-out-of-range"],
)
def test_bad_signatures_rejected(signature: bytes) -> None:
    tx = Transaction(DOMAIN.chain_id, 0, 1, 0, b"p", signature)
    with pytest.raises(BadSignature):
        recover_sender(tx, DOMAIN)


def test_decode_or_none_is_none_exactly_where_decode_raises() -> None:
    good = signed(0, 3, payload=b"r" * 200)
    cases = [
        good,
        good[:-1],  # truncated
        good + b"\x00",  # trailing byte
        b"",
        b"\x96\x01\x02\x03\x04\xc4\x00\xc4\x00",  # wrong signature length
        b"\x96\xcd\x00\x01\x02\x03\x04\xc4\x00" + b"\xc4\x41" + bytes(65),  # non-canonical int
        b"\x96" + bytes(MAX_TX_BYTES),  # oversized
    ]
    for data in cases:
        try:
            expected = decode_transaction(data)
        except InvalidTransaction:
            expected = None
        assert decode_transaction_or_none(data) == expected
    assert decode_transaction_or_none(good) is not None
