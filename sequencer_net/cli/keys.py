"""`seqnet keys ...`: create and inspect validator key files.

Imports only click, coincurve and the keystore; eth_account (~0.6 s) loads
only when a password is involved.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from consensus.crypto import PrivateKey
from sequencer_net.home.keystore import (
    KeystoreError,
    generate_secret,
    is_encrypted,
    read_key_document,
    read_key_file,
    read_password_file,
    write_key_file,
)

_PATH = click.Path(path_type=Path, dir_okay=False)


def password_from_file(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return read_password_file(path)
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from exc


def describe_key(secret: bytes, *, show_secret: bool) -> dict[str, Any]:
    key = PrivateKey(secret)
    info: dict[str, Any] = {
        "address": "0x" + key.address.hex(),
        "public_key": "0x" + key.public_key.hex(),
    }
    if show_secret:
        info["secret"] = "0x" + secret.hex()
    return info


def echo_key(info: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(info))
        return
    for name, value in info.items():
        if value is not None:
            click.echo(f"{name + ':':<12} {value}")


@click.group(name="keys")
def keys() -> None:
    """Create and inspect validator keys (secp256k1, Ethereum addresses).

    \b
    A key file is either an Ethereum V3 keystore (encrypted with a password,
    scrypt; importable by geth, foundry and MetaMask) or a plain JSON file
    with mode 0600. The node refuses a plain key file others can read.

    \b
    Examples:
      seqnet keys new --out validator.key                      # plain, 0600
      seqnet keys new --out validator.key --password-file pw   # encrypted
      seqnet keys show validator.key --json
    """


@keys.command(name="new")
@click.option("--out", type=_PATH, help="Write the key to this file (mode 0600).")
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Encrypt the key with the first line of this file (V3 keystore, scrypt).",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists (the old key is lost).")
@click.option("--show-secret", is_flag=True, help="Also print the secret. Keep it off screens.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def new(
    out: Path | None, password_file: Path | None, force: bool, show_secret: bool, as_json: bool
) -> None:
    """Generate a validator key and print its address and public key.

    The secret comes from the operating system's CSPRNG. It is printed only
    with --show-secret; without --out it is not stored anywhere.

    \b
    Examples:
      seqnet keys new --out ~/seqnet/validator.key
      seqnet keys new --out validator.key --password-file ~/.seqnet-password --json
      # {"address": "0x...", "public_key": "0x04...", "file": "...", "encrypted": true}
    """
    if out is not None and out.exists() and not force:
        raise click.ClickException(
            f"{out} already exists; refusing to overwrite a key (use --force to replace it)"
        )
    if password_file is not None and out is None:
        raise click.UsageError("--password-file encrypts a key file: give --out FILE too")
    secret = generate_secret()
    password = password_from_file(password_file)
    if out is not None:
        try:
            write_key_file(out, secret, password)
        except (KeystoreError, OSError) as exc:
            raise click.ClickException(f"cannot write {out}: {exc}") from exc
    info = describe_key(secret, show_secret=show_secret)
    info["file"] = None if out is None else str(out.resolve())
    info["encrypted"] = password is not None
    echo_key(info, as_json)
    if out is None and not show_secret:
        click.echo("warning: the secret was not saved; use --out FILE to keep the key", err=True)


@keys.command(name="show")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--password-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="File whose first line is the password of an encrypted key file.",
)
@click.option("--show-secret", is_flag=True, help="Also print the secret (for a backup).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def show(file: Path, password_file: Path | None, show_secret: bool, as_json: bool) -> None:
    """Print the address and public key of a key file.

    Checks the file the way the node does: an encrypted file needs its
    password, a plain file must not be readable by group or others.

    \b
    Examples:
      seqnet keys show ~/seqnet/validator.key
      seqnet keys show validator.key --password-file pw --json
    """
    try:
        secret = read_key_file(file, password_from_file(password_file))
    except KeystoreError as exc:
        raise click.ClickException(str(exc)) from exc
    info = describe_key(secret, show_secret=show_secret)
    info["file"] = str(file.resolve())
    info["encrypted"] = is_encrypted(read_key_document(file))
    echo_key(info, as_json)
