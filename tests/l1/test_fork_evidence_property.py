"""The watcher's fork proof as a property, over random forks (no L1 needed).

Four validators, 0 and 1 Byzantine: after a common prefix, side A (signed by
0, 1, 2) and side B (signed by 0, 1, 3) each finalize their own chain, going
through the views at their own pace: every view a side passes either
finalizes its block at the next height or is nullified. A watcher on side A
compares one of B's posted headers with what A certified (the certificates
`EvidenceWatcher.compare` gathers). Whenever A has got past the posted view,
`conflict_evidence` must prove Byzantine validators only, each at the
posting's height or below, with enough of them to freeze (more than a third of
the power): the first posting of a fork can pay nothing."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain, vote_digest
from consensus.messages import Certificate, VoteKind
from consensus.types import ZERO_DIGEST, Digest, Height, View
from sequencer_net.l1.evidence import disputed_height
from sequencer_net.l1.evidence_watch import Posting, conflict_evidence
from sequencer_net.l1.header import L1Header, sign_packed

KEYS = [PrivateKey(keccak256(b"fork property validator %d" % i)) for i in range(4)]
DOMAIN = Domain(31337, b"\x11" * 20, keccak256(b"fork property genesis"))
SEPARATOR = DOMAIN.separator()
BYZANTINE = {0, 1}
SIDE_A, SIDE_B = [0, 1, 2], [0, 1, 3]
PREFIX = 3  # heights 1..3 in views 1..3 are common


def certificate(
    kind: VoteKind, view: int, height: int, block: bytes, signers: list[int]
) -> Certificate:
    digest = vote_digest(SEPARATOR, kind, View(view), Height(height), Digest(block))
    return Certificate(
        kind=kind,
        view=view,
        height=height,
        block=block,
        signers=signers,
        signatures=[KEYS[i].sign_digest(digest) for i in signers],
    )


@dataclass
class Side:
    """One side of the fork: its finalized headers by height, and the views it nullified."""

    headers: dict[int, L1Header]
    nullified: set[int]
    last_view: int

    @classmethod
    def build(cls, name: bytes, outcomes: list[bool]) -> Side:
        """`outcomes[i]` says whether view PREFIX+1+i finalized a block (else it was nullified)."""
        headers: dict[int, L1Header] = {}
        nullified: set[int] = set()
        height = PREFIX
        for offset, finalized in enumerate(outcomes):
            view = PREFIX + 1 + offset
            if not finalized:
                nullified.add(view)
                continue
            height += 1
            headers[height] = L1Header(
                view=view,
                height=height,
                parent=keccak256(name + b" parent %d" % height),
                proposer=view % 4,
                timestamp_ms=1_760_000_000_000 + view,
                state_height=height,
                state_root=keccak256(name + b" root %d" % height),
                batches_hash=keccak256(name + b" batches %d" % height),
                namespace_root=keccak256(name + b" ns %d" % height),
            )
        return cls(headers, nullified, PREFIX + len(outcomes))

    def certificates_of_view(self, view: int, signers: list[int]) -> list[Certificate]:
        """What `StoreSource.view_certificates` answers on this side."""
        for header in self.headers.values():
            if header.view == view:
                return [
                    certificate(
                        VoteKind.FINALIZE, view, header.height, header.block_hash(), signers
                    )
                ]
        if view in self.nullified:
            return [certificate(VoteKind.NULLIFY, view, 0, ZERO_DIGEST, signers)]
        return []


outcomes = st.lists(st.booleans(), min_size=1, max_size=8).filter(any)


@settings(max_examples=60, deadline=None)
@given(a=outcomes, b=outcomes, data=st.data())
def test_a_posted_fork_is_proven_at_or_below_its_height_by_byzantine_validators_only(
    a: list[bool], b: list[bool], data: st.DataObject
) -> None:
    side_a, side_b = Side.build(b"A", a), Side.build(b"B", b)
    height = data.draw(st.sampled_from(sorted(side_b.headers)), label="posted height")
    posted = side_b.headers[height]
    posting = Posting(
        posted, sign_packed([KEYS[i] for i in SIDE_B], posted.finalize_digest(DOMAIN))
    )

    # What compare() gathers on side A: its own block at that height, and the
    # certificates of the posted view and of its own block's view.
    gathered: list[Certificate] = []
    views = {posted.view}
    own = side_a.headers.get(height)
    if own is not None:
        if own.block_hash() == posted.block_hash():
            return  # no conflict at this height
        gathered.append(certificate(VoteKind.FINALIZE, own.view, height, own.block_hash(), SIDE_A))
        views.add(own.view)
    for view in sorted(views):
        gathered += side_a.certificates_of_view(view, SIDE_A)

    records = conflict_evidence(SEPARATOR, posting, gathered, height)
    offenders = {record.offender for record in records}
    assert offenders <= BYZANTINE, records
    for record in records:
        assert disputed_height(record.first, record.second) <= height
        assert {record.first.view, record.second.view} == {record.first.view}
    if side_a.last_view >= posted.view:
        # A has finalized or nullified the posted view: both Byzantine validators
        # (half the power, more than a third) are proven.
        assert offenders == BYZANTINE, (a, b, height)
