"""`seqnet l1 status` against anvil and a stand-in node status endpoint."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from sequencer_net.cli.main import cli
from sequencer_net.l1.anvil import free_loopback_port
from sequencer_net.l1.status import L1Status
from tests.l1.l1_chain import L1Chain, node_api, requires_anvil


def node_status(chain: L1Chain, height: int, l1: dict[str, Any]) -> dict[str, Any]:
    return {
        "height": height,
        "verifying_contract": "0x" + chain.addresses.commitments.hex(),
        "l1": l1,
    }


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, ["l1", "status", *args])


@requires_anvil
def test_status_json_reads_the_contract_and_the_node(chain: L1Chain) -> None:
    receipt = chain.post(chain.header(4, state_height=3))
    l1 = L1Status(enabled=True, gas_per_posting=None).document(9)
    with node_api({"/v1/status": node_status(chain, 9, l1)}) as api:
        result = invoke("--api", api, "--rpc", chain.anvil.url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["posted_height"] == 4
    assert report["posted_state_height"] == 3
    assert report["posted_state_root"] == "0x" + chain.header(4).state_root.hex()
    assert report["committed_height"] == 9 and report["backlog"] == 5
    # The node has not posted: the gas is the last Committed event's receipt.
    assert (report["gas_per_posting"], report["gas_source"]) == (receipt["gasUsed"], "l1")
    assert report["commitments"].lower() == "0x" + chain.addresses.commitments.hex()
    assert report["epoch"] == 0
    assert {"inbox", "bridge", "l1_head", "l1_blocks_behind"} <= set(report)

    l1 = L1Status(enabled=True, gas_per_posting=61_000).document(9)
    with node_api({"/v1/status": node_status(chain, 9, l1)}) as api:
        result = invoke("--api", api, "--rpc", chain.anvil.url)
    assert result.exit_code == 0, result.output
    assert "61,000 (node)" in result.output and "backlog" in result.output


@requires_anvil
def test_unreachable_node_or_l1_is_a_clear_error(chain: L1Chain) -> None:
    dead = f"http://127.0.0.1:{free_loopback_port()}"
    result = invoke("--api", dead, "--rpc", chain.anvil.url)
    assert result.exit_code == 1 and "node unreachable at" in result.output
    address = "0x" + chain.addresses.commitments.hex()
    result = invoke("--rpc", dead, "--commitments", address)
    assert result.exit_code == 1 and "L1 unreachable at" in result.output
    result = invoke("--commitments", address)
    assert result.exit_code == 1 and "no L1 endpoint" in result.output
    result = invoke("--rpc", chain.anvil.url)
    assert result.exit_code == 1 and "no Commitments address" in result.output
