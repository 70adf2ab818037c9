"""The token rollup example follows verified blocks, persists, resumes, fails over."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from consensus.epochs import Epoch, EpochSchedule
from consensus.types import Height
from sequencer_net.client import RetryPolicy
from tests.client.chain import Chain
from tests.client.fake_node import Step, start_node


def _load_example() -> Any:
    path = Path(__file__).resolve().parents[2] / "examples" / "token_rollup" / "ledger.py"
    spec = importlib.util.spec_from_file_location("token_rollup_ledger", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


ledger = _load_example()

FAST = RetryPolicy(max_failures=4, initial_backoff_s=0.01, max_backoff_s=0.05)
BOB = "0x" + "b0" * 20


class TrustedGenesis:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def validator_set(self) -> Any:
        return self.chain.validators

    def schedule(self) -> Any:
        return EpochSchedule([Epoch(0, Height(1), self.chain.validators)])

    def domain(self) -> Any:
        return self.chain.domain


def transfer(chain: Chain, source: str, to: str, amount: int) -> bytes:
    body = json.dumps({"from": source, "to": to, "amount": amount}).encode()
    return chain.tx(ledger.NAMESPACE, body)


async def test_applies_transfers_resumes_after_restart_and_switches_nodes(tmp_path: Path) -> None:
    chain = Chain()
    issuer = "0x" + chain.sender.address.hex()
    messages = [
        chain.block([transfer(chain, issuer, BOB, 100)], namespace=ledger.NAMESPACE),
        chain.block([transfer(chain, BOB, issuer, 1)], namespace=ledger.NAMESPACE),  # forged
        chain.block([transfer(chain, issuer, BOB, 10**7)], namespace=ledger.NAMESPACE),
        chain.block([transfer(chain, issuer, BOB, 5), chain.tx(1)], namespace=ledger.NAMESPACE),
    ]
    state = tmp_path / "ledger.json"
    genesis = TrustedGenesis(chain)
    async with trio.open_nursery() as nursery:
        first = await start_node(nursery, messages, [Step(100)])
        second = await start_node(nursery, messages, [Step(100)])
        with trio.fail_after(20):
            run1 = await ledger.follow([first.url], genesis, state, issuer, stop_at=2, retry=FAST)
            assert run1.next_height == 3
            first.stop()  # the node the ledger read from goes away while it is down
            run2 = await ledger.follow(
                [first.url, second.url], genesis, state, issuer, stop_at=4, retry=FAST
            )
        nursery.cancel_scope.cancel()
    assert second.requests[0][1] == 3  # resumed from the saved height, on the other node
    assert run2.balances == {issuer: ledger.INITIAL_SUPPLY - 105, BOB: 105}
    assert (run2.applied, run2.refused) == (2, 2)
    saved = json.loads(state.read_text())
    assert saved["next_height"] == 5 and saved["balances"][BOB] == 105
    assert not (tmp_path / "ledger.json.tmp").exists()


def test_a_second_ledger_on_the_same_state_file_refuses_to_start(tmp_path: Path) -> None:
    import pytest

    state = tmp_path / "ledger.json"
    first = ledger.hold_state_lock(state)
    with pytest.raises(SystemExit, match="another ledger is using"):
        ledger.hold_state_lock(state)
    first.close()
    ledger.hold_state_lock(state).close()  # free again once the first one stops


async def test_a_transfer_ordered_twice_is_applied_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two validators batching the same transaction put it in two blocks; the
    sequencer executes it once, and so does the ledger (the same nonce rule)."""
    chain = Chain()
    issuer = "0x" + chain.sender.address.hex()
    once = transfer(chain, issuer, BOB, 7)
    messages = [
        chain.block([once], namespace=ledger.NAMESPACE),
        chain.block([once, transfer(chain, issuer, BOB, 1)], namespace=ledger.NAMESPACE),
    ]
    async with trio.open_nursery() as nursery:
        node = await start_node(nursery, messages, [Step(100)])
        with trio.fail_after(20):
            run = await ledger.follow(
                [node.url],
                TrustedGenesis(chain),
                tmp_path / "l.json",
                issuer,
                stop_at=2,
                retry=FAST,
            )
        nursery.cancel_scope.cancel()
    assert run.balances[BOB] == 8
    assert (run.applied, run.refused) == (2, 1)
    assert "block 2: refused: nonce 0" in capsys.readouterr().err
