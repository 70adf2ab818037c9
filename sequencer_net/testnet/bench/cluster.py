"""A benchmark network: fresh, in a temporary directory, always stopped.

`bench_network` writes a genesis funding the benchmark's account pool and one
home per validator, starts one `seqnet node run` process each (on 127.0.0.1,
ports below the ephemeral range; or each in its own network namespace with
`--wan-delay-ms`), waits until every node has committed a block, and yields.
On the way out, whatever happened (an error, Ctrl-C, SIGTERM), it stops every
process it started (SIGTERM, then SIGKILL), removes the namespaces and
bridges, and deletes the directory unless asked to keep it. SIGINT and
SIGTERM are held back while it cleans up, so a second Ctrl-C cannot leave
processes behind.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from consensus.encoding import Domain
from sequencer_net.client import FeeSchedule
from sequencer_net.home.genesis import load_genesis
from sequencer_net.testnet.bench.limits import (
    ACCOUNT_POOL,
    PORT_RANGE,
    READY_TIMEOUT_S,
    STOP_GRACE_S,
)
from sequencer_net.testnet.bench.wan import WanLayout, WanNetwork, wan_homes_writer
from sequencer_net.testnet.manifest import NO_L1, LoadSpec, Manifest, NetworkSpec
from sequencer_net.testnet.network import (
    DEFAULT_HOST,
    GENESIS_FILE,
    NODE_COMMAND_TEMPLATE,
    Testnet,
    TestnetError,
    check_ports_free,
    record_testnet,
    start_testnet,
)
from sequencer_net.testnet.processes import is_our_process

WAN_BASE_PORT = 26600
"""In WAN mode every node has its own addresses, so the usual ports are free."""


class CleanupIncomplete(RuntimeError):
    """Something the benchmark started could not be removed."""


@dataclass(slots=True)
class BenchNetwork:
    net: Testnet
    domain: Domain
    fees: FeeSchedule
    genesis_time_s: int
    wan: WanNetwork | None = None
    leftovers: list[str] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [node.api_url for node in self.net.nodes]

    @property
    def pids(self) -> list[int]:
        return [node.pid for node in self.net.nodes if node.pid is not None]

    @property
    def directory(self) -> Path:
        return self.net.directory


def free_base_port(validators: int, host: str = DEFAULT_HOST) -> int:
    """A base port whose p2p and API ports are all free on `host` now."""
    rng = random.Random()
    low, high = PORT_RANGE
    for _ in range(200):
        base = rng.randrange(low, high - 200, 200)
        try:
            check_ports_free(host, base, validators)
        except TestnetError:
            continue
        return base
    raise TestnetError(f"no free port range found in {low}-{high}")


def bench_manifest(validators: int, seed: int, accounts: int = ACCOUNT_POOL) -> Manifest:
    """The benchmark's network: no L1, so it measures the sequencer alone."""
    return Manifest(
        network=NetworkSpec(validators=validators),
        load=LoadSpec(rate=0, accounts=accounts, seed=seed),
        l1=NO_L1,
        source="<seqnet bench>",
    )


@contextmanager
def held_signals() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (then they are delivered)."""
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _start_in_namespaces(
    directory: Path, manifest: Manifest, wan: WanNetwork, base_port: int
) -> Testnet:
    """What `start_testnet` does, with each node started inside its namespace."""
    specs = wan_homes_writer(wan.layout)(directory, manifest, base_port, DEFAULT_HOST)
    return record_testnet(
        directory, manifest, specs, NODE_COMMAND_TEMPLATE, STOP_GRACE_S, die_with_starter=True
    )


@contextmanager
def bench_network(
    validators: int,
    *,
    seed: int = 0,
    accounts: int = ACCOUNT_POOL,
    keep: bool = False,
    wan_delay_ms: float | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
    echo: Callable[[str], None] = lambda text: None,
) -> Iterator[BenchNetwork]:
    directory = Path(tempfile.mkdtemp(prefix=f"seqnet-bench-n{validators}-"))
    manifest = bench_manifest(validators, seed, accounts)
    wan = (
        None
        if wan_delay_ms is None
        else WanNetwork(WanLayout(validators, wan_delay_ms, tag=os.getpid()))
    )
    net: Testnet | None = None
    try:
        if wan is not None:
            wan.create()
            echo(
                f"  {validators} network namespaces, {wan_delay_ms:g} ms one-way delay "
                "between validators"
            )
            started = net = _start_in_namespaces(directory, manifest, wan, WAN_BASE_PORT)
            for index in range(validators):
                wan.run_inside(index, partial(started.start_node, index))
        else:
            net = start_testnet(
                directory,
                manifest=manifest,
                base_port=free_base_port(validators),
                ready_timeout_s=ready_timeout_s,
                stop_grace_s=STOP_GRACE_S,
                fresh=True,
                wait=False,
                die_with_starter=True,  # killed, the benchmark takes its nodes with it
            )
        net.wait_until_committing(ready_timeout_s)
        genesis = load_genesis(directory / GENESIS_FILE)
        yield BenchNetwork(
            net,
            genesis.domain(),
            FeeSchedule.of_genesis(genesis),
            genesis.genesis_time_ms // 1000,
            wan,
        )
    finally:
        with held_signals():
            leftovers = _clean_up(net, wan, directory, keep)
        if leftovers:
            raise CleanupIncomplete("could not remove: " + ", ".join(leftovers))


def _clean_up(
    net: Testnet | None, wan: WanNetwork | None, directory: Path, keep: bool
) -> list[str]:
    """Stop the nodes, remove namespaces and bridges, delete the directory;
    return what is still there."""
    leftovers = []
    if net is not None:
        net.stop(grace_s=STOP_GRACE_S)
        leftovers += [
            f"{node.name} (pid {node.pid})"
            for node in net.nodes
            if node.identity is not None and is_our_process(node.identity)
        ]
    if wan is not None:
        leftovers += wan.destroy()
    if not keep and not leftovers:
        shutil.rmtree(directory, ignore_errors=True)
    return leftovers


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to raise for a nursery's group: KeyboardInterrupt if any task
    saw one (so Ctrl-C reads as Ctrl-C), else the first error."""
    leaves: list[BaseException] = []
    todo: list[BaseException] = [group]
    while todo:
        exc = todo.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            todo.extend(exc.exceptions)
        else:
            leaves.append(exc)
    for leaf in leaves:
        if isinstance(leaf, KeyboardInterrupt):
            return leaf
    return leaves[0]
