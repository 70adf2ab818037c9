"""A local L1 for development and tests: an `anvil` child process on 127.0.0.1.

    with Anvil.start(chain_id=31337) as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))

The binary is `node_modules/.bin/anvil` at the repository root (installed by
scripts/setup.sh from package-lock.json), or the path in $SEQNET_ANVIL. The
child listens on a free loopback port, is ready when it answers `eth_chainId`
(waited for at most `ready_timeout_s`), and is stopped (SIGTERM, then SIGKILL)
when the context exits, on errors too, and gets SIGTERM if this process dies
without stopping it (`sequencer_net.parent_death`). Without `block_time_s`,
anvil mines one block per transaction.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from sequencer_net import parent_death
from sequencer_net.l1.artifacts import REPO_ROOT

ANVIL_ENV: Final = "SEQNET_ANVIL"
DEFAULT_ANVIL: Final = REPO_ROOT / "node_modules" / ".bin" / "anvil"
LOOPBACK: Final = "127.0.0.1"
DEFAULT_CHAIN_ID: Final = 31337
# anvil answers in ~30 ms; the bound covers a loaded 2-core machine.
READY_TIMEOUT_S: Final = 15.0
READY_POLL_S: Final = 0.02
STOP_TIMEOUT_S: Final = 5.0
# A free port can be taken between our probe and anvil's bind: try a few.
START_ATTEMPTS: Final = 3

# anvil's well-known dev accounts (mnemonic "test test ... junk"): local chains only.
DEV_PRIVATE_KEYS: Final = (
    bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
    bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"),
    bytes.fromhex("7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"),
)


class AnvilError(RuntimeError):
    """anvil is missing, exited, or did not answer in time."""


def anvil_binary() -> Path:
    """$SEQNET_ANVIL if set, else the repository's node_modules/.bin/anvil."""
    configured = os.environ.get(ANVIL_ENV)
    return Path(configured) if configured else DEFAULT_ANVIL


def anvil_available() -> bool:
    path = anvil_binary()
    return path.is_file() and os.access(path, os.X_OK)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class Anvil:
    """One running anvil; use `Anvil.start(...)` as a context manager."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, chain_id: int) -> None:
        self.process = process
        self.port = port
        self.chain_id = chain_id

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @classmethod
    def start(
        cls,
        *,
        chain_id: int = DEFAULT_CHAIN_ID,
        block_time_s: int | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
        extra_args: Sequence[str] = (),
    ) -> Anvil:
        """Start anvil and return once it answers eth_chainId with `chain_id`.

        `extra_args` go to anvil as given (e.g. ["--steps-tracing"]).
        """
        binary = anvil_binary()
        if not binary.is_file():
            raise AnvilError(f"no anvil at {binary}: run scripts/setup.sh or set ${ANVIL_ENV}")
        failure = "anvil did not start"
        for _ in range(START_ATTEMPTS):
            port = free_loopback_port()
            args = [str(binary), "--host", LOOPBACK, "--port", str(port)]
            args += ["--chain-id", str(chain_id), "--silent"]
            if block_time_s is not None:
                args += ["--block-time", str(block_time_s)]
            args += extra_args
            with tempfile.TemporaryFile() as stderr:
                process = parent_death.popen(
                    args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
                )
                anvil = cls(process, port, chain_id)
                try:
                    if anvil._wait_ready(ready_timeout_s):
                        return anvil
                except BaseException:
                    anvil.stop()
                    raise
                anvil.stop()
                stderr.seek(0)
                failure = stderr.read().decode(errors="replace").strip()[-2000:] or failure
        raise AnvilError(f"anvil did not become ready: {failure}")

    def _wait_ready(self, timeout_s: float) -> bool:
        """True once eth_chainId answers `chain_id`; False if anvil exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                answer = self.rpc("eth_chainId", [])
            except (OSError, urllib.error.URLError, ValueError):
                time.sleep(READY_POLL_S)
                continue
            if int(answer, 16) != self.chain_id:
                raise AnvilError(f"anvil on port {self.port} answers chain id {answer}")
            return True
        return False

    def rpc(self, method: str, params: list[object]) -> str:
        """One JSON-RPC call; returns the result (raises ValueError on an RPC error)."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        request = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=2.0) as response:
            reply = json.loads(response.read())
        if "error" in reply:
            raise ValueError(f"{method}: {reply['error']}")
        return reply["result"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Terminate the child and reap it (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
