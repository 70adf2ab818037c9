"""Answering peers' requests for blocks and certificates.

Pure: the caller passes lookups into its own memory and storage. The validator
node and the simulator answer with these functions, so each rule lives in one
place. Every answer fits MAX_RESPONSE_BYTES by construction, whatever the size
of the blocks or the number of signers: a responder stops adding items at the
budget, and the asker asks again from where the answer ended.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from consensus.limits import (
    MAX_CERTIFICATES_PER_RESPONSE,
    MAX_RESPONSE_BYTES,
    MAX_SYNC_BLOCKS,
)
from consensus.messages import (
    Block,
    BlockRequest,
    BlockResponse,
    Certificate,
    CertificateRequest,
    CertificateResponse,
    SyncRequest,
    SyncResponse,
    VoteKind,
)

_encoder = msgspec.msgpack.Encoder()


def encoded_size(item: Block | Certificate) -> int:
    return len(_encoder.encode(item))


def answer_block_request(
    request: BlockRequest, block_by_digest: Callable[[bytes], Block | None]
) -> BlockResponse | None:
    """The block named by `request` and its ancestors, newest first, within the
    count and byte budget (always at least the named block itself)."""
    blocks: list[Block] = []
    size = 0
    digest = request.digest
    while len(blocks) < request.max_count:
        block = block_by_digest(digest)
        if block is None or block.height == 0:
            break
        size += encoded_size(block)
        if blocks and size > MAX_RESPONSE_BYTES:
            break
        blocks.append(block)
        digest = block.parent
    return BlockResponse(blocks=blocks) if blocks else None


def answer_sync_request(
    request: SyncRequest,
    block_at: Callable[[int], Block | None],
    finalization_at: Callable[[int], Certificate | None],
) -> SyncResponse | None:
    """Committed blocks from `request.from_height`, ending in a finalized one.

    A block is committed together with every block up to the one its stored
    finalization certifies, so the range is taken up to `max_count` blocks and
    then extended to that height. When the extension does not fit the count and
    byte budget, the range is cut back to the highest block whose own
    finalization certifies it; when even the first block's range does not fit,
    the answer is the top of that range instead (the certified block and as
    many ancestors as fit), so the asker learns the finalization and fetches
    the blocks below it by digest. None when nothing is stored from that height.
    """
    blocks: list[Block] = []
    size = 0
    height = request.from_height
    while len(blocks) < min(request.max_count, MAX_SYNC_BLOCKS):
        block = block_at(height)
        if block is None:
            break
        size += encoded_size(block)
        if blocks and size > MAX_RESPONSE_BYTES:
            break
        blocks.append(block)
        height += 1
    if not blocks:
        return None
    final = finalization_at(blocks[-1].height)
    if final is None:
        return None
    while final.height > blocks[-1].height:
        block = block_at(blocks[-1].height + 1)
        if block is None:
            return None
        size += encoded_size(block)
        if len(blocks) >= MAX_SYNC_BLOCKS or size > MAX_RESPONSE_BYTES:
            break
        blocks.append(block)
    if _certifies(final, blocks[-1]):
        return SyncResponse(blocks=blocks, finalization=final)
    for end in range(len(blocks) - 1, -1, -1):
        own = finalization_at(blocks[end].height)
        if own is not None and _certifies(own, blocks[end]):
            return SyncResponse(blocks=blocks[: end + 1], finalization=own)
    first_final = finalization_at(request.from_height)
    if first_final is None:
        return None
    top = _top_of_range(first_final, block_at, MAX_SYNC_BLOCKS)
    if not top or not _certifies(first_final, top[-1]):
        return None
    return SyncResponse(blocks=top, finalization=first_final)


def _certifies(cert: Certificate, block: Block) -> bool:
    return (
        cert.kind == VoteKind.FINALIZE
        and cert.height == block.height
        and cert.view == block.view
        and cert.block == block.digest()
    )


def _top_of_range(
    final: Certificate, block_at: Callable[[int], Block | None], limit: int
) -> list[Block]:
    """The finalized block and the ancestors below it that fit, ascending."""
    blocks: list[Block] = []
    size = 0
    height = final.height
    while len(blocks) < limit and height > 0:
        block = block_at(height)
        if block is None:
            break
        size += encoded_size(block)
        if blocks and size > MAX_RESPONSE_BYTES:
            break
        blocks.append(block)
        height -= 1
    blocks.reverse()
    return blocks


def answer_certificate_request(
    request: CertificateRequest,
    certificates_at: Callable[[int], list[Certificate]],
) -> CertificateResponse | None:
    """The notarizations and nullifications held for the requested views, in
    view order, within the count and byte budget."""
    certificates: list[Certificate] = []
    size = 0
    last = min(request.last_view, request.first_view + MAX_CERTIFICATES_PER_RESPONSE - 1)
    for view in range(request.first_view, last + 1):
        for cert in certificates_at(view):
            if cert.kind == VoteKind.FINALIZE or cert.view != view:
                continue
            size += encoded_size(cert)
            if size > MAX_RESPONSE_BYTES or len(certificates) >= MAX_CERTIFICATES_PER_RESPONSE:
                return CertificateResponse(certificates=certificates) if certificates else None
            certificates.append(cert)
    return CertificateResponse(certificates=certificates) if certificates else None
