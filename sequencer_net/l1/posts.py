"""The Commitments contract's posts, as the Bridge takes them: PostRefs.

Commitments keeps a record of each of its last HISTORY posts (index, state
root, state height, block height); the Bridge takes a post as a PostRef and
has Commitments check it against that record (`checkPost`).

    latest_post         the latest post's ref, from one `latestPost()` call (so
                        its fields belong to one post)
    posts_back          refs read from Committed and Resumed logs, newest first,
                        scanning back from the latest post's L1 block in ranges
                        of at most MAX_LOG_RANGE blocks, at most
                        MAX_SCAN_RANGES of them
    escape_posts        the pair an escape names: the last undisputed post and,
                        unless it is the latest, the post after it

Every ref read from logs is checked with `checkPost` before it is used, so an
endpoint that invents logs makes a call fail here, not a transaction revert.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from web3.contract import Contract

from sequencer_net.l1.link import CommitmentsTip, read_tip
from sequencer_net.l1.scan import MAX_LOG_RANGE

HISTORY: Final = 1024
"""Posts Commitments keeps (Commitments.HISTORY)."""
MAX_SCAN_RANGES: Final = 64
"""Log ranges `posts_back` reads before it gives up (128,000 L1 blocks)."""


class PostNotFound(LookupError):
    """The post an operation needs is not (or no longer) in the contract's history."""


@dataclass(frozen=True, slots=True)
class PostRef:
    """A post as Commitments.PostRef names it."""

    index: int
    state_root: bytes
    state_height: int
    height: int

    def as_abi(self) -> tuple[int, bytes, int, int]:
        return (self.index, self.state_root, self.state_height, self.height)


NO_POST: Final = PostRef(index=0, state_root=bytes(32), state_height=0, height=0)
"""The ref passed where the Bridge reads none (the next post after the latest)."""


def latest_post(commitments: Contract) -> PostRef | None:
    """The latest post's ref (None before the first post), as Commitments recorded it.

    It comes from one `latestPost()` call, answered from one state of the
    contract, so its four fields belong to one post and the Bridge takes it
    (no PostMismatch). Separate view calls (`postCount`, `latestStateRoot`,
    `latestStateHeight`, `latestHeight`) would not do: an endpoint may answer a
    call at its head block from its live state (anvil does), so a post mined
    between two of them yields a ref mixing two posts, even when every call
    names one block number. A post landing after the call leaves the ref valid
    for a withdrawal until HISTORY posts come after it or a `resume` ends its
    era, whether or not it is still the latest.
    """
    return tip_ref(read_tip(commitments))


def tip_ref(tip: CommitmentsTip) -> PostRef | None:
    """The ref of `tip`'s latest post (None before the first post)."""
    if tip.post_count == 0:
        return None
    return PostRef(
        index=tip.post_count - 1,
        state_root=tip.latest_state_root,
        state_height=tip.latest_state_height,
        height=tip.latest_height,
    )


def check_post(commitments: Contract, ref: PostRef) -> tuple[int, bool, bool]:
    """Commitments.checkPost(ref): (era, disputed, latest); reverts as the contract does."""
    era, disputed, latest = commitments.functions.checkPost(ref.as_abi()).call()
    return int(era), bool(disputed), bool(latest)


def _ref_of(entry: Any, height_field: str) -> PostRef:
    args = entry["args"]
    return PostRef(
        index=int(args["postIndex"]),
        state_root=bytes(args["stateRoot"]),
        state_height=int(args["stateHeight"]),
        height=int(args[height_field]),
    )


def posts_back(commitments: Contract, last_post_block: int) -> Iterator[PostRef]:
    """Refs from Committed and Resumed logs, newest first, scanning back from
    L1 block `last_post_block` in ranges of MAX_LOG_RANGE blocks, at most
    MAX_SCAN_RANGES of them (PostNotFound after that)."""
    end = last_post_block
    for _ in range(MAX_SCAN_RANGES):
        if end < 0:
            return
        start = max(0, end - MAX_LOG_RANGE + 1)
        committed = commitments.events.Committed().get_logs(from_block=start, to_block=end)
        resumed = commitments.events.Resumed().get_logs(from_block=start, to_block=end)
        refs = []
        for entries, height_field in ((committed, "toHeight"), (resumed, "fromHeight")):
            for entry in entries:
                if not start <= int(entry["blockNumber"]) <= end:
                    raise PostNotFound(
                        f"a log of block {entry['blockNumber']} outside {start}..{end}"
                    )
                refs.append(_ref_of(entry, height_field))
        yield from sorted(refs, key=lambda ref: ref.index, reverse=True)
        end = start - 1
    raise PostNotFound(f"no post found in the logs before L1 block {end + 1} within the scan bound")


def escape_posts(commitments: Contract) -> tuple[PostRef, PostRef]:
    """(post, next) for Bridge.escapeCollateral/escapeBalance: the latest post
    while Commitments is not frozen; once frozen by evidence, the last post
    below the disputed height and the post after it (NO_POST if the latest
    post is undisputed). Raises PostNotFound when the history holds no
    undisputed post of the current era."""
    tip = read_tip(commitments)  # one call: the latest post, the freeze and its height agree
    latest = tip_ref(tip)
    if latest is None:
        raise PostNotFound("nothing is posted on the L1 yet")
    disputed_height = tip.disputed_height
    if not tip.frozen or disputed_height is None or latest.height < disputed_height:
        return latest, NO_POST
    first = max(tip.era_first_post, latest.index + 1 - HISTORY)
    after = latest
    for ref in posts_back(commitments, tip.last_post_block):
        if ref.index >= after.index:
            continue  # the latest post itself (read from latestPost), or a duplicate log
        if ref.index != after.index - 1 or ref.index < first:
            break
        if ref.height < disputed_height:
            check_post(commitments, ref)
            check_post(commitments, after)
            return ref, after
        after = ref
    raise PostNotFound(
        f"no undisputed post (below height {disputed_height}) in the history of this era"
    )
