"""A test-only fault for real validators: equivocate, to fork a local test network.

For local test networks only (`[consensus] test_fault = "equivocate"`): a
validator refuses to start with it unless its genesis chain id lies in
LOCAL_CHAIN_ID_RANGE (sequencer_net/home/genesis.py), the range a fresh local
genesis draws from. The fault is dormant until the process gets SIGUSR1
(`arm`), so a test network can first commit and post an undisputed history.

Once armed, with the validators split into two sides by index parity (side 0:
even indices, side 1: odd), and a block's side the parity of its payload's
timestamp (so every faulty validator tells it from the block alone):

- As leader, it makes a twin of its block (the same payload with a timestamp
  one millisecond later, so another digest and the other side, signed as a
  second proposal for the view) and sends each side its own twin first and
  the other one right after, which an honest validator ignores (it votes for
  the first proposal of a view it sees).
- As voter, it co-signs every proposal it sees, NOTARIZE and FINALIZE at once,
  for the side of the block.
- Votes and certificates for a block whose side it knows go to that side at
  once and to the other side `cross_delay_s` later, after each side has
  finalized its own twin; honest validators then hold both of its FINALIZE
  votes of one view (consensus/core.py reports them as evidence).

With two of four validators faulty, one honest validator on each side, each
honest validator finalizes a different twin: a fork with two valid
finalization certificates. The consensus core is untouched: all of this is in
how the driver (sequencer_net/node/driver.py) sends and co-signs.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

import msgspec

from consensus.messages import Block, Certificate, Message, Proposal, Vote, VoteKind
from consensus.payload import MalformedPayload, decode_payload, encode_payload
from consensus.types import ValidatorIndex

log = logging.getLogger("seqnet.consensus.fault")

TEST_FAULTS: Final = ("equivocate", "censor")
"""The values of `[consensus] test_fault`."""
CROSS_DELAY_BLOCKS: Final = 3
"""How long a side waits for what the faulty validator sent the other side, in
empty-block intervals: long after each side finalized its twin, within the
views a core still tallies (consensus/core.py TALLY_VIEWS_KEPT = 8 views, each
at least an empty-block interval on an idle network)."""
MAX_TRACKED: Final = 4_096
"""Blocks whose side is remembered; the oldest are forgotten."""

Outgoing = list[tuple[int, Message, float]]
"""(peer, message, delay in seconds) to send."""
Signer = Callable[[VoteKind, int, int, bytes], bytes]
"""(kind, view, height, block) -> this validator's signature of that vote."""


class TestFaultRefused(ValueError):
    """A test fault configured for a chain that is not a local test network."""

    __test__ = False  # not a pytest test class, despite the name


def check_test_fault_allowed(fault: str | None, chain_id: int) -> None:
    """Raise TestFaultRefused unless `fault` is None or the chain is a local one."""
    from sequencer_net.home.genesis import LOCAL_CHAIN_ID_RANGE

    if fault is None:
        return
    if fault not in TEST_FAULTS:
        raise TestFaultRefused(f"unknown test fault {fault!r}")
    low, high = LOCAL_CHAIN_ID_RANGE
    if not low <= chain_id < high:
        raise TestFaultRefused(
            f"[consensus] test_fault is for local test networks only: chain id {chain_id} "
            f"is outside the local range [{low}, {high})"
        )


def side_of(index: int) -> int:
    """A validator's side."""
    return index % 2


def block_side(block: Block) -> int | None:
    """A block's side: the parity of its payload's timestamp (None: malformed)."""
    try:
        return decode_payload(block.payload).timestamp_ms % 2
    except MalformedPayload:
        return None


def twin_of(proposal: Proposal, sign: Signer) -> Proposal:
    """The same proposal with its payload's timestamp one millisecond later, signed."""
    block = proposal.block
    payload = decode_payload(block.payload)
    later = msgspec.structs.replace(payload, timestamp_ms=payload.timestamp_ms + 1)
    twin = Block(
        view=block.view,
        height=block.height,
        parent=block.parent,
        proposer=block.proposer,
        payload=encode_payload(later),
    )
    signature = sign(VoteKind.NOTARIZE, block.view, block.height, twin.digest())
    return Proposal(
        block=twin, signature=signature, parent=proposal.parent, skipped=proposal.skipped
    )


class Equivocator:
    """The equivocating validator's sending rules (see the module docstring)."""

    def __init__(self, *, me: int, validators: int, sign: Signer, cross_delay_s: float) -> None:
        self.me = me
        self.cross_delay_s = cross_delay_s
        self.validators = validators
        self.sign = sign
        self.armed = False
        self.equivocations = 0
        self._side: OrderedDict[bytes, int] = OrderedDict()

    def arm(self) -> None:
        if not self.armed:
            log.warning("event=test_fault_armed fault=equivocate validator=%d", self.me)
        self.armed = True

    def peers(self, side: int | None = None) -> list[int]:
        return [
            i
            for i in range(self.validators)
            if i != self.me and (side is None or side_of(i) == side)
        ]

    # ---- what the core sends ------------------------------------------------------------

    def outgoing(self, message: Message) -> Outgoing | None:
        """How to send what the core broadcasts; None: broadcast it as usual."""
        if not self.armed:
            return None
        if isinstance(message, Proposal) and message.block.proposer == self.me:
            return self._twins(message)
        digest = _block_of(message)
        side = None if digest is None else self._side.get(digest)
        if side is None:
            return None
        return self._by_side(message, side)

    def _twins(self, proposal: Proposal) -> Outgoing | None:
        twin = twin_of(proposal, self.sign)
        side = block_side(proposal.block)
        if side is None:
            return None
        by_side = {side: proposal, 1 - side: twin}
        for s, p in by_side.items():
            self._remember(p.block.digest(), s)
        self.equivocations += 1
        log.warning(
            "event=test_fault_equivocated view=%d height=%d side0=%s side1=%s",
            proposal.block.view,
            proposal.block.height,
            by_side[0].block.digest().hex()[:12],
            by_side[1].block.digest().hex()[:12],
        )
        out: Outgoing = []
        for s in (0, 1):
            for peer in self.peers(s):
                out.append((peer, by_side[s], 0.0))
                out.append((peer, by_side[1 - s], 0.0))
        for s, p in by_side.items():
            out += self._by_side(self._vote(VoteKind.FINALIZE, p.block), s)
        return out

    # ---- what peers send ----------------------------------------------------------------

    def incoming(self, peer: int, message: Message) -> Outgoing:
        """Co-sign a leader's proposal: NOTARIZE and FINALIZE, to the side it is for."""
        if not self.armed or not isinstance(message, Proposal):
            return []
        block = message.block
        if block.proposer != peer:
            return []
        digest = block.digest()
        side = block_side(block)
        if digest in self._side or side is None:
            return []
        self._remember(digest, side)
        out: Outgoing = []
        for kind in (VoteKind.NOTARIZE, VoteKind.FINALIZE):
            out += self._by_side(self._vote(kind, block), side)
        return out

    # ---- helpers --------------------------------------------------------------------------

    def _vote(self, kind: VoteKind, block: Block) -> Vote:
        digest = block.digest()
        return Vote(
            kind=kind,
            view=block.view,
            height=block.height,
            block=digest,
            signer=ValidatorIndex(self.me),
            signature=self.sign(kind, block.view, block.height, digest),
        )

    def _by_side(self, message: Message, side: int) -> Outgoing:
        now: Outgoing = [(p, message, 0.0) for p in self.peers(side)]
        return now + [(p, message, self.cross_delay_s) for p in self.peers(1 - side)]

    def _remember(self, digest: bytes, side: int) -> None:
        self._side[digest] = side
        while len(self._side) > MAX_TRACKED:
            self._side.popitem(last=False)


def _block_of(message: Message) -> bytes | None:
    """The block a NOTARIZE or FINALIZE vote or certificate is about."""
    if isinstance(message, Vote | Certificate) and message.kind in (
        VoteKind.NOTARIZE,
        VoteKind.FINALIZE,
    ):
        return bytes(message.block)
    return None
