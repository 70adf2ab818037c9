"""The follow protocol: full nodes read committed blocks from validators.

A full node asks validators, over `/seqnet/follow/1.0.0` (p2p/network.py:
admitted non-validators only, rate- and size-limited), for

    FOLLOW_BLOCKS  committed blocks from a height, each with the finalization
                   certificate of that block itself, or, for a block committed
                   under a descendant's finalization whose own the validator
                   never got, that descendant's (the follower accepts such a
                   block only once the answer reaches the certified descendant)
    BATCHES        batches by digest (the validators' own batch request)
    SUBMIT         one transaction for the validator's intake; the answer is
                   the intake's outcome
    EPOCH_END      the end proof of a validator-set epoch (a chain whose genesis
                   has `epochs`): it proves the epoch's last block, which may
                   have been committed under a finalization of a tail block
                   that no validator commits

A request is a `RequestKind` byte and the kind's msgpack body, as between
validators. The full node trusts nothing in an answer: `verify_blocks` checks
every block against its epoch's validator set and signing domain before
anything is stored.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

import msgspec
import trio

from consensus.epochs import EpochSchedule, InvalidEpochEnd, verify_epoch_end
from consensus.io import Commit
from consensus.limits import MAX_SYNC_BLOCKS
from consensus.messages import (
    Block,
    Certificate,
    EpochEndProof,
    MalformedMessage,
    VoteKind,
    check_certificate_shape,
)
from consensus.types import ValidatorSet
from consensus.verifier import SignatureVerifier
from sequencer_net.api.intake import Accepted, Outcome, Refused
from sequencer_net.batches.fetch import BatchFetcher, encode_batch_answer
from sequencer_net.batches.pool import MAX_BATCHES_PER_REQUEST, BatchPool, BatchRequest
from sequencer_net.node.decryption import decode_shares_request
from sequencer_net.node.requests import RequestKind, split_request
from sequencer_net.p2p.network import P2PNetwork
from sequencer_net.payload import MalformedPayload, decode_payload
from sequencer_net.payload.checks import (
    NamespaceRootMismatch,
    block_namespace_pairs,
    check_namespace_root,
)
from sequencer_net.storage.node_store import NodeStore

log = logging.getLogger("seqnet.follow")

MAX_FOLLOW_BLOCKS = min(64, MAX_SYNC_BLOCKS)
"""Blocks in one FOLLOW_BLOCKS answer."""
MAX_FOLLOW_ANSWER_BYTES = 3 * 1024 * 1024
"""Encoded blocks in one answer: it always fits one p2p response (8 MiB); a
block's payload is at most consensus MAX_PAYLOAD_BYTES, so one always fits."""
MAX_SUBMIT_BYTES = 128 * 1024
"""A relayed transaction, as large as the API's own bound on one transaction."""


class FollowBlocksRequest(msgspec.Struct, frozen=True, array_like=True):
    from_height: Annotated[int, msgspec.Meta(ge=1, le=2**62)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_FOLLOW_BLOCKS)]


class FollowBlocksAnswer(msgspec.Struct, frozen=True, array_like=True):
    """Consecutive committed blocks from the asked height, each with its own
    finalization (same length), and the responder's committed height."""

    tip: Annotated[int, msgspec.Meta(ge=0, le=2**62)]
    blocks: Annotated[list[Block], msgspec.Meta(max_length=MAX_FOLLOW_BLOCKS)]
    finalizations: Annotated[list[Certificate], msgspec.Meta(max_length=MAX_FOLLOW_BLOCKS)]


class SubmitAnswer(msgspec.Struct, frozen=True, array_like=True):
    """The validator intake's outcome: status 200 with the hash, or the refusal."""

    status: Annotated[int, msgspec.Meta(ge=100, le=599)]
    code: Annotated[str, msgspec.Meta(max_length=64)]
    message: Annotated[str, msgspec.Meta(max_length=1024)]
    hash: Annotated[bytes, msgspec.Meta(max_length=32)]


_encoder = msgspec.msgpack.Encoder()
_blocks_request_decoder = msgspec.msgpack.Decoder(FollowBlocksRequest)
_blocks_answer_decoder = msgspec.msgpack.Decoder(FollowBlocksAnswer)
_batch_request_decoder = msgspec.msgpack.Decoder(BatchRequest)
_submit_answer_decoder = msgspec.msgpack.Decoder(SubmitAnswer)
_epoch_request_decoder = msgspec.msgpack.Decoder(Annotated[int, msgspec.Meta(ge=0, le=2**62)])
_proof_decoder = msgspec.msgpack.Decoder(EpochEndProof)

MAX_EPOCH_END_ANSWER_BYTES = 1024 * 1024
"""An encoded end proof: a finalization and at most MAX_EPOCH_TAIL_BLOCKS empty
blocks (about 60 bytes each) fit well below it."""


@dataclass(frozen=True)
class FollowEpochs:
    """The epochs a follower checks blocks against: each block's finalization is
    signed by its epoch's set in its epoch's domain (`verifiers[e]`)."""

    schedule: EpochSchedule
    verifiers: tuple[SignatureVerifier, ...]


def encode_epoch_end_request(epoch: int) -> bytes:
    return RequestKind.EPOCH_END.value + _encoder.encode(epoch)


def decode_epoch_end_answer(data: bytes) -> EpochEndProof:
    """A validator's EPOCH_END answer; raises ForgedAnswer if it is not a proof
    (whether it proves anything is `verify_blocks`'s to check)."""
    if not data or len(data) > MAX_EPOCH_END_ANSWER_BYTES:
        raise ForgedAnswer(f"epoch-end answer of {len(data)} bytes")
    try:
        return _proof_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ForgedAnswer(f"undecodable epoch-end answer: {exc}") from exc


def encode_blocks_request(from_height: int, limit: int = MAX_FOLLOW_BLOCKS) -> bytes:
    return RequestKind.FOLLOW_BLOCKS.value + _encoder.encode(
        FollowBlocksRequest(from_height, limit)
    )


def encode_submit_request(encoded_tx: bytes) -> bytes:
    return RequestKind.SUBMIT.value + encoded_tx


def encode_outcome(outcome: Outcome) -> bytes:
    if isinstance(outcome, Accepted):
        return _encoder.encode(SubmitAnswer(200, "accepted", "", outcome.hash))
    return _encoder.encode(
        SubmitAnswer(outcome.status, outcome.code[:64], outcome.message[:1024], b"")
    )


def decode_outcome(data: bytes) -> Outcome:
    """The validator's answer to SUBMIT; raises ForgedAnswer if it is not one."""
    try:
        answer = _submit_answer_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ForgedAnswer(f"undecodable submit answer: {exc}") from exc
    if answer.status == 200:
        if len(answer.hash) != 32:
            raise ForgedAnswer("an accepted submission names no transaction hash")
        return Accepted(answer.hash)
    return Refused(answer.status, answer.code, answer.message)


# ---- validator side -------------------------------------------------------------------


def answer_blocks(store: NodeStore, request: FollowBlocksRequest) -> FollowBlocksAnswer:
    """Committed blocks from `request.from_height`, each with its own finalization
    (or, lacking it, the descendant's it was committed under), up to the tip,
    `limit` or the byte budget."""
    tip = store.tip()[0]
    blocks: list[Block] = []
    certs: list[Certificate] = []
    size = 0
    height = request.from_height
    while height <= tip and len(blocks) < request.limit:
        block = store.block_at(height)
        if block is None:
            break
        cert = store.own_finalization(height, block.digest()) or store.finalization_at(height)
        if cert is None:
            break
        size += len(block.payload) + 1024
        if blocks and size > MAX_FOLLOW_ANSWER_BYTES:
            break
        blocks.append(block)
        certs.append(cert)
        height += 1
    return FollowBlocksAnswer(tip, blocks, certs)


class FollowServer:
    """What a validator answers on the follow protocol."""

    def __init__(
        self,
        *,
        store: NodeStore,
        pool: BatchPool,
        submit: Callable[[bytes, str], Awaitable[Outcome]],
        is_connected: Callable[[], bool] = lambda: True,
    ) -> None:
        """Epoch-end proofs are served from `store` (a chain without epochs has none)."""
        self.store = store
        self.pool = pool
        self.submit = submit
        self.is_connected = is_connected

    async def answer(self, peer: str, data: bytes) -> bytes:
        split = split_request(data) if self.is_connected() else None
        if split is None:
            return b""
        kind, body = split
        try:
            if kind is RequestKind.FOLLOW_BLOCKS:
                request = _blocks_request_decoder.decode(body)
                return _encoder.encode(answer_blocks(self.store, request))
            if kind is RequestKind.BATCHES:
                batches = _batch_request_decoder.decode(body)
                return encode_batch_answer(self.pool.answer(batches))
            if kind is RequestKind.EPOCH_END:
                proof = self.store.epoch_end(_epoch_request_decoder.decode(body))
                return b"" if proof is None else _encoder.encode(proof)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return b""
        if kind is RequestKind.SHARES:
            # A full node opening a committed block's envelopes (node/decryption.py).
            shares = decode_shares_request(body)
            return b"" if shares is None else self.store.own_shares(shares.height) or b""
        if kind is RequestKind.SUBMIT:
            if not body or len(body) > MAX_SUBMIT_BYTES:
                return encode_outcome(Refused(413, "too_large", "transaction too large"))
            # The intake's per-client allowance applies per full node.
            return encode_outcome(await self.submit(body, f"full-node:{peer}"))
        return b""  # consensus requests are for validators only


# ---- full node side -------------------------------------------------------------------


class ForgedAnswer(Exception):
    """A validator's answer that does not verify; it is dropped whole."""


def decode_blocks_answer(data: bytes) -> FollowBlocksAnswer:
    try:
        answer = _blocks_answer_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ForgedAnswer(f"undecodable blocks answer: {exc}") from exc
    if len(answer.blocks) != len(answer.finalizations):
        raise ForgedAnswer("blocks and finalizations differ in number")
    return answer


def verify_blocks(
    answer: FollowBlocksAnswer,
    *,
    validators: ValidatorSet,
    verifier: SignatureVerifier,
    next_height: int,
    parent: bytes,
    epochs: FollowEpochs | None = None,
    proofs: Mapping[int, EpochEndProof] | None = None,
) -> list[tuple[Block, Certificate]]:
    """The answer's blocks that are proven final, each with the certificate that
    proves it: every block must extend the chain (`parent` at `next_height - 1`);
    a block's finalization is checked (a quorum of the genesis validator set) if
    it certifies that block, and then also proves every block before it that
    came with a descendant's finalization. Blocks left unproven at the end of
    the answer are not returned (asked again later). Raises ForgedAnswer naming
    the first block that breaks a rule.

    With `epochs`, a block's finalization is checked against its epoch's set and
    domain instead, and the last block of an epoch is also proven by that
    epoch's end proof in `proofs` (its finalization may certify a tail block,
    which is never committed)."""
    verified: list[tuple[Block, Certificate]] = []
    pending: list[Block] = []  # under a descendant's certificate: not proven yet
    for block, cert in zip(answer.blocks, answer.finalizations, strict=True):
        height = next_height + len(verified) + len(pending)
        if block.height != height:
            raise ForgedAnswer(f"block at height {block.height} where {height} was asked")
        if block.parent != parent:
            raise ForgedAnswer(f"block {height} does not extend the verified chain")
        digest = block.digest()
        try:
            check_certificate_shape(cert)
        except MalformedMessage as exc:
            raise ForgedAnswer(f"malformed certificate at height {height}: {exc}") from exc
        if cert.kind != VoteKind.FINALIZE:
            raise ForgedAnswer(f"certificate at height {height} is not a finalization")
        parent = digest
        if epochs is not None:
            number = epochs.schedule.epoch_of(height).number
            validators = epochs.schedule.epoch(number).validators
            verifier = epochs.verifiers[number]
            proof = None if proofs is None else proofs.get(number)
            if proof is not None and epochs.schedule.last_height(number) == height:
                try:
                    last = verify_epoch_end(
                        proof,
                        epoch=number,
                        last_height=height,
                        validators=validators,
                        verifier=verifier,
                    )
                except InvalidEpochEnd as exc:
                    raise ForgedAnswer(f"end proof of epoch {number}: {exc}") from exc
                if last != digest:
                    raise ForgedAnswer(f"epoch {number} ended with another block at {height}")
                verified.extend((ancestor, proof.finalization) for ancestor in pending)
                pending = []
                verified.append((block, proof.finalization))
                continue
        if cert.height > height:
            pending.append(block)  # proven by its descendant's certificate, if it comes
            continue
        if cert.block != digest or cert.height != height or cert.view != block.view:
            raise ForgedAnswer(f"certificate at height {height} certifies another block")
        if not verifier.check_certificate(validators, cert):
            raise ForgedAnswer(f"certificate at height {height} does not verify")
        # The chain links are hashes: a finalized block finalizes its ancestors.
        verified.extend((ancestor, cert) for ancestor in pending)
        pending = []
        verified.append((block, cert))
    return verified


# ---- the follower ---------------------------------------------------------------------

POLL_S = 0.2
"""How long a caught-up follower waits before asking again."""
RETRY_S = 1.0
"""How long the follower waits after every validator failed it."""
SKIP_FAILED_S = 10.0
"""A validator that failed a request (unreachable, timed out, forged answer) is
asked last for this long: one that is down costs a dial timeout per ask."""


class FollowerStats:
    def __init__(self) -> None:
        self.forged_answers = 0
        self.failed_requests = 0
        self.blocks_verified = 0
        self.root_mismatches = 0


class Follower:
    """Asks validators for committed blocks, verifies them, feeds the pipeline."""

    def __init__(
        self,
        *,
        p2p: P2PNetwork,
        store: NodeStore,
        pool: BatchPool,
        fetcher: BatchFetcher,
        validators: ValidatorSet,
        verifier: SignatureVerifier,
        commits: trio.MemorySendChannel[Commit],
        epochs: FollowEpochs | None = None,
        peers: Callable[[], list[int]] | None = None,
    ) -> None:
        """`epochs`: the genesis epoch schedule, on a chain that has later epochs.
        `peers`: whom to ask, in preference order (by default every connected
        validator)."""
        self.p2p = p2p
        self.store = store
        self.pool = pool
        self.fetcher = fetcher
        self.validators = validators  # the genesis set: what certificates must satisfy
        self.verifier = verifier
        self.commits = commits
        self.epochs = epochs
        self.proofs: dict[int, EpochEndProof] = {}
        """End proofs of epochs this follower has not left yet (fetched when a
        block at an epoch's last height needs one)."""
        height, digest, _ = store.tip()
        self.next_height = height + 1
        self.parent = digest
        self.peers = peers
        self.until: int | None = None
        """The last height to commit (a validator following one epoch); None: no end."""
        self.peer_tip = 0
        self.stats = FollowerStats()
        self._rotation = itertools.count()
        self._failed_at: dict[int, float] = {}

    def order(self) -> list[int]:
        """Validators to ask, in rotation, those that failed lately last."""
        peers = self.p2p.connected_peers() if self.peers is None else self.peers()
        if not peers:
            return []
        start = next(self._rotation) % len(peers)
        rotated = peers[start:] + peers[:start]
        now = trio.current_time()
        recent = {p for p, t in self._failed_at.items() if now - t < SKIP_FAILED_S}
        return [p for p in rotated if p not in recent] + [p for p in rotated if p in recent]

    async def run(self) -> None:
        while True:
            progressed = await self.step()
            if not progressed:
                await trio.sleep(POLL_S)

    async def step(self) -> bool:
        """Ask validators in turn until one gives verified blocks (or all are
        caught up or fail); True if blocks were passed on."""
        caught_up = False
        limit = MAX_FOLLOW_BLOCKS
        if self.until is not None:
            limit = min(limit, self.until - self.next_height + 1)
            if limit < 1:
                return False
        for peer in self.order():
            try:
                data = await self.p2p.request(peer, encode_blocks_request(self.next_height, limit))
            except Exception as exc:  # transport: try the next validator
                self.stats.failed_requests += 1
                self._failed_at[peer] = trio.current_time()
                log.debug("event=follow_request_failed peer=%d reason=%s", peer, exc)
                continue
            try:
                answer = decode_blocks_answer(data)
                if len(answer.blocks) > limit:  # never past `until`
                    answer = FollowBlocksAnswer(
                        answer.tip, answer.blocks[:limit], answer.finalizations[:limit]
                    )
                verified = await self._verify(answer)
                if not verified and await self._fetch_epoch_end(peer, answer):
                    verified = await self._verify(answer)
            except ForgedAnswer as exc:
                self.stats.forged_answers += 1
                self._failed_at[peer] = trio.current_time()
                log.warning("event=forged_answer peer=%d reason=%s", peer, exc)
                continue
            self.peer_tip = max(self.peer_tip, answer.tip)
            if not verified:
                if answer.tip < self.next_height:
                    return False  # caught up with this validator: poll again later
                caught_up = True  # it holds the block, not its own certificate yet
                continue
            for block, cert in verified:
                if not await self._batches_match(block, peer):
                    return False
                self._keep_epoch_end(block)
                log.info("event=decided height=%d", block.height)
                await self.commits.send(Commit(block, cert))
                self.next_height = block.height + 1
                self.parent = block.digest()
                self.stats.blocks_verified += 1
            return True
        if not caught_up:
            await trio.sleep(RETRY_S - POLL_S)
        return False

    def _keep_epoch_end(self, block: Block) -> None:
        """Store the end proof that proved an epoch's last block (verified with it
        by `verify_blocks`), so this node's API can prove that block to subscribers
        when no certificate of its own exists."""
        if self.epochs is None:
            return
        number = self.epochs.schedule.epoch_of(block.height).number
        proof = self.proofs.get(number)
        if proof is not None and self.epochs.schedule.last_height(number) == block.height:
            self.store.save_epoch_end(proof)

    async def _verify(self, answer: FollowBlocksAnswer) -> list[tuple[Block, Certificate]]:
        """`verify_blocks` in a worker thread, on this follower's position and
        end proofs as they are now (taken here, on the loop, not read later
        from the thread)."""
        check = functools.partial(
            verify_blocks,
            answer,
            validators=self.validators,
            verifier=self.verifier,
            next_height=self.next_height,
            parent=self.parent,
            epochs=self.epochs,
            proofs=dict(self.proofs),
        )
        return await trio.to_thread.run_sync(check)

    async def _fetch_epoch_end(self, peer: int, answer: FollowBlocksAnswer) -> bool:
        """The answer reaches the last block of the current epoch and proves
        nothing: ask `peer` for the epoch's end proof (the last block may be
        committed under a tail block's finalization). True if one came."""
        if self.epochs is None or not answer.blocks:
            return False
        schedule = self.epochs.schedule
        epoch = schedule.epoch_of(self.next_height).number
        last = schedule.last_height(epoch)
        if last is None or epoch in self.proofs:
            return False
        if last > self.next_height + len(answer.blocks) - 1:
            return False
        try:
            data = await self.p2p.request(peer, encode_epoch_end_request(epoch))
        except Exception as exc:  # transport: the next step asks again
            log.debug("event=epoch_end_request_failed peer=%d reason=%s", peer, exc)
            return False
        proof = decode_epoch_end_answer(data)  # ForgedAnswer: dropped with the answer
        if proof.epoch != epoch:
            raise ForgedAnswer(f"asked for epoch {epoch}'s end proof, got epoch {proof.epoch}'s")
        self.proofs = {e: p for e, p in self.proofs.items() if e >= epoch}
        self.proofs[epoch] = proof
        return True

    async def _batches_match(self, block: Block, peer: int) -> bool:
        """Fetch the block's batches (digest-checked, transactions verified by the
        pool) and check the payload's namespace root against them."""
        try:
            payload = decode_payload(block.payload)
        except MalformedPayload:
            # A quorum finalized it: the pipeline commits it empty, as validators do.
            log.error("event=committed_malformed_payload height=%d", block.height)
            return True
        digests = list(payload.batches)
        for i in range(0, len(digests), MAX_BATCHES_PER_REQUEST):
            chunk = [d for d in digests[i : i + MAX_BATCHES_PER_REQUEST] if d not in self.pool]
            if chunk:
                await self.fetcher.fetch(BatchRequest(chunk), prefer=peer)
        batches = []
        for digest in digests:
            pairs = self.pool.namespace_pairs(digest)
            if pairs is None:
                log.info("event=batches_missing height=%d retry=yes", block.height)
                return False
            batches.append(pairs)
        try:
            check_namespace_root(payload, block_namespace_pairs(batches))
        except NamespaceRootMismatch as exc:
            # Batches are authenticated by digest and the payload by a quorum's
            # certificate: only more than f faulty validators get here. Stop
            # at this block (nothing unverified is executed) and say so.
            self.stats.root_mismatches += 1
            log.critical("event=namespace_root_mismatch height=%d reason=%s", block.height, exc)
            await trio.sleep(RETRY_S * 10)
            return False
        return True
