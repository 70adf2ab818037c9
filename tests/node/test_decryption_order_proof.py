"""What a block opens to carries the proof of its order seed: the t verified
coin shares it was combined from, which anyone checks with the epoch's key
(fairness/order_proof.py), whichever validator or full node opened it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from sequencer_net.fairness.order_proof import (
    decode_order_proof,
    encode_order_proof,
    verify_order_seed,
)
from sequencer_net.node.decryption import OpenedBlock, encode_shares_message
from tests.node.test_decryption import (
    BLOCK,
    ENVELOPES,
    HEIGHT,
    KEYSET,
    ORDER_SEED,
    SHARES,
    TAG,
    Net,
    message,
    opening,
    parts,
)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    yield n
    n.close()


def check(opened: OpenedBlock) -> None:
    assert len(opened.order_proof) == KEYSET.threshold
    stored = decode_order_proof(encode_order_proof(opened.order_proof))
    assert verify_order_seed(TAG, stored, KEYSET) == opened.order_seed == ORDER_SEED


def test_the_proof_is_the_t_shares_combined_own_one_included() -> None:
    job = opening()
    job.offer_own(SHARES[3], *parts(message(3)))
    assert job.offer(*parts(message(1)))
    opened = job.open()
    assert [s.index for s in opened.order_proof] == [2, 4]
    check(opened)
    # A refused message's coin share never enters a proof.
    refused = opening()
    shares, _ = parts(message(0))
    _, other_coin = parts(message(2))
    assert not refused.offer(shares, other_coin)
    assert refused.offer(*parts(message(1))) and refused.offer(*parts(message(3)))
    assert [s.index for s in refused.open().order_proof] == [2, 4]


async def test_validators_and_a_full_node_open_with_a_checkable_proof(net: Net) -> None:
    for i in (0, 1):
        net.stores[i].save_own_shares(HEIGHT, encode_shares_message(message(i)))
    net.down = {2}
    with trio.fail_after(10):
        opened = await net.decryptors[3].open_block(HEIGHT, BLOCK, ENVELOPES)
    check(opened)
    full = net.make(3, key_share=False)
    with trio.fail_after(10):
        by_full_node = await full.open_block(HEIGHT, BLOCK, ENVELOPES)
    check(by_full_node)
