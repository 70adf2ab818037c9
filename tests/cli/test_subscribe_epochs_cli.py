"""`seqnet subscribe` across a validator-set epoch boundary, against a scripted
node on 127.0.0.1, trusting a genesis file (and a pinned genesis digest)."""

from __future__ import annotations

import json
from pathlib import Path

from sequencer_net.home.genesis import write_genesis
from tests.cli.test_subscribe_cli import run_cli
from tests.client.chain import NAMESPACE, clone
from tests.client.epoch_chain import LAST, EpochChain, proven_by_tail
from tests.client.fake_node import Step


def boundary_messages(chain: EpochChain) -> list[dict[str, object]]:
    """Heights 1..LAST + 2: LAST proven by a one-block tail, then epoch 1."""
    early = [chain.block([chain.tx()]) for _ in range(LAST)]
    tail = chain.tail(1)
    early[-1] = proven_by_tail(early[-1:], tail, chain.tail_certificate(tail))[0]
    return early + [chain.block([chain.tx()]) for _ in range(2)]


def genesis_file(tmp_path: Path, chain: EpochChain) -> Path:
    assert chain.genesis is not None
    path = tmp_path / "genesis.json"
    write_genesis(path, chain.genesis)
    return path


async def test_prints_every_block_across_the_boundary(tmp_path: Path) -> None:
    chain = EpochChain()
    path = genesis_file(tmp_path, chain)
    assert chain.genesis is not None
    pinned = "0x" + chain.genesis.genesis_block().digest().hex()
    result = await run_cli(
        boundary_messages(chain),
        [Step(100)],
        *("--namespace", str(NAMESPACE), "--genesis", str(path), "--genesis-hash", pinned),
        *("--json", "--count", str(LAST + 2)),
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(b["height"], b["epoch"], b["finalized_by"]) for b in lines] == [
        (1, 0, None),
        (2, 0, None),
        (3, 0, LAST + 1),
        (4, 1, None),
        (5, 1, None),
    ]


async def test_an_old_sets_certificate_after_the_boundary_fails_clearly(tmp_path: Path) -> None:
    chain = EpochChain()
    path = genesis_file(tmp_path, chain)
    messages = boundary_messages(chain)
    forged = clone(messages[LAST])  # epoch 1's first block, certified by epoch 0
    block = forged["block"]
    forged["certificate"] = chain.certificate(
        bytes.fromhex(block["hash"][2:]), block["view"], block["height"], epoch=0
    )
    messages[LAST] = forged
    result = await run_cli(
        messages,
        [Step(100)],
        *("--namespace", str(NAMESPACE), "--genesis", str(path), "--count", str(LAST + 2)),
    )
    assert result.exit_code == 1
    assert f"verification failed: block {LAST + 1}: the finalization certificate" in result.output
    assert "of epoch 1" in result.output
    assert len(result.stdout.splitlines()) == LAST  # the blocks before it were printed


async def test_a_genesis_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    chain = EpochChain()
    path = genesis_file(tmp_path, chain)
    result = await run_cli(
        boundary_messages(chain),
        [Step(100)],
        *("--namespace", str(NAMESPACE), "--genesis", str(path), "--count", "1"),
        *("--genesis-hash", "0x" + "ab" * 32),
    )
    assert result.exit_code == 1
    assert "not the pinned 0x" + "ab" * 32 in result.output
    bad = await run_cli(
        [],
        [Step(1)],
        *("--namespace", str(NAMESPACE), "--genesis", str(path), "--genesis-hash", "0x12"),
    )
    assert bad.exit_code == 2
    assert "64 hex digits" in bad.output
