"""Answers to block and sync requests fit one message by construction, and a
commit range too long for one answer is still synced (top first, then back)."""

from __future__ import annotations

from consensus.core import ConsensusCore
from consensus.io import Commit, Fetch, MessageReceived
from consensus.limits import MAX_MESSAGE_BYTES, MAX_PAYLOAD_BYTES, MAX_SYNC_BLOCKS
from consensus.messages import (
    Block,
    BlockRequest,
    Certificate,
    SyncRequest,
    SyncResponse,
    VoteKind,
    decode_message,
    encode_message,
)
from consensus.sync import answer_block_request, answer_sync_request
from consensus.types import ValidatorIndex, View
from tests.consensus.conftest import Net


def _chain(net: Net, length: int, payload_bytes: int) -> list[Block]:
    blocks: list[Block] = []
    parent = net.genesis.digest()
    for height in range(1, length + 1):
        payload = bytes([height % 256]) * payload_bytes
        leader = net.validators.leader(View(height))
        block = Block(height, height, parent, leader, payload)
        blocks.append(block)
        parent = block.digest()
    return blocks


def _final(net: Net, block: Block) -> Certificate:
    return net.certificate([0, 1, 2], VoteKind.FINALIZE, block.view, block.height, block.digest())


def test_a_sync_answer_of_the_largest_blocks_fits_one_message(net: Net) -> None:
    blocks = _chain(net, 20, MAX_PAYLOAD_BYTES)
    finals = {b.height: _final(net, b) for b in blocks}  # every block finalized alone
    answer = answer_sync_request(
        SyncRequest(1, 64), lambda h: blocks[h - 1] if h <= 20 else None, finals.get
    )
    assert answer is not None and 1 <= len(answer.blocks) < 20
    encoded = encode_message(answer)
    assert len(encoded) <= MAX_MESSAGE_BYTES
    assert decode_message(encoded) == answer  # and the asker's decoder takes it
    by_digest = {b.digest(): b for b in blocks}
    response = answer_block_request(BlockRequest(blocks[-1].digest(), 64), by_digest.get)
    assert response is not None and len(encode_message(response)) <= MAX_MESSAGE_BYTES


def test_a_commit_range_longer_than_one_answer_is_answered_top_first(net: Net) -> None:
    length = MAX_SYNC_BLOCKS + 40
    blocks = _chain(net, length, 100)
    top = _final(net, blocks[-1])  # one finalization committed all of them at once
    answer = answer_sync_request(
        SyncRequest(1, 64), lambda h: blocks[h - 1] if h <= length else None, lambda h: top
    )
    assert answer is not None and answer.finalization == top
    assert answer.blocks[-1] == blocks[-1] and answer.blocks[0].height > 1
    # A node at genesis takes the top of the range, then walks back by digest.
    core, _ = net.started(3)
    actions = core.handle(MessageReceived(ValidatorIndex(0), answer))
    (fetch,) = [a for a in actions if isinstance(a, Fetch)]
    assert isinstance(fetch.request, BlockRequest)
    assert fetch.request.digest == answer.blocks[0].parent
    by_digest = {b.digest(): b for b in blocks}
    committed: list[int] = []
    for _ in range(10):  # bounded: each answer brings up to 64 blocks
        request = fetch.request
        assert isinstance(request, BlockRequest)
        response = answer_block_request(request, by_digest.get)
        assert response is not None
        actions = core.handle(MessageReceived(ValidatorIndex(1), response))
        committed += [a.block.height for a in actions if isinstance(a, Commit)]
        fetches = [a for a in actions if isinstance(a, Fetch)]
        if committed:
            break
        (fetch,) = fetches
    assert committed == list(range(1, length + 1))


def test_a_forged_top_of_range_answer_commits_nothing(net: Net) -> None:
    blocks = _chain(net, 5, 10)
    too_few = net.certificate([0, 1], VoteKind.FINALIZE, 5, 5, blocks[-1].digest())  # no quorum
    forged = SyncResponse(blocks[3:], too_few)
    core: ConsensusCore
    core, _ = net.started(3)
    actions = core.handle(MessageReceived(ValidatorIndex(0), forged))
    assert [a for a in actions if isinstance(a, Commit | Fetch)] == []
