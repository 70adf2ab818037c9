"""Commitments.latestPost(): the latest post and the state around it in one call,
so its fields belong to one post while posts land; its answer is checked."""

from __future__ import annotations

from typing import Any

import pytest

from sequencer_net.l1.link import CommitmentsTip, L1AnswerInvalid, L1Link, decode_tip, read_tip
from sequencer_net.l1.posts import PostRef, check_post, latest_post
from sequencer_net.l1.user import contract
from tests.l1.l1_chain import L1Chain

ROOT = bytes(range(32))


def answer(**changes: Any) -> list[Any]:
    """A well-formed latestPost answer (3 posts, the latest at height 9), with `changes`."""
    fields = {
        "ref": (2, ROOT, 7, 9),
        "count": 3,
        "postBlock": 40,
        "epoch": 1,
        "firstPost": 0,
        "era": 0,
        "frozen": False,
        "disputed": False,
        "disputedAt": 0,
    }
    fields.update(changes)
    return list(fields.values())


def test_a_well_formed_answer_decodes() -> None:
    assert decode_tip(answer()) == CommitmentsTip(
        post_count=3,
        latest_height=9,
        latest_state_height=7,
        latest_state_root=ROOT,
        last_post_block=40,
        epoch=1,
        era_first_post=0,
        era=0,
        frozen=False,
        disputed_height=None,
    )
    frozen = decode_tip(answer(frozen=True, disputed=True, disputedAt=8))
    assert (frozen.frozen, frozen.disputed_height) == (True, 8)
    empty = answer(ref=(0, bytes(32), 0, 0), count=0)
    assert decode_tip(empty).post_count == 0


@pytest.mark.parametrize(
    "bad",
    [
        "not a tuple",
        answer()[:-1],
        answer(ref=(2, ROOT, 7)),
        answer(ref=(2, ROOT[:31], 7, 9)),
        answer(ref=(2, "0x" + ROOT.hex(), 7, 9)),
        answer(ref=(2, ROOT, -1, 9)),
        answer(ref=(2, ROOT, 7, 2**64)),
        answer(ref=(1, ROOT, 7, 9)),  # not the index of the latest of 3 posts
        answer(count=True),
        answer(epoch=2**32),
        answer(frozen=1),
        answer(disputed="yes"),
        answer(disputedAt=5),  # a height with no dispute
        answer(firstPost=3),  # the era's first post after the latest
        answer(ref=(0, ROOT, 0, 0), count=0),  # a root before any post
        answer(ref=(0, bytes(32), 0, 4), count=0),  # a height before any post
    ],
)
def test_a_malformed_answer_is_refused(bad: Any) -> None:
    with pytest.raises(L1AnswerInvalid):
        decode_tip(bad)


def test_before_the_first_post(chain: L1Chain) -> None:
    functions = chain.commitments.functions
    tip = read_tip(chain.commitments)
    assert (tip.post_count, tip.latest_height, tip.latest_state_root) == (0, 0, bytes(32))
    assert tip.last_post_block == functions.lastPostBlock().call()  # the deployment's block
    assert (tip.era, tip.frozen, tip.disputed_height) == (0, False, None)
    assert latest_post(chain.commitments) is None


def test_the_tip_is_one_posts_record_while_a_post_lands_after_every_call(chain: L1Chain) -> None:
    receipt = chain.post(chain.header(1, state_height=1))
    later = [chain.header(h, state_height=h + 10) for h in range(2, 12)]
    w3 = chain.posting_mid_read(later)
    commitments = contract(w3, "Commitments", chain.addresses.commitments)
    link = L1Link(w3=w3, commitments=commitments, inbox=None, bridge=None)

    # one call: post 0 whole (post 1 lands right after it)
    tip = link.commitments_tip()
    first = chain.header(1, state_height=1)
    assert (tip.post_count, tip.latest_height, tip.latest_state_height) == (1, 1, 1)
    assert tip.latest_state_root == first.state_root
    assert tip.last_post_block == receipt["blockNumber"]
    # the same through the posts reader: post 1 whole, a ref the contract holds
    ref = latest_post(commitments)
    assert ref == PostRef(1, later[0].state_root, later[0].state_height, later[0].height)
    assert check_post(chain.commitments, ref)[0] == 0
    assert chain.commitments.functions.postCount().call() == 3

    # the view calls one by one, each followed by a post: every field from another post
    functions = commitments.functions
    height = functions.latestHeight().call()
    state_height = functions.latestStateHeight().call()
    root = functions.latestStateRoot().call()
    assert (height, state_height) == (later[1].height, later[2].state_height)
    assert root == later[3].state_root
