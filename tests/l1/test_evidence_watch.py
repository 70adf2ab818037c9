"""The evidence watcher against a real anvil: a node's stored evidence is
submitted once (and not again after a restart), and a posted header that
conflicts with the node's own finalization is proven from the posting's
calldata and the node's certificate. Both freeze Commitments."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from web3 import Web3

from consensus.crypto import PrivateKey, keccak256
from consensus.messages import Block, Certificate, VoteKind
from consensus.payload import BlockPayload, encode_payload
from consensus.types import ZERO_DIGEST
from sequencer_net.l1.evidence import evidence_args
from sequencer_net.l1.evidence_watch import (
    STATE_FILE,
    EvidenceWatcher,
    Posting,
    StoreSource,
    WatchState,
    conflict_evidence,
)
from sequencer_net.l1.header import L1Header, sign_packed
from sequencer_net.l1.link import L1Link
from sequencer_net.l1.status import L1Status
from sequencer_net.storage.node_store import EvidenceRecord
from tests.l1.finalized_store import FinalizedStore
from tests.l1.l1_chain import L1Chain
from tests.l1.test_evidence import finalize_vote, nullify_vote, vote

WATCHER_KEY = PrivateKey(keccak256(b"evidence watcher test key"))


def fund(chain: L1Chain, address: bytes) -> None:
    chain.w3.provider.make_request("anvil_setBalance", ["0x" + address.hex(), hex(10**20)])  # type: ignore[arg-type]


@pytest.fixture
def node(tmp_path: Path, chain: L1Chain) -> Iterator[FinalizedStore]:
    store = FinalizedStore.open(tmp_path / "chain", chain.keys, chain.domain)
    fund(chain, WATCHER_KEY.address)
    try:
        yield store
    finally:
        store.close()


def make_watcher(chain: L1Chain, node: FinalizedStore, data: Path) -> EvidenceWatcher:
    link = L1Link.connect(chain.anvil.url, commitments=chain.addresses.commitments)
    return EvidenceWatcher(
        link=link,
        source=StoreSource(node.store),
        key=WATCHER_KEY,
        data_dir=data,
        status=L1Status(enabled=True),
        confirmations=0,
        poll_s=0.05,
    )


def sent(chain: L1Chain) -> int:
    return chain.w3.eth.get_transaction_count(Web3.to_checksum_address(WATCHER_KEY.address))


def offence(chain: L1Chain, key: PrivateKey) -> tuple[bool, int]:
    proven, height = chain.commitments.functions.offenceOf(
        Web3.to_checksum_address(key.address)
    ).call()
    return bool(proven), int(height)


def conflicting_block(node: FinalizedStore, view: int) -> tuple[Block, L1Header]:
    """A block at the store's next height, and another header at that height in `view`."""
    height, parent, _ = node.store.tip()
    height += 1
    payload = BlockPayload(
        timestamp_ms=1_760_000_000_000 + 200 * height,
        state_height=height - 1,
        state_root=node.state_root(height - 1),
        batches=[keccak256(b"batch %d" % height)],
        namespace_root=keccak256(b"namespaces %d" % height),
    )
    block = Block(
        view=height + 1, height=height, parent=parent, proposer=0, payload=encode_payload(payload)
    )
    other = dataclasses.replace(
        L1Header.of_block(block), view=view, state_root=keccak256(b"the other side")
    )
    return block, other


def test_stored_evidence_is_submitted_once_and_not_after_a_restart(
    tmp_path: Path, chain: L1Chain, node: FinalizedStore
) -> None:
    liar, other = chain.keys[1], chain.keys[2]
    header = chain.header(4)
    twin = dataclasses.replace(header, state_root=keccak256(b"twin"))
    l1_pair = EvidenceRecord(
        offender=1,
        first=finalize_vote(liar, chain.domain, header),
        second=finalize_vote(liar, chain.domain, twin),
        reason="finalized two blocks in one view",
    )
    notarize_pair = EvidenceRecord(  # evidence to a node, not to the contract
        offender=2,
        first=vote(other, chain.domain, VoteKind.NOTARIZE, 9, 5, keccak256(b"a"), signer=2),
        second=vote(other, chain.domain, VoteKind.NOTARIZE, 9, 5, keccak256(b"b"), signer=2),
        reason="notarized two blocks in one view",
    )
    second_liar = chain.keys[3]
    second_pair = EvidenceRecord(  # two proven validators of four: more than f, a freeze
        offender=3,
        first=finalize_vote(second_liar, chain.domain, header),
        second=finalize_vote(second_liar, chain.domain, twin),
        reason="finalized two blocks in one view",
    )
    assert node.store.save_evidence(l1_pair) and node.store.save_evidence(notarize_pair)
    assert node.store.save_evidence(second_pair)
    data = tmp_path / "l1"
    watcher = make_watcher(chain, node, data)
    assert chain.commitments.functions.frozen().call() is False

    before = sent(chain)
    trio.run(watcher.watch_round)
    assert sent(chain) == before + 2
    assert chain.commitments.functions.frozen().call() is True
    assert offence(chain, liar) == (True, 4) and offence(chain, second_liar) == (True, 4)
    assert offence(chain, other) == (False, 0)
    document = watcher.status.document(0)
    assert (document["evidence_submitted"], document["frozen"]) == (2, True)

    trio.run(watcher.watch_round)  # the same node, the next round
    again = make_watcher(chain, node, data)  # a restart
    assert len(again.state.settled) == 2
    trio.run(again.watch_round)
    assert sent(chain) == before + 2
    assert again.status.evidence_submitted == 0 and again.status.frozen is True

    # Without its file a restarted watcher asks the contract first: still no resend.
    (data / STATE_FILE).unlink()
    trio.run(make_watcher(chain, node, data).watch_round)
    assert sent(chain) == before + 2


def test_a_posted_fork_is_proven_from_the_calldata_and_the_own_certificate(
    tmp_path: Path, chain: L1Chain, node: FinalizedStore
) -> None:
    keys = chain.keys
    (first,) = node.commit(1)
    block, theirs = conflicting_block(node, view=3)  # height 2, view 3: the same view
    ours = node.certificate(block.view, block.height, block.digest(), signers=[0, 1, 2])
    node.store.commit_block(block, ours, [], node.state_root(2))
    chain.post(L1Header.of_block(first), signers=keys[:3])  # height 1 agrees
    chain.post(theirs, signers=[keys[0], keys[1], keys[3]])  # 0 and 1 signed both

    watcher = make_watcher(chain, node, tmp_path / "l1")
    before = sent(chain)
    trio.run(watcher.watch_round)
    assert sent(chain) == before + 2
    assert [offence(chain, k)[0] for k in keys] == [True, True, False, False]
    assert offence(chain, keys[0]) == (True, 2)
    assert chain.commitments.functions.frozen().call() is True
    document = watcher.status.document(2)
    assert (document["evidence_submitted"], document["frozen"], document["fork_height"]) == (
        2,
        True,
        2,
    )
    trio.run(watcher.watch_round)
    assert sent(chain) == before + 2


def test_a_posting_above_the_node_is_compared_once_the_node_gets_there(
    tmp_path: Path, chain: L1Chain, node: FinalizedStore
) -> None:
    keys = chain.keys
    block, theirs = conflicting_block(node, view=2)
    chain.post(theirs, signers=[keys[1], keys[2], keys[3]])
    watcher = make_watcher(chain, node, tmp_path / "l1")
    trio.run(watcher.watch_round)
    assert [(e.height, e.block_hash) for e in watcher.state.pending] == [(1, theirs.block_hash())]
    assert watcher.status.fork_height is None

    ours = node.certificate(block.view, block.height, block.digest(), signers=[0, 1, 2])
    node.store.commit_block(block, ours, [], node.state_root(1))
    again = make_watcher(chain, node, tmp_path / "l1")  # the pending posting survives a restart
    before = sent(chain)
    trio.run(again.watch_round)
    assert sent(chain) == before + 2
    assert [offence(chain, k)[0] for k in keys] == [False, True, True, False]
    assert again.state.pending == [] and again.status.fork_height == 1


def test_different_views_at_one_height_are_proven_by_the_posted_views_nullification(
    chain: L1Chain,
) -> None:
    keys, domain = chain.keys, chain.domain
    separator = domain.separator()
    theirs = chain.header(3)  # view 6, signed by 0, 1 and 3
    mine = dataclasses.replace(theirs, view=4, state_root=keccak256(b"mine"))  # by 0, 1 and 2
    posting = Posting(
        theirs, sign_packed([keys[0], keys[1], keys[3]], theirs.finalize_digest(domain))
    )
    ours = FinalizedStore(None, keys, domain).certificate(  # type: ignore[arg-type]
        mine.view, mine.height, mine.block_hash(), signers=[0, 1, 2]
    )
    assert conflict_evidence(separator, posting, [ours], 3) == []  # two views: no pair
    nullification = Certificate(
        kind=VoteKind.NULLIFY,
        view=theirs.view,
        height=0,
        block=ZERO_DIGEST,
        signers=[1, 2, 3],
        signatures=[nullify_vote(keys[i], domain, theirs.view).signature for i in (1, 2, 3)],
    )
    records = conflict_evidence(separator, posting, [ours, nullification], 3)
    assert [(r.offender, r.first.kind, r.second.kind) for r in records] == [
        (1, VoteKind.NULLIFY, VoteKind.FINALIZE),
        (3, VoteKind.NULLIFY, VoteKind.FINALIZE),
    ]
    for record in records:
        chain.send(
            chain.commitments.functions.submitEvidence(*evidence_args(record.first, record.second))
        )
    assert [offence(chain, k) for k in keys] == [(False, 0), (True, 3), (False, 0), (True, 3)]


def test_a_fork_in_other_views_is_proven_at_the_posted_height_once_this_side_has_the_view(
    tmp_path: Path, chain: L1Chain, node: FinalizedStore
) -> None:
    """The two sides finalized height 2 in different views (3 here, 5 there), so
    the blocks at height 2 give no pair. Once this side finalizes height 3 in
    view 5, the validators who signed both view-5 finalizations are proven at
    height 2, the posting's height: its root can pay nothing."""
    keys = chain.keys
    (first,) = node.commit(1)  # height 1, view 2: both sides agree
    block, theirs = conflicting_block(node, view=5)  # height 2: ours in view 3, theirs in 5
    ours = node.certificate(block.view, block.height, block.digest(), signers=[0, 1, 2])
    node.store.commit_block(block, ours, [], node.state_root(2))
    chain.post(L1Header.of_block(first), signers=keys[:3])
    chain.post(theirs, signers=[keys[0], keys[1], keys[3]])

    watcher = make_watcher(chain, node, tmp_path / "l1")
    before = sent(chain)
    trio.run(watcher.watch_round)
    assert sent(chain) == before  # nothing to prove yet: kept pending
    assert [(e.height, e.block_hash) for e in watcher.state.pending] == [(2, theirs.block_hash())]
    assert watcher.status.fork_height == 2

    payload = BlockPayload(
        timestamp_ms=1_760_000_000_900,
        state_height=2,
        state_root=node.state_root(2),
        batches=[keccak256(b"batch 3")],
        namespace_root=keccak256(b"namespaces 3"),
    )
    next_block = Block(
        view=5, height=3, parent=block.digest(), proposer=1, payload=encode_payload(payload)
    )
    next_cert = node.certificate(5, 3, next_block.digest(), signers=[0, 1, 2])
    node.store.commit_block(next_block, next_cert, [], node.state_root(3))
    again = make_watcher(chain, node, tmp_path / "l1")  # the pending posting survives a restart
    trio.run(again.watch_round)
    assert sent(chain) == before + 2
    assert [offence(chain, k) for k in keys] == [(True, 2), (True, 2), (False, 0), (False, 0)]
    assert chain.commitments.functions.frozen().call() is True
    assert again.state.pending == []


def test_state_file_round_trips_and_refuses_garbage() -> None:
    state = WatchState()
    state.scanned(12, b"\x01" * 32)
    state.settle(b"\x02" * 32)
    again = WatchState.decode(state.encode())
    assert (again.block, list(again.settled)) == (12, [b"\x02" * 32])
    with pytest.raises(ValueError):
        WatchState.decode(b'{"block": 1}')
