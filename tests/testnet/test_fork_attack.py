"""The fork attack: a test-only equivocation fault in real validators, caught on L1.

The fast tests check the fault's guard (local chain ids only), its manifest key
and its sending rules on their own. The real-process test runs
testnet/fork-attack.toml: four validators and anvil, two of them equivocating,
and asserts the summary: Commitments frozen by evidence the watchers
submitted, the withdrawal proven on a post of the fork never paid, and the
escape hatch paying from the last undisputed root.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from consensus.crypto import PrivateKey
from consensus.messages import Proposal, Vote, VoteKind
from consensus.payload import BlockPayload, decode_payload, encode_payload
from consensus.types import ZERO_DIGEST
from sequencer_net.home.genesis import LOCAL_CHAIN_ID_RANGE
from sequencer_net.l1.anvil import anvil_available
from sequencer_net.node.equivocation import (
    Equivocator,
    TestFaultRefused,
    check_test_fault_allowed,
)
from sequencer_net.testnet.manifest import ManifestError, load_manifest, parse_manifest

from .conftest import free_base_port

ROOT = Path(__file__).parents[2]
MANIFEST = ROOT / "testnet" / "fork-attack.toml"
RUN_TIMEOUT_S = 300.0
CROSS_DELAY = 1.5


def test_the_fault_is_refused_outside_the_local_chain_id_range() -> None:
    low, high = LOCAL_CHAIN_ID_RANGE
    check_test_fault_allowed(None, 1)  # no fault: any chain
    check_test_fault_allowed("equivocate", low)
    check_test_fault_allowed("equivocate", high - 1)
    for chain_id in (1, 424242, low - 1, high):
        with pytest.raises(TestFaultRefused, match="local test networks only"):
            check_test_fault_allowed("equivocate", chain_id)
    with pytest.raises(TestFaultRefused, match="unknown"):
        check_test_fault_allowed("crash", low)


def test_the_manifest_names_the_equivocators() -> None:
    manifest = load_manifest(MANIFEST)
    assert manifest.network.equivocators == (0, 1)
    assert manifest.network.validators == 4 and manifest.l1.enabled
    for bad, problem in (
        ("equivocators = [4]", "must name validators 0..3"),
        ("equivocators = [1, 1]", "twice"),
        ('equivocators = ["a"]', "list of validator indices"),
    ):
        with pytest.raises(ManifestError, match=problem):
            parse_manifest(f"[network]\nvalidators = 4\n{bad}\n")
    with pytest.raises(ManifestError, match="needs the L1"):
        parse_manifest("[network]\nequivocators = [0]\n[l1]\nenabled = false\n")


def _proposal() -> Proposal:
    from consensus.messages import Block

    payload = encode_payload(
        BlockPayload(
            timestamp_ms=1_000,
            state_height=0,
            state_root=bytes(32),
            batches=[],
            namespace_root=bytes(32),
        )
    )
    block = Block(view=4, height=3, parent=ZERO_DIGEST, proposer=0, payload=payload)
    return Proposal(block=block, signature=b"\x00" * 65, parent=None, skipped=[])


def _signer(key: PrivateKey):  # type: ignore[no-untyped-def]
    def sign(kind: int, view: int, height: int, block: bytes) -> bytes:
        return bytes(key.sign_digest(bytes([kind]) + view.to_bytes(8, "big") + block[:23]))

    return sign


def test_an_armed_leader_sends_twins_to_the_two_sides_and_finalizes_both() -> None:
    key = PrivateKey(b"\x01" * 32)
    fault = Equivocator(me=0, validators=4, sign=_signer(key), cross_delay_s=CROSS_DELAY)
    proposal = _proposal()
    assert fault.outgoing(proposal) is None  # dormant until armed
    fault.arm()
    out = fault.outgoing(proposal)
    assert out is not None
    sent: dict[int, list[Proposal]] = {}
    for peer, msg, delay in out:
        if isinstance(msg, Proposal):
            assert delay == 0
            sent.setdefault(peer, []).append(msg)
    # The core's block has an even timestamp: the even side gets it first.
    twin = sent[1][0]
    assert sent[2] == [proposal, twin] and sent[1] == sent[3] == [twin, proposal]
    assert twin.block.digest() != proposal.block.digest()
    assert (twin.block.view, twin.block.height, twin.block.parent) == (4, 3, ZERO_DIGEST)
    later = decode_payload(twin.block.payload).timestamp_ms
    assert later == decode_payload(proposal.block.payload).timestamp_ms + 1
    finals = [(peer, msg, delay) for peer, msg, delay in out if isinstance(msg, Vote)]
    assert {m.kind for _, m, _ in finals} == {VoteKind.FINALIZE}
    to_twin_side = {m.block for p, m, d in finals if p in (1, 3) and d == 0}
    assert to_twin_side == {twin.block.digest()}
    assert {m.block for p, m, d in finals if p == 2 and d == CROSS_DELAY} == to_twin_side
    # The core's later votes for either twin follow the same sides.
    vote = Vote(VoteKind.FINALIZE, 4, 3, twin.block.digest(), 0, b"\x00" * 65)
    routed = fault.outgoing(vote)
    assert routed is not None
    assert sorted((p, d) for p, _, d in routed) == [(1, 0.0), (2, CROSS_DELAY), (3, 0.0)]


def test_an_armed_voter_co_signs_both_twins_each_for_its_side() -> None:
    key = PrivateKey(b"\x02" * 32)
    fault = Equivocator(me=1, validators=4, sign=_signer(key), cross_delay_s=CROSS_DELAY)
    proposal = _proposal()
    assert fault.incoming(0, proposal) == []  # dormant
    fault.arm()
    even = fault.incoming(0, proposal)
    assert {m.kind for _, m, _ in even if isinstance(m, Vote)} == {
        VoteKind.NOTARIZE,
        VoteKind.FINALIZE,
    }
    assert all(isinstance(m, Vote) for _, m, _ in even)
    assert {p for p, _, d in even if d == 0} == {0, 2}  # an even timestamp: the even side
    assert {p for p, _, d in even if d == CROSS_DELAY} == {3}
    assert fault.incoming(0, proposal) == []  # once per block
    assert fault.incoming(2, proposal) == []  # only the leader's own proposal
    from sequencer_net.node.equivocation import twin_of

    odd = fault.incoming(0, twin_of(proposal, fault.sign))
    assert {p for p, _, d in odd if d == 0} == {3}  # its twin: the odd side


needs_anvil = pytest.mark.skipif(not anvil_available(), reason="anvil not installed")


@pytest.mark.slow
@needs_anvil
def test_a_fork_of_real_validators_freezes_the_l1_and_only_the_escape_pays(
    testnet_dir: Path,
) -> None:
    command = [
        sys.executable, "-m", "sequencer_net.cli.main", "testnet", "up",
        "--manifest", str(MANIFEST), "--json", "--duration", "150",
        "--dir", str(testnet_dir), "--base-port", str(free_base_port(4)),
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=ROOT, check=False
    )
    assert result.stdout, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    attack = summary["attack"]
    assert attack is not None, summary["events"]
    context = json.dumps(attack, indent=1)
    assert summary["frozen"] is True, context
    assert summary["evidence_submitted"] >= 1, context
    assert summary["fork_withdrawals_paid"] == 0, context
    assert summary["escape_hatch_paid"] > 0, context
    assert attack["escape_state_height"] < attack["disputed_height"], context
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize("chain_id", [1, 424242])
def test_a_validator_with_the_fault_refuses_to_start_on_a_non_local_chain(
    tmp_path: Path, chain_id: int
) -> None:
    from sequencer_net.home.genesis import make_local_genesis
    from sequencer_net.home.keystore import generate_secret
    from sequencer_net.home.setup import init_home
    from sequencer_net.testnet.network import set_consensus_key

    secret = generate_secret()
    ports = free_base_port(1)
    genesis = make_local_genesis(
        [secret], chain_id=chain_id, base_p2p_port=ports, base_api_port=ports + 100
    )
    home = tmp_path / "home"
    init_home(home, name="v0", genesis=genesis, secret=secret, p2p_port=ports, api_port=ports + 100)
    set_consensus_key(home, "test_fault", '"equivocate"')
    result = subprocess.run(
        [sys.executable, "-m", "sequencer_net.cli.main", "node", "run", "--home", str(home)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "test_fault is for local test networks only" in result.stdout + result.stderr
