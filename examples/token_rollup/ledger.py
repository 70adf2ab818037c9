"""A tiny token rollup that follows its namespace on a seqnet chain.

Its transactions are seqnet transactions in the rollup's namespace whose
payload is JSON `{"from": "0x..", "to": "0x..", "amount": N}`. The seqnet
signature is the rollup's authentication: a transfer counts only if `from`
is the address that signed the transaction. Blocks come from
`sequencer_net.client.subscribe`, verified against the chain's genesis, so
the ledger never applies a transaction the validators did not finalize, and
never misses one.

After each block the ledger writes its balances and the next height to a
state file (write to a temporary file, fsync, rename), so a restarted ledger
resumes exactly where it stopped. The node list is used in turn: when the
node it reads from goes away, the subscription moves to the next one.

    python examples/token_rollup/ledger.py --dir .seqnet-testnet --state ledger.json

A block's namespace transactions are exactly what its batches carried, so a
transaction that two validators both batched can be ordered twice (the
sequencer executes it once and refuses the repeat as a used nonce). The ledger
applies the sequencer's nonce rule itself (a 64-wide window per sender,
`sequencer_net.execution.nonces`): each (sender, nonce) counts once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sequencer_net.execution.nonces import nonce_rejection, use_nonce
from sequencer_net.execution.records import NonceWindow
from sequencer_net.json_input import loads_bounded

NAMESPACE = 4242
INITIAL_SUPPLY = 1_000_000
MAX_AMOUNT = 2**128


@dataclass
class Ledger:
    """Balances (address hex -> units) and the next height to apply."""

    balances: dict[str, int]
    nonces: dict[str, NonceWindow] = field(default_factory=dict)
    next_height: int = 1
    applied: int = 0
    refused: int = 0
    log: list[str] = field(default_factory=list)

    @classmethod
    def genesis(cls, issuer: str) -> Ledger:
        return cls(balances={issuer.lower(): INITIAL_SUPPLY})

    @classmethod
    def load(cls, path: Path, issuer: str) -> Ledger:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls.genesis(issuer)
        return cls(
            balances={str(k): int(v) for k, v in data["balances"].items()},
            nonces={str(k): NonceWindow(int(v[0]), int(v[1])) for k, v in data["nonces"].items()},
            next_height=int(data["next_height"]),
            applied=int(data["applied"]),
            refused=int(data["refused"]),
        )

    def save(self, path: Path) -> None:
        """Atomic: a crash leaves the previous state or this one, never a mix."""
        document = {
            "next_height": self.next_height,
            "applied": self.applied,
            "refused": self.refused,
            "balances": dict(sorted(self.balances.items())),
            "nonces": {k: [w.highest, w.used] for k, w in sorted(self.nonces.items())},
        }
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(document, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def apply_block(self, block: Any, domain: Any) -> None:
        """Apply a VerifiedBlock's transfers in the chain's execution order (the
        verified order seed's; docs/rollups.md, "Execution order"); refused ones
        change nothing."""
        if block.height != self.next_height:
            raise RuntimeError(f"expected block {self.next_height}, got {block.height}")
        ordered = block.ordered_transactions
        if ordered is None:  # a verifier built without the chain's threshold keys
            raise RuntimeError("the block's order is unverified: verify with the genesis")
        for encoded in ordered:
            reason = self._apply(encoded, domain)
            if reason is None:
                self.applied += 1
            else:
                self.refused += 1
                self.log.append(f"block {block.height}: refused: {reason}")
        self.next_height = block.height + 1

    def _apply(self, encoded: bytes, domain: Any) -> str | None:
        from sequencer_net.mempool.transaction import (
            InvalidTransaction,
            decode_transaction,
            recover_sender,
        )

        try:
            tx = decode_transaction(encoded)
            sender = "0x" + recover_sender(tx, domain).hex()
            transfer = loads_bounded(tx.payload)
        except (InvalidTransaction, ValueError) as exc:
            return f"not a signed JSON transfer: {exc}"
        window = self.nonces.get(sender)
        replay = nonce_rejection(window, tx.nonce)
        if replay is not None:  # ordered before (a repeat), or far ahead
            return f"nonce {tx.nonce} of {sender}: {replay}"
        self.nonces[sender] = use_nonce(window, tx.nonce)
        if not isinstance(transfer, dict) or set(transfer) != {"from", "to", "amount"}:
            return "a transfer is {from, to, amount}"
        source, dest, amount = transfer["from"], transfer["to"], transfer["amount"]
        if not isinstance(source, str) or source.lower() != sender:
            return f"from is not the signer {sender}"
        if not (isinstance(dest, str) and len(dest) == 42 and dest.startswith("0x")):
            return "to is not a 0x address"
        try:
            bytes.fromhex(dest[2:])
        except ValueError:
            return "to is not a 0x address"
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount < MAX_AMOUNT:
            return "amount is not a positive integer"
        if self.balances.get(sender, 0) < amount:
            return f"{sender} holds {self.balances.get(sender, 0)}, less than {amount}"
        dest = dest.lower()
        self.balances[sender] -= amount
        self.balances[dest] = self.balances.get(dest, 0) + amount
        return None


def hold_state_lock(state_path: Path) -> Any:
    """An exclusive lock beside the state file, held while the process lives:
    two ledgers writing one state file would undo each other's blocks."""
    import fcntl

    lock = open(state_path.with_name(state_path.name + ".lock"), "w")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another ledger is using {state_path}") from None
    return lock


async def follow(
    urls: list[str],
    genesis: Any,
    state_path: Path,
    issuer: str,
    namespace: int = NAMESPACE,
    stop_at: int | None = None,
    retry: Any = None,
) -> Ledger:
    """Apply every block from the saved height on, saving after each; returns
    once block `stop_at` is applied (never, if None)."""
    from sequencer_net.client import subscribe

    ledger = Ledger.load(state_path, issuer)
    if stop_at is not None and ledger.next_height > stop_at:
        return ledger
    domain = genesis.domain()
    async for block in subscribe(
        urls, namespace=namespace, from_height=ledger.next_height, genesis=genesis, retry=retry
    ):
        ledger.apply_block(block, domain)
        ledger.save(state_path)
        for line in ledger.log:
            print(line, file=sys.stderr)
        ledger.log.clear()
        if block.transactions:
            print(
                f"block {block.height}: {len(block.transactions)} transaction(s); "
                f"balances {ledger.balances}",
                flush=True,
            )
        if stop_at is not None and block.height >= stop_at:
            break
    return ledger


def main() -> None:
    import argparse

    import trio

    from sequencer_net.home.genesis import load_genesis
    from sequencer_net.testnet.accounts import load_account_addresses
    from sequencer_net.testnet.network import GENESIS_FILE, Testnet

    parser = argparse.ArgumentParser(description="Follow the token rollup's namespace.")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(".seqnet-testnet"),
        help="the local testnet (its genesis and node URLs)",
    )
    parser.add_argument("--node", action="append", help="node API URL(s) instead of --dir's")
    parser.add_argument("--state", type=Path, default=Path("token-ledger.json"))
    parser.add_argument("--namespace", type=int, default=NAMESPACE)
    parser.add_argument(
        "--issuer", help="who holds the initial supply [default: the testnet's load account 0]"
    )
    args = parser.parse_args()
    net = Testnet.load(args.dir)
    genesis = load_genesis(args.dir / GENESIS_FILE)
    urls = args.node or [node.api_url for node in net.nodes]
    issuer = args.issuer or "0x" + load_account_addresses(net.manifest.load.seed, 1)[0].hex()
    lock = hold_state_lock(args.state)
    print(f"following namespace {args.namespace} on {len(urls)} node(s); state {args.state}")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the state file is already saved
        trio.run(follow, urls, genesis, args.state, issuer, args.namespace)
    lock.close()


if __name__ == "__main__":
    main()
