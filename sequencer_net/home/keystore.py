"""Validator key files: an encrypted Ethereum V3 keystore, or a plain 0600 file.

Two formats, both JSON, told apart by their keys:

- encrypted (with a password): the Ethereum "Web3 Secret Storage" V3 format
  (scrypt + AES-128-CTR + keccak MAC) written by `eth_account.Account.encrypt`,
  so geth, foundry (`cast wallet`) and MetaMask import the same file. The
  default scrypt cost (n = 2**18, r = 8, p = 1) takes about 1 s and 256 MiB of
  memory to derive, on write and on every read (node start).
- plain (no password): `{"address": "0x..", "secret": "0x.."}`. Readable only
  by its owner: `read_key_file` refuses a plain file that group or others can
  read, the way ssh refuses a world-readable private key.

Every file is written atomically (temporary file with mode 0600, fsync,
`os.replace`, fsync of the directory), so a crash never leaves half a key.
`eth_account` (~0.6 s to import) is imported only when a password is used.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from consensus.crypto import SECP256K1_N, PrivateKey

SECRET_LENGTH = 32
DEFAULT_SCRYPT_N = 2**18
"""scrypt's CPU/memory cost for new encrypted keys: geth's "standard" setting."""


class KeystoreError(Exception):
    """A key file is missing, malformed, unsafe, or its password is wrong."""


def generate_secret() -> bytes:
    """A fresh secp256k1 secret (32 bytes, 1 <= value < n) from the OS's CSPRNG."""
    while True:
        candidate = os.urandom(SECRET_LENGTH)
        # Rejection sampling: the chance of a retry is about 2**-128.
        if 0 < int.from_bytes(candidate, "big") < SECP256K1_N:
            return candidate


def check_secret(secret: bytes) -> None:
    """Raise KeystoreError unless `secret` is a valid secp256k1 scalar."""
    if len(secret) != SECRET_LENGTH:
        raise KeystoreError(f"a secret is {SECRET_LENGTH} bytes, got {len(secret)}")
    if not 0 < int.from_bytes(secret, "big") < SECP256K1_N:
        raise KeystoreError("the secret is not a valid secp256k1 scalar (0 < secret < n)")


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, readable and writable by the owner only."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o600)  # in case of a restrictive-but-odd umask
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_key_file(
    path: Path,
    secret: bytes,
    password: str | None = None,
    *,
    scrypt_n: int | None = None,
) -> None:
    """Store `secret` at `path` (mode 0600), encrypted if a password is given.

    Overwrites an existing file: callers that must not lose a key check first.
    `scrypt_n` (a power of two; default DEFAULT_SCRYPT_N, read at call time so
    tests can lower it) trades brute-force resistance for speed.
    """
    check_secret(secret)
    if password is None:
        key = PrivateKey(secret)
        document: dict[str, Any] = {
            "address": "0x" + key.address.hex(),
            "secret": "0x" + secret.hex(),
        }
    else:
        if not password:
            raise KeystoreError("the password is empty: give one, or write a plain key file")
        from eth_account import Account  # ~0.6 s: only for encrypted keys

        cost = DEFAULT_SCRYPT_N if scrypt_n is None else scrypt_n
        document = Account.encrypt(secret, password, kdf="scrypt", iterations=cost)
    write_private_file(path, (json.dumps(document, indent=2) + "\n").encode())


def is_encrypted(document: dict[str, Any]) -> bool:
    return "crypto" in document or "Crypto" in document


def read_key_document(path: Path) -> dict[str, Any]:
    """The parsed JSON of a key file (either format), without decrypting it."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise KeystoreError(f"{path}: no such key file") from None
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot read key file: {exc.strerror}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeystoreError(f"{path}: not a key file (invalid JSON: {exc.msg})") from exc
    if not isinstance(document, dict):
        raise KeystoreError(f"{path}: not a key file (expected a JSON object)")
    return document


def read_key_file(path: Path, password: str | None = None) -> bytes:
    """The 32-byte secret stored at `path`.

    Raises KeystoreError when the file is missing or malformed, when a plain
    file is readable by group or others, when an encrypted file gets no
    password or the wrong one, or when the stored address does not match.
    """
    path = Path(path)
    document = read_key_document(path)
    if is_encrypted(document):
        if password is None:
            raise KeystoreError(f"{path}: the key is encrypted; a password is needed")
        from eth_account import Account

        try:
            secret = bytes(Account.decrypt(document, password))
        except ValueError as exc:  # eth_keyfile raises a ValueError subclass
            message = "wrong password" if "MAC mismatch" in str(exc) else str(exc)
            raise KeystoreError(f"{path}: cannot decrypt the key: {message}") from exc
        except (KeyError, TypeError) as exc:
            raise KeystoreError(f"{path}: malformed encrypted keystore") from exc
    else:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise KeystoreError(
                f"{path}: the plain key file is readable by others (mode {mode:04o}); "
                f"run `chmod 600 {path}` or encrypt it with a password"
            )
        hex_secret = document.get("secret")
        if not isinstance(hex_secret, str):
            raise KeystoreError(f'{path}: not a key file (no "secret" and no "crypto")')
        secret = _parse_hex(path, "secret", hex_secret)
    try:
        check_secret(secret)
    except KeystoreError as exc:
        raise KeystoreError(f"{path}: {exc}") from None
    stated = document.get("address")
    if isinstance(stated, str):
        actual = PrivateKey(secret).address
        if _parse_hex(path, "address", stated) != actual:
            raise KeystoreError(
                f"{path}: the stored address {stated} is not the key's address 0x{actual.hex()}"
            )
    return secret


def read_password_file(path: Path) -> str:
    """A password stored in a file: its first line, without the line ending."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot read password file: {exc.strerror}") from exc
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if not password:
        raise KeystoreError(f"{path}: the password file is empty")
    return password


def _parse_hex(path: Path, field: str, text: str) -> bytes:
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise KeystoreError(f"{path}: {field} is not a hex string") from None
