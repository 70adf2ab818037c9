"""The fair-ordering attack suite: the defended attacks fail, and each one
succeeds once the check it runs into is switched off (so it can fail)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from click.testing import CliRunner

from sequencer_net.cli.sim import sim
from sequencer_net.fairness import envelope, tdh2
from sequencer_net.fairness.attacks import (
    bad_shares,
    censor,
    committee,
    crash,
    exchange,
    frontrun,
    maul,
    ordering,
    reorder,
    replay,
    withhold,
)
from sequencer_net.fairness.attacks.report import AttackReport
from sequencer_net.fairness.attacks.runner import ATTACKS
from sequencer_net.fairness.group import InvalidGroupElement, decode_point
from sequencer_net.node import decryption

DEFENDED = [name for name in ATTACKS if name != "reorder"]


def report(attack: Any, n: int, seeds: Sequence[int]) -> AttackReport:
    """Run `attack` on fresh committees (no cache: tests patch how they are made)."""
    result = AttackReport(attack.__name__, n)
    for seed in seeds:
        result.add(seed, attack.run(committee.make_committee(n, seed)))
    return result


@pytest.mark.parametrize("name", DEFENDED)
@pytest.mark.parametrize("n", [4, 7])
def test_defended_attacks_never_succeed(name: str, n: int) -> None:
    result = AttackReport(name, n)
    for seed in (0, 1) if n == 4 else (0,):
        result.add(seed, ATTACKS[name](committee.make_committee(n, seed)))
    assert result.attempts > 0
    assert result.successes == 0, result.failed_seeds
    assert result.identical
    assert not result.broken


def test_censor_delays_the_victim_up_to_the_bound_and_no_further() -> None:
    result = report(censor, 4, [0, 1, 2])
    assert result.successes == 0
    assert max(result.delays) >= censor.bound_views()  # the adversary does delay
    assert max(result.delays) > max(result.baseline_delays)


def test_censor_succeeds_when_voters_skip_the_inclusion_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(censor, "check_certificate_inclusion", lambda *a, **k: None)
    result = report(censor, 4, [0, 1])
    assert result.successes > 0
    assert "left out of the block" in next(iter(result.failed_seeds.values()))[0]


def block_order(seed: bytes, forced: Sequence[Any], transactions: Sequence[Any]) -> list[Any]:
    """The leader's order: what execution did before the content-blind order."""
    return [*forced, *transactions]


def test_reorder_succeeds_when_execution_follows_the_leaders_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ordering, "execution_order", block_order)
    result = report(reorder, 4, [0, 1, 2])
    assert result.attack_rate == 1.0
    assert result.success_rate > 0
    assert result.broken


def test_reorder_advantage_is_chance_under_the_content_blind_order() -> None:
    result = report(reorder, 4, range(6))
    assert 0 < result.attack_rate < 1
    assert abs(result.success_rate) <= result.advantage_margin()
    assert not result.broken


def test_frontrun_succeeds_when_f_shares_decrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tdh2, "check_threshold", lambda n, t: None)
    monkeypatch.setattr(committee, "threshold_for", tdh2.max_faults)
    result = report(frontrun, 4, [0])
    assert result.successes == result.attempts > 0


def test_withhold_succeeds_when_the_honest_validators_are_too_few(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tdh2, "check_threshold", lambda n, t: None)
    monkeypatch.setattr(committee, "threshold_for", lambda n: n - tdh2.max_faults(n) + 1)
    result = report(withhold, 4, [0])
    assert result.successes == result.attempts > 0


def unchecked_block_shares(key: Any, cts: Any, message: tdh2.BlockShares) -> Any:
    try:
        return [tdh2.VerifiedShare(message.index, decode_point(v)) for v in message.values]
    except InvalidGroupElement:
        return None


def test_bad_shares_succeed_when_shares_are_not_verified(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(decryption, "accept_block_shares", unchecked_block_shares)
    result = report(bad_shares, 4, [0])
    assert result.successes > 0
    assert not result.identical


def test_maul_succeeds_when_the_ciphertext_proof_is_not_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(envelope, "verify_ciphertext", lambda *a: True)
    result = report(maul, 4, [0])
    assert result.successes > 0


def test_replay_succeeds_without_the_nonce_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "nonce_rejection", lambda window, nonce: None)
    result = report(replay, 4, [0])
    assert "executed twice" in result.failed_seeds[0][0]


def test_crash_succeeds_when_shares_are_not_persisted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exchange, "persist", lambda node, height, message: None)
    result = report(crash, 4, [0])
    assert result.successes > 0


def test_a_seed_replays_to_the_same_report() -> None:
    first = report(censor, 4, [3]).as_json()
    assert report(censor, 4, [3]).as_json() == first


def test_cli_json_reports_each_attack_and_exits_zero_when_defended() -> None:
    result = CliRunner().invoke(sim, ["--attack", "maul", "-n", "4", "--seeds", "1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    maul_report = summary["attacks"]["maul"]
    assert maul_report["by_n"]["4"]["attempts"] > 0
    for key in ("attempts", "attack_success_rate", "victim_delay_rounds", "honest_identical"):
        assert key in maul_report
    assert summary["succeeded"] is False


def test_cli_exits_nonzero_when_an_attack_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ordering, "execution_order", block_order)
    result = CliRunner().invoke(sim, ["--attack", "reorder", "-n", "4", "--seed", "0"])
    assert result.exit_code == 1
    assert "reorder" in result.output and "SUCCEEDED" in result.output


def test_cli_exits_zero_when_every_attack_fails() -> None:
    result = CliRunner().invoke(sim, ["--attack", "reorder", "-n", "4", "--seed", "0"])
    assert result.exit_code == 0, result.output
