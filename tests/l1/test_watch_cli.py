"""`seqnet watch --once` against anvil and a stand-in node API: a posted fork is
proven from the node's block certificate, the node's stored evidence is sent,
and bad keys or unreachable endpoints are clear errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from web3 import Web3

from consensus.crypto import PrivateKey, keccak256
from consensus.messages import Block, Vote, VoteKind
from sequencer_net.api.subscriptions import certificate_json
from sequencer_net.cli.main import cli
from sequencer_net.l1.anvil import free_loopback_port
from sequencer_net.l1.header import L1Header
from tests.l1.finalized_store import FinalizedStore
from tests.l1.l1_chain import L1Chain, node_api
from tests.l1.test_evidence import finalize_vote
from tests.l1.test_evidence_watch import conflicting_block, fund, offence

WATCHER_KEY = PrivateKey(keccak256(b"seqnet watch cli key"))


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def vote_json(vote: Vote) -> dict[str, Any]:
    return {
        "kind": VoteKind(vote.kind).name.lower(),
        "view": vote.view,
        "height": vote.height,
        "block": _hex(vote.block),
        "signer": vote.signer,
        "signature": _hex(vote.signature),
    }


def block_route(block: Block, node: FinalizedStore, signers: list[int]) -> dict[str, Any]:
    cert = node.certificate(block.view, block.height, block.digest(), signers=signers)
    return {
        "type": "block",
        "height": block.height,
        "block": {
            "view": block.view,
            "height": block.height,
            "parent": _hex(block.parent),
            "proposer": block.proposer,
            "payload": _hex(block.payload),
            "hash": _hex(block.digest()),
        },
        "certificate": certificate_json(cert),
    }


def key_file(tmp_path: Path, key: PrivateKey) -> Path:
    path = tmp_path / "watcher.key"
    path.write_text("0x" + key.secret.hex() + "\n")
    return path


def run_watch(chain: L1Chain, key: Path, *apis: str, extra: tuple[str, ...] = ()) -> Any:
    args = [
        "watch",
        "--rpc",
        chain.anvil.url,
        "--commitments",
        "0x" + chain.addresses.commitments.hex(),
        "--key-file",
        str(key),
        "--confirmations",
        "0",
        "--once",
        "--json",
        *extra,
    ]
    for api in apis:
        args += ["--api", api]
    return CliRunner().invoke(cli, args)


def test_watch_once_proves_a_posted_fork_and_stored_evidence(
    tmp_path: Path, chain: L1Chain
) -> None:
    keys = chain.keys
    node = FinalizedStore.open(tmp_path / "chain", keys, chain.domain)
    try:
        (first,) = node.commit(1)
        block, theirs = conflicting_block(node, view=3)
    finally:
        node.close()
    chain.post(L1Header.of_block(first), signers=keys[:3])
    chain.post(theirs, signers=[keys[0], keys[1], keys[3]])
    other = chain.header(7)
    next_height = dataclasses.replace(other, height=8)  # one view, two heights: L1 evidence
    stored = {
        "offender": 2,
        "offender_address": _hex(keys[2].address),
        "view": other.view,
        "reason": "finalized two blocks in one view",
        "first": vote_json(finalize_vote(keys[2], chain.domain, other)),
        "second": vote_json(finalize_vote(keys[2], chain.domain, next_height)),
    }
    routes = {
        "/v1/status": {"height": 2, "verifying_contract": _hex(chain.addresses.commitments)},
        "/v1/evidence": {"evidence": [stored]},
        "/v1/blocks/1/namespaces/0": block_route(first, node, list(range(4))),
        "/v1/blocks/2/namespaces/0": block_route(block, node, [0, 1, 2]),
    }
    fund(chain, WATCHER_KEY.address)
    key = key_file(tmp_path, WATCHER_KEY)
    state = tmp_path / "state"
    with node_api(routes) as api:
        result = run_watch(chain, key, api, extra=("--state-dir", str(state)))
        assert result.exit_code == 0, result.output
        report = json.loads(result.output.strip().splitlines()[-1])
        assert (report["evidence_submitted"], report["frozen"], report["fork_height"]) == (
            3,
            True,
            2,
        )
        assert [offence(chain, k)[0] for k in keys] == [True, True, True, False]
        assert offence(chain, keys[2]) == (True, 7)

        before = chain.w3.eth.get_transaction_count(Web3.to_checksum_address(WATCHER_KEY.address))
        again = run_watch(chain, key, api, extra=("--state-dir", str(state)))
        assert again.exit_code == 0, again.output
        assert json.loads(again.output.strip().splitlines()[-1])["evidence_submitted"] == 0
        assert (
            chain.w3.eth.get_transaction_count(Web3.to_checksum_address(WATCHER_KEY.address))
            == before
        )


def test_watch_proves_a_fork_in_other_views_from_a_nodes_view_certificates(
    tmp_path: Path, chain: L1Chain
) -> None:
    """Height 2 was finalized in view 3 on the node's side and in view 5 on the
    posted one: /v1/views/5 shows the node's side finalized height 3 in view 5,
    and the validators who signed both are proven at height 2."""
    keys = chain.keys
    node = FinalizedStore.open(tmp_path / "chain", keys, chain.domain)
    try:
        (first,) = node.commit(1)
        block, theirs = conflicting_block(node, view=5)
        later = node.certificate(5, 3, keccak256(b"height 3, view 5"), signers=[0, 1, 2])
    finally:
        node.close()
    chain.post(L1Header.of_block(first), signers=keys[:3])
    chain.post(theirs, signers=[keys[0], keys[1], keys[3]])
    routes = {
        "/v1/status": {"height": 3, "view": 6},
        "/v1/evidence": {"evidence": []},
        "/v1/blocks/1/namespaces/0": block_route(first, node, list(range(4))),
        "/v1/blocks/2/namespaces/0": block_route(block, node, [0, 1, 2]),
        "/v1/views/5": {"view": 5, "certificates": [certificate_json(later)]},
    }
    fund(chain, WATCHER_KEY.address)
    with node_api(routes) as api:
        result = run_watch(chain, key_file(tmp_path, WATCHER_KEY), api)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert (report["evidence_submitted"], report["frozen"], report["fork_height"]) == (2, True, 2)
    assert [offence(chain, k) for k in keys] == [(True, 2), (True, 2), (False, 0), (False, 0)]


def test_watch_names_a_bad_key_and_unreachable_endpoints(tmp_path: Path, chain: L1Chain) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    result = run_watch(chain, bad, "http://127.0.0.1:1")
    assert result.exit_code == 1 and "not an L1 private key" in result.output
    missing = run_watch(chain, tmp_path / "absent.key", "http://127.0.0.1:1")
    assert missing.exit_code == 1 and "cannot read the L1 key file" in missing.output

    key = key_file(tmp_path, WATCHER_KEY)
    dead_api = f"http://127.0.0.1:{free_loopback_port()}"
    result = run_watch(chain, key, dead_api)
    assert result.exit_code == 1 and f"node unreachable at {dead_api}" in result.output

    args = ["watch", "--rpc", dead_api, "--commitments", "0x" + "11" * 20]
    result = CliRunner().invoke(cli, [*args, "--key-file", str(key), "--api", dead_api, "--once"])
    assert result.exit_code == 1 and f"L1 unreachable at {dead_api}" in result.output
