"""Real validator processes on 127.0.0.1 for end-to-end tests.

Every wait is bounded in time; every process started is stopped (SIGKILL if it
does not stop on SIGTERM) when the network is closed, which the fixture does
even when a test fails, and gets SIGTERM if the test process dies without
closing it (killed: `sequencer_net.parent_death`).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from consensus.crypto import PrivateKey, keccak256
from sequencer_net import parent_death
from sequencer_net.home.genesis import Genesis, LocalEpoch, make_local_genesis
from sequencer_net.home.setup import init_home
from sequencer_net.home.threshold import deal_network_key
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction

PORT_RANGE = (20_000, 32_000)
"""Below Linux's ephemeral range (32768+), so an outgoing connection's source
port cannot take a port between our choosing it and a node binding it."""


USER_LABELS = ("alice", "load", "mallory", "bob")
"""Test users funded at genesis (fees need a balance)."""


def _user_key(label: str) -> PrivateKey:
    return PrivateKey(keccak256(b"seqnet-test-user-" + label.encode()))


def _consecutive_free_ports(count: int) -> int:
    """A base port such that base..base+count-1 are free on 127.0.0.1 now."""
    rng = random.Random()  # not seeded: ports only need to differ between runs
    for _ in range(200):
        base = rng.randrange(PORT_RANGE[0], PORT_RANGE[1] - count)
        held: list[socket.socket] = []
        try:
            for p in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    raise RuntimeError("no run of free ports found")


@dataclass
class LocalNetwork:
    root: Path
    n: int
    genesis: Genesis
    secrets: list[bytes]
    procs: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    full_api_ports: dict[int, int] = field(default_factory=dict)
    """Full nodes (`node run --full`) by index n, n+1, ...: their API ports."""
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5.0))

    @classmethod
    def create(
        cls,
        root: Path,
        n: int = 4,
        view_timeout_ms: int = 1000,
        full_nodes: int = 0,
        encryption: bool = False,
        epochs: tuple[LocalEpoch, ...] = (),
        initial: tuple[int, ...] | None = None,
    ) -> LocalNetwork:
        """`full_nodes` full-node homes too (indices n, n+1, ...; start them with
        `start`); the validators then keep that many non-validator slots.
        `encryption`: a threshold key (t = f + 1, dealt from a fixed seed) in
        genesis and each validator's share in its home. `epochs`: later
        validator-set epochs of the genesis (members index the n validators);
        `initial`: epoch 0's members (all n by default)."""
        secrets = [keccak256(b"seqnet-test-validator-%d" % i) for i in range(n)]
        keys, shares = (
            deal_network_key(n, rng=random.Random(n).randbytes) if encryption else (None, [])
        )
        # p2p ports, then API ports, then full nodes' (p2p, API) pairs
        p2p_base = _consecutive_free_ports(2 * n + 2 * full_nodes)
        api_base = p2p_base + n
        genesis = make_local_genesis(
            secrets,
            base_p2p_port=p2p_base,
            base_api_port=api_base,
            view_timeout_ms=view_timeout_ms,
            # Every transaction pays a fee: the test users hold collateral for it.
            funded_accounts=[_user_key(label).address for label in USER_LABELS],
            threshold_keys=keys,
            epochs=epochs,
            initial=initial,
        )
        by_address = {v.address: v for v in genesis.members()}
        for i in range(n):
            v = by_address[PrivateKey(secrets[i]).address]
            init_home(
                root / f"node{i}",
                name=v.name,
                genesis=genesis,
                secret=secrets[i],
                p2p_port=v.p2p_port,
                api_port=v.api_port,
                max_non_validator_connections=full_nodes or None,
                key_share=shares[i] if shares else None,
            )
        network = cls(root, n, genesis, secrets)
        for k in range(full_nodes):
            p2p_port = p2p_base + 2 * n + 2 * k
            init_home(
                network.home(n + k),
                name=f"full{k}",
                genesis=genesis,
                p2p_port=p2p_port,
                api_port=p2p_port + 1,
            )
            network.full_api_ports[n + k] = p2p_port + 1
        return network

    def home(self, i: int) -> Path:
        return self.root / (f"node{i}" if i < self.n else f"full{i - self.n}")

    def url(self, i: int) -> str:
        if i in self.full_api_ports:
            return f"http://127.0.0.1:{self.full_api_ports[i]}"
        address = PrivateKey(self.secrets[i]).address
        (v,) = [m for m in self.genesis.members() if m.address == address]
        return f"http://{v.api_host}:{v.api_port}"

    # ---- processes --------------------------------------------------------------------

    def start(self, i: int) -> None:
        assert i not in self.procs or self.procs[i].poll() is not None, f"node{i} running"
        log = open(self.home(i) / "node.log", "ab")  # noqa: SIM115 - owned by the process
        self.procs[i] = parent_death.popen(
            [
                sys.executable,
                "-m",
                "sequencer_net.cli.main",
                "node",
                "run",
                "--home",
                str(self.home(i)),
                *(["--full"] if i in self.full_api_ports else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def start_all(self, indices: range | list[int] | None = None) -> None:
        for i in indices if indices is not None else range(self.n):
            self.start(i)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[i]
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            proc.wait(timeout=10)

    def stop(self, i: int) -> int | None:
        proc = self.procs.get(i)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def close(self) -> None:
        for i in list(self.procs):
            self.stop(i)
        self.client.close()

    def log_tail(self, i: int, lines: int = 30) -> str:
        path = self.home(i) / "node.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ---- queries ----------------------------------------------------------------------

    def status(self, i: int) -> dict[str, Any] | None:
        try:
            response = self.client.get(self.url(i) + "/v1/status", timeout=2.0)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def block_hash(self, i: int, height: int) -> str:
        response = self.client.get(f"{self.url(i)}/v1/blocks/{height}")
        assert response.status_code == 200, response.text
        return str(response.json()["hash"])

    def metric(self, i: int, name: str) -> float:
        text = self.client.get(self.url(i) + "/metrics").text
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "_total "):
                return float(line.split()[-1])
        raise KeyError(name)

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        logs = "\n".join(f"--- node{i}\n{self.log_tail(i)}" for i in self.procs)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")

    def height(self, i: int) -> int:
        status = self.status(i)
        return -1 if status is None else int(status["height"])

    def wait_height(self, nodes: list[int], height: int, timeout: float = 60.0) -> None:
        self.wait_for(
            f"nodes {nodes} at height >= {height}",
            lambda: all(self.height(i) >= height for i in nodes),
            timeout,
        )

    def assert_agree(self, nodes: list[int], up_to: int) -> None:
        """Identical block hashes at every height 1..up_to on every listed node."""
        for h in range(1, up_to + 1):
            hashes = {self.block_hash(i, h) for i in nodes}
            assert len(hashes) == 1, f"disagreement at height {h}: {hashes}"

    # ---- transactions -----------------------------------------------------------------

    def user(self, label: str) -> PrivateKey:
        if label not in USER_LABELS:
            raise ValueError(f"user {label!r} is not funded in the test genesis: add it")
        return _user_key(label)

    def signed(self, key: PrivateKey, nonce: int, payload: bytes, namespace: int = 7) -> bytes:
        """A transaction offering exactly the chain's required fee."""
        execution = self.genesis.execution
        fee = execution.fee_base + execution.fee_per_byte * len(payload)
        tx = sign_transaction(key, self.genesis.domain(), nonce, namespace, fee, payload)
        return encode_transaction(tx)
