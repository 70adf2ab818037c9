"""The closed sets of inputs (events) and outputs (actions) of the consensus core.

The driver (the node, or the simulator) feeds events to `ConsensusCore.handle`
and carries out the returned actions in order. Order matters: a `Persist`
comes before the `Broadcast` of the vote it protects, and the driver must
finish writing it durably before it sends anything that follows.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from consensus.messages import (
    Block,
    BlockRequest,
    Certificate,
    CertificateRequest,
    EpochEndProof,
    Message,
    SyncRequest,
    Vote,
)
from consensus.types import Digest, Height, ValidatorIndex, View


class SafetyRecord(msgspec.Struct, frozen=True, array_like=True):
    """What a validator must remember across restarts to never double-sign.

    It describes the highest view the validator has voted in. Votes are only
    ever cast in this view or higher ones, so this one record is enough:
    - `notarized`: the block it notarized in `view` (or proposed, as leader);
    - `nullified`: it voted to skip `view` (then it never finalizes in it);
    - `finalized`: it sent a finalize vote in `view` (then it never nullifies it).
    """

    view: int
    notarized: bytes | None = None
    nullified: bool = False
    finalized: bool = False


@dataclass(frozen=True, slots=True)
class CommittedTip:
    """The last block the driver has durably committed (genesis at start)."""

    height: Height
    digest: Digest
    view: View


# ---- events (inputs) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Begin (or resume after a crash) from durable state."""

    safety: SafetyRecord | None
    committed: CommittedTip
    certificates: tuple[Certificate, ...] = ()
    """Certificates the driver stored on StoreCertificate, in any order."""
    tip_finalization: Certificate | None = None
    """The finalization stored with the committed tip (None at genesis): it
    justifies proposing on the tip and shows lagging peers where the chain is."""


@dataclass(frozen=True, slots=True)
class MessageReceived:
    sender: ValidatorIndex  # authenticated transport identity of the peer
    message: Message


@dataclass(frozen=True, slots=True)
class TimerFired:
    view: View


@dataclass(frozen=True, slots=True)
class PayloadBuilt:
    """The application's answer to BuildPayload."""

    view: View
    payload: bytes


@dataclass(frozen=True, slots=True)
class PayloadVerified:
    """The application's answer to VerifyPayload."""

    view: View
    block: Digest
    valid: bool


@dataclass(frozen=True, slots=True)
class EpochEndReceived:
    """A peer's proof that this epoch ended (the driver routes it by epoch). A
    validator that fell behind learns the finalization and tail from it, then
    fetches and commits the blocks up to the epoch's last height."""

    proof: EpochEndProof


Event = Start | MessageReceived | TimerFired | PayloadBuilt | PayloadVerified | EpochEndReceived

# ---- actions (outputs) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Persist:
    """Write the safety record durably (fsync) before carrying out later actions."""

    record: SafetyRecord


@dataclass(frozen=True, slots=True)
class StoreBlock:
    """Write this block durably before carrying out later actions.

    Emitted before the validator's notarize vote (or proposal) for it: 2f+1
    votes then guarantee that f+1 honest validators can still serve the block
    after any crash, so a finalization of a descendant can always be committed.
    Also emitted for blocks fetched for a finalization (authenticated by its
    hash chain), so a long gap is walked back on disk rather than in memory.
    The driver must be able to return it from `stored_block` until it commits.
    `synced` is False for fetched blocks: peers can serve them again after a
    crash, so they need no fsync.
    """

    block: Block
    synced: bool = True


@dataclass(frozen=True, slots=True)
class StoreCertificate:
    """Keep this certificate so a restart can resume from it (no fsync needed).

    Certificates are what moves a validator from view to view; without them a
    restarted validator could not show lagging peers why it left a view, nor
    justify its own proposals. The driver may drop any certificate whose view is
    below the highest stored finalization.
    """

    certificate: Certificate


@dataclass(frozen=True, slots=True)
class Send:
    to: ValidatorIndex
    message: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send to every other validator."""

    message: Message


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire TimerFired(view) after `delay_ms`; a later SetTimer replaces it."""

    view: View
    delay_ms: int


@dataclass(frozen=True, slots=True)
class BuildPayload:
    """As leader of `view`, ask the application for the payload of a new block."""

    view: View
    height: Height
    parent: Digest


@dataclass(frozen=True, slots=True)
class VerifyPayload:
    """Ask the application whether a proposed block's payload is valid."""

    view: View
    block: Block


@dataclass(frozen=True, slots=True)
class Commit:
    """`block` is final; commits arrive in height order, each exactly once.

    `finalization` certifies `block` itself or a descendant of it (the
    certificate that finalized a chain commits every ancestor in it).
    """

    block: Block
    finalization: Certificate


@dataclass(frozen=True, slots=True)
class EpochEnded:
    """This instance committed the last block of its epoch, `last_block` at
    `height`, and stops acting (it still answers peers' fetch requests).

    Follows the Commit of that block in the same action list. The driver stores
    the proof, sends it to whoever needs it (the next epoch's validators, peers
    that fell behind) and starts the next epoch's instance on this anchor.
    """

    last_block: Digest
    height: Height
    proof: EpochEndProof


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two signed votes by one validator that no honest validator would cast together."""

    offender: ValidatorIndex
    first: Vote
    second: Vote
    reason: str


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class Fetch:
    """Ask one peer (the driver picks whom, `prefer` first) and feed back the answer.

    A `BlockRequest` asks for a block by digest and its ancestors; a
    `SyncRequest` asks for committed blocks by height (catching up from far
    behind); a `CertificateRequest` asks for nullifications a proposal relies
    on. The core asks again itself (on its retry timer, or after progress) when
    no useful answer came, so the driver may drop a request it cannot place.
    The driver answers peers' requests with `consensus.sync`.
    """

    request: BlockRequest | SyncRequest | CertificateRequest
    prefer: ValidatorIndex | None = None


Action = (
    Persist
    | StoreBlock
    | StoreCertificate
    | Send
    | Broadcast
    | SetTimer
    | BuildPayload
    | VerifyPayload
    | Commit
    | EpochEnded
    | ReportEvidence
    | Fetch
)
