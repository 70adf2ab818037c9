"""`seqnet bench` without a subcommand: the network benchmark.

The click options live on the `bench` group (sequencer_net/cli/bench.py);
this module runs the benchmark they describe and prints its report, and is
imported only when the benchmark runs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from sequencer_net.testnet.bench.cluster import CleanupIncomplete
from sequencer_net.testnet.bench.drive import ObserverError
from sequencer_net.testnet.bench.report import summary_text
from sequencer_net.testnet.bench.run import BenchOptions, run_benchmark
from sequencer_net.testnet.bench.traffic import AccountPoolExhausted
from sequencer_net.testnet.bench.wan import WanUnavailable, check_prerequisites, probe_netem
from sequencer_net.testnet.network import TestnetError

INTERRUPTED_EXIT = 130


@contextmanager
def sigterm_as_sigint() -> Iterator[None]:
    """SIGTERM stops the benchmark the way Ctrl-C does (trio turns SIGINT into a
    KeyboardInterrupt at a safe point; outside trio Python does), so the same
    clean-up runs."""

    def forward(signum: int, frame: Any) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_network_bench(options: BenchOptions, as_json: bool) -> None:
    def echo(text: str) -> None:
        click.echo(text, err=as_json)

    try:
        if options.wan_delay_ms is not None:
            check_prerequisites()
            if options.wan_delay_ms > 0:
                probe_netem()
        with sigterm_as_sigint():
            report = run_benchmark(options, echo)
    except KeyboardInterrupt:
        click.echo("interrupted: every process the benchmark started is stopped", err=True)
        sys.exit(INTERRUPTED_EXIT)
    except (
        WanUnavailable,
        TestnetError,
        AccountPoolExhausted,
        ObserverError,
        CleanupIncomplete,
    ) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo("")
        click.echo(summary_text(report))
