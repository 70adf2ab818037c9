from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.l1.l1_chain import L1Chain, requires_anvil, running_chain


@pytest.fixture(scope="module")
def module_chain() -> Iterator[L1Chain]:
    """One anvil and one deployment per test module."""
    if requires_anvil.args[0]:
        pytest.skip(requires_anvil.kwargs["reason"])
    with running_chain() as chain:
        yield chain


@pytest.fixture
def chain(module_chain: L1Chain) -> Iterator[L1Chain]:
    """The module's chain, reverted to its deployed state after each test."""
    with module_chain.snapshot():
        yield module_chain
