"""Fetching batches a block names but this validator has not received.

Broadcast is best effort: a validator that missed a batch (it was down, or a
frame was dropped) asks for it by digest over the request/response protocol,
first from the validator the block came from, then from the others. A batch
is accepted only if its digest matches one asked for and every transaction
in it verifies.

A batch whose broadcast reached this validator and waits in its verification
queue is waited for first (`IN_FLIGHT_WAIT_S`): under load a batch's
certificate, or a block naming it, often arrives while the batch is still
being verified, and fetching it then would cost a request and verify every
signature in it a second time.
"""

from __future__ import annotations

import logging

import msgspec

from sequencer_net.batches.batch import batch_digest
from sequencer_net.batches.pool import MAX_BATCHES_PER_REQUEST, BatchPool, BatchRequest
from sequencer_net.node.requests import RequestKind
from sequencer_net.p2p.network import P2PNetwork

log = logging.getLogger("seqnet.fetch")

IN_FLIGHT_WAIT_S = 0.5
"""Longest a fetch waits for requested batches that are queued for verification
here before asking a peer for those still missing."""

_list_decoder = msgspec.msgpack.Decoder(list[bytes])
_encoder = msgspec.msgpack.Encoder()


def encode_batch_request(request: BatchRequest) -> bytes:
    return RequestKind.BATCHES.value + _encoder.encode(request)


def encode_batch_answer(batches: list[bytes]) -> bytes:
    return _encoder.encode(batches)


class BatchFetcher:
    def __init__(self, pool: BatchPool, p2p: P2PNetwork) -> None:
        self.pool = pool
        self.p2p = p2p

    async def fetch(self, request: BatchRequest, prefer: int | None = None) -> int:
        """Fetch the requested batches; return how many are still missing. Asks
        one peer at a time (the preferred one first) and keeps asking a peer as
        long as its answers bring batches (an answer is cut to a byte budget).
        Batches queued for verification here are waited for first."""
        wanted = {d for d in request.digests if d not in self.pool}
        if wanted and self.pool.any_in_flight(wanted):
            await self.pool.wait_for(wanted, IN_FLIGHT_WAIT_S)
            wanted = {d for d in wanted if d not in self.pool}
        peers = self.p2p.connected_peers()
        if prefer is not None and prefer in peers:
            peers.remove(prefer)
            peers.insert(0, prefer)
        for peer in peers:
            while wanted:
                got = await self._ask(peer, wanted)
                if not got:
                    break
        return len(wanted)

    async def _ask(self, peer: int, wanted: set[bytes]) -> int:
        """One request to `peer` for (the first MAX_BATCHES_PER_REQUEST of) `wanted`;
        returns how many arrived and verified (removed from `wanted`)."""
        asked = sorted(wanted)[:MAX_BATCHES_PER_REQUEST]
        try:
            answer = await self.p2p.request(peer, encode_batch_request(BatchRequest(asked)))
            batches = _list_decoder.decode(answer) if answer else []
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("event=bad_batch_answer peer=%d reason=%s", peer, exc)
            return 0
        except Exception as exc:  # transport failure: try the next peer
            log.debug("event=batch_fetch_failed peer=%d reason=%s", peer, exc)
            return 0
        got = 0
        for encoded in batches[: len(asked)]:
            digest = batch_digest(encoded)
            if digest in wanted and await self.pool.accept_fetched(digest, encoded):
                wanted.discard(digest)
                got += 1
        return got
