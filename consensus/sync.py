"""Answering forward-sync requests from a node's store of committed blocks.

Pure: the caller passes lookups into its own storage. The validator node and
the simulator both answer `SyncRequest`s with this function, so the rule lives
in one place.
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.limits import MAX_SYNC_BLOCKS
from consensus.messages import Block, Certificate, SyncRequest, SyncResponse


def answer_sync_request(
    request: SyncRequest,
    block_at: Callable[[int], Block | None],
    finalization_at: Callable[[int], Certificate | None],
) -> SyncResponse | None:
    """Committed blocks from `request.from_height`, ending in a finalized one.

    A block commits together with the finalization of its highest descendant
    in the same commit, so the range is extended up to the height that
    certificate names (at most MAX_SYNC_BLOCKS blocks in all). None when we have
    nothing from that height, or the range would be too long.
    """
    blocks: list[Block] = []
    height = request.from_height
    last = request.from_height + request.max_count - 1
    while height <= last:
        block = block_at(height)
        if block is None:
            break
        blocks.append(block)
        height += 1
    if not blocks:
        return None
    final = finalization_at(blocks[-1].height)
    while final is not None and final.height > blocks[-1].height:
        if len(blocks) >= MAX_SYNC_BLOCKS:
            return None
        block = block_at(blocks[-1].height + 1)
        if block is None:
            return None
        blocks.append(block)
    if final is None or final.height != blocks[-1].height or final.block != blocks[-1].digest():
        return None
    return SyncResponse(blocks=blocks, finalization=final)
