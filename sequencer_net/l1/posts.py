"""The Commitments contract's posts, as the Bridge takes them: PostRefs.

Commitments keeps a record of each of its last HISTORY posts (index, state
root, state height, block height); the Bridge takes a post as a PostRef and
has Commitments check it against that record (`checkPost`).

    latest_post         the latest post's ref, from the contract's views, checked
                        with `checkPost` and read again (at most LATEST_POST_READS
                        times) while a post landing between the reads mixed two
                        posts' fields
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
from web3.exceptions import ContractCustomError

from sequencer_net.l1.artifacts import UnknownCustomError, custom_error_name
from sequencer_net.l1.scan import MAX_LOG_RANGE

HISTORY: Final = 1024
"""Posts Commitments keeps (Commitments.HISTORY)."""
MAX_SCAN_RANGES: Final = 64
"""Log ranges `posts_back` reads before it gives up (128,000 L1 blocks)."""
LATEST_POST_READS: Final = 5
"""Reads of the latest post's ref before `latest_post` gives up (PostsMoving)."""
_MOVED: Final = frozenset({"PostMismatch", "PostNotMade", "PostOfEndedEra"})
"""checkPost's errors for a ref whose fields a post landing between reads mixed."""


class PostNotFound(LookupError):
    """The post an operation needs is not (or no longer) in the contract's history."""


class PostsMoving(RuntimeError):
    """A post landed during each of LATEST_POST_READS reads of the latest one."""


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

    The ref's four fields come from four view calls, all asked at one L1 block.
    That alone does not make them belong together: an endpoint may answer a call
    at its head block from its live state (anvil does), so a post mined between
    the calls gives a ref mixing two posts, which the Bridge refuses
    (PostMismatch). The ref is therefore checked with one `checkPost` call and
    read again while it does not match a record, at most LATEST_POST_READS times
    (PostsMoving after that). A ref that matched stays valid until HISTORY
    posts come after it or a `resume` ends its era, whether or not it is still
    the latest.
    """
    for _ in range(LATEST_POST_READS):
        ref = _read_latest_post(commitments)
        if ref is None:
            return None
        try:
            check_post(commitments, ref)
        except ContractCustomError as exc:
            if _error_name(exc) not in _MOVED:
                raise
            continue
        return ref
    raise PostsMoving(f"a post landed during each of {LATEST_POST_READS} reads of the latest post")


def _error_name(exc: ContractCustomError) -> str:
    try:
        return custom_error_name(exc)
    except UnknownCustomError:
        return ""


def _read_latest_post(commitments: Contract) -> PostRef | None:
    """The latest post's ref from the contract's views, each asked at one L1 block."""
    block = commitments.w3.eth.block_number
    functions = commitments.functions
    count = int(functions.postCount().call(block_identifier=block))
    if count == 0:
        return None
    return PostRef(
        index=count - 1,
        state_root=bytes(functions.latestStateRoot().call(block_identifier=block)),
        state_height=int(functions.latestStateHeight().call(block_identifier=block)),
        height=int(functions.latestHeight().call(block_identifier=block)),
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
    latest = latest_post(commitments)
    if latest is None:
        raise PostNotFound("nothing is posted on the L1 yet")
    functions = commitments.functions
    if not functions.frozen().call():
        return latest, NO_POST
    era = int(functions.era().call())
    disputed, disputed_height = functions.disputedHeight(era).call()
    if not disputed or latest.height < int(disputed_height):
        return latest, NO_POST
    first = max(int(functions.eraFirstPost().call()), latest.index + 1 - HISTORY)
    after = latest
    for ref in posts_back(commitments, int(functions.lastPostBlock().call())):
        if ref.index >= after.index:
            continue  # the latest post itself (read from the views), or a duplicate log
        if ref.index != after.index - 1 or ref.index < first:
            break
        if ref.height < int(disputed_height):
            check_post(commitments, ref)
            check_post(commitments, after)
            return ref, after
        after = ref
    raise PostNotFound(
        f"no undisputed post (below height {disputed_height}) in the history of this era"
    )
