"""Key files: plain and encrypted round trips, permissions, wrong passwords."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from consensus.crypto import SECP256K1_N, PrivateKey
from sequencer_net.home.keystore import (
    KeystoreError,
    check_secret,
    generate_secret,
    read_key_file,
    read_password_file,
    write_key_file,
)
from tests.node_config.conftest import FAST_SCRYPT_N, secret_for


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generate_secret_gives_distinct_valid_scalars() -> None:
    secrets = {generate_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert len(secret) == 32
        assert 0 < int.from_bytes(secret, "big") < SECP256K1_N


@pytest.mark.parametrize(
    "bad", [b"", bytes(31), bytes(32), SECP256K1_N.to_bytes(32, "big"), b"\xff" * 32]
)
def test_invalid_secrets_are_refused(bad: bytes, tmp_path: Path) -> None:
    with pytest.raises(KeystoreError):
        check_secret(bad)
    with pytest.raises(KeystoreError):
        write_key_file(tmp_path / "k", bad)
    assert not (tmp_path / "k").exists()


def test_plain_round_trip_with_mode_0600_and_address(tmp_path: Path) -> None:
    secret = secret_for(1)
    path = tmp_path / "validator.key"
    old_umask = os.umask(0)  # even a permissive umask must not widen the mode
    try:
        write_key_file(path, secret)
    finally:
        os.umask(old_umask)
    assert mode_of(path) == 0o600
    document = json.loads(path.read_text())
    assert document == {
        "address": "0x" + PrivateKey(secret).address.hex(),
        "secret": "0x" + secret.hex(),
    }
    assert read_key_file(path) == secret
    assert [p.name for p in tmp_path.iterdir()] == ["validator.key"]  # no temp file left


def test_overwrite_replaces_the_key_atomically(tmp_path: Path) -> None:
    path = tmp_path / "validator.key"
    write_key_file(path, secret_for(1))
    write_key_file(path, secret_for(2))
    assert read_key_file(path) == secret_for(2)
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_plain_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "validator.key"
    write_key_file(path, secret_for(1))
    path.chmod(mode)
    with pytest.raises(KeystoreError, match=r"readable by others.*chmod 600"):
        read_key_file(path)
    path.chmod(0o400)  # owner read-only is fine
    assert read_key_file(path) == secret_for(1)


def test_encrypted_round_trip_is_a_v3_keystore(tmp_path: Path) -> None:
    secret = secret_for(2)
    path = tmp_path / "validator.key"
    write_key_file(path, secret, "correct horse", scrypt_n=FAST_SCRYPT_N)
    assert mode_of(path) == 0o600
    document = json.loads(path.read_text())
    assert document["version"] == 3
    assert document["crypto"]["kdf"] == "scrypt"
    assert document["crypto"]["kdfparams"]["n"] == FAST_SCRYPT_N
    assert document["address"].lower() == PrivateKey(secret).address.hex()
    assert secret.hex() not in path.read_text()
    assert read_key_file(path, "correct horse") == secret
    # An encrypted file stays usable even if its mode is loose: it is not a secret at rest.
    path.chmod(0o644)
    assert read_key_file(path, "correct horse") == secret


def test_default_scrypt_cost_is_used_and_decrypts(tmp_path: Path) -> None:
    path = tmp_path / "validator.key"
    write_key_file(path, secret_for(3), "pw")
    assert json.loads(path.read_text())["crypto"]["kdfparams"]["n"] == 2**18
    assert read_key_file(path, "pw") == secret_for(3)


def test_wrong_or_missing_password(tmp_path: Path) -> None:
    path = tmp_path / "validator.key"
    write_key_file(path, secret_for(2), "right", scrypt_n=FAST_SCRYPT_N)
    with pytest.raises(KeystoreError, match="wrong password"):
        read_key_file(path, "wrong")
    with pytest.raises(KeystoreError, match="password is needed"):
        read_key_file(path)


def test_empty_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="empty"):
        write_key_file(tmp_path / "k", secret_for(1), "")


def test_tampered_or_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "validator.key"
    write_key_file(path, secret_for(1))
    document = json.loads(path.read_text())
    document["address"] = "0x" + PrivateKey(secret_for(2)).address.hex()
    path.write_text(json.dumps(document))
    with pytest.raises(KeystoreError, match="not the key's address"):
        read_key_file(path)
    path.write_text("not json")
    with pytest.raises(KeystoreError, match="invalid JSON"):
        read_key_file(path)
    path.write_text('{"hello": 1}')
    with pytest.raises(KeystoreError, match="not a key file"):
        read_key_file(path)
    path.write_text('{"secret": "0xzz"}')
    with pytest.raises(KeystoreError, match="not a hex string"):
        read_key_file(path)
    with pytest.raises(KeystoreError, match="no such key file"):
        read_key_file(tmp_path / "missing.key")


def test_password_file_first_line(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("s3cret with spaces \nignored second line\n")
    assert read_password_file(path) == "s3cret with spaces "
    path.write_text("\n")
    with pytest.raises(KeystoreError, match="empty"):
        read_password_file(path)
