"""The SDK checks each block's order proof with the threshold key of the
block's validator-set epoch (genesis `epoch_threshold(schedule.epoch_of(h))`):
a proof made with another epoch's key is refused even where it verifies
under that key."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sequencer_net.client.verify import BlockVerifier, SubscriptionVerificationError
from sequencer_net.fairness.order import order_seed_tag
from sequencer_net.fairness.tdh2 import KeyShare, coin_share, combine_coin, deal
from sequencer_net.home.genesis import LocalEpoch, make_local_genesis
from tests.client.chain import NAMESPACE, hx, validator_keys
from tests.client.epoch_chain import LAST, MEMBERS, EpochChain, digest_of

SEED = 31
DEALT = [deal(4, 2, random.Random(SEED + e).randbytes) for e in range(2)]


def keyed_chain() -> EpochChain:
    keys = validator_keys(5, seed=7)
    genesis = make_local_genesis(
        [k.secret for k in keys],
        chain_id=31337,
        base_p2p_port=1,
        base_api_port=101,
        genesis_time_ms=1_700_000_000_000,
        initial=MEMBERS[0],
        threshold_keys=DEALT[0][0],
        epochs=(LocalEpoch(LAST + 1, MEMBERS[1], threshold_keys=DEALT[1][0]),),
    )
    return EpochChain(genesis=genesis)


def with_order(message: dict[str, Any], shares: list[KeyShare]) -> dict[str, Any]:
    """`message` with the order proof of shareholders `shares` (the first two)."""
    tag = order_seed_tag(31337, message["height"], digest_of(message))
    coins = [coin_share(s, tag) for s in shares[:2]]
    keys = DEALT[0][0] if shares is DEALT[0][1] else DEALT[1][0]
    seed = combine_coin(tag, coins, keys)
    assert isinstance(seed, bytes)
    message["order"] = {
        "seed": hx(seed),
        "shares": [
            {"index": c.index, "value": hx(c.value), "e": hx(c.e), "f": hx(c.f)} for c in coins
        ],
    }
    return message


def test_each_epochs_blocks_are_checked_with_that_epochs_key() -> None:
    chain = keyed_chain()
    assert chain.genesis is not None
    messages = [chain.block([chain.tx(), chain.tx()]) for _ in range(LAST + 2)]
    for m in messages:
        epoch = chain.schedule.epoch_of(m["height"]).number
        with_order(m, DEALT[epoch][1])
    verifier = BlockVerifier.from_genesis(chain.genesis, NAMESPACE)
    blocks = [verifier.verify(m) for m in messages]
    assert [b.epoch for b in blocks] == [0] * LAST + [1, 1]
    for block, m in zip(blocks, messages, strict=True):
        assert block.order_seed is not None and hx(block.order_seed) == m["order"]["seed"]
        # One sender: its transactions keep their block order.
        assert block.ordered_transactions == block.transactions


def test_a_proof_under_the_previous_epochs_key_is_refused() -> None:
    chain = keyed_chain()
    assert chain.genesis is not None
    messages = [chain.block([chain.tx()]) for _ in range(LAST + 1)]
    for m in messages[:LAST]:
        with_order(m, DEALT[0][1])
    stale = with_order(messages[LAST], DEALT[0][1])  # epoch 1's block, epoch 0's key
    verifier = BlockVerifier.from_genesis(chain.genesis, NAMESPACE)
    for m in messages[:LAST]:
        verifier.verify(m)
    with pytest.raises(SubscriptionVerificationError, match="order proof") as info:
        verifier.verify(stale)
    assert info.value.height == LAST + 1
    assert verifier.verify(with_order(messages[LAST], DEALT[1][1])).epoch == 1


def test_a_verifier_needs_a_key_for_every_epoch() -> None:
    chain = keyed_chain()
    with pytest.raises(ValueError, match=r"epochs \[1\]"):
        BlockVerifier(chain.schedule, chain.domain, NAMESPACE, order_keys={0: DEALT[0][0]})
