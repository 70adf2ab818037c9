"""genesis.json: validation (one test per rule), JSON form, canonical bytes and digest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consensus.core import genesis_block
from consensus.crypto import PrivateKey
from consensus.encoding import Domain
from sequencer_net.execution.genesis import GenesisConfig, GenesisMarket
from sequencer_net.execution.records import MarketKind, MarketParams, OptionKind, OptionTerms
from sequencer_net.home.genesis import (
    GENESIS_TAG,
    LOCAL_CHAIN_ID_RANGE,
    LOCAL_FUNDED_AMOUNT,
    LOCAL_INSURANCE_FUND,
    Genesis,
    GenesisError,
    GenesisValidator,
    load_genesis,
    make_local_genesis,
    oracle_reporters,
    write_genesis,
)
from tests.node_config.conftest import GENESIS_TIME_MS, secret_for

WAD = 10**18
# Changed deliberately: the oracle set became the validators with their power
# (and they are funded), and markets gained max_oracle_move.
PINNED_DIGEST = "e9a43a67df70de047a0799a897773d39b1074a47ae663411ea2c0856815030db"


def with_validators(genesis: Genesis, validators: tuple[GenesisValidator, ...]) -> Genesis:
    """Other validators, and the execution oracle set that follows from them."""
    if len({v.address for v in validators}) == len(validators):
        reporters = oracle_reporters(validators)
        execution = msgspec.structs.replace(genesis.execution, oracles=reporters)
        return dataclasses.replace(genesis, validators=validators, execution=execution)
    return dataclasses.replace(genesis, validators=validators)  # refused before the oracles


def with_validator(genesis: Genesis, index: int, **changes: Any) -> Genesis:
    validators = list(genesis.validators)
    validators[index] = dataclasses.replace(validators[index], **changes)
    return with_validators(genesis, tuple(validators))


def perp_params() -> MarketParams:
    return MarketParams(
        kind=MarketKind.PERPETUAL,
        tick_size=WAD // 100,
        lot_size=WAD // 100,
        initial_margin=WAD // 10,
        maintenance_margin=WAD // 20,
        maker_fee=0,
        taker_fee=WAD // 1000,
        liquidation_fee=WAD // 100,
        funding_interval=3600,
        funding_clamp=WAD // 100,
        mark_band=WAD // 20,
        oracle_staleness=60,
        risk_free_rate=0,
        option=None,
    )


def option_params() -> MarketParams:
    return msgspec.structs.replace(
        perp_params(),
        kind=MarketKind.OPTION,
        funding_interval=0,
        funding_clamp=0,
        risk_free_rate=-(WAD // 50),
        option=OptionTerms(
            OptionKind.PUT, strike=30_000 * WAD, expiry=GENESIS_TIME_MS // 1000 + 86400
        ),
    )


# --- make_local_genesis ----------------------------------------------------------------


def test_make_local_genesis_layout(genesis: Genesis, secrets: list[bytes]) -> None:
    assert [v.name for v in genesis.validators] == ["node0", "node1", "node2", "node3"]
    assert [v.p2p_port for v in genesis.validators] == [36600, 36601, 36602, 36603]
    assert [v.api_port for v in genesis.validators] == [36700, 36701, 36702, 36703]
    keys = [PrivateKey(s) for s in secrets]
    assert [v.address for v in genesis.validators] == [k.address for k in keys]
    assert [v.public_key for v in genesis.validators] == [k.public_key for k in keys]
    assert {v.p2p_host for v in genesis.validators} == {"127.0.0.1"}
    assert genesis.chain_id == 31337 and genesis.view_timeout_ms == 1000
    assert genesis.verifying_contract == bytes(20)
    execution = genesis.execution
    assert execution.chain_id == 31337
    assert execution.admin == execution.bridge == keys[0].address
    assert execution.oracles == oracle_reporters(genesis.validators)
    assert {r.address for r in execution.oracles} == {k.address for k in keys}
    assert execution.genesis_time == GENESIS_TIME_MS // 1000
    assert execution.insurance_fund == LOCAL_INSURANCE_FUND > 0
    # The funded account, then every validator: its price reports pay fees.
    assert [(d.subaccount, d.amount) for d in execution.deposits] == [
        (bytes([0xAB]) * 20 + b"\x00", LOCAL_FUNDED_AMOUNT),
        *((address + b"\x00", LOCAL_FUNDED_AMOUNT) for address in sorted(k.address for k in keys)),
    ]


def test_make_local_genesis_options() -> None:
    genesis = make_local_genesis(
        [secret_for(0), secret_for(1)],
        chain_id=7,
        host="10.0.0.1",
        base_p2p_port=1000,
        base_api_port=2000,
        weights=[3, 5],
        view_timeout_ms=250,
        genesis_time_ms=5_999,
        funded_accounts=[bytes(range(21))],
    )
    assert genesis.chain_id == genesis.execution.chain_id == 7
    assert [v.weight for v in genesis.validators] == [3, 5]
    assert genesis.validators[1].api_host == "10.0.0.1"
    assert genesis.view_timeout_ms == 250
    assert genesis.execution.genesis_time == 5
    assert genesis.execution.deposits[0].subaccount == bytes(range(21))
    assert genesis.validator_set().total_weight == 8
    with pytest.raises(GenesisError, match="2 weights for 1 validators"):
        make_local_genesis([secret_for(0)], base_p2p_port=1, base_api_port=9, weights=[1, 2])
    with pytest.raises(GenesisError, match="funded_accounts"):
        make_local_genesis(
            [secret_for(0)], base_p2p_port=1, base_api_port=9, funded_accounts=[b"short"]
        )
    with pytest.raises(GenesisError, match="p2p_port"):
        make_local_genesis([secret_for(0)], base_p2p_port=65536, base_api_port=9)


def test_validator_set_domain_and_index(genesis: Genesis, secrets: list[bytes]) -> None:
    vset = genesis.validator_set()
    assert len(vset) == 4 and vset.total_weight == 4 and vset.quorum_weight == 3
    assert [vset.address(i) for i in range(4)] == [PrivateKey(s).address for s in secrets]  # type: ignore[arg-type]
    assert genesis.domain() == Domain(
        chain_id=31337, verifying_contract=bytes(20), genesis_hash=genesis.genesis_block().digest()
    )
    assert genesis.validator_index(PrivateKey(secrets[2]).address) == 2
    assert genesis.validator_index(bytes(20)) is None


# --- canonical bytes and the genesis block ---------------------------------------------


def test_write_load_round_trip_keeps_bytes_and_digest(genesis: Genesis, tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    write_genesis(path, genesis)
    loaded = load_genesis(path)
    assert loaded == genesis
    assert loaded.canonical_bytes() == genesis.canonical_bytes()
    assert loaded.genesis_block() == genesis.genesis_block()
    assert loaded.genesis_block().digest() == genesis.genesis_block().digest()
    # Writing again yields the same file.
    write_genesis(tmp_path / "again.json", loaded)
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_genesis_block_commits_to_canonical_bytes(genesis: Genesis) -> None:
    block = genesis.genesis_block()
    assert block == genesis_block(genesis.canonical_bytes())
    assert block.height == 0 and block.view == 0 and block.parent == bytes(32)
    assert genesis.canonical_bytes().startswith(GENESIS_TAG)


def test_genesis_digest_is_pinned(genesis: Genesis) -> None:
    # A change here forks every existing network: change the encoding deliberately or not at all.
    assert genesis.genesis_block().digest().hex() == PINNED_DIGEST


def test_canonical_bytes_ignore_operational_hints(genesis: Genesis) -> None:
    moved = with_validator(genesis, 1, name="renamed", p2p_host="10.1.1.1", api_port=40000)
    moved = dataclasses.replace(moved, view_timeout_ms=5000)
    assert moved.canonical_bytes() == genesis.canonical_bytes()


@pytest.mark.parametrize(
    "change",
    [
        lambda g: dataclasses.replace(
            g, chain_id=1, execution=msgspec.structs.replace(g.execution, chain_id=1)
        ),
        lambda g: with_validator(g, 2, weight=2),
        lambda g: dataclasses.replace(g, verifying_contract=b"\x01" * 20),
        lambda g: with_validators(g, g.validators[:3]),
        lambda g: dataclasses.replace(
            g, validators=(g.validators[1], g.validators[0], *g.validators[2:])
        ),
        lambda g: dataclasses.replace(
            g, execution=msgspec.structs.replace(g.execution, insurance_fund=1)
        ),
        lambda g: dataclasses.replace(
            g,
            genesis_time_ms=g.genesis_time_ms + 1,  # same second, still a different chain
        ),
        lambda g: dataclasses.replace(
            g, execution=msgspec.structs.replace(g.execution, collateral_token=b"\xc0" * 20)
        ),
    ],
)
def test_canonical_bytes_cover_what_defines_the_chain(genesis: Genesis, change: Any) -> None:
    changed = change(genesis)
    assert changed.canonical_bytes() != genesis.canonical_bytes()
    assert changed.genesis_block().digest() != genesis.genesis_block().digest()


# --- JSON form -------------------------------------------------------------------------


def test_json_is_readable_hex_and_numbers(genesis: Genesis, tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    write_genesis(path, genesis)
    document = json.loads(path.read_text())
    assert document["chain_id"] == 31337
    assert document["genesis_time_ms"] == GENESIS_TIME_MS
    assert document["verifying_contract"] == "0x" + "00" * 20
    v0 = document["validators"][0]
    assert v0["address"] == "0x" + genesis.validators[0].address.hex()
    assert v0["public_key"].startswith("0x04") and len(v0["public_key"]) == 2 + 130
    assert v0["weight"] == 1 and v0["p2p_port"] == 36600
    execution = document["execution"]
    # Wad amounts exceed 2**53: decimal strings, so JavaScript tools read them exactly.
    assert execution["insurance_fund"] == str(LOCAL_INSURANCE_FUND)
    assert execution["deposits"][0] == {
        "subaccount": "0x" + "ab" * 20 + "00",
        "amount": str(LOCAL_FUNDED_AMOUNT),
    }
    assert execution["markets"] == []


def test_markets_round_trip_through_json(genesis: Genesis, tmp_path: Path) -> None:
    execution = msgspec.structs.replace(
        genesis.execution,
        markets=(GenesisMarket(1, perp_params()), GenesisMarket(2, option_params())),
    )
    with_markets = dataclasses.replace(genesis, execution=execution)
    path = tmp_path / "genesis.json"
    write_genesis(path, with_markets)
    document = json.loads(path.read_text())
    perp, option = document["execution"]["markets"]
    assert perp["params"]["kind"] == "perpetual" and perp["params"]["option"] is None
    assert option["params"]["option"]["option_kind"] == "put"
    assert option["params"]["risk_free_rate"] == str(-(WAD // 50))  # |x| > 2**53
    assert perp["params"]["funding_interval"] == 3600
    loaded = load_genesis(path)
    assert loaded == with_markets
    assert loaded.canonical_bytes() == with_markets.canonical_bytes()


def test_the_collateral_token_round_trips_through_json(genesis: Genesis, tmp_path: Path) -> None:
    token = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
    execution = msgspec.structs.replace(genesis.execution, collateral_token=token)
    with_token = dataclasses.replace(genesis, execution=execution)
    path = tmp_path / "genesis.json"
    write_genesis(path, with_token)
    assert json.loads(path.read_text())["execution"]["collateral_token"] == "0x" + token.hex()
    loaded = load_genesis(path)
    assert loaded == with_token
    assert loaded.canonical_bytes() == with_token.canonical_bytes()
    # Without the key the token is empty: the digest of an older genesis file.
    document = json.loads(path.read_text())
    del document["execution"]["collateral_token"]
    path.write_text(json.dumps(document))
    assert load_genesis(path).genesis_block().digest() == genesis.genesis_block().digest()


def test_integers_may_be_numbers_or_decimal_strings(genesis: Genesis, tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    write_genesis(path, genesis)
    document = json.loads(path.read_text())
    document["chain_id"] = "31337"
    document["execution"]["insurance_fund"] = LOCAL_INSURANCE_FUND  # a big JSON number
    path.write_text(json.dumps(document))
    assert load_genesis(path) == genesis


# --- Validation: each rule -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda g: dataclasses.replace(g, chain_id=0), "chain_id: must be an integer in 1"),
        (lambda g: dataclasses.replace(g, chain_id=2**63), "chain_id: must be an integer in 1"),
        (lambda g: dataclasses.replace(g, genesis_time_ms=-1), "genesis_time_ms"),
        (lambda g: dataclasses.replace(g, verifying_contract=bytes(19)), "verifying_contract"),
        (lambda g: dataclasses.replace(g, view_timeout_ms=0), "view_timeout_ms"),
        (lambda g: dataclasses.replace(g, validators=()), "at least one validator"),
        (lambda g: with_validator(g, 1, weight=0), r"validators\[1\] \(node1\)\.weight"),
        (lambda g: with_validator(g, 1, weight=-5), r"\.weight"),
        (lambda g: with_validator(g, 1, name=""), r"validators\[1\]\.name"),
        (lambda g: with_validator(g, 1, name="has space"), r"validators\[1\]\.name"),
        (
            lambda g: with_validator(g, 1, address=g.validators[2].address),
            r"validators\[1\] \(node1\)\.address: .* is not the public key's address",
        ),
        (lambda g: with_validator(g, 1, address=bytes(20)), "is not the public key's address"),
        (lambda g: with_validator(g, 1, public_key=g.validators[1].public_key[:33]), "65 bytes"),
        (
            lambda g: with_validator(g, 1, public_key=b"\x02" + g.validators[1].public_key[1:]),
            "uncompressed",
        ),
        (
            lambda g: with_validator(g, 1, public_key=b"\x04" + b"\x01" * 64),
            "not a point on secp256k1",
        ),
        (lambda g: with_validator(g, 3, name="node0"), "duplicate name 'node0'"),
        (
            lambda g: dataclasses.replace(g, validators=(*g.validators, g.validators[0])),
            "duplicate name",
        ),
        (
            lambda g: with_validator(with_validator(g, 3, name="copy"), 3, **_identity_of(g, 0)),
            r"validators\[3\] \(copy\)\.address: duplicate address",
        ),
        (
            lambda g: with_validator(g, 2, p2p_port=36600),
            r"p2p_port: 127\.0\.0\.1:36600 is already",
        ),
        (lambda g: with_validator(g, 2, api_port=36601), r"api_port: .* node1's p2p port"),
        (lambda g: with_validator(g, 0, p2p_port=0), "p2p_port: must be in 1..65535"),
        (lambda g: with_validator(g, 0, api_port=70000), "api_port: must be in 1..65535"),
        (lambda g: with_validator(g, 0, p2p_host=""), "p2p_host"),
        (
            lambda g: dataclasses.replace(
                g, execution=msgspec.structs.replace(g.execution, chain_id=1)
            ),
            "execution.chain_id: 1 differs from chain_id 31337",
        ),
        (
            lambda g: dataclasses.replace(
                g, execution=msgspec.structs.replace(g.execution, genesis_time=1)
            ),
            "execution.genesis_time",
        ),
        (
            lambda g: dataclasses.replace(
                g, execution=msgspec.structs.replace(g.execution, admin=bytes(19))
            ),
            "execution: admin and bridge are 20-byte addresses",
        ),
        (
            lambda g: dataclasses.replace(
                g, execution=msgspec.structs.replace(g.execution, insurance_fund=-1)
            ),
            "execution: genesis amounts must be positive",
        ),
        (
            lambda g: dataclasses.replace(
                g, execution=msgspec.structs.replace(g.execution, collateral_token=bytes(20))
            ),
            "execution: collateral_token cannot be the zero address",
        ),
        (
            lambda g: dataclasses.replace(
                g, execution=msgspec.structs.replace(g.execution, collateral_token=bytes(19))
            ),
            "execution: collateral_token is a 20-byte address",
        ),
        (
            lambda g: dataclasses.replace(
                g,
                execution=msgspec.structs.replace(
                    g.execution,
                    markets=(
                        GenesisMarket(1, msgspec.structs.replace(perp_params(), tick_size=3)),
                    ),
                ),
            ),
            "execution: tick_size \\* lot_size",
        ),
    ],
)
def test_each_rule_is_checked(genesis: Genesis, change: Any, message: str) -> None:
    with pytest.raises(GenesisError, match=message):
        change(genesis)


def _identity_of(genesis: Genesis, index: int) -> dict[str, Any]:
    v = genesis.validators[index]
    return {"address": v.address, "public_key": v.public_key}


def test_oversized_genesis_is_refused(genesis: Genesis) -> None:
    from sequencer_net.execution.genesis import GenesisDeposit

    deposits = tuple(GenesisDeposit(i.to_bytes(21, "big"), 1) for i in range(1, 50_000))
    with pytest.raises(GenesisError, match="above the block payload cap"):
        dataclasses.replace(
            genesis, execution=msgspec.structs.replace(genesis.execution, deposits=deposits)
        )


# --- Loading errors name the file and the key ------------------------------------------


def written(genesis: Genesis, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "genesis.json"
    write_genesis(path, genesis)
    return path, json.loads(path.read_text())


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(extra=1), "extra: unknown key"),
        (lambda d: d.pop("chain_id"), "chain_id: missing"),
        (lambda d: d["validators"][2].update(color="red"), r"validators\[2\]\.color: unknown key"),
        (lambda d: d["validators"][2].pop("weight"), r"validators\[2\]\.weight: missing"),
        (lambda d: d["validators"][0].update(address="abcd"), "0x-prefixed hex"),
        (lambda d: d["validators"][0].update(address="0xzz"), "not valid hex"),
        (
            lambda d: d["validators"][0].update(weight=1.5),
            r"validators\[0\]\.weight: must be an integer",
        ),
        (lambda d: d["validators"][0].update(weight=True), r"weight: must be an integer"),
        (lambda d: d["validators"][0].update(name=7), r"validators\[0\]\.name: must be a string"),
        (lambda d: d.update(validators={}), "validators: must be a JSON array"),
        (lambda d: d["execution"].update(bogus=1), "execution.bogus: unknown key"),
        (lambda d: d["execution"].pop("admin"), "execution.admin: missing"),
        (
            lambda d: d["execution"]["deposits"][0].update(amount="1e24"),
            r"execution\.deposits\[0\]\.amount: must be an integer",
        ),
        (
            lambda d: d["execution"].update(oracles="0x00"),
            "execution.oracles: must be a JSON array",
        ),
        (lambda d: d.update(chain_id=0), "chain_id: must be an integer in 1"),
    ],
)
def test_load_errors_name_file_and_key(
    genesis: Genesis, tmp_path: Path, edit: Any, message: str
) -> None:
    path, document = written(genesis, tmp_path)
    edit(document)
    path.write_text(json.dumps(document))
    with pytest.raises(GenesisError, match=message) as caught:
        load_genesis(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_load_reports_bad_json_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_text('{"chain_id": 1,\n oops}')
    with pytest.raises(GenesisError, match="invalid JSON at line 2"):
        load_genesis(path)
    with pytest.raises(GenesisError, match="cannot read"):
        load_genesis(tmp_path / "nope.json")


def test_execution_defaults_apply_when_optional_keys_are_absent(
    genesis: Genesis, tmp_path: Path
) -> None:
    path, document = written(genesis, tmp_path)
    for key in ("deposits", "insurance_fund", "markets"):
        del document["execution"][key]
    path.write_text(json.dumps(document))
    loaded = load_genesis(path)
    assert loaded.execution == msgspec.structs.replace(
        genesis.execution, deposits=(), insurance_fund=0, markets=()
    )
    assert isinstance(loaded.execution, GenesisConfig)


def test_a_fresh_local_genesis_draws_its_own_chain_id() -> None:
    """Two dev networks never share a chain id, so nothing signed for one is
    valid on the other; JavaScript tools hold the id exactly (< 2**53)."""
    ids = {
        make_local_genesis([secret_for(0)], base_p2p_port=1, base_api_port=9).chain_id
        for _ in range(8)
    }
    assert len(ids) == 8
    low, high = LOCAL_CHAIN_ID_RANGE
    assert all(low <= i < high <= 2**53 for i in ids)
    genesis = make_local_genesis([secret_for(0)], base_p2p_port=1, base_api_port=9)
    assert genesis.execution.chain_id == genesis.chain_id
