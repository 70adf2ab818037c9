"""Which blocks draw an order seed (fairness/order.py `needs_order_seed`): one
that opens an envelope, or whose non-forced transactions come from two
senders or more. For every other block the order is the same whatever the
seed, and the same as without one."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import keccak256
from sequencer_net.fairness.order import needs_order_seed, order_block

from .test_order import Tx, sender

SEEDS = [keccak256(bytes([i])) for i in range(6)]


def test_no_transaction_or_one_sender_needs_no_seed() -> None:
    assert not needs_order_seed(False, [])
    assert not needs_order_seed(False, [Tx(sender(1), 0)])
    assert not needs_order_seed(False, [Tx(sender(1), n) for n in range(5)])


def test_two_senders_need_a_seed() -> None:
    assert needs_order_seed(False, [Tx(sender(1), 0), Tx(sender(2), 0)])
    assert needs_order_seed(False, [Tx(sender(1), 0), Tx(sender(1), 1), Tx(sender(2), 0)])


def test_an_envelope_needs_a_seed_even_alone() -> None:
    assert needs_order_seed(True, [])
    assert needs_order_seed(True, [Tx(sender(1), 0)])


def test_the_rule_stops_at_the_second_sender() -> None:
    def endless() -> object:
        n = 0
        while True:
            yield Tx(sender(n % 2), n)
            n += 1

    assert needs_order_seed(False, endless())  # type: ignore[arg-type]


blocks = st.tuples(
    st.lists(
        st.builds(Tx, st.sampled_from([sender(i) for i in range(4)]), st.integers(0, 9)), max_size=6
    ),
    st.lists(
        st.builds(Tx, st.sampled_from([sender(i) for i in range(4)]), st.integers(0, 9)),
        max_size=12,
    ),
)


@settings(max_examples=300, deadline=None)
@given(blocks)
def test_a_block_that_needs_no_seed_has_one_order_for_every_seed(
    block: tuple[list[Tx], list[Tx]],
) -> None:
    forced, rest = block
    orders = [order_block(seed, forced, rest) for seed in [None, *SEEDS]]
    if not needs_order_seed(False, rest):
        assert all(order == orders[0] for order in orders)
        assert orders[0] == [*forced, *rest]


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 8))
def test_a_block_that_needs_a_seed_is_reordered_by_some_seed(senders: int) -> None:
    rest = [Tx(sender(i), 0) for i in range(senders)]
    assert needs_order_seed(False, rest)
    many = [keccak256(b"seed %d" % i) for i in range(64)]
    assert len({tuple(t.sender for t in order_block(s, [], rest)) for s in many}) > 1
