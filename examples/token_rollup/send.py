"""Send a token transfer to the token rollup (examples/token_rollup/ledger.py).

Signs `{"from", "to", "amount"}` with one of a local testnet's load accounts
(funded in genesis, so it can pay the sequencer's fee) as a transaction in
the rollup's namespace, and submits it:

    python examples/token_rollup/send.py --account 0 --to 0x...20 bytes... --amount 25
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ledger import NAMESPACE


def main() -> None:
    from sequencer_net.client import (
        FeeSchedule,
        SeqnetApiError,
        SeqnetClient,
        signed_transaction,
    )
    from sequencer_net.home.genesis import load_genesis
    from sequencer_net.testnet.accounts import load_account_keys
    from sequencer_net.testnet.network import GENESIS_FILE, Testnet

    parser = argparse.ArgumentParser(description="Send a token transfer.")
    parser.add_argument("--dir", type=Path, default=Path(".seqnet-testnet"))
    parser.add_argument("--account", type=int, default=0, help="load account index (signer)")
    parser.add_argument("--to", required=True, help="0x address of the recipient")
    parser.add_argument("--amount", type=int, required=True)
    parser.add_argument("--namespace", type=int, default=NAMESPACE)
    args = parser.parse_args()

    net = Testnet.load(args.dir)
    genesis = load_genesis(args.dir / GENESIS_FILE)
    key = load_account_keys(net.manifest.load.seed, args.account + 1)[args.account]
    sender = "0x" + key.address.hex()
    body = json.dumps({"from": sender, "to": args.to, "amount": args.amount}).encode()
    for testnet_node in net.nodes:  # the first node that answers
        try:
            with SeqnetClient(testnet_node.api_url, timeout=5.0) as node:
                nonce = int(node.account(sender)["next_nonce"])
                tx = signed_transaction(
                    key,
                    genesis.domain(),
                    nonce,
                    args.namespace,
                    body,
                    fees=FeeSchedule.of_genesis(genesis),
                )
                tx_hash = node.submit(tx)
        except SeqnetApiError as exc:
            if exc.retryable:
                continue
            raise SystemExit(f"{testnet_node.api_url} refused the transfer: {exc}") from exc
        print(f"{sender} -> {args.to}: {args.amount} (nonce {nonce}) tx {tx_hash}")
        return
    raise SystemExit("no node of the testnet answered")


if __name__ == "__main__":
    main()
