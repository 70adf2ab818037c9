from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.harness import LocalNetwork


@pytest.fixture
def network(tmp_path: Path) -> Iterator[LocalNetwork]:
    net = LocalNetwork.create(tmp_path, n=4)
    try:
        yield net
    finally:
        net.close()
