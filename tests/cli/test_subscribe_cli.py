"""`seqnet subscribe` against a scripted node on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from click.testing import CliRunner

from consensus.crypto import keccak256
from sequencer_net.cli.main import cli
from sequencer_net.home.genesis import make_local_genesis, write_genesis
from tests.client.chain import NAMESPACE, OTHER, Chain, clone, hx, validator_keys
from tests.client.fake_node import Step, start_node

LIMIT_S = 20


def genesis_chain(tmp_path: Path) -> tuple[Path, Chain]:
    keys = validator_keys(4)
    genesis = make_local_genesis(
        [k.secret for k in keys], chain_id=31337, base_p2p_port=1, base_api_port=101
    )
    path = tmp_path / "genesis.json"
    write_genesis(path, genesis)
    return path, Chain(keys=keys, domain=genesis.domain())


async def run_cli(messages: list[dict[str, Any]], script: list[Step], *args: str) -> Any:
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, messages, script)
        with trio.fail_after(LIMIT_S):
            result = await trio.to_thread.run_sync(
                lambda: CliRunner().invoke(cli, ["subscribe", "--node", node.url, *args])
            )
        nursery.cancel_scope.cancel()
    return result


async def test_prints_one_json_line_per_verified_block(tmp_path: Path) -> None:
    genesis, chain = genesis_chain(tmp_path)
    txs = [chain.tx(), chain.tx(OTHER), chain.tx()]
    messages = [chain.block(txs), chain.block([]), chain.block([chain.tx()])]
    result = await run_cli(
        messages,
        [Step(1, "drop"), Step(100)],
        *("--namespace", str(NAMESPACE), "--genesis", str(genesis), "--json", "--count", "3"),
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [b["height"] for b in lines] == [1, 2, 3]
    assert "dropped" in result.stderr and "resuming from height 2" in result.stderr
    first = lines[0]
    assert first["hash"] == messages[0]["block"]["hash"]
    assert first["namespace"] == NAMESPACE
    assert first["transactions"] == [hx(txs[0]), hx(txs[2])]
    assert first["tx_hashes"] == [hx(keccak256(txs[0])), hx(keccak256(txs[2]))]
    assert first["state_root"].startswith("0x") and len(first["state_root"]) == 66


async def test_a_block_signed_for_another_genesis_fails_clearly(tmp_path: Path) -> None:
    genesis, _ = genesis_chain(tmp_path)
    stranger = Chain()  # same keys, another domain
    result = await run_cli(
        [stranger.block([])],
        [Step(100)],
        *("--namespace", str(NAMESPACE), "--genesis", str(genesis), "--count", "1"),
    )
    assert result.exit_code == 1
    assert "verification failed: block 1: the finalization certificate" in result.output


async def test_no_verify_prints_without_a_genesis(tmp_path: Path) -> None:
    _, chain = genesis_chain(tmp_path)
    message = chain.block([chain.tx()])
    message["certificate"] = clone(message["certificate"]) | {"signers": [0]}
    message["certificate"]["signatures"] = message["certificate"]["signatures"][:1]
    result = await run_cli(
        [message], [Step(100)], "--namespace", str(NAMESPACE), "--no-verify", "--count", "1"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("height 1 ")


def test_verification_needs_a_genesis(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)  # no .seqnet-testnet here
    result = CliRunner().invoke(
        cli, ["subscribe", "--node", "http://127.0.0.1:9", "--namespace", "1"]
    )
    assert result.exit_code == 2
    assert "give --genesis FILE" in result.output
