"""A validator's threshold key share: dealing it, and its private file.

The network's threshold encryption key (docs/fairness.md) is dealt by a
trusted dealer (`sequencer_net.fairness.tdh2.deal`) when a local network is
made: the public part goes into genesis (`threshold`), and validator i's
share x_i goes into its home as `threshold.key`, a plain JSON file readable by
its owner only (mode 0600, like a plain validator key):

    {"key_epoch": 0, "index": 1, "secret": "0x.."}

`index` is the share's index, validator index + 1. `read_key_share` refuses
a file that group or others can read, and a share that does not match the
genesis (its x_i G must be the genesis's Y_i for that validator).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Final

from sequencer_net.fairness.group import ORDER, RandomBytes, encode_scalar, mul_base
from sequencer_net.fairness.tdh2 import KeyShare, PublicKeySet, deal, max_faults
from sequencer_net.home.genesis import GenesisThreshold
from sequencer_net.home.keystore import KeystoreError, write_private_file

THRESHOLD_KEY_FILE: Final = "threshold.key"


def default_threshold(validators: int) -> int:
    """t = f + 1: the smallest safe threshold (docs/fairness.md, "Why t = f + 1")."""
    return max_faults(validators) + 1


def deal_network_key(
    validators: int, threshold: int | None = None, rng: RandomBytes | None = None
) -> tuple[PublicKeySet, list[KeyShare]]:
    """Deal a threshold key for `validators` shareholders; t defaults to f + 1.
    Raises ThresholdError for a t outside f+1..n-f."""
    t = default_threshold(validators) if threshold is None else threshold
    return deal(validators, t, rng)


def write_key_share(path: Path, share: KeyShare, key_epoch: int) -> None:
    document = {
        "key_epoch": key_epoch,
        "index": share.index,
        "secret": "0x" + encode_scalar(share.secret).hex(),
    }
    write_private_file(path, (json.dumps(document, indent=2) + "\n").encode())


def read_key_share(path: Path, section: GenesisThreshold, validator_index: int) -> KeyShare:
    """Validator `validator_index`'s share for the genesis `section`; raises
    KeystoreError when the file is missing, readable by others, malformed, for
    another key epoch or index, or not the share the genesis names."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except FileNotFoundError:
        raise KeystoreError(
            f"{path}: no threshold key share (the genesis enables encryption)"
        ) from None
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot read the threshold key share: {exc.strerror}") from exc
    if mode & 0o077:
        raise KeystoreError(
            f"{path}: the threshold key share is readable by others (mode {mode:04o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeystoreError(f"{path}: not a threshold key share ({exc.msg})") from exc
    if not isinstance(document, dict) or set(document) != {"key_epoch", "index", "secret"}:
        raise KeystoreError(f"{path}: expected keys key_epoch, index and secret")
    index, epoch, secret_hex = document["index"], document["key_epoch"], document["secret"]
    if epoch != section.key_epoch:
        raise KeystoreError(f"{path}: share of key epoch {epoch}, genesis has {section.key_epoch}")
    if index != validator_index + 1:
        raise KeystoreError(
            f"{path}: share index {index}, this validator's is {validator_index + 1}"
        )
    try:
        raw = bytes.fromhex(str(secret_hex).removeprefix("0x"))
    except ValueError:
        raise KeystoreError(f"{path}: secret is not a hex string") from None
    if len(raw) != 32:
        raise KeystoreError(f"{path}: secret is {len(raw)} bytes, not 32")
    secret = int.from_bytes(raw, "big")
    if not 0 < secret < ORDER:
        raise KeystoreError(f"{path}: secret is not a valid scalar")
    keys = section.key_set()
    verification_key = mul_base(secret)
    expected = keys.verification_key(index)
    if expected is None or verification_key.format() != expected.format():
        raise KeystoreError(f"{path}: the share does not match the genesis verification key")
    return KeyShare(index, secret, keys.public_key, verification_key)
