"""Every bound of the consensus core, in one place, with its reason."""

# Wire-level caps: checked on the raw bytes before any decoding.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""A proposal carries its payload (batch certificate digests in the node) plus
the certificates that justify its view; 4 MiB is far above a real proposal."""

MAX_PAYLOAD_BYTES = 1024 * 1024
"""The payload of one block. The node puts batch digests here, not transactions."""

MAX_VALIDATORS = 1024
"""Largest validator set a certificate may name; bounds signer lists."""

MAX_CARRIED_NULLIFICATIONS = 8
"""Nullifications a proposal carries for the views it skips: those of the views
just below its own, so a validator that missed them can enter the view and
vote at once. A proposal may skip any number of views; a voter that lacks a
nullification the proposal does not carry fetches it (CertificateRequest)."""

MAX_FUTURE_VIEWS = 64
"""Votes and proposals for views this far ahead of ours are dropped, bounding
tally memory."""

MAX_VIEW_JUMP = 1 << 20
"""A notarization or nullification may move a validator at most this many views
past the view of the highest finalization it knows (more than a day of views at
any realistic pace). Finalizations move it without bound: a validator far
behind catches up through them. Keeps one certificate from pushing a node
towards the end of the view space."""

MAX_BLOCKS_PER_RESPONSE = 64
"""Blocks in one BlockResponse (and the most one BlockRequest asks for)."""

MAX_EPOCH_TAIL_BLOCKS = 4096
"""Tail blocks an EpochEndProof may carry: the empty blocks between the last block
of an epoch and the block whose finalization committed it. Each is about 60
bytes, so a full proof stays far below MAX_MESSAGE_BYTES. A tail grows by one
block per view that is notarized but not finalized; after the network settles
the first such view finalizes, so real tails are a block or two."""

MAX_SYNC_BLOCKS = 128
"""Blocks in one forward-sync response."""

MAX_RESPONSE_BYTES = 3 * 1024 * 1024
"""Encoded blocks (or certificates) a responder puts in one answer. Responses are
cut to fit this budget, so every answer is below MAX_MESSAGE_BYTES by
construction, whatever the size of the blocks (one block is at most
MAX_PAYLOAD_BYTES plus a small header)."""

MAX_CERTIFICATES_PER_RESPONSE = 256
"""Certificates in one CertificateResponse (and views one request may name)."""

SYNC_GAP = MAX_BLOCKS_PER_RESPONSE
"""A validator missing blocks more than this many heights above its tip also asks
for committed blocks forward by height (SyncRequest), besides fetching the
missing ones backwards by digest from the finalization."""

MAX_PENDING_BLOCKS = 4096
"""Uncommitted blocks the core keeps in memory (proposals and fetched blocks)."""

MAX_PENDING_BLOCK_BYTES = 64 * 1024 * 1024
"""Payload bytes of those blocks; the lowest views are forgotten first. Blocks
this validator voted for, and blocks fetched for a finalization, are also on
disk (StoreBlock) and are read back from there."""

MAX_HELD_CERTIFICATES = 4096
"""Notarizations and nullifications kept in memory (each kind); the lowest views
are forgotten first. Which views are nullified is kept separately, in a compact
set of ranges, so forgetting a certificate never forgets that fact."""

MAX_EVIDENCE = 1024
"""Equivocation evidence kept in memory before the oldest is dropped."""

U64_MAX = 2**63 - 1
"""Views and heights on the wire stay below 2**63 (msgspec bounds are int64);
the signed encoding has room for uint64."""

MAX_VIEW = 2**62
"""Views and heights a validator acts on. No network reaches 2**62 views or
blocks; anything above is refused, so arithmetic on views and heights (the next
view, the child's height) never leaves the encodable range."""

MAX_FINALITY_CHAIN = 256
"""Block headers in a descendant finality proof: a block committed under a later
block's finalization certificate (implicit finalization) is shown final by that
certificate plus the headers linking the two, parent by parent. Under load a
certificate covers a few heights; a node that synced a long run under one
certificate proves only the heights at most this far below a certificate it
holds. Keeps one proof near 60 KiB of JSON (about 230 bytes a header)."""
