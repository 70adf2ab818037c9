"""An in-process API over a real mempool and a real store (no node, no sockets).

`ApiWorld.app(options)` builds the Starlette app exactly as the node does;
tests talk to it through httpx.ASGITransport (trio) or Starlette's TestClient.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rocksdict import WriteBatch
from starlette.applications import Starlette

from consensus.crypto import keccak256
from consensus.messages import Block, Certificate, VoteKind
from sequencer_net.api.intake import Intake
from sequencer_net.api.server import ApiContext, ApiOptions, build_app
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.metrics import Metrics
from sequencer_net.storage.group_commit import GroupCommit
from sequencer_net.storage.node_store import NodeStore
from tests.mempool.factories import DOMAIN, signed

GENESIS = keccak256(b"api test genesis")
ADMIN_TOKEN = "a" * 24 + "0123456789abcdef0123456789abcdef"
COMMITTED_TX = signed(sender=5, nonce=0, payload=b"committed at height 1")


@dataclass
class ApiWorld:
    store: NodeStore
    mempool: Mempool
    metrics: Metrics = field(default_factory=Metrics)
    connected: list[bool] = field(default_factory=list)

    def intake(
        self,
        *,
        write: Callable[[WriteBatch], None] | None = None,
        client_rate: float = 1e9,
        client_burst: float = 1e9,
        clock: Callable[[], float] = time.monotonic,
    ) -> Intake:
        """The intake over this world's mempool and store; `write` replaces the
        store's synced write. No group-commit task runs in these tests: each
        write is its own fsync."""
        return Intake(
            mempool=self.mempool,
            verifier=VerifierPool(DOMAIN, threads=2),
            group=GroupCommit(write or self.store.write_synced),
            store=self.store,
            metrics=self.metrics,
            accepted_at={},
            client_rate=client_rate,
            client_burst=client_burst,
            clock=clock,
        )

    def context(self) -> ApiContext:
        return ApiContext(
            mempool=self.mempool,
            intake=self.intake(),
            store=self.store,
            metrics=self.metrics,
            status=lambda: {"name": "api-test", "height": self.store.tip()[0]},
            set_connected=self.connected.append,
        )

    def app(self, options: ApiOptions | None = None) -> Starlette:
        return build_app(self.context(), options or ApiOptions())


def commit_one_block(store: NodeStore) -> None:
    """Height 1 with one transaction, so /v1/blocks/1 and a committed hash exist."""
    block = Block(view=1, height=1, parent=GENESIS, proposer=0, payload=b"\x92\x00\x90")
    finalization = Certificate(
        kind=VoteKind.FINALIZE, view=1, height=1, block=block.digest(), signers=[0, 1, 2],
        signatures=[bytes([i]) * 65 for i in range(3)],
    )  # fmt: skip
    store.commit_block(block, finalization, [COMMITTED_TX], keccak256(b"root 1"))


def open_world(directory: Path) -> ApiWorld:
    store = NodeStore(directory / "chain", genesis_digest=GENESIS, sync=False)
    commit_one_block(store)
    return ApiWorld(store=store, mempool=Mempool(DOMAIN))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[ApiWorld]:
    w = open_world(tmp_path)
    try:
        yield w
    finally:
        w.store.close()


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiWorld]:
    """One world for a whole module (hypothesis runs many examples against it)."""
    w = open_world(tmp_path_factory.mktemp("api"))
    try:
        yield w
    finally:
        w.store.close()


def json_error(response: Any) -> dict[str, Any]:
    """The error body, checked to have the documented shape."""
    assert response.headers.get("content-type", "").startswith("application/json"), (
        response.status_code,
        response.text[:200],
    )
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "code"}, body
    assert isinstance(body["code"], str) and isinstance(body["error"], str)
    return body
