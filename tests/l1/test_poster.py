"""The commitment poster against a real anvil and a store of finalized blocks."""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from consensus.types import Validator, ValidatorSet
from sequencer_net.l1.header import L1Header
from sequencer_net.l1.link import L1Link
from sequencer_net.l1.poster import (
    CommitmentPoster,
    RoundResult,
    build_posting,
    find_postable,
    is_turn,
    quorum_signatures,
)
from sequencer_net.l1.status import L1Status
from tests.l1.finalized_store import FinalizedStore
from tests.l1.l1_chain import L1Chain, requires_anvil

TAKEOVER = 1_000
"""Turns so long that index (head // TAKEOVER) % n keeps the turn for the whole test."""


def fund(chain: L1Chain, address: bytes) -> None:
    chain.w3.provider.make_request("anvil_setBalance", ["0x" + address.hex(), hex(10**20)])  # type: ignore[arg-type]


def committed_ranges(chain: L1Chain) -> list[tuple[int, int]]:
    events = chain.commitments.events.Committed().get_logs(from_block=0)
    return [(e["args"]["fromHeight"], e["args"]["toHeight"]) for e in events]


def wait_posted(chain: L1Chain, height: int) -> None:
    """A round returns once its posting is sent: wait (bounded) until it is mined."""
    for _ in range(100):
        if chain.commitments.functions.latestHeight().call() >= height:
            return
        time.sleep(0.05)
    raise AssertionError(f"no posting of height {height} was mined")


@pytest.fixture
def blocks(tmp_path: Path, chain: L1Chain) -> Iterator[FinalizedStore]:
    store = FinalizedStore.open(tmp_path / "chain", chain.keys, chain.domain)
    for key in chain.keys:
        fund(chain, key.address)
    try:
        yield store
    finally:
        store.close()


def turn_holder(chain: L1Chain, takeover: int = TAKEOVER) -> int:
    return (chain.w3.eth.block_number // takeover) % len(chain.keys)


def make_poster(
    chain: L1Chain, blocks: FinalizedStore, index: int, data: Path, **overrides: Any
) -> CommitmentPoster:
    link = L1Link.connect(chain.anvil.url, commitments=chain.addresses.commitments)
    settings: dict[str, Any] = {
        "post_interval_s": 0.0,
        "takeover_blocks": TAKEOVER,
        "poll_s": 0.05,
    }
    settings.update(overrides)
    return CommitmentPoster(
        link=link,
        store=blocks.store,
        validators=blocks.validators,
        my_index=index,
        key=chain.keys[index],
        data_dir=data,
        status=L1Status(enabled=True),
        **settings,
    )


def run(poster: CommitmentPoster) -> RoundResult:
    return trio.run(poster.post_round)


# ---- pure rules -------------------------------------------------------------------------


def test_turns_rotate_every_takeover_blocks_and_anyone_takes_over_after_two() -> None:
    holders = [i for i in range(4) if is_turn(25, 24, 10, 4, i)]
    assert holders == [2]
    assert [i for i in range(4) if is_turn(39, 30, 10, 4, i)] == [3]
    assert all(is_turn(45, 25, 10, 4, i) for i in range(4))  # 20 blocks without a posting
    assert [i for i in range(4) if is_turn(44, 25, 10, 4, i)] == [0]


@requires_anvil
def test_a_bare_quorum_signs_in_address_order(chain: L1Chain, tmp_path: Path) -> None:
    blocks = FinalizedStore.open(tmp_path / "chain", chain.keys, chain.domain)
    try:
        (block,) = blocks.commit(1)
        cert = blocks.store.own_finalization(1, block.digest())
        assert cert is not None and len(cert.signers) == 4
        header, signatures = build_posting(block, cert, blocks.validators)
        assert header.block_hash() == block.digest()
        assert len(signatures) == 3 * 65  # floor(2 * 4 / 3) + 1 of equal power
        weights = [1, 1, 10, 1]
        heavy = ValidatorSet(
            [Validator(k.address, w) for k, w in zip(chain.keys, weights, strict=True)]
        )
        assert quorum_signatures(cert, heavy) == cert.signatures[2]  # 10 of 13 is a quorum
        short = blocks.certificate(block.view, 1, block.digest(), signers=[0, 1])
        with pytest.raises(ValueError, match="no quorum"):
            quorum_signatures(short, blocks.validators)
    finally:
        blocks.close()


@requires_anvil
def test_only_blocks_with_their_own_certificate_are_postable(
    chain: L1Chain, tmp_path: Path
) -> None:
    blocks = FinalizedStore.open(tmp_path / "chain", chain.keys, chain.domain)
    try:
        blocks.commit(2)
        blocks.commit(2, own_certificate=False)  # heights 3, 4 under a descendant's cert
        found = find_postable(blocks.store, 0)
        assert found is not None and found[0].height == 2
        assert find_postable(blocks.store, 2) is None
        assert find_postable(blocks.store, 0, walk=2) is None  # bounded walk from the tip
    finally:
        blocks.close()


# ---- against anvil ------------------------------------------------------------------------


@requires_anvil
def test_posts_then_posts_the_next_range(
    chain: L1Chain, blocks: FinalizedStore, tmp_path: Path
) -> None:
    index = turn_holder(chain)
    poster = make_poster(chain, blocks, index, tmp_path / "l1")
    other = make_poster(chain, blocks, (index + 1) % 4, tmp_path / "l1-other")
    assert run(poster) is RoundResult.NOTHING_TO_POST
    blocks.commit(3)
    assert run(other) is RoundResult.NOT_MY_TURN
    assert run(poster) is RoundResult.POSTED
    wait_posted(chain, 3)
    functions = chain.commitments.functions
    assert functions.latestHeight().call() == 3
    assert functions.latestStateHeight().call() == 2
    assert functions.latestStateRoot().call() == blocks.state_root(2)
    block3 = blocks.store.block_at(3)
    assert block3 is not None
    (event,) = chain.commitments.events.Committed().get_logs(from_block=0)
    assert event["args"]["blockHash"] == block3.digest()
    assert run(poster) is RoundResult.NOTHING_TO_POST  # settles the first posting
    assert poster.status.postings == 1
    assert poster.status.gas_per_posting is not None and 0 < poster.status.gas_per_posting < 90_000
    blocks.commit(2)
    assert run(poster) is RoundResult.POSTED
    wait_posted(chain, 5)
    assert committed_ranges(chain) == [(1, 3), (4, 5)]
    assert functions.latestStateRoot().call() == blocks.state_root(4)
    status = poster.status.document(blocks.store.tip()[0])
    assert status["posted_height"] == 3  # read before this round's posting
    run(poster)
    status = poster.status.document(blocks.store.tip()[0])
    assert (status["posted_height"], status["backlog"], status["postings"]) == (5, 0, 2)


@requires_anvil
def test_a_silent_turn_holder_is_taken_over(
    chain: L1Chain, blocks: FinalizedStore, tmp_path: Path
) -> None:
    takeover = 5
    holder = turn_holder(chain, takeover)
    index = (holder + 2) % 4
    poster = make_poster(chain, blocks, index, tmp_path / "l1", takeover_blocks=takeover)
    blocks.commit(2)
    last_post = chain.commitments.functions.lastPostBlock().call()
    behind = chain.w3.eth.block_number - last_post
    if behind < 2 * takeover and turn_holder(chain, takeover) != index:
        assert run(poster) is RoundResult.NOT_MY_TURN
    chain.mine(2 * takeover)
    assert run(poster) is RoundResult.POSTED
    wait_posted(chain, 2)
    assert chain.commitments.functions.latestHeight().call() == 2


@requires_anvil
def test_killed_after_persisting_before_sending_sends_the_same_bytes_on_restart(
    chain: L1Chain, blocks: FinalizedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = turn_holder(chain)
    blocks.commit(3)
    first = make_poster(chain, blocks, index, tmp_path / "l1")

    def crash(raw: bytes) -> None:
        raise KeyboardInterrupt("killed before sending")

    monkeypatch.setattr(first.link, "send_raw", crash)
    with pytest.raises(KeyboardInterrupt):
        run(first)
    pending = first.journal.pending
    assert pending is not None and pending.height == 3
    assert chain.commitments.functions.latestHeight().call() == 0
    blocks.commit(1)  # the chain moved on while the node was down

    second = make_poster(chain, blocks, index, tmp_path / "l1")
    assert second.journal.pending == pending
    assert run(second) is RoundResult.PENDING  # the same raw transaction, rebroadcast
    assert chain.commitments.functions.latestHeight().call() == 3
    assert run(second) is RoundResult.POSTED  # settled, then the next range
    assert second.status.postings == 1
    wait_posted(chain, 4)
    assert committed_ranges(chain) == [(1, 3), (4, 4)]
    tx = chain.w3.eth.get_transaction(pending.tx_hash)  # type: ignore[arg-type]
    assert tx["nonce"] == pending.nonce


@requires_anvil
def test_killed_after_sending_neither_double_posts_nor_skips(
    chain: L1Chain, blocks: FinalizedStore, tmp_path: Path
) -> None:
    index = turn_holder(chain)
    blocks.commit(3)
    first = make_poster(chain, blocks, index, tmp_path / "l1")
    assert run(first) is RoundResult.POSTED  # then "killed": never settles
    assert (tmp_path / "l1" / "posting.json").exists()

    second = make_poster(chain, blocks, index, tmp_path / "l1")
    assert second.journal.pending is not None
    assert run(second) is RoundResult.NOTHING_TO_POST
    assert second.journal.pending is None
    assert not (tmp_path / "l1" / "posting.json").exists()
    blocks.commit(2)
    assert run(second) is RoundResult.POSTED
    wait_posted(chain, 5)
    assert committed_ranges(chain) == [(1, 3), (4, 5)]


@requires_anvil
def test_two_posters_racing_never_double_post(
    chain: L1Chain, blocks: FinalizedStore, tmp_path: Path
) -> None:
    takeover = 3
    a = make_poster(chain, blocks, 0, tmp_path / "a", takeover_blocks=takeover)
    b = make_poster(chain, blocks, 1, tmp_path / "b", takeover_blocks=takeover)
    provider = chain.w3.provider
    blocks.commit(3)
    chain.mine(2 * takeover)  # no posting for two turns: both may post
    provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        assert run(a) is RoundResult.POSTED
        # b simulates on the pending block, which holds a's posting: it sends nothing
        assert run(b) is RoundResult.RACE_LOST
        provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    assert committed_ranges(chain) == [(1, 3)]
    # Both settle; exactly one posting landed.
    settled = {RoundResult.NOTHING_TO_POST, RoundResult.NOT_MY_TURN}
    assert run(a) in settled and run(b) in settled
    assert a.journal.pending is None and b.journal.pending is None
    assert a.status.postings + b.status.postings == 1
    # Interleaved rounds with new blocks: ranges stay contiguous and disjoint.
    for _ in range(3):
        blocks.commit(2)
        chain.mine(2 * takeover)
        results = {run(a), run(b)}
        assert RoundResult.POSTED in results
    ranges = committed_ranges(chain)
    assert ranges[0] == (1, 3)
    assert all(later[0] == earlier[1] + 1 for earlier, later in itertools.pairwise(ranges))
    assert ranges[-1][1] == blocks.store.tip()[0] == 9


@requires_anvil
def test_a_posting_reorged_out_is_posted_again(
    chain: L1Chain, blocks: FinalizedStore, tmp_path: Path
) -> None:
    index = turn_holder(chain)
    poster = make_poster(chain, blocks, index, tmp_path / "l1")
    blocks.commit(3)
    snapshot = chain.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    assert run(poster) is RoundResult.POSTED
    assert run(poster) is RoundResult.NOTHING_TO_POST
    chain.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    assert chain.commitments.functions.latestHeight().call() == 0
    assert run(poster) is RoundResult.POSTED
    wait_posted(chain, 3)
    assert chain.commitments.functions.latestHeight().call() == 3


class _OtherSenderAfterNonce:
    """The poster's link, except that right after the poster's worker thread
    reads the account's pending nonce it runs `between` on the event loop
    (and waits for it): another sender of the same account gets that window."""

    def __init__(self, link: L1Link, between: Callable[[], Awaitable[None]]) -> None:
        self._link = link
        self._between: Callable[[], Awaitable[None]] | None = between

    def __getattr__(self, name: str) -> Any:
        return getattr(self._link, name)

    def transaction_count(self, address: str, block: str) -> int:
        count = self._link.transaction_count(address, block)
        between, self._between = self._between, None
        if block == "pending" and between is not None:
            trio.from_thread.run(between)
        return count


@requires_anvil
def test_a_posting_and_another_send_from_the_same_account_never_share_a_nonce(
    chain: L1Chain, blocks: FinalizedStore, tmp_path: Path
) -> None:
    """The evidence watcher sends from the validator key too, from its own
    worker thread. Here it tries to send between the poster's nonce read and
    its send: holding the shared `sends` lock it waits for the posting, then
    sends on the next nonce, and both land."""
    index = turn_holder(chain)
    sends = trio.Lock()
    poster = make_poster(chain, blocks, index, tmp_path / "l1", sends=sends)
    account = poster.account
    blocks.commit(2)
    decided = trio.Event()
    sent: list[bytes] = []

    def transfer() -> None:
        w3 = chain.w3
        tx = {
            "to": "0x" + "11" * 20,
            "value": 1,
            "gas": 21_000,
            "gasPrice": w3.eth.gas_price,
            "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "chainId": w3.eth.chain_id,
        }
        signed = account.sign_transaction(tx)
        sent.append(bytes(w3.eth.send_raw_transaction(signed.raw_transaction)))

    async def main() -> RoundResult:
        async with trio.open_nursery() as nursery:

            async def other_sender() -> None:
                if sends.locked():
                    decided.set()  # it waits its turn
                async with sends:
                    await trio.to_thread.run_sync(transfer)
                decided.set()

            async def between() -> None:
                nursery.start_soon(other_sender)
                await decided.wait()

            poster.link = _OtherSenderAfterNonce(poster.link, between)  # type: ignore[assignment]
            return await poster.post_round()

    assert trio.run(main) is RoundResult.POSTED
    wait_posted(chain, 2)
    (transfer_hash,) = sent
    assert chain.w3.eth.wait_for_transaction_receipt(transfer_hash, timeout=30)["status"] == 1  # type: ignore[arg-type]
    pending = poster.journal.pending
    assert pending is not None
    assert chain.w3.eth.get_transaction(transfer_hash)["nonce"] == pending.nonce + 1  # type: ignore[arg-type]


def test_header_of_a_block_hashes_to_its_digest(tmp_path: Path) -> None:
    from consensus.crypto import PrivateKey, keccak256
    from consensus.encoding import Domain

    keys = [PrivateKey(keccak256(b"k%d" % i)) for i in range(4)]
    blocks = FinalizedStore.open(tmp_path / "chain", keys, Domain(1, bytes(20), bytes(32)))
    try:
        (block,) = blocks.commit(1)
        assert L1Header.of_block(block).block_hash() == block.digest()
    finally:
        blocks.close()
