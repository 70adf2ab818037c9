"""A real 4-validator testnet running the DEX mix clears auctions (real node processes).

`start_testnet` writes the genesis `testnet up` writes (the markets, funded
traders and market operator), the foreground session runs the load and the
markets poller for a few seconds, then every node is asked what it executed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import trio

from sequencer_net.cli.testnet import testnet_domain as domain_of
from sequencer_net.client import SeqnetClient
from sequencer_net.testnet.accounts import load_account_addresses
from sequencer_net.testnet.load import transaction_signer
from sequencer_net.testnet.manifest import NO_L1, Manifest
from sequencer_net.testnet.network import start_testnet
from sequencer_net.testnet.session import run_session, summarize

from .conftest import free_base_port

LOAD_S = 6.0


def test_a_four_node_testnet_with_the_dex_mix_clears_auctions(testnet_dir: Path) -> None:
    manifest = Manifest().with_overrides(validators=4, rate=100.0, mix="dex")
    manifest = replace(manifest, load=replace(manifest.load, accounts=20), l1=NO_L1)
    net = start_testnet(testnet_dir, manifest=manifest, base_port=free_base_port(4))
    try:
        signer = transaction_signer(domain_of(net))

        async def session() -> object:
            return await run_session(
                net, signer=signer, duration_s=LOAD_S, live=False, handle_signals=False
            )

        state = trio.run(session)
        summary = summarize(state, LOAD_S)  # type: ignore[arg-type]
        assert summary["agreement"]["agree"] is True
        assert summary["load"]["accepted"] > 0
        # The session's markets poller saw the market too.
        assert summary["markets"] is not None and len(summary["markets"]["markets"]) == 4
        with SeqnetClient(net.nodes[1].api_url, timeout=5.0) as node:
            markets = {m["id"]: m for m in node.markets()["markets"]}
            maker = node.account(load_account_addresses(manifest.load.seed, 1)[0])
    finally:
        net.stop(grace_s=5.0)
    assert all(m["oracle_price"] is not None for m in markets.values())
    assert sum(m["auctions_cleared"] for m in markets.values()) > 0
    assert any(float(m["volume"]) > 0 for m in markets.values())
    assert float(markets[1]["open_interest"]) > 0 or float(markets[2]["open_interest"]) > 0
    # Trader 0 is a maker: its quotes rest on the books or it already traded.
    (sub0, *_) = maker["subaccounts"]
    assert sub0["open_orders"] > 0 or sub0["positions"]
