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

A genesis with validator-set epochs has a key per epoch, each dealt to that
epoch's members (`deal_epoch_keys`), and a member holds one file per epoch it
belongs to (`key_share_path`): epoch 0's is `threshold.key` (the configured
`threshold_key_file`), epoch e's `threshold.epoch<e>.key` beside it, each
with `"key_epoch": e` and the member's index in epoch e's set + 1.
`read_key_shares` reads every one the node needs and refuses to start
without any of them.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from sequencer_net.fairness.group import ORDER, RandomBytes, encode_scalar, mul_base
from sequencer_net.fairness.tdh2 import (
    KeyShare,
    PublicKeySet,
    ThresholdError,
    check_threshold,
    deal,
    max_faults,
)
from sequencer_net.home.genesis import Genesis, GenesisThreshold
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


def deal_epoch_keys(
    set_sizes: Sequence[int], threshold: int | None = None, rng: RandomBytes | None = None
) -> list[tuple[PublicKeySet, list[KeyShare]]]:
    """One threshold key per validator-set epoch, each dealt to that epoch's
    members (`set_sizes[e]` of them; share index = index in epoch e's set + 1);
    t is `threshold` for every epoch, else each epoch's own f + 1. Raises
    ThresholdError for a t unsafe for some epoch's set."""
    return [deal_network_key(size, threshold, rng) for size in set_sizes]


def member_key_shares(
    genesis: Genesis, dealt: Sequence[Sequence[KeyShare]], address: bytes
) -> dict[int, KeyShare]:
    """The shares (by epoch) that the member with `address` holds of keys dealt
    per epoch (`dealt[e]`: epoch e's shares in its set's order)."""
    shares: dict[int, KeyShare] = {}
    for epoch in range(len(genesis.epochs) + 1):
        index = genesis.epoch_index(epoch, address)
        if index is not None:
            shares[epoch] = dealt[epoch][index]
    return shares


def key_share_path(base: Path, epoch: int, genesis: Genesis) -> Path:
    """Where the share of validator-set epoch `epoch` lives, given the configured
    `threshold_key_file` `base`: `base` itself for epoch 0 (and for the one key
    of a chain without later epochs), else `<stem>.epoch<e><suffix>` beside it."""
    base = Path(base)
    if epoch == 0 or not genesis.epochs:
        return base
    return base.with_name(f"{base.stem}.epoch{epoch}{base.suffix}")


def write_key_shares(base: Path, genesis: Genesis, shares: Mapping[int, KeyShare]) -> None:
    """Write a member's share of each epoch (`shares`: epoch -> share), each to
    its `key_share_path`, under that epoch's key epoch."""
    for epoch, share in sorted(shares.items()):
        section = genesis.epoch_threshold(epoch)
        if section is None:
            raise KeystoreError("a threshold key share needs a genesis with a threshold section")
        write_key_share(key_share_path(base, epoch, genesis), share, section.key_epoch)


def read_key_shares(base: Path, genesis: Genesis, address: bytes) -> dict[int, KeyShare]:
    """This member's share of every validator-set epoch it belongs to (epoch ->
    share), each read by `read_key_share` from its `key_share_path` and checked
    against that epoch's genesis section; empty when the chain does not
    encrypt. Raises KeystoreError naming the file of the first that is
    missing or wrong, or an epoch whose t is unsafe for its set."""
    shares: dict[int, KeyShare] = {}
    if genesis.threshold is None:
        return shares
    for epoch in range(len(genesis.epochs) + 1):
        index = genesis.epoch_index(epoch, address)
        section = genesis.epoch_threshold(epoch)
        if index is None or section is None:
            continue
        try:
            check_threshold(len(genesis.epoch_validators(epoch)), section.threshold)
        except ThresholdError as exc:
            raise KeystoreError(f"epoch {epoch}: {exc}" if genesis.epochs else str(exc)) from exc
        path = key_share_path(base, epoch, genesis)
        if genesis.epochs and not path.exists():
            raise KeystoreError(
                f"{path}: no threshold key share of epoch {epoch}, of which this "
                "validator is a member"
            )
        shares[epoch] = read_key_share(path, section, index)
    return shares
