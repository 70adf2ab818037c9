"""Fixtures for testnet tests: fake node processes on free loopback ports.

Every test that starts processes gets a directory whose testnet is stopped at
teardown (SIGTERM, then SIGKILL), whatever the test did.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sequencer_net.testnet.network import (
    TESTNET_FILE,
    Testnet,
    TestnetError,
    check_ports_free,
)

FAKE_NODE = Path(__file__).with_name("fake_node.py")
FAKE_NODE_COMMAND = (sys.executable, str(FAKE_NODE), "--home", "{home}")


def free_base_port(validators: int) -> int:
    """A base port whose p2p, API and L1 ports are all free now (loopback)."""
    rng = random.Random()
    for _ in range(200):
        # Below Linux's ephemeral range (32768+): no outgoing connection can take
        # one of these ports between the check and the bind.
        base = rng.randrange(21_000, 32_000, 200)
        try:
            check_ports_free("127.0.0.1", base, validators, l1=True)
        except TestnetError:
            continue
        return base
    raise RuntimeError("no free port range found")


@pytest.fixture
def testnet_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "testnet"
    yield directory
    if (directory / TESTNET_FILE).exists():
        Testnet.load(directory).stop(grace_s=2.0)
