"""The `seqnet` command line: `seqnet <noun> <verb>`.

Subcommands live in their own modules and are imported only when invoked, so
`seqnet --help` and light commands like `seqnet price` stay fast (libp2p and
web3 each cost most of a second to import).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from sequencer_net import __version__

# name -> ("module", "attribute", "one-line help shown by `seqnet --help`")
COMMANDS: dict[str, tuple[str, str, str]] = {
    "sim": (
        "sequencer_net.cli.sim",
        "sim",
        "Run the consensus core in the deterministic simulator.",
    ),
    "price": (
        "sequencer_net.cli.price",
        "price",
        "Price derivatives with the engine's fixed-point code.",
    ),
    "bench": (
        "sequencer_net.cli.bench",
        "bench",
        "Network benchmark (tx/s, latency, vs. one validator); engine benchmarks.",
    ),
    "testnet": (
        "sequencer_net.cli.testnet",
        "testnet",
        "Run a local multi-node testnet: up, status, down.",
    ),
    "load": (
        "sequencer_net.cli.load",
        "load",
        "Submit signed transactions at a fixed rate to a testnet or nodes.",
    ),
    "keys": (
        "sequencer_net.cli.keys",
        "keys",
        "Create and inspect validator key files.",
    ),
    "node": (
        "sequencer_net.cli.node",
        "node",
        "Set up (init) and run a validator node.",
    ),
    "trade": (
        "sequencer_net.cli.trade",
        "trade",
        "Trade from a terminal: markets, positions, deposit, order, cancel.",
    ),
    "subscribe": (
        "sequencer_net.cli.subscribe",
        "subscribe",
        "Print a rollup namespace's verified blocks as they finalize.",
    ),
    "l1": (
        "sequencer_net.cli.l1",
        "l1",
        "The L1 side: posted commitments, backlog, posting gas.",
    ),
    "watch": (
        "sequencer_net.cli.watch",
        "watch",
        "Watch nodes and the L1; submit equivocation evidence to Commitments.",
    ),
    "genesis": (
        "sequencer_net.cli.genesis",
        "genesis",
        "Build and check a network's genesis file.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the table so listing commands imports nothing.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqnet")
def cli() -> None:
    """seqnet: a decentralized shared sequencer for derivatives rollups.

    Validators order transactions with a BFT consensus, clear derivatives
    orders in per-block batch auctions and execute them deterministically.
    Run `seqnet COMMAND --help` for the details of each command.
    """


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv, prog_name="seqnet")


if __name__ == "__main__":
    main()
