"""secp256k1 signatures in Ethereum's format, and keccak-256.

Signatures are 65 bytes `r || s || v` with `v` in {27, 28} and low `s`
(s <= n/2), exactly what the EVM's `ecrecover` accepts, so the L1 contracts
can check the same bytes the validators check. Identities are 20-byte
Ethereum addresses (the last 20 bytes of keccak-256 of the public key).
"""

from __future__ import annotations

from typing import NewType

import coincurve
import sha3  # safe-pysha3: C keccak, ~13x faster than pycryptodome's

Address = NewType("Address", bytes)  # 20 bytes
Signature = NewType("Signature", bytes)  # 65 bytes: r || s || v, v in {27, 28}

SIGNATURE_LENGTH = 65
ADDRESS_LENGTH = 20
DIGEST_LENGTH = 32
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2


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
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v not in (27, 28):
        raise InvalidSignature("signature v must be 27 or 28")
    if not (0 < r < SECP256K1_N) or not (0 < s <= _HALF_N):
        raise InvalidSignature("signature r or s out of range (high s is rejected)")
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([v - 27]), digest, hasher=None
        )
    except Exception as exc:  # coincurve raises plain Exception on failure
        raise InvalidSignature("signature does not recover a public key") from exc
    return address_of_public_key(public_key)
