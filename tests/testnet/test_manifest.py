"""Manifest parsing and validation: every shipped manifest runs, every mistake is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from sequencer_net.testnet.manifest import (
    L1Spec,
    Manifest,
    ManifestError,
    Perturbation,
    PerturbationAction,
    load_manifest,
    parse_manifest,
)

MANIFESTS = sorted((Path(__file__).parents[2] / "testnet").glob("*.toml"))


def test_the_required_manifests_ship() -> None:
    names = {path.name for path in MANIFESTS}
    assert {"local4.toml", "crash-restart.toml", "pause.toml"} <= names


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_shipped_manifest_parses(path: Path) -> None:
    manifest = load_manifest(path)
    assert manifest.network.validators >= 1
    assert manifest.source == str(path)
    assert manifest.description


def test_crash_restart_manifest_kills_then_restarts_node2() -> None:
    path = next(p for p in MANIFESTS if p.name == "crash-restart.toml")
    first_two = load_manifest(path).perturbations[:2]
    assert first_two == (
        Perturbation(10.0, PerturbationAction.KILL, 2),
        Perturbation(20.0, PerturbationAction.RESTART, 2),
    )


def test_empty_manifest_gives_the_documented_defaults() -> None:
    manifest = parse_manifest("")
    assert manifest.network.validators == 4
    assert manifest.network.view_timeout_ms == 1000
    assert manifest.network.chain_id is None  # random, drawn per testnet
    assert manifest.load.rate == 200.0 and manifest.load.accounts == 100
    assert manifest.load.payload_bytes == (100, 300)
    assert manifest.load.mix == "mixed"  # the market, with some rollup blobs
    assert manifest.perturbations == () and manifest.duration_s is None
    assert manifest.l1 == L1Spec(
        enabled=True, block_time_s=1, inclusion_window=20, escape_delay=600
    )


def test_the_l1_table_and_the_no_l1_flag() -> None:
    manifest = parse_manifest("[l1]\nblock_time_s = 2\ninclusion_window = 30\nescape_delay = 900\n")
    assert manifest.l1 == L1Spec(
        enabled=True, block_time_s=2, inclusion_window=30, escape_delay=900
    )
    off = manifest.with_overrides(l1=False)
    assert off.l1 == L1Spec(enabled=False, block_time_s=2, inclusion_window=30, escape_delay=900)
    assert manifest.with_overrides(l1=None).l1.enabled  # no flag: the manifest's
    assert not parse_manifest("[l1]\nenabled = false").with_overrides(l1=None).l1.enabled


def test_full_manifest_round_trip() -> None:
    manifest = parse_manifest(
        """
        description = "d"
        duration_s = 30
        [network]
        validators = 7
        weights = [1, 2, 3, 4, 5, 6, 7]
        view_timeout_ms = 500
        chain_id = 42
        [load]
        rate = 50.5
        accounts = 3
        seed = 9
        namespace = 7
        payload_bytes = 120
        mix = "dex"
        [[perturbation]]
        at_s = 5
        action = "disconnect"
        nodes = [1, 2]
        [[perturbation]]
        at_s = 1.5
        action = "kill"
        node = 6
        """
    )
    assert manifest.network.weights == (1, 2, 3, 4, 5, 6, 7)
    assert manifest.load.payload_bytes == (120, 120) and manifest.load.mix == "dex"
    assert manifest.with_overrides(mix="rollup").load.mix == "rollup"
    assert manifest.load.rate == 50.5 and manifest.duration_s == 30.0
    # Sorted by time; `nodes` expands in order.
    assert [(p.at_s, p.action.value, p.node) for p in manifest.perturbations] == [
        (1.5, "kill", 6),
        (5.0, "disconnect", 1),
        (5.0, "disconnect", 2),
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[network]\nvalidatorz = 4", "network.validatorz is not a manifest key"),
        ("speed = 1", "speed is not a manifest key"),
        ("[network]\nvalidators = 0", "network.validators must be between 1 and 64"),
        ("[network]\nvalidators = '4'", "network.validators must be an integer"),
        ("[network]\nweights = [1, 1]", "network.weights has 2 entries for 4 validators"),
        ("[network]\nweights = [1, 1, 0, 1]", "every weight must be a positive integer"),
        ("[network]\nview_timeout_ms = 0", "network.view_timeout_ms must be positive"),
        ("[load]\nrate = -1", "load.rate must be >= 0"),
        ("[load]\npayload_bytes = [300, 100]", "load.payload_bytes must be [min, max]"),
        ("[load]\nmix = 'orders'", "load.mix is 'orders'; expected one of rollup, dex, mixed"),
        ("[load]\nmix = 1", "load.mix is 1; expected one of"),
        ("network = 3", "network must be a table"),
        ("duration_s = 0", "duration_s must be positive"),
        ("[[perturbation]]\naction = 'kill'\nnode = 1", "perturbation[0].at_s is required"),
        ("[[perturbation]]\nat_s = 1\naction = 'explode'\nnode = 1", "is 'explode'; expected"),
        ("[[perturbation]]\nat_s = -1\naction = 'kill'\nnode = 1", "at_s must be >= 0"),
        ("[[perturbation]]\nat_s = 1\naction = 'kill'", "needs exactly one of"),
        ("[[perturbation]]\nat_s = 1\naction = 'kill'\nnode = 4", "node is 4, but validators"),
        ("[[perturbation]]\nat_s = 1\naction = 'kill'\nnode = 1\nwhy = 1", "why is not a"),
        ("[network\nvalidators = 4", "not valid TOML"),
        ("[l1]\nenabled = 1", "l1.enabled must be true or false"),
        ("[l1]\nblock_time_s = 0", "l1.block_time_s must be between 1 and 60"),
        ("[l1]\ninclusion_window = 0", "l1.inclusion_window must be between 1 and"),
        ("[l1]\nescape_delay = 4294967296", "l1.escape_delay must be between 1 and"),
        ("[l1]\nrpc_url = 'x'", "l1.rpc_url is not a manifest key"),
        ("[network]\nrotate_every = 1", "network.rotate_every must be between 2 and"),
    ],
)
def test_bad_manifests_are_rejected_with_the_key_named(text: str, fragment: str) -> None:
    with pytest.raises(ManifestError) as raised:
        parse_manifest(text, source="bad.toml")
    assert fragment in str(raised.value)
    assert str(raised.value).startswith("bad.toml")


@pytest.mark.parametrize(
    ("steps", "fragment"),
    [
        ([(1, "resume", 0)], "node0 is up, not paused"),
        ([(1, "kill", 0), (2, "kill", 0)], "node0 is already down"),
        ([(1, "kill", 0), (2, "pause", 0)], "node0 is down, not up"),
        ([(1, "pause", 0), (2, "disconnect", 0)], "admin API cannot answer"),
        ([(1, "reconnect", 0)], "node0 is already connected"),
        ([(1, "disconnect", 0), (2, "disconnect", 0)], "already disconnected"),
    ],
)
def test_perturbations_that_cannot_apply_in_order_are_rejected(
    steps: list[tuple[float, str, int]], fragment: str
) -> None:
    text = "".join(
        f"[[perturbation]]\nat_s = {at}\naction = '{action}'\nnode = {node}\n"
        for at, action, node in steps
    )
    with pytest.raises(ManifestError, match=fragment):
        parse_manifest(text)


def test_a_sensible_fault_sequence_is_accepted() -> None:
    text = "".join(
        f"[[perturbation]]\nat_s = {at}\naction = '{action}'\nnode = 1\n"
        for at, action in [
            (1, "pause"),
            (2, "resume"),
            (3, "disconnect"),
            (4, "kill"),  # a kill clears the cut: the restarted node starts connected
            (5, "restart"),
            (6, "restart"),  # restarting a running node is allowed (stop, then start)
            (7, "disconnect"),
            (8, "reconnect"),
        ]
    )
    assert len(parse_manifest(text).perturbations) == 8


def test_overrides_are_checked_against_the_perturbations() -> None:
    manifest = parse_manifest("[[perturbation]]\nat_s = 1\naction = 'kill'\nnode = 3")
    assert manifest.with_overrides(validators=5).network.validators == 5
    with pytest.raises(ManifestError, match=r"node is 3, but validators are 0\.\.2"):
        manifest.with_overrides(validators=3)
    with pytest.raises(ManifestError, match="does not match the 4 weights"):
        parse_manifest("[network]\nweights = [1, 1, 1, 1]").with_overrides(validators=5)
    assert Manifest().with_overrides(rate=0.0).load.rate == 0.0


def test_testnet_validators_leave_slots_for_full_nodes(tmp_path: Path) -> None:
    from sequencer_net.home.config import load_config
    from sequencer_net.testnet.network import FULL_NODE_SLOTS, write_validator_homes

    specs = write_validator_homes(
        tmp_path, parse_manifest("[network]\nvalidators = 2\n"), 36600, "127.0.0.1"
    )
    assert FULL_NODE_SLOTS > 0
    for spec in specs:
        assert load_config(spec.home).p2p.max_non_validator_connections == FULL_NODE_SLOTS


def test_a_rotating_testnet_genesis_changes_weights_every_n_heights(tmp_path: Path) -> None:
    """`rotate_every` (or `--rotate-every`): epochs every N heights, same members,
    and any one validator down leaves a quorum in every epoch."""
    from consensus.types import ValidatorIndex
    from sequencer_net.home.genesis import load_genesis
    from sequencer_net.testnet.network import GENESIS_FILE, ROTATION_EPOCHS, write_validator_homes

    assert parse_manifest("[network]\nrotate_every = 30").network.rotate_every == 30
    assert Manifest().network.rotate_every is None
    manifest = parse_manifest("[network]\nencryption = false").with_overrides(rotate_every=25)
    write_validator_homes(tmp_path, manifest, 36700, "127.0.0.1")
    genesis = load_genesis(tmp_path / GENESIS_FILE)
    assert genesis.members() == genesis.validators  # the same members in every epoch
    schedule = genesis.schedule()
    assert len(schedule) == 1 + ROTATION_EPOCHS
    assert [schedule.epoch(k).first_height for k in range(4)] == [1, 26, 51, 76]
    assert [v.weight for v in genesis.epoch_validators(1)] == [1, 2, 2, 2]
    assert [v.weight for v in genesis.epoch_validators(2)] == [2, 1, 2, 2]
    for epoch in schedule.epochs:
        validators = epoch.validators
        for down in range(len(validators)):
            rest = [ValidatorIndex(i) for i in range(len(validators)) if i != down]
            assert validators.weight_of(rest) >= validators.quorum_weight
    # Without the option the genesis has one epoch, as before.
    (tmp_path / "plain").mkdir()
    write_validator_homes(tmp_path / "plain", Manifest(), 36800, "127.0.0.1")
    assert load_genesis(tmp_path / "plain" / GENESIS_FILE).epochs == ()


def test_a_member_rotating_testnet_leaves_out_one_validator_per_epoch(tmp_path: Path) -> None:
    """`rotate_members` (or `--rotate-members`): epoch k is every validator but
    k mod n, each home holds its share of exactly the epochs it is a member of,
    and with n = 5 any one validator down leaves a quorum in every epoch."""
    from consensus.crypto import PrivateKey
    from consensus.types import ValidatorIndex
    from sequencer_net.home.config import load_config
    from sequencer_net.home.genesis import load_genesis
    from sequencer_net.home.setup import load_validator_secret
    from sequencer_net.home.threshold import read_key_shares
    from sequencer_net.testnet.network import GENESIS_FILE, ROTATION_EPOCHS, write_validator_homes

    assert parse_manifest(
        "[network]\nrotate_every = 30\nrotate_members = true"
    ).network.rotate_members
    with pytest.raises(ManifestError, match=r"rotate_members.*needs rotate_every"):
        parse_manifest("[network]\nrotate_members = true")
    manifest = parse_manifest("[network]\nvalidators = 5").with_overrides(
        rotate_every=20, rotate_members=True
    )
    specs = write_validator_homes(tmp_path, manifest, 36800, "127.0.0.1")
    genesis = load_genesis(tmp_path / GENESIS_FILE)
    schedule = genesis.schedule()
    assert len(schedule) == 1 + ROTATION_EPOCHS
    names = [v.name for v in genesis.members()]
    assert sorted(names) == [f"node{i}" for i in range(5)]
    for k in range(len(schedule)):
        members = sorted(v.name for v in genesis.epoch_validators(k))
        assert members == [f"node{i}" for i in range(5) if i != k % 5], k
        validators = schedule.epoch(k).validators
        for down in range(len(validators)):
            rest = [ValidatorIndex(i) for i in range(len(validators)) if i != down]
            assert validators.weight_of(rest) >= validators.quorum_weight
    for spec in specs:
        config = load_config(spec.home)
        address = PrivateKey(load_validator_secret(config)).address
        shares = read_key_shares(config.threshold_key_path, genesis, address)
        member_of = {k for k in range(len(schedule)) if genesis.epoch_index(k, address) is not None}
        assert set(shares) == member_of and len(member_of) < len(schedule)
