"""`GET /v1/validators`: who signs which heights, in which domain.

The document a subscriber (or a client sealing encrypted transactions) reads
to learn the validator set, the signing domain and the threshold key:

    {"threshold": {"key_epoch", "threshold", "public_key"} | null,
     "chain_id", "verifying_contract", "genesis_hash",
     "validators": [{"index", "name", "address", "weight"}, ...],
     "epochs": [{"number", "first_height", "last_height", "domain_separator",
                 "validators": [...], "threshold": {...} | null}, ...]}

`validators` and `threshold` are epoch 0's. `epochs` is present only for a
genesis that schedules later validator-set epochs (a chain that never rotates
answers exactly as before it existed): every epoch from 0, its first and last
height (null for the last epoch, which never ends), the separator its votes
and certificates are signed in (`consensus.epochs.epoch_domain_separator`),
its set and its threshold key. It is this node's claim: a subscriber should
still pin the schedule from a genesis file it trusts (docs/rollups.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consensus.encoding import Domain
from consensus.epochs import epoch_domain_separator
from sequencer_net.home.genesis import Genesis, GenesisThreshold, GenesisValidator


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _threshold_json(threshold: GenesisThreshold | None) -> dict[str, Any] | None:
    if threshold is None:
        return None
    return {
        "key_epoch": threshold.key_epoch,
        "threshold": threshold.threshold,
        "public_key": _hex(threshold.public_key),
    }


def _validators_json(validators: Sequence[GenesisValidator]) -> list[dict[str, Any]]:
    return [
        {"index": i, "name": v.name, "address": _hex(v.address), "weight": v.weight}
        for i, v in enumerate(validators)
    ]


def epochs_json(genesis: Genesis, domain: Domain) -> list[dict[str, Any]]:
    """Every epoch of the genesis's schedule, epoch 0 first."""
    schedule = genesis.schedule()
    separator = domain.separator()
    return [
        {
            "number": epoch.number,
            "first_height": epoch.first_height,
            "last_height": schedule.last_height(epoch.number),
            "domain_separator": _hex(epoch_domain_separator(separator, epoch.number)),
            "validators": _validators_json(genesis.epoch_validators(epoch.number)),
            "threshold": _threshold_json(genesis.epoch_threshold(epoch.number)),
        }
        for epoch in schedule.epochs
    ]


def epoch_validator_address(genesis: Genesis, epoch: int, index: int) -> bytes | None:
    """The address of validator `index` of `epoch`'s set (None: no such validator
    or epoch): whom a record of /v1/evidence accuses."""
    try:
        validators = genesis.epoch_validators(epoch)
    except KeyError:
        return None
    return validators[index].address if 0 <= index < len(validators) else None


def validators_document(genesis: Genesis, domain: Domain | None = None) -> dict[str, Any]:
    """The /v1/validators answer of a node running `genesis` (whose `domain()`
    is `domain`, when the caller holds it already)."""
    domain = domain if domain is not None else genesis.domain()
    document: dict[str, Any] = {
        "threshold": _threshold_json(genesis.threshold),
        "chain_id": domain.chain_id,
        "verifying_contract": _hex(domain.verifying_contract),
        "genesis_hash": _hex(domain.genesis_hash),
        "validators": _validators_json(genesis.validators),
    }
    if genesis.epochs:
        document["epochs"] = epochs_json(genesis, domain)
    return document
