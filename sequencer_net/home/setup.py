"""A node's home directory: what `seqnet node init` creates and `node run` reads.

    <home>/            mode 0700
      config.toml      the node's settings (sequencer_net.home.config)
      genesis.json     the network's genesis (sequencer_net.home.genesis)
      validator.key    the validator's key, mode 0600 (sequencer_net.home.keystore)
      threshold.key    its threshold key share, mode 0600, when the genesis
                       enables encryption (sequencer_net.home.threshold)
      threshold.epoch<e>.key
                       its share of epoch e's key, for each later
                       validator-set epoch e it is a member of
      data/            the database, mode 0700 (storage.data_dir)
      LOCK             held by the running node (sequencer_net.home.lock)

`init_home` takes the same lock while it writes, so re-initializing (`--force`)
the home of a running node fails instead of swapping its key underneath it.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from sequencer_net.fairness.tdh2 import KeyShare
from sequencer_net.home.config import (
    CONFIG_FILE,
    NodeConfig,
    default_config_text,
    load_config,
    parse_config,
)
from sequencer_net.home.genesis import Genesis, load_genesis, make_local_genesis, write_genesis
from sequencer_net.home.keystore import (
    check_secret,
    generate_secret,
    read_key_file,
    read_password_file,
    write_key_file,
    write_private_file,
)
from sequencer_net.home.lock import HomeLock, HomeLocked
from sequencer_net.home.threshold import THRESHOLD_KEY_FILE, write_key_share, write_key_shares

GENESIS_FILE: Final = "genesis.json"
KEY_FILE: Final = "validator.key"
DATA_DIR: Final = "data"


class HomeError(Exception):
    """A home directory cannot be created, used or locked."""


def init_home(
    home: Path,
    *,
    name: str,
    genesis: Genesis | None = None,
    genesis_file: Path | None = None,
    secret: bytes | None = None,
    p2p_port: int = 26600,
    api_port: int = 26700,
    password: str | None = None,
    force: bool = False,
    listen_host: str = "127.0.0.1",
    api_host: str = "127.0.0.1",
    admin_token_file: str | None = None,
    password_file: Path | None = None,
    scrypt_n: int | None = None,
    oracle: dict[str, Any] | None = None,
    l1: dict[str, Any] | None = None,
    max_non_validator_connections: int | None = None,
    key_share: KeyShare | None = None,
    key_shares: Mapping[int, KeyShare] | None = None,
) -> NodeConfig:
    """Create a node home and return its loaded config.

    The genesis is `genesis`, or a verbatim copy of `genesis_file` (checked
    first), or, given neither, a one-validator local network of this node's key
    (a dev chain that runs on its own). The key is `secret` or a fresh one,
    encrypted when `password` is given; `password_file`, if given, is recorded
    in config.toml so the node can decrypt the key unattended. `listen_host` is
    the p2p listen address and `api_host` the API's (config [p2p] and [api]);
    `admin_token_file`, if given, is recorded as [api] admin_token_file (the
    caller writes the file); `oracle`, if given, sets keys of [oracle] (the
    price source), and `l1` keys of [l1] (the L1 endpoint and contracts).
    `key_share`, if given, is the validator's threshold key share (the genesis
    must have a `threshold` section) and is written to `threshold.key`;
    `key_shares` (epoch -> share), for a genesis with validator-set epochs,
    are its shares of each epoch it is a member of, each written to its own
    file (`sequencer_net.home.threshold.key_share_path`).

    Refuses a home that exists and is not empty, unless `force`: then the
    config, genesis and key are replaced and data/ is left as it is (deleting a
    validator's data while it keeps its key risks double-signing; remove data/
    yourself when starting a new chain).
    """
    home = Path(home).expanduser().resolve()
    if genesis is not None and genesis_file is not None:
        raise HomeError("give a genesis or a genesis file, not both")
    if home.exists() and not home.is_dir():
        raise HomeError(f"{home}: exists and is not a directory")
    if home.exists() and any(home.iterdir()) and not force:
        raise HomeError(
            f"{home}: already exists and is not empty; refusing to overwrite it "
            "(pass force=True / --force to replace its config, key and genesis)"
        )
    config_text = default_config_text(
        name,
        p2p_port,
        api_port,
        listen_host=listen_host,
        api_host=api_host,
        password_file=None if password_file is None else str(Path(password_file).resolve()),
        admin_token_file=admin_token_file,
        oracle=oracle,
        l1=l1,
        max_non_validator_connections=max_non_validator_connections,
    )
    # Check the config before writing anything (bad name, clashing ports, ...).
    parse_config(home, tomllib.loads(config_text), str(home / CONFIG_FILE))
    source_genesis = None
    if genesis_file is not None:
        source_genesis = Path(genesis_file)
        genesis = load_genesis(source_genesis)
    if secret is None:
        secret = generate_secret()
    check_secret(secret)
    if key_share is not None and key_shares is not None:
        raise HomeError("give a key share or key shares by epoch, not both")
    if genesis is None:
        genesis = make_local_genesis(
            [secret], host=listen_host, base_p2p_port=p2p_port, base_api_port=api_port
        )
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    lock = HomeLock(home)
    try:
        lock.acquire()
    except HomeLocked as exc:
        raise HomeError(str(exc)) from None
    try:
        write_key_file(home / KEY_FILE, secret, password, scrypt_n=scrypt_n)
        if key_share is not None:
            if genesis.threshold is None:
                raise HomeError("a threshold key share needs a genesis with a threshold section")
            write_key_share(home / THRESHOLD_KEY_FILE, key_share, genesis.threshold.key_epoch)
        if key_shares:
            if genesis.threshold is None:
                raise HomeError("a threshold key share needs a genesis with a threshold section")
            write_key_shares(home / THRESHOLD_KEY_FILE, genesis, key_shares)
        if source_genesis is not None:
            # A byte-for-byte copy: operators compare checksums of the distributed file.
            tmp = home / f".{GENESIS_FILE}.tmp"
            shutil.copyfile(source_genesis, tmp)
            os.replace(tmp, home / GENESIS_FILE)
        else:
            write_genesis(home / GENESIS_FILE, genesis)
        write_private_file(home / CONFIG_FILE, config_text.encode())
        (home / DATA_DIR).mkdir(mode=0o700, exist_ok=True)
    finally:
        lock.release()
    return load_config(home)


def load_validator_secret(config: NodeConfig, password: str | None = None) -> bytes:
    """The validator's secret from the configured key file.

    The password is `password`, else the first line of `password_file` (if
    configured), else none (the key file must then be plain). Raises
    KeystoreError.
    """
    if password is None and config.password_path is not None:
        password = read_password_file(config.password_path)
    return read_key_file(config.key_path, password)
