"""secp256k1 signatures in Ethereum's format, and keccak-256.

Signatures are 65 bytes `r || s || v` with `v` in {27, 28} and low `s`
(s <= n/2), exactly what the EVM's `ecrecover` accepts, so the L1 contracts
can check the same bytes the validators check. Identities are 20-byte
Ethereum addresses (the last 20 bytes of keccak-256 of the public key).
"""

from __future__ import annotations

import threading
from typing import Any, NewType

import coincurve
import sha3  # safe-pysha3: C keccak, ~13x faster than pycryptodome's
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

Address = NewType("Address", bytes)  # 20 bytes
Signature = NewType("Signature", bytes)  # 65 bytes: r || s || v, v in {27, 28}

SIGNATURE_LENGTH = 65
ADDRESS_LENGTH = 20
DIGEST_LENGTH = 32
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2
_N_BYTES = SECP256K1_N.to_bytes(32, "big")
_HALF_N_BYTES = _HALF_N.to_bytes(32, "big")
_ZERO_WORD = bytes(32)


class InvalidSignature(ValueError):
    """A signature is malformed, malleable (high s) or does not recover."""


def keccak256(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()  # type: ignore[no-any-return]


def address_of_public_key(public_key: coincurve.PublicKey) -> Address:
    return Address(keccak256(public_key.format(compressed=False)[1:])[12:])


class PrivateKey:
    """A secp256k1 signing key. Signing is deterministic (RFC 6979)."""

    __slots__ = ("_key", "address", "public_key")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("a secp256k1 secret is 32 bytes")
        self._key = coincurve.PrivateKey(secret)
        self.public_key: bytes = self._key.public_key.format(compressed=False)
        self.address: Address = address_of_public_key(self._key.public_key)

    @property
    def secret(self) -> bytes:
        return bytes(self._key.secret)

    def sign_digest(self, digest: bytes) -> Signature:
        if len(digest) != DIGEST_LENGTH:
            raise ValueError("sign a 32-byte digest")
        raw = self._key.sign_recoverable(digest, hasher=None)  # r || s || recid, low s
        return Signature(raw[:64] + bytes([27 + raw[64]]))


def recover_address(digest: bytes, signature: bytes) -> Address:
    """The address that signed `digest`, as `ecrecover` computes it.

    Raises InvalidSignature for a wrong length, v outside {27, 28}, r or s out
    of range, a high s (malleable twin) or a signature that does not recover.
    """
    if len(digest) != DIGEST_LENGTH:
        raise InvalidSignature("digest must be 32 bytes")
    if len(signature) != SIGNATURE_LENGTH:
        raise InvalidSignature(f"signature must be {SIGNATURE_LENGTH} bytes")
    v = signature[64]
    if v != 27 and v != 28:
        raise InvalidSignature("signature v must be 27 or 28")
    r = signature[:32]
    s = signature[32:64]
    if type(signature) is not bytes:  # a bytearray or memoryview: compare as bytes
        r = bytes(r)
        s = bytes(s)
    # 32-byte big-endian words compare as the integers they encode
    if r == _ZERO_WORD or r >= _N_BYTES or s == _ZERO_WORD or s > _HALF_N_BYTES:
        raise InvalidSignature("signature r or s out of range (high s is rejected)")
    if not isinstance(signature, bytes) or not isinstance(digest, bytes):
        # libsecp256k1's binding takes bytes only
        raise InvalidSignature("signature does not recover a public key")
    # libsecp256k1 directly, as coincurve's PublicKey.from_signature_and_message
    # calls it, without the Python objects that builds around each call
    parsed, public_key, serialized, serialized_length, point = _recovery_buffers()
    if not _parse_compact(_CTX, parsed, signature[:64], v - 27) or not _recover(
        _CTX, public_key, parsed, digest
    ):
        raise InvalidSignature("signature does not recover a public key")
    serialized_length[0] = 65
    _serialize(_CTX, serialized, serialized_length, public_key, _UNCOMPRESSED)
    return Address(sha3.keccak_256(point).digest()[12:])


_CTX = GLOBAL_CONTEXT.ctx  # recovery only reads the context: safe from any thread
_parse_compact = lib.secp256k1_ecdsa_recoverable_signature_parse_compact
_recover = lib.secp256k1_ecdsa_recover
_serialize = lib.secp256k1_ec_pubkey_serialize
_UNCOMPRESSED = lib.SECP256K1_EC_UNCOMPRESSED


_thread_buffers = threading.local()


def _recovery_buffers() -> tuple[Any, Any, Any, Any, Any]:
    """This thread's libsecp256k1 buffers for `recover_address`: the parsed
    signature, the recovered key, its 65-byte serialization, the length, and
    a view of the serialization's 64 coordinate bytes (after the 0x04 tag).
    Per thread: the verifier pool recovers on several threads at once."""
    try:
        return _thread_buffers.buffers  # type: ignore[no-any-return]
    except AttributeError:
        serialized = ffi.new("unsigned char[65]")
        buffers = (
            ffi.new("secp256k1_ecdsa_recoverable_signature *"),
            ffi.new("secp256k1_pubkey *"),
            serialized,
            ffi.new("size_t *"),
            ffi.buffer(serialized + 1, 64),
        )
        _thread_buffers.buffers = buffers
        return buffers
