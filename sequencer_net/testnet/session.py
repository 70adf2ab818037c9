"""A foreground testnet run: load, perturbations and the live view, until stopped.

`run_session` drives a started `Testnet` under one trio nursery: a status
poller per node, a markets poller (one node's /v1/markets), an L1 poller
(the testnet's anvil, when it has one), the load generator, the perturbation
schedule, the duration timer and (in a terminal) the signal watcher;
cancelling the nursery (Ctrl-C, SIGTERM, `duration_s`) stops them all. The
caller then stops the nodes; `summarize` checks that the nodes agree on the
block at their common height.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from rich.console import Console, RenderableType
from rich.live import Live

from sequencer_net.client import AsyncSeqnetClient, SeqnetApiError, SeqnetClient
from sequencer_net.home.local_markets import local_markets, market_names
from sequencer_net.testnet.accounts import (
    LOAD_NONCES_FILE,
    OPERATOR_SLOT,
    read_next_nonces,
    write_next_nonces,
)
from sequencer_net.testnet.live_view import (
    L1Row,
    NodeRow,
    RateWindow,
    StatusSample,
    l1_panel,
    l1_row,
    market_rows,
    markets_panel,
    node_row,
    render_view,
)
from sequencer_net.testnet.load import LoadConfig, LoadGenerator, TxSigner
from sequencer_net.testnet.network import Testnet
from sequencer_net.testnet.schedule import next_perturbation_at, perturbations_due

STATUS_POLL_S = 0.5
STATUS_POLL_TIMEOUT_S = 1.0
MARKETS_POLL_S = 1.0
"""The markets panel polls one node: prices move once a second."""
VIEW_REFRESH_S = 0.5
L1_POLL_S = 1.0
"""The L1 panel reads the chain once per (default) L1 block time."""


@dataclass
class SessionState:
    """What the view shows; written by the session's tasks, read by the renderer."""

    net: Testnet
    started_at: float = 0.0  # trio clock
    statuses: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    windows: dict[int, RateWindow] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    load: LoadGenerator | None = None
    on_event: Callable[[str], None] | None = None
    markets: dict[str, Any] | None = None
    markets_source: str | None = None  # the node whose /v1/markets is shown
    market_names: dict[int, str] = field(default_factory=dict)
    width: int = 80
    l1_chain: dict[str, Any] | None = None  # the last L1Snapshot.to_json()
    attack: dict[str, Any] | None = None  # the fork-attack report (manifest equivocators)

    def elapsed_s(self) -> float:
        return trio.current_time() - self.started_at

    def log(self, text: str) -> None:
        self.events.append(f"t+{self.elapsed_s():6.1f}s  {text}")
        if self.on_event is not None:
            self.on_event(self.events[-1])

    def rows(self) -> list[NodeRow]:
        rows = []
        for index, node in enumerate(self.net.nodes):
            running = node.is_running()
            rows.append(
                node_row(
                    node.name,
                    self.statuses.get(index),
                    self.windows.setdefault(index, RateWindow()),
                    running=running,
                    paused=node.paused,
                    connected=node.connected,
                    pid=node.pid if running else None,
                )
            )
        return rows

    def l1_rows(self) -> list[L1Row | None]:
        return [l1_row(node.name, self.statuses.get(i)) for i, node in enumerate(self.net.nodes)]

    def render(self) -> RenderableType:
        manifest = self.net.manifest
        title = f"seqnet testnet: {manifest.network.validators} validators"
        if manifest.description:
            title += f" - {manifest.description}"
        load = self.load.stats.summary(trio.current_time()) if self.load else None
        return render_view(
            title,
            self.elapsed_s(),
            self.rows(),
            manifest.network.validators,
            load,
            self.load.config.rate if self.load else 0.0,
            self.events,
            markets=markets_panel(
                market_rows(self.markets, self.market_names), self.markets_source
            ),
            width=self.width,
            l1=None
            if self.net.l1 is None
            else l1_panel(self.net.l1.rpc_url, self.l1_chain, self.l1_rows()),
        )


async def _poll_node(state: SessionState, index: int) -> None:
    node = state.net.nodes[index]
    window = state.windows.setdefault(index, RateWindow())
    async with AsyncSeqnetClient(node.api_url, timeout=STATUS_POLL_TIMEOUT_S) as client:
        while True:
            try:
                status: dict[str, Any] | None = await client.status()
            except SeqnetApiError:
                status = None
            state.statuses[index] = status
            if status is not None:
                window.add(
                    StatusSample(
                        trio.current_time(),
                        int(status.get("height") or 0),
                        int(status.get("committed_txs") or 0),
                    )
                )
            await trio.sleep(STATUS_POLL_S)


async def _poll_markets(state: SessionState) -> None:
    """One node's /v1/markets: the node that answered last, else the next one up."""
    nodes = state.net.nodes
    current = 0
    while True:
        for step in range(len(nodes)):
            node = nodes[(current + step) % len(nodes)]
            try:
                async with AsyncSeqnetClient(node.api_url, timeout=STATUS_POLL_TIMEOUT_S) as client:
                    state.markets = await client.markets()
            except SeqnetApiError:
                continue
            state.markets_source = node.name
            current = (current + step) % len(nodes)
            break
        else:
            state.markets, state.markets_source = None, None
        await trio.sleep(MARKETS_POLL_S)


async def _poll_l1(state: SessionState) -> None:
    """The testnet's L1 as its contracts tell it (blocking RPCs, in a thread)."""
    from sequencer_net.testnet.l1 import L1Observer

    l1 = state.net.l1
    assert l1 is not None
    observer = await trio.to_thread.run_sync(L1Observer, l1.rpc_url, l1.addresses)
    while True:
        snapshot = await trio.to_thread.run_sync(observer.read)
        state.l1_chain = snapshot.to_json()
        await trio.sleep(L1_POLL_S)


def testnet_genesis_time_s(net: Testnet) -> int | None:
    """The genesis time (unix s) in the testnet's genesis.json, if it is readable."""
    from sequencer_net.home.genesis import GenesisError, load_genesis
    from sequencer_net.testnet.network import GENESIS_FILE

    try:
        return load_genesis(net.directory / GENESIS_FILE).execution.genesis_time
    except (GenesisError, OSError):
        return None


async def _apply_perturbations(state: SessionState) -> None:
    perturbations = state.net.manifest.perturbations
    applied = 0
    while (at_s := next_perturbation_at(perturbations, applied)) is not None:
        await trio.sleep_until(state.started_at + at_s)
        due, applied = perturbations_due(perturbations, applied, state.elapsed_s())
        for perturbation in due:
            # Restarts wait for the old process to exit: keep the view alive meanwhile.
            outcome = await trio.to_thread.run_sync(state.net.apply, perturbation)
            state.log(f"[{perturbation.action}] {outcome}")


async def _run_fork_attack(state: SessionState, cancel_scope: trio.CancelScope) -> None:
    """The fork-attack scenario (sequencer_net.testnet.fork), in a thread; the
    session ends when it does."""
    import threading

    from sequencer_net.testnet.fork import ForkReport, run_fork_attack

    stop = threading.Event()
    token = trio.lowlevel.current_trio_token()

    def log(text: str) -> None:
        # After the session is over, the report alone keeps the steps.
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(state.log, text, trio_token=token)

    def attack() -> ForkReport:
        return run_fork_attack(state.net, log=log, stop=stop)

    try:
        # Abandoned on cancel: `stop` then ends the thread at its next wait.
        report = await trio.to_thread.run_sync(attack, abandon_on_cancel=True)  # type: ignore[call-arg]
    finally:
        stop.set()
    state.attack = report.to_json()
    cancel_scope.cancel()


async def _run_load(state: SessionState) -> None:
    assert state.load is not None
    config = state.load.config
    state.log(
        f"load: {config.rate:g} tx/s, {config.mix} mix, from {config.accounts} accounts "
        f"(seed {config.seed})"
    )
    await state.load.run()


async def _refresh_view(view: Live, state: SessionState) -> None:
    # Refreshed from this task, not rich's thread: rendering reads the trio clock.
    while True:
        view.update(state.render(), refresh=True)
        await trio.sleep(VIEW_REFRESH_S)


async def _stop_on_signal(cancel_scope: trio.CancelScope, state: SessionState) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            state.log(f"{signal.Signals(signum).name}: stopping")
            cancel_scope.cancel()
            return


async def _stop_after(cancel_scope: trio.CancelScope, state: SessionState, seconds: float) -> None:
    await trio.sleep(seconds)
    state.log(f"duration {seconds:g} s reached: stopping")
    cancel_scope.cancel()


async def run_session(
    net: Testnet,
    *,
    signer: TxSigner | None,
    load_rate: float | None = None,
    duration_s: float | None = None,
    console: Console | None = None,
    live: bool = True,
    handle_signals: bool = True,
    on_event: Callable[[str], None] | None = None,
) -> SessionState:
    """Run load, perturbations and the view until cancelled, a signal or `duration_s`.

    `signer` None (or a rate of 0) runs without load. Load accounts continue
    from the nonces saved in the testnet directory and save theirs at the end.
    """
    state = SessionState(
        net=net,
        started_at=trio.current_time(),
        on_event=on_event,
        market_names=market_names(local_markets(0)),
        width=console.width if console is not None else 80,
    )
    manifest = net.manifest
    rate = manifest.load.rate if load_rate is None else load_rate
    nonces_path = net.directory / LOAD_NONCES_FILE
    if signer is not None and rate > 0:
        config = LoadConfig.of_spec(
            manifest.load, rate=rate, genesis_time_s=testnet_genesis_time_s(net)
        )
        state.load = LoadGenerator(
            [node.api_url for node in net.nodes],
            config,
            signer,
            first_nonces=read_next_nonces(nonces_path, config.seed, config.accounts),
            operator_nonce=read_next_nonces(nonces_path, config.seed, 1, OPERATOR_SLOT)[0],
        )
    duration = duration_s if duration_s is not None else manifest.duration_s
    state.log(f"network committing; {len(manifest.perturbations)} perturbations scheduled")
    view = Live(state.render(), console=console, auto_refresh=False) if live else None
    try:
        if view is not None:
            view.start()
        async with trio.open_nursery() as nursery:
            if view is not None:
                nursery.start_soon(_refresh_view, view, state)
            for index in range(len(net.nodes)):
                nursery.start_soon(_poll_node, state, index)
            nursery.start_soon(_poll_markets, state)
            if net.l1 is not None:
                nursery.start_soon(_poll_l1, state)
            nursery.start_soon(_apply_perturbations, state)
            if state.load is not None:
                nursery.start_soon(_run_load, state)
            if manifest.network.equivocators and net.l1 is not None:
                nursery.start_soon(_run_fork_attack, state, nursery.cancel_scope)
            if duration is not None:
                nursery.start_soon(_stop_after, nursery.cancel_scope, state, duration)
            if handle_signals:
                nursery.start_soon(_stop_on_signal, nursery.cancel_scope, state)
    finally:
        if view is not None:
            view.stop()
        if state.load is not None:
            seed = state.load.config.seed
            write_next_nonces(nonces_path, seed, state.load.next_nonces())
            write_next_nonces(nonces_path, seed, [state.load.next_operator_nonce()], OPERATOR_SLOT)
    return state


def block_hash_at(api_url: str, height: int) -> str | None:
    try:
        with SeqnetClient(api_url, timeout=2.0) as client:
            block = client.block(height)
    except SeqnetApiError:
        return None
    for key in ("hash", "block_hash"):
        value = block.get(key)
        if isinstance(value, str):
            return value
    header = block.get("header")
    if isinstance(header, dict) and isinstance(header.get("hash"), str):
        return str(header["hash"])
    return None


def agreement(net: Testnet, statuses: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Do the answering nodes hold the same block at their highest common height?"""
    answered = [
        (node, status)
        for node, status in zip(net.nodes, statuses, strict=True)
        if status is not None and isinstance(status.get("height"), int)
    ]
    if not answered:
        return {"height": None, "agree": None, "hashes": {}}
    height = min(status["height"] for _, status in answered)
    if height <= 0:
        return {"height": height, "agree": None, "hashes": {}}
    hashes = {node.name: block_hash_at(node.api_url, height) for node, _ in answered}
    known = {h for h in hashes.values() if h is not None}
    return {"height": height, "agree": len(known) == 1 if known else None, "hashes": hashes}


def summarize(state: SessionState, elapsed_s: float) -> dict[str, Any]:
    """The final report, taken while the nodes still run (before `stop`)."""
    net = state.net
    statuses = net.statuses()
    nodes = []
    for node, status in zip(net.nodes, statuses, strict=True):
        nodes.append(
            {
                "name": node.name,
                "height": status.get("height") if status else None,
                "last_hash": status.get("last_hash") if status else None,
                "state_root": status.get("state_root") if status else None,
                "committed_txs": status.get("committed_txs") if status else None,
                "up": status is not None,
                "restarts": node.restarts,
            }
        )
    return {
        "elapsed_s": round(elapsed_s, 1),
        "nodes": nodes,
        "agreement": agreement(net, statuses),
        "load": state.load.stats.summary() if state.load else None,
        "markets": state.markets,
        "l1": None
        if net.l1 is None
        else {
            "chain": state.l1_chain,
            "nodes": {
                node.name: status.get("l1") if status else None
                for node, status in zip(net.nodes, statuses, strict=True)
            },
        },
        "attack": state.attack,
        **(_attack_fields(state.attack) if net.manifest.network.equivocators else {}),
        "events": list(state.events),
        "directory": str(net.directory),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _attack_fields(attack: dict[str, Any] | None) -> dict[str, Any]:
    """The fork attack's outcome at the top of the summary (None: it did not finish)."""
    keys = ("frozen", "evidence_submitted", "fork_withdrawals_paid", "escape_hatch_paid")
    return {key: None if attack is None else attack[key] for key in keys}
